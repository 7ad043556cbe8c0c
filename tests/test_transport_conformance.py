"""One conformance suite for every transport, against real misbehaving servers on 127.0.0.1.

Each test runs unchanged on HttpxTransport (asyncio and trio) and FastTransport (asyncio
and uvloop). The servers live in ``tests/_servers.py``. Timeouts are tens of ms where a
test is about a timeout, seconds elsewhere; no test asserts how long anything took.

Where pools matter the transports get ``max_connections=1``: a connection wrongly put back
after an unfinished exchange is then the one the next call must use, and the server's
late answer (or the rest of an old body) turns up as a wrong body.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trustme

from _servers import (
    POISON,
    StallServer,
    TestServer,
    big_body,
    echo_body,
    free_port,
    serving,
)
from binance_pmpro.errors import (
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    PoolTimeoutError,
    ReadTimeoutError,
)
from binance_pmpro.requests import PreparedRequest
from binance_pmpro.transport import Response, Timeouts, Transport

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None

try:
    import httptools  # noqa: F401

    HAVE_HTTPTOOLS = True
except ImportError:  # pragma: no cover - the [fast] extra is optional
    HAVE_HTTPTOOLS = False


@dataclass(frozen=True)
class Impl:
    """A transport on an event loop."""

    transport: str
    loop: str

    @property
    def id(self) -> str:
        return f"{self.transport}-{self.loop}"

    @property
    def backend(self) -> Any:
        if self.loop == "uvloop":
            return ("asyncio", {"loop_factory": uvloop.new_event_loop})
        return self.loop

    @property
    def resends_stale_get(self) -> bool:
        """Resends a GET when a reused connection died before any byte of the answer.

        httpcore cannot tell "no byte" from "a few bytes" of an answer, so HttpxTransport
        leaves that case to the client's retry policy (it raises ConnectionLostError).
        """
        return self.transport == "fast"

    @property
    def marks(self) -> list[pytest.MarkDecorator]:
        marks = []
        if self.transport == "fast" and not HAVE_HTTPTOOLS:
            marks.append(pytest.mark.skip(reason="httptools (the [fast] extra) not installed"))
        if self.loop == "uvloop" and uvloop is None:
            marks.append(pytest.mark.skip(reason="uvloop not installed"))
        return marks


IMPLS = [
    Impl("httpx", "asyncio"),
    Impl("httpx", "trio"),
    Impl("fast", "asyncio"),
    Impl("fast", "uvloop"),
]
CANCEL_WITH = ["scope", "task", "wait_for"]  # task.cancel() and wait_for are asyncio's own

pytestmark = pytest.mark.anyio

TIMEOUTS = Timeouts(connect=2.0, read=2.0, write=2.0, pool=2.0)
API_KEY = "conformance-key"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" not in metafunc.fixturenames:
        return
    if "cancel_with" in metafunc.fixturenames:
        combos = [
            pytest.param(impl, how, id=f"{impl.id}-{how}", marks=impl.marks)
            for impl in IMPLS
            for how in CANCEL_WITH
            if how == "scope" or impl.loop != "trio"
        ]
        metafunc.parametrize(("impl", "cancel_with"), combos)
    else:
        metafunc.parametrize("impl", [pytest.param(i, id=i.id, marks=i.marks) for i in IMPLS])


@pytest.fixture
def anyio_backend(impl: Impl) -> Any:
    """The loop follows the transport: FastTransport is asyncio-only."""
    return impl.backend


MakeTransport = Callable[..., Transport]


@pytest.fixture
async def make(impl: Impl) -> AsyncIterator[MakeTransport]:
    """A factory of transports of the kind under test, all closed at the end."""
    made: list[Transport] = []

    def factory(
        base_url: str,
        *,
        timeouts: Timeouts = TIMEOUTS,
        max_connections: int = 10,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Transport:
        transport: Transport
        if impl.transport == "fast":
            from binance_pmpro.transport.fast import FastTransport

            transport = FastTransport(
                base_url,
                timeouts=timeouts,
                max_connections=max_connections,
                ssl_context=ssl_context,
            )
        else:
            from binance_pmpro.transport.httpx import HttpxTransport

            transport = HttpxTransport(
                base_url,
                timeouts=timeouts,
                max_connections=max_connections,
                ssl_context=ssl_context,
            )
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        await transport.aclose()


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    srv = TestServer()
    async with serving(srv):
        yield srv


@pytest.fixture
async def stall_server() -> AsyncIterator[StallServer]:
    srv = StallServer()
    async with serving(srv):
        yield srv


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """Verification on (chain and host name), trusting only the test CA."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def _server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


