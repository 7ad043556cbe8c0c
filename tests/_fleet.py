"""Fleets of OS processes on one account, against one FakeExchange over loopback HTTP.

The test process serves a :class:`~binance_pmpro.testing.FakeExchange` on 127.0.0.1 and
starts each :class:`Worker` as ``python -m _fleet_worker`` (its own interpreter, event loop,
client and limiter). Workers report ready, start together at one wall-clock instant, run
their tasks for ``duration`` seconds and report counts, latencies and rate-limit waits.

The verdict on safety comes from the exchange's own ledger (:attr:`FleetRun.fake`), not from
what the clients believe: 429s per budget, weight accepted per window. The exchange's clock is
shifted so that a window starts exactly when the workers do, so a run of ``n`` windows has
``n`` full windows.

Every run is bounded: workers stop calling at their deadline, and the whole fleet must be
done ``duration + 60`` seconds after the start or it is killed.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from binance_pmpro.endpoints import Budget
from binance_pmpro.testing import FakeExchange

TESTS = Path(__file__).resolve().parent

__all__ = ["FleetRun", "LimiterSpec", "Window", "Worker", "run_fleet"]


@dataclass(frozen=True)
class Worker:
    """One process: its task mix (``{"kind": "uid5", "count": 8}``, ``{"kind": "watch",
    "every": 1.0}``, ...; see ``_fleet_worker``) and event loop."""

    name: str
    tasks: Sequence[dict[str, Any]]
    backend: str = "asyncio"


@dataclass(frozen=True)
class LimiterSpec:
    """Which limiter each worker builds: ``"local"`` (its own header-reconciling
    RateLimiter) or ``"redis"`` (RedisRateLimiter on ``url``), with limits per window."""

    kind: str
    uid_limit: int
    ip_limit: int
    window: float
    url: str | None = None
    api_limit: int = 6_000
    extra: dict[str, Any] = field(default_factory=dict)

    def as_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "uid_limit": self.uid_limit,
            "ip_limit": self.ip_limit,
            "api_limit": self.api_limit,
            "window": self.window,
            "extra": self.extra,
        }


@dataclass(frozen=True)
class Window:
    """One full window of one budget, from the exchange's ledger (zeros when idle)."""

    start_ms: int
    limit: int
    accepted: int
    counted: int
    rate_limited: int

    @property
    def utilisation(self) -> float:
        return self.accepted / self.limit


