"""One client shared by every task of a trading engine (anyio: runs on asyncio and trio).

A risk watcher polls the account on a fixed cadence while strategy tasks read it before each
decision. They all await the same client: its rate limiter queues them fairly (first in,
first out) and its connection pool is shared.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial

import anyio

from binance_pmpro import (
    AccountInfo,
    AccountStatus,
    DeadlineExceededError,
    PortfolioMarginProClient,
    RateLimitTimeoutError,
)

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup  # the backport anyio installs on Python 3.10


@dataclass
class EngineState:
    """What the tasks share besides the client."""

    latest: AccountInfo | None = None
    halted: bool = False
    events: list[str] = field(default_factory=list)


# --8<-- [start:read-with-deadline]
async def read_account(client: PortfolioMarginProClient, *, budget: float) -> AccountInfo | None:
    """One read that never takes longer than ``budget`` seconds, waits included.

    ``None`` means "no fresh answer in time": a trading loop skips this tick rather than
    act on a late number.
    """
    try:
        return await client.account_info(call_timeout=budget, max_wait=budget)
    except RateLimitTimeoutError:
        return None  # the limiter could not fit the call in time: nothing was sent
    except DeadlineExceededError:
        return None  # sent but not answered in time (a read: harmless)


# --8<-- [end:read-with-deadline]


# --8<-- [start:tasks]
async def watch_risk(
    client: PortfolioMarginProClient, state: EngineState, *, every: float, ticks: int
) -> None:
    """Poll the account on a fixed cadence; halt trading when it leaves NORMAL."""
    for _ in range(ticks):
        info = await read_account(client, budget=every)
        if info is not None:
            state.latest = info
            if info.account_status is not AccountStatus.NORMAL and not state.halted:
                state.halted = True
                state.events.append(f"halt: {info.account_status}, uniMMR {info.uni_mmr}")
        await anyio.sleep(every)


async def strategy(
    client: PortfolioMarginProClient,
    state: EngineState,
    name: str,
    *,
    every: float,
    ticks: int,
    min_uni_mmr: Decimal = Decimal("1.5"),
) -> None:
    """A strategy that checks the margin before each decision."""
    for _ in range(ticks):
        info = await read_account(client, budget=every)
        if state.halted or info is None or info.uni_mmr is None:
            state.events.append(f"{name}: skip")
        elif info.uni_mmr > min_uni_mmr:
            state.events.append(f"{name}: trade")
        else:
            state.events.append(f"{name}: reduce only")
        await anyio.sleep(every)


async def run_engine(
    client: PortfolioMarginProClient, *, every: float = 1.0, ticks: int = 10
) -> EngineState:
    """Start the watcher and two strategies in one task group. If any of them raises, the
    group cancels the others, and every call they were waiting on is cancelled cleanly."""
    state = EngineState()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(watch_risk, client, state, every=every, ticks=ticks))
        for name in ("basis", "funding"):
            tasks.start_soon(partial(strategy, client, state, name, every=every, ticks=ticks))
    return state


# --8<-- [end:tasks]


# --8<-- [start:cancel]
async def first_answer_or_give_up(client: PortfolioMarginProClient, seconds: float) -> str:
    """Cancel a call from outside: ``move_on_after`` cancels whatever the call is doing.

    Cancelled while queued in the rate limiter, the call took no weight and sent nothing.
    Cancelled while the request was in flight, the request may have reached Binance (its
    weight counts); for this read that only means the answer is thrown away.
    """
    with anyio.move_on_after(seconds):
        info = await client.account_info()
        return f"uniMMR {info.uni_mmr}"
    return "gave up"


# --8<-- [end:cancel]


# --8<-- [start:main]
async def main() -> None:
    async with PortfolioMarginProClient() as client:  # one client for the whole engine
        try:
            state = await run_engine(client, every=1.0, ticks=5)
        except ExceptionGroup as group:  # a task group reports its tasks' failures together
            for exc in group.exceptions:  # e.g. an AuthenticationError: fatal for the engine
                print(f"engine stopped: {exc}")
            return
    print("\n".join(state.events))


if __name__ == "__main__":
    anyio.run(main)  # the same code on trio: anyio.run(main, backend="trio")
# --8<-- [end:main]
