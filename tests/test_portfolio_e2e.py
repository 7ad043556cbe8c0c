"""The Portfolio Margin Pro family end to end: the real client's typed methods against
FakeExchange, in-process and over loopback HTTP, on asyncio and trio; the fake's state
moving consistently between endpoints; its date-range, paging and cap rules; -21015 for the
removed endpoints."""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from _portfolio import Client, bound_client
from binance_pmpro.endpoints import (
    AUTO_COLLECTION,
    BNB_TRANSFER,
    ENDPOINTS_BY_NAME,
    PORTFOLIO_ENDPOINTS,
    REPAY_HISTORY,
    SET_AUTO_REPAY,
    Budget,
    Endpoint,
    Security,
)
from binance_pmpro.errors import (
    EndpointGoneError,
    InvalidRequestError,
    NotPortfolioMarginError,
    RateLimitedError,
)
from binance_pmpro.models import (
    AccountInfo,
    AccountType,
    AssetIndexPrice,
    AssetLeverage,
    Balance,
    BankruptcyLoan,
    CollateralRate,
    EarnAsset,
    EarnAssetBalance,
    EarnTransferType,
    InterestRecord,
    OperationResult,
    PortfolioSnapshot,
    RepayHistoryPage,
    RepaySource,
    SpanAccountInfo,
    TieredCollateralRate,
    TransferSide,
    ms_to_datetime,
)
from binance_pmpro.requests import build_request
from binance_pmpro.signing import HmacSigner
from binance_pmpro.testing import FakeExchange, Reply
from binance_pmpro.testing._portfolio import InterestRow, RepayRow
from binance_pmpro.validation import EndpointCapError

pytestmark = pytest.mark.anyio

UTC = timezone.utc
DAY_MS = 86_400_000
NOW = 1_800_000_000_000
MODES = ["in_process", "loopback"]
OK = OperationResult(msg="success")


# --- every endpoint through its typed method ------------------------------------------------

