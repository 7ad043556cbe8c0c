"""Mixed weights on one IP budget (issue 10): weight 1, 50 and 1,500 calls together, scaled
(Decision 10: a limit of 6,000 per minute, three simulated minutes on a virtual clock, the
in-process FakeExchange) on asyncio and trio.

The exchange counts every IP-limited endpoint of the IP on one budget (``ip_total``), and the
client is told to do the same (Decision 1: "a configured group of endpoints"): the asset
index price with and without ``asset`` (1 and 50) and the 1,500-weight reads (delta mode,
margin-call level) share one budget. Light and medium callers keep a stream going the whole
time; heavy callers must still get through.

Claims: no 429; no server minute over the limit; every heavy call granted within one
window's span of asking (it waits for its whole weight, FIFO, and is not starved); heavy
calls complete in every minute while the light stream goes on; at least 75 % of the limit
accepted in every full minute (Decision 3: (limit - heaviest) / limit).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
import trio.testing

import binance_pmpro.clock
from _portfolio import Client
from _virtual_time import VirtualEventLoop
from binance_pmpro.endpoints import Budget
from binance_pmpro.errors import BinanceError, RateLimitedError
from binance_pmpro.ratelimit import NS, RateLimiter
from binance_pmpro.testing import FakeExchange, WindowUsage

pytestmark = pytest.mark.anyio

LIMIT = 6_000
MINUTES = 3
SERVER_EPOCH_S = 1_700_000_017.25  # Binance's clock at virtual time 0: not minute-aligned
MINUTE_MS = 60_000


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualEventLoop})


class LatencyTransport(httpx.AsyncBaseTransport):
    """A random one-way delay each way, so answers come back out of order."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rng: random.Random) -> None:
        self.inner = inner
        self.rng = rng

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await anyio.sleep(self.rng.uniform(0.05, 0.3))
        response = await self.inner.handle_async_request(request)
        await anyio.sleep(self.rng.uniform(0.05, 0.3))
        return response


@dataclass
class Stats:
    waits: dict[int, list[float]] = field(default_factory=lambda: {1: [], 50: [], 1500: []})
    done: dict[int, list[float]] = field(default_factory=lambda: {1: [], 50: [], 1500: []})
    errors: list[BaseException] = field(default_factory=list)


@dataclass
class Run:
    fake: FakeExchange
    stats: Stats
    started: float
    end: float

    def ledger(self) -> list[WindowUsage]:
        return [u for u in self.fake.ledger if u.key.budget is Budget.SAPI_IP]

    def full_windows(self) -> list[WindowUsage]:
        start_ms = (self.started + SERVER_EPOCH_S) * 1000
        end_ms = (self.end + SERVER_EPOCH_S) * 1000
        return [
            u
            for u in self.ledger()
            if u.window_start_ms >= start_ms and u.window_start_ms + MINUTE_MS <= end_ms
        ]

    def summary(self) -> str:
        stats = self.stats
        return (
            f"calls={ {w: len(d) for w, d in stats.done.items()} } "
            f"max waits={ {w: round(max(v), 1) for w, v in stats.waits.items() if v} } "
            f"windows={[(u.accepted_weight, u.rate_limited) for u in self.ledger()]} "
            f"errors={len(stats.errors)}"
        )


