"""A small WebSocket client for tests of FakeExchange's loopback stream (wsproto over anyio).

It implements the SDK's ``WebSocket`` protocol (receive/pong/aclose), so the loopback server
and the in-process connector can be driven by the same test code, on asyncio and trio.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import anyio
from anyio.abc import SocketStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.events import Ping as WSPing

from binance_pmpro.errors import ConnectError
from binance_pmpro.transport import websocket

__all__ = ["TestWebSocket", "ws_connect"]


class TestWebSocket:
    """One client connection."""

    __test__ = False  # not a pytest test class

    def __init__(self, stream: SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self.pending: list[str | bytes | websocket.Ping] = []
        self.closed: websocket.WebSocketClosed | None = None
        self.text_parts: list[str] = []

    async def _fill(self) -> None:
        while not self.pending and self.closed is None:
            try:
                data = await self.stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                data = b""
            if not data:
                self.closed = websocket.WebSocketClosed(None)
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    self.text_parts.append(event.data)
                    if event.message_finished:
                        self.pending.append("".join(self.text_parts))
                        self.text_parts.clear()
                elif isinstance(event, BytesMessage):
                    self.pending.append(bytes(event.data))
                elif isinstance(event, WSPing):
                    self.pending.append(websocket.Ping(bytes(event.payload)))
                elif isinstance(event, CloseConnection):
                    if self.ws.state is not ConnectionState.CLOSED:
                        await self.stream.send(self.ws.send(event.response()))
                    self.closed = websocket.WebSocketClosed(event.code, event.reason or "")

    async def receive(self) -> str | bytes | websocket.Ping:
        await self._fill()
        if self.pending:
            return self.pending.pop(0)
        assert self.closed is not None
        raise websocket.WebSocketClosed(self.closed.code, self.closed.reason)

    async def pong(self, payload: bytes) -> None:
        from wsproto.events import Pong

        await self.stream.send(self.ws.send(Pong(payload=payload)))

    async def send_ping(self, payload: bytes = b"") -> None:
        await self.stream.send(self.ws.send(Ping(payload=payload)))

    async def send_text(self, text: str) -> None:
        await self.stream.send(self.ws.send(TextMessage(data=text)))

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        try:
            if self.ws.state is ConnectionState.OPEN:
                await self.stream.send(self.ws.send(CloseConnection(code=code, reason=reason)))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        await self.stream.aclose()


async def ws_connect(
    url: str,
    *,
    timeout: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> TestWebSocket:
    """Connect to a ``ws://`` URL on loopback; ConnectError (with the status) if refused."""
    parts = urlsplit(url)
    assert parts.scheme == "ws"
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await anyio.connect_tcp(parts.hostname, parts.port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send(ws.send(Request(host=f"{parts.hostname}:{parts.port}", target=parts.path)))
    status: int | None = None
    body = b""
    while True:
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return TestWebSocket(stream, ws)
            if isinstance(event, RejectConnection):
                status = event.status_code
                if not event.has_body:
                    await stream.aclose()
                    raise ConnectError(f"WebSocket handshake refused: HTTP {status}")
            elif isinstance(event, RejectData):
                body += event.data
                if event.body_finished:
                    await stream.aclose()
                    raise ConnectError(f"WebSocket handshake refused: HTTP {status} {body!r}")
        if not data:
            await stream.aclose()
            raise ConnectError(f"connection closed during the handshake (HTTP {status})")