@dataclass
class FleetRun:
    """What a fleet did: the exchange (ledger, request log) and each worker's report."""

    fake: FakeExchange
    tag: str
    start_ms: int
    end_ms: int
    reports: dict[str, dict[str, Any]]
    returncodes: dict[str, int | None]
    stderr: dict[str, str]
    wall_s: float

    def rate_limited(self, budget: Budget) -> int:
        """Requests the exchange answered 429 (or 418 at a ban) on this budget kind."""
        return sum(u.rate_limited for u in self.fake.ledger if u.key.budget is budget)

    def over_limit(self, budget: Budget) -> list[int]:
        """Window starts where accepted weight exceeded the limit (never expected)."""
        return [
            u.window_start_ms
            for u in self.fake.ledger
            if u.key.budget is budget and u.accepted_weight > u.limit
        ]

    def refused_at(self) -> list[tuple[float, int, str]]:
        """``(seconds into the run, status, path)`` of every 429 and 418 answer."""
        return [
            ((r.server_time_ms - self.start_ms) / 1000, r.status, r.path)
            for r in self.fake.requests
            if r.status in (418, 429)
        ]

    def windows(self, budget: Budget) -> list[Window]:
        """Every full window of the run on this budget kind (one owner per kind here)."""
        step = self.fake.window_ms
        limit = self.fake.limit_of(budget)
        found: dict[int, Window] = {}
        for u in self.fake.ledger:
            if u.key.budget is not budget:
                continue
            w = found.get(u.window_start_ms)
            accepted = u.accepted_weight + (w.accepted if w else 0)
            counted = u.weight + (w.counted if w else 0)
            limited = u.rate_limited + (w.rate_limited if w else 0)
            found[u.window_start_ms] = Window(u.window_start_ms, limit, accepted, counted, limited)
        out = []
        for start in range(self.start_ms, self.end_ms - step + 1, step):
            out.append(found.get(start, Window(start, limit, 0, 0, 0)))
        return out

    def ok(self, kind: str | None = None) -> dict[str, int]:
        """Calls completed per worker (of one task kind, or all)."""
        return {
            name: sum(v for k, v in report["ok"].items() if kind is None or k == kind)
            for name, report in self.reports.items()
        }

    def errors(self) -> dict[str, dict[str, dict[str, int]]]:
        """Errors per worker and task kind, by class name (non-empty only)."""
        return {name: report["errors"] for name, report in self.reports.items() if report["errors"]}

    def describe(self) -> str:
        """A report for humans: utilisation per window and budget, latencies per worker."""
        lines = [f"fleet {self.tag}: {len(self.reports)} processes, wall {self.wall_s:.1f} s"]
        for budget in (Budget.SAPI_IP, Budget.SAPI_UID):
            cells = ", ".join(
                f"{w.utilisation:.1%} ({w.accepted}/{w.limit}, 429s {w.rate_limited})"
                for w in self.windows(budget)
            )
            lines.append(
                f"  {budget.value}: 429s {self.rate_limited(budget)}; full windows: {cells}"
            )
        refused = self.refused_at()
        if refused:
            shown = ", ".join(f"{status} at {t:.2f} s ({path})" for t, status, path in refused[:8])
            lines.append(
                f"  refused: {len(refused)}: {shown}" + (" ..." if len(refused) > 8 else "")
            )
        for name, report in sorted(self.reports.items()):
            parts = []
            for kind, stats in sorted(report["latency"].items()):
                wait = report["wait"].get(kind, {})
                parts.append(
                    f"{kind} n={stats.get('n', 0)} lat p50/p99 "
                    f"{_ms(stats.get('p50'))}/{_ms(stats.get('p99'))} ms, wait p50/p99 "
                    f"{_ms(wait.get('p50'))}/{_ms(wait.get('p99'))} ms"
                )
            lines.append(f"  {name}: " + "; ".join(parts))
            if report["errors"]:
                first = ", ".join(
                    f"{n} ({k}) at {t:.2f} s" + (f" retry_after {r:.2f} s" if r is not None else "")
                    for t, k, n, r in report["error_at"][:4]
                )
                lines.append(f"    errors: {report['errors']}; first: {first}")
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


class FleetClock:
    """Lets a test act at given seconds into the run (kill Redis, inject a fault)."""

    def __init__(self, start_wall: float) -> None:
        self.start_wall = start_wall

    def elapsed(self) -> float:
        return time.time() - self.start_wall

    async def at(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, self.start_wall + seconds - time.time()))


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(TESTS) + (os.pathsep + path if path else "")
    # The fleet talks to loopback only; a proxy or a configured Redis URL must not leak in.
    for name in list(env):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del env[name]
    env.pop("BINANCE_PMPRO_REDIS_URL", None)
    return env


async def run_fleet(
    fake: FakeExchange,
    workers: Sequence[Worker],
    limiter: LimiterSpec,
    *,
    duration: float,
    during: Callable[[FleetClock], Awaitable[None]] | None = None,
    max_wait: float = 20.0,
    ready_timeout: float = 60.0,
) -> FleetRun:
    """Run ``workers`` against ``fake`` (served here on loopback) for ``duration`` seconds.

    ``during``, if given, runs alongside the workers from the start instant. The budgets of
    this run are keyed by a fresh account id and IP group, so runs never share Redis state.
    A worker that fails to report fails the run, with the tail of every worker's stderr.
    """
    tag = secrets.token_hex(4)
    began = time.perf_counter()
    fleet = _Fleet(fake, workers, limiter, tag, duration, max_wait)
    failure: Exception | None = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            await fleet.drive(Path(tmp), during, ready_timeout)
        except Exception as exc:
            failure = exc
        stderr = {name: path.read_text(errors="replace") for name, path in fleet.stderr.items()}
    if failure is not None:
        tails = "\n".join(f"--- {name} stderr ---\n{text[-2000:]}" for name, text in stderr.items())
        raise AssertionError(f"fleet {tag} failed: {failure!r}\n{tails}") from failure
    return FleetRun(
        fake=fake,
        tag=tag,
        start_ms=fleet.start_ms,
        end_ms=fleet.start_ms + round(duration * 1000),
        reports=fleet.reports,
        returncodes={name: proc.returncode for name, proc in fleet.procs.items()},
        stderr=stderr,
        wall_s=time.perf_counter() - began,
    )


