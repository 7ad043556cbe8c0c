"""A loopback stand-in for Binance's ``GET /sapi/v1/portfolio/account``, for benchmarks.

Run it in its own process so that its CPU never counts against the client being measured::

    python -m benchmarks.standin [--cert CHAIN.pem --key KEY.pem] [--max-seconds 3600]

It prints one JSON line (``{"http": "http://127.0.0.1:PORT", "https": ..., "pid": ...}``) and
serves until stdin closes, SIGTERM/SIGINT, or ``--max-seconds`` pass.

Routes:

- ``GET /sapi/v1/portfolio/account``: checks the ``X-MBX-APIKEY`` header, the presence of
  a well-formed ``timestamp`` within 60 s of the local clock, and the HMAC-SHA256
  ``signature`` (the last parameter, over every byte of the query before it), then answers
  with Binance's documented example body and ``X-SAPI-USED-UID-WEIGHT-1M`` (weight 5 per
  call, counted per minute). A failed check answers Binance's error JSON (-2015, -1102,
  -1021 or -1022), and is counted.
- ``GET /api/v3/time``: ``{"serverTime": ms}``.
- ``GET /__stats``: the counters (requests answered OK, each kind of failure, connections
  accepted), for the benchmark harness to verify that every call was signed correctly.

HTTP/1.1 with keep-alive (pipelining is answered in order), on asyncio ``Protocol`` with the
httptools (llhttp) request parser and uvloop when installed. It does as little per request as
it can, so the client stays the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import ssl
import sys
import time
from typing import Any, cast

import httptools

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._common import (
    ACCOUNT_BODY,
    ACCOUNT_PATH,
    API_KEY,
    API_SECRET,
    STATS_PATH,
    TIME_PATH,
)

_ACCOUNT = ACCOUNT_PATH.encode()
_TIME = TIME_PATH.encode()
_STATS = STATS_PATH.encode()
_KEY = API_KEY.encode()
_MAC = hmac.new(API_SECRET.encode(), digestmod=hashlib.sha256)
_SIG = b"&signature="
_TOLERANCE_MS = 60_000
_WEIGHT = 5

STATS: dict[str, int] = {
    "ok": 0,
    "time": 0,
    "bad_key": 0,
    "bad_signature": 0,
    "no_signature": 0,
    "bad_timestamp": 0,
    "not_found": 0,
    "bad_http": 0,
    "connections": 0,
}

_weight_minute = 0
_weight_used = 0


def _response(status: bytes, body: bytes, extra: bytes = b"", close: bool = False) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 ",
            status,
            b"\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n",
            extra,
            b"Connection: close\r\n" if close else b"",
            b"\r\n",
            body,
        )
    )


def _error(status: bytes, code: int, msg: str, close: bool) -> bytes:
    body = json.dumps({"code": code, "msg": msg}, separators=(",", ":")).encode()
    return _response(status, body, close=close)


_OK_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: "
    + str(len(ACCOUNT_BODY)).encode()
    + b"\r\nX-SAPI-USED-UID-WEIGHT-1M: "
)


def _check_signed(query: bytes, api_key: bytes | None, close: bool) -> bytes:
    """The answer to one signed account request: the example body, or Binance's error."""
    global _weight_minute, _weight_used
    if api_key != _KEY:
        STATS["bad_key"] += 1
        return _error(b"401 Unauthorized", -2015, "Invalid API-key, IP, or permissions.", close)
    cut = query.rfind(_SIG)
    if cut < 0:
        STATS["no_signature"] += 1
        return _error(
            b"400 Bad Request", -1102, "Mandatory parameter 'signature' was not sent.", close
        )
    payload = query[:cut]
    mac = _MAC.copy()
    mac.update(payload)
    if not hmac.compare_digest(mac.hexdigest().encode(), query[cut + len(_SIG) :].lower()):
        STATS["bad_signature"] += 1
        return _error(b"400 Bad Request", -1022, "Signature for this request is not valid.", close)
    now_ms = int(time.time() * 1000)
    timestamp = _param(payload, b"timestamp")
    if timestamp is None or not timestamp.isdigit():
        STATS["bad_timestamp"] += 1
        return _error(
            b"400 Bad Request", -1102, "Mandatory parameter 'timestamp' was not sent.", close
        )
    if abs(int(timestamp) - now_ms) > _TOLERANCE_MS:
        STATS["bad_timestamp"] += 1
        return _error(
            b"400 Bad Request",
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
            close,
        )
    minute = now_ms // 60_000
    if minute != _weight_minute:
        _weight_minute, _weight_used = minute, 0
    _weight_used += _WEIGHT
    STATS["ok"] += 1
    tail = b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n"
    return b"".join((_OK_HEAD, str(_weight_used).encode(), tail, ACCOUNT_BODY))


