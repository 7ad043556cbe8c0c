"""A FastAPI (Starlette) backend that serves the account's risk summary.

One client lives for the application's lifespan and serves every request; it is closed when
the server shuts down. Run it with ``uvicorn examples.web_fastapi:app``.
"""

from __future__ import annotations

# --8<-- [start:app]
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from fastapi import FastAPI, HTTPException, Request

from binance_pmpro import (
    AuthenticationError,
    BinanceError,
    PortfolioMarginProClient,
    RateLimitedError,
    RateLimitTimeoutError,
)


class State(TypedDict):
    binance: PortfolioMarginProClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    # Created once per worker process; keys from BINANCE_API_KEY / BINANCE_API_SECRET.
    async with PortfolioMarginProClient() as client:
        yield {"binance": client}  # each request sees it as request.state.binance


app = FastAPI(lifespan=lifespan)


@app.get("/risk")
async def risk(request: Request) -> dict[str, Any]:
    client: PortfolioMarginProClient = request.state.binance
    try:
        # A web request should not queue for long: give up after 2 s of rate-limit wait and
        # 5 s in total. Should the server cancel this handler, the call is cancelled cleanly.
        info = await client.account_info(max_wait=2.0, call_timeout=5.0)
    except (RateLimitedError, RateLimitTimeoutError) as exc:
        retry_after = getattr(exc, "retry_after", None) or 1
        raise HTTPException(503, "busy, try again", {"Retry-After": f"{retry_after:.0f}"}) from exc
    except AuthenticationError as exc:
        raise HTTPException(500, "the server's Binance key was refused") from exc
    except BinanceError as exc:
        raise HTTPException(502, f"Binance did not answer: {type(exc).__name__}") from exc
    return {
        # Decimals as strings: JSON numbers would go through float and lose digits.
        "uni_mmr": str(info.uni_mmr),
        "account_equity": str(info.account_equity),
        "account_status": info.account_status.value,
    }


# --8<-- [end:app]
