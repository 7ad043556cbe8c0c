"""One process of a fleet (see ``_fleet.py``): a client, many tasks, a report.

Run as ``python -m _fleet_worker`` with the tests directory on ``PYTHONPATH``. It reads its
configuration as one JSON line on stdin, builds its limiter and client, prints
``{"event": "ready"}``, waits for a ``{"start": <epoch seconds>}`` line, then runs its tasks
until ``start + duration`` and prints one ``{"event": "result", ...}`` line. Credentials
arrive on stdin, never on the command line, and are never printed.

Task kinds: ``uid5`` (account info, weight 5 on the UID budget), ``ip1`` / ``ip50`` (asset
index price with / without ``asset``), ``ip1500`` (delta mode, 1,500 on the IP budget) and
``watch`` (``watch_account``: one HIGH-priority poll every ``every`` seconds). A task's
``pause`` (seconds) spaces its calls; without it each task calls back to back.

Every call is bounded by the run's deadline; errors are counted by class, never raised, so
the report says what went wrong instead of a traceback ending the process.
"""

from __future__ import annotations

import contextvars
import json
import math
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import anyio

from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.errors import BinanceError, IPBannedError
from binance_pmpro.events import RequestEvent
from binance_pmpro.ratelimit import RateLimiter

ENDPOINT_OF_KIND = {
    "uid5": "account_info",
    "ip1": "asset_index_price",
    "ip50": "asset_index_price",
    "ip1500": "delta_mode",
    "watch": "account_info",
}

# (kind, the loop-clock time its current call started, whether its wait was recorded):
# hooks run synchronously in the calling task, so they see the caller's context.
_current: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "_current", default=None
)


class Recorder:
    """Counts, latencies and rate-limit waits of one process, by task kind."""

    def __init__(self) -> None:
        self.start = 0.0  # loop clock at the run's start
        self.ok: Counter[str] = Counter()
        self.errors: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.latency: defaultdict[str, list[float]] = defaultdict(list)
        self.wait: defaultdict[str, list[float]] = defaultdict(list)
        self.per_second: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.watch_starts: list[float] = []
        self.modes: list[tuple[float, str | None]] = []
        self.error_at: list[tuple[float, str, str, float | None]] = []

    def error(self, kind: str, name: str, retry_after: float | None = None) -> None:
        self.errors[kind][name] += 1
        if len(self.error_at) < 50:
            at = round(anyio.current_time() - self.start, 2)
            self.error_at.append((at, kind, name, retry_after))

    def hook(self, event: RequestEvent) -> None:
        """Client hook: the first attempt's start marks the end of the rate-limit wait."""
        cell = _current.get()
        if cell is None or event.phase != "start" or event.attempt != 1:
            return
        kind, started, recorded = cell
        if recorded or event.endpoint != ENDPOINT_OF_KIND[kind]:
            return  # a clock sync or a retry, not the call's own wait
        now = anyio.current_time()
        if kind == "watch":
            self.watch_starts.append(now)
        else:
            cell[2] = True
            self.wait[kind].append(now - started)

    def done(self, kind: str, started: float) -> None:
        now = anyio.current_time()
        self.ok[kind] += 1
        self.latency[kind].append(now - started)
        self.per_second[kind][math.floor(now - self.start)] += 1

    def report(self) -> dict[str, Any]:
        return {
            "ok": dict(self.ok),
            "errors": {kind: dict(counts) for kind, counts in self.errors.items()},
            "latency": {kind: summary(values) for kind, values in self.latency.items()},
            "wait": {kind: summary(values) for kind, values in self.wait.items()},
            "wait_samples": {
                kind: [round(v, 6) for v in values] for kind, values in self.wait.items()
            },
            "modes": self.modes,
            "error_at": self.error_at,
            "per_second": {
                kind: {str(k): v for k, v in sorted(counts.items())}
                for kind, counts in self.per_second.items()
            },
        }