Call = Callable[[Client], Awaitable[Any]]
CALLS: dict[str, tuple[Call, Callable[[Any], bool]]] = {
    "account_info": (lambda c: c.account_info(), lambda r: isinstance(r, AccountInfo)),
    "span_account_info": (
        lambda c: c.span_account_info(),
        lambda r: isinstance(r, SpanAccountInfo) and r.account_type is AccountType.PM_3,
    ),
    "balance": (
        lambda c: c.balance(),
        lambda r: (
            [b.asset for b in r] == ["USDT", "BTC", "BNB"]
            and all(isinstance(b, Balance) for b in r)
            and r[0].cm_unrealized_pnl is None
        ),
    ),
    "collateral_rates": (
        lambda c: c.collateral_rates(),
        lambda r: (
            r
            == [
                CollateralRate(asset="USDC", collateral_rate=Decimal("1.0000")),
                CollateralRate(asset="BUSD", collateral_rate=Decimal("1.0000")),
            ]
        ),
    ),
    "tiered_collateral_rates": (
        lambda c: c.tiered_collateral_rates(),
        lambda r: (
            isinstance(r[0], TieredCollateralRate)
            and r[0].collateral_info[1].collateral_rate == Decimal("0.9000")
        ),
    ),
    "asset_index_price": (
        lambda c: c.asset_index_price(asset="BTC"),
        lambda r: (
            len(r) == 1
            and isinstance(r[0], AssetIndexPrice)
            and r[0].asset_index_price == Decimal("28251.9136906")
        ),
    ),
    "margin_asset_leverage": (
        lambda c: c.margin_asset_leverage(),
        lambda r: (
            r
            == [AssetLeverage(asset="USDC", leverage=10), AssetLeverage(asset="USDT", leverage=10)]
        ),
    ),
    "bankruptcy_loan": (
        lambda c: c.bankruptcy_loan(),
        lambda r: r == BankruptcyLoan(asset="BUSD", amount=Decimal("579.45")),
    ),
    "repay_bankruptcy_loan": (
        lambda c: c.repay_bankruptcy_loan(source=RepaySource.SPOT),
        lambda r: isinstance(r, int) and r > 2**53,
    ),
    "repay_history": (
        lambda c: c.repay_history(
            start=datetime(2024, 9, 1, tzinfo=UTC), end=datetime(2024, 11, 30, tzinfo=UTC)
        ),
        lambda r: (
            isinstance(r, RepayHistoryPage)
            and r.total == 2
            and r.rows[0].amount == Decimal("404.80294503")
        ),
    ),
    "interest_history": (
        lambda c: c.interest_history(
            asset="USDT",
            start=datetime(2022, 12, 1, tzinfo=UTC),
            end=datetime(2022, 12, 31, tzinfo=UTC),
        ),
        lambda r: (
            len(r) == 1 and isinstance(r[0], InterestRecord) and r[0].interest == Decimal("24.4440")
        ),
    ),
    "auto_repay_status": (lambda c: c.auto_repay_status(), lambda r: r is True),
    "set_auto_repay": (lambda c: c.set_auto_repay(enabled=False), lambda r: r == OK and r.ok),
    "repay_futures_negative_balance": (
        lambda c: c.repay_futures_negative_balance(source=RepaySource.MARGIN),
        lambda r: r == OK,
    ),
    "fund_auto_collection": (lambda c: c.fund_auto_collection(), lambda r: r == OK),
    "fund_collection_by_asset": (
        lambda c: c.fund_collection_by_asset(asset="USDT"),
        lambda r: r == OK,
    ),
    "bnb_transfer": (
        lambda c: c.bnb_transfer(amount=Decimal("0.5"), side=TransferSide.TO_UM),
        lambda r: isinstance(r, int),
    ),
    "earn_asset_balance": (
        lambda c: c.earn_asset_balance(
            asset=EarnAsset.LDUSDT, transfer_type=EarnTransferType.EARN_TO_FUTURE
        ),
        lambda r: r == EarnAssetBalance(asset="LDUSDT", amount=Decimal("0.55")),
    ),
    "earn_asset_transfer": (
        lambda c: c.earn_asset_transfer(
            asset=EarnAsset.LDUSDT,
            transfer_type=EarnTransferType.EARN_TO_FUTURE,
            amount=Decimal("0.25"),
        ),
        lambda r: r == OK,
    ),
    "delta_mode": (lambda c: c.delta_mode(), lambda r: r is False),
    "set_delta_mode": (lambda c: c.set_delta_mode(enabled=True), lambda r: r == OK),
    "margin_call_level": (lambda c: c.margin_call_level(), lambda r: r is None),
    "set_margin_call_level": (
        lambda c: c.set_margin_call_level(level=Decimal("1.5")),
        lambda r: r == Decimal("1.50000000"),
    ),
    "delete_margin_call_level": (lambda c: c.delete_margin_call_level(), lambda r: r == OK),
}


def test_calls_cover_every_endpoint() -> None:
    assert set(CALLS) == {e.name for e in PORTFOLIO_ENDPOINTS}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", PORTFOLIO_ENDPOINTS, ids=lambda e: e.name)
async def test_endpoint_typed_method_end_to_end_answers_and_charges_weight(
    endpoint: Endpoint, mode: str
) -> None:
    fake = FakeExchange()
    call, check = CALLS[endpoint.name]
    async with bound_client(fake, mode, ip_limit=12_000, uid_limit=180_000) as client:
        result = await call(client)
    assert check(result), result
    [record] = [r for r in fake.requests if r.path == endpoint.path]
    assert (record.method, record.status) == (endpoint.method, 200)
    params = dict(record.params)
    assert record.weight == endpoint.weight_for(params)
    assert ("signature" in params) is False  # never recorded
    assert ("timestamp" in params) == endpoint.security.signed
    owner = "main" if endpoint.budget is Budget.SAPI_UID else "127.0.0.1"
    key = fake.weight_key(endpoint.path, account="main")
    assert key.owner == owner
    assert fake.used_weight(endpoint.path) == record.weight


async def test_market_data_endpoints_work_with_an_api_key_alone() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process", api_secret=None, time_sync=False) as client:
        assert client.signing_algorithm is None
        assert len(await client.collateral_rates()) == 2
        assert len(await client.asset_index_price()) == 4
    assert {r.path for r in fake.requests} == {
        e.path for e in PORTFOLIO_ENDPOINTS if e.security is Security.MARKET_DATA
    }


