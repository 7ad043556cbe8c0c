"""The socket shell: FakeExchange over real HTTP/1.1, on asyncio or trio.

anyio's TCP listener accepts connections, h11 parses them (keep-alive, pipelining-safe,
``Connection: close`` honoured), and every complete request goes through
``FakeExchange.handle`` exactly as in-process. Faults become socket behaviour: a dropped
connection is closed without an answer, a reset sends part of the body then an RST.
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

from ._exchange import Reply, ReplyAction

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
        """``http://host:port``, the base URL to give a client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


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
