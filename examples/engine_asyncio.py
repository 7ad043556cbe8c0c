"""The same client from native asyncio code (Python 3.11+: TaskGroup and asyncio.timeout)."""

from __future__ import annotations

# --8<-- [start:asyncio]
import asyncio

from binance_pmpro import AccountInfo, PortfolioMarginProClient

EVERY = 1.0  # seconds between two reads of one task


async def poll(client: PortfolioMarginProClient, seen: list[AccountInfo], n: int) -> None:
    for _ in range(n):
        try:
            async with asyncio.timeout(2.0):  # cancels the call when it runs late
                seen.append(await client.account_info())
        except TimeoutError:
            pass  # this tick's answer came too late; the next tick asks again
        await asyncio.sleep(EVERY)


async def main() -> None:
    seen: list[AccountInfo] = []
    # One client for three tasks (on asyncio it uses the fast transport when installed).
    async with PortfolioMarginProClient() as client, asyncio.TaskGroup() as tasks:
        for _ in range(3):
            tasks.create_task(poll(client, seen, 5))
    print(f"{len(seen)} answers, last uniMMR {seen[-1].uni_mmr if seen else None}")


if __name__ == "__main__":
    asyncio.run(main())
# --8<-- [end:asyncio]