class _Fleet:
    def __init__(
        self,
        fake: FakeExchange,
        workers: Sequence[Worker],
        limiter: LimiterSpec,
        tag: str,
        duration: float,
        max_wait: float,
    ) -> None:
        self.fake = fake
        self.workers = workers
        self.limiter = limiter
        self.tag = tag
        self.duration = duration
        self.max_wait = max_wait
        self.procs: dict[str, Process] = {}
        self.streams: dict[str, BufferedByteReceiveStream] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self.stderr: dict[str, Path] = {}
        self.start_ms = 0

    async def drive(
        self,
        tmp: Path,
        during: Callable[[FleetClock], Awaitable[None]] | None,
        ready_timeout: float,
    ) -> None:
        fake = self.fake
        async with fake.serve(port=0) as server:
            try:
                await self._spawn(tmp, server.base_url)
                with anyio.fail_after(ready_timeout):
                    for name, stream in self.streams.items():
                        line = await _read_line(stream)
                        if line.get("event") != "ready":
                            raise AssertionError(f"{name} did not get ready: {line}")
                start_wall = time.time() + 0.5
                # Shift the exchange's clock so that a window starts at the start instant.
                window_ms = fake.window_ms
                fake.clock_offset_ms = -(start_wall * 1000 % window_ms)
                start_ms = math.floor(start_wall * 1000 + fake.clock_offset_ms + 0.5)
                self.start_ms = start_ms - start_ms % window_ms
                for proc in self.procs.values():
                    assert proc.stdin is not None
                    await proc.stdin.send(json.dumps({"start": start_wall}).encode() + b"\n")

                async def collect(name: str) -> None:
                    self.reports[name] = await _read_line(self.streams[name])

                with anyio.fail_after(self.duration + 60.0):
                    async with anyio.create_task_group() as group:
                        if during is not None:
                            group.start_soon(during, FleetClock(start_wall))
                        for name in self.streams:
                            group.start_soon(collect, name)
                    for proc in self.procs.values():
                        await proc.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    for proc in self.procs.values():
                        if proc.returncode is None:
                            proc.kill()
                            await proc.wait()
                        await proc.aclose()

    async def _spawn(self, tmp: Path, base_url: str) -> None:
        env = _worker_env()
        for w in self.workers:
            self.stderr[w.name] = tmp / f"{w.name}.stderr"
            with self.stderr[w.name].open("wb") as err:
                proc = await anyio.open_process(
                    [sys.executable, "-m", "_fleet_worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=env,
                )
            self.procs[w.name] = proc
            assert proc.stdout is not None
            assert proc.stdin is not None
            self.streams[w.name] = BufferedByteReceiveStream(proc.stdout)
            config = {
                "name": w.name,
                "backend": w.backend,
                "base_url": base_url,
                "api_key": self.fake.demo_api_key,
                "api_secret": self.fake.demo_api_secret,
                "account_id": f"fleet-{self.tag}",
                "ip_group": f"fleet-{self.tag}",
                "limiter": self.limiter.as_config(),
                "tasks": list(w.tasks),
                "duration": self.duration,
                "max_wait": self.max_wait,
            }
            await proc.stdin.send(json.dumps(config).encode() + b"\n")


async def _read_line(stream: BufferedByteReceiveStream) -> dict[str, Any]:
    try:
        raw = await stream.receive_until(b"\n", 1 << 26)
    except (anyio.EndOfStream, anyio.IncompleteRead):
        raise AssertionError("a worker exited without reporting (see its stderr)") from None
    parsed: dict[str, Any] = json.loads(raw)
    return parsed
