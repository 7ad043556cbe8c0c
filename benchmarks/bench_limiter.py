"""Micro-benchmarks of the rate limiter's own cost.

    python -m benchmarks.bench_limiter [--n 20000] [--tasks 64] [--rate 4000] [--out DIR]

Three groups, each bounded in count and time:

- **pure core**: one ``ready_at`` + ``grant`` decision, and one answer
  (``mark_sent`` + ``on_response``), on an integer clock with no event loop;
- **uncontended**: one task calling ``acquire`` back to back on a budget with room, on asyncio
  and on trio: the per-call overhead a client pays when it is nowhere near the limit (the
  full permit cycle too: ``acquire``, ``mark_sent``, ``observe``, exit). For scale, the
  floor of two anyio checkpoints (``acquire`` has one on entry and one cancel-shielded one
  after the grant) is measured alone;
- **contended**: ``--tasks`` tasks hammering one budget paced at ``--rate`` grants per
  second on the real clock, so that nearly all of them are queued at any moment. The figure
  is process CPU time per grant (queueing, timers, wake-ups and the event loop included);
  wall time per grant is set by the pace, not by the limiter.

Prints a table; ``--out`` also writes it to ``DIR/limiter.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
import anyio.lowlevel

from binance_pmpro.endpoints import Budget
from binance_pmpro.ratelimit import NS, BudgetCore, BudgetKey, RateLimiter

KEY = BudgetKey(Budget.SAPI_UID, "bench", "/sapi/v1/portfolio/account")
HEADERS = {"x-sapi-used-uid-weight-1m": "5", "content-type": "application/json"}
MAX_SECONDS = 60.0  # hard bound on any one measurement


def _best_of(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def pure_core(n: int) -> dict[str, float]:
    """µs per decision and per answer of the pure core (best of 5)."""

    def decide() -> float:
        core = BudgetCore(10**12, probe=False)
        now = 1_700_000_000 * NS
        start = time.perf_counter()
        for _ in range(n):
            now += 1_000_000
            if core.ready_at(now, 5) <= now:
                core.grant(now, 5)
        return (time.perf_counter() - start) / n * 1e6

    def answer() -> float:
        core = BudgetCore(10**12, probe=False)
        now = 1_700_000_000 * NS
        grants = []
        for _ in range(n):
            now += 1_000_000
            grants.append(core.grant(now, 5))
        start = time.perf_counter()
        for i, g in enumerate(grants):
            core.mark_sent(g, now)
            core.on_response(g, now + 1000, 200, 5 * (i + 1))
        return (time.perf_counter() - start) / n * 1e6

    def answer_aligned() -> float:
        core = BudgetCore(10**12, probe=False)
        now = 1_700_000_000 * NS
        core.set_offset(123_456_789_000, 5_000_000, now)
        grants = []
        for _ in range(n):
            now += 1_000_000
            grants.append(core.grant(now, 5))
        start = time.perf_counter()
        for i, g in enumerate(grants):
            core.mark_sent(g, g.granted_at)
            core.on_response(g, g.granted_at + 200_000_000, 200, 5 * (i + 1))
        return (time.perf_counter() - start) / n * 1e6

    def decide_aligned() -> float:
        core = BudgetCore(10**12, probe=False)
        now = 1_700_000_000 * NS
        core.set_offset(123_456_789_000, 5_000_000, now)
        start = time.perf_counter()
        for _ in range(n):
            now += 1_000_000
            if core.ready_at(now, 5) <= now:
                core.grant(now, 5)
        return (time.perf_counter() - start) / n * 1e6

    return {
        "ready_at + grant (no server offset)": _best_of(5, decide),
        "ready_at + grant (server offset set: minute ledger)": _best_of(5, decide_aligned),
        "mark_sent + on_response (no server offset)": _best_of(5, answer),
        "mark_sent + on_response (server offset set: minute ledger)": _best_of(5, answer_aligned),
    }


async def _uncontended(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with anyio.fail_after(MAX_SECONDS):
        start = time.perf_counter()
        for _ in range(n):
            await anyio.lowlevel.checkpoint_if_cancelled()
            await anyio.lowlevel.cancel_shielded_checkpoint()
        out["floor: the two checkpoints alone"] = (time.perf_counter() - start) / n * 1e6

        # The permits are kept (never sent, never released), as a caller that only
        # acquires would: the probe that follows start-up is off for this one.
        lim = RateLimiter(uid_limit=10**12, probe=False)
        start = time.perf_counter()
        for _ in range(n):
            await lim.acquire(KEY, 5)
        out["acquire alone"] = (time.perf_counter() - start) / n * 1e6

        lim = RateLimiter(uid_limit=10**12)
        start = time.perf_counter()
        for _ in range(n):
            async with await lim.acquire(KEY, 5):
                pass
        out["acquire + exit unsent (refund)"] = (time.perf_counter() - start) / n * 1e6

        lim = RateLimiter(uid_limit=10**12)
        start = time.perf_counter()
        for _ in range(n):
            permit = await lim.acquire(KEY, 5)
            async with permit:
                permit.mark_sent()
                permit.observe(200, HEADERS)
        out["acquire + mark_sent + observe + exit"] = (time.perf_counter() - start) / n * 1e6

        # As inside the client: the server offset known from a clock sync, and a used-weight
        # header that also counts others' weight (the minute ledger's usual case).
        lim = RateLimiter(uid_limit=10**12)
        lim.set_server_offset(1_700_000_000 * NS - int(anyio.current_time() * NS), 5_000_000)
        headers = dict(HEADERS)
        used = 1000
        start = time.perf_counter()
        for _ in range(n):
            permit = await lim.acquire(KEY, 5)
            async with permit:
                permit.mark_sent()
                used += 5
                headers["x-sapi-used-uid-weight-1m"] = str(used)
                permit.observe(200, headers)
        out["the same, server offset set, others' weight in the header"] = (
            (time.perf_counter() - start) / n * 1e6
        )
    return out


async def _contended(n: int, tasks: int, rate: float) -> dict[str, float]:
    # Limit such that the pacer lets ``rate`` weight-1 grants through per second.
    limit = int(rate * 61 / (0.99 * 0.995)) + 1
    lim = RateLimiter(uid_limit=limit)
    granted = 0
    queued_samples: list[int] = []

    async def worker() -> None:
        nonlocal granted
        while granted < n:
            permit = await lim.acquire(KEY, 1)
            async with permit:
                permit.mark_sent()
                permit.observe(200, HEADERS)
            granted += 1
            if granted % 97 == 0:
                queued_samples.append(lim.snapshot()[0].waiting)

    # Spend the initial burst first: it would flatter the figure.
    core = lim.core(KEY)
    now = int(anyio.current_time() * NS)
    while (grant := core.try_grant(now, 1)) is not None:
        core.on_response(grant, now, 200, None)
    cpu = time.process_time()
    wall = time.perf_counter()
    with anyio.fail_after(MAX_SECONDS):
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(worker)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    return {
        f"contended ({tasks} tasks, {rate:,.0f}/s): CPU per grant": cpu / granted * 1e6,
        f"contended ({tasks} tasks, {rate:,.0f}/s): wall per grant": wall / granted * 1e6,
        "contended: mean queue length": sum(queued_samples) / max(1, len(queued_samples)),
    }


def run_backend(
    backend: str, n: int, tasks: int, rate: float, contended_n: int
) -> dict[str, float]:
    """Every async measurement on one backend."""

    async def both() -> dict[str, float]:
        figures = await _uncontended(n)
        figures.update(await _contended(contended_n, tasks, rate))
        return figures

    return anyio.run(both, backend=backend)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmarks and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--tasks", type=int, default=64, help="tasks in the contended run")
    parser.add_argument("--rate", type=float, default=4000.0, help="contended pace, grants/s")
    parser.add_argument("--out", type=Path, default=None, help="also write DIR/limiter.md")
    args = parser.parse_args(argv)
    n = max(1000, min(args.n, 1_000_000))
    contended_n = int(min(args.rate * 2.5, 20_000))  # about 2.5 s of real time

    rows: list[tuple[str, str, str]] = []
    for name, us in pure_core(n).items():
        rows.append(("pure core", name, f"{us:.2f} µs"))
    for backend in _backends():
        figures = run_backend(backend, n, args.tasks, args.rate, contended_n)
        for name, value in figures.items():
            unit = "" if "queue length" in name else " µs"
            rows.append((backend, name, f"{value:.2f}{unit}"))

    lines = [
        "# Rate limiter micro-benchmarks",
        "",
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.machine()}; {n:,} calls per uncontended figure, {contended_n:,} grants "
        f"per contended one.",
        "",
        "| loop | what | figure |",
        "|---|---|---|",
        *(f"| {loop} | {what} | {figure} |" for loop, what, figure in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "limiter.md").write_text(text, encoding="utf-8")
        print(f"written: {args.out / 'limiter.md'}")


def _backends() -> list[str]:
    found = ["asyncio"]
    try:
        import trio  # noqa: F401
    except ImportError:
        return found
    return [*found, "trio"]


if __name__ == "__main__":
    main()
