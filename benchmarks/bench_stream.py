"""The user data stream: event decode cost, frame-to-iterator latency, WebSocket libraries.

Three measurements:

1. **Decode cost**: :func:`binance_pmpro.decode_stream_event` on Binance's documented
   frames against ``json.loads`` of the same bytes (which gives dicts of strings, not typed
   events with exact Decimals), in ns per frame.
2. **Library comparison** on loopback against one WebSocket server in its own process:
   client CPU per frame for a burst of frames, and frame-to-application latency (p50/p99) for
   paced frames, for wsproto over anyio streams (the SDK's connector), httpx-ws, and
   ``websockets`` (asyncio only), each on every event loop it supports. Every client does
   the same work per frame: receive it and decode it into its typed event.
3. **Frame-to-iterator latency** of the SDK itself: ``client.user_stream()`` (listen key
   calls answered in-process, the WebSocket on loopback), from the server's send to the
   event coming out of ``async for``.

The server stamps each paced frame's ``E`` with its ``CLOCK_MONOTONIC`` in microseconds (a
clock shared by every process on the machine); the client subtracts it from its own
reading after decoding. Everything stays on 127.0.0.1, and every loop is bounded by a frame
count and ``--max-seconds``.

    python -m benchmarks.bench_stream [--burst 20000] [--paced 2000] [--interval-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from ._common import RESULTS, ROOT

DOCUMENTED = {
    "PM_PRO_ACCOUNT_UPDATE": (
        b'{"e":"PM_PRO_ACCOUNT_UPDATE","E":1564745798939,"u":"1.99999999",'
        b'"eq":"30.23416728","ae":"30.23416728","im":"20.6783833","mm":"15.11708371",'
        b'"avb":"3.98972738","vmw":"3.98972738"}'
    ),
    "riskLevelChange": (
        b'{"e":"riskLevelChange","E":1587727187525,"u":"1.99999999","s":"MARGIN_CALL",'
        b'"eq":"30.23416728","ae":"30.23416728","m":"15.11708371"}'
    ),
}
_UPDATE_HEAD = b'{"e":"PM_PRO_ACCOUNT_UPDATE","E":'
_UPDATE_TAIL = DOCUMENTED["PM_PRO_ACCOUNT_UPDATE"][len(_UPDATE_HEAD) + len("1564745798939") :]


def _now_us() -> int:
    return time.monotonic_ns() // 1000


# --- the server (its own process) -------------------------------------------------------------


async def _serve() -> None:
    import websockets.asyncio.server as ws_server

    async def handler(connection: Any) -> None:
        # /burst/<n>/... or /paced/<n>/<interval_us>/...: the path picks the behaviour.
        parts = connection.request.path.strip("/").split("/")
        count = int(parts[1])
        if parts[0] == "burst":
            frame = DOCUMENTED["PM_PRO_ACCOUNT_UPDATE"].decode()
            for _ in range(count):
                await connection.send(frame)
        else:
            interval = int(parts[2]) / 1e6
            start = time.monotonic()
            for n in range(count):
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await connection.send(
                    (_UPDATE_HEAD + str(_now_us()).encode() + _UPDATE_TAIL).decode()
                )
        await connection.close()

    async with ws_server.serve(
        handler, "127.0.0.1", 0, ping_interval=None, compression=None
    ) as srv:
        port = srv.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.Future()


# --- the clients -------------------------------------------------------------------------------

Receiver = Callable[[str, int, Callable[[str | bytes], None], float], Awaitable[None]]


async def _wsproto(
    url: str, count: int, on_frame: Callable[[str | bytes], None], limit: float
) -> None:
    from binance_pmpro.transport.websocket import WebSocketClosed
    from binance_pmpro.transport.wsproto import WsprotoConnector

    ws = await WsprotoConnector()(url, timeout=None, ssl_context=None)
    seen = 0
    with anyio.fail_after(limit):
        try:
            while seen < count:
                message = await ws.receive()
                if isinstance(message, (str, bytes)):
                    on_frame(message)
                    seen += 1
        except WebSocketClosed:
            pass
    await ws.aclose()


async def _httpx_ws(
    url: str, count: int, on_frame: Callable[[str | bytes], None], limit: float
) -> None:
    import httpx
    from httpx_ws import WebSocketDisconnect, aconnect_ws

    async with (
        httpx.AsyncClient() as client,
        aconnect_ws(url, client, keepalive_ping_interval_seconds=None) as ws,
    ):
        seen = 0
        with anyio.fail_after(limit):
            try:
                while seen < count:
                    on_frame(await ws.receive_text())
                    seen += 1
            except WebSocketDisconnect:
                pass


async def _websockets(
    url: str, count: int, on_frame: Callable[[str | bytes], None], limit: float
) -> None:
    import websockets
    from websockets.asyncio.client import connect

    async with connect(url, ping_interval=None, compression=None) as ws:
        seen = 0
        with anyio.fail_after(limit):
            try:
                while seen < count:
                    on_frame(await ws.recv())
                    seen += 1
            except websockets.ConnectionClosed:
                pass


LIBRARIES: dict[str, tuple[Receiver, tuple[str, ...]]] = {
    "wsproto + anyio (SDK)": (_wsproto, ("asyncio", "trio")),
    "httpx-ws": (_httpx_ws, ("asyncio", "trio")),
    "websockets": (_websockets, ("asyncio",)),
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run_library(
    receiver: Receiver, backend: str, port: int, args: argparse.Namespace
) -> dict[str, float]:
    from binance_pmpro import decode_stream_event

    received = [0]

    def burst_frame(frame: str | bytes) -> None:
        decode_stream_event(frame)
        received[0] += 1

    latencies: list[float] = []

    def paced_frame(frame: str | bytes) -> None:
        event = decode_stream_event(frame)
        latencies.append(_now_us() - event.event_time)  # type: ignore[union-attr]

    async def burst() -> tuple[float, float]:
        url = f"ws://127.0.0.1:{port}/burst/{args.burst}"
        cpu, wall = time.process_time(), time.perf_counter()
        await receiver(url, args.burst, burst_frame, args.max_seconds)
        return time.process_time() - cpu, time.perf_counter() - wall

    async def paced() -> None:
        url = f"ws://127.0.0.1:{port}/paced/{args.paced}/{int(args.interval_ms * 1000)}"
        await receiver(url, args.paced, paced_frame, args.max_seconds)

    cpu, wall = anyio.run(burst, backend=backend)
    assert received[0] == args.burst, f"{received[0]} of {args.burst} frames"
    anyio.run(paced, backend=backend)
    warm = latencies[len(latencies) // 10 :]  # the first tenth warms up
    return {
        "cpu_us_per_frame": cpu / args.burst * 1e6,
        "frames_per_s": args.burst / wall,
        "p50_us": statistics.median(warm),
        "p99_us": _percentile(warm, 0.99),
    }


def _run_sdk(backend: str, port: int, args: argparse.Namespace) -> dict[str, float]:
    from binance_pmpro import AccountUpdate, PortfolioMarginProClient
    from binance_pmpro.transport import Response

    class Keys:
        """Answers the listen key calls in-process (the stream is what is measured)."""

        async def send(self, request: Any) -> Response:
            return Response(200, {}, b'{"listenKey":"' + b"k" * 60 + b'"}')

        async def aclose(self) -> None:
            pass

    latencies: list[float] = []

    async def main() -> None:
        client = PortfolioMarginProClient(
            "bench-key",
            base_url="http://127.0.0.1:9",
            stream_url=f"ws://127.0.0.1:{port}/paced/{args.paced}/{int(args.interval_ms * 1000)}",
            transport=Keys(),
            rate_limiter=None,
            time_sync=False,
        )
        async with client, client.user_stream(stall_after=60.0) as stream:
            with anyio.fail_after(args.max_seconds):
                async for event in stream:
                    if isinstance(event, AccountUpdate):
                        latencies.append(_now_us() - event.event_time)
                    if len(latencies) >= args.paced:
                        break

    anyio.run(main, backend=backend)
    warm = latencies[len(latencies) // 10 :]
    return {
        "p50_us": statistics.median(warm),
        "p99_us": _percentile(warm, 0.99),
        "n": len(latencies),
    }


def _decode_costs(repeat: int) -> list[tuple[str, float, float]]:
    from binance_pmpro import decode_stream_event

    rows = []
    for name, frame in DOCUMENTED.items():
        ours = min(
            timeit.repeat(lambda f=frame: decode_stream_event(f), number=20000, repeat=repeat)
        )
        plain = min(timeit.repeat(lambda f=frame: json.loads(f), number=20000, repeat=repeat))
        rows.append((name, ours / 20000 * 1e9, plain / 20000 * 1e9))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--burst", type=int, default=20_000, help="frames per burst")
    parser.add_argument("--paced", type=int, default=2_000, help="paced frames per run")
    parser.add_argument("--interval-ms", type=float, default=1.0, help="between paced frames")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound of each phase")
    parser.add_argument("--repeat", type=int, default=5, help="timeit repeats of the decode")
    parser.add_argument("--out", type=Path, default=RESULTS / "stream.md")
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return

    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_stream", "--serve"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        lines = [
            "# User data stream",
            "",
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; loopback, server in its own "
            f"process; burst {args.burst} frames, paced {args.paced} frames every "
            f"{args.interval_ms} ms (first tenth dropped as warm-up).",
            "",
            "## Decode cost (ns per frame, best of repeats)",
            "",
            "| frame | decode_stream_event | json.loads | ratio |",
            "|---|---:|---:|---:|",
        ]
        for name, ours, plain in _decode_costs(args.repeat):
            lines.append(f"| {name} | {ours:,.0f} | {plain:,.0f} | {ours / plain:.2f} |")
        lines += [
            "",
            "## WebSocket libraries (receive + decode each frame)",
            "",
            "| library | loop | CPU µs/frame (burst) | frames/s (burst) | p50 µs | p99 µs |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, (receiver, backends) in LIBRARIES.items():
            for backend in backends:
                row = _run_library(receiver, backend, port, args)
                lines.append(
                    f"| {name} | {backend} | {row['cpu_us_per_frame']:.1f} | "
                    f"{row['frames_per_s']:,.0f} | {row['p50_us']:.0f} | {row['p99_us']:.0f} |"
                )
                print(lines[-1], flush=True)
        lines += [
            "",
            "## Frame to `async for` of `client.user_stream()`",
            "",
            "| loop | p50 µs | p99 µs |",
            "|---|---:|---:|",
        ]
        for backend in ("asyncio", "trio"):
            row = _run_sdk(backend, port, args)
            lines.append(f"| {backend} | {row['p50_us']:.0f} | {row['p99_us']:.0f} |")
            print(lines[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
