"""examples/several_processes.py (the "Several processes, one account" guide) runs: two
clients built as two processes would build them share one budget in a real Redis, and the
strict one refuses to call while Redis cannot be reached."""

from __future__ import annotations

import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from _redis import _command
from binance_pmpro.errors import SharedBudgetUnavailableError
from binance_pmpro.testing import FakeExchange
from test_examples import load

pytestmark = pytest.mark.anyio


def _options(fake: FakeExchange) -> dict[str, Any]:
    return {
        "api_key": fake.demo_api_key,
        "api_secret": fake.demo_api_secret,
        "base_url": fake.base_url,
        "http_client": fake.http_client(),
    }


async def test_several_processes_clients_share_the_redis_budget(redis_url: str) -> None:
    example = load("several_processes")
    fake = FakeExchange()
    account = f"example-{secrets.token_hex(4)}"
    first = example.shared_client(redis_url, account, **_options(fake))
    second = example.shared_client_on_this_host(
        redis_url, account, ip_group=account, **_options(fake)
    )
    async with first, second:
        await first.account_info()
        await second.account_info()
        await second.asset_index_price(asset="BTC")
    sent = [r for r in fake.requests if r.path.startswith("/sapi/")]
    assert [r.status for r in sent] == [200, 200, 200]
    # Both clients' account calls were granted from one budget in Redis (its grant count).
    parts = urlsplit(redis_url)
    key = f"bpm:{{uid|{account}|/sapi/v1/portfolio/account}}:s"
    reply = _command(parts.hostname or "127.0.0.1", parts.port or 6379, "HGET", key, "seq")
    assert reply.split(b"\r\n")[1] == b"2"


async def test_several_processes_strict_client_refuses_while_redis_is_unreachable() -> None:
    example = load("several_processes")
    fake = FakeExchange()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = example.shared_client_on_this_host(
        f"redis://127.0.0.1:{port}/0", "example", **_options(fake)
    )
    async with client:
        with pytest.raises(SharedBudgetUnavailableError):
            await client.account_info()
    assert not [r for r in fake.requests if r.path.startswith("/sapi/")]
