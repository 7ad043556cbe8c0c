"""Client benchmark: CPU per call and calls per second of binance_pmpro, the floors and the
competition, against a loopback Binance stand-in that verifies every signature.

    python -m benchmarks.bench_clients [--n 2000] [--rounds 3] [--loops asyncio,uvloop,trio]
                                       [--schemes http,https] [--clients NAME,...]

One run: a stand-in server process (``benchmarks.standin``, plain HTTP and TLS with a
throw-away ``trustme`` CA), then rounds; in each round every client runs once per event
loop and scheme, in a fresh worker process, in an order rotated from round to round. A
worker makes one checked call, a warm-up at full concurrency, ``--n`` sequential calls, then
``--n`` calls with ``--concurrency`` in flight, one more checked call, and reports its CPU
time (``time.process_time``: every thread of the process), wall time and peak RSS. The
harness checks the stand-in's counters after each worker: every call it made must have been
answered 200 with a valid signature, or the row is marked failed.

Results: medians over rounds; ratios to each floor are the medians of the per-round ratios
(a floor and a client of the same round ran minutes apart at most, so drift cancels).
Written to ``benchmarks/results/clients.md`` (table), ``clients.png`` (chart) and
``clients.json`` (raw figures, not committed).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    EXPECTED_UNI_MMR,
    RESULTS,
    ROOT,
    STATS_PATH,
    make_tls_material,
    source_state,
    versions,
)
from benchmarks.clients import CLIENTS, SELF_CHECKS, Skip

FLOORS = ("raw-aiohttp", "raw-httpx", "raw-protocol")
IMPORT_MODULES = {
    "binance_pmpro": "binance_pmpro",
    "aiohttp": "aiohttp",
    "httpx": "httpx",
    "python-binance": "binance",
    "ccxt (async)": "ccxt.async_support",
    "official SDK": "binance_sdk_derivatives_trading_portfolio_margin_pro",
}
_FAILURE_COUNTERS = (
    "bad_key",
    "bad_signature",
    "no_signature",
    "bad_timestamp",
    "not_found",
    "bad_http",
)


# --- the worker: one client, one loop, one scheme ---------------------------------------


async def _measure(call: Any, count: int, concurrency: int, max_seconds: float) -> dict[str, Any]:
    """``count`` calls with ``concurrency`` in flight, stopping early at ``max_seconds``."""
    import anyio

    remaining = count
    done = 0
    deadline = time.monotonic() + max_seconds

    async def runner() -> None:
        nonlocal remaining, done
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            await call()
            done += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    if concurrency <= 1:
        await runner()
    else:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(runner)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "calls": done,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_us": cpu / done * 1e6 if done else None,
        "rate": done / wall if wall > 0 else None,
        "truncated": done < count,
    }


async def _worker(
    name: str, base_url: str, ca: str | None, n: int, concurrency: int, warmup: int, limit: float
) -> dict[str, Any]:
    client = {**CLIENTS, **SELF_CHECKS}[name].make(concurrency)
    out: dict[str, Any] = {"client": name, "notes": client.notes, "calls": 0}
    try:
        await client.open(base_url, ca)
    except Skip as exc:
        return {**out, "skipped": str(exc)}
    except ImportError as exc:
        return {**out, "skipped": f"not installed: {exc.name}"}
    try:
        try:
            first = client.uni_mmr(await client.first_call())
        except Skip as exc:
            return {**out, "skipped": str(exc)}
        out["calls"] += 1
        if first != EXPECTED_UNI_MMR:
            return {**out, "error": f"wrong uniMMR {first!r}"}
        phase = await _measure(client.call, warmup, concurrency, limit)
        out["calls"] += phase["calls"]
        out["seq"] = await _measure(client.call, n, 1, limit)
        out["calls"] += out["seq"]["calls"]
        out["conc"] = await _measure(client.call, n, concurrency, limit)
        out["calls"] += out["conc"]["calls"]
        last = client.uni_mmr(await client.call())
        out["calls"] += 1
        if last != EXPECTED_UNI_MMR:
            return {**out, "error": f"wrong uniMMR {last!r}"}
    except Exception as exc:
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        return {**out, "error": f"{type(exc).__name__}: {text}"}
    finally:
        try:
            await client.close()
        except Exception as exc:
            out["notes"].append(f"close failed: {type(exc).__name__}")
    return out


def run_worker(args: argparse.Namespace) -> None:
    """Entry point of a worker process: prints one JSON line with its figures."""
    import resource

    import anyio

    backend, options = args.loop, {}
    if args.loop == "uvloop":
        backend, options = "asyncio", {"use_uvloop": True}
    if args.worker == "none":  # the harness alone, for the memory baseline
        result: dict[str, Any] = {"client": "none"}
    else:
        result = anyio.run(
            _worker,
            args.worker,
            args.base_url,
            args.ca,
            args.n,
            args.concurrency,
            args.warmup,
            args.max_seconds,
            backend=backend,
            backend_options=options,
        )
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result), flush=True)


# --- the harness -------------------------------------------------------------------------


class StandIn:
    """The stand-in server in its own process; its counters over HTTP."""

    def __init__(self, tls: dict[str, str], max_seconds: float) -> None:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.standin",
                "--cert",
                tls["cert"],
                "--key",
                tls["key"],
                "--max-seconds",
                str(max_seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_env(),
            cwd=ROOT,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the stand-in did not start")
        info = json.loads(line)
        self.urls: dict[str, str] = {"http": info["http"], "https": info["https"]}
        self.loop: str = info["loop"]

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.urls["http"] + STATS_PATH, timeout=10) as response:
            stats: dict[str, int] = json.loads(response.read())
        return stats

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()  # the stand-in exits when stdin closes
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            self._process.wait(timeout=10)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _spawn_worker(
    args: argparse.Namespace, client: str, loop: str, base_url: str, ca: str | None
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_clients",
        "--worker",
        client,
        "--loop",
        loop,
        "--base-url",
        base_url,
        "--n",
        str(args.n),
        "--concurrency",
        str(args.concurrency),
        "--warmup",
        str(args.warmup),
        "--max-seconds",
        str(args.max_seconds),
    ]
    if ca:
        command += ["--ca", ca]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_env(),
            cwd=ROOT,
            timeout=3 * args.max_seconds + 120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"client": client, "error": "worker timed out", "calls": 0}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        return {"client": client, "error": f"worker exit {done.returncode}: {tail}", "calls": 0}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def self_check(args: argparse.Namespace, standin: StandIn, ca: str) -> None:
    """A client that signs with the wrong secret must come out FAILED, with the refusals
    counted by the stand-in, on both schemes; otherwise no figure of this run can be trusted.
    """
    for scheme in args.schemes:
        before = standin.stats()
        result = _spawn_worker(
            args, "mis-signed", "asyncio", standin.urls[scheme], ca if scheme == "https" else None
        )
        after = standin.stats()
        _check_counters(result, before, after)
        refused = after["bad_signature"] - before["bad_signature"]
        if "error" not in result or refused < 1:
            raise SystemExit(f"self-check failed on {scheme}: a wrong signature went unnoticed")
        print(f"self-check {scheme}: a wrong signature is refused ({result['error']})", flush=True)


def run_rounds(args: argparse.Namespace, standin: StandIn, ca: str) -> list[dict[str, Any]]:
    """Every (round, loop, scheme, client), interleaved; each result checked against the
    stand-in's counters."""
    records: list[dict[str, Any]] = []
    clients = list(args.clients)
    for round_no in range(args.rounds):
        for loop in args.loops:
            for scheme in args.schemes:
                shift = round_no % len(clients)
                for name in clients[shift:] + clients[:shift]:
                    if loop not in CLIENTS[name].loops:
                        continue
                    before = standin.stats()
                    result = _spawn_worker(
                        args, name, loop, standin.urls[scheme], ca if scheme == "https" else None
                    )
                    after = standin.stats()
                    _check_counters(result, before, after)
                    result.update(round=round_no, loop=loop, scheme=scheme)
                    records.append(result)
                    print(_progress(result), flush=True)
    return records


