"""The per-request shortcuts of the rate limiter decide and book exactly as the long way.

``BudgetCore.take`` is ``ready_now`` + ``grant`` in one pass (what ``RateLimiter.acquire``
calls first), and a permit reads the clock of the loop it was granted on; both must change
nothing but the cost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binance_pmpro.endpoints import Budget
from binance_pmpro.ratelimit import (
    NS,
    BudgetCore,
    BudgetKey,
    Grant,
    RateLimiter,
    ServerOffset,
    _clock_of,
    _now_ns,
)
from test_ratelimit_core import PROPERTY, T0, J, _request, _Server, _simulate, _Twins, make


class _TakeTwins(_Twins):
    """``fast`` is granted through ``take`` whenever it answers (as ``acquire`` does), and
    otherwise decides as in :class:`_Twins`; ``plain`` goes through ``ready_at`` alone."""

    def __init__(self, fast: BudgetCore, plain: BudgetCore) -> None:
        super().__init__(fast, plain)
        self.taken: tuple[int, int, Grant] | None = None
        self.takes = 0

    def ready_at(self, now: int, weight: int) -> int:
        g = self.fast.take(now, weight)
        if g is None:
            return super().ready_at(now, weight)
        assert self.plain.ready_at(now, weight) <= now  # take never grants what ready_at refuses
        self.taken = (now, weight, g)
        self.takes += 1
        return now

    def grant(self, now: int, weight: int) -> Grant:
        if self.taken is None:
            return super().grant(now, weight)
        at, w, g = self.taken
        self.taken = None
        assert (at, w) == (now, weight)
        h = self.twin[id(g)] = self.plain.grant(now, weight)
        assert g.windows == h.windows
        self._agree(now)
        return g


def _twins(limit: int, phase: int, error: int, drift: int, probe: bool) -> _TakeTwins:
    window = 10 * NS
    cores = []
    for _ in range(2):
        clock = ServerOffset(drift_ppm=drift, window_ns=window)
        clock.set(phase + error, abs(error), T0)
        cores.append(make(limit, window=window, spread=J, offset=clock, probe=probe))
    return _TakeTwins(*cores)


@PROPERTY
@given(
    requests=st.lists(_request, min_size=50, max_size=250),
    limit=st.integers(200, 600),
    phase=st.integers(-(10**12), 10**12),
    error=st.integers(-50_000_000, 50_000_000),
    drift=st.sampled_from([0, 100, 20_000]),
    foreign=st.dictionaries(st.integers(0, 40), st.integers(1, 150), max_size=40),
    probe=st.booleans(),
)
def test_take_property_grants_and_books_exactly_as_ready_at_then_grant(
    requests: list[tuple[int, int, int, int, str]],
    limit: int,
    phase: int,
    error: int,
    drift: int,
    foreign: dict[int, int],
    probe: bool,
) -> None:
    twins = _twins(limit, phase, error, drift, probe)
    _simulate(twins, _Server(offset=phase, window=10 * NS), requests, foreign=foreign)  # type: ignore[arg-type]


def test_take_steady_traffic_with_room_is_granted_by_the_shortcut() -> None:
    twins = _twins(100_000, 123_456_789, 5_000_000, 100, probe=True)
    requests = [(5_000_000, 5, 1_000_000, 2_000_000, "ok")] * 400
    _simulate(twins, _Server(offset=123_456_789, window=10 * NS), requests)  # type: ignore[arg-type]
    assert twins.takes >= 350  # all but the first of each span (and the cold probe)


def test_take_clock_change_drops_the_shortcut_until_ready_now_refills_it() -> None:
    core = make(100_000, window=10 * NS, offset=ServerOffset(drift_ppm=0, window_ns=10 * NS))
    t = T0 + 3 * NS  # well inside a server window (T0 starts one at offset 0)
    core.clock.set(0, 1_000_000, t)
    assert core.take(t, 5) is None  # nothing cached yet
    assert core.ready_now(t, 5)
    core.grant(t, 5)  # creates the window (which drops the cache again)
    assert core.ready_now(t + 1, 5)
    assert core.take(t + 2, 5) is not None
    core.clock.set(0, 2_000_000, t + 3)
    assert core.take(t + 4, 5) is None
    assert core.ready_now(t + 5, 5)
    assert core.take(t + 6, 5) is not None


class _PatchedLoop(asyncio.SelectorEventLoop):
    def time(self) -> float:
        return 1234.5


@pytest.mark.parametrize("kind", ["plain", "subclass", "instance"])
def test_clock_of_loop_reads_asyncio_clock_directly_only_when_time_is_asyncios(
    kind: str,
) -> None:
    loop: Any = _PatchedLoop() if kind == "subclass" else asyncio.new_event_loop()
    try:
        if kind == "instance":
            loop.time = lambda: 99.0
        assert asyncio.get_event_loop_policy() is not None

        async def probe() -> tuple[Any, int]:
            now = _now_ns()  # (also what binds asyncio's clock for _clock_of)
            return _clock_of(loop), now

        clock, now = loop.run_until_complete(probe())
        if kind == "plain":
            assert clock is None  # time.monotonic_ns(): the clock BaseEventLoop.time reads
        else:
            assert clock is loop
            assert now == (1_234_500_000_000 if kind == "subclass" else 99 * NS)
    finally:
        loop.close()


@pytest.mark.anyio
async def test_permit_times_follow_the_running_loop_clock() -> None:
    lim = RateLimiter(uid_limit=10**9)
    key = BudgetKey(Budget.SAPI_UID, "clock", "/sapi/v1/portfolio/account")
    before = _now_ns()
    permit = await lim.acquire(key, 5)
    async with permit:
        permit.mark_sent()
        after = _now_ns()
        assert before <= permit.granted_at <= permit.sent_at <= after
        permit.observe(200, {"x-sapi-used-uid-weight-1m": "5"})
    assert lim.core(key).outstanding == 0
