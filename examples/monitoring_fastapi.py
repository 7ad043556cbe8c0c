"""A FastAPI backend that watches the account's margin risk in the background and serves
the latest snapshot.

The watcher starts in the lifespan, next to the one client of the application, and stops
with it. Run it with ``uvicorn examples.monitoring_fastapi:app``.
"""

from __future__ import annotations

# --8<-- [start:app]
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import anyio
from fastapi import FastAPI, HTTPException, Request

from binance_pmpro import BinanceError, PortfolioMarginProClient
from binance_pmpro.monitor import (
    FATAL_ERRORS,
    AccountSnapshot,
    RiskMonitor,
    Stale,
    event_document,
)

log = logging.getLogger("risk")
EVERY = 5.0  # seconds between polls: 5 weight each, a small share of the account's budget


class Risk:
    """What the watcher knows, read by the request handlers."""

    def __init__(self) -> None:
        self.latest: AccountSnapshot | None = None
        self.stale: Stale | None = None
        self.events: list[dict[str, Any]] = []  # the latest breaches, recoveries, ...
        self.stopped: BinanceError | None = None


async def watch(client: PortfolioMarginProClient, risk: Risk) -> None:
    try:
        async for item in RiskMonitor().watch(client, every=EVERY):
            if isinstance(item, AccountSnapshot):
                risk.latest, risk.stale = item, None
            elif isinstance(item, Stale):
                risk.stale = item
                log.warning("no fresh account data for %.0f s: %s", item.age, item.error)
            else:
                risk.events = [*risk.events[-19:], event_document(item)]
                log.warning("risk event: %s", item)  # alert someone here
    except FATAL_ERRORS as exc:  # bad keys, IP ban, not a PM account: waiting won't help
        risk.stopped = exc
        log.error("the risk watcher stopped: %s", exc)


class State(TypedDict):
    risk: Risk


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    risk = Risk()
    async with PortfolioMarginProClient() as client, anyio.create_task_group() as tasks:
        tasks.start_soon(watch, client, risk)
        yield {"risk": risk}
        tasks.cancel_scope.cancel()  # shutting down: stop the watcher, then close the client


app = FastAPI(lifespan=lifespan)


@app.get("/risk")
async def latest(request: Request) -> dict[str, Any]:
    risk: Risk = request.state.risk
    if risk.stopped is not None:
        raise HTTPException(500, f"the risk watcher stopped: {type(risk.stopped).__name__}")
    if risk.latest is None:
        raise HTTPException(503, "no account data yet", {"Retry-After": f"{EVERY:.0f}"})
    # The snapshot's fields (amounts as exact strings), how fresh it is, the recent events.
    return {
        **event_document(risk.latest),
        "stale": risk.stale is not None,
        "events": risk.events,
    }


# --8<-- [end:app]
