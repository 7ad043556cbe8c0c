"""FakeExchange's user data stream over loopback (real sockets, real time, asyncio and trio):
the listen key calls on the REST port, the WebSocket handshake, events, pings and each fault;
and the same script giving the same frames in-process and over the socket."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from _ws_client import ws_connect
from binance_pmpro.errors import ConnectError
from binance_pmpro.testing import FakeExchange, StreamFault
from binance_pmpro.testing._stream import LISTEN_KEY_PATH
from binance_pmpro.transport.websocket import Ping, WebSocket, WebSocketClosed

pytestmark = pytest.mark.anyio

# Generous against a loaded machine; every wait below is bounded by it.
BOUND = 20.0


async def create_key(base_url: str, api_key: str) -> str:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(LISTEN_KEY_PATH, headers={"X-MBX-APIKEY": api_key})
    assert response.status_code == 200
    assert response.headers["x-mbx-used-weight-1m"] == "1"
    key: str = response.json()["listenKey"]
    return key


async def next_frame(ws: WebSocket, *, answer_pings: bool = True) -> str | Ping:
    with anyio.fail_after(BOUND):
        while True:
            frame = await ws.receive()
            if isinstance(frame, Ping):
                if answer_pings:
                    await ws.pong(frame.payload)
                    continue
                return frame
            assert isinstance(frame, str)
            return frame


async def until_closed(ws: WebSocket) -> WebSocketClosed:
    """Read frames (answering pings) until the connection ends; how it ended."""
    try:
        while True:
            await next_frame(ws)
    except WebSocketClosed as exc:
        return exc


async def test_stream_over_loopback_sends_updates_and_pings_and_records_pongs() -> None:
    fake = FakeExchange(stream_period=0.05, ping_interval=0.1)
    async with fake.serve() as server:
        assert server.stream_url == f"ws://127.0.0.1:{server.port}/pm-classic"
        key = await create_key(server.base_url, fake.demo_api_key)
        ws = await ws_connect(f"{server.stream_url}/ws/{key}")
        kinds: list[str] = []
        pings = 0
        while pings < 2 or len(kinds) < 3:
            frame = await next_frame(ws, answer_pings=False)
            if isinstance(frame, Ping):
                pings += 1
                await ws.pong(frame.payload)
            else:
                kinds.append(json.loads(frame)["e"])
        assert set(kinds) == {"PM_PRO_ACCOUNT_UPDATE"}
        await ws.aclose()
        with anyio.fail_after(BOUND):
            while fake.stream_connections[0].is_open:
                await anyio.sleep(0.01)
    record = fake.stream_connections[0]
    assert record.pongs_matching >= 2
    assert record.pongs_received == record.pongs_matching
    assert record.close_reason == "client"
    assert record.close_code == 1000


async def test_stream_over_loopback_unknown_key_handshake_is_refused_with_400() -> None:
    fake = FakeExchange()
    async with fake.serve() as server:
        with pytest.raises(ConnectError) as info:
            await ws_connect(f"{server.stream_url}/ws/{'B' * 64}")
        assert "HTTP 400" in str(info.value)
        assert "-1125" in str(info.value)
        # The server goes on serving REST on the same port.
        key = await create_key(server.base_url, fake.demo_api_key)
        assert len(key) == 64
    assert fake.rejected_handshakes == 1


async def test_stream_over_loopback_risk_level_change_arrives_at_once() -> None:
    fake = FakeExchange(stream_period=30)
    async with fake.serve() as server:
        key = await create_key(server.base_url, fake.demo_api_key)
        ws = await ws_connect(f"{server.stream_url}/ws/{key}")
        fake.set_account(uni_mmr="1.10", account_status="REDUCE_ONLY")
        event = json.loads(await next_frame(ws))
        assert event["e"] == "riskLevelChange"
        assert event["s"] == "REDUCE_ONLY"
        assert event["u"] == "1.10"
        await ws.aclose()


async def test_stream_over_loopback_drop_ends_without_close_frame() -> None:
    fake = FakeExchange(stream_period=0.05)
    async with fake.serve() as server:
        key = await create_key(server.base_url, fake.demo_api_key)
        ws = await ws_connect(f"{server.stream_url}/ws/{key}")
        await next_frame(ws)
        fake.inject_stream(StreamFault.DROP)
        closed = await until_closed(ws)
        assert closed.code is None


async def test_stream_over_loopback_disconnect_sends_close_1001() -> None:
    fake = FakeExchange(stream_period=0.05)
    async with fake.serve() as server:
        key = await create_key(server.base_url, fake.demo_api_key)
        ws = await ws_connect(f"{server.stream_url}/ws/{key}")
        fake.inject_stream(StreamFault.DISCONNECT)
        closed = await until_closed(ws)
        assert closed.code == 1001


async def test_stream_over_loopback_stall_keeps_socket_and_pings_without_events() -> None:
    fake = FakeExchange(stream_period=0.02, ping_interval=0.05)
    async with fake.serve() as server:
        key = await create_key(server.base_url, fake.demo_api_key)
        ws = await ws_connect(f"{server.stream_url}/ws/{key}")
        await next_frame(ws)
        fake.inject_stream(StreamFault.STALL)
        # Frames already on the wire may still arrive; after them, only pings.
        await anyio.sleep(0.05)
        pings = 0
        while pings < 4:
            frame = await next_frame(ws, answer_pings=False)
            if isinstance(frame, Ping):
                pings += 1
                await ws.pong(frame.payload)
        record = fake.stream_connections[0]
        sent = record.events_sent["PM_PRO_ACCOUNT_UPDATE"]
        await anyio.sleep(0.1)
        assert record.events_sent["PM_PRO_ACCOUNT_UPDATE"] == sent  # nothing new sent
        assert record.is_open
        await ws.aclose()


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        (StreamFault.MALFORMED_FRAME, lambda text: text == '{"e":"PM_PRO_ACCOUNT_UPDATE","E":'),
        (StreamFault.UNKNOWN_EVENT, lambda text: json.loads(text)["e"] == "FAKE_FUTURE_EVENT"),
        (StreamFault.EXPIRE_LISTEN_KEY, lambda text: json.loads(text)["e"] == "listenKeyExpired"),
    ],
)
async def test_stream_over_loopback_one_off_faults_reach_the_client(
    fault: StreamFault, check: Callable[[str], bool]
) -> None:
    fake = FakeExchange(stream_period=30)
    async with fake.serve() as server:
        key = await create_key(server.base_url, fake.demo_api_key)
        ws = await ws_connect(f"{server.stream_url}/ws/{key}")
        fake.inject_stream(fault)
        frame = await next_frame(ws)
        assert isinstance(frame, str)
        assert check(frame)
        if fault is StreamFault.MALFORMED_FRAME:
            with pytest.raises(json.JSONDecodeError):
                json.loads(frame)
        await ws.aclose()


async def test_stream_over_loopback_too_many_client_pings_close_with_1008() -> None:
    fake = FakeExchange(stream_period=30)
    async with fake.serve() as server:
        key = await create_key(server.base_url, fake.demo_api_key)
        ws = await ws_connect(f"{server.stream_url}/ws/{key}")
        for _ in range(6):
            await ws.send_ping(b"x")
        closed = await until_closed(ws)
        assert closed.code == 1008


async def _script(fake: FakeExchange, connect: Callable[[], Awaitable[WebSocket]]) -> list[Any]:
    """One fixed script of faults; the kinds of frames it gets, in order."""
    ws = await connect()
    seen: list[Any] = []
    seen.append(json.loads(await next_frame(ws))["e"])
    fake.set_account(account_status="MARGIN_CALL")
    seen.append(json.loads(await next_frame(ws))["s"])
    fake.inject_stream(StreamFault.UNKNOWN_EVENT)
    seen.append(json.loads(await next_frame(ws))["e"])
    fake.inject_stream(StreamFault.MALFORMED_FRAME)
    seen.append(await next_frame(ws))
    fake.inject_stream(StreamFault.DISCONNECT)
    try:
        while True:
            seen.append(json.loads(await next_frame(ws))["e"])
    except WebSocketClosed as exc:
        seen.append(("closed", exc.code))
    return seen


async def test_stream_in_process_and_loopback_give_the_same_frames() -> None:
    results = []
    for shell in ("in-process", "loopback"):
        fake = FakeExchange(stream_period=0.05)
        if shell == "in-process":
            async with fake.http_client() as http:
                key = (
                    await http.post(LISTEN_KEY_PATH, headers={"X-MBX-APIKEY": fake.demo_api_key})
                ).json()["listenKey"]
            url = f"{fake.stream_url}/ws/{key}"
            connector = fake.ws_connector()

            async def connect() -> WebSocket:
                return await connector(url, timeout=None, ssl_context=None)  # noqa: B023

            results.append(await _script(fake, connect))
        else:
            async with fake.serve() as server:
                key = await create_key(server.base_url, fake.demo_api_key)

                async def connect_socket() -> WebSocket:
                    return await ws_connect(f"{server.stream_url}/ws/{key}")  # noqa: B023

                results.append(await _script(fake, connect_socket))
    assert results[0] == results[1]
    assert results[0][:2] == ["PM_PRO_ACCOUNT_UPDATE", "MARGIN_CALL"]
    assert results[0][-1] == ("closed", 1001)


async def test_stream_over_loopback_server_shutdown_is_recorded() -> None:
    fake = FakeExchange(stream_period=30)
    async with fake.serve() as server:
        key = await create_key(server.base_url, fake.demo_api_key)
        ws = await ws_connect(f"{server.stream_url}/ws/{key}")
        with anyio.fail_after(BOUND):
            while not fake.stream_connections:
                await anyio.sleep(0.01)
    record = fake.stream_connections[0]
    assert not record.is_open
    assert record.close_reason == "server_stopped"
    closed = await until_closed(ws)
    assert closed.code is None
