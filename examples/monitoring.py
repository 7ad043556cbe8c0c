"""Watch the account's margin risk: the monitor loop, your own rules, and a rehearsal of
your alerts against a scripted FakeExchange.

Run it with ``python examples/monitoring.py`` (keys from BINANCE_API_KEY and
BINANCE_API_SECRET); it prints events until interrupted.
"""

from __future__ import annotations

# --8<-- [start:watch]
from contextlib import aclosing
from decimal import Decimal

import anyio

from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.monitor import (
    AccountSnapshot,
    Breach,
    EquityDrop,
    Recovery,
    RiskMonitor,
    Stale,
    StatusChange,
    default_rules,
)

# The tiers of Binance's risk table (1.50, 1.20, 1.05, 1.00), our own warning at 1.30, and
# equity falling by more than 5,000 USD within ten minutes.
RULES = [*default_rules(alert_below=Decimal("1.3")), EquityDrop(Decimal("5000"), within=600)]


async def watch(client: PortfolioMarginProClient, every: float = 5.0) -> None:
    monitor = RiskMonitor(RULES)
    async with aclosing(monitor.watch(client, every=every)) as items:
        async for item in items:
            if isinstance(item, Breach):
                print(f"BREACH   {item.rule.name}: {item.value}")  # page someone here
            elif isinstance(item, Recovery):
                print(f"RECOVERY {item.rule.name}: {item.value}")
            elif isinstance(item, StatusChange):
                print(f"STATUS   {item.previous} -> {item.current}")
            elif isinstance(item, Stale):
                print(f"STALE    no fresh data for {item.age:.0f} s: {item.error}")
            elif isinstance(item, AccountSnapshot) and item.sequence == 1:
                print(f"watching; uniMMR {item.info.uni_mmr}")


async def main() -> None:
    async with PortfolioMarginProClient() as client:
        await watch(client)  # bad keys, an IP ban or a non-PM account raise out of it


# --8<-- [end:watch]


# --8<-- [start:rehearsal]
from binance_pmpro.testing import FakeExchange, Scenario  # noqa: E402


async def rehearse() -> list[str]:
    """uniMMR slides from 3.0 to 1.1 in a second: which alerts fire, in which order?"""
    fake = FakeExchange()
    Scenario().at(0, uni_mmr="3.0").ramp(1.0, uni_mmr="1.1").install(fake)
    fired: list[str] = []
    async with PortfolioMarginProClient(
        fake.demo_api_key,
        fake.demo_api_secret,
        base_url=fake.base_url,
        http_client=fake.http_client(),  # in-process: no sockets
    ) as client:
        monitor = RiskMonitor(RULES)
        async with aclosing(monitor.watch(client, every=0.05)) as items:
            async for item in items:
                if isinstance(item, Breach):
                    fired.append(item.rule.name)
                if isinstance(item, AccountSnapshot) and item.info.uni_mmr == Decimal("1.1"):
                    break
    return fired


# --8<-- [end:rehearsal]

if __name__ == "__main__":
    anyio.run(main)
