"""The headline test of the rate limiter: saturate a budget against FakeExchange.

Scaled as decision 10 says: a UID limit of 6,000 weight per minute, 50 callers of
``account_info`` (weight 5) through the real client, five simulated minutes on a virtual
clock (asyncio and trio). The exchange counts in fixed minutes of its own clock, which is
offset from ours by an arbitrary amount, and every request and every answer travels with a
random one-way delay of 10-810 ms, so answers come back in any order. 50 callers are enough
to saturate: at the limiter's pace (~19 calls/s) and ~0.8 s per round trip, about 16 calls
are in flight (Little's law).

Claims: no 429 at all; no server minute over the limit; at least 95 % of the limit accepted
in every full minute; the exchange's ledger equals the weight the limiter let out; nobody
left queued or in flight at the end. Controls: a naive token bucket (capacity = limit) gets
429s from the same exchange (so the test can fail), and 10 % of the limit used by another
program on the same account, invisible to the limiter except through the headers, still
gets no 429.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import anyio
import httpx
import pytest
import trio.testing

import binance_pmpro.clock
from _virtual_time import VirtualEventLoop
from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.endpoints import ACCOUNT_INFO, Budget
from binance_pmpro.errors import BinanceError, RateLimitedError
from binance_pmpro.ratelimit import NS, BudgetKey, Permit, RateLimiter
from binance_pmpro.testing import FakeExchange, WindowUsage

pytestmark = pytest.mark.anyio

# Binance's clock relative to the event loop's: an arbitrary epoch time, not minute-aligned.
SERVER_OFFSET_NS = 1_700_001_234_567_891_000
MINUTE_MS = 60_000


def _trio() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def _asyncio() -> Any:
    return ("asyncio", {"loop_factory": VirtualEventLoop})


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return _trio() if request.param == "trio" else _asyncio()


class LatencyTransport(httpx.AsyncBaseTransport):
    """Delays each request on its way to the exchange and each answer on its way back by a
    random one-way latency (so the exchange's clock sees the request when it arrives)."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, rng: random.Random, *, strip_date: bool = False
    ) -> None:
        self.inner = inner
        self.rng = rng
        self.strip_date = strip_date

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await anyio.sleep(self.rng.uniform(0.010, 0.810))
        response = await self.inner.handle_async_request(request)
        if self.strip_date:
            del response.headers["date"]
        await anyio.sleep(self.rng.uniform(0.010, 0.810))
        return response


class NaiveTokenBucket:
    """The classic mistake the design warns about: capacity = limit, refill = limit / 60 s.
    Duck-types the limiter interface the client uses."""

    def __init__(self, limit: int) -> None:
        self.capacity = float(limit)
        self.rate = limit / 60.0
        self.tokens = float(limit)
        self.stamp: float | None = None

    async def acquire(self, key: BudgetKey, weight: int, **_: Any) -> Permit:
        while True:
            now = anyio.current_time()
            if self.stamp is not None:
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= weight:
                self.tokens -= weight
                return Permit(cast(RateLimiter, self), None, None, weight)
            await anyio.sleep((weight - self.tokens) / self.rate + 1e-6)  # never 0

    def snapshot(self) -> list[Any]:
        return []


@dataclass
class Run:
    fake: FakeExchange
    api_key: str
    limit: int
    start_ms: int = 0
    end_ms: int = 0
    calls: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def windows(self) -> list[WindowUsage]:
        key = self.fake.weight_key(ACCOUNT_INFO.path, account="main")
        return [u for u in self.fake.ledger if u.key == key]

    def full_windows(self) -> list[WindowUsage]:
        return [
            u
            for u in self.windows()
            if u.window_start_ms >= self.start_ms and u.window_start_ms + MINUTE_MS <= self.end_ms
        ]

    @property
    def rate_limited(self) -> int:
        return sum(u.rate_limited for u in self.windows())

    def our_weight(self) -> int:
        return sum(r.weight for r in self.fake.requests if r.api_key == self.api_key)

    def utilisation(self) -> list[float]:
        return [u.accepted_weight / self.limit for u in self.full_windows()]


