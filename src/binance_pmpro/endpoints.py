"""The declarative endpoint table: one entry per Binance endpoint this SDK calls.

Each entry is data read by the request builder (method, path, signing), the local
parameter checks (:mod:`binance_pmpro.validation`), the limiter (budget kind and weight),
the fake exchange (routing, parameter checks, weight accounting, per-endpoint caps), the
command line (one subcommand per entry) and the endpoint reference page of the docs.
Weights, budgets, parameters and caps come from Binance's documentation (reference
section 7); never hard-code them elsewhere.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .models import (
    AccountInfo,
    AssetIndexPrice,
    AssetLeverage,
    AutoRepayStatus,
    Balance,
    BankruptcyLoan,
    CollateralRate,
    DeltaModeStatus,
    EarnAssetBalance,
    InterestRecord,
    MarginCallLevel,
    OperationResult,
    RepayHistoryPage,
    ServerTime,
    SpanAccountInfo,
    TieredCollateralRate,
    TransactionResult,
)
from .stream_events import ListenKey

__all__ = [
    "ACCOUNT_INFO",
    "ASSET_COLLECTION",
    "ASSET_INDEX_PRICE",
    "AUTO_COLLECTION",
    "AUTO_REPAY_STATUS",
    "BALANCE",
    "BANKRUPTCY_LOAN",
    "BNB_TRANSFER",
    "COLLATERAL_RATE",
    "DELETE_MARGIN_CALL_LEVEL",
    "DELTA_MODE",
    "EARN_ASSET_BALANCE",
    "EARN_ASSET_TRANSFER",
    "ENDPOINTS",
    "ENDPOINTS_BY_NAME",
    "INTEREST_HISTORY",
    "LISTEN_KEY_CLOSE",
    "LISTEN_KEY_CREATE",
    "LISTEN_KEY_KEEPALIVE",
    "MARGIN_ASSET_LEVERAGE",
    "MARGIN_CALL_LEVEL",
    "PORTFOLIO_ENDPOINTS",
    "REMOVED_ENDPOINTS",
    "REPAY",
    "REPAY_FUTURES_NEGATIVE_BALANCE",
    "REPAY_HISTORY",
    "SERVER_TIME",
    "SET_AUTO_REPAY",
    "SET_DELTA_MODE",
    "SET_MARGIN_CALL_LEVEL",
    "SPAN_ACCOUNT_INFO",
    "STREAM_ENDPOINTS",
    "TIERED_COLLATERAL_RATE",
    "USED_WEIGHT_HEADERS",
    "Budget",
    "Cap",
    "DateRange",
    "Endpoint",
    "Param",
    "ParamType",
    "Security",
]


class Security(enum.Enum):
    """Binance's security type of an endpoint."""

    NONE = "NONE"
    MARKET_DATA = "MARKET_DATA"
    USER_STREAM = "USER_STREAM"
    USER_DATA = "USER_DATA"
    TRADE = "TRADE"
    MARGIN = "MARGIN"

    @property
    def signed(self) -> bool:
        """Whether requests need ``timestamp`` and a ``signature``."""
        return self in (Security.USER_DATA, Security.TRADE, Security.MARGIN)

    @property
    def needs_api_key(self) -> bool:
        """Whether requests carry ``X-MBX-APIKEY``."""
        return self is not Security.NONE


class Budget(enum.Enum):
    """Which of Binance's weight budgets an endpoint draws on."""

    SAPI_UID = "uid"
    """Per account (UID) and endpoint: 180,000 weight per minute."""
    SAPI_IP = "ip"
    """Per egress IP and endpoint: 12,000 weight per minute."""
    API_IP = "api"
    """The spot ``/api`` budget, shared by all ``/api`` endpoints of an IP: 6,000 per minute."""
    FAPI_IP = "fapi"
    """The USDⓈ-M futures host's budget, shared by all ``/fapi`` endpoints of an IP (the user
    stream's listen key calls): 2,400 per minute."""


