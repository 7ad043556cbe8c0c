"""The retry policy's decisions: only what is safe, within bounds."""

from __future__ import annotations

import random

import pytest

from binance_pmpro import errors
from binance_pmpro.retry import NO_RETRY, RetryPolicy

POLICY = RetryPolicy(max_attempts=3)


def _api(cls: type[errors.APIError], status: int, code: int | None) -> errors.APIError:
    return cls(status, code, "msg", {})


@pytest.mark.parametrize(
    "error",
    [
        errors.ConnectError("refused"),
        errors.ConnectTimeoutError("slow connect"),
        errors.PoolTimeoutError("pool full"),
    ],
)
def test_should_retry_unsent_failure_retries_reads_and_writes(error: errors.BinanceError) -> None:
    assert POLICY.should_retry(error, attempt=1, idempotent=True)
    assert POLICY.should_retry(error, attempt=1, idempotent=False)


@pytest.mark.parametrize(
    "error",
    [
        errors.ReadTimeoutError("no answer"),
        errors.ConnectionLostError("reset"),
        _api(errors.ServerError, 503, None),
        _api(errors.ServerError, 200, -1007),
    ],
)
def test_should_retry_outcome_unknown_retries_reads_only(error: errors.BinanceError) -> None:
    assert POLICY.should_retry(error, attempt=1, idempotent=True)
    assert not POLICY.should_retry(error, attempt=1, idempotent=False)


@pytest.mark.parametrize(
    "error",
    [
        _api(errors.InvalidRequestError, 400, -1102),
        _api(errors.AuthenticationError, 401, -2015),
        _api(errors.InvalidSignatureError, 400, -1022),
        _api(errors.TimestampError, 400, -1021),
        errors.RateLimitedError(429, -1003, "slow down", {}, retry_after=3),
        errors.IPBannedError(418, -1003, "banned", {}, retry_after=120),
        errors.DecodeError("bad json"),
    ],
)
def test_should_retry_client_errors_and_rate_limits_never(error: errors.BinanceError) -> None:
    assert not POLICY.should_retry(error, attempt=1, idempotent=True)


def test_should_retry_stops_at_max_attempts() -> None:
    error = errors.ConnectError("refused")
    assert POLICY.should_retry(error, attempt=2, idempotent=True)
    assert not POLICY.should_retry(error, attempt=3, idempotent=True)
    assert not NO_RETRY.should_retry(error, attempt=1, idempotent=True)


def test_should_retry_switches_are_honoured() -> None:
    policy = RetryPolicy(retry_server_errors=False, retry_transport_errors=False)
    assert not policy.should_retry(_api(errors.ServerError, 502, None), attempt=1, idempotent=True)
    assert not policy.should_retry(errors.ConnectError("x"), attempt=1, idempotent=True)


def test_backoff_full_jitter_stays_within_capped_exponential() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=0.5)
    rng = random.Random(7)
    for attempt, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (10, 0.5)]:
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # jitter spans the whole range, not a fixed value


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"max_delay": -1}])
def test_retry_policy_invalid_settings_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be >="):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
