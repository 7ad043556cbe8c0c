"""``ClientMetrics``: requests, errors by class, 429s, retries and latency from the client's
hooks, account gauges from watch snapshots, rate-limit gauges, served on loopback and read
back with prometheus_client's own parser."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from binance_pmpro import PortfolioMarginProClient, RateLimitedError
from binance_pmpro.endpoints import ACCOUNT_INFO
from binance_pmpro.metrics import ClientMetrics
from binance_pmpro.retry import RetryPolicy
from binance_pmpro.testing import FakeExchange, FaultKind

pytestmark = pytest.mark.anyio


def scrape(metrics: ClientMetrics) -> dict[str, Any]:
    port = metrics.serve(0)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
    finally:
        metrics.shutdown()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    for s in families[name].samples:
        if s.name.endswith("_created"):
            continue
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


async def test_metrics_count_requests_errors_retries_429s_and_watch_gauges() -> None:
    fake = FakeExchange()
    metrics = ClientMetrics()
    fake.inject(FaultKind.SERVER_ERROR_JSON, path=ACCOUNT_INFO.path)  # retried by the client
    fake.inject(FaultKind.DROP_CONNECTION, path=ACCOUNT_INFO.path)  # retried again
    fake.set_account(uni_mmr="1.25000000", account_status="MARGIN_CALL")
    async with PortfolioMarginProClient(
        fake.demo_api_key,
        fake.demo_api_secret,
        base_url=fake.base_url,
        http_client=fake.http_client(),
        retry=RetryPolicy(max_attempts=5, base_delay=0.0, max_delay=0.0),
        time_offset_ms=0,
        hooks=[metrics.hook],
    ) as client:
        metrics.track(client)
        metrics.track(client)  # idempotent: the hook is not added twice
        async with contextlib.aclosing(client.watch_account(every=0.01)) as watch:
            async for item in watch:
                metrics.observe(item)
                break
        # A 429 last: it pauses the budget (here past max_wait, so it raises).
        fake.inject(FaultKind.RATE_LIMITED, path=ACCOUNT_INFO.path, retry_after=30)
        with pytest.raises(RateLimitedError):
            await client.account_info(max_wait=0)
    families = scrape(metrics)
    assert sample(families, "binance_pmpro_requests", endpoint="account_info", status="200") == 1
    assert sample(families, "binance_pmpro_requests", endpoint="account_info", status="500") == 1
    assert sample(families, "binance_pmpro_requests", endpoint="account_info", status="error") == 1
    errors = {
        s.labels["error"]: s.value
        for s in families["binance_pmpro_request_errors"].samples
        if s.name.endswith("_total")
    }
    assert errors == {"ServerError": 1, "ConnectionLostError": 1, "RateLimitedError": 1}
    assert sample(families, "binance_pmpro_rate_limited", endpoint="account_info") == 1
    assert sample(families, "binance_pmpro_retries", endpoint="account_info") == 2
    histogram = families["binance_pmpro_request_duration_seconds"]
    count = next(s for s in histogram.samples if s.name.endswith("_count"))
    assert count.value == 4
    assert sample(families, "binance_pmpro_account_uni_mmr") == 1.25
    assert sample(families, "binance_pmpro_account_status", status="MARGIN_CALL") == 1
    assert sample(families, "binance_pmpro_account_status", status="NORMAL") == 0
    assert sample(families, "binance_pmpro_watch_events", type="snapshot") == 1
    path = ACCOUNT_INFO.path
    used = sample(families, "binance_pmpro_rate_limit_used_weight", endpoint=path)
    assert used >= 5
    limit = sample(families, "binance_pmpro_rate_limit_limit_weight", endpoint=path)
    remaining = sample(families, "binance_pmpro_rate_limit_remaining_weight", endpoint=path)
    assert limit == 180_000
    assert 0 <= remaining <= limit - used


def test_metrics_own_registry_by_default_two_instances_do_not_collide() -> None:
    first, second = ClientMetrics(), ClientMetrics()
    assert first.registry is not second.registry
    shared = CollectorRegistry()
    ClientMetrics(shared, namespace="a")
    ClientMetrics(shared, namespace="b")
    with pytest.raises(ValueError, match="Duplicated"):
        ClientMetrics(shared, namespace="a")


def test_metrics_serve_twice_raises_and_shutdown_is_idempotent() -> None:
    metrics = ClientMetrics()
    metrics.serve(0)
    try:
        with pytest.raises(RuntimeError, match="already serving"):
            metrics.serve(0)
    finally:
        metrics.shutdown()
    metrics.shutdown()
