"""The socket shell: FakeExchange over real HTTP/1.1, on asyncio or trio.

anyio's TCP listener accepts connections, h11 parses them (keep-alive, pipelining-safe,
``Connection: close`` honoured), and every complete request goes through
``FakeExchange.handle`` exactly as in-process. Faults become socket behaviour: a dropped
connection is closed without an answer, a reset sends part of the body then an RST.

A WebSocket upgrade to ``/pm-classic/ws/<listenKey>`` switches the connection to wsproto and
runs the user data stream's session on it (the same state machine as the in-process
connector): its text frames, pings and close frames go out as WebSocket frames, a dropped
connection is a TCP close without a close frame.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.events import Ping as WSPing
from wsproto.utilities import generate_accept_token

from ._exchange import Reply, ReplyAction
from ._stream import OutClose, OutDrop, OutPing, OutText, Rejected, StreamSession

if TYPE_CHECKING:
    from ._exchange import FakeExchange

__all__ = ["FakeServer", "serve"]

logger = logging.getLogger("binance_pmpro.testing")

_MAX_BODY = 1 << 20
_MAX_HEAD = 64 << 10
_RECEIVE = 65536


@dataclass(frozen=True, slots=True)
class FakeServer:
    """A running loopback server of a FakeExchange."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        """``http://host:port``, the base URL to give a client (the futures base URL too:
        the listen key calls are served on the same port)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def stream_url(self) -> str:
        """``ws://host:port/pm-classic``, the user data stream URL to give a client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/pm-classic"


@contextlib.asynccontextmanager
async def serve(
    exchange: FakeExchange, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[FakeServer]:
    """Serve ``exchange`` on ``host:port`` (0: an ephemeral port) for the duration of the
    ``async with`` block; open connections are closed when it ends."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound_port = listener.extra(SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)

    async def handler(stream: SocketStream) -> None:
        await _serve_connection(exchange, stream)

    # An error in the caller's block is re-raised after the task group has closed, so the
    # caller sees it as it was, not wrapped in an ExceptionGroup by the server's tasks.
    body_error: BaseException | None = None
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handler, group)
        try:
            yield FakeServer(host, bound_port)
        except GeneratorExit:
            raise
        except BaseException as exc:
            body_error = exc
        finally:
            group.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


async def _serve_connection(exchange: FakeExchange, stream: SocketStream) -> None:
    """Answer requests on one connection until either side closes it."""
    try:
        address = stream.extra(SocketAttribute.remote_address)  # noqa: S610
        client_ip = address[0] if isinstance(address, tuple) else str(address)
    except Exception:  # pragma: no cover - every TCP stream has a peer address
        client_ip = "unknown"
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    async with stream:
        while True:
            try:
                request = await _read_request(connection, stream)
            except h11.RemoteProtocolError as exc:
                await _send_bad_request(connection, stream, exc)
                return
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            if request is None:
                return
            method, target, headers, body = request
            if method == "GET" and _is_websocket_upgrade(headers):
                await _serve_websocket(exchange, connection, stream, target, headers, client_ip)
                return
            try:
                reply = exchange.handle(method, target, headers, body, client_ip=client_ip)
            except Exception:
                # A bug in a handler must not take the whole server down with it.
                logger.exception("FakeExchange failed on %s %s", method, target.split("?")[0])
                reply = Reply(
                    500,
                    (("Content-Type", "application/json"),),
                    b'{"code":-1000,"msg":"FakeExchange internal error."}',
                )
            try:
                if not await _deliver(connection, stream, reply):
                    return
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return  # the client gave up (a timeout) while we were slow
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            connection.start_next_cycle()


