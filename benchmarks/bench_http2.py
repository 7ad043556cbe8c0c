"""HTTP/1.1 vs HTTP/2 on the httpx transport: client CPU per call, loopback TLS.

The server is hypercorn (HTTP/2 over TLS with ALPN) in its own process, answering the
account example. Rounds are interleaved; medians are reported. Bench-only dependencies:
``hypercorn`` and ``h2`` (``benchmarks/requirements.txt``).

    python -m benchmarks.bench_http2 [--n 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trustme

from binance_pmpro import PortfolioMarginProClient

from ._common import ACCOUNT_BODY

APP = f"""
BODY = {ACCOUNT_BODY!r}
HEADERS = [(b"content-type", b"application/json"), (b"x-sapi-used-uid-weight-1m", b"5")]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": HEADERS}})
    await send({{"type": "http.response.body", "body": BODY}})
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _run(base_url: str, ca: Path, http2: bool, n: int, concurrency: int) -> float:
    context = ssl.create_default_context(cafile=str(ca))
    async with (
        httpx.AsyncClient(http2=http2, verify=context) as http_client,
        PortfolioMarginProClient(
            "k", "s", base_url=base_url, http_client=http_client, time_sync=False
        ) as client,
    ):
        for _ in range(50):
            await client.account_info()
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                await client.account_info()

        start = time.process_time()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=120)
        return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca = trustme.CA()
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            folder / "server.pem"
        )
        ca.cert_pem.write_to_path(folder / "ca.pem")
        (folder / "h2app.py").write_text(APP)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
             "--certfile", "server.pem", "--keyfile", "server.pem", "h2app:app"],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(2.0)  # hypercorn's start-up; the first calls would fail otherwise
            base_url = f"https://127.0.0.1:{port}"
            print("| in flight | HTTP/1.1 µs/call | HTTP/2 µs/call | HTTP/2 ÷ HTTP/1.1 |")
            print("|---|---|---|---|")
            for concurrency in (1, 32):
                figures: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(args.rounds):
                    for http2 in (False, True):
                        figures[http2].append(
                            asyncio.run(
                                _run(base_url, folder / "ca.pem", http2, args.n, concurrency)
                            )
                        )
                one, two = (statistics.median(figures[v]) for v in (False, True))
                print(f"| {concurrency} | {one:.0f} | {two:.0f} | {two / one:.2f}x |")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