def test_uid_and_ip_budgets_answer_with_their_own_headers() -> None:
    fake = FakeExchange()
    uid = handle(fake, ENDPOINTS_BY_NAME["bankruptcy_loan"], {})
    ip = handle(fake, ENDPOINTS_BY_NAME["balance"], {})
    again = handle(fake, ENDPOINTS_BY_NAME["balance"], {"asset": "BTC"})
    assert uid.header("X-SAPI-USED-UID-WEIGHT-1M") == "500"
    assert uid.header("X-SAPI-USED-IP-WEIGHT-1M") is None
    assert ip.header("X-SAPI-USED-IP-WEIGHT-1M") == "20"
    assert ip.header("X-SAPI-USED-UID-WEIGHT-1M") is None
    assert again.header("X-SAPI-USED-IP-WEIGHT-1M") == "40"


def handle(
    fake: FakeExchange, endpoint: Endpoint, params: dict[str, Any], now: int | None = None
) -> Reply:
    """One signed request straight into the fake's pure core, local checks bypassed."""
    at = fake.now_ms() if now is None else now
    request = build_request(
        endpoint,
        params,
        api_key=fake.demo_api_key,
        signer=HmacSigner(fake.demo_api_secret),
        timestamp_ms=at,
        recv_window=5000,
    )
    return fake.handle(request.method, request.target, request.headers, now_ms=at)


def error(reply: Reply) -> tuple[int, int]:
    body = json.loads(reply.body)
    return reply.status, body["code"]


# --- consistent state -----------------------------------------------------------------------


async def test_margin_call_level_set_get_delete_round_trip() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        assert await client.margin_call_level() is None
        assert await client.set_margin_call_level(level=Decimal("1.25")) == Decimal("1.25")
        assert await client.margin_call_level() == Decimal("1.25000000")
        assert (await client.delete_margin_call_level()).ok
        assert await client.margin_call_level() is None


async def test_auto_repay_and_delta_mode_switches_show_in_their_queries() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        assert await client.auto_repay_status() is True
        await client.set_auto_repay(enabled=False)
        assert await client.auto_repay_status() is False
        assert await client.delta_mode() is False
        await client.set_delta_mode(enabled=True)
        assert await client.delta_mode() is True
        await client.set_delta_mode(enabled=False)
        assert await client.delta_mode() is False


async def _bnb(client: Client) -> Balance:
    [row] = await client.balance(asset="BNB")
    return row


async def test_bnb_transfer_moves_balance_both_ways() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        before = await _bnb(client)
        await client.bnb_transfer(amount=Decimal("2.5"), side=TransferSide.TO_UM)
        after = await _bnb(client)
        assert after.cross_margin_free == before.cross_margin_free - Decimal("2.5")
        assert after.um_wallet_balance == Decimal("2.5")
        await client.bnb_transfer(amount=Decimal("1"), side=TransferSide.FROM_UM)
        back = await _bnb(client)
        assert back.um_wallet_balance == Decimal("1.5")
        assert back.cross_margin_free == Decimal("8.5")
        assert back.total_wallet_balance == before.total_wallet_balance


async def test_bnb_transfer_more_than_held_refused_and_not_counted_on_cap() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(InvalidRequestError):
            await client.bnb_transfer(amount=Decimal("11"), side=TransferSide.TO_UM)
    assert (
        fake.portfolio_state().cap_calls.get("bnb_transfer", [])
        == type(fake.portfolio_state().cap_calls.get("bnb_transfer", []))()
    )


async def test_earn_transfer_moves_earn_and_futures_balances() -> None:
    fake = FakeExchange()
    to_future = EarnTransferType.EARN_TO_FUTURE
    async with bound_client(fake, "in_process") as client:
        await client.earn_asset_transfer(
            asset=EarnAsset.LDUSDT, transfer_type=to_future, amount=Decimal("0.5")
        )
        left = await client.earn_asset_balance(asset="LDUSDT", transfer_type=to_future)
        back = await client.earn_asset_balance(
            asset="LDUSDT", transfer_type=EarnTransferType.FUTURE_TO_EARN
        )
        [row] = await client.balance(asset="LDUSDT")
    assert left.amount == Decimal("0.05")
    assert back.amount == Decimal("0.5")
    assert (row.um_wallet_balance, row.total_wallet_balance) == (Decimal("0.5"), Decimal("0.5"))


