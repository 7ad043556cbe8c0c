"""The same backend on Litestar: the client is opened by a lifespan context manager and kept
on ``app.state``. Run it with ``litestar --app examples.web_litestar:app run``.
"""

from __future__ import annotations

# --8<-- [start:app]
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException

from binance_pmpro import BinanceError, PortfolioMarginProClient, RateLimitTimeoutError


@asynccontextmanager
async def binance_client(app: Litestar) -> AsyncIterator[None]:
    async with PortfolioMarginProClient() as client:  # keys from the environment
        app.state.binance = client
        yield


@get("/risk")
async def risk(state: State) -> dict[str, Any]:
    client: PortfolioMarginProClient = state.binance
    try:
        info = await client.account_info(max_wait=2.0, call_timeout=5.0)
    except RateLimitTimeoutError as exc:
        raise HTTPException(status_code=503, detail="busy, try again") from exc
    except BinanceError as exc:
        raise HTTPException(status_code=502, detail=type(exc).__name__) from exc
    return {"uni_mmr": str(info.uni_mmr), "account_status": info.account_status.value}


app = Litestar(route_handlers=[risk], lifespan=[binance_client])
# --8<-- [end:app]