async def run(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Run:
    """Light (weight 1), medium (50) and heavy (1,500) callers on one IP budget for
    MINUTES simulated minutes; ``options`` go to the client."""
    rng = random.Random(10)
    fake = FakeExchange(
        ip_limit=LIMIT,
        ip_total=True,
        clock=lambda: (anyio.current_time() + SERVER_EPOCH_S) * 1000,
        max_records=1_000_000,
    )
    monkeypatch.setattr(
        binance_pmpro.clock,
        "time",
        SimpleNamespace(time=lambda: anyio.current_time() + SERVER_EPOCH_S),
    )
    stats = Stats()
    started = anyio.current_time()
    end = started + MINUTES * 60
    async with (
        httpx.AsyncClient(transport=LatencyTransport(fake.transport(), rng)) as http,
        Client(
            fake.demo_api_key,
            fake.demo_api_secret,
            base_url=fake.base_url,
            http_client=http,
            ip_total=True,  # one budget for every IP-limited endpoint, as the fake here counts
            time_offset_ms=0,
            max_wait=600,
            **options,
        ) as client,
    ):
        calls: dict[int, list[Callable[[], Awaitable[Any]]]] = {
            1: [lambda: client.asset_index_price(asset="BTC")],
            50: [lambda: client.asset_index_price()],
            1500: [lambda: client.delta_mode(), lambda: client.margin_call_level()],
        }

        async def caller(weight: int, index: int) -> None:
            call = calls[weight][index % len(calls[weight])]
            for _ in range(10_000):  # bounded; the virtual clock ends it long before
                asked = anyio.current_time()
                if asked >= end:
                    return
                try:
                    await call()
                except BinanceError as exc:
                    stats.errors.append(exc)
                    return
                now = anyio.current_time()
                stats.waits[weight].append(now - asked)
                stats.done[weight].append(now - started)

        async with anyio.create_task_group() as group:
            for weight, tasks in ((1, 4), (50, 3), (1500, 3)):
                for index in range(tasks):
                    group.start_soon(caller, weight, index)
    return Run(fake, stats, started, end)


def _aligned_limiter() -> RateLimiter:
    limiter = RateLimiter(ip_limit=LIMIT)
    # What a clock sync tells it (off by 30 ms, with an honest 50 ms bound).
    limiter.set_server_offset(round(SERVER_EPOCH_S * NS) + 30_000_000, 50_000_000)
    return limiter


def _check(result: Run) -> None:
    stats, summary = result.stats, result.summary()
    print(summary)
    assert not stats.errors, summary
    assert sum(u.rate_limited for u in result.ledger()) == 0, summary
    assert 429 not in {r.status for r in result.fake.requests}, summary
    assert result.fake.windows_over_limit() == [], summary
    assert {r.weight for r in result.fake.requests if r.path.startswith("/sapi")} == {1, 50, 1500}
    # No starvation: every heavy call was granted within one span of the limiter (61 s: the
    # window plus the arrival spread) plus its round trip, although light and medium calls
    # kept arriving; it never waited longer than the light calls; heavy and light calls
    # completed in every minute.
    assert len(stats.done[1500]) >= MINUTES * 3, summary
    assert max(stats.waits[1500]) < 62.0, summary
    assert max(stats.waits[1500]) <= max(stats.waits[1]) + 1.0, summary
    for minute in range(MINUTES):
        for weight in (1, 1500):
            done = [t for t in stats.done[weight] if minute * 60 <= t < (minute + 1) * 60]
            assert done, (weight, minute, summary)
    full = result.full_windows()
    assert len(full) >= MINUTES - 1, summary
    assert all(u.accepted_weight >= 0.75 * LIMIT for u in full), summary


async def test_mixed_weights_one_ip_budget_no_429_no_starvation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _check(await run(monkeypatch, rate_limiter=_aligned_limiter()))


async def test_mixed_weights_default_client_limiter_safe_without_server_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client does not pass its clock offset to its limiter today, so the limiter runs
    # offset-free: still safe, but it idles longer after a full server minute (on trio this
    # run has a minute with 1,500 of 6,000 accepted and ~106 s waits), so only safety is
    # claimed here.
    result = await run(monkeypatch, ip_limit=LIMIT)
    print(result.summary())
    assert not result.stats.errors, result.summary()
    assert sum(u.rate_limited for u in result.ledger()) == 0, result.summary()
    assert result.fake.windows_over_limit() == [], result.summary()
    assert len(result.stats.done[1500]) >= MINUTES * 2, result.summary()


async def test_mixed_weights_without_limiter_control_gets_429(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = await run(monkeypatch, rate_limiter=None)
    assert sum(u.rate_limited for u in result.ledger()) > 0, result.summary()
    assert any(isinstance(e, RateLimitedError) for e in result.stats.errors)