class ParamType(enum.Enum):
    """A request parameter's type as Binance's documentation names it."""

    STRING = "STRING"
    DECIMAL = "DECIMAL"
    LONG = "LONG"


@dataclass(frozen=True, slots=True)
class Param:
    """One request parameter of an endpoint (``timestamp``/``recvWindow`` are implied by
    the security type and never listed)."""

    name: str
    """Binance's name, as sent on the wire."""
    type: ParamType
    mandatory: bool = False
    choices: tuple[str, ...] = ()
    """A closed set of wire values, checked locally (empty: any value of the type)."""
    known: tuple[str, ...] = ()
    """Values Binance documents but that are left to Binance to check (asset names)."""
    minimum: Decimal | None = None
    """Inclusive lower bound of a number."""
    maximum: Decimal | None = None
    """Inclusive upper bound of a number."""
    positive: bool = False
    """A number that must be strictly greater than zero (amounts)."""
    time: bool = False
    """Epoch milliseconds; the typed methods take an aware ``datetime``."""
    default: str | None = None
    """What Binance assumes when the parameter is left out."""
    doc: str = ""

    @property
    def boolean(self) -> bool:
        """Whether the parameter is Binance's ``"true"``/``"false"`` string."""
        return self.choices == ("true", "false")


@dataclass(frozen=True, slots=True)
class Cap:
    """A per-endpoint call cap Binance documents on top of the weight budgets, counted per
    account over a rolling period."""

    calls: int
    period_s: int
    """Length of the rolling period in seconds."""
    text: str
    """Binance's wording, e.g. ``"2 per 10 minutes (rolling)"``."""