def get(target: str, *, method: str = "GET", body: bytes = b"") -> PreparedRequest:
    path, _, query = target.partition("?")
    return PreparedRequest(method, path, query, (("X-MBX-APIKEY", API_KEY),), body)


async def settle() -> None:
    """Give the client's loop a moment to notice what the server just did."""
    await anyio.sleep(0.02)


async def cancel_during(
    how: str,
    call: Callable[[], Awaitable[Response]],
    ready: Callable[[], bool] = lambda: True,
    wait_for_timeout: float = 0.15,
) -> None:
    """Run ``call`` and cancel it once ``ready()`` holds, the way ``how`` says.

    ``wait_for`` cancels on its own clock: the servers used with it stall for good, so
    the call is parked at the point under test when the timeout fires.
    """
    if how == "wait_for":
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call(), wait_for_timeout)
        return
    if how == "task":
        task = asyncio.ensure_future(call())
        await anyio.sleep(0.01)
        with anyio.fail_after(5):
            while not ready():
                await anyio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return
    finished: list[Response] = []

    async def run() -> None:
        finished.append(await call())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.sleep(0.01)
        with anyio.fail_after(5):
            while not ready():
                await anyio.sleep(0.002)
        tg.cancel_scope.cancel()
    assert not finished, "the call finished before it could be cancelled"


# --- bodies and framing -----------------------------------------------------------------------


