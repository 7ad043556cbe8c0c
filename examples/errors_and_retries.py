"""Errors and retries: what each exception means and what to do about it."""

from __future__ import annotations

from typing import Any

from binance_pmpro import (
    NO_RETRY,
    APIError,
    AuthenticationError,
    BinanceError,
    ConfigurationError,
    DecodeError,
    EndpointGoneError,
    InvalidRequestError,
    NotPortfolioMarginError,
    OutcomeUnknownError,
    PortfolioMarginProClient,
    RateLimitedError,
    RateLimitTimeoutError,
    RetryPolicy,
    TimestampError,
    TransportError,
    WAFBlockedError,
)


# --8<-- [start:handle]
async def fetch_and_decide(client: PortfolioMarginProClient) -> str:
    """Read the account and say what the caller should do next. The order of the ``except``
    clauses matters: subclasses before their bases."""
    try:
        info = await client.account_info()
    except ConfigurationError:
        return "fix the settings"  # raised before anything was sent
    except NotPortfolioMarginError:
        return "this account has no Portfolio Margin Pro"  # -21001: asking again won't help
    except AuthenticationError:
        return "check the key: permissions, IP whitelist, right secret"  # -2015, -1022, ...
    except TimestampError:
        return "fix the host clock"  # -1021 even after the client resynchronised once
    except RateLimitedError as exc:
        return f"back off for {exc.retry_after} s"  # 429 (or 418: IPBannedError)
    except RateLimitTimeoutError:
        return "over our own budget: slow down"  # nothing was sent
    except WAFBlockedError:
        return "blocked by Binance's firewall: back off for minutes"  # 403
    except (InvalidRequestError, EndpointGoneError):
        return "a bug or a removed endpoint: do not retry"
    except OutcomeUnknownError:
        # 5xx, read timeout, connection lost after sending: Binance may have executed it.
        # A read is safe to repeat (the client already retried it); after a write, look at
        # the account before sending the write again.
        return "unknown outcome: repeat the read later"
    except TransportError:
        return "network down: no request went out"  # connect errors, pool timeouts
    except DecodeError:
        return "unreadable answer (HTML page, broken JSON): retry later"
    except APIError as exc:
        return f"Binance said {exc.code}: {exc.msg}"  # any other error code
    except BinanceError:
        return "something else from binance-pmpro"
    return f"ok, uniMMR {info.uni_mmr}"


# --8<-- [end:handle]


# --8<-- [start:policies]
def patient_client(**options: Any) -> PortfolioMarginProClient:
    """More attempts and longer backoff for a background job that can wait."""
    policy = RetryPolicy(max_attempts=5, base_delay=0.2, max_delay=5.0, deadline=30.0)
    return PortfolioMarginProClient(retry=policy, **options)


def impatient_client(**options: Any) -> PortfolioMarginProClient:
    """No retries at all: the caller has its own loop and wants every failure at once.
    (A -1021 timestamp error is still resynchronised and sent once more.)"""
    return PortfolioMarginProClient(retry=NO_RETRY, **options)


# --8<-- [end:policies]