async def saturate(
    monkeypatch: pytest.MonkeyPatch,
    limiter: RateLimiter | NaiveTokenBucket,
    *,
    limit: int = 6000,
    callers: int = 50,
    minutes: float = 5.0,
    foreign_share: float = 0.0,
    strip_date: bool = False,
    client_sync: bool = False,
    seed: int = 7,
) -> Run:
    """Drive ``callers`` tasks calling ``account_info`` for ``minutes`` simulated minutes."""
    rng = random.Random(seed)
    fake = FakeExchange(
        uid_limit=limit,
        clock=lambda: anyio.current_time() * 1000,
        clock_offset_ms=SERVER_OFFSET_NS / 1e6,
        max_records=1_000_000,
    )
    # The client stamps requests from the wall clock: make it the exchange's virtual one.
    monkeypatch.setattr(
        binance_pmpro.clock,
        "time",
        SimpleNamespace(time=lambda: anyio.current_time() + SERVER_OFFSET_NS / NS),
    )
    http = httpx.AsyncClient(
        transport=LatencyTransport(fake.transport(), rng, strip_date=strip_date)
    )
    client = PortfolioMarginProClient(
        api_key=fake.demo_api_key,
        api_secret=fake.demo_api_secret,
        base_url=fake.base_url,
        http_client=http,
        rate_limiter=cast(RateLimiter, limiter),
        uid_limit=limit,
        # Stamps are right already; with client_sync the client measures its clock
        # against the exchange anyway (and tells the limiter).
        time_offset_ms=None if client_sync else 0,
    )
    run = Run(fake, fake.demo_api_key, limit)
    start = anyio.current_time()
    end = start + minutes * 60
    run.start_ms = fake.now_ms()

    async def caller() -> None:
        for _ in range(100_000):  # bounded; the clock ends it long before
            if anyio.current_time() >= end:
                return
            try:
                await client.account_info()
                run.calls += 1
            except BinanceError as exc:
                run.errors.append(exc)
                await anyio.sleep(0.5)  # keep the clock moving: the test fails, not hangs

    async def foreigner() -> None:
        # Another program on the same account, not using our limiter: share * limit per
        # minute, at random moments.
        fake.add_hmac_key("F" * 64, "foreign-secret", account="main")
        other_http = httpx.AsyncClient(transport=LatencyTransport(fake.transport(), rng))
        other = PortfolioMarginProClient(
            api_key="F" * 64,
            api_secret="foreign-secret",
            base_url=fake.base_url,
            http_client=other_http,
            rate_limiter=None,
            time_offset_ms=0,
        )
        calls_per_s = foreign_share * limit / ACCOUNT_INFO.weight_for({}) / 60
        async with anyio.create_task_group() as tg:
            for _ in range(100_000):
                if anyio.current_time() >= end:
                    break
                tg.start_soon(_quietly, other.account_info)
                await anyio.sleep(rng.expovariate(calls_per_s))
        await other.aclose()
        await other_http.aclose()

    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(caller)
        if foreign_share:
            tg.start_soon(foreigner)
    run.end_ms = fake.now_ms() - 2_000  # the last requests landed by then
    await client.aclose()
    await http.aclose()
    return run


async def _quietly(call: Any) -> None:
    with contextlib.suppress(BinanceError):
        await call()


def _aligned_limiter(limit: int) -> RateLimiter:
    limiter = RateLimiter(uid_limit=limit)
    # What a clock sync would tell it: off by 30 ms, with an honest 50 ms bound.
    limiter.set_server_offset(SERVER_OFFSET_NS + 30_000_000, 50_000_000)
    return limiter


def _summary(run: Run) -> str:
    shares = ", ".join(f"{u:.1%}" for u in run.utilisation())
    return (
        f"calls={run.calls} errors={len(run.errors)} 429s={run.rate_limited} full windows={shares}"
    )


def _check_saturated(run: Run, limiter: RateLimiter) -> None:
    summary = _summary(run)
    print(summary)
    assert run.rate_limited == 0, summary
    assert not run.errors, summary
    assert all(u.weight <= run.limit for u in run.windows()), summary
    assert len(run.full_windows()) >= 3, summary
    assert min(run.utilisation()) >= 0.95, summary
    # The key the client builds: its account, the endpoint, its IP group ("default").
    key = BudgetKey(Budget.SAPI_UID, _account(limiter), ACCOUNT_INFO.path, ip_group="default")
    core = limiter.core(key)
    assert run.our_weight() == core.granted_cum, summary
    (snap,) = limiter.snapshot()
    assert snap.waiting == 0
    assert snap.in_flight == 0


