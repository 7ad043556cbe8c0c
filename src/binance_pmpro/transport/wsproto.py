"""The default WebSocket connector: wsproto's sans-I/O state machine over anyio streams.

Runs on asyncio and trio alike. TLS comes from the standard library through anyio, with
certificate and hostname verification on (the system's CAs, or the ``ssl_context`` given).
The URL carries the listen key, a credential: it never appears in an exception or a log
line raised from here (only the host does).
"""

from __future__ import annotations

import contextlib
import ssl
from collections import deque
from contextlib import nullcontext, suppress
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.events import (
    Ping as WsPing,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..errors import ConnectError, ConnectTimeoutError
from .websocket import Ping, WebSocket, WebSocketClosed

__all__ = ["WsprotoConnector", "WsprotoWebSocket"]

_READ_SIZE = 65536
_ABNORMAL_CLOSURE = 1006
_CLOSE_WAIT = 2.0  # seconds to wait for the server's close frame before cutting the socket


class WsprotoWebSocket:
    """One client connection: wsproto for the framing, an anyio byte stream for the bytes.

    ``receive`` is meant for one task at a time; ``pong`` and ``aclose`` may be called from
    others (sends are serialised by a lock).
    """

    def __init__(self, stream: anyio.abc.ByteStream, connection: WSConnection) -> None:
        self._stream = stream
        self._ws = connection
        self._events: deque[Event] = deque()
        self._parts: list[str] | list[bytes] = []
        self._send_lock = anyio.Lock()
        self._closed: WebSocketClosed | None = None

    async def receive(self) -> str | bytes | Ping:
        """The next data message or ping; raises :class:`WebSocketClosed` at the end."""
        while True:
            if self._closed is not None:
                raise self._closed
            while self._events:
                event = self._events.popleft()
                result = await self._handle(event)
                if result is not None:
                    return result
            await self._fill()

    async def _handle(self, event: Event) -> str | bytes | Ping | None:
        if isinstance(event, TextMessage):
            text_parts: list[str] = self._parts  # type: ignore[assignment]
            text_parts.append(event.data)
            if not event.message_finished:
                return None
            self._parts = []
            return "".join(text_parts)
        if isinstance(event, BytesMessage):
            byte_parts: list[bytes] = self._parts  # type: ignore[assignment]
            byte_parts.append(bytes(event.data))
            if not event.message_finished:
                return None
            self._parts = []
            return b"".join(byte_parts)
        if isinstance(event, WsPing):
            return Ping(bytes(event.payload))
        if isinstance(event, CloseConnection):
            if event.code == _ABNORMAL_CLOSURE:
                # wsproto's stand-in for "the peer vanished without a close frame" (1006
                # never travels on the wire): the seam calls that a drop.
                await self._abort("connection dropped")
            self._closed = WebSocketClosed(event.code, event.reason or "")
            # The peer may already be gone; the close stands either way.
            with contextlib.suppress(Exception):
                await self._send(event.response())
            await _close_quietly(self._stream)
            raise self._closed
        return None  # Pong and anything else: nothing for the caller

    async def _fill(self) -> None:
        try:
            data = await self._stream.receive(_READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            data = None
        try:
            self._ws.receive_data(data)
        except RemoteProtocolError as exc:
            await self._abort(f"protocol error: {exc}")
        self._events.extend(self._ws.events())
        if data is None and not self._events:
            await self._abort("connection dropped")

    async def _abort(self, reason: str) -> None:
        self._closed = WebSocketClosed(None, reason)
        await _close_quietly(self._stream)
        raise self._closed

    async def _send(self, event: Event) -> None:
        async with self._send_lock:
            await self._stream.send(self._ws.send(event))

    async def pong(self, payload: bytes) -> None:
        """Answer a ping with its payload."""
        if self._closed is not None:
            raise self._closed
        try:
            await self._send(Pong(payload=payload))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, LocalProtocolError):
            await self._abort("connection dropped")

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, wait briefly for the server's, and close the socket."""
        if self._closed is None:
            self._closed = WebSocketClosed(code, reason)
            with anyio.move_on_after(_CLOSE_WAIT, shield=True):
                with contextlib.suppress(Exception):  # a dead peer: nothing to wait for
                    await self._send(CloseConnection(code=code, reason=reason))
                    while not any(isinstance(e, CloseConnection) for e in self._ws.events()):
                        data = await self._stream.receive(_READ_SIZE)
                        self._ws.receive_data(data)
        await _close_quietly(self._stream)


class WsprotoConnector:
    """Opens :class:`WsprotoWebSocket` connections (the default ``stream_connector``)."""

    async def __call__(
        self,
        url: str,
        *,
        timeout: float | None,  # noqa: ASYNC109 (the WebSocketConnector seam)
        ssl_context: ssl.SSLContext | None,
    ) -> WebSocket:
        """Connect to ``url`` (``ws://`` or ``wss://``) within ``timeout`` seconds."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        netloc_host = f"[{host}]" if ":" in host else host
        host_header = netloc_host if parts.port is None else f"{netloc_host}:{port}"
        where = f"{parts.scheme}://{host_header}"
        stream: anyio.abc.ByteStream | None = None
        scope: Any = anyio.fail_after(timeout) if timeout is not None else nullcontext()
        try:
            with scope:
                if secure:
                    context = ssl_context or ssl.create_default_context()
                    stream = await anyio.connect_tcp(
                        host, port, ssl_context=context, tls_hostname=host
                    )
                else:
                    stream = await anyio.connect_tcp(host, port)
                connection = WSConnection(ConnectionType.CLIENT)
                await stream.send(connection.send(Request(host=host_header, target=target)))
                while True:
                    data = await stream.receive(_READ_SIZE)
                    connection.receive_data(data)
                    for event in connection.events():
                        if isinstance(event, AcceptConnection):
                            ws = WsprotoWebSocket(stream, connection)
                            ws._events.extend(connection.events())
                            return ws
                        if isinstance(event, (RejectConnection, RejectData)):
                            status = getattr(event, "status_code", None)
                            raise ConnectError(
                                f"WebSocket handshake with {where} refused (HTTP {status})"
                            )
        except TimeoutError:
            await _close_quietly(stream)
            raise ConnectTimeoutError(
                f"WebSocket connection to {where} not open within {timeout} s"
            ) from None
        except ConnectError:
            await _close_quietly(stream)
            raise
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, RemoteProtocolError) as exc:
            await _close_quietly(stream)
            # The exception text of a handshake failure may quote the request: name only the
            # host, never the path (it holds the listen key).
            kind = type(exc).__name__
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else kind
            raise ConnectError(f"WebSocket connection to {where} failed: {detail}") from None
        except BaseException:
            await _close_quietly(stream)
            raise


async def _close_quietly(stream: anyio.abc.ByteStream | None) -> None:
    """Close the socket; a TLS peer that left without close_notify (allowed, and common)
    makes the TLS shutdown fail, which changes nothing for us."""
    if stream is not None:
        with anyio.CancelScope(shield=True):
            with suppress(Exception):
                await stream.aclose()