async def test_fund_collection_moves_futures_wallets_to_margin_except_bnb() -> None:
    fake = FakeExchange()
    state = fake.portfolio_state()
    state.balances["BTC"]["umWalletBalance"] = Decimal("3")
    state.balances["BTC"]["cmWalletBalance"] = Decimal("2")
    state.balances["BNB"]["umWalletBalance"] = Decimal("4")
    async with bound_client(fake, "in_process") as client:
        await client.fund_auto_collection()
        rows = {row.asset: row for row in await client.balance()}
        assert (rows["BTC"].um_wallet_balance, rows["BTC"].cm_wallet_balance) == (0, 0)
        assert rows["BTC"].cross_margin_free == Decimal("105")
        assert rows["BNB"].um_wallet_balance == Decimal("4")
        with pytest.raises(InvalidRequestError) as caught:
            await client.fund_collection_by_asset(asset="BNB")
        assert caught.value.code == -1130
        state.balances["USDT"]["umWalletBalance"] = Decimal("7")
        await client.fund_collection_by_asset(asset="USDT")
        [usdt] = await client.balance(asset="USDT")
    assert usdt.um_wallet_balance == 0
    assert usdt.cross_margin_free == Decimal("100.00000000") + Decimal("23.72469206") + 7


async def test_repay_clears_loan_and_appears_in_repay_history() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        tran_id = await client.repay_bankruptcy_loan()
        loan = await client.bankruptcy_loan()
        page = await client.repay_history()  # no bounds: the last 30 days
        with pytest.raises(InvalidRequestError) as caught:
            await client.repay_bankruptcy_loan()
    assert tran_id > 2**53
    assert loan.amount == 0
    assert page.total == 1
    assert (page.rows[0].asset, page.rows[0].amount) == ("BUSD", Decimal("579.45"))
    assert caught.value.code == -21004
    assert fake.portfolio_state().spot["BUSD"] == Decimal("1000") - Decimal("579.45")


async def test_repay_from_margin_without_funds_is_refused_with_21005() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.repay_bankruptcy_loan(source=RepaySource.MARGIN)
        assert caught.value.code == -21005
        assert (await client.bankruptcy_loan()).amount == Decimal("579.45")


async def test_non_portfolio_margin_account_gets_21001_on_the_family() -> None:
    fake = FakeExchange()
    fake.set_portfolio_margin(False)
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(NotPortfolioMarginError):
            await client.balance()
        with pytest.raises(NotPortfolioMarginError):
            await client.set_delta_mode(enabled=True)


# --- date ranges and paging (Decision 12) ---------------------------------------------------


def _history_fake() -> FakeExchange:
    fake = FakeExchange(clock=lambda: NOW)
    state = fake.portfolio_state()
    state.repays = [
        RepayRow("USDT", Decimal(days), NOW - days * DAY_MS) for days in (1, 29, 31, 59, 61, 400)
    ]
    return fake


def _amounts(reply: Reply) -> list[int]:
    return [int(row["amount"]) for row in json.loads(reply.body)["rows"]]


@pytest.mark.parametrize(
    ("params", "days_ago"),
    [
        ({}, [1, 29]),
        ({"startTime": NOW - 60 * DAY_MS}, [31, 59]),
        ({"endTime": NOW - 30 * DAY_MS}, [31, 59]),
        ({"startTime": NOW - 500 * DAY_MS, "endTime": NOW - 141 * DAY_MS}, [400]),
    ],
    ids=["no-bounds-last-30-days", "start-only-30-days-from", "end-only-30-days-up-to", "both"],
)
def test_repay_history_date_range_rules(params: dict[str, int], days_ago: list[int]) -> None:
    fake = _history_fake()
    reply = handle(fake, REPAY_HISTORY, params, now=NOW)
    assert reply.status == 200, reply.body
    assert _amounts(reply) == days_ago


def test_repay_history_span_over_360_days_is_binances_error() -> None:
    fake = _history_fake()
    reply = handle(fake, REPAY_HISTORY, {"startTime": NOW - 361 * DAY_MS, "endTime": NOW}, now=NOW)
    assert error(reply) == (400, -1127)
    exactly = handle(
        fake, REPAY_HISTORY, {"startTime": NOW - 360 * DAY_MS, "endTime": NOW}, now=NOW
    )
    assert exactly.status == 200


