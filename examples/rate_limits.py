"""Rate limits: reading the budgets as metrics, counting requests with a hook, sharing one
limiter between clients, and reacting to 429 / 418."""

from __future__ import annotations

from collections import Counter
from typing import Any

from binance_pmpro import (
    IPBannedError,
    PortfolioMarginProClient,
    RateLimitedError,
    RateLimiter,
    RateLimitTimeoutError,
    RequestEvent,
)


# --8<-- [start:metrics]
def budget_metrics(client: PortfolioMarginProClient) -> list[dict[str, Any]]:
    """One row per budget the client has used, ready for a metrics gauge or a log line."""
    return [
        {
            "budget": f"{s.key.kind.value}:{s.key.endpoint or 'api'}",
            "limit": s.limit,  # weight per minute Binance allows
            "effective_limit": s.effective_limit,  # what the limiter lets through (1% less)
            "used": s.used,  # weight counted in the current window, as the limiter sees it
            "remaining": s.remaining,
            "in_flight": s.in_flight,  # requests granted and not yet answered
            "waiting": s.waiting,  # calls queued for weight right now
            "paused_for": s.paused_for,  # seconds left of a 429 pause or a 418 ban
            "banned": s.banned,  # a 418 ban of this IP group is running
            "server_used": s.server_used,  # what Binance's last used-weight header said
        }
        for s in client.rate_limit
    ]


# --8<-- [end:metrics]


# --8<-- [start:hook]
class RequestCounter:
    """A request hook: counts attempts by outcome and keeps Binance's last weight figure.
    Hooks run on the event loop for every HTTP attempt, so they must be quick."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.last_used_weight: int | None = None

    def __call__(self, event: RequestEvent) -> None:
        if event.phase != "end":
            return
        self.outcomes[str(event.status) if event.status is not None else "no answer"] += 1
        if event.used_weight is not None:
            self.last_used_weight = event.used_weight


def client_with_metrics(counter: RequestCounter, **options: Any) -> PortfolioMarginProClient:
    return PortfolioMarginProClient(hooks=[counter], **options)


# --8<-- [end:hook]


# --8<-- [start:shared]
def clients_sharing_one_budget(
    keys: list[tuple[str, str]], **options: Any
) -> list[PortfolioMarginProClient]:
    """Several API keys of one Binance account in one process: Binance counts their weight
    together (per account, per endpoint), so they must draw on one limiter and name the
    account with the same ``account_id``."""
    limiter = RateLimiter()  # Binance's limits: 180,000 UID / 12,000 IP weight per minute
    return [
        PortfolioMarginProClient(
            api_key, api_secret, rate_limiter=limiter, account_id="main-account", **options
        )
        for api_key, api_secret in keys
    ]


# --8<-- [end:shared]


# --8<-- [start:react]
async def read_or_explain(client: PortfolioMarginProClient) -> str:
    """What to do when the budget runs out."""
    try:
        info = await client.account_info(max_wait=5.0)
    except IPBannedError as exc:
        # 418: Binance banned this IP for ignoring 429s. Every call from this IP fails at
        # once until the ban ends; alert a human, stop polling, check what else shares the IP.
        return f"banned for {exc.retry_after} s"
    except RateLimitedError as exc:
        # 429 whose Retry-After did not fit max_wait (a shorter one is waited out and the
        # call sent again for you). Everyone on this budget is paused: slow down.
        return f"rate limited, retry after {exc.retry_after} s"
    except RateLimitTimeoutError as exc:
        # Our own limiter: the weight was not available within max_wait. Nothing was sent.
        return f"over our own budget: would have waited {exc.wait} s"
    return f"uniMMR {info.uni_mmr}"


# --8<-- [end:react]


# --8<-- [start:per-process]
def client_for_worker(workers: int, **options: Any) -> PortfolioMarginProClient:
    """One of ``workers`` processes using one account: each limiter gets its share of the
    account's budget, since the limiters of different processes do not see each other."""
    return PortfolioMarginProClient(uid_limit=180_000 // workers, **options)


# --8<-- [end:per-process]