def _check_counters(result: dict[str, Any], before: dict[str, int], after: dict[str, int]) -> None:
    delta = {key: after[key] - before[key] for key in after}
    result["connections"] = delta["connections"]
    failures = {key: delta[key] for key in _FAILURE_COUNTERS if delta[key]}
    if failures and "error" not in result:
        result["error"] = f"stand-in refused calls: {failures}"
    elif "skipped" not in result and "error" not in result and delta["ok"] != result["calls"]:
        result["error"] = f"stand-in answered {delta['ok']} OK, client counted {result['calls']}"


def _progress(r: dict[str, Any]) -> str:
    where = f"round {r['round'] + 1} {r['loop']:7} {r['scheme']:5} {r['client']:20}"
    if "skipped" in r:
        return f"{where} skipped: {r['skipped']}"
    if "error" in r:
        return f"{where} FAILED: {r['error']}"
    seq, conc = r["seq"], r["conc"]
    return (
        f"{where} {seq['cpu_us']:8.0f} / {conc['cpu_us']:8.0f} us/call CPU, "
        f"{seq['rate']:7.0f} / {conc['rate']:7.0f} calls/s, "
        f"{r['connections']} conns, {r['maxrss_kb'] / 1024:.0f} MB"
    )


# --- import time and the memory baseline -------------------------------------------------


