"""FakeExchange's two shells: the in-process httpx transport and the loopback HTTP/1.1
server. Both must turn the core's replies (and faults) into what a real socket does."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import h11
import httpx
import pytest
import trio.testing

from binance_pmpro.endpoints import ENDPOINTS, SERVER_TIME, Budget, Endpoint, Security
from binance_pmpro.models import AccountInfo
from binance_pmpro.testing import FakeExchange, FakeRequest, FaultKind

pytestmark = pytest.mark.anyio

TIME = SERVER_TIME.path
BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
H3_QUERY = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
H3_BODY = (
    b"quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    b"&signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
)


@pytest.fixture
def fake() -> FakeExchange:
    return FakeExchange()


# --- raw HTTP/1.1 helpers (h11 on the client side) --------------------------------------


async def _send_request(
    stream: anyio.abc.ByteStream, client: h11.Connection, target: str, *, close: bool = False
) -> None:
    headers = [("Host", "127.0.0.1")]
    if close:
        headers.append(("Connection", "close"))
    data = client.send(h11.Request(method="GET", target=target, headers=headers))
    data += client.send(h11.EndOfMessage())  # type: ignore[operator]
    await stream.send(data)


async def _read_response(
    stream: anyio.abc.ByteStream, client: h11.Connection
) -> tuple[h11.Response, bytes]:
    response: h11.Response | None = None
    body = b""
    with anyio.fail_after(5):
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                try:
                    client.receive_data(await stream.receive())
                except anyio.EndOfStream:
                    client.receive_data(b"")
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return response, body
            else:
                raise AssertionError(f"unexpected {event!r}")


async def _read_to_eof(stream: anyio.abc.ByteStream) -> bytes:
    received = b""
    with anyio.fail_after(5):
        while True:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return received


# --- in-process transport ----------------------------------------------------------------


async def test_in_process_answer_has_headers_and_content_length(fake: FakeExchange) -> None:
    async with fake.http_client() as http:
        response = await http.get(TIME)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["x-mbx-used-weight-1m"] == "1"
    assert response.json()["serverTime"] > 0


async def test_in_process_client_ip_is_what_the_exchange_sees(fake: FakeExchange) -> None:
    async with fake.http_client(client_ip="10.1.2.3") as http:
        await http.get(TIME)
    assert fake.requests[-1].client_ip == "10.1.2.3"


async def test_in_process_slow_answer_past_read_timeout_raises_read_timeout(
    fake: FakeExchange,
) -> None:
    fake.inject(FaultKind.SLOW_RESPONSE, delay=30)
    async with fake.http_client(timeout=0.05) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(TIME)
        fake.inject(FaultKind.SLOW_RESPONSE, delay=0.01)
        assert (await http.get(TIME)).status_code == 200


async def test_in_process_drop_raises_remote_protocol_error(fake: FakeExchange) -> None:
    fake.inject(FaultKind.DROP_CONNECTION)
    async with fake.http_client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.get(TIME)


async def test_in_process_reset_fails_while_reading_the_body(fake: FakeExchange) -> None:
    fake.inject(FaultKind.RESET_MID_BODY)
    async with fake.http_client() as http:
        with pytest.raises(httpx.ReadError):
            await http.get(TIME)
        async with http.stream("GET", TIME) as response:
            assert response.status_code == 200  # no fault left: a whole answer
            await response.aread()


def test_in_process_slow_answer_runs_on_a_virtual_clock() -> None:
    """An hour-long delay passes instantly under trio's MockClock, and the fake's server
    clock (driven by the same virtual time) sees the hour go by."""

    async def main() -> tuple[float, int, int]:
        fake = FakeExchange(clock=lambda: anyio.current_time() * 1000)
        fake.inject(FaultKind.SLOW_RESPONSE, delay=3600, path=TIME)
        async with fake.http_client(timeout=None) as http:
            started = anyio.current_time()
            await http.get(TIME)
            after = (await http.get(TIME)).json()["serverTime"]
        return anyio.current_time() - started, fake.requests[0].server_time_ms, after

    clock = trio.testing.MockClock(autojump_threshold=0)
    elapsed, first, second = anyio.run(main, backend="trio", backend_options={"clock": clock})
    assert elapsed >= 3600
    assert second - first >= 3_600_000


# --- loopback server ---------------------------------------------------------------------


async def test_server_answers_over_http_on_loopback(fake: FakeExchange) -> None:
    async with fake.serve() as server:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            response = await http.get(TIME)
    assert response.status_code == 200
    assert response.headers["x-mbx-used-weight-1m"] == "1"
    assert response.headers["content-type"] == "application/json"
    assert fake.requests[-1].client_ip == "127.0.0.1"


async def test_server_keeps_connection_alive_between_requests(fake: FakeExchange) -> None:
    async with fake.serve() as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        async with stream:
            client = h11.Connection(h11.CLIENT)
            for expected in ("1", "2", "3"):
                await _send_request(stream, client, TIME)
                response, _ = await _read_response(stream, client)
                assert response.status_code == 200
                assert dict(response.headers)[b"x-mbx-used-weight-1m"] == expected.encode()
                client.start_next_cycle()


async def test_server_honours_connection_close(fake: FakeExchange) -> None:
    async with fake.serve() as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        async with stream:
            client = h11.Connection(h11.CLIENT)
            await _send_request(stream, client, TIME, close=True)
            response, _ = await _read_response(stream, client)
            assert response.status_code == 200
            assert dict(response.headers).get(b"connection") == b"close"
            assert await _read_to_eof(stream) == b""


async def test_server_answers_malformed_http_with_400_and_closes(fake: FakeExchange) -> None:
    async with fake.serve() as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        async with stream:
            await stream.send(b"THIS IS NOT HTTP\r\n\r\n")
            received = await _read_to_eof(stream)
    assert received.startswith(b"HTTP/1.1 400 ")
    assert fake.requests == []


async def test_server_drop_closes_without_any_answer(fake: FakeExchange) -> None:
    fake.inject(FaultKind.DROP_CONNECTION)
    async with fake.serve() as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        async with stream:
            await _send_request(stream, h11.Connection(h11.CLIENT), TIME)
            assert await _read_to_eof(stream) == b""
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            fake.inject(FaultKind.DROP_CONNECTION)
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(TIME)
            assert (await http.get(TIME)).status_code == 200


async def test_server_reset_mid_body_breaks_the_answer(fake: FakeExchange) -> None:
    fake.inject(FaultKind.RESET_MID_BODY, keep=5)
    async with fake.serve() as server, httpx.AsyncClient(base_url=server.base_url) as http:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await http.get(TIME)
        assert (await http.get(TIME)).status_code == 200


async def test_server_slow_answer_past_client_timeout_then_serves_again(
    fake: FakeExchange,
) -> None:
    fake.inject(FaultKind.SLOW_RESPONSE, delay=0.5)
    async with fake.serve() as server, httpx.AsyncClient(base_url=server.base_url) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(TIME, timeout=httpx.Timeout(5.0, read=0.05))
        assert (await http.get(TIME)).status_code == 200


async def test_server_reads_form_body_for_signature_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = Endpoint(
        "test_order", "POST", "/api/v3/order", Security.TRADE, Budget.API_IP, 1, AccountInfo
    )
    monkeypatch.setitem(ENDPOINTS, ("POST", endpoint.path), endpoint)
    fake = FakeExchange(clock=lambda: 1499827319559)
    fake.add_hmac_key(BINANCE_KEY, BINANCE_SECRET)
    fake.set_handler(
        "test_order",
        lambda exchange, request: {"price": request.params["price"]},
        params=("symbol", "side", "type", "timeInForce", "quantity", "price"),
    )
    async with fake.serve() as server, httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post(
            f"/api/v3/order?{H3_QUERY}",
            content=H3_BODY,
            headers={
                "X-MBX-APIKEY": BINANCE_KEY,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"price": "0.1"}


async def test_server_survives_a_failing_handler(
    fake: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exchange: FakeExchange, request: FakeRequest) -> Any:
        raise RuntimeError("handler bug")

    fake.set_handler("server_time", broken)
    with caplog.at_level(logging.ERROR, logger="binance_pmpro.testing"):
        async with fake.serve() as server, httpx.AsyncClient(base_url=server.base_url) as http:
            failed = await http.get(TIME)
            fake.set_handler("server_time", lambda exchange, request: {"serverTime": 1})
            recovered = await http.get(TIME)
    assert failed.status_code == 500
    assert failed.json()["code"] == -1000
    assert recovered.json() == {"serverTime": 1}
    assert "handler bug" in caplog.text


async def test_server_error_in_block_propagates_unwrapped(fake: FakeExchange) -> None:
    with pytest.raises(LookupError, match="from the test"):
        async with fake.serve():
            raise LookupError("from the test")


async def test_server_stops_listening_after_the_block(fake: FakeExchange) -> None:
    async with fake.serve() as server:
        port = server.port
    with pytest.raises(OSError, match="connection attempts failed"):
        await anyio.connect_tcp("127.0.0.1", port)


async def test_server_and_in_process_share_one_exchange_state(fake: FakeExchange) -> None:
    async with fake.serve() as server, httpx.AsyncClient(base_url=server.base_url) as http:
        await http.get(TIME)
        async with fake.http_client() as local:
            response = await local.get(TIME)
    assert response.headers["x-mbx-used-weight-1m"] == "2"  # same IP, same /api budget
