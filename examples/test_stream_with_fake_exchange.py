"""Testing code that reads the user data stream, against FakeExchange's stream.

The plugin's ``fake_client`` opens the stream in-process (no sockets) and the exchange
pushes an account update every ``stream_period`` seconds. Run with
``pytest examples/test_stream_with_fake_exchange.py``.
"""

from __future__ import annotations

# --8<-- [start:code-under-test]
from decimal import Decimal

import anyio
import pytest

from binance_pmpro import AccountUpdate, PortfolioMarginProClient, RiskLevelChange
from binance_pmpro.testing import FakeExchange, Scenario, StreamFault


async def first_alarm(client: PortfolioMarginProClient, below: Decimal) -> str:
    """Your code: read the stream until uniMMR drops below ``below`` or Binance announces a
    risk level; say which."""
    async with client.user_stream() as stream:
        async for event in stream:
            if isinstance(event, RiskLevelChange):
                return f"risk level {event.risk_level.value}"
            if (
                isinstance(event, AccountUpdate)
                and event.uni_mmr is not None
                and event.uni_mmr < below
            ):
                return f"uniMMR {event.uni_mmr}"
    return "stream ended"


# --8<-- [end:code-under-test]


# --8<-- [start:fixture]
@pytest.fixture
def fake_exchange() -> FakeExchange:
    """The plugin's fixture, overridden: an update every 0.02 s instead of Binance's 5 s."""
    return FakeExchange(stream_period=0.02)


# --8<-- [end:fixture]


# --8<-- [start:tests]
@pytest.mark.anyio
async def test_first_alarm_on_a_low_uni_mmr_names_it(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    fake_exchange.set_account(uni_mmr="1.40000000")
    with anyio.fail_after(10):
        assert await first_alarm(fake_client, Decimal("1.5")) == "uniMMR 1.40000000"


@pytest.mark.anyio
async def test_first_alarm_on_a_margin_call_names_the_level(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    # Binance pushes riskLevelChange when the level changes while connected: script it.
    Scenario().at(0.3, account_status="MARGIN_CALL").install(fake_exchange)
    with anyio.fail_after(10):
        assert await first_alarm(fake_client, Decimal("1.1")) == "risk level MARGIN_CALL"


@pytest.mark.anyio
async def test_first_alarm_survives_a_dropped_connection(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    fake_exchange.inject_stream(StreamFault.DROP)  # hits the first connection
    fake_exchange.set_account(uni_mmr="1.40000000")
    with anyio.fail_after(10):
        assert await first_alarm(fake_client, Decimal("1.5")) == "uniMMR 1.40000000"
    assert len(fake_exchange.stream_connections) == 2  # the SDK reconnected
    assert len({r.key_id for r in fake_exchange.listen_key_log}) == 1  # one listen key


# --8<-- [end:tests]
