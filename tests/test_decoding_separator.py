"""The one-separator shortcut of the decoder's fast path ("122,559.90199491", Binance's
documented example): it recognises the separator during the scan and leaves out the values
of keys ending in "w", so the raw companions of open enums ("<name>.raw") need no look
after the decode. Everything must still decode exactly like the slow path."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from binance_pmpro import DecodeError
from binance_pmpro.decoding import ResponseDecoder, _slow_decode, decode_account_info
from binance_pmpro.models import AccountInfo

AMOUNT_FIELDS = [
    "uniMMR",
    "accountEquity",
    "actualEquity",
    "accountMaintMargin",
    "accountInitialMargin",
    "totalAvailableBalance",
]


def _body(extra_first: dict[str, Any] | None = None, **amounts: str) -> bytes:
    doc: dict[str, Any] = dict(extra_first or {})
    doc |= dict.fromkeys(AMOUNT_FIELDS, "1.5")
    doc |= {"accountStatus": "NORMAL", "accountType": "PM_1"} | amounts
    return json.dumps(doc, separators=(",", ":")).encode()


@pytest.mark.parametrize("key", ["accountStatus.raw", "accountStatus.ra\\u0077"])
@pytest.mark.parametrize("status", ["NORMAL", "BRAND_NEW"])
def test_grouped_raw_companion_first_compact_decodes_like_slow_path(key: str, status: str) -> None:
    # The first comma-digit of the body is in the raw companion (its key spelled plainly or
    # with an escaped "w"): it must keep "9,999" exactly, as the slow path does.
    body = _body({"accountStatus.raw": "9,999"}, accountStatus=status)
    body = body.replace(b'"accountStatus.raw"', b'"' + key.encode() + b'"')
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    assert info.account_status_raw == ("9,999" if status == "NORMAL" else "BRAND_NEW")


class _Flow(msgspec.Struct, frozen=True):
    """Amounts whose wire names end in "w" and "7", which the shortcut leaves out."""

    flow: Decimal
    draw7: Decimal = msgspec.field(name="draw7")


@pytest.mark.parametrize(
    ("flow", "draw7"), [("1,234.5", "0"), ("0", "-12,345"), ("1,234.5", "12,345.000001")]
)
def test_grouped_amount_with_key_ending_in_w_or_7_compact_still_decodes(
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
    plain = _body(**{grouped: "122,559.90199491"})
    body = plain.replace(f'"{field}":"1.5"'.encode(), f'"{field}":"{spelled}"'.encode())
    assert body != plain
    with pytest.raises(DecodeError) as caught:
        decode_account_info(body)
    assert caught.value.field == f"$.{field}"


def test_unknown_keys_spelling_inf_and_nan_compact_decode_unchanged() -> None:
    extra = {"infinity": "1", "NaN": "x", "snan": [1, 234], "inf,1": "2,345"}
    body = _body(extra, totalAvailableBalance="122,559.90199491")
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    assert info.total_available_balance == Decimal("122559.90199491")


@pytest.mark.parametrize("spaced", [b'": "122,559.9"', b'" :"122,559.9"', b'"\n:\t"122,559.9"'])
def test_documented_separator_in_non_compact_member_decodes(spaced: bytes) -> None:
    # Whitespace around the colon takes the general strip instead of the shortcut.
    body = _body(totalAvailableBalance="122,559.9").replace(b'":"122,559.9"', spaced)
    info = decode_account_info(body)
    assert info == _slow_decode(body, AccountInfo, 200)
    assert info.total_available_balance == Decimal("122559.9")
