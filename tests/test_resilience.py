"""Resilience through FakeExchange's faults: clock, retries, timeouts, deadlines, cancellation.

Each test asserts what the server saw (``fake.requests``) and what the limiter charged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest

from binance_pmpro import (
    NO_RETRY,
    ConnectionLostError,
    DeadlineExceededError,
    IPBannedError,
    PortfolioMarginProClient,
    RateLimitedError,
    ReadTimeoutError,
    RequestEvent,
    RetryPolicy,
    ServerError,
    Timeouts,
    TimestampError,
)
from binance_pmpro.endpoints import Budget
from binance_pmpro.testing import FakeExchange, FaultKind

pytestmark = pytest.mark.anyio

ACCOUNT = "/sapi/v1/portfolio/account"
TIME = "/api/v3/time"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.005)

MakeClient = Callable[..., PortfolioMarginProClient]


@pytest.fixture
def fake() -> FakeExchange:
    return FakeExchange()


@pytest.fixture
async def make_client(fake: FakeExchange) -> AsyncIterator[MakeClient]:
    """Clients bound in-process to ``fake``, closed after the test."""
    made: list[tuple[PortfolioMarginProClient, Any]] = []

    def make(**options: Any) -> PortfolioMarginProClient:
        http_client = fake.http_client()
        options.setdefault("retry", FAST_RETRY)
        client = PortfolioMarginProClient(
            fake.demo_api_key,
            fake.demo_api_secret,
            base_url=fake.base_url,
            http_client=http_client,
            **options,
        )
        made.append((client, http_client))
        return client

    yield make
    for client, http_client in made:
        await client.aclose()
        await http_client.aclose()


def _seen(fake: FakeExchange, path: str = ACCOUNT) -> int:
    return sum(1 for record in fake.requests if record.path == path)


def _charged(client: PortfolioMarginProClient) -> int:
    return sum(b.used for b in client.rate_limit if b.key.kind is Budget.SAPI_UID)


async def test_first_call_syncs_clock_once_then_signs_with_offset(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    fake.clock_offset_ms = 20_000  # the exchange's clock runs 20 s ahead of ours
    client = make_client()
    info = await client.account_info()
    await client.account_info()
    assert info.uni_mmr == Decimal("5167.92171923")
    assert _seen(fake, TIME) == 1
    assert _seen(fake, ACCOUNT) == 2
    assert client.clock.offset_ms == pytest.approx(20_000, abs=1_000)
    assert all(r.status == 200 for r in fake.requests)


async def test_clock_skew_without_sync_raises_timestamp_error_with_offset(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    fake.clock_offset_ms = 20_000
    client = make_client(time_offset_ms=0.0)  # the user runs their own time sync: we trust it
    with pytest.raises(TimestampError, match="-1021") as caught:
        await client.account_info()
    assert _seen(fake, TIME) == 0
    assert _seen(fake, ACCOUNT) == 2  # re-signed with a fresh timestamp and retried once
    assert len(caught.value.attempts) == 2


async def test_one_off_timestamp_error_recovers_with_one_extra_request(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client()
    await client.sync_time()
    fake.inject(FaultKind.TIMESTAMP_ERROR, path=ACCOUNT)
    info = await client.account_info()
    assert info.account_status.value == "NORMAL"
    assert _seen(fake, ACCOUNT) == 2
    assert _seen(fake, TIME) == 2  # the explicit sync, then the resync after -1021
    assert _charged(client) == 10  # both attempts reached the server: both are charged


async def test_persistent_timestamp_error_raises_with_measured_offset(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client()
    fake.inject(FaultKind.TIMESTAMP_ERROR, times=5, path=ACCOUNT)
    with pytest.raises(TimestampError) as caught:
        await client.account_info()
    assert caught.value.offset_ms is not None
    assert "measured offset to Binance's clock" in str(caught.value)
    assert _seen(fake, ACCOUNT) == 2


async def test_503_then_success_is_retried_transparently(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client()
    fake.inject(FaultKind.SERVER_ERROR_EMPTY, path=ACCOUNT, status=503)
    info = await client.account_info()
    assert info.uni_mmr == Decimal("5167.92171923")
    assert _seen(fake, ACCOUNT) == 2
    # The cancelled request may have reached Binance: its weight is never refunded. Until
    # its minute ends the limiter may even count it twice (own charge + the server's figure
    # it cannot attribute), which errs on the safe side.
    assert _charged(client) >= 10


async def test_dropped_connection_then_success_is_retried(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client()
    fake.inject(FaultKind.DROP_CONNECTION, path=ACCOUNT)
    await client.account_info()
    assert _seen(fake, ACCOUNT) == 2
    assert _charged(client) == 10  # a dropped request may have been counted: kept


async def test_html_502_every_time_gives_server_error_with_excerpt_and_attempts(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client()
    fake.inject(FaultKind.HTML_ERROR_PAGE, times=10, path=ACCOUNT)
    with pytest.raises(ServerError) as caught:
        await client.account_info()
    error = caught.value
    assert error.status == 502
    assert "<html" in error.msg.lower()
    assert len(error.attempts) == 3
    assert "3 attempts" in str(error)
    assert _seen(fake, ACCOUNT) == 3


async def test_no_retry_policy_raises_first_failure(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client(retry=NO_RETRY)
    fake.inject(FaultKind.DROP_CONNECTION, path=ACCOUNT)
    with pytest.raises(ConnectionLostError):
        await client.account_info()
    assert _seen(fake, ACCOUNT) == 1


async def test_read_timeout_then_success_is_retried(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client(timeout=Timeouts(read=0.05))
    fake.inject(FaultKind.SLOW_RESPONSE, path=ACCOUNT, delay=5.0)
    info = await client.account_info()
    assert info.uni_mmr is not None
    assert _seen(fake, ACCOUNT) == 2


async def test_read_timeout_every_time_raises_read_timeout(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client(timeout=Timeouts(read=0.02))
    fake.inject(FaultKind.SLOW_RESPONSE, times=10, path=ACCOUNT, delay=5.0)
    with pytest.raises(ReadTimeoutError) as caught:
        await client.account_info()
    assert len(caught.value.attempts) == 3
    assert _charged(client) == 15


async def test_call_deadline_beats_slow_server_and_keeps_sent_weight(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client(timeout=Timeouts(read=10.0))
    await client.sync_time()
    fake.inject(FaultKind.SLOW_RESPONSE, path=ACCOUNT, delay=5.0)
    with pytest.raises(DeadlineExceededError, match="deadline"):
        await client.account_info(call_timeout=0.05)
    assert _seen(fake, ACCOUNT) == 1
    assert _charged(client) == 5  # it may have reached Binance: not refunded


async def test_caller_cancellation_mid_request_then_next_call_succeeds(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client()
    await client.sync_time()
    fake.inject(FaultKind.SLOW_RESPONSE, path=ACCOUNT, delay=5.0)
    with anyio.move_on_after(0.05) as scope:
        await client.account_info()
    assert scope.cancelled_caught
    info = await client.account_info()
    assert info.uni_mmr == Decimal("5167.92171923")
    assert _seen(fake, ACCOUNT) == 2
    # The cancelled request may have reached Binance: its weight is never refunded. Until
    # its minute ends the limiter may even count it twice (own charge + the server's figure
    # it cannot attribute), which errs on the safe side.
    assert _charged(client) >= 10


async def test_cancellation_over_loopback_leaves_pool_usable(fake: FakeExchange) -> None:
    async with (
        fake.serve(port=0) as server,
        PortfolioMarginProClient(
            fake.demo_api_key, fake.demo_api_secret, base_url=server.base_url
        ) as client,
    ):
        await client.sync_time()
        fake.inject(FaultKind.SLOW_RESPONSE, path=ACCOUNT, delay=5.0)
        with anyio.move_on_after(0.1):
            await client.account_info()
        results = []
        for _ in range(3):
            results.append(await client.account_info())
    assert all(r.uni_mmr == Decimal("5167.92171923") for r in results)


async def test_429_pauses_and_resends_within_max_wait(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client(max_wait=5.0)
    await client.sync_time()
    fake.inject(FaultKind.RATE_LIMITED, path=ACCOUNT, retry_after=1)
    info = await client.account_info()
    assert info.uni_mmr is not None
    assert [r.status for r in fake.requests if r.path == ACCOUNT] == [429, 200]


async def test_429_beyond_max_wait_raises_rate_limited(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    client = make_client(max_wait=0.5)
    await client.sync_time()
    fake.inject(FaultKind.RATE_LIMITED, path=ACCOUNT, retry_after=30)
    with pytest.raises(RateLimitedError) as caught:
        await client.account_info()
    assert caught.value.retry_after == 30
    assert _seen(fake, ACCOUNT) == 1


async def test_418_raises_ip_banned_at_once(fake: FakeExchange, make_client: MakeClient) -> None:
    client = make_client(max_wait=600.0)
    await client.sync_time()
    fake.inject(FaultKind.IP_BANNED, path=ACCOUNT, seconds=120)
    with pytest.raises(IPBannedError) as caught:
        await client.account_info()
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0
    assert _seen(fake, ACCOUNT) == 1


async def test_hooks_see_start_and_end_of_every_attempt(
    fake: FakeExchange, make_client: MakeClient
) -> None:
    events: list[RequestEvent] = []
    client = make_client(hooks=[events.append], time_sync=False)
    fake.inject(FaultKind.SERVER_ERROR_EMPTY, path=ACCOUNT, status=503)
    await client.account_info()
    assert [(e.phase, e.attempt, e.status) for e in events] == [
        ("start", 1, None),
        ("end", 1, 503),
        ("start", 2, None),
        ("end", 2, 200),
    ]
    assert all(e.endpoint == "account_info" and e.weight == 5 for e in events)
    assert events[-1].used_weight is not None  # the server's X-SAPI-USED-UID-WEIGHT-1M
    assert events[-1].used_weight >= 5


async def test_failing_hook_never_breaks_the_call(make_client: MakeClient) -> None:
    def broken(event: RequestEvent) -> None:
        raise RuntimeError("metrics backend down")

    client = make_client(hooks=[broken], time_sync=False)
    info = await client.account_info()
    assert info.uni_mmr is not None
