"""``client.watch_account`` and ``RiskMonitor.watch`` against the in-process FakeExchange on
virtual clocks (a virtual asyncio loop, trio's MockClock): cadence without drift or burst,
HIGH priority, one call in flight, transient failures retried and reported as stale, fatal
ones raised, cancellation, and a scripted scenario seen as events."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import trio.testing

import binance_pmpro.clock
from _virtual_time import VirtualEventLoop
from binance_pmpro import (
    AuthenticationError,
    ConfigurationError,
    IPBannedError,
    NotPortfolioMarginError,
    PortfolioMarginProClient,
    RateLimitTimeoutError,
    RequestEvent,
    ServerError,
)
from binance_pmpro.endpoints import ACCOUNT_INFO
from binance_pmpro.monitor import (
    AccountSnapshot,
    Breach,
    Recovery,
    RiskMonitor,
    Stale,
    StatusChange,
)
from binance_pmpro.ratelimit import BudgetKey, Permit, Priority, RateLimiter
from binance_pmpro.retry import RetryPolicy
from binance_pmpro.testing import FakeExchange, FaultKind, Scenario

pytestmark = pytest.mark.anyio

EPOCH_S = 1_700_000_017.25  # Binance's clock at virtual time 0, not minute-aligned
ACCOUNT = ACCOUNT_INFO.path


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualEventLoop})


@pytest.fixture(autouse=True)
def _virtual_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client stamps requests from the wall clock: make it the exchange's virtual one.
    monkeypatch.setattr(
        binance_pmpro.clock,
        "time",
        SimpleNamespace(time=lambda: anyio.current_time() + EPOCH_S),
    )


def make_fake() -> FakeExchange:
    return FakeExchange(clock=lambda: (anyio.current_time() + EPOCH_S) * 1000)


@contextlib.asynccontextmanager
async def client_of(fake: FakeExchange, **options: Any) -> AsyncIterator[PortfolioMarginProClient]:
    options.setdefault("retry", RetryPolicy(base_delay=0.0, max_delay=0.0))
    async with PortfolioMarginProClient(
        fake.demo_api_key,
        fake.demo_api_secret,
        base_url=fake.base_url,
        http_client=fake.http_client(),
        time_offset_ms=0,  # stamps already follow the virtual clock: no sync calls
        **options,
    ) as client:
        yield client


def account_times(fake: FakeExchange, start: float) -> list[float]:
    """Seconds from ``start`` (loop clock) at which the exchange saw each account request."""
    return [
        round(r.server_time_ms / 1000 - EPOCH_S - start, 3)
        for r in fake.requests
        if r.path == ACCOUNT
    ]


async def collect(
    client: PortfolioMarginProClient, count: int, **options: Any
) -> list[AccountSnapshot | Stale]:
    items: list[AccountSnapshot | Stale] = []
    async with contextlib.aclosing(client.watch_account(**options)) as watch:
        async for item in watch:
            items.append(item)
            if len(items) >= count:
                break
    return items


# --- cadence ----------------------------------------------------------------------------------


async def test_watch_account_polls_on_the_grid_without_drift() -> None:
    fake = make_fake()
    async with client_of(fake) as client:
        start = anyio.current_time()
        items = await collect(client, 6, every=0.25)
    assert all(isinstance(i, AccountSnapshot) for i in items)
    snaps = [i for i in items if isinstance(i, AccountSnapshot)]
    assert [s.sequence for s in snaps] == [1, 2, 3, 4, 5, 6]
    assert [round(s.scheduled_at - start, 9) for s in snaps] == [0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert account_times(fake, start) == [0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert snaps[0].info.uni_mmr == Decimal("5167.92171923")


async def test_watch_account_slow_answer_skips_missed_ticks_without_a_burst() -> None:
    fake = make_fake()
    fake.inject(FaultKind.SLOW_RESPONSE, delay=2.5, path=ACCOUNT)
    async with client_of(fake) as client:
        start = anyio.current_time()
        items = await collect(client, 4, every=1.0)
    snaps = [i for i in items if isinstance(i, AccountSnapshot)]
    # The first answer came at 2.5 s: ticks 1 and 2 are dropped, the next poll is at 3 s.
    assert account_times(fake, start) == [0, 3, 4, 5]
    assert [round(s.at - start, 6) for s in snaps] == [2.5, 3, 4, 5]


async def test_watch_account_one_call_in_flight_at_high_priority() -> None:
    fake = make_fake()
    fake.inject_randomly(FaultKind.SLOW_RESPONSE, 0.5, path=ACCOUNT, delay=1.7)
    in_flight = [0]
    most = [0]
    priorities: list[Priority] = []

    def hook(event: RequestEvent) -> None:
        in_flight[0] += 1 if event.phase == "start" else -1
        most[0] = max(most[0], in_flight[0])

    class Spy(RateLimiter):
        async def acquire(
            self,
            key: BudgetKey,
            weight: int,
            *,
            max_wait: float | None = None,
            priority: Priority = Priority.NORMAL,
        ) -> Permit:
            priorities.append(priority)
            return await super().acquire(key, weight, max_wait=max_wait, priority=priority)

    async with client_of(fake, hooks=[hook], rate_limiter=Spy()) as client:
        items = await collect(client, 10, every=0.5)
        await client.account_info()  # the application's own calls stay NORMAL
    assert len(items) == 10
    assert most[0] == 1
    assert priorities == [Priority.HIGH] * 10 + [Priority.NORMAL]


async def test_watch_account_bad_every_raises_configuration_error() -> None:
    fake = make_fake()
    async with client_of(fake) as client:
        for every in (0, -1, float("inf"), float("nan")):
            with pytest.raises(ConfigurationError):
                await collect(client, 1, every=every)
        with pytest.raises(ConfigurationError):
            await collect(client, 1, every=1, stale_after=0)


# --- transient failures -----------------------------------------------------------------------


async def test_watch_account_server_errors_are_retried_and_reported_stale_once() -> None:
    fake = make_fake()
    async with client_of(fake) as client:
        start = anyio.current_time()
        items: list[AccountSnapshot | Stale] = []
        async with contextlib.aclosing(client.watch_account(every=1.0, stale_after=3.0)) as w:
            async for item in w:
                items.append(item)
                if len(items) == 1:  # fail every poll from now on
                    fake.inject_randomly(FaultKind.SERVER_ERROR_JSON, 1.0, path=ACCOUNT)
                if isinstance(item, Stale) or anyio.current_time() - start > 8:
                    fake.clear_faults()
                if len(items) == 3:
                    break
    first, stale, fresh = items
    assert isinstance(first, AccountSnapshot)
    assert isinstance(stale, Stale)
    assert isinstance(fresh, AccountSnapshot)
    assert isinstance(stale.error, ServerError)
    assert stale.last is first
    # Polls at 1, 2, 3 failed (each after the client's own 3 attempts); 3 s after the last
    # fresh data the stale event comes, and the watch goes on at the next tick.
    assert stale.failures == 3
    assert round(stale.age, 6) == 3.0
    assert round(fresh.scheduled_at - start, 6) == 4.0
    assert fresh.sequence == 2


async def test_watch_account_unreadable_answer_is_skipped_not_fatal() -> None:
    fake = make_fake()
    async with client_of(fake) as client:
        start = anyio.current_time()
        items: list[AccountSnapshot | Stale] = []
        async with contextlib.aclosing(client.watch_account(every=1.0)) as watch:
            async for item in watch:
                items.append(item)
                if len(items) == 1:
                    fake.inject(FaultKind.MALFORMED_JSON, path=ACCOUNT)
                if len(items) == 3:
                    break
    assert all(isinstance(i, AccountSnapshot) for i in items)
    assert [round(i.scheduled_at - start) for i in items] == [0, 2, 3]
    assert [r.fault for r in fake.requests if r.path == ACCOUNT][1] is FaultKind.MALFORMED_JSON


async def test_watch_account_429_pause_is_respected_then_watch_resumes() -> None:
    fake = make_fake()
    fake.inject(FaultKind.RATE_LIMITED, path=ACCOUNT, retry_after=30)
    async with client_of(fake) as client:
        start = anyio.current_time()
        items = await collect(client, 2, every=1.0, stale_after=5.0)
    stale, snap = items
    assert isinstance(stale, Stale)
    assert isinstance(snap, AccountSnapshot)
    # The 429 (Retry-After 30 s, more than the poll may wait) failed the poll at 0 s; the
    # polls at 1..5 s failed locally, the limiter knowing the pause would outlast them.
    assert isinstance(stale.error, RateLimitTimeoutError)
    assert (stale.failures, round(stale.age, 6)) == (6, 5.0)
    # Only the 429'd request reached the exchange during the pause: the limiter held the
    # polls back (failing fast, locally) until Retry-After had passed.
    times = account_times(fake, start)
    assert times[0] == 0
    assert len(times) == 2
    assert times[1] >= 30


# --- fatal failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (lambda f: f.inject(FaultKind.ERROR, status=401, code=-2015), AuthenticationError),
        (lambda f: f.inject(FaultKind.IP_BANNED, path=ACCOUNT), IPBannedError),
        (lambda f: f.set_portfolio_margin(False), NotPortfolioMarginError),
    ],
    ids=["auth", "banned", "not_pm"],
)
async def test_watch_account_fatal_error_raises_out_of_the_iterator(
    setup: Any, error: type[Exception]
) -> None:
    fake = make_fake()
    setup(fake)
    async with client_of(fake) as client:
        with pytest.raises(error):
            await collect(client, 1, every=1.0)
    assert len([r for r in fake.requests if r.path == ACCOUNT]) == 1


# --- cancellation ---------------------------------------------------------------------------


async def test_watch_account_cancelled_mid_call_leaves_nothing_behind() -> None:
    fake = make_fake()
    async with client_of(fake) as client:
        items: list[Any] = []
        with anyio.move_on_after(2.5):
            async with contextlib.aclosing(client.watch_account(every=1.0)) as watch:
                async for item in watch:
                    items.append(item)
                    if len(items) == 2:
                        fake.inject(FaultKind.SLOW_RESPONSE, delay=5, path=ACCOUNT)
        assert len(items) == 2
        assert all(b.in_flight == 0 and b.waiting == 0 for b in client.rate_limit)
        info = await client.account_info()  # the client still works
    assert info.uni_mmr is not None


# --- the monitor over a scripted scenario -----------------------------------------------------


async def test_monitor_scenario_slide_and_back_gives_events_once_each() -> None:
    fake = make_fake()
    (
        Scenario()
        .at(0, uni_mmr="3.0", account_status="NORMAL")
        .ramp(60, uni_mmr="1.1")
        .at(50, account_status="MARGIN_CALL")
        .ramp(120, uni_mmr="3.0")
        .at(90, account_status="NORMAL")
        .install(fake)
    )
    events: list[tuple[str, str, int]] = []
    monitor = RiskMonitor()
    async with client_of(fake) as client:
        start = anyio.current_time()
        async with contextlib.aclosing(monitor.watch(client, every=2.0)) as watch:
            async for item in watch:
                t = round(anyio.current_time() - start)
                if isinstance(item, (Breach, Recovery)):
                    events.append((item.type, item.rule.name, t))
                elif isinstance(item, StatusChange):
                    events.append((item.type, str(item.current.value), t))
                if t >= 130:
                    break
    # uniMMR = 3.0 - 1.9 t / 60 going down (below 1.5 after 47.4 s, below 1.2 after 56.8 s),
    # 1.1 + 1.9 (t - 60) / 60 going up (1.224 at 63.9 s, 1.53 at 73.6 s).
    assert events == [
        ("breach", "tier_reminder", 48),
        ("status_change", "MARGIN_CALL", 50),
        ("breach", "tier_reduce_only", 58),
        ("recovery", "tier_reduce_only", 64),
        ("recovery", "tier_reminder", 74),
        ("status_change", "NORMAL", 90),
    ]
    assert monitor.latest is not None
    assert monitor.latest.info.uni_mmr == Decimal("3.0")