@dataclass(frozen=True, slots=True)
class DateRange:
    """How an endpoint reads ``startTime``/``endTime`` (reference section 7, Decision 12):
    no bound covers the last ``default_days``; one bound covers ``default_days`` from (or
    up to) it; both bounds may span at most ``max_span_days``."""

    default_days: int
    max_span_days: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One Binance endpoint, as data."""

    name: str
    """Python-side name (the client's method name)."""
    method: str
    path: str
    security: Security
    budget: Budget
    weight: int | Callable[[Mapping[str, Any]], int]
    """Request weight, or a function of the request parameters when it depends on them."""
    response: type[Any]
    """The type the response body decodes into."""
    idempotent: bool = True
    """Safe to send again when the outcome of an attempt is unknown."""
    params: tuple[Param, ...] = ()
    """The endpoint's own parameters, in the order they are sent."""
    title: str = ""
    """Binance's name of the endpoint (its documentation page title)."""
    cap: Cap | None = None
    """A per-endpoint call cap Binance documents, if any."""
    date_range: DateRange | None = None
    """How ``startTime``/``endTime`` are read, for endpoints that take them."""
    verify: str = ""
    """For a write: what to look at before sending it again when its outcome is unknown."""
    cli: str | None = None
    """The command line's subcommand for this endpoint."""
    weight_text: str = ""
    """The weight in words when it depends on the parameters."""

    @property
    def is_write(self) -> bool:
        """Whether the endpoint changes the account (POST, PUT, DELETE)."""
        return self.method != "GET"

    def param(self, name: str) -> Param:
        """The parameter called ``name`` (Binance's name); KeyError if there is none."""
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(f"{self.method} {self.path} has no parameter {name!r}")

    def weight_for(self, params: Mapping[str, Any]) -> int:
        """The weight of one call with these parameters."""
        weight = self.weight
        return weight if isinstance(weight, int) else weight(params)

    @property
    def futures(self) -> bool:
        """Whether the endpoint lives on the USDⓈ-M futures host (``/fapi`` paths), which
        the client reaches through its ``futures_base_url``."""
        return self.path.startswith("/fapi/")

    @property
    def header_name(self) -> str:
        """The lower-case response header carrying the used weight of this endpoint's budget."""
        return USED_WEIGHT_HEADERS[self.budget]


USED_WEIGHT_HEADERS: Mapping[Budget, str] = {
    Budget.SAPI_UID: "x-sapi-used-uid-weight-1m",
    Budget.SAPI_IP: "x-sapi-used-ip-weight-1m",
    Budget.API_IP: "x-mbx-used-weight-1m",
    Budget.FAPI_IP: "x-mbx-used-weight-1m",
}
"""The lower-case response header reporting the used weight of each budget kind."""


ACCOUNT_INFO = Endpoint(
    name="account_info",
    method="GET",
    path="/sapi/v1/portfolio/account",
    security=Security.USER_DATA,
    budget=Budget.SAPI_UID,
    weight=5,
    response=AccountInfo,
)

SERVER_TIME = Endpoint(
    name="server_time",
    method="GET",
    path="/api/v3/time",
    security=Security.NONE,
    budget=Budget.API_IP,
    weight=1,
    response=ServerTime,
)

# --- the Portfolio Margin Pro family (reference section 7) ----------------------------------


def _index_price_weight(params: Mapping[str, Any]) -> int:
    # Binance: 1 for one asset, 50 for all of them.
    return 1 if params.get("asset") else 50


_FROM = Param(
    "from",
    ParamType.STRING,
    choices=("SPOT", "MARGIN"),
    default="SPOT",
    doc="wallet to pay from",
)
_START = Param("startTime", ParamType.LONG, minimum=Decimal(0), time=True, doc="epoch ms")
_END = Param("endTime", ParamType.LONG, minimum=Decimal(0), time=True, doc="epoch ms")
_SIZE = Param(
    "size",
    ParamType.LONG,
    minimum=Decimal(1),
    maximum=Decimal(100),
    default="10",
    doc="rows per page",
)
_TRANSFER_TYPE = Param(
    "transferType",
    ParamType.STRING,
    mandatory=True,
    choices=("EARN_TO_FUTURE", "FUTURE_TO_EARN"),
)
_CHECK_BALANCES = "the balances (GET /sapi/v1/portfolio/balance, balance())"

SPAN_ACCOUNT_INFO = Endpoint(
    name="span_account_info",
    method="GET",
    path="/sapi/v2/portfolio/account",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=5,
    response=SpanAccountInfo,
    title="Get Portfolio Margin Pro SPAN Account Info",
    cli="span-account",
)

BALANCE = Endpoint(
    name="balance",
    method="GET",
    path="/sapi/v1/portfolio/balance",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=20,
    response=list[Balance],
    params=(Param("asset", ParamType.STRING, doc="one asset only"),),
    title="Get Portfolio Margin Pro Account Balance",
    cli="balance",
)

COLLATERAL_RATE = Endpoint(
    name="collateral_rates",
    method="GET",
    path="/sapi/v1/portfolio/collateralRate",
    security=Security.MARKET_DATA,
    budget=Budget.SAPI_IP,
    weight=50,
    response=list[CollateralRate],
    title="Portfolio Margin Collateral Rate",
    cli="collateral-rates",
)

TIERED_COLLATERAL_RATE = Endpoint(
    name="tiered_collateral_rates",
    method="GET",
    path="/sapi/v2/portfolio/collateralRate",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=50,
    response=list[TieredCollateralRate],
    title="Portfolio Margin Pro Tiered Collateral Rate",
    cli="tiered-collateral-rates",
)

ASSET_INDEX_PRICE = Endpoint(
    name="asset_index_price",
    method="GET",
    path="/sapi/v1/portfolio/asset-index-price",
    security=Security.MARKET_DATA,
    budget=Budget.SAPI_IP,
    weight=_index_price_weight,
    response=list[AssetIndexPrice],
    params=(Param("asset", ParamType.STRING, doc="one asset (weight 1) or all (weight 50)"),),
    title="Query Portfolio Margin Asset Index Price",
    cli="index-price",
    weight_text="1 with asset, 50 without",
)

MARGIN_ASSET_LEVERAGE = Endpoint(
    name="margin_asset_leverage",
    method="GET",
    path="/sapi/v1/portfolio/margin-asset-leverage",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=50,
    response=list[AssetLeverage],
    title="Get Portfolio Margin Asset Leverage",
    cli="asset-leverage",
)

BANKRUPTCY_LOAN = Endpoint(
    name="bankruptcy_loan",
    method="GET",
    path="/sapi/v1/portfolio/pmLoan",
    security=Security.USER_DATA,
    budget=Budget.SAPI_UID,
    weight=500,
    response=BankruptcyLoan,
    title="Query Portfolio Margin Pro Bankruptcy Loan Amount",
    cli="loan",
)

REPAY = Endpoint(
    name="repay_bankruptcy_loan",
    method="POST",
    path="/sapi/v1/portfolio/repay",
    security=Security.TRADE,
    budget=Budget.SAPI_UID,
    weight=3000,
    response=TransactionResult,
    idempotent=False,
    params=(_FROM,),
    title="Portfolio Margin Pro Bankruptcy Loan Repay",
    verify="the repay history (GET /sapi/v1/portfolio/pmloan-history, repay_history()) and "
    "the loan still owed (GET /sapi/v1/portfolio/pmLoan, bankruptcy_loan())",
    cli="repay",
)

REPAY_HISTORY = Endpoint(
    name="repay_history",
    method="GET",
    path="/sapi/v1/portfolio/pmloan-history",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=500,
    response=RepayHistoryPage,
    params=(
        _START,
        _END,
        Param(
            "current",
            ParamType.LONG,
            minimum=Decimal(1),
            default="1",
            doc="page number, from 1",
        ),
        _SIZE,
    ),
    title="Query Portfolio Margin Pro Bankruptcy Loan Repay History",
    date_range=DateRange(default_days=30, max_span_days=360),
    cli="repay-history",
)

INTEREST_HISTORY = Endpoint(
    name="interest_history",
    method="GET",
    path="/sapi/v1/portfolio/interest-history",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=50,
    response=list[InterestRecord],
    params=(Param("asset", ParamType.STRING), _START, _END, _SIZE),
    title="Query Portfolio Margin Pro Negative Balance Interest History",
    cli="interest-history",
)

AUTO_REPAY_STATUS = Endpoint(
    name="auto_repay_status",
    method="GET",
    path="/sapi/v1/portfolio/repay-futures-switch",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=30,
    response=AutoRepayStatus,
    title="Get Auto-repay-futures Status",
    cli="auto-repay",
)

SET_AUTO_REPAY = Endpoint(
    name="set_auto_repay",
    method="POST",
    path="/sapi/v1/portfolio/repay-futures-switch",
    security=Security.TRADE,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=OperationResult,
    idempotent=False,
    params=(
        Param(
            "autoRepay",
            ParamType.STRING,
            mandatory=True,
            choices=("true", "false"),
            default="true",
        ),
    ),
    title="Change Auto-repay-futures Status",
    cap=Cap(calls=20, period_s=86_400, text="20 per day"),
    verify="the auto-repay status (GET /sapi/v1/portfolio/repay-futures-switch, "
    "auto_repay_status())",
    cli="set-auto-repay",
)

REPAY_FUTURES_NEGATIVE_BALANCE = Endpoint(
    name="repay_futures_negative_balance",
    method="POST",
    path="/sapi/v1/portfolio/repay-futures-negative-balance",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=OperationResult,
    idempotent=False,
    params=(_FROM,),
    title="Repay futures Negative Balance",
    verify=_CHECK_BALANCES + ": negativeBalance and the wallet paid from",
    cli="repay-negative-balance",
)

AUTO_COLLECTION = Endpoint(
    name="fund_auto_collection",
    method="POST",
    path="/sapi/v1/portfolio/auto-collection",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=OperationResult,
    idempotent=False,
    title="Fund Auto-collection",
    cap=Cap(calls=500, period_s=3_600, text="500 per hour (rolling)"),
    verify=_CHECK_BALANCES,
    cli="auto-collect",
)

ASSET_COLLECTION = Endpoint(
    name="fund_collection_by_asset",
    method="POST",
    path="/sapi/v1/portfolio/asset-collection",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=60,
    response=OperationResult,
    idempotent=False,
    params=(Param("asset", ParamType.STRING, mandatory=True, doc="BNB is not supported"),),
    title="Fund Collection by Asset",
    verify=_CHECK_BALANCES + " of the asset",
    cli="collect",
)

BNB_TRANSFER = Endpoint(
    name="bnb_transfer",
    method="POST",
    path="/sapi/v1/portfolio/bnb-transfer",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=TransactionResult,
    idempotent=False,
    params=(
        Param("amount", ParamType.DECIMAL, mandatory=True, positive=True, doc="BNB"),
        Param("transferSide", ParamType.STRING, mandatory=True, choices=("TO_UM", "FROM_UM")),
    ),
    title="BNB transfer",
    cap=Cap(calls=2, period_s=600, text="2 per 10 minutes (rolling)"),
    verify=_CHECK_BALANCES + " of BNB: crossMarginFree and umWalletBalance",
    cli="bnb-transfer",
)

EARN_ASSET_BALANCE = Endpoint(
    name="earn_asset_balance",
    method="GET",
    path="/sapi/v1/portfolio/earn-asset-balance",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=EarnAssetBalance,
    params=(
        Param("asset", ParamType.STRING, mandatory=True, known=("LDUSDT",), doc="LDUSDT only"),
        _TRANSFER_TYPE,
    ),
    title="Get Transferable Earn Asset Balance for Portfolio Margin",
    cli="earn-balance",
)

EARN_ASSET_TRANSFER = Endpoint(
    name="earn_asset_transfer",
    method="POST",
    path="/sapi/v1/portfolio/earn-asset-transfer",
    security=Security.TRADE,
    budget=Budget.SAPI_UID,
    weight=1500,
    response=OperationResult,
    idempotent=False,
    params=(
        Param("asset", ParamType.STRING, mandatory=True, known=("LDUSDT", "RWUSD")),
        _TRANSFER_TYPE,
        Param("amount", ParamType.DECIMAL, mandatory=True, positive=True),
    ),
    title="Transfer LDUSDT/RWUSD for Portfolio Margin",
    verify="the transferable Earn balance (GET /sapi/v1/portfolio/earn-asset-balance, "
    "earn_asset_balance()) and " + _CHECK_BALANCES,
    cli="earn-transfer",
)

DELTA_MODE = Endpoint(
    name="delta_mode",
    method="GET",
    path="/sapi/v1/portfolio/delta-mode",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=DeltaModeStatus,
    title="Get Delta Mode Status",
    cli="delta-mode",
)

SET_DELTA_MODE = Endpoint(
    name="set_delta_mode",
    method="POST",
    path="/sapi/v1/portfolio/delta-mode",
    security=Security.TRADE,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=OperationResult,
    idempotent=False,
    params=(Param("deltaEnabled", ParamType.STRING, mandatory=True, choices=("true", "false")),),
    title="Switch Delta Mode",
    verify="the delta mode (GET /sapi/v1/portfolio/delta-mode, delta_mode())",
    cli="set-delta-mode",
)

_CHECK_LEVEL = (
    "the margin-call level (GET /sapi/v1/portfolio/margin-call-level, margin_call_level())"
)

MARGIN_CALL_LEVEL = Endpoint(
    name="margin_call_level",
    method="GET",
    path="/sapi/v1/portfolio/margin-call-level",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=MarginCallLevel,
    title="Get Margin Call Level",
    cli="margin-call-level",
)

SET_MARGIN_CALL_LEVEL = Endpoint(
    name="set_margin_call_level",
    method="POST",
    path="/sapi/v1/portfolio/margin-call-level",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=MarginCallLevel,
    idempotent=False,
    params=(
        Param(
            "marginCallLevel",
            ParamType.DECIMAL,
            mandatory=True,
            minimum=Decimal("1.1"),
            maximum=Decimal("2.0"),
            doc="uniMMR that triggers the e-mail/SMS",
        ),
    ),
    title="Set Margin Call Level",
    verify=_CHECK_LEVEL,
    cli="set-margin-call-level",
)

DELETE_MARGIN_CALL_LEVEL = Endpoint(
    name="delete_margin_call_level",
    method="DELETE",
    path="/sapi/v1/portfolio/margin-call-level",
    security=Security.USER_DATA,
    budget=Budget.SAPI_IP,
    weight=1500,
    response=OperationResult,
    idempotent=False,
    title="Delete Margin Call Level",
    verify=_CHECK_LEVEL,
    cli="delete-margin-call-level",
)

PORTFOLIO_ENDPOINTS: tuple[Endpoint, ...] = (
    ACCOUNT_INFO,
    SPAN_ACCOUNT_INFO,
    BALANCE,
    COLLATERAL_RATE,
    TIERED_COLLATERAL_RATE,
    ASSET_INDEX_PRICE,
    MARGIN_ASSET_LEVERAGE,
    BANKRUPTCY_LOAN,
    REPAY,
    REPAY_HISTORY,
    INTEREST_HISTORY,
    AUTO_REPAY_STATUS,
    SET_AUTO_REPAY,
    REPAY_FUTURES_NEGATIVE_BALANCE,
    AUTO_COLLECTION,
    ASSET_COLLECTION,
    BNB_TRANSFER,
    EARN_ASSET_BALANCE,
    EARN_ASSET_TRANSFER,
    DELTA_MODE,
    SET_DELTA_MODE,
    MARGIN_CALL_LEVEL,
    SET_MARGIN_CALL_LEVEL,
    DELETE_MARGIN_CALL_LEVEL,
)
"""The live Portfolio Margin Pro endpoints, in the order of the reference's section 7."""

REMOVED_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("POST", "/sapi/v1/portfolio/mint"),
    ("POST", "/sapi/v1/portfolio/redeem"),
)
"""Endpoints Binance removed (BFUSD mint/redeem): calls get ``-21015``
(:class:`~binance_pmpro.errors.EndpointGoneError`). Deliberately not implemented."""

