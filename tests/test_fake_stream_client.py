"""The SDK's user stream against FakeExchange's stream: in-process through the pytest
plugin's wiring on virtual clocks, and once over loopback with the default connector."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import trio.testing

import binance_pmpro.clock
from _virtual_time import VirtualEventLoop
from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.retry import RetryPolicy
from binance_pmpro.stream_events import (
    AccountUpdate,
    ListenKeyExpired,
    RiskLevelChange,
    StreamReconnected,
    UnknownEvent,
)
from binance_pmpro.testing import FakeExchange, Scenario, StreamFault
from binance_pmpro.testing.pytest_plugin import fake_client

pytestmark = pytest.mark.anyio

EPOCH_S = 1_700_000_017.25


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualEventLoop})


@pytest.fixture(autouse=True)
def _virtual_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client stamps signed requests from the wall clock: make it the exchange's.
    monkeypatch.setattr(
        binance_pmpro.clock,
        "time",
        SimpleNamespace(time=lambda: anyio.current_time() + EPOCH_S),
    )


@pytest.fixture
def fake_exchange() -> FakeExchange:
    # Overrides the plugin's fixture: the same exchange on the event loop's clock.
    return FakeExchange(clock=lambda: (anyio.current_time() + EPOCH_S) * 1000, stream_period=5)


_ = fake_client  # the plugin's fixture, used by name below


async def test_plugin_client_streams_updates_and_the_scripted_slide(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    Scenario().at(0, uni_mmr="3.0").ramp(60, uni_mmr="1.3").at(
        50, account_status="MARGIN_CALL"
    ).install(fake_exchange)
    seen: list[Any] = []
    with anyio.fail_after(600):  # virtual seconds: a bound, never reached when it works
        async with fake_client.user_stream(close_listen_key=True) as stream:
            async for event in stream:
                seen.append(event)
                if isinstance(event, RiskLevelChange):
                    break
    updates = [e for e in seen if isinstance(e, AccountUpdate)]
    assert len(updates) >= 9
    assert updates[0].uni_mmr is not None
    assert updates[0].uni_mmr < Decimal("3.0")
    assert str(seen[-1].risk_level.value) == "MARGIN_CALL"
    assert [r.action for r in fake_exchange.listen_key_log] == ["created", "closed"]
    assert fake_exchange.stream_connections[0].close_code == 1000


async def test_plugin_client_heals_after_each_stream_fault(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    faults = [
        StreamFault.UNKNOWN_EVENT,
        StreamFault.MALFORMED_FRAME,
        StreamFault.DROP,
        StreamFault.DISCONNECT,
        StreamFault.EXPIRE_LISTEN_KEY,
        StreamFault.STALL,
    ]
    seen: list[Any] = []
    with anyio.fail_after(3600):
        async with fake_client.user_stream(stall_after=15) as stream:
            async for event in stream:
                seen.append(event)
                if isinstance(event, AccountUpdate) and faults:
                    fake_exchange.inject_stream(faults.pop(0))
                elif not faults and len(seen) > 40:
                    break
    kinds = [type(e).__name__ for e in seen]
    assert any(isinstance(e, UnknownEvent) for e in seen)
    assert any(isinstance(e, ListenKeyExpired) for e in seen)
    reasons = [e.reason for e in seen if isinstance(e, StreamReconnected)]
    assert len(reasons) >= 4, kinds  # drop, disconnect, expired key, stall
    assert kinds[-1] == "AccountUpdate"
    actions = [r.action for r in fake_exchange.listen_key_log]
    assert actions.count("created") == 2  # the expired key was replaced
    for record in fake_exchange.stream_connections:
        assert record.max_incoming_per_second <= 5


async def test_plugin_client_keeps_the_key_alive_for_hours_and_answers_pings(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    fake_exchange.stream_period = 60
    fake_exchange.risk_check_interval = 60
    start = anyio.current_time()
    with anyio.fail_after(4 * 3600):
        async with fake_client.user_stream(stall_after=300) as stream:
            async for _ in stream:
                if anyio.current_time() - start > 3 * 3600:
                    break
    actions = [r.action for r in fake_exchange.listen_key_log]
    assert actions[0] == "created"
    assert actions.count("kept_alive") >= 5
    assert "not_found" not in actions
    assert len(fake_exchange.stream_connections) == 1
    record = fake_exchange.stream_connections[0]
    assert record.pings_sent >= 59
    assert record.pongs_matching >= record.pings_sent - 1
    assert record.max_incoming_per_second <= 5


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_client_over_loopback_with_default_connector_gets_updates(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # real time: sockets never meet a virtual clock
    fake = FakeExchange(stream_period=0.05)
    async with (
        fake.serve() as server,
        PortfolioMarginProClient(
            fake.demo_api_key,
            fake.demo_api_secret,
            base_url=server.base_url,
            stream_url=server.stream_url,
            retry=RetryPolicy(base_delay=0.0, max_delay=0.0),
        ) as client,
    ):
        with anyio.fail_after(20):
            async with client.user_stream() as stream:
                updates = 0
                async for event in stream:
                    updates += isinstance(event, AccountUpdate)
                    if updates == 3:
                        break
    assert fake.listen_key_log[0].action == "created"
    assert fake.stream_connections[0].events_sent["PM_PRO_ACCOUNT_UPDATE"] >= 3
