"""Shared helpers of the Portfolio Margin Pro family's tests.

``Client`` is the client with the family's typed methods: the client class itself once it
inherits :class:`~binance_pmpro.portfolio.PortfolioEndpointsMixin`, a subclass doing so
until then (the same methods either way).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.endpoints import ENDPOINTS, Endpoint
from binance_pmpro.portfolio import PortfolioEndpointsMixin
from binance_pmpro.testing import FakeExchange

__all__ = [
    "EXAMPLES",
    "REFERENCE",
    "SAMPLE_PARAMS",
    "Client",
    "bound_client",
    "example_endpoint",
    "example_files",
]

if issubclass(PortfolioMarginProClient, PortfolioEndpointsMixin):
    Client = PortfolioMarginProClient
else:

    class Client(PortfolioMarginProClient, PortfolioEndpointsMixin):  # type: ignore[no-redef]
        """The client with the family's methods mixed in."""


EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pmpro-examples"
"""Binance's documented response examples (``../shared`` beside the repository)."""
REFERENCE = EXAMPLES.parent / "binance-api.md"


def example_files() -> list[Path]:
    """Every example body, variants included (empty when ``../shared`` is absent)."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(EXAMPLES.glob("*.json")) + sorted((EXAMPLES / "variants").glob("*.json"))


def load_example(path: Path) -> Any:
    return json.loads(path.read_bytes())


@contextlib.asynccontextmanager
async def bound_client(fake: FakeExchange, mode: str, **options: Any) -> AsyncIterator[Client]:
    """A client talking to ``fake`` in-process or over loopback HTTP, closed afterwards.

    Its limiter allows far more than Binance unless the test says otherwise: these tests are
    about the endpoints, and the limiter spaces weight-1500 calls about 7.7 s apart at
    Binance's 12,000 per minute (tests/test_portfolio_saturation.py is about the limiter).
    """
    options.setdefault("api_key", fake.demo_api_key)
    options.setdefault("ip_limit", 1_000_000_000)
    options.setdefault("uid_limit", 1_000_000_000)
    if "private_key" not in options:
        options.setdefault("api_secret", fake.demo_api_secret)
    if mode == "in_process":
        async with (
            fake.http_client() as http,
            Client(base_url=fake.base_url, http_client=http, **options) as client,
        ):
            yield client
    else:
        async with fake.serve() as server, Client(base_url=server.base_url, **options) as client:
            yield client


SAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "repay_history": {"startTime": 1726000000000, "endTime": 1731400000000},
    "interest_history": {"startTime": 1670000000000, "endTime": 1672000000000},
    "set_auto_repay": {"autoRepay": False},
    "fund_collection_by_asset": {"asset": "USDT"},
    "bnb_transfer": {"amount": Decimal("0.5"), "transferSide": "TO_UM"},
    "earn_asset_balance": {"asset": "LDUSDT", "transferType": "EARN_TO_FUTURE"},
    "earn_asset_transfer": {
        "asset": "LDUSDT",
        "transferType": "EARN_TO_FUTURE",
        "amount": Decimal("0.25"),
    },
    "set_delta_mode": {"deltaEnabled": True},
    "set_margin_call_level": {"marginCallLevel": Decimal("1.5")},
}
"""Parameters (Binance's names) that make each endpoint succeed on a fresh FakeExchange."""


def example_endpoint(path: Path) -> Endpoint:
    """The endpoint an example file documents: ``GET-v1_portfolio_balance[.variant].json``."""
    method, _, rest = path.name.split(".", 1)[0].partition("-")
    return ENDPOINTS[(method, "/sapi/" + rest.replace("_", "/"))]
