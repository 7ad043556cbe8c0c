"""FastTransport behaviour the shared conformance suite cannot express: its own options,
its request-line safety checks and its timer economy. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("httptools")

from _servers import TestServer, echo_body, serving
from binance_pmpro.endpoints import ACCOUNT_INFO, Endpoint
from binance_pmpro.errors import ConfigurationError
from binance_pmpro.requests import PreparedRequest, build_request
from binance_pmpro.signing import HmacSigner, Signer
from binance_pmpro.transport import Timeouts, Transport
from binance_pmpro.transport.fast import FastTransport, _clock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    srv = TestServer()
    async with serving(srv):
        yield srv


def get(target: str, headers: tuple[tuple[str, str], ...] = (), method: str = "GET") -> Any:
    path, _, query = target.partition("?")
    return PreparedRequest(method, path, query, headers)


def test_fast_transport_satisfies_transport_protocol() -> None:
    assert isinstance(FastTransport("https://api.binance.com"), Transport)


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [
        ("ftp://api.binance.com", {}),
        ("https://", {}),
        ("https://user:pw@api.binance.com", {}),
        ("https://api.binance.com?x=1", {}),
        ("https://api.binance.com:99999", {}),
        ("http://127.0.0.1:8080", {"ssl_context": ssl.create_default_context()}),
        ("https://api.binance.com", {"max_connections": 0}),
        ("https://api.binance.com", {"idle_timeout": 0}),
    ],
)
def test_constructor_bad_settings_raise_configuration_error(url: str, kwargs: Any) -> None:
    with pytest.raises(ConfigurationError):
        FastTransport(url, **kwargs)


async def test_idle_connection_closed_after_idle_timeout(server: TestServer) -> None:
    transport = FastTransport(server.base_url, idle_timeout=0.05)
    try:
        assert (await transport.send(get("/echo?id=a"))).body == echo_body("a")
        await server.wait_until(lambda: server.closed == 1)  # our sweep closed it
        assert (await transport.send(get("/echo?id=b"))).body == echo_body("b")
        assert server.accepted == 2
    finally:
        await transport.aclose()


async def test_sequential_calls_allocate_no_timer_per_request(server: TestServer) -> None:
    loop = asyncio.get_running_loop()
    transport = FastTransport(server.base_url, timeouts=Timeouts(1, 5, 5, 5), idle_timeout=60)
    scheduled = 0
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal scheduled
        scheduled += 1
        return call_at(when, callback, *args, **kwargs)

    try:
        await transport.send(get("/echo?id=warm"))
        loop.call_at = counting_call_at  # type: ignore[method-assign]
        for i in range(50):
            assert (await transport.send(get(f"/echo?id={i}"))).body == echo_body(str(i))
    finally:
        loop.call_at = call_at  # type: ignore[method-assign]
        await transport.aclose()
    assert scheduled <= 2  # the read timer and the idle sweep are re-armed lazily


async def test_base_url_path_prefix_and_default_headers_sent(server: TestServer) -> None:
    transport = FastTransport(server.base_url + "/echo/")
    try:
        await transport.send(get("?id=p", headers=(("X-MBX-APIKEY", "k"),)))
    finally:
        await transport.aclose()
    seen = server.requests[0]
    assert seen.target == "/echo?id=p"
    assert seen.headers["x-mbx-apikey"] == "k"
    assert seen.headers["user-agent"].startswith("binance-pmpro/")


@pytest.mark.parametrize(
    "request_",
    [
        PreparedRequest("GET", "/echo", "a=1 HTTP/1.1\r\nX: y", ()),
        PreparedRequest("GET", "/echo", "a=é", ()),
        PreparedRequest("GET", "/echo", "", (("X-Evil", "a\r\nContent-Length: 5"),)),
        PreparedRequest("GET", "/echo", "", (("Bad Name", "v"),)),
        PreparedRequest("GET", "/echo", "", (("Content-Length", "5"),)),
        PreparedRequest("GET", "/echo", "", (("Host", "elsewhere"),)),
        PreparedRequest("HEAD", "/echo", "", ()),
    ],
    ids=["space-crlf-target", "non-ascii", "crlf-header", "bad-name", "length", "host", "head"],
)
async def test_unsafe_request_refused_before_sending(
    server: TestServer, request_: PreparedRequest
) -> None:
    transport = FastTransport(server.base_url)
    try:
        with pytest.raises(ValueError, match=r"target|header|sets|method"):
            await transport.send(request_)
    finally:
        await transport.aclose()
    assert server.accepted == 0


class _LooseHexSigner:
    """Claims HMAC-SHA256 but returns text no transport should put on a request line."""

    algorithm = "HMAC_SHA256"

    def sign(self, payload: bytes) -> str:
        return "ab HTTP/1.1\r\nX-Evil: 1"


@pytest.mark.parametrize(
    ("endpoint", "signer", "timestamp"),
    [
        (dataclasses.replace(ACCOUNT_INFO, path="/sapi/v1/a b"), HmacSigner("s"), 1),
        (ACCOUNT_INFO, _LooseHexSigner(), 1),
        (ACCOUNT_INFO, HmacSigner("s"), "1 HTTP/1.1"),
    ],
    ids=["endpoint-path-with-space", "foreign-signer-text", "timestamp-not-an-int"],
)
async def test_built_request_with_unsafe_part_refused_before_sending(
    server: TestServer, endpoint: Endpoint, signer: Signer, timestamp: Any
) -> None:
    # build_request vouches only for the parts it encodes itself; an endpoint path or a
    # signature it did not make still goes through the transport's check.
    request = build_request(
        endpoint, {}, api_key="k", signer=signer, timestamp_ms=timestamp, recv_window=5000
    )
    transport = FastTransport(server.base_url)
    try:
        with pytest.raises(ValueError, match="target"):
            await transport.send(request)
    finally:
        await transport.aclose()
    assert server.accepted == 0


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_send_on_trio_raises_clear_runtime_error() -> None:
    transport = FastTransport("http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="asyncio only"):
        await transport.send(get("/echo"))


def test_clock_honours_a_time_replaced_on_the_loop_instance() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert _clock(loop) is time.monotonic  # asyncio's own clock, read directly
        loop.time = lambda: 42.0  # type: ignore[method-assign]  # a virtual test clock
        assert _clock(loop)() == 42.0
    finally:
        loop.close()