def summary(values: list[float]) -> dict[str, float]:
    """n, p50, p90, p99 and max (seconds) of a list of durations."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {
        "n": len(ordered),
        "p50": round(pct(0.50), 6),
        "p90": round(pct(0.90), 6),
        "p99": round(pct(0.99), 6),
        "max": round(ordered[-1], 6),
    }


def build_limiter(spec: dict[str, Any]) -> Any:
    """The process's limiter: ``local`` (a header-reconciling RateLimiter of its own) or
    ``redis`` (the shared budgets)."""
    limits = {
        "uid_limit": spec["uid_limit"],
        "ip_limit": spec["ip_limit"],
        "api_limit": spec["api_limit"],
        "window": spec["window"],
    }
    extra = spec.get("extra", {})
    if spec["kind"] == "local":
        return RateLimiter(**limits, **extra)
    from binance_pmpro.redis_budget import RedisRateLimiter

    return RedisRateLimiter(spec["url"], **limits, **extra)


async def call_loop(
    client: PortfolioMarginProClient,
    kind: str,
    recorder: Recorder,
    deadline: float,
    cap: int,
    pause: float,
) -> None:
    for index in range(cap):
        if pause and index:
            await anyio.sleep(pause)
        now = anyio.current_time()
        if now >= deadline:
            return
        cell: list[Any] = [kind, now, False]
        _current.set(cell)
        with anyio.move_on_after(deadline - now):
            try:
                if kind == "uid5":
                    await client.account_info()
                elif kind == "ip1":
                    await client.asset_index_price(asset="BTC")
                elif kind == "ip50":
                    await client.asset_index_price()
                elif kind == "ip1500":
                    await client.delta_mode()
                else:
                    raise ValueError(f"unknown task kind {kind!r}")
            except IPBannedError as exc:
                recorder.error(kind, type(exc).__name__, exc.retry_after)
                # Banned: every call raises at once until the ban ends; do not spin.
                pause = exc.retry_after if exc.retry_after is not None else 1.0
                await anyio.sleep(min(max(pause, 0.01), max(deadline - now, 0.0)))
                continue
            except Exception as exc:  # counted and reported, never fatal
                recorder.error(kind, _error_name(exc))
                await anyio.sleep(0.05)
                continue
            recorder.done(kind, now)


async def watch_loop(
    client: PortfolioMarginProClient,
    every: float,
    recorder: Recorder,
    deadline: float,
) -> None:
    """The risk watcher: HIGH-priority polls; its wait is tick to first attempt's start."""
    _current.set(["watch", anyio.current_time(), False])
    with anyio.move_on_after(deadline - anyio.current_time()):
        try:
            async for item in client.watch_account(every=every):
                if getattr(item, "type", "") != "snapshot":
                    recorder.error("watch", "Stale")
                    continue
                if recorder.watch_starts:
                    started = recorder.watch_starts[-1]
                    recorder.wait["watch"].append(max(0.0, started - item.scheduled_at))
                recorder.done("watch", item.scheduled_at)
        except Exception as exc:
            recorder.error("watch", _error_name(exc))


async def mode_loop(limiter: Any, recorder: Recorder, deadline: float) -> None:
    """Note each change of the limiter's mode (shared / fallback), with its time."""
    last = None
    while anyio.current_time() < deadline:
        mode = getattr(limiter, "mode", None)
        if mode != last:
            recorder.modes.append((round(anyio.current_time() - recorder.start, 2), mode))
            last = mode
        await anyio.sleep(0.1)


def _error_name(exc: BaseException) -> str:
    name = type(exc).__name__
    if not isinstance(exc, BinanceError):
        name = "unexpected:" + name
    return name


async def run(config: dict[str, Any], start_line: bytes) -> dict[str, Any]:
    start_wall = float(json.loads(start_line)["start"])
    limiter = build_limiter(config["limiter"])
    backend = config.get("backend", "asyncio")
    recorder = Recorder()
    client = PortfolioMarginProClient(
        config["api_key"],
        config["api_secret"],
        base_url=config["base_url"],
        rate_limiter=limiter,
        account_id=config["account_id"],
        ip_group=config["ip_group"],
        ip_total=True,
        max_wait=config.get("max_wait", 20.0),
        transport="fast" if backend == "asyncio" else "httpx",
        hooks=[recorder.hook],
    )
    await anyio.sleep(max(0.0, start_wall - time.time()))
    start = recorder.start = anyio.current_time()
    deadline = start + float(config["duration"])
    cap = int(config.get("max_calls_per_task", 100_000))
    close_error: str | None = None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(mode_loop, limiter, recorder, deadline)
            for task in config["tasks"]:
                if task["kind"] == "watch":
                    group.start_soon(watch_loop, client, float(task["every"]), recorder, deadline)
                    continue
                pause = float(task.get("pause", 0.0))
                for _ in range(int(task["count"])):
                    group.start_soon(
                        call_loop, client, task["kind"], recorder, deadline, cap, pause
                    )
    finally:
        try:
            with anyio.fail_after(10):
                await client.aclose()
                closer = getattr(limiter, "aclose", None)
                if closer is not None:
                    await closer()
        except Exception as exc:
            close_error = _error_name(exc)
    report = recorder.report()
    report["close_error"] = close_error
    report["elapsed"] = anyio.current_time() - start
    return report


def main() -> None:
    config = json.loads(sys.stdin.buffer.readline())
    backend = config.get("backend", "asyncio")
    if config["limiter"]["kind"] == "redis":
        import binance_pmpro.redis_budget  # noqa: F401 (imported before "ready", not timed)
    print(json.dumps({"event": "ready"}), flush=True)
    start_line = sys.stdin.buffer.readline()
    report = anyio.run(run, config, start_line, backend=backend)
    report["event"] = "result"
    report["name"] = config["name"]
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
