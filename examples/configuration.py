"""Every client option in one place, with the reason to change each."""

from __future__ import annotations

from typing import Any

import httpx

from binance_pmpro import PortfolioMarginProClient, RetryPolicy, Timeouts


# --8<-- [start:options]
def configured_client(**credentials: Any) -> PortfolioMarginProClient:
    return PortfolioMarginProClient(
        **credentials,  # api_key= with api_secret= or private_key= (else the environment)
        base_url="https://api.binance.com",  # or api1..api4.binance.com
        recv_window=5_000,  # ms a signed request stays valid at Binance (1..60,000)
        timeout=Timeouts(connect=3.0, read=10.0, write=10.0, pool=5.0),  # per phase, s
        call_timeout=15.0,  # s for a whole call: rate-limit waits and retries included
        max_wait=10.0,  # s a call may wait for rate-limit weight, a 429 pause included
        retry=RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=1.0, deadline=15.0),
        uid_limit=180_000,  # weight per minute of the account's UID budget
        ip_limit=12_000,  # weight per minute of an IP budget
        account_id=None,  # name the account when several API keys share its budget
        transport="auto",  # "fast" (asyncio + httptools), "httpx", or auto-pick
        max_connections=100,  # keep-alive pool size
        time_sync=True,  # follow Binance's clock (GET /api/v3/time every 5 min)
        time_sync_interval=300.0,
    )


# --8<-- [end:options]


# --8<-- [start:proxy]
def client_behind_proxy(proxy_url: str, **credentials: Any) -> PortfolioMarginProClient:
    """Your own httpx client: proxies, custom certificates, event hooks. The SDK uses it as
    it is and never closes it; close it yourself after the SDK client."""
    http_client = httpx.AsyncClient(proxy=proxy_url)  # the SDK applies its own timeouts
    return PortfolioMarginProClient(**credentials, http_client=http_client)


# --8<-- [end:proxy]
