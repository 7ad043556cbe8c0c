"""The default WebSocket connector (wsproto over anyio) on loopback, asyncio and trio: TLS
verified, text and pings handed up, pongs echoing, close codes and drops told apart, and
failures that never name the URL's path (it carries the listen key)."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSListener
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Pong,
    Request,
    TextMessage,
)
from wsproto.events import (
    Ping as WsPing,
)

from binance_pmpro.errors import ConnectError
from binance_pmpro.testing import FakeExchange
from binance_pmpro.transport.websocket import Ping, WebSocketClosed
from binance_pmpro.transport.wsproto import WsprotoConnector

pytestmark = pytest.mark.anyio

SECRET_PATH = "/pm-classic/ws/SECRETLISTENKEY0123456789"


class Peer:
    """The server side of one connection, driven by the test."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.target = ""

    async def events(self) -> list[Any]:
        try:
            data: bytes | None = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = None  # the client went away (over TLS without close_notify, as allowed)
        self.ws.receive_data(data)
        return list(self.ws.events())

    async def accept(self) -> None:
        while True:
            for event in await self.events():
                if isinstance(event, Request):
                    self.target = event.target
                    await self.stream.send(self.ws.send(AcceptConnection()))
                    return

    async def send(self, event: Any) -> None:
        await self.stream.send(self.ws.send(event))


Script = Callable[[Peer], Awaitable[None]]


async def run_server(
    script: Script, *, tls: ssl.SSLContext | None, task_group: anyio.abc.TaskGroup
) -> int:
    listener: Any = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    if tls is not None:
        listener = TLSListener(listener, tls, standard_compatible=False)

    async def handle(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            peer = Peer(stream)
            await peer.accept()
            await script(peer)

    async def serve() -> None:
        async with listener:
            await listener.serve(handle)

    task_group.start_soon(serve)
    return port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_wss_receives_text_and_pings_and_tells_close_codes(ca: trustme.CA) -> None:
    pongs: list[bytes] = []

    async def script(peer: Peer) -> None:
        await peer.send(TextMessage('{"e":"x"}'))
        await peer.send(TextMessage("part one, ", message_finished=False))
        await peer.send(TextMessage("part two"))
        await peer.send(WsPing(b"payload-1"))
        while not pongs:
            pongs.extend(e.payload for e in await peer.events() if isinstance(e, Pong))
        await peer.send(CloseConnection(code=1001, reason="going away"))
        with anyio.move_on_after(5):
            await peer.events()

    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with anyio.create_task_group() as tg:
        port = await run_server(script, tls=server_context(ca), task_group=tg)
        ws = await WsprotoConnector()(
            f"wss://127.0.0.1:{port}{SECRET_PATH}", timeout=None, ssl_context=client_context
        )
        assert await ws.receive() == '{"e":"x"}'
        assert await ws.receive() == "part one, part two"
        ping = await ws.receive()
        assert ping == Ping(b"payload-1")
        await ws.pong(ping.payload)  # type: ignore[union-attr]
        with pytest.raises(WebSocketClosed) as closed:
            await ws.receive()
        await ws.aclose()
        tg.cancel_scope.cancel()
    assert pongs == [b"payload-1"]
    assert closed.value.code == 1001
    assert closed.value.reason == "going away"


async def test_wss_with_an_untrusted_certificate_is_refused_without_the_path(
    ca: trustme.CA,
) -> None:
    async def script(peer: Peer) -> None:  # never reached: the client refuses the certificate
        raise AssertionError("handshake must fail")

    async with anyio.create_task_group() as tg:
        port = await run_server(script, tls=server_context(ca), task_group=tg)
        with pytest.raises(ConnectError) as refused:
            # The system's CAs (verification on by default) do not know the test CA.
            await WsprotoConnector()(
                f"wss://127.0.0.1:{port}{SECRET_PATH}", timeout=None, ssl_context=None
            )
        tg.cancel_scope.cancel()
    assert "SECRETLISTENKEY" not in str(refused.value)
    assert f"127.0.0.1:{port}" in str(refused.value)


async def test_connection_dropped_without_close_frame_is_a_drop() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(TextMessage("last words"))
        await peer.stream.aclose()  # no close frame

    async with anyio.create_task_group() as tg:
        port = await run_server(script, tls=None, task_group=tg)
        ws = await WsprotoConnector()(
            f"ws://127.0.0.1:{port}{SECRET_PATH}", timeout=None, ssl_context=None
        )
        assert await ws.receive() == "last words"
        with pytest.raises(WebSocketClosed) as dropped:
            await ws.receive()
        await ws.aclose()
        await ws.aclose()  # idempotent
        tg.cancel_scope.cancel()
    assert dropped.value.code is None


async def test_refused_handshake_and_closed_port_raise_connect_error_without_the_key() -> None:
    fake = FakeExchange()
    async with fake.serve() as server:
        # An unknown listen key: the fake refuses the handshake (HTTP 400).
        with pytest.raises(ConnectError, match="HTTP 400") as refused:
            await WsprotoConnector()(
                f"{server.stream_url}/ws/SECRETLISTENKEY0123456789", timeout=None, ssl_context=None
            )
    assert "SECRETLISTENKEY" not in str(refused.value)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there any more
    with pytest.raises(ConnectError) as closed:
        await WsprotoConnector()(
            f"ws://127.0.0.1:{port}{SECRET_PATH}", timeout=None, ssl_context=None
        )
    assert "SECRETLISTENKEY" not in str(closed.value)
