"""Client construction corners: environment passwords, closed clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from binance_pmpro import ClientClosedError, ConfigurationError, PortfolioMarginProClient

DATA = Path(__file__).parent / "data"


def test_env_password_is_ignored_for_an_unencrypted_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_PRIVATE_KEY_PASSWORD", "correct-horse-battery")
    client = PortfolioMarginProClient("key", private_key=DATA / "ed25519.pem")
    assert client.signing_algorithm == "ED25519"


def test_explicit_password_for_an_unencrypted_key_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="not encrypted"):
        PortfolioMarginProClient(
            "key",
            private_key=DATA / "ed25519.pem",
            private_key_password="correct-horse-battery",
        )


@pytest.mark.anyio
async def test_call_on_closed_client_raises_client_closed() -> None:
    client = PortfolioMarginProClient("key", "secret", time_sync=False)
    await client.aclose()
    with pytest.raises(ClientClosedError, match="closed"):
        await client.account_info()


@pytest.mark.anyio
async def test_ip_total_pools_ip_endpoints_on_one_budget() -> None:
    from binance_pmpro.endpoints import Budget
    from binance_pmpro.testing import FakeExchange

    fake = FakeExchange()
    for ip_total, expected in ((False, 2), (True, 1)):
        http_client = fake.http_client()
        async with PortfolioMarginProClient(
            fake.demo_api_key,
            fake.demo_api_secret,
            base_url=fake.base_url,
            http_client=http_client,
            ip_total=ip_total,
            time_sync=False,
            rate_limiter="per-client",  # a fresh limiter: count only this client's budgets
        ) as client:
            await client.balance()
            await client.collateral_rates()
            ip_budgets = [b for b in client.rate_limit if b.key.kind is Budget.SAPI_IP]
            assert len(ip_budgets) == expected
        await http_client.aclose()


@pytest.mark.anyio
async def test_default_clients_of_one_loop_share_ip_and_account_budgets() -> None:
    from binance_pmpro.endpoints import Budget
    from binance_pmpro.testing import FakeExchange

    fake = FakeExchange()
    http_client = fake.http_client()
    options = {"base_url": fake.base_url, "http_client": http_client, "time_sync": False}
    async with (
        PortfolioMarginProClient(fake.demo_api_key, fake.demo_api_secret, **options) as first,
        PortfolioMarginProClient(fake.demo_api_key, fake.demo_api_secret, **options) as second,
        PortfolioMarginProClient(
            fake.demo_api_key, fake.demo_api_secret, rate_limiter="per-client", **options
        ) as own,
    ):
        await first.balance()
        await second.balance()
        await first.account_info()
        await second.account_info()
        await own.balance()

        def used(client: PortfolioMarginProClient, kind: Budget) -> int:
            return sum(b.used for b in client.rate_limit if b.key.kind is kind)

        # One budget seen from both default clients: both calls of each kind are in it.
        assert used(first, Budget.SAPI_IP) == used(second, Budget.SAPI_IP) >= 40
        assert used(first, Budget.SAPI_UID) == used(second, Budget.SAPI_UID) == 10
        # The client with its own limiter never called account_info: no UID budget there.
        assert used(own, Budget.SAPI_UID) == 0
        assert [b.key.kind for b in own.rate_limit] == [Budget.SAPI_IP]
    await http_client.aclose()
