"""FakeExchange's user data stream in-process: listen key endpoints, stream events from the
account state, pings, connection rules and faults, all on virtual clocks (no sockets)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
import trio.testing

from _virtual_time import VirtualEventLoop
from binance_pmpro.endpoints import Budget
from binance_pmpro.errors import ConnectError
from binance_pmpro.testing import FakeExchange, Scenario, StreamFault
from binance_pmpro.testing._stream import LISTEN_KEY_PATH
from binance_pmpro.transport.websocket import Ping, WebSocket, WebSocketClosed

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualEventLoop})


def virtual_fake(**options: Any) -> FakeExchange:
    return FakeExchange(clock=lambda: anyio.current_time() * 1000, **options)


async def call(fake: FakeExchange, method: str, *, api_key: str | None = None) -> httpx.Response:
    headers = {"X-MBX-APIKEY": fake.demo_api_key if api_key is None else api_key}
    async with fake.http_client() as http:
        return await http.request(method, LISTEN_KEY_PATH, headers=headers)


async def open_stream(fake: FakeExchange) -> tuple[str, WebSocket]:
    response = await call(fake, "POST")
    key = response.json()["listenKey"]
    ws = await fake.ws_connector()(f"{fake.stream_url}/ws/{key}", timeout=None, ssl_context=None)
    return key, ws


async def next_event(ws: WebSocket) -> dict[str, Any]:
    """The next JSON event, answering pings on the way."""
    while True:
        frame = await ws.receive()
        if isinstance(frame, Ping):
            await ws.pong(frame.payload)
            continue
        assert isinstance(frame, str)
        document: dict[str, Any] = json.loads(frame)
        return document


async def until_closed(ws: WebSocket, *, answer_pings: bool = True) -> WebSocketClosed:
    """Read frames until the connection ends; how it ended."""
    while True:
        try:
            frame = await ws.receive()
        except WebSocketClosed as exc:
            return exc
        if isinstance(frame, Ping) and answer_pings:
            await ws.pong(frame.payload)


# --- listen key endpoints ------------------------------------------------------------------


async def test_listen_key_post_new_account_returns_key_and_counts_weight_1() -> None:
    fake = virtual_fake()
    used = []
    for method in ("POST", "PUT", "DELETE"):
        response = await call(fake, method)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        used.append(int(response.headers["x-mbx-used-weight-1m"]))
    assert used == [1, 2, 3]
    assert fake.used_weight(LISTEN_KEY_PATH) == 3
    assert fake.ledger[-1].key.budget is Budget.FAPI_IP
    assert fake.ledger[-1].limit == 2400
    key = fake.listen_key_log[0].listen_key
    assert len(key) == 64
    assert key.isalnum()


async def test_listen_key_post_twice_returns_same_key_and_extends_it() -> None:
    fake = virtual_fake()
    first = (await call(fake, "POST")).json()["listenKey"]
    await anyio.sleep(600)
    second = (await call(fake, "POST")).json()["listenKey"]
    assert first == second
    log = fake.listen_key_log
    assert [r.action for r in log] == ["created", "reused"]
    assert log[1].expires_ms is not None
    assert log[0].expires_ms is not None
    assert log[1].expires_ms - log[0].expires_ms == 600_000
    assert first not in repr(log)


async def test_listen_key_without_keepalive_expires_after_60_minutes() -> None:
    fake = virtual_fake()
    first = (await call(fake, "POST")).json()["listenKey"]
    await anyio.sleep(3599)
    assert fake.listen_key() == first
    await anyio.sleep(1)
    assert fake.listen_key() is None
    response = await call(fake, "PUT")
    assert response.status_code == 400
    assert response.json() == {"code": -1125, "msg": "This listenKey does not exist."}
    second = (await call(fake, "POST")).json()["listenKey"]
    assert second != first
    assert [r.action for r in fake.listen_key_log] == ["created", "not_found", "created"]


async def test_listen_key_put_extends_it_by_60_minutes_and_echoes_it() -> None:
    fake = virtual_fake()
    key = (await call(fake, "POST")).json()["listenKey"]
    await anyio.sleep(3000)
    response = await call(fake, "PUT")
    assert response.status_code == 200
    assert response.json() == {"listenKey": key}
    await anyio.sleep(3599)
    assert fake.listen_key() == key
    await anyio.sleep(1)
    assert fake.listen_key() is None


async def test_listen_key_delete_invalidates_it() -> None:
    fake = virtual_fake()
    await call(fake, "POST")
    response = await call(fake, "DELETE")
    assert response.status_code == 200
    assert response.json() == {}
    assert fake.listen_key() is None
    for method in ("PUT", "DELETE"):
        response = await call(fake, method)
        assert response.status_code == 400
        assert response.json()["code"] == -1125
    assert [r.action for r in fake.listen_key_log] == [
        "created",
        "closed",
        "not_found",
        "not_found",
    ]


@pytest.mark.parametrize(
    ("api_key", "code"), [("unknownKey123", -2015), ("", -2014), ("bad key!", -2014)]
)
async def test_listen_key_bad_api_key_gets_401(api_key: str, code: int) -> None:
    fake = virtual_fake()
    response = await call(fake, "POST", api_key=api_key)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == code
    assert fake.listen_key_log == []
    assert fake.used_weight(LISTEN_KEY_PATH) == 1  # the IP budget is charged regardless


async def test_listen_key_over_the_futures_ip_limit_gets_429() -> None:
    fake = virtual_fake(fapi_limit=2)
    statuses = [(await call(fake, "POST")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_listen_key_other_account_gets_its_own_key() -> None:
    fake = virtual_fake()
    fake.add_hmac_key("otherKey", "otherSecret", account="other")
    mine = (await call(fake, "POST")).json()["listenKey"]
    theirs = (await call(fake, "POST", api_key="otherKey")).json()["listenKey"]
    assert mine != theirs
    assert fake.listen_key("other") == theirs


# --- events from the account state ---------------------------------------------------------


async def test_stream_sends_account_update_every_period_from_account_state() -> None:
    fake = virtual_fake(stream_period=5)
    _, ws = await open_stream(fake)
    start = fake.now_ms()
    events = [await next_event(ws) for _ in range(3)]
    assert [e["e"] for e in events] == ["PM_PRO_ACCOUNT_UPDATE"] * 3
    assert [e["E"] - start for e in events] == [5000, 10000, 15000]
    fields = fake.account_fields()
    assert events[0] == {
        "e": "PM_PRO_ACCOUNT_UPDATE",
        "E": events[0]["E"],
        "u": fields["uniMMR"],
        "eq": fields["accountEquity"],
        "ae": fields["actualEquity"],
        "im": fields["accountInitialMargin"],
        "mm": fields["accountMaintMargin"],
        "avb": "122559.90199491",  # the REST example's thousands separator is not streamed
        "vmw": "122559.90199491",
    }
    await ws.aclose()
    record = fake.stream_connections[0]
    assert record.events_sent == {"PM_PRO_ACCOUNT_UPDATE": 3}
    assert record.close_reason == "client"
    assert record.close_code == 1000


async def test_stream_tier_levels_follow_the_scripted_slide_with_risk_level_changes() -> None:
    fake = virtual_fake(stream_period=5, risk_levels="tiers")
    Scenario().at(0, uni_mmr="3.0").ramp(60, uni_mmr="1.1").install(fake)
    start = fake.now_ms()
    _, ws = await open_stream(fake)
    events = [await next_event(ws) for _ in range(14)]
    updates = [Decimal(e["u"]) for e in events if e["e"] == "PM_PRO_ACCOUNT_UPDATE"]
    assert updates == sorted(updates, reverse=True)
    assert updates[-1] == Decimal("1.1")
    changes = [e for e in events if e["e"] == "riskLevelChange"]
    assert [e["s"] for e in changes] == ["MARGIN_CALL", "REDUCE_ONLY"]
    # uniMMR crosses 1.50 at 47.37 s and 1.20 at 56.84 s: seen within one risk check (1 s).
    assert 47_368 <= changes[0]["E"] - start <= 48_400
    assert 56_842 <= changes[1]["E"] - start <= 57_900
    assert Decimal(changes[0]["u"]) <= Decimal("1.5")
    assert list(changes[0]) == ["e", "E", "u", "s", "eq", "ae", "m"]
    await ws.aclose()


async def test_stream_set_account_status_sends_risk_level_change_at_once() -> None:
    fake = virtual_fake(stream_period=5)
    _, ws = await open_stream(fake)
    await anyio.sleep(1)
    fake.set_account(account_status="FORCE_LIQUIDATION")
    event = await next_event(ws)
    assert event["e"] == "riskLevelChange"
    assert event["s"] == "FORCE_LIQUIDATION"
    assert event["E"] == fake.now_ms()
    # A status that is no risk level (SUPPLY_MARGIN) changes nothing; NORMAL is announced.
    fake.set_account(account_status="SUPPLY_MARGIN")
    fake.set_account(account_status="NORMAL")
    event = await next_event(ws)
    assert event["e"] == "riskLevelChange"
    assert event["s"] == "NORMAL"
    assert (await next_event(ws))["e"] == "PM_PRO_ACCOUNT_UPDATE"
    await ws.aclose()


async def test_stream_status_levels_ignore_a_uni_mmr_slide_without_status() -> None:
    fake = virtual_fake(stream_period=5)
    Scenario().at(0, uni_mmr="3.0").ramp(30, uni_mmr="1.1").at(
        40, account_status="REDUCE_ONLY"
    ).install(fake)
    start = fake.now_ms()
    _, ws = await open_stream(fake)
    events = [await next_event(ws) for _ in range(9)]
    changes = [(e["E"] - start, e["s"]) for e in events if e["e"] == "riskLevelChange"]
    assert changes == [(40_000, "REDUCE_ONLY")]
    await ws.aclose()


async def test_stream_pings_every_interval_and_records_pongs() -> None:
    fake = virtual_fake(stream_period=60, ping_interval=180)
    _, ws = await open_stream(fake)
    start = fake.now_ms()
    pings = []
    while len(pings) < 2:
        frame = await ws.receive()
        if isinstance(frame, Ping):
            pings.append(fake.now_ms() - start)
            await ws.pong(frame.payload)
    assert pings == [180_000, 360_000]
    await ws.aclose()
    record = fake.stream_connections[0]
    assert (record.pings_sent, record.pongs_received, record.pongs_matching) == (2, 2, 2)
    assert record.incoming_messages == 3  # two pongs and the close frame
    assert record.max_incoming_per_second == 2  # the last pong and the close, same second


async def test_stream_without_pongs_is_dropped_after_the_pong_timeout() -> None:
    fake = virtual_fake(stream_period=60, ping_interval=180, pong_timeout=600)
    _, ws = await open_stream(fake)
    start = fake.now_ms()
    closed = await until_closed(ws, answer_pings=False)
    assert closed.code is None
    assert fake.now_ms() - start == 780_000
    assert fake.stream_connections[0].close_reason == "pong_timeout"


async def test_stream_connection_is_closed_after_its_lifetime() -> None:
    fake = virtual_fake(
        stream_period=600,
        max_connection_lifetime=24 * 3600,
        listen_key_validity=48 * 3600,
        risk_check_interval=600,
    )
    _, ws = await open_stream(fake)
    start = fake.now_ms()
    closed = await until_closed(ws)
    assert closed.code == 1001
    assert fake.now_ms() - start == 24 * 3600 * 1000
    record = fake.stream_connections[0]
    assert record.close_reason == "lifetime"
    assert record.events_sent["PM_PRO_ACCOUNT_UPDATE"] == 24 * 6 - 1


async def test_stream_expired_key_sends_listen_key_expired_then_falls_silent() -> None:
    fake = virtual_fake(stream_period=600, ping_interval=1800, risk_check_interval=600)
    key, ws = await open_stream(fake)
    start = fake.now_ms()
    events = [await next_event(ws) for _ in range(6)]
    assert [e["e"] for e in events] == ["PM_PRO_ACCOUNT_UPDATE"] * 5 + ["listenKeyExpired"]
    assert events[-1] == {"e": "listenKeyExpired", "E": start + 3_600_000, "listenKey": key}
    with anyio.move_on_after(7200):
        while True:
            frame = await ws.receive()
            assert isinstance(frame, Ping)  # pings go on, events do not
            await ws.pong(frame.payload)
    assert fake.stream_connections[0].is_open
    await ws.aclose()


async def test_stream_handshake_with_unknown_key_is_refused_without_leaking_it() -> None:
    fake = virtual_fake()
    key = "A" * 64
    with pytest.raises(ConnectError) as info:
        await fake.ws_connector()(f"{fake.stream_url}/ws/{key}", timeout=None, ssl_context=None)
    assert "400" in str(info.value)
    assert "-1125" in str(info.value)
    assert key not in str(info.value)
    assert fake.rejected_handshakes == 1
    assert fake.stream_connections == []


async def test_stream_handshake_after_delete_is_refused() -> None:
    fake = virtual_fake()
    key, ws = await open_stream(fake)
    await call(fake, "DELETE")
    with pytest.raises(WebSocketClosed) as info:
        await ws.receive()
    assert info.value.code == 1000
    assert fake.stream_connections[0].close_reason == "listen_key_closed"
    with pytest.raises(ConnectError):
        await fake.ws_connector()(f"{fake.stream_url}/ws/{key}", timeout=None, ssl_context=None)


async def test_stream_too_many_incoming_messages_closes_with_1008() -> None:
    fake = virtual_fake(stream_period=60)
    _, ws = await open_stream(fake)
    for _ in range(6):  # Binance's documented limit for PM Pro: 5 per second
        await ws.pong(b"")
    with pytest.raises(WebSocketClosed) as info:
        await ws.receive()
    assert info.value.code == 1008
    record = fake.stream_connections[0]
    assert record.close_reason == "message_limit"
    assert record.max_incoming_per_second == 6


# --- faults ----------------------------------------------------------------------------------


async def test_stream_fault_drop_ends_connection_without_close_frame() -> None:
    fake = virtual_fake(stream_period=5)
    _, ws = await open_stream(fake)
    await next_event(ws)
    rule = fake.inject_stream(StreamFault.DROP)
    with pytest.raises(WebSocketClosed) as info:
        await ws.receive()
    assert info.value.code is None
    assert rule.hits == 1
    assert fake.stream_connections[0].close_reason == "dropped"


async def test_stream_fault_disconnect_closes_with_1001() -> None:
    fake = virtual_fake(stream_period=5)
    _, ws = await open_stream(fake)
    fake.inject_stream("disconnect")
    with pytest.raises(WebSocketClosed) as info:
        await ws.receive()
    assert info.value.code == 1001
    assert fake.stream_connections[0].close_reason == "disconnect"


async def test_stream_fault_stall_stops_events_but_keeps_pings() -> None:
    fake = virtual_fake(stream_period=5, ping_interval=10)
    _, ws = await open_stream(fake)
    await next_event(ws)
    fake.inject_stream(StreamFault.STALL, seconds=60)
    stalled_at = fake.now_ms()
    frames = []
    while True:
        frame = await ws.receive()
        if isinstance(frame, Ping):
            frames.append("ping")
            await ws.pong(frame.payload)
            continue
        break
    assert frames == ["ping"] * 6
    assert json.loads(frame)["e"] == "PM_PRO_ACCOUNT_UPDATE"
    assert fake.now_ms() - stalled_at == 60_000
    assert fake.stream_connections[0].is_open
    await ws.aclose()


async def test_stream_fault_expire_listen_key_sends_listen_key_expired_now() -> None:
    fake = virtual_fake(stream_period=5)
    key, ws = await open_stream(fake)
    await anyio.sleep(2)
    rule = fake.inject_stream(StreamFault.EXPIRE_LISTEN_KEY)
    event = await next_event(ws)
    assert event == {"e": "listenKeyExpired", "E": fake.now_ms(), "listenKey": key}
    assert rule.hits == 1
    assert (await call(fake, "PUT")).json()["code"] == -1125
    assert fake.listen_key_log[-2].action == "expired"
    await ws.aclose()


async def test_stream_fault_malformed_frame_then_stream_goes_on() -> None:
    fake = virtual_fake(stream_period=5)
    _, ws = await open_stream(fake)
    fake.inject_stream(StreamFault.MALFORMED_FRAME)
    frame = await ws.receive()
    assert isinstance(frame, str)
    with pytest.raises(json.JSONDecodeError):
        json.loads(frame)
    assert (await next_event(ws))["e"] == "PM_PRO_ACCOUNT_UPDATE"
    await ws.aclose()


async def test_stream_fault_unknown_event_has_a_new_type() -> None:
    fake = virtual_fake(stream_period=5)
    _, ws = await open_stream(fake)
    fake.inject_stream(StreamFault.UNKNOWN_EVENT, event="SOMETHING_NEW")
    event = await next_event(ws)
    assert event["e"] == "SOMETHING_NEW"
    assert event["E"] == fake.now_ms()
    assert (await next_event(ws))["e"] == "PM_PRO_ACCOUNT_UPDATE"
    await ws.aclose()


async def test_stream_fault_without_open_connection_hits_the_next_one() -> None:
    fake = virtual_fake(stream_period=5)
    rule = fake.inject_stream(StreamFault.DROP)
    assert rule.pending
    assert rule.hits == 0
    _, ws = await open_stream(fake)
    with pytest.raises(WebSocketClosed):
        await ws.receive()
    assert rule.hits == 1
    assert not rule.pending
    _, ws = await open_stream(fake)  # the next connection is healthy
    assert (await next_event(ws))["e"] == "PM_PRO_ACCOUNT_UPDATE"
    await ws.aclose()
    assert len(fake.stream_connections) == 2


def test_stream_fault_unknown_option_is_refused() -> None:
    fake = FakeExchange()
    with pytest.raises(TypeError, match="seconds"):
        fake.inject_stream(StreamFault.DROP, seconds=3)


async def test_stream_exchange_on_wall_clock_under_virtual_loop_is_reported() -> None:
    fake = FakeExchange(stream_period=5)  # wall clock: does not follow the virtual loop
    _, ws = await open_stream(fake)
    with pytest.raises(RuntimeError, match="clock"):
        await ws.receive()
