"""What a grant through the Redis-shared budget costs, next to the local limiter.

    python -m benchmarks.bench_redis [--n 3000] [--tasks 16] [--redis-url URL] [--out DIR]

One permit cycle is ``acquire`` + ``mark_sent`` + ``observe`` (with a used-weight header) +
leaving the permit's context, on a budget with room (nothing waits for weight), with the
server offset set as the client's clock sync sets it. Measured on asyncio and trio:

- **sequential**: one task, ``--n`` cycles back to back; p50 and p99 of one cycle;
- **concurrent**: ``--tasks`` tasks sharing one budget, ``--n`` cycles in all; p50/p99 of
  one cycle as each task sees it, and cycles per second.

Through Redis a cycle is one script round trip (the ACQUIRE); the response's count goes to
Redis in the background. For scale, the floor: one bare ``EVALSHA`` round trip through
coredis (both loops) and through redis-py's asyncio client (asyncio only, when installed).

Redis is ``--redis-url`` or a ``redis-server`` started here on a free
127.0.0.1 port (no persistence) and stopped at the end. Every loop is bounded by
``--n`` and by ``MAX_SECONDS``. Prints a table; ``--out`` also writes ``DIR/redis.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from binance_pmpro.endpoints import Budget
from binance_pmpro.ratelimit import BudgetKey, Limiter, RateLimiter
from binance_pmpro.redis_budget import RedisRateLimiter

KEY = BudgetKey(Budget.SAPI_UID, "bench", "/sapi/v1/portfolio/account")
HEADERS = {"x-sapi-used-uid-weight-1m": "5", "content-type": "application/json"}
MAX_SECONDS = 60.0
# Room for every cycle of a run: nothing waits for weight, so the figure is the cost.
LIMITS: dict[str, Any] = {"uid_limit": 10**12, "ip_limit": 10**12, "api_limit": 10**12}


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on the PATH: install it or pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="bpm-bench-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


async def _cycle(limiter: Limiter) -> float:
    started = time.perf_counter()
    permit = await limiter.acquire(KEY, 5)
    async with permit:
        permit.mark_sent()
        permit.observe(200, HEADERS)
    return time.perf_counter() - started


async def _measure(limiter: Limiter, n: int, tasks: int) -> dict[str, float]:
    limiter.set_server_offset(round(time.time() * 1e9 - anyio.current_time() * 1e9), 2_000_000)
    for _ in range(min(200, n)):  # warm up: connections, script loading
        await _cycle(limiter)
    stop = time.perf_counter() + MAX_SECONDS
    one: list[float] = []
    while len(one) < n and time.perf_counter() < stop:
        one.append(await _cycle(limiter))
    many: list[float] = []
    per_task = max(1, n // tasks)

    async def worker() -> None:
        for _ in range(per_task):
            if time.perf_counter() > stop:
                return
            many.append(await _cycle(limiter))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(worker)
    elapsed = time.perf_counter() - started
    return {
        "seq_p50": _pct(one, 50),
        "seq_p99": _pct(one, 99),
        "con_p50": _pct(many, 50),
        "con_p99": _pct(many, 99),
        "con_rate": len(many) / elapsed,
    }


async def _floor_coredis(url: str, n: int) -> dict[str, float]:
    """One bare EVALSHA round trip through coredis: the floor of a shared grant."""
    import coredis

    async with coredis.Redis.from_url(url) as r:
        script = r.register_script("return 1")
        for _ in range(min(200, n)):
            await script(keys=["bench"], args=[1])
        times = []
        stop = time.perf_counter() + MAX_SECONDS
        while len(times) < n and time.perf_counter() < stop:
            started = time.perf_counter()
            await script(keys=["bench"], args=[1])
            times.append(time.perf_counter() - started)
    return {"seq_p50": _pct(times, 50), "seq_p99": _pct(times, 99)}


async def _floor_redis_py(url: str, n: int) -> dict[str, float] | None:
    """The same round trip through redis-py's asyncio client (asyncio only), for scale."""
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:
        return None
    r = redis_asyncio.Redis.from_url(url)
    try:
        script = r.register_script("return 1")
        for _ in range(min(200, n)):
            await script(keys=["bench"], args=[1])
        times = []
        stop = time.perf_counter() + MAX_SECONDS
        while len(times) < n and time.perf_counter() < stop:
            started = time.perf_counter()
            await script(keys=["bench"], args=[1])
            times.append(time.perf_counter() - started)
    finally:
        await r.aclose()
    return {"seq_p50": _pct(times, 50), "seq_p99": _pct(times, 99)}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1e6


def run_backend(backend: str, url: str, n: int, tasks: int) -> dict[str, dict[str, float]]:
    async def both() -> dict[str, dict[str, float]]:
        local = await _measure(RateLimiter(**LIMITS), n, tasks)
        shared_limiter = RedisRateLimiter(url, namespace=f"bench{os.getpid()}", **LIMITS)
        try:
            shared = await _measure(shared_limiter, n, tasks)
        finally:
            await shared_limiter.aclose()
        out = {"local RateLimiter": local, "RedisRateLimiter": shared}
        out["script round trip, coredis"] = await _floor_coredis(url, n)
        if backend == "asyncio":
            floor = await _floor_redis_py(url, n)
            if floor is not None:
                out["script round trip, redis-py"] = floor
        return out

    result: dict[str, dict[str, float]] = anyio.run(both, backend=backend)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=3000, help="cycles per measurement")
    parser.add_argument("--tasks", type=int, default=16, help="tasks in the concurrent run")
    parser.add_argument("--redis-url", default=None, help="use this Redis (it is not flushed)")
    parser.add_argument("--out", type=Path, default=None, help="also write DIR/redis.md")
    args = parser.parse_args(argv)
    lines = [
        "# Rate limiter through Redis: one permit cycle",
        "",
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs "
        f"(load average {os.getloadavg()[0]:.1f} at the start), redis-server on loopback; "
        f"{args.n} cycles per row, {args.tasks} tasks in the concurrent columns. µs per cycle "
        "(acquire + mark_sent + observe + exit).",
        "",
        "| loop | limiter | sequential p50 | sequential p99 | concurrent p50 | concurrent p99 "
        "| concurrent cycles/s |",
        "|---|---|---|---|---|---|---|",
    ]
    with redis_server(args.redis_url) as url:
        for backend in _backends():
            for name, row in run_backend(backend, url, args.n, args.tasks).items():
                concurrent = (
                    f"{row['con_p50']:.1f} | {row['con_p99']:.1f} | {row['con_rate']:,.0f}"
                    if "con_p50" in row
                    else "| |"
                )
                lines.append(
                    f"| {backend} | {name} | {row['seq_p50']:.1f} | {row['seq_p99']:.1f} | "
                    f"{concurrent} |"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "redis.md").write_text(text, encoding="utf-8")


def _backends() -> list[str]:
    backends = ["asyncio"]
    try:
        import trio  # noqa: F401
    except ImportError:
        return backends
    return [*backends, "trio"]


if __name__ == "__main__":
    main()
