"""A scripted REST transport and WebSocket connector for the user stream's unit tests.

No sockets: every wait is ``anyio.sleep_until`` on the event loop's clock, so the tests run
on the virtual clocks of ``_virtual_time``. The REST side answers the listen key endpoints
and the account endpoint; the WebSocket side plays one script per connection.
"""

from __future__ import annotations

import itertools
import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.requests import PreparedRequest
from binance_pmpro.retry import RetryPolicy
from binance_pmpro.transport import Response
from binance_pmpro.transport.websocket import Ping, WebSocket, WebSocketClosed

__all__ = [
    "ACCOUNT_BODY",
    "STALL",
    "FakeConnector",
    "FakeWebSocket",
    "ScriptedRest",
    "frames",
    "make_client",
    "update_frame",
    "updates",
]

ACCOUNT_BODY = (
    b'{"uniMMR":"5167.92171923","accountEquity":"122607.35137903",'
    b'"actualEquity":"142583.97653212","accountMaintMargin":"23.72469206",'
    b'"accountStatus":"NORMAL","accountType":"PM_1"}'
)
LISTEN_KEY = "/fapi/v1/listenKey"
ACCOUNT = "/sapi/v1/portfolio/account"
STALL = object()
"""A script item: the connection goes silent (stays open, sends nothing more)."""

Script = Iterator[tuple[float, Any]]
"""(seconds after the previous item, item): a frame (str/bytes), a Ping, a
WebSocketClosed to raise, or STALL."""


def update_frame(event_time: int, uni_mmr: str = "1.99999999") -> str:
    return json.dumps(
        {
            "e": "PM_PRO_ACCOUNT_UPDATE",
            "E": event_time,
            "u": uni_mmr,
            "eq": "30.23416728",
            "ae": "30.23416728",
            "im": "20.6783833",
            "mm": "15.11708371",
            "avb": "3.98972738",
            "vmw": "3.98972738",
        }
    )


def updates(period: float = 5.0, start_ms: int = 1_000, uni_mmr: str = "1.99999999") -> Script:
    """An account update every ``period`` seconds, forever."""
    for n in itertools.count():
        yield period, update_frame(start_ms + n, uni_mmr)


def frames(*items: tuple[float, Any], then: Script | None = None) -> Callable[[], Script]:
    """A script factory: ``items`` first, then ``then`` (default: silence)."""

    def make() -> Script:
        return itertools.chain(items, then if then is not None else iter(()))

    return make


class FakeWebSocket:
    """One scripted connection."""

    def __init__(self, script: Script, opened_at: float) -> None:
        self._script = script
        self._base = opened_at
        self._next: tuple[float, Any] | None = None
        self.pongs: list[tuple[float, bytes]] = []
        self.closed_at: float | None = None

    async def receive(self) -> str | bytes | Ping:
        while True:
            if self.closed_at is not None:
                raise WebSocketClosed(1000, "closed")
            if self._next is None:
                try:
                    delay, item = next(self._script)
                except StopIteration:
                    await anyio.sleep_forever()
                self._next = (self._base + delay, item)
            at, item = self._next
            # Cancelled here, the item stays for the next call (like a socket's buffer).
            await anyio.sleep_until(at)
            self._next = None
            self._base = at
            if item is STALL:
                await anyio.sleep_forever()
            if isinstance(item, WebSocketClosed):
                self.closed_at = anyio.current_time()
                raise item
            return item  # type: ignore[no-any-return]

    async def pong(self, payload: bytes) -> None:
        self.pongs.append((anyio.current_time(), payload))

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if self.closed_at is None:
            self.closed_at = anyio.current_time()


@dataclass
class FakeConnector:
    """Opens scripted connections: ``scripts[n]`` for the n-th, ``default`` after them."""

    scripts: list[Callable[[], Script]] = field(default_factory=list)
    default: Callable[[], Script] = updates
    fail: int = 0
    """Refuse this many connection attempts (after the first connection)."""
    urls: list[str] = field(default_factory=list)
    opened: list[tuple[float, FakeWebSocket]] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)

    async def __call__(
        self, url: str, *, timeout: float | None, ssl_context: ssl.SSLContext | None
    ) -> WebSocket:
        from binance_pmpro.errors import ConnectError

        now = anyio.current_time()
        self.attempts.append(now)
        if self.opened and self.fail > 0:
            self.fail -= 1
            raise ConnectError("refused (scripted)")
        await anyio.lowlevel.checkpoint()
        index = len(self.opened)
        script = self.scripts[index]() if index < len(self.scripts) else self.default()
        ws = FakeWebSocket(script, now)
        self.urls.append(url)
        self.opened.append((now, ws))
        return ws


@dataclass
class ScriptedRest:
    """The REST side: listen keys (one live key per account, as Binance keeps them) and the
    account endpoint. ``keepalive_errors`` answers that many PUTs with -1125."""

    keepalive_errors: int = 0
    calls: list[tuple[float, str, str, tuple[tuple[str, str], ...]]] = field(default_factory=list)
    keys_made: int = 0
    live_key: str | None = None

    def calls_of(self, method: str, path: str = LISTEN_KEY) -> list[float]:
        return [t for t, m, p, _ in self.calls if m == method and p == path]

    async def send(self, request: PreparedRequest) -> Response:
        await anyio.lowlevel.checkpoint()
        self.calls.append((anyio.current_time(), request.method, request.path, request.headers))
        headers = {"content-type": "application/json", "x-mbx-used-weight-1m": "1"}
        if request.path == ACCOUNT:
            return Response(200, headers, ACCOUNT_BODY)
        assert request.path == LISTEN_KEY, request.path
        assert request.query == ""  # USER_STREAM: no timestamp, no signature
        if request.method == "POST":
            if self.live_key is None:
                self.keys_made += 1
                self.live_key = f"key{self.keys_made:03d}" + "x" * 57
            return Response(200, headers, json.dumps({"listenKey": self.live_key}).encode())
        if request.method == "PUT":
            if self.keepalive_errors > 0 or self.live_key is None:
                self.keepalive_errors = max(0, self.keepalive_errors - 1)
                self.live_key = None
                body = b'{"code":-1125,"msg":"This listenKey does not exist."}'
                return Response(400, headers, body)
            return Response(200, headers, json.dumps({"listenKey": self.live_key}).encode())
        assert request.method == "DELETE"
        self.live_key = None
        return Response(200, headers, b"{}")

    async def aclose(self) -> None:
        pass


def make_client(rest: ScriptedRest, connector: FakeConnector, **options: Any) -> Any:
    options.setdefault("retry", RetryPolicy(base_delay=0.0, max_delay=0.0))
    return PortfolioMarginProClient(
        "A" * 64,
        "s" * 64,
        base_url="http://127.0.0.1:9",
        stream_url="ws://127.0.0.1:9/pm-classic",
        transport=rest,
        stream_connector=connector,
        time_offset_ms=0,
        rate_limiter="per-client",
        **options,
    )
