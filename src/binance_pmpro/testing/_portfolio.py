"""FakeExchange's Portfolio Margin Pro family: per-account state and one handler per endpoint.

The state behaves consistently across endpoints: a BNB or Earn transfer and fund collection
move the balances the balance endpoint returns; a repayment clears the loan and shows in the
repay history; the margin-call level, auto-repay and delta-mode switches show in their
queries. Default answers have the shapes (mostly the values) of Binance's documentation
examples. Parameters are checked from the endpoint table before a handler runs.

Choices where Binance documents no error (marked ``fake's choice`` in the code): a
per-endpoint cap reached is HTTP 400 ``-1003`` with the documentation's sentence; a
transfer or repayment the wallets cannot cover is :data:`INSUFFICIENT`; a repay-history
span over 360 days is ``-1127``; the interest history reads its range like the repay
history.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..endpoints import (
    ASSET_COLLECTION,
    ASSET_INDEX_PRICE,
    AUTO_COLLECTION,
    AUTO_REPAY_STATUS,
    BALANCE,
    BANKRUPTCY_LOAN,
    BNB_TRANSFER,
    COLLATERAL_RATE,
    DELETE_MARGIN_CALL_LEVEL,
    DELTA_MODE,
    EARN_ASSET_BALANCE,
    EARN_ASSET_TRANSFER,
    INTEREST_HISTORY,
    MARGIN_ASSET_LEVERAGE,
    MARGIN_CALL_LEVEL,
    REPAY,
    REPAY_FUTURES_NEGATIVE_BALANCE,
    REPAY_HISTORY,
    SET_AUTO_REPAY,
    SET_DELTA_MODE,
    SET_MARGIN_CALL_LEVEL,
    SPAN_ACCOUNT_INFO,
    TIERED_COLLATERAL_RATE,
    Endpoint,
)
from ._exchange import ExchangeError, FakeRequest, Handler, register_handler

if TYPE_CHECKING:
    from ._exchange import FakeExchange

__all__ = ["InterestRow", "PortfolioState", "RepayRow"]

DAY_MS = 86_400_000
ZERO = Decimal(0)

INSUFFICIENT = (400, -1130, "Insufficient balance for this operation.")
"""Fake's choice for a transfer or repayment the wallets cannot cover: Binance documents
no code for it (``-21005`` is the bankruptcy-loan repayment's own)."""

BALANCE_FIELDS = (
    "totalWalletBalance",
    "crossMarginAsset",
    "crossMarginBorrowed",
    "crossMarginFree",
    "crossMarginInterest",
    "crossMarginLocked",
    "umWalletBalance",
    "umUnrealizedPNL",
    "cmWalletBalance",
    "cmUnrealizedPNL",
    "updateTime",
    "negativeBalance",
    "optionWalletBalance",
    "optionEquity",
)
"""The fields of one balance row, in Binance's order."""


def _row(asset: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"asset": asset}
    for name in BALANCE_FIELDS:
        row[name] = values.get(name, 0 if name == "updateTime" else ZERO)
    return row


def _default_balances() -> dict[str, dict[str, Any]]:
    d = Decimal
    return {
        # The zh-CN documentation row, "" in cmUnrealizedPNL included.
        "USDT": _row(
            "USDT",
            totalWalletBalance=d("122607.35137903"),
            crossMarginAsset=d("92.27530794"),
            crossMarginBorrowed=d("10.00000000"),
            crossMarginFree=d("100.00000000"),
            crossMarginInterest=d("0.72469206"),
            crossMarginLocked=d("3.00000000"),
            umWalletBalance=d("0.00000000"),
            umUnrealizedPNL=d("23.72469206"),
            cmWalletBalance=d("23.72469206"),
            cmUnrealizedPNL="",
            updateTime=1617939110373,
        ),
        # The English documentation row.
        "BTC": _row(
            "BTC",
            totalWalletBalance=d("100"),
            crossMarginAsset=d("100"),
            crossMarginFree=d("100"),
        ),
        "BNB": _row(
            "BNB",
            totalWalletBalance=d("10"),
            crossMarginAsset=d("10"),
            crossMarginFree=d("10"),
        ),
    }


def _default_span() -> dict[str, Any]:
    return {
        "uniMMR": "5167.92171923",
        "accountEquity": "122607.35137903",
        "actualEquity": "142607.35137903",
        "accountMaintMargin": "23.72469206",
        "riskUnitMMList": [{"asset": "BTC", "uniMaintainUsd": "23.72469206"}],
        "marginMM": "0.00000000",
        "otherMM": "0.00000000",
        "accountStatus": "NORMAL",
        "accountType": "PM_3",
    }


@dataclass
class RepayRow:
    """One repayment in the fake's repay history."""

    asset: str
    amount: Decimal
    repay_time_ms: int


@dataclass
class InterestRow:
    """One negative-balance interest charge in the fake's interest history."""

    asset: str
    interest: Decimal
    interest_accrued_time_ms: int
    interest_rate: Decimal
    principal: Decimal


@dataclass
class PortfolioState:
    """The Portfolio Margin Pro state of one fake account. Change it freely in tests; the
    next answer reflects it. Amounts are Decimals (a ``""`` string is sent as is)."""

    balances: dict[str, dict[str, Any]] = field(default_factory=_default_balances)
    """Rows of ``GET /sapi/v1/portfolio/balance`` by asset, Binance's field names."""
    spot: dict[str, Decimal] = field(
        default_factory=lambda: {"USDT": Decimal(10_000), "BUSD": Decimal(1_000)}
    )
    """The spot wallet, which repayments with ``from=SPOT`` draw on."""
    earn: dict[str, Decimal] = field(
        default_factory=lambda: {"LDUSDT": Decimal("0.55"), "RWUSD": Decimal(0)}
    )
    """Binance Earn holdings the Earn-asset transfers move from and to."""
    loan_asset: str = "BUSD"
    loan_amount: Decimal = Decimal("579.45")
    """The bankruptcy loan (the documentation example's; 0 = none)."""
    repays: list[RepayRow] = field(
        default_factory=lambda: [
            RepayRow("USDT", Decimal("404.80294503"), 1731336427804),
            RepayRow("USDT", Decimal("4620.41204574"), 1726125090016),
        ]
    )
    interest: list[InterestRow] = field(
        default_factory=lambda: [
            InterestRow(
                "USDT", Decimal("24.4440"), 1670227200000, Decimal("0.0001164"), Decimal(210000)
            )
        ]
    )
    auto_repay: bool = True
    delta_enabled: bool = False
    margin_call_level: Decimal | None = None
    span: dict[str, Any] = field(default_factory=_default_span)
    """The ``GET /sapi/v2/portfolio/account`` answer, Binance's field names."""
    cap_calls: dict[str, deque[int]] = field(default_factory=dict)
    """Server times (ms) of the accepted calls of capped endpoints, by endpoint name."""
    next_tran_id: int = 58203331886213504
    """The next transaction id: above 2**53 like Binance's (the repay example's first)."""

    def new_tran_id(self) -> int:
        """A fresh transaction id."""
        tran_id = self.next_tran_id
        self.next_tran_id += 1
        return tran_id

    def balance_row(self, asset: str) -> dict[str, Any]:
        """The balance row of ``asset`` (created with zeros if new)."""
        row = self.balances.get(asset)
        if row is None:
            row = self.balances[asset] = _row(asset)
        return row


# --- exchange-wide data ---------------------------------------------------------------------

COLLATERAL_RATES: tuple[tuple[str, str], ...] = (("USDC", "1.0000"), ("BUSD", "1.0000"))
TIERED_RATES: Mapping[str, tuple[tuple[str, str, str, str], ...]] = {
    "BNB": (
        ("0.0000", "1000.0000", "1.0000", "0.0000"),
        ("1000.0000", "2000.0000", "0.9000", "0.0000"),
    ),
    "USDT": (
        ("0.0000", "1000.0000", "1.0000", "0.0000"),
        ("1000.0000", "2000.0000", "0.9999", "0.0000"),
    ),
}
INDEX_PRICES: Mapping[str, str] = {
    "BTC": "28251.9136906",
    "ETH": "1845.2012345",
    "BNB": "312.4500000",
    "USDT": "1.0000000",
}
LEVERAGE: tuple[tuple[str, int], ...] = (("USDC", 10), ("USDT", 10))


# --- helpers --------------------------------------------------------------------------------


def _text(value: Any) -> Any:
    return format(value, "f") if isinstance(value, Decimal) else value


def _state(exchange: FakeExchange, request: FakeRequest) -> PortfolioState:
    assert request.account is not None  # signed: the key was checked
    if not exchange.is_portfolio_margin(request.account):
        raise ExchangeError(
            400, -21001, "invalid request: request ID is not a Portfolio Margin Account"
        )
    return exchange.portfolio_state(request.account)


def _handler(endpoint: Endpoint) -> Callable[[Handler], Handler]:
    return register_handler(endpoint.name, params=[param.name for param in endpoint.params])


def _decimal(request: FakeRequest, name: str) -> Decimal:
    return Decimal(request.params[name])  # the table's checks passed: a decimal


def _take(wallet: dict[str, Decimal], asset: str, amount: Decimal) -> None:
    if wallet.get(asset, ZERO) < amount:
        raise ExchangeError(*INSUFFICIENT)
    wallet[asset] = wallet.get(asset, ZERO) - amount


def _move(row: dict[str, Any], source: str, target: str, amount: Decimal, now: int) -> None:
    if row[source] < amount:
        raise ExchangeError(*INSUFFICIENT)
    row[source] -= amount
    row[target] += amount
    row["updateTime"] = now


def _enforce_cap(state: PortfolioState, endpoint: Endpoint, now: int) -> None:
    """Binance's documented per-endpoint cap, rolling; the call is counted when accepted."""
    cap = endpoint.cap
    assert cap is not None
    calls = state.cap_calls.setdefault(endpoint.name, deque())
    while calls and calls[0] <= now - cap.period_s * 1000:
        calls.popleft()
    if len(calls) >= cap.calls:
        # Fake's choice: Binance documents the cap, not the error that enforces it.
        raise ExchangeError(
            400, -1003, f"You can only use this function {cap.text} in a rolling manner."
        )
    calls.append(now)


def _window(request: FakeRequest, default_days: int, max_span_days: int | None) -> tuple[int, int]:
    """``[start, end]`` by Binance's rules for history endpoints (Decision 12)."""
    now = request.server_time_ms
    start = request.params.get("startTime")
    end = request.params.get("endTime")
    span = default_days * DAY_MS
    if start is None and end is None:
        return now - span, now
    if end is None:
        low = int(start)  # type: ignore[arg-type]
        return low, low + span
    high = int(end)
    if start is None:
        return high - span, high
    low = int(start)
    if low > high:
        raise ExchangeError(400, -1130, "Data sent for parameter 'startTime' is not valid.")
    if max_span_days is not None and high - low > max_span_days * DAY_MS:
        # Fake's choice of code: Binance documents the 360-day limit, not its error.
        raise ExchangeError(
            400, -1127, f"More than {max_span_days} days between startTime and endTime."
        )
    return low, high


def _size(request: FakeRequest) -> int:
    return int(request.params.get("size", "10"))


# --- reads ----------------------------------------------------------------------------------


@_handler(SPAN_ACCOUNT_INFO)
def _span_account(exchange: FakeExchange, request: FakeRequest) -> Any:
    return dict(_state(exchange, request).span)


@_handler(BALANCE)
def _balance(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    asset = request.params.get("asset")
    rows: Iterable[dict[str, Any]] = state.balances.values()
    if asset is not None:
        rows = [row for row in rows if row["asset"] == asset]
    return [{name: _text(value) for name, value in row.items()} for row in rows]


@_handler(COLLATERAL_RATE)
def _collateral_rates(exchange: FakeExchange, request: FakeRequest) -> Any:
    return [{"asset": asset, "collateralRate": rate} for asset, rate in COLLATERAL_RATES]


@_handler(TIERED_COLLATERAL_RATE)
def _tiered_rates(exchange: FakeExchange, request: FakeRequest) -> Any:
    _state(exchange, request)
    return [
        {
            "asset": asset,
            "collateralInfo": [
                {"tierFloor": floor, "tierCap": cap, "collateralRate": rate, "cum": cum}
                for floor, cap, rate, cum in tiers
            ],
        }
        for asset, tiers in TIERED_RATES.items()
    ]


@_handler(ASSET_INDEX_PRICE)
def _index_price(exchange: FakeExchange, request: FakeRequest) -> Any:
    asset = request.params.get("asset")
    now = request.server_time_ms
    if asset is None:
        return [
            {"asset": name, "assetIndexPrice": price, "time": now}
            for name, price in INDEX_PRICES.items()
        ]
    price = INDEX_PRICES.get(asset)
    if price is None:
        raise ExchangeError(400, -1130, "Data sent for parameter 'asset' is not valid.")
    return [{"asset": asset, "assetIndexPrice": price, "time": now}]


@_handler(MARGIN_ASSET_LEVERAGE)
def _leverage(exchange: FakeExchange, request: FakeRequest) -> Any:
    _state(exchange, request)
    return [{"asset": asset, "leverage": leverage} for asset, leverage in LEVERAGE]


@_handler(BANKRUPTCY_LOAN)
def _loan(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    return {"asset": state.loan_asset, "amount": _text(state.loan_amount)}


@_handler(REPAY_HISTORY)
def _repay_history(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    rule = REPAY_HISTORY.date_range
    assert rule is not None
    low, high = _window(request, rule.default_days, rule.max_span_days)
    size = _size(request)
    page = int(request.params.get("current", "1"))
    matches = sorted(
        (row for row in state.repays if low <= row.repay_time_ms <= high),
        key=lambda row: row.repay_time_ms,
        reverse=True,  # newest first, as in Binance's example
    )
    rows = matches[(page - 1) * size : page * size]
    return {
        "total": len(matches),
        "rows": [
            {"asset": row.asset, "amount": _text(row.amount), "repayTime": row.repay_time_ms}
            for row in rows
        ],
    }


@_handler(INTEREST_HISTORY)
def _interest_history(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    # Fake's choice: Binance documents no range rules here; the repay history's apply.
    low, high = _window(request, 30, None)
    asset = request.params.get("asset")
    matches = sorted(
        (
            row
            for row in state.interest
            if low <= row.interest_accrued_time_ms <= high and asset in (None, row.asset)
        ),
        key=lambda row: row.interest_accrued_time_ms,
        reverse=True,
    )
    return [
        {
            "asset": row.asset,
            "interest": _text(row.interest),
            "interestAccruedTime": row.interest_accrued_time_ms,
            "interestRate": _text(row.interest_rate),
            "principal": _text(row.principal),
        }
        for row in matches[: _size(request)]
    ]


@_handler(AUTO_REPAY_STATUS)
def _auto_repay_status(exchange: FakeExchange, request: FakeRequest) -> Any:
    return {"autoRepay": _state(exchange, request).auto_repay}


@_handler(EARN_ASSET_BALANCE)
def _earn_balance(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    asset = request.params["asset"]
    if asset != "LDUSDT":  # Binance: LDUSDT only
        raise ExchangeError(400, -1130, "Data sent for parameter 'asset' is not valid.")
    if request.params["transferType"] == "EARN_TO_FUTURE":
        amount = state.earn.get(asset, ZERO)
    else:
        amount = state.balance_row(asset)["umWalletBalance"]
    return {"asset": asset, "amount": _text(amount)}


@_handler(DELTA_MODE)
def _delta_mode(exchange: FakeExchange, request: FakeRequest) -> Any:
    return {"deltaEnabled": _state(exchange, request).delta_enabled}


@_handler(MARGIN_CALL_LEVEL)
def _margin_call_level(exchange: FakeExchange, request: FakeRequest) -> Any:
    level = _state(exchange, request).margin_call_level
    return {} if level is None else {"marginCallLevel": _level_text(level)}


def _level_text(level: Decimal) -> str:
    return format(level.quantize(Decimal("0.00000001")), "f")  # Binance echoes 8 decimals


# --- writes ---------------------------------------------------------------------------------

_SUCCESS = {"msg": "success"}


@_handler(REPAY)
def _repay(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    if state.loan_amount <= 0:
        raise ExchangeError(400, -21004, "User doesn't have portfolio margin bankruptcy loan")
    amount, asset = state.loan_amount, state.loan_asset
    if request.params.get("from", "SPOT") == "SPOT":
        if state.spot.get(asset, ZERO) < amount:
            raise ExchangeError(400, -21005, "User's spot wallet doesn't have enough funds")
        state.spot[asset] -= amount
    else:
        row = state.balance_row(asset)
        if row["crossMarginFree"] < amount:
            raise ExchangeError(400, -21005, "User's margin wallet doesn't have enough funds")
        row["crossMarginFree"] -= amount
        row["crossMarginAsset"] -= amount
        row["totalWalletBalance"] -= amount
        row["updateTime"] = request.server_time_ms
    state.loan_amount = ZERO
    state.repays.append(RepayRow(asset, amount, request.server_time_ms))
    return {"tranId": state.new_tran_id()}


@_handler(SET_AUTO_REPAY)
def _set_auto_repay(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    _enforce_cap(state, SET_AUTO_REPAY, request.server_time_ms)
    state.auto_repay = request.params["autoRepay"] == "true"
    return _SUCCESS


@_handler(REPAY_FUTURES_NEGATIVE_BALANCE)
def _repay_negative(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    source = request.params.get("from", "SPOT")
    owed = {
        asset: row["negativeBalance"]
        for asset, row in state.balances.items()
        if isinstance(row["negativeBalance"], Decimal) and row["negativeBalance"] > 0
    }
    for asset, amount in owed.items():
        if source == "SPOT":
            _take(state.spot, asset, amount)
        else:
            row = state.balances[asset]
            if row["crossMarginFree"] < amount:
                raise ExchangeError(*INSUFFICIENT)
            row["crossMarginFree"] -= amount
    for asset in owed:
        row = state.balances[asset]
        row["negativeBalance"] = ZERO
        row["updateTime"] = request.server_time_ms
    return _SUCCESS


def _collect(row: dict[str, Any], now: int) -> None:
    """Move an asset's futures wallets into its cross-margin wallet."""
    moved = ZERO
    for name in ("umWalletBalance", "cmWalletBalance"):
        if isinstance(row[name], Decimal) and row[name] > 0:
            moved += row[name]
            row[name] = ZERO
    if moved:
        row["crossMarginFree"] += moved
        row["crossMarginAsset"] += moved
        row["updateTime"] = now


@_handler(AUTO_COLLECTION)
def _auto_collection(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    _enforce_cap(state, AUTO_COLLECTION, request.server_time_ms)
    for asset, row in state.balances.items():
        if asset != "BNB":  # Binance: BNB is not collected from USDⓈ-M
            _collect(row, request.server_time_ms)
    return _SUCCESS


@_handler(ASSET_COLLECTION)
def _asset_collection(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    asset = request.params["asset"]
    if asset == "BNB":  # Binance: BNB is not supported
        raise ExchangeError(400, -1130, "Data sent for parameter 'asset' is not valid.")
    _collect(state.balance_row(asset), request.server_time_ms)
    return _SUCCESS


@_handler(BNB_TRANSFER)
def _bnb_transfer(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    amount = _decimal(request, "amount")
    row = state.balance_row("BNB")
    now = request.server_time_ms
    # Checked before the cap counts the call: a refused transfer is not a use.
    have = row[
        "crossMarginFree" if request.params["transferSide"] == "TO_UM" else "umWalletBalance"
    ]
    if have < amount:
        raise ExchangeError(*INSUFFICIENT)
    _enforce_cap(state, BNB_TRANSFER, now)
    if request.params["transferSide"] == "TO_UM":
        _move(row, "crossMarginFree", "umWalletBalance", amount, now)
        row["crossMarginAsset"] -= amount
    else:
        _move(row, "umWalletBalance", "crossMarginFree", amount, now)
        row["crossMarginAsset"] += amount
    return {"tranId": state.new_tran_id()}


@_handler(EARN_ASSET_TRANSFER)
def _earn_transfer(exchange: FakeExchange, request: FakeRequest) -> Any:
    state = _state(exchange, request)
    asset = request.params["asset"]
    if asset not in ("LDUSDT", "RWUSD"):
        raise ExchangeError(400, -1130, "Data sent for parameter 'asset' is not valid.")
    amount = _decimal(request, "amount")
    row = state.balance_row(asset)
    if request.params["transferType"] == "EARN_TO_FUTURE":
        _take(state.earn, asset, amount)
        row["umWalletBalance"] += amount
        row["totalWalletBalance"] += amount
    else:
        if row["umWalletBalance"] < amount:
            raise ExchangeError(*INSUFFICIENT)
        row["umWalletBalance"] -= amount
        row["totalWalletBalance"] -= amount
        state.earn[asset] = state.earn.get(asset, ZERO) + amount
    row["updateTime"] = request.server_time_ms
    return _SUCCESS


@_handler(SET_DELTA_MODE)
def _set_delta_mode(exchange: FakeExchange, request: FakeRequest) -> Any:
    _state(exchange, request).delta_enabled = request.params["deltaEnabled"] == "true"
    return _SUCCESS


@_handler(SET_MARGIN_CALL_LEVEL)
def _set_margin_call_level(exchange: FakeExchange, request: FakeRequest) -> Any:
    level = _decimal(request, "marginCallLevel")
    _state(exchange, request).margin_call_level = level
    return {"marginCallLevel": _level_text(level)}


@_handler(DELETE_MARGIN_CALL_LEVEL)
def _delete_margin_call_level(exchange: FakeExchange, request: FakeRequest) -> Any:
    _state(exchange, request).margin_call_level = None
    return _SUCCESS
