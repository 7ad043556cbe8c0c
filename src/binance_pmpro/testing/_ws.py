"""The in-process stream shell: a WebSocket connector that talks to FakeExchange in memory.

It implements :class:`~binance_pmpro.transport.websocket.WebSocketConnector` over the same
:class:`~binance_pmpro.testing._stream.StreamSession` the loopback server drives, without
sockets or background tasks: :meth:`FakeWebSocket.receive` runs the session up to its next
deadline with ``anyio`` waits, so trio's MockClock and the tests' virtual asyncio loop move
the stream along in no real time. Give the exchange the event loop's clock
(``clock=lambda: anyio.current_time() * 1000``) for that; with the wall clock it runs in
real time.

The session runs while the client waits in ``receive()``. A client that stops reading for
several periods therefore gets one update with the current numbers when it reads again,
where a socket would have buffered every update of the gap; pings, expiry and the
lifetime are judged at that moment too.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel

from ..errors import ConnectError
from ..transport.websocket import Ping, WebSocketClosed
from ._stream import OutClose, OutDrop, OutPing, OutText, Rejected, StreamSession

if TYPE_CHECKING:
    from ._exchange import FakeExchange

__all__ = ["FakeWebSocket", "FakeWebSocketConnector"]

# Event-loop seconds that may pass while the exchange's clock stands still before we call
# the set-up broken (a virtual loop with the exchange on the wall clock would spin forever).
_CLOCK_MISMATCH_S = 5.0


class FakeWebSocketConnector:
    """Opens in-process stream connections to a FakeExchange (see
    :meth:`~binance_pmpro.testing.FakeExchange.ws_connector`).

    The URL's scheme and host are not looked at; its path must be
    ``/pm-classic/ws/<listenKey>``. A refused handshake raises
    :class:`~binance_pmpro.errors.ConnectError` naming the HTTP status (400 for an unknown,
    expired or closed listen key), as the loopback server answers it.
    """

    def __init__(self, exchange: FakeExchange, *, client_ip: str = "127.0.0.1") -> None:
        self.exchange = exchange
        self.client_ip = client_ip
        self.connects = 0
        """Connection attempts, refused ones included."""

    def __repr__(self) -> str:
        return f"FakeWebSocketConnector(client_ip={self.client_ip!r}, connects={self.connects})"

    async def __call__(
        self,
        url: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the connector protocol)
        ssl_context: ssl.SSLContext | None = None,
    ) -> FakeWebSocket:
        """Open a connection; raises ConnectError when the handshake is refused."""
        await anyio.lowlevel.checkpoint()
        self.connects += 1
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ConnectError(f"not a WebSocket URL (scheme {parts.scheme!r})")
        exchange = self.exchange
        try:
            session = exchange._stream.open(parts.path, self.client_ip, exchange.now_ms())
        except Rejected as exc:
            # The path holds the listen key (a credential): the message leaves it out.
            raise ConnectError(
                f"WebSocket handshake refused: HTTP {exc.status} {exc.body.decode()}"
            ) from None
        return FakeWebSocket(exchange, session)


class FakeWebSocket:
    """One in-process stream connection (implements the ``WebSocket`` protocol)."""

    def __init__(self, exchange: FakeExchange, session: StreamSession) -> None:
        self._exchange = exchange
        self._session = session
        self._closed: WebSocketClosed | None = None
        self._event: anyio.Event | None = None
        session.set_waker(self._wake)

    def __repr__(self) -> str:
        state = "closed" if self._closed is not None else "open"
        return f"FakeWebSocket(connection={self._session.record.id}, {state})"

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    async def receive(self) -> str | bytes | Ping:
        """The next text frame or ping; raises WebSocketClosed once the connection ended."""
        session = self._session
        exchange = self._exchange
        stuck_since: float | None = None
        while True:
            if session.outbox:
                frame = session.outbox.popleft()
                if isinstance(frame, OutText):
                    await anyio.lowlevel.checkpoint()
                    return frame.text
                if isinstance(frame, OutPing):
                    await anyio.lowlevel.checkpoint()
                    return Ping(frame.payload)
                if isinstance(frame, OutClose):
                    self._closed = WebSocketClosed(frame.code, frame.reason)
                elif isinstance(frame, OutDrop):
                    self._closed = WebSocketClosed(None)
                session.outbox.clear()
            if self._closed is not None:
                await anyio.lowlevel.checkpoint()
                raise WebSocketClosed(self._closed.code, self._closed.reason)
            now = exchange.now_ms()
            session.tick(now)
            if session.outbox or session.closed:
                continue
            deadline = session.deadline_ms()
            assert deadline is not None
            self._event = anyio.Event()
            loop_before = anyio.current_time()
            with anyio.move_on_after(max(deadline - now, 1) / 1000):
                await self._event.wait()
            self._event = None
            if exchange.now_ms() == now and not session.outbox:
                if stuck_since is None:
                    stuck_since = loop_before
                elif anyio.current_time() - stuck_since > _CLOCK_MISMATCH_S:
                    raise RuntimeError(
                        "FakeExchange's clock does not move with the event loop's: give it "
                        "clock=lambda: anyio.current_time() * 1000 on a virtual clock"
                    )
            else:
                stuck_since = None

    async def pong(self, payload: bytes) -> None:
        """Answer a ping; raises WebSocketClosed when the connection has ended."""
        await anyio.lowlevel.checkpoint()
        if self._closed is not None or self._session.closed:
            raise WebSocketClosed(self._closed.code if self._closed else None)
        self._session.on_pong(bytes(payload), self._exchange.now_ms())

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (idempotent)."""
        if self._closed is None:
            self._closed = WebSocketClosed(code, reason)
            self._session.on_client_close(code, self._exchange.now_ms())
        self._session.set_waker(None)
        await anyio.lowlevel.checkpoint()
