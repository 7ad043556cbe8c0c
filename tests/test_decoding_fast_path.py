"""The decoder's fast path (byte patching of quirks, unknown-enum counter, finiteness sum)
must agree exactly with the slow, field-by-field path on every input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _accounts import AMOUNT_FIELDS
from binance_pmpro import DecodeError
from binance_pmpro.decoding import _slow_decode, decode_account_info
from binance_pmpro.models import AccountInfo


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


def _account(**extra: str) -> dict[str, Any]:
    doc: dict[str, Any] = dict.fromkeys(AMOUNT_FIELDS, "1.5")
    return doc | {"accountStatus": "NORMAL", "accountType": "PM_1"} | extra


@pytest.mark.parametrize(
    "bad", ["1,23", "1234,567", "12,3456", ",123", "1,234,", "1,234.", "+-1,234", "1,,234"]
)
def test_loosely_grouped_amount_compact_raises_naming_the_field(bad: str) -> None:
    body = json.dumps(_account(totalAvailableBalance=bad), separators=(",", ":")).encode()
    with pytest.raises(DecodeError) as caught:
        decode_account_info(body)
    assert caught.value.field == "$.totalAvailableBalance"


def test_grouped_enum_value_compact_keeps_its_raw_string_exactly() -> None:
    body = json.dumps(_account(accountStatus="1,234"), separators=(",", ":")).encode()
    info = decode_account_info(body)
    assert info.account_status_raw == "1,234"
    assert info == _slow_decode(body, AccountInfo, 200)


def test_raw_companion_key_in_body_compact_matches_slow_path() -> None:
    doc = _account(uniMMR="2,345.5") | {"accountStatus.raw": "9,999"}
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert decode_account_info(body) == _slow_decode(body, AccountInfo, 200)


def test_grouped_strings_in_unknown_fields_compact_decode_like_slow_path() -> None:
    doc = _account(uniMMR="1,234.5", note="7,000", more='say "1,000"')
    doc["numbers"] = [1, 234, 5]  # type: ignore[assignment]
    body = json.dumps(doc, separators=(",", ":")).encode()
    info = decode_account_info(body)
    assert info.uni_mmr == Decimal("1234.5")
    assert info == _slow_decode(body, AccountInfo, 200)


def test_free_text_field_with_grouped_digits_compact_is_kept_verbatim() -> None:
    from binance_pmpro.decoding import ResponseDecoder, _amount_wire_names
    from binance_pmpro.models import Balance

    item = dict.fromkeys(_amount_wire_names(Balance), "0")
    item |= {"asset": "1,000", "totalWalletBalance": "12,345.6", "crossMarginAsset": "2,000"}
    body = json.dumps([item], separators=(",", ":")).encode()
    (balance,) = ResponseDecoder(list[Balance]).decode(body)
    assert balance.asset == "1,000"
    assert balance.total_wallet_balance == Decimal("12345.6")
    assert balance.cross_margin_asset == Decimal("2000")