def _importtime_us(module: str) -> int | None:
    """Cumulative import time of ``module`` from ``-X importtime`` (startup imports left out)."""

    def top_level(code: str) -> dict[str, int]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
            check=False,
        )
        found: dict[str, int] = {}
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _, cumulative, name = line.split("|", 2)
            if not name.startswith("  "):  # nested imports are indented by two more spaces
                found[name.strip()] = int(cumulative)
        return found

    baseline = top_level("pass")
    loaded = top_level(f"import {module}")
    if module not in loaded:
        return None
    return sum(us for name, us in loaded.items() if name not in baseline)


def _wall_import_ms(module: str) -> float:
    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=_env(), timeout=120, check=True)
        return time.perf_counter() - start

    return (run(f"import {module}") - run("pass")) * 1000


def measure_imports(repeats: int) -> list[dict[str, Any]]:
    """Import time of each library in a fresh interpreter: ``-X importtime`` cumulative and
    wall-clock ``python -c 'import X'`` minus ``python -c pass``, medians of ``repeats``."""
    rows = []
    for label, module in IMPORT_MODULES.items():
        try:
            cumulative = [_importtime_us(module) for _ in range(repeats)]
            if any(us is None for us in cumulative):
                rows.append({"label": label, "module": module, "error": "not importable"})
                continue
            wall = [_wall_import_ms(module) for _ in range(repeats)]
        except (subprocess.SubprocessError, OSError):
            rows.append({"label": label, "module": module, "error": "not importable"})
            continue
        rows.append(
            {
                "label": label,
                "module": module,
                "importtime_ms": statistics.median(us for us in cumulative if us) / 1000,
                "wall_ms": statistics.median(wall),
            }
        )
    return rows


