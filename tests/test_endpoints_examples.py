"""Every documented response example (variants included) decodes into its typed response,
quirks and all, and FakeExchange's answers have the documented shapes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from _portfolio import (
    EXAMPLES,
    SAMPLE_PARAMS,
    bound_client,
    example_endpoint,
    example_files,
    load_example,
)
from binance_pmpro.endpoints import PORTFOLIO_ENDPOINTS, Endpoint
from binance_pmpro.models import (
    AccountStatus,
    AccountType,
    Balance,
    MarginCallLevel,
    RepayHistoryPage,
    SpanAccountInfo,
    TransactionResult,
)
from binance_pmpro.portfolio import decode_response
from binance_pmpro.testing import FakeExchange

FILES = example_files()

needs_examples = pytest.mark.skipif(
    not FILES, reason=f"{EXAMPLES} not found: the shared reference lives beside the repository"
)


def _read(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


@needs_examples
def test_every_live_endpoint_has_an_example() -> None:
    documented = {example_endpoint(path).name for path in FILES}
    assert documented == {endpoint.name for endpoint in PORTFOLIO_ENDPOINTS}
    assert len([p for p in FILES if p.parent == EXAMPLES]) == 24


@needs_examples
@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_decodes_into_typed_response(path: Path) -> None:
    endpoint = example_endpoint(path)
    result = decode_response(endpoint, path.read_bytes())
    plain = load_example(path)
    items = result if isinstance(result, list) else [result]
    assert len(items) == (len(plain) if isinstance(plain, list) else 1)


@needs_examples
def test_balance_variant_empty_amount_is_none_not_zero() -> None:
    [row] = decode_response(
        example_endpoint(Path("GET-v1_portfolio_balance.json")),
        _read("variants/GET-v1_portfolio_balance.zh-CN-page.json"),
    )
    assert isinstance(row, Balance)
    assert row.cm_unrealized_pnl is None
    assert row.cm_wallet_balance == Decimal("23.72469206")
    assert row.update_time_ms == 1617939110373
    assert row.update_time.isoformat() == "2021-04-09T03:31:50.373000+00:00"


@needs_examples
def test_margin_call_level_not_set_variant_is_none() -> None:
    endpoint = example_endpoint(Path("GET-v1_portfolio_margin-call-level.json"))
    unset = decode_response(
        endpoint, _read("variants/GET-v1_portfolio_margin-call-level.not-set.json")
    )
    assert unset == MarginCallLevel(margin_call_level=None)
    level = decode_response(endpoint, _read("GET-v1_portfolio_margin-call-level.json"))
    assert level.margin_call_level == Decimal("1.67354637")


@needs_examples
def test_repay_tran_id_above_2_53_is_exact() -> None:
    endpoint = example_endpoint(Path("POST-v1_portfolio_repay.json"))
    result = decode_response(endpoint, _read("POST-v1_portfolio_repay.json"))
    assert result == TransactionResult(tran_id=58203331886213504)
    assert result.tran_id > 2**53
    rounded = decode_response(endpoint, _read("variants/POST-v1_portfolio_repay.catalog-page.json"))
    assert rounded.tran_id == 58203331886213500


@needs_examples
def test_span_account_has_its_risk_units_and_pm3() -> None:
    endpoint = example_endpoint(Path("GET-v2_portfolio_account.json"))
    info = decode_response(endpoint, _read("GET-v2_portfolio_account.json"))
    assert isinstance(info, SpanAccountInfo)
    assert [(u.asset, u.uni_maintain_usd) for u in info.risk_unit_mm_list] == [
        ("BTC", Decimal("23.72469206"))
    ]
    assert (info.account_status, info.account_type) == (AccountStatus.NORMAL, AccountType.PM_3)
    assert info.margin_mm == Decimal("0.00000000")


@needs_examples
def test_repay_history_total_counts_all_pages_not_rows() -> None:
    endpoint = example_endpoint(Path("GET-v1_portfolio_pmloan-history.json"))
    page = decode_response(endpoint, _read("GET-v1_portfolio_pmloan-history.json"))
    assert isinstance(page, RepayHistoryPage)
    assert (page.total, len(page.rows)) == (3, 2)
    assert page.rows[0].amount == Decimal("404.80294503")


@needs_examples
def test_account_example_thousands_separator_decodes() -> None:
    endpoint = example_endpoint(Path("GET-v1_portfolio_account.json"))
    info = decode_response(endpoint, _read("GET-v1_portfolio_account.json"))
    assert info.total_available_balance == Decimal("122559.90199491")


def test_balance_bare_object_decodes_as_one_item_list() -> None:
    endpoint = example_endpoint(Path("GET-v1_portfolio_balance.json"))
    body = json.dumps(
        {
            "asset": "BTC",
            "totalWalletBalance": "1",
            "crossMarginAsset": "1",
            "crossMarginBorrowed": "0",
            "crossMarginFree": "1",
            "crossMarginInterest": "0",
            "crossMarginLocked": "0",
            "umWalletBalance": "0",
            "umUnrealizedPNL": "0",
            "cmWalletBalance": "0",
            "cmUnrealizedPNL": "",
            "updateTime": 0,
        }
    ).encode()
    [row] = decode_response(endpoint, body)
    assert (row.asset, row.cm_unrealized_pnl, row.option_equity) == ("BTC", None, None)


# --- FakeExchange answers in the documented shapes ------------------------------------------


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


@needs_examples
@pytest.mark.anyio
@pytest.mark.parametrize("endpoint", PORTFOLIO_ENDPOINTS, ids=lambda e: e.name)
async def test_fake_default_answer_has_a_documented_shape(endpoint: Endpoint) -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        body = await client.call_raw(endpoint, SAMPLE_PARAMS.get(endpoint.name, {}))
    documented = [_shape(load_example(p)) for p in FILES if example_endpoint(p) is endpoint]
    assert _shape(json.loads(body)) in documented
