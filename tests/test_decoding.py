"""Decoding response bodies into AccountInfo: exact decimals, Binance's documented quirks,
typed errors naming the field, and safe excerpts of bodies that are not JSON."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import binance_pmpro
from binance_pmpro.decoding import ResponseDecoder, decode_account_info
from binance_pmpro.errors import (
    APIError,
    AuthenticationError,
    DecodeError,
    InvalidSignatureError,
    NotPortfolioMarginError,
)
from binance_pmpro.models import AccountInfo, AccountStatus, AccountType, ServerTime

DATA = Path(__file__).parent / "data" / "pmpro-examples"
# The project's reference examples live beside the checkout (../shared/reference/...);
# a fresh clone has only the committed copies in tests/data.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pmpro-examples"
ACCOUNT_EXAMPLE_NAMES = ["GET-v1_portfolio_account.json"]

# The documentation's response example, byte for byte as Binance shows it (space before the
# colon included).
DOC_EXAMPLE = b"""{
    "uniMMR": "5167.92171923",
    "accountEquity": "122607.35137903",
    "actualEquity": "142607.35137903",
    "accountMaintMargin": "23.72469206",
    "accountInitialMargin": "47.44938412",
    "totalAvailableBalance" : "122,559.90199491",
    "accountStatus": "NORMAL",
    "accountType": "PM_1"
}"""

AMOUNT_FIELDS = {
    "uniMMR": "uni_mmr",
    "accountEquity": "account_equity",
    "actualEquity": "actual_equity",
    "accountMaintMargin": "account_maint_margin",
    "accountInitialMargin": "account_initial_margin",
    "totalAvailableBalance": "total_available_balance",
}
REQUIRED_FIELDS = ["uniMMR", "accountEquity", "actualEquity", "accountMaintMargin"]


def _body(**changes: Any) -> bytes:
    """The doc example with fields replaced; a value of ``...`` removes the field."""
    doc: dict[str, Any] = json.loads(DOC_EXAMPLE)
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def _assert_doc_example(info: AccountInfo) -> None:
    expected = {
        "uni_mmr": "5167.92171923",
        "account_equity": "122607.35137903",
        "actual_equity": "142607.35137903",
        "account_maint_margin": "23.72469206",
        "account_initial_margin": "47.44938412",
        "total_available_balance": "122559.90199491",
    }
    for name, text in expected.items():
        value = getattr(info, name)
        assert type(value) is Decimal, name
        assert value == Decimal(text), name
        assert str(value) == text, name
    assert info.account_status is AccountStatus.NORMAL
    assert info.account_type is AccountType.PM_1
    assert info.account_status_raw is None
    assert info.account_type_raw is None


# --- the documented example -------------------------------------------------------------------


def test_decode_account_info_doc_example_every_field_exact() -> None:
    info = decode_account_info(DOC_EXAMPLE)
    _assert_doc_example(info)
    assert info.total_available_balance == Decimal("122559.90199491")
    assert info == AccountInfo(
        uni_mmr=Decimal("5167.92171923"),
        account_equity=Decimal("122607.35137903"),
        actual_equity=Decimal("142607.35137903"),
        account_maint_margin=Decimal("23.72469206"),
        account_initial_margin=Decimal("47.44938412"),
        total_available_balance=Decimal("122559.90199491"),
        account_status=AccountStatus.NORMAL,
        account_type=AccountType.PM_1,
    )


@pytest.mark.parametrize("name", ACCOUNT_EXAMPLE_NAMES)
def test_decode_account_info_committed_example_file_exact(name: str) -> None:
    _assert_doc_example(decode_account_info((DATA / name).read_bytes()))


@pytest.mark.parametrize("name", ACCOUNT_EXAMPLE_NAMES)
def test_decode_account_info_shared_reference_example_exact_and_same_as_copy(name: str) -> None:
    source = SHARED / name
    if not source.exists():
        pytest.skip("the shared reference examples are not beside this checkout")
    assert source.read_bytes() == (DATA / name).read_bytes()
    _assert_doc_example(decode_account_info(source.read_bytes()))


def test_decode_account_info_exported_from_package_root() -> None:
    assert binance_pmpro.decode_account_info is decode_account_info
    _assert_doc_example(binance_pmpro.decode_account_info(DOC_EXAMPLE))


# --- thousands separators: strict groups of three ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("122,559.90199491", "122559.90199491"),
        ("1,234,567", "1234567"),
        ("-1,234.5", "-1234.5"),
        ("999,999,999,999.000000001", "999999999999.000000001"),
    ],
)
def test_decode_amount_thousands_groups_of_three_accepted(text: str, expected: str) -> None:
    info = decode_account_info(_body(totalAvailableBalance=text))
    assert info.total_available_balance == Decimal(expected)
    assert str(info.total_available_balance) == expected


@pytest.mark.parametrize(
    "text", ["1,22", "12,34,567", "1234,567", ",123", "1,234.", "1,,234", "1.234,56", "1,2345"]
)
def test_decode_amount_bad_thousands_grouping_raises_naming_field(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_account_info(_body(totalAvailableBalance=text))
    assert info.value.field == "$.totalAvailableBalance"
    assert "$.totalAvailableBalance" in str(info.value)


def test_decode_amount_thousands_in_required_field_accepted() -> None:
    info = decode_account_info(_body(uniMMR="5,167.92171923"))
    assert info.uni_mmr == Decimal("5167.92171923")


# --- empty and missing ---------------------------------------------------------------------


@pytest.mark.parametrize(("wire", "attr"), AMOUNT_FIELDS.items())
def test_decode_amount_empty_string_gives_none(wire: str, attr: str) -> None:
    info = decode_account_info(_body(**{wire: ""}))
    assert getattr(info, attr) is None
    assert info.account_equity is not None or wire == "accountEquity"


def test_decode_ignored_fields_missing_give_none() -> None:
    info = decode_account_info(_body(accountInitialMargin=..., totalAvailableBalance=...))
    assert info.account_initial_margin is None
    assert info.total_available_balance is None
    assert info.uni_mmr == Decimal("5167.92171923")


@pytest.mark.parametrize("wire", [*REQUIRED_FIELDS, "accountStatus", "accountType"])
def test_decode_required_field_missing_raises_naming_field(wire: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_account_info(_body(**{wire: ...}))
    assert info.value.field == f"$.{wire}"
    assert wire in str(info.value)


def test_decode_amount_json_null_gives_none_like_empty_string() -> None:
    # Pinned behaviour: an explicit null is treated like Binance's "" (no value), not an error.
    assert decode_account_info(_body(accountEquity=None)).account_equity is None


# --- malformed amounts ---------------------------------------------------------------------


BAD_AMOUNTS = [
    pytest.param("NaN", id="nan"),
    pytest.param("-NaN", id="neg-nan"),
    pytest.param("sNaN", id="snan"),
    pytest.param("Infinity", id="infinity"),
    pytest.param("-Infinity", id="neg-infinity"),
    pytest.param("inf", id="inf"),
    pytest.param("abc", id="abc"),
    pytest.param("null", id="null-text"),
    pytest.param("1.5\u0000", id="nul-char-in-string"),
    pytest.param("12\u00003", id="nul-char-inside"),
    pytest.param("1.2.3", id="two-points"),
    pytest.param("0x10", id="hex"),
    pytest.param("1,22", id="bad-grouping"),
    pytest.param(True, id="json-true"),
    pytest.param(False, id="json-false"),
    pytest.param([], id="json-array"),
    pytest.param({}, id="json-object"),
]


@pytest.mark.parametrize("bad", BAD_AMOUNTS)
@pytest.mark.parametrize("wire", list(AMOUNT_FIELDS))
def test_decode_amount_malformed_raises_naming_field(wire: str, bad: object) -> None:
    with pytest.raises(DecodeError) as info:
        decode_account_info(_body(**{wire: bad}))
    assert info.value.field == f"$.{wire}"
    assert f"$.{wire}" in str(info.value)


def test_decode_amount_malformed_never_silently_zero_or_float() -> None:
    for bad in ("NaN", "", "0,00"):
        try:
            info = decode_account_info(_body(uniMMR=bad))
        except DecodeError:
            continue
        assert info.uni_mmr is None  # only "" decodes, and to None, not 0


# --- exactness --------------------------------------------------------------------------------


HUGE = "123456789012345.678901234567890"  # 30 significant digits, beyond float and context


def test_decode_amount_thirty_significant_digits_kept_fast_path() -> None:
    info = decode_account_info(_body(accountEquity=HUGE))
    assert info.account_equity == Decimal(HUGE)
    assert str(info.account_equity) == HUGE


def test_decode_amount_thirty_significant_digits_kept_slow_path() -> None:
    # The thousands separator elsewhere forces the normalising path.
    info = decode_account_info(_body(accountEquity=HUGE, uniMMR="1,000.5"))
    assert str(info.account_equity) == HUGE
    assert info.uni_mmr == Decimal("1000.5")


@pytest.mark.parametrize("force_slow_path", [False, True], ids=["fast", "slow"])
def test_decode_amount_json_number_kept_exact_never_via_float(force_slow_path: bool) -> None:
    body = _body(uniMMR="" if force_slow_path else "1")
    body = body.replace(b'"122607.35137903"', b"0.30000000000000004441")
    body = body.replace(b'"142607.35137903"', b"12345678901234567890.123456789")
    info = decode_account_info(body)
    assert str(info.account_equity) == "0.30000000000000004441"
    assert str(info.actual_equity) == "12345678901234567890.123456789"


@settings(derandomize=True, deadline=None, max_examples=300)
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decode_amount_any_decimal_string_round_trips_exactly(value: Decimal) -> None:
    for text in {str(value), format(value, "f")}:
        info = decode_account_info(_body(accountEquity=text))
        assert info.account_equity == value
        assert str(info.account_equity) == str(Decimal(text))


@settings(derandomize=True, deadline=None, max_examples=200)
@given(
    st.decimals(
        min_value=Decimal("-1e15"),
        max_value=Decimal("1e15"),
        allow_nan=False,
        allow_infinity=False,
        places=8,
    )
)
def test_decode_amount_thousands_grouped_decimal_round_trips_exactly(value: Decimal) -> None:
    grouped = format(value, ",f")
    info = decode_account_info(_body(totalAvailableBalance=grouped))
    assert info.total_available_balance == value
    assert info.total_available_balance.as_tuple() == value.as_tuple()


# --- enums ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [s for s in AccountStatus if s is not AccountStatus.UNKNOWN])
def test_decode_known_account_status_raw_is_none(status: AccountStatus) -> None:
    info = decode_account_info(_body(accountStatus=status.value))
    assert info.account_status is status
    assert info.account_status_raw is None


@pytest.mark.parametrize("kind", [t for t in AccountType if t is not AccountType.UNKNOWN])
def test_decode_known_account_type_raw_is_none(kind: AccountType) -> None:
    info = decode_account_info(_body(accountType=kind.value))
    assert info.account_type is kind
    assert info.account_type_raw is None


def test_decode_unknown_enum_values_give_unknown_with_raw_kept() -> None:
    info = decode_account_info(_body(accountStatus="PARTIAL_FREEZE", accountType="PM_9"))
    assert info.account_status is AccountStatus.UNKNOWN
    assert info.account_status_raw == "PARTIAL_FREEZE"
    assert info.account_type is AccountType.UNKNOWN
    assert info.account_type_raw == "PM_9"
    assert info.uni_mmr == Decimal("5167.92171923")


def test_decode_literal_unknown_enum_value_keeps_raw() -> None:
    info = decode_account_info(_body(accountStatus="UNKNOWN"))
    assert info.account_status is AccountStatus.UNKNOWN
    assert info.account_status_raw == "UNKNOWN"


def test_decode_unknown_enum_with_quirky_amount_both_handled() -> None:
    info = decode_account_info(_body(accountType="PM_4", uniMMR=""))
    assert info.account_type is AccountType.UNKNOWN
    assert info.account_type_raw == "PM_4"
    assert info.uni_mmr is None
    assert info.total_available_balance == Decimal("122559.90199491")


@pytest.mark.parametrize("wire", ["accountStatus", "accountType"])
@pytest.mark.parametrize("bad", [5, None, True, ["NORMAL"]])
def test_decode_enum_not_a_string_raises_naming_field(wire: str, bad: object) -> None:
    with pytest.raises(DecodeError) as info:
        decode_account_info(_body(**{wire: bad}))
    assert info.value.field == f"$.{wire}"


# --- unknown fields ---------------------------------------------------------------------------


def test_decode_unknown_extra_fields_ignored() -> None:
    body = _body(
        newField="x", riskUnitMMList=[{"asset": "USDT", "uniMaintainUsd": "1"}], nested={"a": 1}
    )
    _assert_doc_example(decode_account_info(body))


# --- bodies that are not the expected JSON ------------------------------------------------------


NOT_JSON = [
    pytest.param(
        b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad "
        b"Gateway</h1></center>\n</body>\n</html>\n",
        "HTML",
        id="html",
    ),
    pytest.param(DOC_EXAMPLE[:60], "truncated", id="truncated"),
    pytest.param(b"", "truncated", id="empty"),
    pytest.param(b"   \n", "truncated", id="whitespace"),
    pytest.param(b'{"uniMMR": "1",}', "malformed", id="trailing-comma"),
]


@pytest.mark.parametrize(("body", "word"), NOT_JSON)
def test_decode_not_json_raises_decode_error_with_safe_excerpt(body: bytes, word: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_account_info(body)
    err = info.value
    assert word in str(err)
    assert err.status == 200
    assert err.field is None
    assert len(err.excerpt) <= 203
    assert "\n" not in err.excerpt
    assert err.excerpt == " ".join(body.decode().split())[:200]


@pytest.mark.parametrize("body", [b"[]", b'[{"uniMMR": "1"}]', b'"text"', b"42", b"null"], ids=str)
def test_decode_wrong_json_shape_raises_decode_error_with_excerpt(body: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_account_info(body)
    assert info.value.excerpt == body.decode()
    assert "shape" in str(info.value)


def test_decode_long_html_excerpt_truncated_and_signature_redacted() -> None:
    body = (
        b"<html><body><p>Blocked: GET /sapi/v1/portfolio/account?timestamp=1&signature="
        + b"ab" * 32
        + b" </p>"
        + b"x" * 5000
        + b"</body></html>"
    )
    with pytest.raises(DecodeError) as info:
        decode_account_info(body)
    message = str(info.value)
    assert "ab" * 32 not in message
    assert "signature=<redacted>" in message
    assert info.value.excerpt.endswith("...")
    assert len(info.value.excerpt) <= 203 + len("<redacted>")


def test_decode_status_passed_through_to_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        ResponseDecoder(AccountInfo).decode(b"<html>", status=202)
    assert info.value.status == 202
    assert "HTTP 202" in str(info.value)


# --- error bodies with HTTP 200 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "msg", "cls"),
    [
        (-2015, "Invalid API-key, IP, or permissions for action.", AuthenticationError),
        (-1022, "Signature for this request is not valid.", InvalidSignatureError),
        (
            -21001,
            "invalid request: request ID is not a Portfolio Margin Account",
            NotPortfolioMarginError,
        ),
        (-9000, "user have no avaliable amount", APIError),
    ],
)
def test_decode_error_body_with_http_200_raises_api_error(
    code: int, msg: str, cls: type[APIError]
) -> None:
    body = json.dumps({"code": code, "msg": msg}).encode()
    with pytest.raises(cls) as info:
        decode_account_info(body)
    err = info.value
    assert isinstance(err, APIError)
    assert (err.status, err.code, err.msg) == (200, code, msg)
    assert str(code) in str(err)
    assert msg in str(err)


# --- reuse and other types -------------------------------------------------------------------


def test_response_decoder_reused_gives_independent_results() -> None:
    decoder = ResponseDecoder(AccountInfo)
    first = decoder.decode(DOC_EXAMPLE)
    second = decoder.decode(_body(uniMMR="2"))
    _assert_doc_example(first)
    assert second.uni_mmr == Decimal("2")


def test_response_decoder_list_of_structs_names_item_field() -> None:
    decoder = ResponseDecoder(list[AccountInfo])
    body = b"[" + DOC_EXAMPLE + b"," + _body(uniMMR="NaN") + b"]"
    with pytest.raises(DecodeError) as info:
        decoder.decode(body)
    assert info.value.field == "$[1].uniMMR"
    items = decoder.decode(b"[" + DOC_EXAMPLE + b"," + _body(uniMMR="") + b"]")
    _assert_doc_example(items[0])
    assert items[1].uni_mmr is None


def test_response_decoder_server_time_exact_int() -> None:
    assert ResponseDecoder(ServerTime).decode(b'{"serverTime": 1499827319559}') == ServerTime(
        1499827319559
    )