def harness_rss_kb() -> int | None:
    """Peak RSS of a worker that imports the harness and no client."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_clients", "--worker", "none"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return int(json.loads(lines[-1])["maxrss_kb"]) if lines else None


# --- summary -----------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(records: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (loop, scheme, client): medians over rounds and per-round floor ratios."""
    ok = [r for r in records if "seq" in r and "error" not in r]
    by_round = {(r["round"], r["loop"], r["scheme"], r["client"]): r for r in ok}
    rows = []
    for loop in args.loops:
        for scheme in args.schemes:
            for name in args.clients:
                if loop not in CLIENTS[name].loops:
                    continue
                mine = [
                    r for r in ok if (r["loop"], r["scheme"], r["client"]) == (loop, scheme, name)
                ]
                problems = [
                    r
                    for r in records
                    if (r["loop"], r["scheme"], r["client"]) == (loop, scheme, name)
                    and ("error" in r or "skipped" in r)
                ]
                row: dict[str, Any] = {
                    "loop": loop,
                    "scheme": scheme,
                    "client": name,
                    "label": CLIENTS[name].label,
                    "rounds": len(mine),
                    "notes": sorted(
                        {n for r in records if r["client"] == name for n in r.get("notes", [])}
                    ),
                    "problems": sorted({r.get("error") or r.get("skipped") for r in problems}),
                    "skipped": bool(problems)
                    and all("skipped" in r for r in problems)
                    and not mine,
                }
                for mode in ("seq", "conc"):
                    row[f"{mode}_cpu_us"] = _median([r[mode]["cpu_us"] for r in mine])
                    row[f"{mode}_rate"] = _median([r[mode]["rate"] for r in mine])
                    row[f"{mode}_truncated"] = any(r[mode]["truncated"] for r in mine)
                    for floor in FLOORS:
                        ratios = []
                        for r in mine:
                            base = by_round.get((r["round"], loop, scheme, floor))
                            if base and base[mode]["cpu_us"] and r[mode]["cpu_us"]:
                                ratios.append(r[mode]["cpu_us"] / base[mode]["cpu_us"])
                        row[f"{mode}_vs_{floor}"] = _median(ratios)
                row["rss_mb"] = _median([r["maxrss_kb"] / 1024 for r in mine])
                row["connections"] = _median([r["connections"] for r in mine])
                rows.append(row)
    return rows


def _fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _ratio(seq: float | None, conc: float | None) -> str:
    if seq is None and conc is None:
        return "—"
    return f"{_fmt(seq, '.2f', '×')} / {_fmt(conc, '.2f', '×')}"


