"""The decoder's fast path on Binance's documented example ("122,559.90199491"): the one
separator is recognised during the scan and deleted from a copy of the bytes, and the
decoded Struct goes through a check compiled for its type. Everything must still decode
exactly like the slow path, and every non-finite amount must still be refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from _accounts import AMOUNT_FIELDS, account_body
from binance_pmpro import DecodeError
from binance_pmpro.decoding import ResponseDecoder, _slow_decode, decode_account_info
from binance_pmpro.models import AccountInfo, AccountStatus


@pytest.mark.parametrize("key", ["accountStatus.raw", "accountStatus.ra\\u0077"])
@pytest.mark.parametrize("status", ["NORMAL", "BRAND_NEW"])
def test_grouped_raw_companion_first_compact_decodes_like_slow_path(key: str, status: str) -> None:
    # The first comma-digit of the body is in the raw companion (its key spelled plainly or
    # with an escaped "w"): it must keep "9,999" exactly, as the slow path does.
    body = account_body({"accountStatus.raw": "9,999"}, accountStatus=status)
    body = body.replace(b'"accountStatus.raw"', b'"' + key.encode() + b'"')
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    assert info.account_status_raw == ("9,999" if status == "NORMAL" else "BRAND_NEW")


class _Flow(msgspec.Struct, frozen=True):
    """A flat Struct of non-nullable amounts, one with a wire name of its own."""

    flow: Decimal
    draw7: Decimal = msgspec.field(name="draw7")


@pytest.mark.parametrize(
    ("flow", "draw7"), [("1,234.5", "0"), ("0", "-12,345"), ("1,234.5", "12,345.000001")]
)
def test_grouped_amounts_of_other_flat_struct_compact_decode_like_slow_path(
    flow: str, draw7: str
) -> None:
    body = json.dumps({"flow": flow, "draw7": draw7}, separators=(",", ":")).encode()
    got = ResponseDecoder(_Flow).decode(body)
    assert got == _slow_decode(body, _Flow, 200)
    assert got.flow == Decimal(flow.replace(",", ""))
    assert got.draw7 == Decimal(draw7.replace(",", ""))


@pytest.mark.parametrize(
    "spelled", ["NaN", "-inf", "sNaN", " Infinity", "+Inf ", "\\u004eaN", "-\\u0069nfinity"]
)
@pytest.mark.parametrize("field", AMOUNT_FIELDS)
def test_non_finite_amount_beside_documented_separator_compact_raises(
    spelled: str, field: str
) -> None:
    grouped = "actualEquity" if field == "totalAvailableBalance" else "totalAvailableBalance"
    plain = account_body(**{grouped: "122,559.90199491"})
    body = plain.replace(f'"{field}":"1.5"'.encode(), f'"{field}":"{spelled}"'.encode())
    assert body != plain
    with pytest.raises(DecodeError) as caught:
        decode_account_info(body)
    assert caught.value.field == f"$.{field}"


def test_unknown_keys_spelling_inf_and_nan_compact_decode_unchanged() -> None:
    extra = {"infinity": "1", "NaN": "x", "snan": [1, 234], "inf,1": "2,345"}
    body = account_body(extra, totalAvailableBalance="122,559.90199491")
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    assert info.total_available_balance == Decimal("122559.90199491")


@pytest.mark.parametrize("spaced", [b'": "122,559.9"', b'" :"122,559.9"', b'"\n:\t"122,559.9"'])
def test_documented_separator_in_non_compact_member_decodes(spaced: bytes) -> None:
    # Whitespace around the colon takes the general strip instead of the shortcut.
    body = account_body(totalAvailableBalance="122,559.9").replace(b'":"122,559.9"', spaced)
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    assert info.total_available_balance == Decimal("122559.9")


class _Leg(msgspec.Struct, frozen=True):
    """A nested item with an amount and an open enum with its raw companion."""

    qty: Decimal | None
    status: AccountStatus = msgspec.field(name="status")
    status_raw: str | None = msgspec.field(default=None, name="status.raw")


class _Book(msgspec.Struct, frozen=True):
    """A Struct holding a list of nested Structs and an optional one."""

    total: Decimal
    legs: list[_Leg]
    best: _Leg | None = None


def _book(**leg: Any) -> bytes:
    doc = {
        "total": "1,234.5",
        "legs": [{"qty": "1", "status": "NORMAL"}, {"qty": "2", "status": "NORMAL"} | leg],
        "best": {"qty": "3", "status": "MARGIN_CALL"},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def test_nested_structs_compact_decode_like_slow_path() -> None:
    body = _book(qty="")
    got = ResponseDecoder(_Book).decode(body)
    assert got == _slow_decode(body, _Book, 200)
    assert got.total == Decimal("1234.5")
    assert got.legs[1].qty is None


@pytest.mark.parametrize("spelled", ["NaN", "-Infinity", "sNaN"])
def test_non_finite_amount_in_nested_item_raises_naming_it(spelled: str) -> None:
    with pytest.raises(DecodeError) as caught:
        ResponseDecoder(_Book).decode(_book(qty=spelled))
    assert caught.value.field == "$.legs[1].qty"


@pytest.mark.parametrize("leg", [{"status": "BRAND_NEW"}, {"status.raw": "x"}])
def test_unknown_enum_or_raw_key_in_nested_item_decodes_like_slow_path(
    leg: dict[str, str],
) -> None:
    body = _book(**leg)
    got = ResponseDecoder(_Book).decode(body)
    assert got == _slow_decode(body, _Book, 200)
    assert got.legs[1].status_raw == ("BRAND_NEW" if "status" in leg else "x")