async def _read_request(
    connection: h11.Connection, stream: SocketStream
) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    """The next complete request on the connection, or None when the client closed it."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(_RECEIVE)
            except anyio.EndOfStream:
                data = b""
            connection.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > _MAX_BODY:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            headers = [
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers
            ]
            return (
                request.method.decode("ascii"),
                request.target.decode("latin-1"),
                headers,
                bytes(body),
            )
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _deliver(connection: h11.Connection, stream: SocketStream, reply: Reply) -> bool:
    """Put ``reply`` on the wire; False when the connection must be closed now."""
    if reply.delay > 0:
        await anyio.sleep(reply.delay)
    if reply.action is ReplyAction.DROP:
        return False
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]
    headers.append((b"Content-Length", str(len(reply.body)).encode()))
    head = connection.send(h11.Response(status_code=reply.status, headers=headers))
    assert head is not None
    if reply.action is ReplyAction.RESET:
        part = connection.send(h11.Data(data=reply.body[: reply.send_bytes or 0]))
        await stream.send(head + (part or b""))
        await _reset(stream)
        return False
    data = connection.send(h11.Data(data=reply.body)) if reply.body else b""
    end = connection.send(h11.EndOfMessage())
    await stream.send(head + (data or b"") + (end or b""))
    return connection.our_state is h11.DONE


async def _reset(stream: SocketStream) -> None:
    """Abort the connection with an RST (SO_LINGER 0) instead of an orderly close."""
    # Let the partial answer reach the peer before the reset discards what is in flight.
    await anyio.sleep(0.01)
    with contextlib.suppress(OSError):
        raw = stream.extra(SocketAttribute.raw_socket)  # noqa: S610
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def _send_bad_request(
    connection: h11.Connection, stream: SocketStream, exc: h11.RemoteProtocolError
) -> None:
    if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = b'{"code":-1000,"msg":"Malformed HTTP request."}'
    with contextlib.suppress(h11.LocalProtocolError, anyio.BrokenResourceError, OSError):
        head = connection.send(
            h11.Response(
                status_code=exc.error_status_hint,
                headers=[
                    (b"Content-Type", b"application/json"),
                    (b"Content-Length", str(len(body)).encode()),
                    (b"Connection", b"close"),
                ],
            )
        )
        rest = connection.send(h11.Data(data=body))
        end = connection.send(h11.EndOfMessage())
        await stream.send((head or b"") + (rest or b"") + (end or b""))


# --- the user data stream over WebSocket -------------------------------------------------


def _is_websocket_upgrade(headers: list[tuple[str, str]]) -> bool:
    for name, value in headers:
        if name.lower() == "upgrade" and value.strip().lower() == "websocket":
            return True
    return False


async def _refuse(
    connection: h11.Connection, stream: SocketStream, status: int, body: bytes
) -> None:
    with contextlib.suppress(h11.LocalProtocolError, anyio.BrokenResourceError, OSError):
        head = connection.send(
            h11.Response(
                status_code=status,
                headers=[
                    (b"Content-Type", b"application/json"),
                    (b"Content-Length", str(len(body)).encode()),
                    (b"Connection", b"close"),
                ],
            )
        )
        rest = connection.send(h11.Data(data=body))
        end = connection.send(h11.EndOfMessage())
        await stream.send((head or b"") + (rest or b"") + (end or b""))


async def _serve_websocket(
    exchange: FakeExchange,
    connection: h11.Connection,
    stream: SocketStream,
    target: str,
    headers: list[tuple[str, str]],
    client_ip: str,
) -> None:
    """Accept (or refuse) a stream handshake, then run its session until it ends."""
    ws_key = next((v for k, v in headers if k.lower() == "sec-websocket-key"), None)
    if ws_key is None:
        await _refuse(connection, stream, 400, b'{"code":-1000,"msg":"Bad WebSocket handshake."}')
        return
    try:
        session = exchange._stream.open(target.split("?")[0], client_ip, exchange.now_ms())
    except Rejected as exc:
        await _refuse(connection, stream, exc.status, exc.body)
        return
    try:
        head = connection.send(
            h11.InformationalResponse(
                status_code=101,
                headers=[
                    (b"Upgrade", b"websocket"),
                    (b"Connection", b"Upgrade"),
                    (b"Sec-WebSocket-Accept", generate_accept_token(ws_key.encode())),
                ],
            )
        )
        await stream.send(head or b"")
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        session.on_client_gone(exchange.now_ms())
        return
    trailing, _ = connection.trailing_data
    await _StreamShell(exchange, session, stream, WSConnection(ConnectionType.SERVER)).run(
        bytes(trailing)
    )


class _StreamShell:
    """Drives one StreamSession over a WebSocket connection."""

    def __init__(
        self,
        exchange: FakeExchange,
        session: StreamSession,
        stream: SocketStream,
        ws: WSConnection,
    ) -> None:
        self.exchange = exchange
        self.session = session
        self.stream = stream
        self.ws = ws
        self.send_lock = anyio.Lock()
        self.event = anyio.Event()
        self.client_done = anyio.Event()
        session.set_waker(self._wake)

    def _wake(self) -> None:
        self.event.set()

    async def run(self, trailing: bytes) -> None:
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._reader, trailing)
                await self._writer()
                group.cancel_scope.cancel()
        except BaseException:
            # The server is shutting down (cancelled) or failed: the record says so.
            self.session.end("server_stopped", self.exchange.now_ms())
            raise
        finally:
            self.session.set_waker(None)
            self.session.on_client_gone(self.exchange.now_ms())

    async def _send(self, data: bytes) -> None:
        async with self.send_lock:
            await self.stream.send(data)

    async def _writer(self) -> None:
        session = self.session
        while True:
            session.tick(self.exchange.now_ms())
            while session.outbox:
                frame = session.outbox.popleft()
                try:
                    if isinstance(frame, OutText):
                        await self._send(self.ws.send(TextMessage(data=frame.text)))
                    elif isinstance(frame, OutPing):
                        await self._send(self.ws.send(WSPing(payload=frame.payload)))
                    elif isinstance(frame, OutClose):
                        await self._close(frame.code, frame.reason)
                        return
                    elif isinstance(frame, OutDrop):
                        return  # the stream is closed on the way out, without a close frame
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    session.on_client_gone(self.exchange.now_ms())
                    return
            if session.closed or self.client_done.is_set():
                return
            deadline = session.deadline_ms()
            assert deadline is not None
            wait = max(deadline - self.exchange.now_ms(), 1) / 1000
            with anyio.move_on_after(wait):
                await self.event.wait()
            self.event = anyio.Event()

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.state is ConnectionState.OPEN:
            await self._send(self.ws.send(CloseConnection(code=code, reason=reason)))
        # Give the client a moment to answer the close frame, then hang up anyway.
        with anyio.move_on_after(2.0):
            await self.client_done.wait()

    async def _reader(self, trailing: bytes) -> None:
        session = self.session
        if trailing:
            self.ws.receive_data(trailing)
            await self._handle_events()
        while not self.client_done.is_set():
            try:
                data = await self.stream.receive(_RECEIVE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            except OSError:
                data = b""
            if not data:
                session.on_client_gone(self.exchange.now_ms())
                self.client_done.set()
                self._wake()
                return
            try:
                self.ws.receive_data(data)
            except Exception:  # a protocol error from the client: hang up like a server would
                session.on_client_gone(self.exchange.now_ms())
                self.client_done.set()
                self._wake()
                return
            await self._handle_events()

    async def _handle_events(self) -> None:
        session = self.session
        for event in self.ws.events():
            now = self.exchange.now_ms()
            if isinstance(event, Pong):
                session.on_pong(bytes(event.payload), now)
            elif isinstance(event, Ping):
                session.on_message(now)
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await self._send(self.ws.send(event.response()))
            elif isinstance(event, (TextMessage, BytesMessage)):
                if event.message_finished:
                    session.on_message(now)
            elif isinstance(event, CloseConnection):
                session.on_client_close(event.code, now)
                if self.ws.state is not ConnectionState.CLOSED:
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        await self._send(self.ws.send(event.response()))
                self.client_done.set()
            self._wake()