def markdown(
    rows: list[dict[str, Any]],
    imports: list[dict[str, Any]],
    meta: dict[str, Any],
    args: argparse.Namespace,
) -> str:
    """The results as markdown: one table per loop and scheme, then import time."""
    c = args.concurrency
    out = [
        "# Client benchmark: signed GET /sapi/v1/portfolio/account",
        "",
        f"Generated by `python -m benchmarks.bench_clients` on {meta['date']}: "
        f"{args.rounds} interleaved rounds × {args.n:,} calls sequential and {args.n:,} "
        f"at {c} in flight, per client, loop and scheme; medians over rounds. "
        f"Python {meta['python']}, {meta['machine']}, {meta['cpus']} CPUs; "
        f"stand-in on {meta['standin_loop']}. Load average before / after: "
        f"{meta['load_before']} / {meta['load_after']}.",
        "",
        f"binance_pmpro measured at {meta['source']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + ".",
        "",
        "CPU µs/call is the client process's CPU time (all threads) divided by calls: signing,"
        " the HTTP exchange and JSON decoding. Ratios are to the raw floors of the same round"
        " (lower is better). Conns is the number of TCP connections the client opened during"
        " a worker run (a keep-alive client opens about "
        f"{c}).",
        "",
    ]
    for loop in args.loops:
        for scheme in args.schemes:
            section = [r for r in rows if (r["loop"], r["scheme"]) == (loop, scheme)]
            if not section:
                continue
            out += [
                f"## {loop}, {'TLS (https)' if scheme == 'https' else 'plain HTTP'}",
                "",
                f"| client | CPU µs/call seq / conc{c} | calls/s seq / conc{c} "
                "| vs raw aiohttp | vs raw httpx | vs raw protocol | peak RSS MB | conns |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for r in section:
                if r["rounds"] == 0:
                    why = "; ".join(r["problems"]) or "no result"
                    status = "skipped" if r["skipped"] else "FAILED"
                    out.append(f"| {r['label']} | {status}: {why} | | | | | | |")
                    continue
                flag = " (time-bounded)" if r["seq_truncated"] or r["conc_truncated"] else ""
                out.append(
                    f"| {r['label']}{flag} "
                    f"| {_fmt(r['seq_cpu_us'])} / {_fmt(r['conc_cpu_us'])} "
                    f"| {_fmt(r['seq_rate'])} / {_fmt(r['conc_rate'])} "
                    f"| {_ratio(r['seq_vs_raw-aiohttp'], r['conc_vs_raw-aiohttp'])} "
                    f"| {_ratio(r['seq_vs_raw-httpx'], r['conc_vs_raw-httpx'])} "
                    f"| {_ratio(r.get('seq_vs_raw-protocol'), r.get('conc_vs_raw-protocol'))} "
                    f"| {_fmt(r['rss_mb'], '.0f')} | {_fmt(r['connections'], '.0f')} |"
                )
            out.append("")
    if meta.get("harness_rss_mb"):
        out += [
            f"Peak RSS includes the interpreter and the harness: {meta['harness_rss_mb']:.0f} MB"
            " for a worker that loads no client.",
            "",
        ]
    if imports:
        out += [
            "## Import time (fresh interpreter)",
            "",
            "| library | `-X importtime` cumulative ms "
            "| wall ms (`python -c 'import X'` − `pass`) |",
            "|---|---:|---:|",
        ]
        for row in imports:
            if "error" in row:
                out.append(f"| {row['label']} (`{row['module']}`) | {row['error']} | |")
            else:
                out.append(
                    f"| {row['label']} (`{row['module']}`) | {row['importtime_ms']:.0f} "
                    f"| {row['wall_ms']:.0f} |"
                )
        out.append("")
    notes = sorted({n for r in rows for n in r["notes"]})
    problems = sorted({(r["label"], p) for r in rows for p in r["problems"]})
    if notes or problems:
        out += ["## Notes", ""]
        out += [f"- {n}" for n in notes]
        out += [f"- {label}: {p}" for label, p in problems]
        out.append("")
    return "\n".join(out)


def chart(rows: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> bool:
    """A bar chart of CPU µs per call, one panel per loop and scheme. False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [
        (loop, scheme)
        for loop in args.loops
        for scheme in args.schemes
        if any(r["rounds"] for r in rows if (r["loop"], r["scheme"]) == (loop, scheme))
    ]
    if not panels:
        return False
    sections = {
        panel: [r for r in rows if (r["loop"], r["scheme"]) == panel and r["rounds"]]
        for panel in panels
    }
    values = [
        v
        for sec in sections.values()
        for r in sec
        for v in (r["seq_cpu_us"], r["conc_cpu_us"])
        if v
    ]
    cols = 2 if len(panels) > 1 else 1
    grid_rows = [panels[i : i + cols] for i in range(0, len(panels), cols)]
    # Each grid row is as tall as its longest panel: bars keep one thickness everywhere.
    heights = [max(len(sections[p]) for p in row) for row in grid_rows]
    fig, axes = plt.subplots(
        len(grid_rows),
        cols,
        figsize=(7.5 * cols, 1.0 + 0.36 * sum(heights) + 0.9 * len(grid_rows)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    slots_of = {p: heights[i // cols] for i, p in enumerate(panels)}
    for ax, panel in zip(axes.flat, panels, strict=False):
        loop, scheme = panel
        section = sections[panel]
        labels = [r["label"].replace(" (floor)", "*") for r in section]
        ys = range(len(section))
        seq = [r["seq_cpu_us"] or 0 for r in section]
        conc = [r["conc_cpu_us"] or 0 for r in section]
        ax.barh([y - 0.2 for y in ys], seq, height=0.4, label="sequential", color="#4c72b0")
        ax.barh(
            [y + 0.2 for y in ys],
            conc,
            height=0.4,
            label=f"{args.concurrency} in flight",
            color="#dd8452",
        )
        for y, (s, k) in enumerate(zip(seq, conc, strict=True)):
            ax.text(s, y - 0.2, f" {s:,.0f}", va="center", fontsize=7)
            ax.text(k, y + 0.2, f" {k:,.0f}", va="center", fontsize=7)
        ax.set_yticks(list(ys), labels, fontsize=8)
        # Same scale and bar thickness in every panel, so panels compare at a glance.
        ax.set_ylim(slots_of[panel] - 0.5, -0.5)
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 1.5, max(values) * 3)
        ax.set_xlabel("client CPU µs per call (log scale, lower is better)", fontsize=8)
        ax.set_title(f"{loop}, {'TLS' if scheme == 'https' else 'plain HTTP'}", fontsize=10)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(
        "Signed GET /sapi/v1/portfolio/account on loopback (* = hand-written floor)", fontsize=11
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- command line ------------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (the worker options are internal)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per phase (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight (32)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls (n/10, >= c)")
    parser.add_argument(
        "--loops", type=_csv, default=["asyncio", "uvloop", "trio"], help="event loops"
    )
    parser.add_argument("--schemes", type=_csv, default=["http", "https"], help="http,https")
    parser.add_argument("--clients", type=_csv, default=list(CLIENTS), help="client names")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="time bound of each phase (60 s)"
    )
    parser.add_argument("--import-repeats", type=int, default=5, help="0 skips import time")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--from-json", type=Path, help="rewrite the tables from this clients.json, run nothing"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = max(args.concurrency, min(200, args.n // 10))
    unknown = [name for name in args.clients if name not in CLIENTS]
    if unknown:
        parser.error(f"unknown clients {unknown}; choose from {list(CLIENTS)}")
    args.clients = [name for name in CLIENTS if name in args.clients]  # table order
    bad_loops = [loop for loop in args.loops if loop not in ("asyncio", "uvloop", "trio")]
    if bad_loops:
        parser.error(f"unknown loops {bad_loops}")
    return args


def _available_loops(loops: list[str]) -> tuple[list[str], list[str]]:
    found, missing = [], []
    for loop in loops:
        module = {"asyncio": "asyncio", "uvloop": "uvloop", "trio": "trio"}[loop]
        try:
            __import__(module)
            found.append(loop)
        except ImportError:
            missing.append(loop)
    return found, missing


def rerender(args: argparse.Namespace) -> None:
    """Write the tables and the chart again from a run's ``clients.json`` (after a change
    to how they are presented; no client runs)."""
    saved = json.loads(args.from_json.read_text(encoding="utf-8"))
    run = saved["args"]
    args.n, args.rounds, args.concurrency = (
        int(run["n"]),
        int(run["rounds"]),
        int(run["concurrency"]),
    )
    args.loops, args.schemes, args.clients = (
        ast.literal_eval(run[k]) for k in ("loops", "schemes", "clients")
    )
    rows = summarise(saved["records"], args)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, saved["imports"], saved["meta"], args)
    (args.out / "clients.md").write_text(text + "\n", encoding="utf-8")
    drawn = chart(rows, args, args.out / "clients.png")
    print(text)
    print(f"written: {args.out / 'clients.md'}" + (" and clients.png" if drawn else ""))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the whole benchmark and write the results."""
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    if args.from_json is not None:
        rerender(args)
        return
    args.loops, missing = _available_loops(args.loops)
    for loop in missing:
        print(f"{loop} is not installed: left out", flush=True)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "source": source_state(),
        "versions": versions(),
    }
    with tempfile.TemporaryDirectory(prefix="pmpro-bench-") as tmp:
        tls = make_tls_material(Path(tmp))
        budget = args.rounds * len(args.loops) * len(args.schemes) * len(args.clients)
        standin = StandIn(tls, max_seconds=budget * (3 * args.max_seconds + 120) + 600)
        try:
            meta["standin_loop"] = standin.loop
            self_check(args, standin, tls["ca"])
            records = run_rounds(args, standin, tls["ca"])
        finally:
            standin.close()
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rss = harness_rss_kb()
    meta["harness_rss_mb"] = rss / 1024 if rss else None
    imports = measure_imports(args.import_repeats) if args.import_repeats > 0 else []
    rows = summarise(records, args)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, imports, meta, args)
    (args.out / "clients.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "clients.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "args": {k: str(v) for k, v in vars(args).items()},
                "rows": rows,
                "imports": imports,
                "records": records,
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    drawn = chart(rows, args, args.out / "clients.png")
    print()
    print(text)
    print(
        f"written: {args.out / 'clients.md'}" + (f", {args.out / 'clients.png'}" if drawn else "")
    )


if __name__ == "__main__":
    main()
