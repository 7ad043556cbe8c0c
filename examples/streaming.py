"""Stream the account's risk: the user data stream as typed events, and the risk monitor fed
by it.

Run it with ``python examples/streaming.py`` (keys from BINANCE_API_KEY and
BINANCE_API_SECRET); it prints events until interrupted.
"""

from __future__ import annotations

# --8<-- [start:stream]
import anyio

from binance_pmpro import (
    AccountUpdate,
    ListenKeyExpired,
    PortfolioMarginProClient,
    RiskLevelChange,
    StreamReconnected,
    UnknownEvent,
)


async def print_events(client: PortfolioMarginProClient, limit: int | None = None) -> int:
    """Print the stream's events (``limit`` of them, or until interrupted)."""
    seen = 0
    async with client.user_stream() as stream:
        async for event in stream:
            if isinstance(event, AccountUpdate):
                print(f"update    uniMMR {event.uni_mmr}  equity {event.equity} USD")
            elif isinstance(event, RiskLevelChange):
                print(f"RISK      {event.risk_level} at uniMMR {event.uni_mmr}")  # page someone
            elif isinstance(event, StreamReconnected):
                # Updates may have been missed: the snapshot is the account after the gap.
                uni_mmr = event.snapshot.uni_mmr if event.snapshot else "unknown"
                print(f"reconnect ({event.reason}); uniMMR now {uni_mmr}")
            elif isinstance(event, ListenKeyExpired):
                print("listen key expired; the stream is making a new one")
            elif isinstance(event, UnknownEvent):
                print(f"unknown   {event.event_type}")
            seen += 1
            if limit is not None and seen >= limit:
                break
    return seen


# --8<-- [end:stream]

# --8<-- [start:watch]
from contextlib import aclosing  # noqa: E402
from decimal import Decimal  # noqa: E402

from binance_pmpro import Breach, RiskMonitor, Stale, StatusChange, UniMMRBelow  # noqa: E402


async def alert_on_stream(client: PortfolioMarginProClient, level: str = "1.2") -> Breach:
    """Watch uniMMR on the pushed updates (polling only while the stream is down); return the
    first breach of ``level``."""
    monitor = RiskMonitor([UniMMRBelow(Decimal(level))])
    async with aclosing(monitor.watch(client, every=5.0, source="auto")) as items:
        async for item in items:
            if isinstance(item, Breach):
                print(f"BREACH  uniMMR {item.value} < {level}")
                return item
            if isinstance(item, StatusChange):
                print(f"STATUS  {item.previous} -> {item.current}")
            elif isinstance(item, Stale):
                print(f"STALE   no fresh data for {item.age:.0f} s")
    raise RuntimeError("the watch ended")  # it does not: it runs until a breach


# --8<-- [end:watch]


async def main() -> None:
    async with PortfolioMarginProClient() as client:
        await print_events(client)


if __name__ == "__main__":
    anyio.run(main)
