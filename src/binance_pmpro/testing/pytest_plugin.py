"""pytest plugin of binance-pmpro, registered through the ``pytest11`` entry point.

Fixtures:

- ``fake_exchange``: a fresh :class:`~binance_pmpro.testing.FakeExchange` per test.
- ``fake_client``: a :class:`~binance_pmpro.PortfolioMarginProClient` bound in-process to
  ``fake_exchange`` with its demo HMAC key, closed after the test: REST through
  ``fake_exchange.http_client()``, the user data stream through
  ``fake_exchange.ws_connector()`` (so ``client.user_stream()`` works with no sockets). It
  is an async fixture: use it from ``@pytest.mark.anyio`` tests (asyncio or trio, as
  ``anyio_backend`` says).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..client import PortfolioMarginProClient
from ._exchange import FakeExchange

__all__ = ["fake_client", "fake_exchange"]


@pytest.fixture
def fake_exchange() -> FakeExchange:
    """A fresh FakeExchange: default limits, wall clock, Binance's example account."""
    return FakeExchange()


@pytest.fixture
async def fake_client(fake_exchange: FakeExchange) -> AsyncIterator[PortfolioMarginProClient]:
    """A client talking in-process to ``fake_exchange`` with its demo HMAC key."""
    http_client = fake_exchange.http_client()
    client = PortfolioMarginProClient(
        api_key=fake_exchange.demo_api_key,
        api_secret=fake_exchange.demo_api_secret,
        base_url=fake_exchange.base_url,
        futures_base_url=fake_exchange.futures_base_url,
        stream_url=fake_exchange.stream_url,
        stream_connector=fake_exchange.ws_connector(),
        http_client=http_client,
    )
    try:
        yield client
    finally:
        await client.aclose()
        await http_client.aclose()
