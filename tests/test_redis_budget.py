"""RedisRateLimiter against a real redis-server on 127.0.0.1, on asyncio and trio.

Two limiter instances on one Redis stand for two processes (each has its own process id,
heartbeat and queue); the multi-process proofs with FakeExchange live elsewhere. Timing is
real (sockets and a virtual clock do not mix), so these tests assert order and safety, and
durations only as generous bounds derived from the configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from _redis import RedisServer
from binance_pmpro import (
    ConfigurationError,
    IPBannedError,
    PortfolioMarginProClient,
    Priority,
    RateLimiter,
    RateLimitTimeoutError,
    SharedBudgetUnavailableError,
)
from binance_pmpro.endpoints import ACCOUNT_INFO, Budget
from binance_pmpro.ratelimit import BudgetKey, Limiter
from binance_pmpro.redis_budget import RedisPermit, RedisRateLimiter
from binance_pmpro.testing import FakeExchange

pytestmark = pytest.mark.anyio

UID = BudgetKey(Budget.SAPI_UID, "acct-1", "/sapi/v1/portfolio/account")
UID_OTHER = BudgetKey(Budget.SAPI_UID, "acct-1", "/sapi/v1/portfolio/balance")
IP = BudgetKey(Budget.SAPI_IP, "default", "/sapi/v1/portfolio/repay-futures-switch")
OTHER_GROUP = BudgetKey(Budget.SAPI_IP, "host-b", "/sapi/v1/portfolio/repay-futures-switch")

# 600 weight per 2 s window: effective 594, burst 2, so weight 5 is paced one at a time
# every ~18 ms. Small numbers keep every test well under a second of waiting.
SMALL: dict[str, Any] = {"uid_limit": 600, "ip_limit": 600, "window": 2.0, "arrival_spread": 0.1}


@asynccontextmanager
async def limiter(url: str, **options: Any) -> AsyncIterator[RedisRateLimiter]:
    # A generous Redis timeout: a loaded CI machine must not look like a Redis outage
    # (the outage tests set a short one).
    options = {**SMALL, "heartbeat": 0.2, "timeout": 2.0, **options}
    lim = RedisRateLimiter(url, **options)
    try:
        yield lim
    finally:
        with anyio.fail_after(10):
            await lim.aclose()


async def take(lim: RedisRateLimiter, key: BudgetKey = UID, weight: int = 5, **kw: Any) -> None:
    """Acquire and send (the weight stays spent)."""
    permit = await lim.acquire(key, weight, **kw)
    async with permit:
        permit.mark_sent()
        permit.observe(200, {})


async def pause(lim: RedisRateLimiter, seconds: float, key: BudgetKey = UID) -> None:
    """A 429 with Retry-After: the budget pauses for every process."""
    permit = await lim.acquire(key, 5)
    async with permit:
        permit.mark_sent()
        permit.observe(429, {"retry-after": str(seconds)})


def budget_of(lim: RedisRateLimiter, key: BudgetKey = UID) -> Any:
    return lim._budget(key)


async def queued(lim: RedisRateLimiter, key: BudgetKey = UID) -> int:
    return int(await lim._redis.zcard(budget_of(lim, key).q))


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.005)


# --- basics -----------------------------------------------------------------------------


async def test_redis_limiter_satisfies_limiter_protocol_and_grants(redis_url: str) -> None:
    async with limiter(redis_url) as lim:
        assert isinstance(lim, RedisRateLimiter)
        as_protocol: Limiter = lim  # the client's type for rate_limiter=
        permit = await as_protocol.acquire(UID, 5)
        assert isinstance(permit, RedisPermit)
        async with permit:
            permit.mark_sent()
        assert lim.mode == "shared"
        seq = await lim._redis.hget(budget_of(lim).s, "seq")
        assert seq == b"1"


async def test_redis_limiter_paced_never_over_limit_in_any_window(redis_url: str) -> None:
    # 20 tasks ask for 5 each as fast as they can for ~1.2 s across two "processes": the
    # grants, stamped on one clock, never put more than the effective limit into any
    # interval of window + spread, and the start is paced, not a burst.
    grants: list[float] = []
    async with limiter(redis_url) as a, limiter(redis_url) as b:

        async def worker(lim: RedisRateLimiter) -> None:
            while anyio.current_time() < stop:
                await take(lim)
                grants.append(anyio.current_time())

        stop = anyio.current_time() + 1.2
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(worker, a if i % 2 else b)
    params = budget_of(a).params
    span = 2.1
    grants.sort()
    for i, t in enumerate(grants):
        inside = sum(1 for u in grants[i:] if u - t < span)
        assert inside * 5 <= params.effective
    first = grants[0]
    early = sum(1 for t in grants if t - first < 0.2)
    rate = params.den / span  # weight per second
    assert early * 5 <= params.burst + 5 + rate * 0.2 + 3 * 5  # paced (+ loop jitter)
    assert len(grants) * 5 >= rate * 1.0 * 0.5  # and it does make progress


async def test_redis_limiter_rejects_weight_over_effective_limit(redis_url: str) -> None:
    async with limiter(redis_url) as lim:
        with pytest.raises(ValueError, match="effective limit"):
            await lim.acquire(UID, 595)
        with pytest.raises(ValueError, match="positive"):
            await lim.acquire(UID, 0)


async def test_redis_limiter_heavy_weight_waits_for_the_hard_cap(redis_url: str) -> None:
    async with limiter(redis_url) as lim:
        await take(lim, weight=400)
        # 400 + 400 > 594 within one span: the second waits (about a span), and says so.
        with pytest.raises(RateLimitTimeoutError) as info:
            await lim.acquire(UID, 400, max_wait=0.2)
        assert info.value.wait is not None
        assert 1.0 < info.value.wait <= 2.2
        assert await queued(lim) == 0  # the refused waiter left no ticket


# --- priorities and FIFO across processes -----------------------------------------------


async def test_redis_limiter_fifo_across_processes(redis_url: str) -> None:
    order: list[str] = []
    async with limiter(redis_url) as a, limiter(redis_url) as b:
        await pause(a, 0.5)  # everyone queues until the pause ends

        async def one(lim: RedisRateLimiter, name: str) -> None:
            await take(lim)
            order.append(name)

        async with anyio.create_task_group() as tg:
            for n, (lim, name) in enumerate([(a, "a1"), (b, "b1"), (a, "a2"), (b, "b2")]):
                tg.start_soon(one, lim, name)
                # Each holds its ticket before the next one asks.
                await wait_until(lambda n=n: _count(a, n + 1))
    assert order == ["a1", "b1", "a2", "b2"]


async def _count(lim: RedisRateLimiter, n: int) -> bool:
    return await queued(lim) >= n


async def test_redis_limiter_high_priority_goes_before_queued_normal(redis_url: str) -> None:
    order: list[str] = []
    async with limiter(redis_url) as a, limiter(redis_url) as b:
        await pause(a, 0.5)

        async def one(lim: RedisRateLimiter, name: str, priority: Priority) -> None:
            await take(lim, priority=priority)
            order.append(name)

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, a, f"n{i}", Priority.NORMAL)
            await wait_until(lambda: _count(a, 6))
            tg.start_soon(one, b, "high", Priority.HIGH)
    # Another process's HIGH call, queued last, overtakes every NORMAL waiter.
    assert order[0] == "high"


async def test_redis_limiter_crashed_process_ticket_expires(redis_url: str) -> None:
    async with limiter(redis_url, heartbeat=0.1) as b:
        # A ticket of a process that died: at the head, never renewed.
        lease_ms = b._lease_ms
        await take(b)
        budget = budget_of(b)
        r = b._redis
        await r.zadd(budget.q, {"dead:1:5": 1})
        now_ms = int((await r.time())[0].timestamp() * 1000) if False else None
        del now_ms
        await r.zadd(budget.lease, {"dead:1:5": 0})  # lease long over
        await take(b, max_wait=1.0)  # not blocked by it
        assert await r.zscore(budget.q, "dead:1:5") is None
        assert lease_ms >= 1000


# --- cancellation -------------------------------------------------------------------------


async def test_redis_limiter_cancelled_waiters_leak_no_weight_and_no_ticket(
    redis_url: str,
) -> None:
    got = 0
    async with limiter(redis_url) as lim:
        # Connected first: the short timeouts below are for waiting, not for connecting
        # (on a loaded machine the connection alone can outlast them all).
        await take(lim)

        async def one(delay: float) -> None:
            nonlocal got
            with anyio.move_on_after(delay):
                permit = await lim.acquire(UID, 5)
                async with permit:
                    permit.mark_sent()
                got += 1

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, (i % 10) * 0.007)
            tg.start_soon(one, 30.0)  # one that surely gets through, behind the others
        budget = budget_of(lim)
        r = lim._redis
        assert lim.mode == "shared"
        assert await r.zcard(budget.q) == 0
        log_sum = int(await r.hget(budget.log, "sum") or 0)
        # Every grant kept is a request sent (the first one included), nothing else.
        assert log_sum == (got + 1) * 5
        assert 0 < got < 41


async def test_redis_limiter_unsent_permit_is_refunded(redis_url: str) -> None:
    async with limiter(redis_url) as lim:
        permit = await lim.acquire(UID, 5)
        async with permit:
            pass  # never sent
        budget = budget_of(lim)
        assert int(await lim._redis.hget(budget.log, "sum") or 0) == 0


# --- 429 and 418 --------------------------------------------------------------------------


async def test_redis_limiter_429_pauses_the_other_process(redis_url: str) -> None:
    async with limiter(redis_url) as a, limiter(redis_url) as b:
        permit = await a.acquire(UID, 5)
        async with permit:
            permit.mark_sent()
            permit.observe(429, {"retry-after": "1"})
        with pytest.raises(RateLimitTimeoutError) as info:
            await b.acquire(UID, 5, max_wait=0.2)
        assert info.value.wait is not None
        assert 0.5 < info.value.wait <= 1.1
        started = anyio.current_time()
        await take(b, max_wait=3)
        assert anyio.current_time() - started > 0.5  # it did wait for the pause
        # Another budget of the account is not paused.
        await take(b, UID_OTHER, max_wait=0.2)


async def test_redis_limiter_418_bans_every_budget_of_the_ip_group(redis_url: str) -> None:
    async with limiter(redis_url) as a, limiter(redis_url) as b:
        await take(b, IP)  # b uses two budgets of the group "default" (registered at once)
        await take(b, UID_OTHER)
        permit = await a.acquire(UID, 5)
        async with permit:
            permit.mark_sent()
            permit.observe(418, {"retry-after": "30"})
        with pytest.raises(IPBannedError):
            await a.acquire(IP, 1, max_wait=60)  # this process: at once, all budgets
        with pytest.raises(IPBannedError) as info:
            await b.acquire(UID, 5, max_wait=60)  # the other process, same budget
        assert info.value.retry_after is not None
        assert 25 < info.value.retry_after <= 30
        with pytest.raises(IPBannedError):
            await b.acquire(IP, 1, max_wait=60)  # ... and its other budgets of the group
        with pytest.raises(IPBannedError):
            await b.acquire(UID_OTHER, 5, max_wait=60)
        await take(b, OTHER_GROUP, weight=1, max_wait=0.5)  # another IP is not banned
        async with limiter(redis_url) as c:
            # A process that joins during the ban learns of it before its first request.
            with pytest.raises(IPBannedError):
                await c.acquire(BudgetKey(Budget.SAPI_IP, "default", "/sapi/v1/other"), 1)


# --- keys ----------------------------------------------------------------------------------


async def test_redis_limiter_every_key_has_a_ttl_and_its_budget_hash_tag(redis_url: str) -> None:
    api_key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    async with (
        limiter(redis_url, namespace="ttltest") as lim,
        FakeExchange().http_client() as http,
    ):
        fake_client = PortfolioMarginProClient(
            api_key=api_key, api_secret="x" * 64, rate_limiter=lim, http_client=http
        )
        key = fake_client._budget_key(ACCOUNT_INFO)
        await take(lim, key)
        await take(lim, IP)
        lim.set_server_offset(0, 1_000_000)  # names server windows from here on
        await take(lim, key)
        permit = await lim.acquire(key, 5)
        async with permit:
            permit.mark_sent()
            permit.observe(429, {"retry-after": "1", "x-sapi-used-uid-weight-1m": "100"})
        waiter_done = anyio.Event()

        async def waiter() -> None:
            with anyio.move_on_after(0.3):
                await lim.acquire(key, 5)
            waiter_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.5)  # a heartbeat with a ticket queued
        await fake_client.aclose()
        r = lim._redis
        keys = [k.decode() for k in await r.keys("*")]
        tags = {budget.tag for budget in lim._budgets.values()}
        assert any(":w:" in k for k in keys)
        assert any(k.endswith(":b") for k in keys)
        assert any(k.endswith(":p") for k in keys)
        assert any("group|" in k for k in keys)
        for name in keys:
            assert api_key not in name
            assert name.startswith("ttltest:{")
            tag = name[len("ttltest:{") : name.index("}")]
            assert tag in tags or tag.startswith("group|"), name
            ttl = await r.pttl(name)
            # Present and bounded: an idle budget leaves nothing after a few seconds.
            assert 0 < ttl <= 3 * 2000 + 2000 + 3000, (name, ttl)


# --- Redis down -----------------------------------------------------------------------------


async def test_redis_limiter_falls_back_to_a_share_and_rejoins(
    killable_redis: RedisServer,
) -> None:
    url = killable_redis.url
    opts: dict[str, Any] = {
        "timeout": 0.2,
        "heartbeat": 0.1,
        "window": 1.0,
        "arrival_spread": 0.05,
        "uid_limit": 60_000,
    }
    async with limiter(url, **opts) as a, limiter(url, **opts) as b:
        a.set_server_offset(0, 1_000_000)
        await take(a)
        await take(b)
        await anyio.sleep(0.4)
        assert a.live_processes == 2
        killable_redis.stop()
        for _ in range(5):  # no call fails because of the outage
            await take(a, max_wait=2)
        assert a.mode == "fallback"
        fallback = a._fallback
        assert fallback is not None
        assert fallback.own.limits[Budget.SAPI_UID] == 30_000  # half: two processes
        assert fallback.full.limits[Budget.SAPI_UID] == 60_000  # the header's comparison
        killable_redis.start()
        # Back at the next window boundary (1 s windows): bounded wait, then shared again.
        with anyio.fail_after(5):
            while a.mode != "shared":
                await take(a, max_wait=2)
                await anyio.sleep(0.05)
        await take(a)
        assert int(await a._redis.hget(budget_of(a).s, "seq") or 0) >= 1
        killable_redis.stop()  # aclose succeeds with Redis down


async def test_redis_limiter_outage_moves_queued_waiters_to_the_fallback(
    killable_redis: RedisServer,
) -> None:
    # 600 per 60 s: weight 100 is paced one per ~10 s, so the waiters queue in Redis for
    # tens of seconds; once Redis dies they must not wait there (for their max_wait).
    opts: dict[str, Any] = {"timeout": 0.2, "heartbeat": 0.1, "window": 60.0, "arrival_spread": 1.0}
    async with limiter(killable_redis.url, **opts) as lim:
        await take(lim, weight=100)
        done: list[str] = []

        async def waiter() -> None:
            permit = await lim.acquire(UID, 100, max_wait=60)
            done.append(type(permit).__name__)
            async with permit:
                permit.mark_sent()

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(waiter)
            await anyio.sleep(0.3)
            assert done == []  # queued behind the pacer (10 s per call)
            assert budget_of(lim).waiting() == 3
            killable_redis.stop()
            # The heartbeat finds Redis gone; the waiters then acquire from the local share
            # (a fresh pacer: the first at once) instead of sleeping out their Redis wait.
            with anyio.fail_after(5):
                while not done:
                    await anyio.sleep(0.01)
            assert lim.mode == "fallback"
            assert done[0] == "_FallbackPermit"
            assert budget_of(lim).waiting() == 0
            tg.cancel_scope.cancel()


async def test_redis_limiter_down_at_start_uses_the_fallback(killable_redis: RedisServer) -> None:
    killable_redis.stop()
    async with limiter(killable_redis.url, timeout=0.2, processes=3, uid_limit=60_000) as lim:
        await take(lim, max_wait=2)
        assert lim.mode == "fallback"
        assert lim._fallback is not None
        assert lim._fallback.own.limits[Budget.SAPI_UID] == 20_000


async def test_redis_limiter_strict_raises_when_redis_is_down(
    killable_redis: RedisServer,
) -> None:
    async with limiter(killable_redis.url, timeout=0.2, strict=True) as lim:
        await take(lim)
        killable_redis.stop()
        with pytest.raises(SharedBudgetUnavailableError):
            await lim.acquire(UID, 5)
        assert lim.mode == "shared"


# --- the client -----------------------------------------------------------------------------


async def test_client_with_redis_url_shares_budget_and_reconciles_headers(redis_url: str) -> None:
    fake = FakeExchange()
    async with (
        fake.http_client() as http,
        PortfolioMarginProClient(
            api_key=fake.demo_api_key,
            api_secret=fake.demo_api_secret,
            base_url=fake.base_url,
            http_client=http,
            redis_url=redis_url,
            account_id="acct-e2e",
        ) as client,
    ):
        for _ in range(3):
            await client.account_info()
        lim = client._limiter
        assert isinstance(lim, RedisRateLimiter)
        budget = lim._budget(client._budget_key(ACCOUNT_INFO))
        await anyio.sleep(0)
        windows = [k async for k in lim._redis.scan_iter(match=budget.prefix + "w:*")]
        assert windows  # the clock sync named the server windows

        async def folded_in() -> bool:  # the answers, by the max rule (written in batches)
            done = 0
            for w in windows:
                done += int(await lim._redis.hget(w, "done") or 0)
            return done >= 10

        await wait_until(folded_in, timeout=3)
        assert budget.server_used is not None
    assert lim._closed  # the client closed the limiter it made


async def test_client_redis_url_from_environment(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINANCE_PMPRO_REDIS_URL", redis_url)
    client = PortfolioMarginProClient(api_key="k", api_secret="s")
    assert isinstance(client._limiter, RedisRateLimiter)
    await client.aclose()
    own = RateLimiter()
    client = PortfolioMarginProClient(api_key="k", api_secret="s", rate_limiter=own)
    assert client._limiter is own  # an explicit limiter wins over the environment
    await client.aclose()
    with pytest.raises(ConfigurationError):
        PortfolioMarginProClient(api_key="k", api_secret="s", redis_url=redis_url, rate_limiter=own)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
def test_package_imports_without_coredis(anyio_backend: str) -> None:
    code = (
        "import sys; sys.modules['coredis'] = None\n"
        "import binance_pmpro\n"
        "assert 'coredis' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "c = binance_pmpro.PortfolioMarginProClient(api_key='k', api_secret='s')\n"
        "try:\n"
        "    binance_pmpro.RedisRateLimiter\n"
        "except ImportError as e:\n"
        "    assert 'binance-pmpro[redis]' in str(e)\n"
        "else:\n"
        "    raise SystemExit('imported without coredis?')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "BINANCE_PMPRO_REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr


async def test_client_429_pauses_through_redis_and_resends(redis_url: str) -> None:
    fake = FakeExchange()
    fake.inject("rate_limited", retry_after=1, path=ACCOUNT_INFO.path)
    async with (
        limiter(redis_url) as shared,
        limiter(redis_url) as other,
        fake.http_client() as http,
        PortfolioMarginProClient(
            api_key=fake.demo_api_key,
            api_secret=fake.demo_api_secret,
            base_url=fake.base_url,
            http_client=http,
            rate_limiter=shared,
            account_id="acct-429",
        ) as client,
    ):
        key = client._budget_key(ACCOUNT_INFO)
        results = []

        async def call() -> None:
            results.append(await client.account_info(max_wait=5))  # 429, pause, again

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await wait_until(lambda: _saw(fake, 429))
            # The permit's exit writes the pause to Redis (a moment later, longer under load).
            pause_key = budget_of(shared, key).b

            async def paused() -> bool:
                return bool(await shared._redis.exists([pause_key]))

            await wait_until(paused)
            # The pause reached the other process through Redis.
            with pytest.raises(RateLimitTimeoutError) as info:
                await other.acquire(key, 5, max_wait=0.0)
            assert info.value.wait is not None
            assert info.value.wait > 0.3
        assert results[0].uni_mmr > 0
        statuses = [r.status for r in fake.requests if r.path == ACCOUNT_INFO.path]
        assert statuses == [429, 200]


async def _saw(fake: FakeExchange, status: int) -> bool:
    return any(r.status == status for r in fake.requests)


async def test_client_keeps_calling_while_redis_is_down(killable_redis: RedisServer) -> None:
    fake = FakeExchange()
    async with (
        limiter(killable_redis.url, timeout=0.2, uid_limit=60_000) as shared,
        fake.http_client() as http,
        PortfolioMarginProClient(
            api_key=fake.demo_api_key,
            api_secret=fake.demo_api_secret,
            base_url=fake.base_url,
            http_client=http,
            rate_limiter=shared,
        ) as client,
    ):
        await client.account_info()
        killable_redis.stop()
        for _ in range(5):
            await client.account_info()  # not one call fails because of the outage
        assert shared.mode == "fallback"
        assert all(r.status == 200 for r in fake.requests)


async def test_redis_permit_refund_outside_its_context_reaches_redis(redis_url: str) -> None:
    async with limiter(redis_url, heartbeat=0.05) as lim:
        permit = await lim.acquire(UID, 5)
        budget = budget_of(lim)
        assert int(await lim._redis.hget(budget.log, "sum") or 0) == 5
        permit.refund()  # sync: written by the next heartbeat
        await wait_until(lambda: _log_sum_is(lim, 0), timeout=3)
        permit.refund()  # idempotent


async def _log_sum_is(lim: RedisRateLimiter, value: int) -> bool:
    return int(await lim._redis.hget(budget_of(lim).log, "sum") or 0) == value


async def test_redis_limiter_paces_slower_when_others_use_the_account(redis_url: str) -> None:
    # Weight the header shows beyond the fleet's own (another tool on the account) is kept
    # as a forecast: the fleet's pace drops so the window is shared out, not filled early.
    waits = {}
    for name, header in (("alone", "5"), ("with others", "300")):
        async with limiter(redis_url, window=10.0, namespace=name.replace(" ", "-")) as lim:
            now = anyio.current_time()
            window_start = (int(now) // 10 + 1) * 10  # a server clock at a window start
            lim.set_server_offset(round((window_start + 0.1 - now) * 1e9), 1_000_000)
            permit = await lim.acquire(UID, 5)
            async with permit:
                permit.mark_sent()
                permit.observe(200, {"x-sapi-used-uid-weight-1m": header})
            budget = budget_of(lim)
            keys = [k async for k in lim._redis.scan_iter(match=budget.prefix + "w:*")]
            await wait_until(lambda keys=keys: _window_done(lim, keys))  # reported
            await take(lim, max_wait=1)  # its increment is at the pace of now
            with pytest.raises(RateLimitTimeoutError) as info:
                await lim.acquire(UID, 5, max_wait=0)
            assert info.value.wait is not None
            waits[name] = info.value.wait
    # 5 weight at 582 per 10.1 s is ~87 ms; with 295 of others' per window, at least twice.
    assert waits["alone"] < 0.1
    assert waits["with others"] > 0.14


async def _window_done(lim: RedisRateLimiter, keys: list[bytes]) -> bool:
    for key in keys:
        if int(await lim._redis.hget(key, "done") or 0) > 0:
            return True
    return False


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
def test_redis_limiter_repr_hides_the_redis_password(anyio_backend: str) -> None:
    lim = RedisRateLimiter("redis://user:s3cr3t-pw@127.0.0.1:6399/0")
    assert "s3cr3t-pw" not in repr(lim)
    assert "127.0.0.1:6399" in repr(lim)
