"""The decoder's fast path (byte patching of quirks, unknown-enum counter, finiteness sum)
must agree exactly with the slow, field-by-field path on every input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binance_pmpro import DecodeError
from binance_pmpro.decoding import _slow_decode, decode_account_info
from binance_pmpro.models import AccountInfo

AMOUNT_FIELDS = [
    "uniMMR",
    "accountEquity",
    "actualEquity",
    "accountMaintMargin",
    "accountInitialMargin",
    "totalAvailableBalance",
]


def _grouped(value: Decimal) -> str:
    """``value`` with thousands separators in strict groups of three."""
    text = format(value, "f")
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    return sign + f"{int(whole):,}" + (f".{fraction}" if fraction else "")


amounts = st.decimals(
    min_value=Decimal("-1e12"), max_value=Decimal("1e12"), allow_nan=False, places=8
)
spelling = st.sampled_from(["plain", "grouped", "empty"])
statuses = st.sampled_from(["NORMAL", "MARGIN_CALL", "BANKRUPTED", "SOMETHING_NEW", "UNKNOWN"])


@settings(derandomize=True, max_examples=300)
@given(
    values=st.lists(st.tuples(amounts, spelling), min_size=6, max_size=6),
    status=statuses,
    account_type=st.sampled_from(["PM_1", "PM_3", "PM_9"]),
    compact=st.booleans(),
)
def test_fast_path_equals_slow_path(
    values: list[tuple[Decimal, str]], status: str, account_type: str, compact: bool
) -> None:
    doc: dict[str, Any] = {}
    for field, (value, how) in zip(AMOUNT_FIELDS, values, strict=True):
        doc[field] = {"plain": format(value, "f"), "grouped": _grouped(value), "empty": ""}[how]
    doc["accountStatus"] = status
    doc["accountType"] = account_type
    body = json.dumps(doc, separators=(",", ":") if compact else (", ", " : ")).encode()
    fast = decode_account_info(body)
    assert fast == _slow_decode(body, AccountInfo, 200)
    for field, (value, how) in zip(AMOUNT_FIELDS, values, strict=True):
        attr = {
            "uniMMR": fast.uni_mmr,
            "accountEquity": fast.account_equity,
            "actualEquity": fast.actual_equity,
            "accountMaintMargin": fast.account_maint_margin,
            "accountInitialMargin": fast.account_initial_margin,
            "totalAvailableBalance": fast.total_available_balance,
        }[field]
        assert attr == (None if how == "empty" else value)


@pytest.mark.parametrize("spelled", ["NaN", "-nan", "sNaN", "Infinity", "-inf", "INF"])
@pytest.mark.parametrize("field", AMOUNT_FIELDS)
def test_non_finite_amount_anywhere_raises_naming_the_field(spelled: str, field: str) -> None:
    doc = dict.fromkeys(AMOUNT_FIELDS, "1.5")
    doc |= {"accountStatus": "NORMAL", "accountType": "PM_1", field: spelled}
    with pytest.raises(DecodeError) as caught:
        decode_account_info(json.dumps(doc).encode())
    assert caught.value.field == f"$.{field}"


def test_grouping_quirk_in_a_non_amount_string_is_left_alone() -> None:
    doc = dict.fromkeys(AMOUNT_FIELDS, "1,234.5")
    doc |= {"accountStatus": "NORMAL", "accountType": "PM_1", "note": "1,234"}
    info = decode_account_info(json.dumps(doc).encode())
    assert info.uni_mmr == Decimal("1234.5")