def _account(limiter: RateLimiter) -> str:
    (key,) = limiter.budgets()
    return key.owner


async def test_saturation_6000_fifty_callers_zero_429s_and_95_percent_every_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = _aligned_limiter(6000)
    run = await saturate(monkeypatch, limiter)
    _check_saturated(run, limiter)


@pytest.mark.parametrize("anyio_backend", [pytest.param(_trio(), id="trio")])
async def test_saturation_naive_token_bucket_control_gets_429s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = await saturate(monkeypatch, NaiveTokenBucket(6000), minutes=2)
    print(_summary(run))
    assert run.rate_limited > 0
    assert any(u.attempted_weight > run.limit for u in run.windows())
    assert any(isinstance(e, RateLimitedError) for e in run.errors)


async def test_saturation_foreign_traffic_ten_percent_still_zero_429s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = _aligned_limiter(6000)
    run = await saturate(monkeypatch, limiter, foreign_share=0.10)
    summary = _summary(run)
    print(summary)
    assert run.rate_limited == 0, summary
    assert not run.errors, summary
    assert all(u.weight <= run.limit for u in run.windows()), summary
    # Everyone together still used the window well.
    assert min(run.utilisation()) >= 0.90, summary


@pytest.mark.parametrize("anyio_backend", [pytest.param(_asyncio(), id="asyncio")])
async def test_saturation_without_server_offset_zero_429s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = RateLimiter(uid_limit=6000)  # never told the server's clock
    run = await saturate(monkeypatch, limiter, minutes=4)
    summary = _summary(run)
    print(summary)
    assert run.rate_limited == 0, summary
    assert not run.errors, summary
    assert min(run.utilisation()) >= 0.95, summary
    # It learned the offset from the Date headers, to within the error it claims (plus the
    # exchange's whole-ms rounding).
    learned = limiter.server_offset
    assert learned is not None
    offset, error = learned
    assert abs(offset - SERVER_OFFSET_NS) <= error + 1_000_000
    assert error <= 50_000_000


@pytest.mark.parametrize("anyio_backend", [pytest.param(_asyncio(), id="asyncio")])
async def test_saturation_client_clock_sync_feeds_the_limiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = RateLimiter(uid_limit=6000)
    run = await saturate(monkeypatch, limiter, client_sync=True)
    summary = _summary(run)
    print(summary)
    assert run.rate_limited == 0, summary
    assert not run.errors, summary
    assert min(run.utilisation()) >= 0.95, summary
    learned = limiter.server_offset
    assert learned is not None
    assert abs(learned[0] - SERVER_OFFSET_NS) <= learned[1] + 1_000_000


@pytest.mark.parametrize("anyio_backend", [pytest.param(_trio(), id="trio")])
async def test_saturation_no_offset_no_date_header_learns_phase_zero_429s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing tells the limiter the server's clock: it learns the minute boundaries from
    # the used-weight header dropping, with others on the account as well.
    limiter = RateLimiter(uid_limit=6000)
    run = await saturate(monkeypatch, limiter, foreign_share=0.10, strip_date=True)
    summary = _summary(run)
    print(summary)
    assert run.rate_limited == 0, summary
    assert not run.errors, summary
    assert all(u.weight <= run.limit for u in run.windows()), summary
    assert min(run.utilisation()) >= 0.90, summary
    assert limiter.server_offset is None  # only the phase was learned


@pytest.mark.slow
async def test_saturation_full_scale_180000_seven_hundred_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ~580 calls/s at ~0.82 s per round trip: Little's law wants ~480 callers in flight,
    # plus some queued so that the limiter, not the callers, sets the pace.
    limiter = _aligned_limiter(180_000)
    run = await saturate(monkeypatch, limiter, limit=180_000, callers=700, minutes=4)
    _check_saturated(run, limiter)
