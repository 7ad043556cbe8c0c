"""Thousands separators on the decoder's fast path: the one-separator shortcut, the general
strip, and what is left for the quirk patcher must all decode exactly like the slow path."""

from __future__ import annotations

from decimal import Decimal

import pytest

from _accounts import AMOUNT_FIELDS, account_body
from binance_pmpro import DecodeError
from binance_pmpro.decoding import _slow_decode, decode_account_info
from binance_pmpro.models import AccountInfo, AccountStatus


@pytest.mark.parametrize(
    ("spelled", "value"),
    [
        ("1,234", "1234"),
        ("-1,234.5", "-1234.5"),
        ("+12,345.000001", "12345.000001"),
        ("123,456", "123456"),
        ("1,234,567.25", "1234567.25"),
        ("-12,345,678,901", "-12345678901"),
    ],
)
@pytest.mark.parametrize("field", ["uniMMR", "totalAvailableBalance"])
def test_grouped_amount_compact_decodes_exactly(spelled: str, value: str, field: str) -> None:
    body = account_body(**{field: spelled})
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    got = info.uni_mmr if field == "uniMMR" else info.total_available_balance
    assert got == Decimal(value)
    assert str(got) == value.lstrip("+")


def test_every_amount_grouped_compact_decodes_like_slow_path() -> None:
    body = account_body(**dict.fromkeys(AMOUNT_FIELDS, "9,876,543.21"))
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    assert info.account_equity == Decimal("9876543.21")


def test_number_array_before_grouped_amount_compact_decodes_like_slow_path() -> None:
    # The first comma-digit is in a number array of a field AccountInfo does not have.
    body = account_body({"extra": [1, 234, 5678]}, totalAvailableBalance="122,559.90199491")
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    assert info.total_available_balance == Decimal("122559.90199491")


@pytest.mark.parametrize("bad", ["1,234,56", "1,2345", "12345,678", "1,234,567,"])
def test_second_amount_badly_grouped_compact_raises_naming_it(bad: str) -> None:
    body = account_body(uniMMR="1,234.5", accountEquity=bad)
    with pytest.raises(DecodeError) as caught:
        decode_account_info(body)
    assert caught.value.field == "$.accountEquity"


@pytest.mark.parametrize("spelled", ["NaN", "-Infinity", "sNaN"])
def test_non_finite_next_to_grouped_amount_compact_raises(spelled: str) -> None:
    body = account_body(totalAvailableBalance="122,559.9", actualEquity=spelled)
    with pytest.raises(DecodeError) as caught:
        decode_account_info(body)
    assert caught.value.field == "$.actualEquity"


def test_unknown_status_next_to_grouped_amount_compact_keeps_raw() -> None:
    body = account_body(totalAvailableBalance="122,559.9", accountStatus="BRAND_NEW")
    info = decode_account_info(body)
    assert info.account_status is AccountStatus.UNKNOWN
    assert info.account_status_raw == "BRAND_NEW"
    assert info.total_available_balance == Decimal("122559.9")


def test_literal_unknown_status_compact_keeps_raw() -> None:
    body = account_body(accountStatus="UNKNOWN")
    info = decode_account_info(body)
    assert info.account_status is AccountStatus.UNKNOWN
    assert info.account_status_raw == "UNKNOWN"


@pytest.mark.parametrize("bad", ["1234,567", "12,3456", "1,22"])
def test_badly_grouped_amount_before_a_good_one_compact_raises_naming_it(bad: str) -> None:
    # The first comma-digit is the bad one; a well-grouped string follows it, in a field
    # AccountInfo does not have (so nothing else makes the decode fail).
    body = account_body(uniMMR=bad, note="1,234")
    with pytest.raises(DecodeError) as caught:
        decode_account_info(body)
    assert caught.value.field == "$.uniMMR"
