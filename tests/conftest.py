"""Shared pytest fixtures for the binance-pmpro test suite."""

from __future__ import annotations

import os

import pytest

# A real redis-server for the shared-budget tests (skips loudly, or fails under
# BINANCE_PMPRO_REQUIRE_REDIS=1, where none can be started).
from _redis import killable_redis, redis_session_url, redis_url  # noqa: F401

RUN_SLOW_ENV = "BINANCE_PMPRO_RUN_SLOW"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on both asyncio and trio."""
    return str(request.param)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help=f"run tests marked slow (also: {RUN_SLOW_ENV}=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.slow`` tests unless asked for with --run-slow or the env var."""
    if config.getoption("--run-slow") or os.environ.get(RUN_SLOW_ENV, "") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason=f"slow: run with --run-slow or {RUN_SLOW_ENV}=1")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
