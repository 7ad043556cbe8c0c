"""The async limiter on virtual clocks (trio's MockClock, a virtual asyncio loop): FIFO,
priorities, cancellation at any point without leaked weight, ``max_wait``, 429 and 418."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import pytest
import trio.testing

from _virtual_time import VirtualEventLoop
from binance_pmpro.endpoints import Budget
from binance_pmpro.errors import (
    ConnectError,
    IPBannedError,
    RateLimitTimeoutError,
    ReadTimeoutError,
)
from binance_pmpro.ratelimit import NS, BudgetCore, BudgetKey, Permit, Priority, RateLimiter

pytestmark = pytest.mark.anyio

UID = BudgetKey(Budget.SAPI_UID, "acct", "/sapi/v1/portfolio/account")
IP = BudgetKey(Budget.SAPI_IP, "default", "/sapi/v1/some/ip/endpoint")
API = BudgetKey(Budget.API_IP, "default", "")
OTHER_IP = BudgetKey(Budget.SAPI_UID, "acct", "/sapi/v1/portfolio/account", ip_group="other")
HEADER = "x-sapi-used-uid-weight-1m"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualEventLoop})


def limiter(**kw: Any) -> RateLimiter:
    kw.setdefault("uid_limit", 600)  # effective 594, burst 2: every weight-5 grant is paced
    kw.setdefault("probe", False)
    return RateLimiter(**kw)


def step(core: BudgetCore, weight: int = 5) -> float:
    """Seconds the pacer spaces two grants of ``weight`` once the burst is spent."""
    return weight * core.span / (core.effective - core.burst) / NS


async def sent(permit: Permit, status: int = 200, headers: dict[str, str] | None = None) -> None:
    """Play one exchange on ``permit``: mark sent, answer."""
    async with permit:
        permit.mark_sent()
        permit.observe(status, headers or {})


async def start_waiters(
    tg: anyio.abc.TaskGroup,
    lim: RateLimiter,
    specs: list[tuple[BudgetKey, int, Priority]],
    order: list[int],
    *,
    hold: bool = False,
) -> None:
    """Start one task per spec, each queued before the next starts; each appends its index
    to ``order`` when granted."""

    async def one(i: int, key: BudgetKey, weight: int, prio: Priority, *, task_status: Any) -> None:
        task_status.started()
        permit = await lim.acquire(key, weight, priority=prio)
        order.append(i)
        if not hold:
            await sent(permit)

    for i, (key, weight, prio) in enumerate(specs):
        await tg.start(one, i, key, weight, prio)


# --- basics ----------------------------------------------------------------------------------


async def test_acquire_uncontended_grants_without_waiting() -> None:
    lim = limiter(uid_limit=180_000)
    start = anyio.current_time()
    for _ in range(100):  # the burst of 180,000 * 0.99 * 0.005 = 891 covers 178 calls
        await sent(await lim.acquire(UID, 5))
    assert anyio.current_time() == start
    assert lim.core(UID).granted_cum == 500


async def test_acquire_saturated_paces_through_the_window_not_burst_then_wait() -> None:
    lim = limiter()
    core = lim.core(UID)
    times = []
    for _ in range(60):
        await sent(await lim.acquire(UID, 5))
        times.append(anyio.current_time())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == pytest.approx(step(core), abs=2e-6)
    assert min(gaps) == pytest.approx(step(core), abs=2e-6)


async def test_acquire_weight_above_limit_raises_value_error() -> None:
    lim = limiter()
    with pytest.raises(ValueError, match="exceeds"):
        await lim.acquire(UID, 600)


# --- FIFO and priorities --------------------------------------------------------------------


async def test_acquire_fifo_waiters_are_granted_in_arrival_order_heavy_head_not_overtaken() -> None:
    lim = limiter()
    weights = [5, 5, 5, 200, 5, 1, 5, 5, 50, 5, 5, 5, 1, 5, 5, 5, 5, 5, 5, 5]
    order: list[int] = []
    async with anyio.create_task_group() as tg:
        await start_waiters(tg, lim, [(UID, w, Priority.NORMAL) for w in weights], order)
    assert order == list(range(len(weights)))
    assert lim.core(UID).granted_cum == sum(weights)


async def test_acquire_high_priority_goes_before_queued_normal_fifo_within_class() -> None:
    lim = limiter()
    order: list[int] = []
    specs = [(UID, 5, Priority.NORMAL)] * 6 + [(UID, 5, Priority.HIGH)] * 3
    async with anyio.create_task_group() as tg:
        await start_waiters(tg, lim, specs, order)
    # The first NORMAL was granted at once (empty budget); the three HIGH come next, in
    # their own order, then the rest of the NORMAL ones in theirs.
    assert order == [0, 6, 7, 8, 1, 2, 3, 4, 5]


async def test_acquire_light_newcomer_does_not_overtake_a_heavy_head() -> None:
    lim = limiter()
    core = lim.core(UID)
    await sent(await lim.acquire(UID, 5))
    order: list[str] = []

    async def heavy(*, task_status: Any) -> None:
        task_status.started()
        await sent(await lim.acquire(UID, 100))  # needs the pacer fully drained
        order.append("heavy")

    async with anyio.create_task_group() as tg:
        await tg.start(heavy)
        # Shortly before the heavy head is due, weight 1 would already fit the burst.
        await anyio.sleep(step(core) * 0.9)
        assert core.ready_at(int(anyio.current_time() * NS), 1) <= anyio.current_time() * NS
        await sent(await lim.acquire(UID, 1))
        order.append("light")
    assert order == ["heavy", "light"]


@pytest.mark.parametrize("queued", [False, True])
async def test_acquire_cancelled_at_the_moment_of_grant_loses_no_permit(queued: bool) -> None:
    lim = limiter()
    core = lim.core(UID)
    if queued:
        await sent(await lim.acquire(UID, 5))  # the next one has to wait in line
    original = core.grant
    with anyio.CancelScope() as scope:

        def grant_then_cancel(now: int, weight: int) -> Any:
            # The cancellation arrives in the very step that commits the grant.
            granted = original(now, weight)
            scope.cancel()
            return granted

        core.grant = grant_then_cancel  # type: ignore[method-assign]
        permit = await lim.acquire(UID, 5)
        async with permit:  # the caller still gets the permit, and gives it back unsent
            await anyio.sleep(1)
    assert scope.cancelled_caught
    assert core.outstanding == 0
    assert core.granted_cum == (5 if queued else 0)


async def test_acquire_budgets_are_independent() -> None:
    lim = limiter(ip_limit=600)
    order: list[str] = []

    async def use(key: BudgetKey, name: str, n: int) -> None:
        for _ in range(n):
            await sent(await lim.acquire(key, 5))
            order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use, UID, "uid", 10)
        tg.start_soon(use, IP, "ip", 10)
    assert order.count("uid") == order.count("ip") == 10
    # Each ran at its own pace: they interleave rather than one waiting for the other.
    assert set(order[:4]) == {"uid", "ip"}


# --- cancellation ---------------------------------------------------------------------------


async def test_acquire_cancelled_queued_waiter_consumes_nothing_and_keeps_order() -> None:
    lim = limiter()
    order: list[int] = []
    scopes: dict[int, anyio.CancelScope] = {}

    async def one(i: int, *, task_status: Any) -> None:
        with anyio.CancelScope() as scope:
            scopes[i] = scope
            task_status.started()
            permit = await lim.acquire(UID, 5)
            order.append(i)
            await sent(permit)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            await tg.start(one, i)
        scopes[4].cancel()
        scopes[7].cancel()
    assert order == [0, 1, 2, 3, 5, 6, 8, 9]
    assert lim.core(UID).granted_cum == 40
    assert lim.snapshot()[0].waiting == 0


async def test_acquire_cancelled_head_next_waiter_takes_over_at_the_same_time() -> None:
    lim = limiter()
    core = lim.core(UID)
    await sent(await lim.acquire(UID, 5))
    t0 = anyio.current_time()
    due = t0 + step(core)  # when the head would have been granted
    granted: dict[str, float] = {}

    async def head(*, task_status: Any) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await lim.acquire(UID, 5)
            granted["head"] = anyio.current_time()

    async def second(*, task_status: Any) -> None:
        task_status.started()
        await sent(await lim.acquire(UID, 5))
        granted["second"] = anyio.current_time()

    async with anyio.create_task_group() as tg:
        scope = await tg.start(head)
        await tg.start(second)
        await anyio.sleep(step(core) / 2)
        scope.cancel()
    assert "head" not in granted
    assert granted["second"] == pytest.approx(due, abs=2e-6)
    assert core.granted_cum == 10


async def test_permit_released_before_sending_is_refunded() -> None:
    lim = limiter()
    core = lim.core(UID)
    with anyio.CancelScope() as scope:
        permit = await lim.acquire(UID, 5)
        async with permit:
            scope.cancel()
            await anyio.sleep(1)  # cancelled while "signing": never sent
    assert core.granted_cum == 0
    assert core.outstanding == 0
    assert core.log_weight == 0


async def test_permit_transport_error_not_sent_is_refunded_sent_is_kept() -> None:
    lim = limiter()
    core = lim.core(UID)
    with pytest.raises(ConnectError):
        await failing_exchange(lim, ConnectError("refused"))
    assert core.granted_cum == 0
    with pytest.raises(ReadTimeoutError):
        await failing_exchange(lim, ReadTimeoutError("slow"))
    assert core.granted_cum == 5
    with pytest.raises(RuntimeError):
        await failing_exchange(lim, RuntimeError("cancelled during send, or anything else"))
    assert core.granted_cum == 10
    assert core.outstanding == 0


async def failing_exchange(lim: RateLimiter, error: Exception) -> None:
    async with await lim.acquire(UID, 5) as permit:
        permit.mark_sent()
        raise error


@pytest.mark.parametrize("seed", [1, 2])
async def test_acquire_stress_random_cancellations_leak_no_weight(seed: int) -> None:
    rng = random.Random(seed)
    lim = limiter(uid_limit=1200)
    core = lim.core(UID)
    spent = 0
    cancelled = 0

    async def caller() -> None:
        nonlocal spent, cancelled
        with anyio.move_on_after(rng.uniform(0, 20)) as scope:
            await anyio.sleep(rng.uniform(0, 10))
            permit = await lim.acquire(UID, rng.choice([1, 5, 5, 5, 20]))
            async with permit:
                await anyio.sleep(rng.choice([0, 0, 0.01, 0.2]))
                permit.mark_sent()
                spent += permit.weight
                await anyio.sleep(rng.uniform(0, 0.5))
                permit.observe(200, {})
        cancelled += scope.cancelled_caught

    async with anyio.create_task_group() as tg:
        for _ in range(400):
            tg.start_soon(caller)
    assert cancelled > 50  # the test does exercise cancellation
    assert core.granted_cum == spent
    assert core.outstanding == 0
    assert lim.snapshot()[0].waiting == 0


async def test_acquire_wakeups_per_grant_are_bounded() -> None:
    lim = limiter()
    core = lim.core(UID)
    calls = 0
    original: Callable[[int, int], int] = core.ready_at

    def counting(now: int, weight: int) -> int:
        nonlocal calls
        calls += 1
        return original(now, weight)

    core.ready_at = counting  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(lambda: _use(lim, 4))
    assert core.granted_cum == 50 * 4 * 5
    assert calls <= 4 * 200  # no busy loop: a few evaluations per grant at most


async def _use(lim: RateLimiter, n: int) -> None:
    for _ in range(n):
        await sent(await lim.acquire(UID, 5))


# --- max_wait -------------------------------------------------------------------------------


async def test_acquire_max_wait_raises_at_once_when_the_wait_is_known_to_be_longer() -> None:
    lim = limiter()
    core = lim.core(UID)
    order: list[int] = []
    async with anyio.create_task_group() as tg:
        # One granted at once, four queued: the fifth would wait about five pacing steps.
        await start_waiters(tg, lim, [(UID, 5, Priority.NORMAL)] * 5, order)
        start = anyio.current_time()
        with pytest.raises(RateLimitTimeoutError) as info:
            await lim.acquire(UID, 5, max_wait=step(core) * 4.5)
        assert anyio.current_time() == start
        assert info.value.wait is not None
        assert info.value.wait == pytest.approx(step(core) * 5, abs=1e-3)
    assert order == [0, 1, 2, 3, 4]
    assert core.granted_cum == 25


async def test_acquire_max_wait_queued_waiter_gives_up_at_deadline_without_leak() -> None:
    lim = limiter()
    core = lim.core(UID)
    order: list[int] = []
    outcome: dict[str, float] = {}

    async def patient(*, task_status: Any) -> None:
        task_status.started()
        start = anyio.current_time()
        try:
            await lim.acquire(UID, 5, max_wait=step(core) * 3.5)
        except RateLimitTimeoutError:
            outcome["gave_up_after"] = anyio.current_time() - start

    async with anyio.create_task_group() as tg:
        await start_waiters(tg, lim, [(UID, 5, Priority.NORMAL)] * 3, order)
        await tg.start(patient)  # three pacing steps away: fits its max_wait
        # Then three HIGH callers jump the queue: it cannot make it any more.
        await start_waiters(tg, lim, [(UID, 5, Priority.HIGH)] * 3, order)
    assert outcome["gave_up_after"] == pytest.approx(step(core) * 3.5, abs=1e-3)
    assert len(order) == 6  # everyone else got through
    assert core.granted_cum == 30
    assert lim.snapshot()[0].waiting == 0


async def test_acquire_max_wait_zero_grants_when_free() -> None:
    lim = limiter()
    permit = await lim.acquire(UID, 1, max_wait=0)
    await sent(permit)
    with pytest.raises(RateLimitTimeoutError):
        await lim.acquire(UID, 5, max_wait=0)


# --- 429 and 418 ----------------------------------------------------------------------------


async def test_429_pauses_every_caller_until_retry_after_then_resumes_paced() -> None:
    lim = limiter()
    core = lim.core(UID)
    grants: list[float] = []

    async def caller() -> None:
        # Weight 1 fits the burst (2): without care, the pause would end in a burst.
        await sent(await lim.acquire(UID, 1))
        grants.append(anyio.current_time())

    first = await lim.acquire(UID, 5)
    first.mark_sent()
    t429 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(caller)
        await anyio.sleep(0.01)
        assert grants == []
        async with first:
            first.observe(429, {"retry-after": "7"})
    resume = t429 + 7.01
    assert len(grants) == 8
    assert all(g >= resume - 1e-6 for g in grants)
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert min(gaps) >= step(core, 1) - 2e-6  # no thundering herd: paced after the pause


async def test_429_without_retry_after_and_known_offset_waits_for_the_server_minute() -> None:
    lim = limiter()
    now_ns = int(anyio.current_time() * NS)
    offset = 1_234_567_000_000 - now_ns  # an arbitrary server clock
    lim.set_server_offset(offset, 20_000_000)
    permit = await lim.acquire(UID, 5)
    async with permit:
        permit.mark_sent()
        permit.observe(429, {})
    start = anyio.current_time()
    await sent(await lim.acquire(UID, 5))
    server_now = start * NS + offset
    minute_end = (server_now // (60 * NS) + 1) * 60 * NS
    assert anyio.current_time() * NS + offset >= minute_end


async def test_418_raises_ip_banned_at_once_on_every_budget_of_the_group() -> None:
    lim = limiter(ip_limit=600, api_limit=600)
    errors: dict[str, BaseException] = {}

    async def waiter(name: str, key: BudgetKey) -> None:
        try:
            await lim.acquire(key, 5, max_wait=None)
        except IPBannedError as exc:
            errors[name] = exc

    # Spend the bursts so that callers queue.
    await sent(await lim.acquire(UID, 5))
    victim = await lim.acquire(UID, 5)
    victim.mark_sent()
    await sent(await lim.acquire(IP, 5))
    banned_at = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "queued-uid", UID)
        tg.start_soon(waiter, "queued-uid-2", UID)
        tg.start_soon(waiter, "queued-ip", IP)
        await anyio.sleep(0)
        async with victim:
            victim.observe(418, {"retry-after": "120"})
    assert set(errors) == {"queued-uid", "queued-uid-2", "queued-ip"}
    assert anyio.current_time() == pytest.approx(banned_at, abs=1e-3)
    for key in (UID, IP, API):
        with pytest.raises(IPBannedError) as info:
            await lim.acquire(key, 5, max_wait=3600)
        assert info.value.retry_after == pytest.approx(120, abs=0.1)
        assert info.value.banned_until is not None
        assert info.value.status == 418
    # Another egress IP is not banned.
    await sent(await lim.acquire(OTHER_IP, 5))
    snap = {s.key: s for s in lim.snapshot()}
    assert snap[UID].banned
    assert snap[UID].paused_for == pytest.approx(120, abs=0.1)
    await anyio.sleep(121)
    await sent(await lim.acquire(UID, 5))
    await sent(await lim.acquire(IP, 5))


# --- reconciliation in the async layer ------------------------------------------------------


async def test_server_reported_full_window_holds_callers_until_it_ends() -> None:
    lim = limiter()
    now_ns = int(anyio.current_time() * NS)
    offset = 60 * NS * 1000 - now_ns + 30 * NS  # the server is 30 s into a minute
    lim.set_server_offset(offset, 10_000_000)
    permit = await lim.acquire(UID, 5)
    async with permit:
        permit.mark_sent()
        await anyio.sleep(0.1)
        permit.observe(200, {HEADER: "590"})  # others used almost all of it
    await sent(await lim.acquire(UID, 5))
    # Not before the server's minute ended (plus the error bound).
    assert anyio.current_time() * NS + offset >= 60 * NS * 1001


async def test_snapshot_reports_use_waiting_pause_and_server_figure() -> None:
    lim = limiter()
    assert lim.snapshot() == []
    permit = await lim.acquire(UID, 5)
    async with permit:
        permit.mark_sent()
        permit.observe(200, {HEADER: "123"})
    (snap,) = lim.snapshot()
    assert snap.key == UID
    assert snap.limit == 600
    assert snap.effective_limit == 594
    assert snap.server_used == 123
    assert snap.used >= 123
    assert snap.remaining == 594 - snap.used
    assert snap.waiting == 0
    assert snap.paused_for == 0
    assert snap.in_flight == 0
    assert not snap.banned


async def test_cold_probe_sends_one_request_first_then_opens_up() -> None:
    lim = RateLimiter(uid_limit=180_000)  # probe on (the default)
    first = await lim.acquire(UID, 5)
    granted: list[float] = []

    async def other() -> None:
        await sent(await lim.acquire(UID, 5))
        granted.append(anyio.current_time())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(other)
        await anyio.sleep(0.3)
        assert granted == []  # waiting for the probe's answer
        async with first:
            first.mark_sent()
            first.observe(200, {HEADER: "5"})
    assert granted == [pytest.approx(start + 0.3, abs=1e-3)] * 5
