"""The same client from native trio code: nurseries, cancel scopes, trio's own clock."""

from __future__ import annotations

# --8<-- [start:trio]
import trio

from binance_pmpro import AccountInfo, PortfolioMarginProClient

EVERY = 1.0  # seconds between two reads of one task


async def poll(client: PortfolioMarginProClient, seen: list[AccountInfo], n: int) -> None:
    for _ in range(n):
        with trio.move_on_after(2.0):  # a trio cancel scope bounds the call
            seen.append(await client.account_info())
        await trio.sleep(EVERY)


async def main() -> None:
    seen: list[AccountInfo] = []
    # One client for three tasks (on trio it uses the httpx transport).
    async with PortfolioMarginProClient() as client, trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(poll, client, seen, 5)
    print(f"{len(seen)} answers, last uniMMR {seen[-1].uni_mmr if seen else None}")


if __name__ == "__main__":
    trio.run(main)
# --8<-- [end:trio]