def test_repay_history_pages_newest_first_with_total() -> None:
    fake = FakeExchange(clock=lambda: NOW)
    fake.portfolio_state().repays = [
        RepayRow("USDT", Decimal(i), NOW - i * 60_000) for i in range(25)
    ]
    pages = [
        json.loads(handle(fake, REPAY_HISTORY, {"current": n, "size": 10}, now=NOW).body)
        for n in (1, 2, 3, 4)
    ]
    assert [page["total"] for page in pages] == [25] * 4
    assert [len(page["rows"]) for page in pages] == [10, 10, 5, 0]
    assert [int(row["amount"]) for row in pages[1]["rows"]] == list(range(10, 20))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"size": "101"}, (400, -1130)),
        ({"current": "0"}, (400, -1130)),
        ({"startTime": "-1"}, (400, -1100)),
    ],
)
def test_fake_checks_parameters_from_the_table(
    params: dict[str, str], expected: tuple[int, int]
) -> None:
    fake = _history_fake()
    assert error(handle(fake, REPAY_HISTORY, params, now=NOW)) == expected


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("bnb_transfer", {"transferSide": "TO_UM"}, (400, -1102)),
        ("bnb_transfer", {"amount": "1", "transferSide": "UP"}, (400, -1130)),
        ("bnb_transfer", {"amount": "0", "transferSide": "TO_UM"}, (400, -1130)),
        ("set_margin_call_level", {"marginCallLevel": "2.1"}, (400, -1130)),
        ("set_delta_mode", {"deltaEnabled": "yes"}, (400, -1130)),
        ("balance", {"assets": "BTC"}, (400, -1104)),
    ],
)
def test_fake_rejects_what_binance_rejects(
    name: str, params: dict[str, str], expected: tuple[int, int]
) -> None:
    fake = FakeExchange()
    assert error(handle(fake, ENDPOINTS_BY_NAME[name], params)) == expected


def test_removed_mint_and_redeem_answer_21015() -> None:
    fake = FakeExchange()
    for path in ("/sapi/v1/portfolio/mint", "/sapi/v1/portfolio/redeem"):
        gone = Endpoint(
            "gone", "POST", path, Security.TRADE, Budget.SAPI_UID, 1500, OperationResult
        )
        assert error(handle(fake, gone, {})) == (400, -21015)


async def test_removed_endpoint_call_raises_endpoint_gone() -> None:
    fake = FakeExchange()
    gone = Endpoint(
        "mint",
        "POST",
        "/sapi/v1/portfolio/mint",
        Security.TRADE,
        Budget.SAPI_UID,
        1500,
        OperationResult,
        idempotent=False,
    )
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(EndpointGoneError) as caught:
            await client._call(gone, {})
    assert caught.value.code == -21015


# --- per-endpoint caps ----------------------------------------------------------------------


def test_fake_bnb_transfer_cap_two_per_rolling_ten_minutes() -> None:
    fake = FakeExchange()
    params = {"amount": "0.1", "transferSide": "TO_UM"}
    statuses = [handle(fake, BNB_TRANSFER, params, now=NOW + s * 1000).status for s in (0, 100)]
    third = handle(fake, BNB_TRANSFER, params, now=NOW + 599_000)
    assert statuses == [200, 200]
    assert error(third) == (400, -1003)
    assert b"2 per 10 minutes" in third.body
    assert handle(fake, BNB_TRANSFER, params, now=NOW + 600_000).status == 200


@pytest.mark.parametrize(
    ("endpoint", "params", "calls"),
    [(AUTO_COLLECTION, {}, 500), (SET_AUTO_REPAY, {"autoRepay": "true"}, 20)],
    ids=["auto-collection-500-per-hour", "auto-repay-switch-20-per-day"],
)
def test_fake_enforces_documented_cap(
    endpoint: Endpoint, params: dict[str, str], calls: int
) -> None:
    fake = FakeExchange()
    assert endpoint.cap is not None
    period_ms = endpoint.cap.period_s * 1000
    fake.portfolio_state().cap_calls[endpoint.name] = collections.deque(
        [NOW - period_ms + 1000] + [NOW - 1] * (calls - 1)
    )
    assert error(handle(fake, endpoint, params, now=NOW)) == (400, -1003)
    assert handle(fake, endpoint, params, now=NOW + 1000).status == 200


async def test_client_refuses_third_bnb_transfer_locally_without_sending() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        for _ in range(2):
            await client.bnb_transfer(amount=Decimal("0.1"), side=TransferSide.TO_UM)
        with pytest.raises(EndpointCapError) as caught:
            await client.bnb_transfer(amount=Decimal("0.1"), side=TransferSide.TO_UM)
    assert caught.value.local is True
    assert caught.value.retry_after is not None
    assert 590 < caught.value.retry_after <= 600
    assert "2 per 10 minutes" in str(caught.value)
    assert [r.status for r in fake.requests if r.path == BNB_TRANSFER.path] == [200, 200]


