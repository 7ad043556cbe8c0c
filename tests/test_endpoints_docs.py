"""The endpoint reference page is generated from the table and must not be stale; the safe
writes guide names every write, and its example (examples/safe_writes.py) works."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from _portfolio import bound_client
from binance_pmpro._reference import endpoint_reference
from binance_pmpro.endpoints import PORTFOLIO_ENDPOINTS
from binance_pmpro.testing import FakeExchange, FaultKind

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_endpoint_reference_page_is_generated_from_the_table() -> None:
    page = (DOCS / "reference" / "endpoints.md").read_text(encoding="utf-8")
    assert page == endpoint_reference(), (
        "docs/reference/endpoints.md is stale: run "
        "python -m binance_pmpro._reference docs/reference/endpoints.md"
    )


def test_endpoint_reference_has_a_row_per_endpoint() -> None:
    page = endpoint_reference()
    for endpoint in PORTFOLIO_ENDPOINTS:
        assert f"| {endpoint.method} | `{endpoint.path}` |" in page
        assert f"`{endpoint.name}()`" in page


def test_safe_writes_guide_names_every_write_and_cap() -> None:
    guide = (DOCS / "guides" / "safe-writes.md").read_text(encoding="utf-8")
    for endpoint in PORTFOLIO_ENDPOINTS:
        if endpoint.is_write:
            assert f"`{endpoint.name}()`" in guide, endpoint.name
            assert endpoint.cli is not None
    for endpoint in PORTFOLIO_ENDPOINTS:
        if endpoint.cap is not None:
            assert f"`{endpoint.name}()`: {endpoint.cap.text.split(' (')[0]}" in guide


# --- examples/safe_writes.py, shown by the safe writes guide ---------------------------------


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_example_safe_writes", ROOT / "examples" / "safe_writes.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_safe_writes_example_repays_once() -> None:
    example = _example()
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        first = await example.repay_once(client)
        second = await example.repay_once(client)
    assert first.startswith("repaid, transaction ")
    assert second == "no loan"
    example.assert_repaid_once(fake)


@pytest.mark.anyio
async def test_safe_writes_example_lost_answer_is_found_repaid() -> None:
    example = _example()
    fake = example.lost_answer_exchange()
    async with bound_client(fake, "in_process", timeout=0.2) as client:
        outcome = await example.repay_once(client)
    assert outcome.startswith("repaid (its answer was lost")
    example.assert_repaid_once(fake)
    assert [r.path for r in fake.requests].count("/sapi/v1/portfolio/repay") == 1


@pytest.mark.anyio
async def test_safe_writes_example_5xx_leaves_the_loan_owed() -> None:
    example = _example()
    fake = FakeExchange()
    fake.inject(FaultKind.SERVER_ERROR_JSON, times=5, path="/sapi/v1/portfolio/repay")
    async with bound_client(fake, "in_process") as client:
        outcome = await example.repay_once(client)
    assert outcome.startswith("still owed 579.45 BUSD: ")
    assert fake.portfolio_state().loan_amount == Decimal("579.45")
