"""The user stream's healing logic over a scripted WebSocket, on virtual clocks.

Keep-alive timing, key re-creation (-1125 and listenKeyExpired), reconnects with backoff
and a snapshot after a drop, a stall or the scheduled cut, skipped malformed frames,
unknown events passed through, and the pong rate.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio.testing

from _stream import (
    STALL,
    FakeConnector,
    ScriptedRest,
    frames,
    make_client,
    update_frame,
    updates,
)
from _virtual_time import VirtualEventLoop
from binance_pmpro import (
    AccountUpdate,
    AuthenticationError,
    ConfigurationError,
    ListenKeyExpired,
    PortfolioMarginProClient,
    StreamEvent,
    StreamReconnected,
    UnknownEvent,
)
from binance_pmpro.transport.websocket import Ping, WebSocketClosed
from binance_pmpro.user_stream import UserStream

pytestmark = pytest.mark.anyio

LISTEN_KEY = "/fapi/v1/listenKey"
ACCOUNT = "/sapi/v1/portfolio/account"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualEventLoop})


@contextlib.asynccontextmanager
async def opened(
    rest: ScriptedRest, connector: FakeConnector, **options: Any
) -> AsyncIterator[UserStream]:
    async with make_client(rest, connector) as client, client.user_stream(**options) as stream:
        yield stream


async def take(stream: UserStream, count: int) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    async for event in stream:
        events.append(event)
        if len(events) >= count:
            break
    return events


def kinds(events: list[StreamEvent]) -> list[str]:
    return [e.type for e in events]


async def test_user_stream_yields_typed_updates_on_the_listen_key_url() -> None:
    rest, connector = ScriptedRest(), FakeConnector()
    async with opened(rest, connector) as stream:
        events = await take(stream, 3)
    assert all(isinstance(e, AccountUpdate) for e in events)
    assert [e.event_time for e in events] == [1000, 1001, 1002]  # type: ignore[union-attr]
    assert connector.urls == [f"ws://127.0.0.1:9/pm-classic/ws/{rest.live_key}"]
    # USER_STREAM security: the API key header and nothing signed.
    _, _, _, headers = rest.calls[0]
    assert headers == (("X-MBX-APIKEY", "A" * 64),)
    assert "key001" not in repr(stream)


async def test_user_stream_keeps_the_key_alive_every_interval() -> None:
    rest, connector = ScriptedRest(), FakeConnector()
    async with opened(rest, connector, keepalive_interval=600.0) as stream:
        start = rest.calls_of("POST")[0]
        await take(stream, 400)  # 400 updates of 5 s: 2,000 s
        puts = [round(t - start, 6) for t in rest.calls_of("PUT")]
    assert puts == [600.0, 1200.0, 1800.0]
    assert rest.calls_of("DELETE") == []  # decision 25: left to expire by default
    assert len(connector.opened) == 1


async def test_user_stream_close_listen_key_deletes_it_on_exit() -> None:
    rest, connector = ScriptedRest(), FakeConnector()
    async with opened(rest, connector, close_listen_key=True) as stream:
        await take(stream, 1)
    assert len(rest.calls_of("DELETE")) == 1
    assert rest.live_key is None
    assert connector.opened[0][1].closed_at is not None


async def test_user_stream_keepalive_1125_creates_a_new_key_and_moves_to_it() -> None:
    rest, connector = ScriptedRest(keepalive_errors=1), FakeConnector()
    async with opened(rest, connector, keepalive_interval=60.0) as stream:
        events = await take(stream, 20)
    reconnects = [e for e in events if isinstance(e, StreamReconnected)]
    assert len(reconnects) == 1
    assert reconnects[0].reason == "listen_key_expired"
    assert rest.keys_made == 2
    assert [url[-63:] for url in connector.urls] == ["key001" + "x" * 57, "key002" + "x" * 57]
    first_put = rest.calls_of("PUT")[0]
    assert connector.opened[1][0] == pytest.approx(first_put)  # moved at once, no backoff


async def test_user_stream_listen_key_expired_event_recreates_and_reconnects() -> None:
    expired = '{"e":"listenKeyExpired","E":"1736996475556","listenKey":"key001"}'
    rest = ScriptedRest()
    connector = FakeConnector(scripts=[frames((5.0, update_frame(1)), (1.0, expired))])

    async with opened(rest, connector) as stream:
        rest.live_key = None  # Binance let it expire
        events = await take(stream, 4)
    assert kinds(events) == [
        "account_update",
        "listen_key_expired",
        "reconnected",
        "account_update",
    ]
    assert isinstance(events[1], ListenKeyExpired)
    assert events[1].event_time == 1736996475556
    assert "key001" not in repr(events[1])
    assert rest.keys_made == 2
    assert connector.urls[1].endswith("key002" + "x" * 57)


async def test_user_stream_drop_reconnects_with_backoff_and_a_snapshot() -> None:
    rest = ScriptedRest()
    connector = FakeConnector(
        scripts=[frames((5.0, update_frame(1)), (1.0, WebSocketClosed(None, "reset")))], fail=3
    )
    async with opened(rest, connector, backoff_initial=1.0, backoff_max=60.0) as stream:
        events = await take(stream, 3)
    assert kinds(events) == ["account_update", "reconnected", "account_update"]
    reconnected = events[1]
    assert isinstance(reconnected, StreamReconnected)
    assert reconnected.reason == "dropped"
    assert reconnected.attempt == 4
    assert reconnected.snapshot is not None
    assert reconnected.snapshot.uni_mmr is not None
    dropped_at = connector.opened[0][1].closed_at
    assert dropped_at is not None
    starts = [dropped_at, *connector.attempts[1:-1]]
    gaps = [b - a for a, b in zip(starts, connector.attempts[1:], strict=True)]
    # Jittered exponential: attempt n waits within [0.5, 1] x 2**(n-1) s.
    for n, gap in enumerate(gaps, start=1):
        assert 0.5 * 2 ** (n - 1) <= gap <= 2 ** (n - 1) + 1e-6
    # The snapshot is fetched after the gap, once.
    assert len(rest.calls_of("GET", ACCOUNT)) == 1
    assert rest.calls_of("GET", ACCOUNT)[0] >= connector.opened[1][0]


async def test_user_stream_connections_dropped_before_any_update_keep_backing_off() -> None:
    drop_at_once = frames((0.1, WebSocketClosed(None, "reset")))
    connector = FakeConnector(scripts=[drop_at_once] * 6)
    async with opened(ScriptedRest(), connector, backoff_initial=1.0, backoff_max=60.0) as stream:
        events = await take(stream, 7)
    assert kinds(events)[-1] == "account_update"
    opened_at = [t for t, _ in connector.opened]
    gaps = [b - a - 0.1 for a, b in itertools.pairwise(opened_at)]
    # Each reconnect waits within [0.5, 1] x 2**(n-1) s for the n-th in a row.
    for n, gap in enumerate(gaps, start=1):
        assert 0.5 * 2 ** (n - 1) - 1e-6 <= gap <= 2 ** (n - 1) + 1e-6


async def test_user_stream_stall_reconnects_after_stall_after_seconds() -> None:
    rest = ScriptedRest()
    connector = FakeConnector(scripts=[frames((5.0, update_frame(1)), (0.0, STALL))])
    async with opened(rest, connector, stall_after=15.0, backoff_initial=0.0) as stream:
        events = await take(stream, 3)
    assert kinds(events) == ["account_update", "reconnected", "account_update"]
    assert events[1].reason == "stalled"  # type: ignore[union-attr]
    first_update_at = connector.opened[0][0] + 5.0
    assert connector.opened[1][0] == pytest.approx(first_update_at + 15.0)


async def test_user_stream_scheduled_reconnect_opens_the_new_connection_first() -> None:
    rest, connector = ScriptedRest(), FakeConnector()
    async with opened(rest, connector, max_connection_age=100.0) as stream:
        events = await take(stream, 45)
    reasons = [e.reason for e in events if isinstance(e, StreamReconnected)]
    assert reasons == ["scheduled", "scheduled"]
    (t0, first), (t1, second), (t2, _) = connector.opened
    assert t1 - t0 == pytest.approx(100.0)
    assert first.closed_at == pytest.approx(t1)  # closed only once the new one was open
    assert t2 - t1 == pytest.approx(100.0)
    assert second.closed_at is not None


async def test_user_stream_malformed_frame_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = '{"e":"listenKeyExpired","E":1,"listenKey":"SECRETKEY'
    connector = FakeConnector(
        scripts=[frames((1.0, "{not json"), (1.0, secret), (1.0, update_frame(7)), then=updates())]
    )
    caplog.set_level(logging.WARNING, logger="binance_pmpro.stream")
    async with opened(ScriptedRest(), connector) as stream:
        events = await take(stream, 2)
        assert stream.frames_skipped == 2
    assert kinds(events) == ["account_update", "account_update"]
    assert events[0].event_time == 7  # type: ignore[union-attr]
    assert "skipped a stream frame" in caplog.text
    assert "SECRETKEY" not in caplog.text


async def test_user_stream_unknown_event_passes_through() -> None:
    unknown = '{"e":"ORDER_TRADE_UPDATE","E":5,"o":{}}'
    connector = FakeConnector(scripts=[frames((1.0, unknown), then=updates())])
    async with opened(ScriptedRest(), connector) as stream:
        events = await take(stream, 2)
    assert isinstance(events[0], UnknownEvent)
    assert events[0].event_type == "ORDER_TRADE_UPDATE"
    assert events[0].raw == unknown.encode()
    assert isinstance(events[1], AccountUpdate)


async def test_user_stream_pongs_echo_the_payload_at_a_bounded_rate() -> None:
    # A burst of 20 pings in 2 s, then one a minute later.
    burst = [(0.1, Ping(f"p{i}".encode())) for i in range(20)]
    script = frames(*burst, (60.0, Ping(b"late")), then=updates(period=1.0))
    connector = FakeConnector(scripts=[script])
    async with opened(
        ScriptedRest(), connector, max_pongs_per_second=1.0, stall_after=100.0
    ) as stream:
        await take(stream, 3)
    pongs = connector.opened[0][1].pongs
    times = [t for t, _ in pongs]
    # Never more than one a second (Binance allows 5 incoming messages a second)...
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))
    # ...each echoes a ping's payload, the first at once, the latest of the burst last...
    assert pongs[0][1] == b"p0"
    assert pongs[0][0] - connector.opened[0][0] == pytest.approx(0.1)
    assert b"p19" in [p for _, p in pongs]
    # ...and a lone ping later is answered at once.
    assert pongs[-1][1] == b"late"
    assert 2 <= len(pongs) <= 5


async def test_user_stream_fatal_keepalive_error_raises_from_the_iterator() -> None:
    class Refusing(ScriptedRest):
        async def send(self, request: Any) -> Any:
            if request.method == "PUT":
                from binance_pmpro.transport import Response

                body = b'{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'
                return Response(401, {}, body)
            return await super().send(request)

    async with make_client(Refusing(), FakeConnector()) as client:
        with pytest.raises(AuthenticationError):
            async with client.user_stream(keepalive_interval=60.0) as stream:
                await take(stream, 100)


async def test_user_stream_without_a_stream_url_is_a_configuration_error() -> None:
    client = PortfolioMarginProClient("A" * 64, "s" * 64, base_url="http://127.0.0.1:9")
    assert client.futures_base_url == "http://127.0.0.1:9"
    with pytest.raises(ConfigurationError, match="stream_url"):
        client.user_stream()


def test_client_stream_defaults_follow_binance_hosts() -> None:
    client = PortfolioMarginProClient("A" * 64, "s" * 64)
    assert client.futures_base_url == "https://fapi.binance.com"
    assert client.stream_url == "wss://fstream.binance.com/pm-classic"
    with pytest.raises(ConfigurationError, match="ws://"):
        PortfolioMarginProClient("A" * 64, "s" * 64, stream_url="ws://example.com/pm-classic")