def _param(query: bytes, name: bytes) -> bytes | None:
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            return value
    return None


class _Connection(asyncio.Protocol):
    """One client connection: parse requests with llhttp, answer each in order."""

    __slots__ = ("_api_key", "_keep_alive", "_parser", "_transport", "_url")

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._api_key: bytes | None = None
        self._keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence the cast.
        self._transport = cast(asyncio.Transport, transport)
        STATS["connections"] += 1

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            STATS["bad_http"] += 1
            if self._transport is not None:
                self._transport.write(_error(b"400 Bad Request", -1, "bad HTTP", True))
                self._transport.close()

    # llhttp callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._api_key = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"x-mbx-apikey":
            self._api_key = value

    def on_headers_complete(self) -> None:
        # llhttp forgets "Connection: close" once the message is complete: ask now.
        self._keep_alive = self._parser.should_keep_alive()

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        close = not self._keep_alive
        path, _, query = self._url.partition(b"?")
        method = self._parser.get_method()
        if method != b"GET":
            STATS["not_found"] += 1
            answer = _error(b"405 Method Not Allowed", -1, "GET only here", close)
        elif path == _ACCOUNT:
            answer = _check_signed(query, self._api_key, close)
        elif path == _TIME:
            STATS["time"] += 1
            body = b'{"serverTime":%d}' % int(time.time() * 1000)
            answer = _response(b"200 OK", body, b"X-MBX-USED-WEIGHT-1M: 1\r\n", close)
        elif path == _STATS:
            answer = _response(b"200 OK", json.dumps(STATS).encode(), close=close)
        else:
            STATS["not_found"] += 1
            answer = _error(b"404 Not Found", -1, "no such path on the stand-in", close)
        transport.write(answer)
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def serve(cert: str | None, key: str | None, max_seconds: float) -> None:
    """Listen on 127.0.0.1 (plain, and TLS when given a certificate), print the base URLs
    as one JSON line, then serve until told to stop or ``max_seconds`` pass."""
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(_Connection, "127.0.0.1", 0, backlog=512)]
    info: dict[str, Any] = {
        "http": f"http://127.0.0.1:{servers[0].sockets[0].getsockname()[1]}",
        "https": None,
        "pid": os.getpid(),
        "loop": type(loop).__module__,
    }
    if cert and key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        tls = await loop.create_server(_Connection, "127.0.0.1", 0, ssl=context, backlog=512)
        servers.append(tls)
        info["https"] = f"https://127.0.0.1:{tls.sockets[0].getsockname()[1]}"
    print(json.dumps(info), flush=True)

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # A closed stdin means the harness went away: never outlive it.
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError):
        reader.feed_eof()

    async def _watch_stdin() -> None:
        while await reader.read(4096):
            pass
        stop.set()

    watcher = asyncio.ensure_future(_watch_stdin())
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except asyncio.TimeoutError:
        pass
    finally:
        watcher.cancel()
        for server in servers:
            server.close()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cert", help="server certificate chain (PEM) to also serve TLS")
    parser.add_argument("--key", help="server private key (PEM)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this")
    parser.add_argument("--no-uvloop", action="store_true", help="serve on plain asyncio")
    args = parser.parse_args(argv)
    runner: Any = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    runner(serve(args.cert, args.key, args.max_seconds))


if __name__ == "__main__":
    main()