async def test_client_reports_binances_cap_refusal_clearly() -> None:
    fake = FakeExchange()
    fake.add_hmac_key("OtherProcessKey", "other-secret")  # same account "main"
    async with bound_client(
        fake, "in_process", api_key="OtherProcessKey", api_secret="other-secret"
    ) as other:
        for _ in range(2):
            await other.bnb_transfer(amount=Decimal("0.1"), side=TransferSide.TO_UM)
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(EndpointCapError) as caught:
            await client.bnb_transfer(amount=Decimal("0.1"), side=TransferSide.TO_UM)
    assert caught.value.local is False
    assert isinstance(caught.value.__cause__, RateLimitedError)
    assert "Binance refused" in str(caught.value)
    assert "2 per 10 minutes" in str(caught.value)


# --- conveniences ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_portfolio_snapshot_account_and_balances_span_on_request(mode: str) -> None:
    fake = FakeExchange()
    async with bound_client(fake, mode) as client:
        plain = await client.portfolio()
        with_span = await client.portfolio(span=True)
    assert isinstance(plain, PortfolioSnapshot)
    assert plain.span is None
    assert plain.account.uni_mmr == Decimal("5167.92171923")
    assert [b.asset for b in plain.balances] == ["USDT", "BTC", "BNB"]
    assert with_span.span is not None
    assert with_span.span.risk_unit_mm_list
    paths = [r.path for r in fake.requests if r.path.startswith("/sapi")]
    assert sorted(paths) == sorted(
        ["/sapi/v1/portfolio/account", "/sapi/v1/portfolio/balance"] * 2
        + ["/sapi/v2/portfolio/account"]
    )


async def test_portfolio_snapshot_failure_raises_the_error_itself() -> None:
    fake = FakeExchange()
    fake.set_portfolio_margin(False)
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(NotPortfolioMarginError):
            await client.portfolio(span=True)


def _running_fake() -> FakeExchange:
    """An exchange whose clock reads NOW at the start and runs with the wall clock."""
    return FakeExchange(clock_offset_ms=NOW - time.time() * 1000)


async def test_iter_repay_history_splits_800_days_into_360_day_spans_and_pages() -> None:
    fake = _running_fake()
    days = [1, 5, 100, 359, 361, 500, 700, 799]
    fake.portfolio_state().repays = [RepayRow("USDT", Decimal(d), NOW - d * DAY_MS) for d in days]
    end = ms_to_datetime(NOW)
    async with bound_client(fake, "in_process") as client:
        rows = [
            row
            async for row in client.iter_repay_history(
                start=end - timedelta(days=800), end=end, page_size=2
            )
        ]
    assert [int(row.amount) for row in rows] == days
    requests = [dict(r.params) for r in fake.requests if r.path == REPAY_HISTORY.path]
    spans = {(int(p["startTime"]), int(p["endTime"])) for p in requests}
    assert len(spans) == 3
    assert all(high - low <= 360 * DAY_MS for low, high in spans)
    assert all(r.status == 200 for r in fake.requests)


async def test_iter_interest_history_walks_by_time_through_shared_timestamps() -> None:
    fake = _running_fake()
    rows = [
        InterestRow(asset, Decimal(hour), NOW - hour * 3_600_000, Decimal("0.0001"), Decimal(100))
        for hour in range(1, 9)
        for asset in ("USDT", "USDC", "BTC")
    ]
    fake.portfolio_state().interest = rows
    end = ms_to_datetime(NOW)
    async with bound_client(fake, "in_process") as client:
        got = [
            (row.asset, row.interest_accrued_time_ms)
            async for row in client.iter_interest_history(
                start=end - timedelta(days=2), end=end, page_size=5
            )
        ]
        usdt = [
            row
            async for row in client.iter_interest_history(
                start=end - timedelta(days=2), asset="USDT", page_size=3
            )
        ]
    assert sorted(got) == sorted((r.asset, r.interest_accrued_time_ms) for r in rows)
    assert len(got) == len(set(got)) == 24
    assert [int(r.interest) for r in usdt] == list(range(1, 9))
