"""The retry policy: which failures are worth another attempt, and how long to wait. Pure.

Only what is safe is retried:

- a request that provably never left (connect error, connect/pool timeout): any endpoint;
- an "outcome unknown" failure (5xx, -1006/-1007, read timeout, connection lost after
  sending): only idempotent endpoints (reads); a write may have been executed, so the
  caller gets the error and must check the account before sending it again;
- ``-1021`` (timestamp outside ``recvWindow``): once, after resynchronising the clock — the
  client handles that itself, whatever this policy says;
- never other 4xx answers, and never 429/418: those belong to the rate limiter, which pauses
  every caller of the budget instead of letting each retry blindly.

Every retry waits for rate-limit weight again and is signed again with a fresh timestamp.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import (
    BinanceError,
    ConnectError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    TransportError,
)

__all__ = ["NO_RETRY", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call retries failed attempts: capped exponential backoff with full jitter.

    The wait before retry ``n`` (1-based) is uniform in ``[0, min(max_delay, base_delay *
    2 ** (n - 1))]`` seconds; no retry starts later than ``deadline`` seconds after the call
    began (its backoff included).
    """

    max_attempts: int = 3
    """Attempts in total, the first included (1 = never retry)."""
    base_delay: float = 0.05
    """Seconds; the backoff cap of the first retry."""
    max_delay: float = 1.0
    """Seconds; no single backoff is longer."""
    deadline: float | None = 15.0
    """Seconds from the start of the call after which no new attempt starts (None: no limit)."""
    retry_server_errors: bool = True
    """Retry 5xx answers and Binance's "execution status unknown" codes on reads."""
    retry_transport_errors: bool = True
    """Retry connect failures (any endpoint) and lost connections/read timeouts (reads)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")

    def should_retry(self, error: BinanceError, *, attempt: int, idempotent: bool) -> bool:
        """Whether ``error``, raised by attempt number ``attempt`` (1-based), deserves another."""
        if attempt >= self.max_attempts or isinstance(error, RateLimitedError):
            return False
        if isinstance(error, TransportError):
            if not self.retry_transport_errors:
                return False
            if isinstance(error, ConnectError) and not error.sent:
                return True
            return idempotent
        if isinstance(error, ServerError):
            return self.retry_server_errors and idempotent
        return isinstance(error, OutcomeUnknownError) and idempotent and self.retry_server_errors

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (full jitter)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or _rng).uniform(0.0, cap)


NO_RETRY = RetryPolicy(max_attempts=1)
"""A policy that never retries (``-1021`` is still resynchronised and retried once)."""

_rng = random.Random()  # noqa: S311 - jitter, not cryptography
