"""Several processes, one account: the rate-limit budgets shared through Redis.

Every process that trades, watches or serves the same account builds its client one of
these ways, pointing at the same Redis. Keys come from the environment as usual
(``BINANCE_API_KEY``, ``BINANCE_API_SECRET``); ``options`` are any other client options.
"""

from __future__ import annotations

import socket
from typing import Any

from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.redis_budget import RedisRateLimiter


# --8<-- [start:one-line]
def shared_client(redis_url: str, account_id: str, **options: Any) -> PortfolioMarginProClient:
    """A client whose budgets live in Redis, shared with every process that does the same."""
    return PortfolioMarginProClient(redis_url=redis_url, account_id=account_id, **options)


# --8<-- [end:one-line]


# --8<-- [start:explicit]
def shared_client_on_this_host(
    redis_url: str, account_id: str, ip_group: str | None = None, **options: Any
) -> PortfolioMarginProClient:
    """The same with the limiter spelled out: the IP budgets are this host's (its egress
    address), and the process refuses to call rather than fall back while Redis is down."""
    limiter = RedisRateLimiter(
        redis_url,
        uid_limit=180_000,  # Binance's limits per minute (the defaults)
        ip_limit=12_000,
        api_limit=6_000,
        strict=True,  # SharedBudgetUnavailableError instead of a local share
    )
    return PortfolioMarginProClient(
        rate_limiter=limiter,
        account_id=account_id,  # the same in every process, for every API key of the account
        ip_group=ip_group or socket.gethostname(),  # one IP budget per egress address
        **options,
    )


# --8<-- [end:explicit]