async def test_content_length_body_returned_exactly(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    response = await transport.send(get("/echo?id=cl&pad=300"))
    assert response.status == 200
    assert response.body == echo_body("cl", 300)


async def test_chunked_body_reassembled(make: MakeTransport, server: TestServer) -> None:
    transport = make(server.base_url)
    response = await transport.send(get("/echo?id=ch&pad=1000&chunked=1"))
    assert response.status == 200
    assert response.body == echo_body("ch", 1000)
    assert response.headers.get("transfer-encoding") == "chunked"


async def test_body_ended_by_close_returned_exactly(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    response = await transport.send(get("/eof?id=eof&pad=5000"))
    assert response.body == echo_body("eof", 5000)
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")
    assert server.accepted == 2


@pytest.mark.parametrize("chunked", [0, 1], ids=["content-length", "chunked"])
async def test_one_megabyte_body_returned_exactly(
    make: MakeTransport, server: TestServer, chunked: int
) -> None:
    transport = make(server.base_url)
    n = 1024 * 1024
    response = await transport.send(get(f"/big?n={n}&chunked={chunked}"))
    assert len(response.body) == n
    assert response.body == big_body(n)


async def test_response_headers_mapping_lower_case_names(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    response = await transport.send(get("/echo?id=h"))
    assert response.headers.get("x-mbx-used-weight-1m") == "5"
    assert response.headers["content-type"] == "application/json"
    assert all(name == name.lower() for name in response.headers)


async def test_request_sent_verbatim_target_headers_and_host(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    query = "id=v&note=a%2Fb%20c~&timestamp=1700000000000&signature=0a1b2c"
    await transport.send(get(f"/echo?{query}"))
    await transport.send(get("/echo?id=p", method="POST", body=b"x=1"))
    first, second = server.requests
    assert (first.method, first.target) == ("GET", f"/echo?{query}")
    assert first.headers["x-mbx-apikey"] == API_KEY
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.body == b""
    assert (second.method, second.body, second.headers["content-length"]) == ("POST", b"x=1", "3")


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "json"), (401, "json"), (418, "json"), (429, "json"), (500, "json"), (503, "html")],
)
async def test_error_status_returned_as_response_with_body(
    make: MakeTransport, server: TestServer, status: int, kind: str
) -> None:
    transport = make(server.base_url)
    response = await transport.send(get(f"/echo?id=e&status={status}&kind={kind}"))
    assert response.status == status
    if kind == "html":
        assert response.body.startswith(b"<html>")
    else:
        assert response.body == b'{"code":-1121,"msg":"Invalid symbol.","id":"e"}'
    if status in (418, 429):
        assert response.headers.get("retry-after") == "7"
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")
    assert server.accepted == 1  # an error answer does not cost the connection


# --- connection reuse and closing -------------------------------------------------------------


async def test_sequential_calls_reuse_one_connection(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    for i in range(5):
        response = await transport.send(get(f"/echo?id={i}"))
        assert response.body == echo_body(str(i))
    assert server.accepted == 1


async def test_connection_close_next_call_uses_new_connection(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    first = await transport.send(get("/echo?id=a&close=1"))
    second = await transport.send(get("/echo?id=b"))
    assert (first.body, second.body) == (echo_body("a"), echo_body("b"))
    assert server.accepted == 2


async def test_connection_close_with_socket_left_open_not_reused(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url, max_connections=1)
    await transport.send(get("/echo?id=a&close=1&linger=1"))
    second = await transport.send(get("/echo?id=b"))
    assert second.body == echo_body("b")
    assert second.body != POISON
    assert server.accepted == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_idle_connection_closed_by_server_next_call_succeeds(
    make: MakeTransport, server: TestServer, method: str
) -> None:
    transport = make(server.base_url)
    await transport.send(get("/echo?id=a&then=close"))
    await server.wait_until(lambda: server.closed == 1)
    await settle()
    second = await transport.send(get("/echo?id=b", method=method))
    assert second.body == echo_body("b")
    assert server.accepted == 2
    assert [r.target for r in server.requests].count("/echo?id=b") == 1


async def test_stray_bytes_on_idle_connection_not_reused(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url, max_connections=1)
    await transport.send(get("/echo?id=a&then=stray"))
    await settle()
    second = await transport.send(get("/echo?id=b"))
    assert second.body == echo_body("b")
    assert server.accepted == 2


async def test_reused_connection_closed_without_answer_get_resent_or_lost(
    make: MakeTransport, server: TestServer, impl: Impl
) -> None:
    # The server takes the next request and closes without a byte: the close raced our send.
    transport = make(server.base_url)
    await transport.send(get("/echo?id=a&then=drop"))
    if impl.resends_stale_get:
        second = await transport.send(get("/echo?id=b"))
        assert second.body == echo_body("b")
        assert server.accepted == 2
        assert [r.target for r in server.requests].count("/echo?id=b") == 2
    else:
        with pytest.raises(ConnectionLostError) as caught:
            await transport.send(get("/echo?id=b"))
        assert caught.value.sent
    third = await transport.send(get("/echo?id=c"))
    assert third.body == echo_body("c")


async def test_reused_connection_closed_without_answer_post_not_resent(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    await transport.send(get("/echo?id=a&then=drop"))
    with pytest.raises(ConnectionLostError) as caught:
        await transport.send(get("/echo?id=b", method="POST"))
    assert caught.value.sent
    assert [r.method for r in server.requests] == ["GET", "POST"]


async def test_reused_connection_closed_after_partial_answer_get_not_resent(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    await transport.send(get("/echo?id=a&then=partial"))
    with pytest.raises(ConnectionLostError) as caught:
        await transport.send(get("/echo?id=b"))
    assert caught.value.sent
    assert [r.target for r in server.requests].count("/echo?id=b") == 1


# --- broken answers and timeouts ----------------------------------------------------------------


async def test_reset_mid_body_raises_connection_lost(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)
    with pytest.raises(ConnectionLostError) as caught:
        await transport.send(get("/reset"))
    assert caught.value.sent
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")


@pytest.mark.parametrize("path", ["/truncate", "/truncate-chunked"])
async def test_truncated_body_raises_connection_lost(
    make: MakeTransport, server: TestServer, path: str
) -> None:
    transport = make(server.base_url)
    with pytest.raises(ConnectionLostError):
        await transport.send(get(path))
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")


@pytest.mark.parametrize("part", [0, 1], ids=["slow-headers", "slow-body"])
async def test_silence_past_read_timeout_raises_read_timeout(
    make: MakeTransport, server: TestServer, part: int
) -> None:
    transport = make(server.base_url, timeouts=Timeouts(connect=2, read=0.05, write=2, pool=2))
    with pytest.raises(ReadTimeoutError) as caught:
        await transport.send(get(f"/stall?gate=never&part={part}&pad=100"))
    assert caught.value.sent
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")


async def test_read_timeout_counts_silence_between_bytes_not_total(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url, timeouts=Timeouts(connect=2, read=0.3, write=2, pool=2))
    response = await transport.send(get("/trickle?id=t&pieces=15&gap=0.03"))
    assert response.body == echo_body("t", 150)


async def test_connection_refused_raises_connect_error_not_sent(make: MakeTransport) -> None:
    transport = make(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectError) as caught:
        await transport.send(get("/echo?id=x"))
    assert not caught.value.sent


async def test_handshake_past_connect_timeout_raises_connect_timeout(
    make: MakeTransport, stall_server: StallServer, client_tls: ssl.SSLContext
) -> None:
    transport = make(
        stall_server.base_url,
        timeouts=Timeouts(connect=0.05, read=2, write=2, pool=2),
        ssl_context=client_tls,
    )
    with pytest.raises(ConnectTimeoutError) as caught:
        await transport.send(get("/echo?id=x"))
    assert not caught.value.sent
    await stall_server.wait_until(lambda: stall_server.closed == 1)


# --- the pool -----------------------------------------------------------------------------------


async def test_more_concurrent_calls_than_pool_all_answered_within_limit(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url, max_connections=3)
    results: dict[int, Response] = {}

    async def call(i: int) -> None:
        results[i] = await transport.send(get(f"/sleep?s=0.01&id={i}"))

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(call, i)
    assert {i: r.body for i, r in results.items()} == {i: echo_body(str(i)) for i in range(12)}
    assert server.max_open <= 3


async def test_pool_exhausted_past_pool_timeout_raises_pool_timeout(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(
        server.base_url,
        max_connections=1,
        timeouts=Timeouts(connect=2, read=5, write=2, pool=0.05),
    )
    held: list[Response] = []

    async def hold() -> None:
        held.append(await transport.send(get("/stall?gate=held&id=held")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await server.wait_until(lambda: len(server.requests) == 1)
        with pytest.raises(PoolTimeoutError) as caught:
            await transport.send(get("/echo?id=waiting"))
        assert not caught.value.sent
        server.gate("held").set()
    assert held[0].body == echo_body("held")
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")
    assert server.accepted == 1


# --- cancellation -------------------------------------------------------------------------------


async def test_cancel_waiting_for_headers_connection_not_reused(
    make: MakeTransport, server: TestServer, cancel_with: str
) -> None:
    transport = make(server.base_url, max_connections=1)
    await cancel_during(
        cancel_with,
        lambda: transport.send(get("/stall?gate=late&id=late")),
        ready=lambda: len(server.requests) == 1,
    )
    server.gate("late").set()  # the late answer goes out on the old socket, if still open
    if server.requests:
        # (wait_for cancels on its own clock: on a loaded machine it can fire before the
        # request reached the server, and then no late answer comes at all.)
        await server.wait_until(lambda: server.late_answers == 1)
    await settle()
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")


async def test_cancel_mid_body_connection_not_reused(
    make: MakeTransport, server: TestServer, cancel_with: str
) -> None:
    transport = make(server.base_url, max_connections=1)

    await cancel_during(
        cancel_with,
        lambda: transport.send(get("/stall?gate=rest&part=1&pad=2000&id=late")),
        ready=lambda: server.partials_sent == 1,
    )
    server.gate("rest").set()
    if server.partials_sent:  # see test_cancel_waiting_for_headers_connection_not_reused
        await server.wait_until(lambda: server.late_answers == 1)
    await settle()
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")


async def test_cancel_waiting_for_pool_slot_nothing_leaked(
    make: MakeTransport, server: TestServer, cancel_with: str
) -> None:
    transport = make(
        server.base_url,
        max_connections=1,
        timeouts=Timeouts(connect=2, read=5, write=2, pool=1.0),
    )
    held: list[Response] = []

    async def hold() -> None:
        held.append(await transport.send(get("/stall?gate=held&id=held")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await server.wait_until(lambda: len(server.requests) == 1)
        await cancel_during(cancel_with, lambda: transport.send(get("/echo?id=cancelled")))
        server.gate("held").set()
    assert held[0].body == echo_body("held")
    after = await transport.send(get("/echo?id=after"))
    assert after.body == echo_body("after")
    assert "/echo?id=cancelled" not in [r.target for r in server.requests]


async def test_cancel_during_connect_slot_freed_socket_closed(
    make: MakeTransport,
    stall_server: StallServer,
    client_tls: ssl.SSLContext,
    cancel_with: str,
) -> None:
    transport = make(
        stall_server.base_url,
        max_connections=1,
        timeouts=Timeouts(connect=0.6, read=2, write=2, pool=0.05),
        ssl_context=client_tls,
    )
    await cancel_during(
        cancel_with,
        lambda: transport.send(get("/echo?id=x")),
        ready=lambda: stall_server.accepted == 1,
    )
    await stall_server.wait_until(lambda: stall_server.closed == 1)
    # A leaked slot would make this a PoolTimeoutError (0.05 s) instead.
    with pytest.raises(ConnectTimeoutError):
        await transport.send(get("/echo?id=y"))
    assert stall_server.accepted == 2


async def test_cancel_at_every_checkpoint_follow_up_call_gets_its_own_body(
    make: MakeTransport, server: TestServer, cancel_with: str
) -> None:
    transport = make(server.base_url, max_connections=1)
    pad = 100_000  # spans several reads, so some cancellations land mid-body
    for n in range(36):
        target = f"/echo?id=c{n}&pad={pad}"
        finished: list[Response] = []
        if cancel_with == "task":
            task = asyncio.ensure_future(transport.send(get(target)))
            for _ in range(n):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                finished.append(await task)
        elif cancel_with == "wait_for":
            with contextlib.suppress(asyncio.TimeoutError):
                finished.append(await asyncio.wait_for(transport.send(get(target)), n * 0.00005))
        else:
            async with anyio.create_task_group() as tg:

                async def cancel_after(
                    steps: int, scope: anyio.CancelScope = tg.cancel_scope
                ) -> None:
                    for _ in range(steps):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                tg.start_soon(cancel_after, n)
                finished.append(await transport.send(get(target)))
        if finished:  # the call beat the cancellation: then its answer must be whole
            assert finished[0].body == echo_body(f"c{n}", pad)
        after = await transport.send(get(f"/echo?id=f{n}"))
        assert after.body == echo_body(f"f{n}"), f"after a cancel at step {n}"


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[TestServer]:
    srv = TestServer(tls=_server_tls(ca, "127.0.0.1"))
    async with serving(srv):
        yield srv


async def test_tls_verified_get_succeeds_and_keeps_alive(
    make: MakeTransport, tls_server: TestServer, client_tls: ssl.SSLContext
) -> None:
    transport = make(tls_server.base_url, ssl_context=client_tls)
    for i in range(3):
        response = await transport.send(get(f"/echo?id=tls{i}&pad=5000"))
        assert response.body == echo_body(f"tls{i}", 5000)
    assert tls_server.accepted == 1


async def test_tls_certificate_for_other_host_raises_connect_error(
    make: MakeTransport, ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    srv = TestServer(tls=_server_tls(ca, "api.example.test"))
    async with serving(srv):
        transport = make(srv.base_url, ssl_context=client_tls)
        with pytest.raises(ConnectError) as caught:
            await transport.send(get("/echo?id=x"))
        assert not caught.value.sent
        assert srv.requests == []


async def test_tls_untrusted_ca_raises_connect_error(
    make: MakeTransport, tls_server: TestServer
) -> None:
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    transport = make(tls_server.base_url, ssl_context=other)
    with pytest.raises(ConnectError) as caught:
        await transport.send(get("/echo?id=x"))
    assert not caught.value.sent
    assert tls_server.requests == []


# --- closing ------------------------------------------------------------------------------------


async def test_aclose_closes_every_connection_then_send_refused(
    make: MakeTransport, server: TestServer
) -> None:
    transport = make(server.base_url)

    async def call(i: int) -> None:
        await transport.send(get(f"/sleep?s=0.02&id={i}"))

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(call, i)
    assert server.open == 3
    await transport.aclose()
    await server.wait_until(lambda: server.open == 0)
    with pytest.raises(RuntimeError):
        await transport.send(get("/echo?id=late"))