# --- the user data stream's listen key (USDⓈ-M futures host; pmpro-stream reference §1) ----

LISTEN_KEY_CREATE = Endpoint(
    name="create_listen_key",
    method="POST",
    path="/fapi/v1/listenKey",
    security=Security.USER_STREAM,
    budget=Budget.FAPI_IP,
    weight=1,
    response=ListenKey,
    # A second POST returns the account's live key (and extends it): safe to repeat.
    idempotent=True,
    title="Start User Data Stream",
)

LISTEN_KEY_KEEPALIVE = Endpoint(
    name="keepalive_listen_key",
    method="PUT",
    path="/fapi/v1/listenKey",
    security=Security.USER_STREAM,
    budget=Budget.FAPI_IP,
    weight=1,
    response=ListenKey,
    idempotent=True,
    title="Keepalive User Data Stream",
)

LISTEN_KEY_CLOSE = Endpoint(
    name="close_listen_key",
    method="DELETE",
    path="/fapi/v1/listenKey",
    security=Security.USER_STREAM,
    budget=Budget.FAPI_IP,
    weight=1,
    response=ListenKey,
    idempotent=True,
    title="Close User Data Stream",
)

STREAM_ENDPOINTS: tuple[Endpoint, ...] = (
    LISTEN_KEY_CREATE,
    LISTEN_KEY_KEEPALIVE,
    LISTEN_KEY_CLOSE,
)
"""The listen key endpoints of the user data stream: USER_STREAM security (API key, no
signature), weight 1 each on the futures host's IP budget."""

ENDPOINTS: Mapping[tuple[str, str], Endpoint] = {
    (e.method, e.path): e for e in (*PORTFOLIO_ENDPOINTS, SERVER_TIME, *STREAM_ENDPOINTS)
}
"""Every endpoint by ``(method, path)``."""

ENDPOINTS_BY_NAME: Mapping[str, Endpoint] = {e.name: e for e in ENDPOINTS.values()}
"""Every endpoint by its :attr:`Endpoint.name` (the client's method name)."""
