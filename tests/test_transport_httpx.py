"""HttpxTransport specifics beyond the conformance suite: its direct path on the pool of its
own client sends what httpx itself would send, and asyncio cancellation stays harmless when
it lands more than once."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from _servers import TestServer, echo_body, serving
from binance_pmpro.requests import PreparedRequest
from binance_pmpro.transport import Timeouts
from binance_pmpro.transport.httpx import HttpxTransport

BASE = "https://api.example.test/prefix"

pytestmark = pytest.mark.anyio

REQUESTS = [
    PreparedRequest("GET", "/sapi/v1/x", "a=1&signature=ab", (("X-MBX-APIKEY", "k"),)),
    PreparedRequest("GET", "/sapi/v1/x", "", (("X-MBX-APIKEY", "k"), ("User-Agent", "mine/1"))),
    PreparedRequest("POST", "/sapi/v1/x", "a=%2F1", (("X-MBX-APIKEY", "k"),)),
    PreparedRequest(
        "POST", "/sapi/v1/x", "", (("Content-Type", "application/x-www-form-urlencoded"),), b"a=1"
    ),
    PreparedRequest("DELETE", "/sapi/v1/x.json", "b=~._-", ()),
    # Targets httpx would normalise go its whole way (the same result, by definition).
    PreparedRequest("GET", "/sapi/v1/x", "note=a b", ()),
    PreparedRequest("GET", "/sapi/../v1/x", "", ()),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"{r.method} {r.target}")
async def test_request_built_as_httpx_builds_it(request_: PreparedRequest) -> None:
    transport = HttpxTransport(BASE)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route().respond(200, content=b"{}")
        await transport.send(request_)
    await transport.aclose()
    sent = route.calls.last.request
    expected = httpx.AsyncClient().build_request(
        request_.method,
        BASE + request_.target,
        headers=request_.headers,
        content=request_.body or None,
    )
    assert (sent.method, str(sent.url)) == (expected.method, str(expected.url))
    assert sent.headers.raw == expected.headers.raw
    assert sent.content == request_.body


async def test_gzip_response_decoded_headers_lower_case() -> None:
    transport = HttpxTransport(BASE)
    body = b'{"uniMMR":"5.1"}' * 50
    with respx.mock() as mock:
        mock.get(BASE + "/x").respond(
            200,
            content=gzip.compress(body),
            headers={"Content-Encoding": "gzip", "X-SAPI-USED-UID-WEIGHT-1M": "5"},
        )
        response = await transport.send(PreparedRequest("GET", "/x", "", ()))
    await transport.aclose()
    assert response.body == body
    assert response.headers.get("x-sapi-used-uid-weight-1m") == "5"
    assert response.headers["content-encoding"] == "gzip"


async def test_httpx_info_logging_keeps_request_log_line_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = HttpxTransport(BASE)
    with respx.mock() as mock, caplog.at_level(logging.INFO, logger="httpx"):
        mock.get(BASE + "/x").respond(200, content=b"{}")
        await transport.send(PreparedRequest("GET", "/x", "a=1&signature=deadbeef", ()))
    await transport.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("HTTP Request: GET" in line for line in lines)
    assert "deadbeef" not in caplog.text


async def test_closed_transport_refuses_to_send() -> None:
    transport = HttpxTransport(BASE)
    await transport.aclose()
    with pytest.raises(RuntimeError):
        await transport.send(PreparedRequest("GET", "/x", "", ()))


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    srv = TestServer()
    async with serving(srv):
        yield srv


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_native_cancel_twice_at_every_step_pool_slot_kept(server: TestServer) -> None:
    """A caller cancelled again while its exchange winds down still waits for the release."""
    transport = HttpxTransport(
        server.base_url,
        max_connections=1,
        timeouts=Timeouts(connect=2.0, read=2.0, write=2.0, pool=2.0),
    )
    try:
        for n in range(24):
            target = f"/echo?id=c{n}&pad=100000"
            path, _, query = target.partition("?")
            task = asyncio.ensure_future(transport.send(PreparedRequest("GET", path, query, ())))
            for _ in range(n):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                done = await task
                assert done.body == echo_body(f"c{n}", 100000)
            after = await transport.send(PreparedRequest("GET", "/echo", f"id=f{n}", ()))
            assert after.body == echo_body(f"f{n}"), f"after a double cancel at step {n}"
    finally:
        await transport.aclose()
