"""Request building: parameter order, RFC 3986 percent-encoding, exact decimals, and a
signature over exactly the bytes that are sent."""

from __future__ import annotations

import enum
import hashlib
import hmac
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binance_pmpro.endpoints import ACCOUNT_INFO, SERVER_TIME, Budget, Endpoint, Security
from binance_pmpro.errors import ConfigurationError
from binance_pmpro.models import AccountInfo
from binance_pmpro.requests import (
    MAX_RECV_WINDOW_MS,
    PreparedRequest,
    build_request,
    check_recv_window,
    encode_params,
    encode_value,
)
from binance_pmpro.signing import HmacSigner

SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SIGNER = HmacSigner(SECRET)

ORDER = Endpoint(
    name="order",
    method="POST",
    path="/api/v3/order",
    security=Security.TRADE,
    budget=Budget.API_IP,
    weight=1,
    response=AccountInfo,
)
MARKET = Endpoint(
    name="market",
    method="GET",
    path="/sapi/v1/portfolio/collateralRate",
    security=Security.MARKET_DATA,
    budget=Budget.SAPI_IP,
    weight=50,
    response=AccountInfo,
)
H1_PARAMS = {
    "symbol": "LTCBTC",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": 1,
    "price": Decimal("0.1"),
}


def _hmac(payload: str) -> str:
    return hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _signed(endpoint: Endpoint, params: dict[str, Any], **kw: Any) -> PreparedRequest:
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "signer": SIGNER,
        "timestamp_ms": 1499827319559,
        "recv_window": 5000,
    }
    options.update(kw)
    return build_request(endpoint, params, **options)


# --- order and signature placement --------------------------------------------------------


def test_build_request_account_info_query_is_recvwindow_timestamp_signature() -> None:
    request = _signed(ACCOUNT_INFO, {})
    assert request.method == "GET"
    assert request.path == "/sapi/v1/portfolio/account"
    # The DERIVED vector of reference section 2.7.
    assert request.query == (
        "recvWindow=5000&timestamp=1499827319559"
        "&signature=82f4e72e95e63d666b6da651e82a701722ad8a785a169318d91f36f279c55821"
    )
    assert request.target == f"/sapi/v1/portfolio/account?{request.query}"
    assert request.body == b""


def test_build_request_published_h1_request_reproduced_exactly() -> None:
    request = _signed(ORDER, H1_PARAMS)
    assert request.target == (
        "/api/v3/order?symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559"
        "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )
    assert request.headers == (("X-MBX-APIKEY", API_KEY),)


def test_build_request_published_h2_full_width_symbol_signed_after_encoding() -> None:
    request = _signed(ORDER, {**H1_PARAMS, "symbol": "１２３４５６"})
    assert request.query == (
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
        "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
        "&signature=e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
    )


def test_encode_params_full_width_digits_utf8_percent_encoded() -> None:
    assert encode_params({"symbol": "１２３４５６", "side": "BUY"}) == (
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY"
    )


def test_build_request_signature_is_last_and_covers_exact_prefix() -> None:
    request = _signed(ORDER, {"asset": "BTC", "note": "a b+c&d=e/f"})
    prefix, sep, signature = request.query.rpartition("&signature=")
    assert sep
    assert "&" not in signature
    assert "=" not in signature
    assert prefix.endswith("&recvWindow=5000&timestamp=1499827319559")
    assert prefix.startswith("asset=BTC&note=")
    assert signature == _hmac(prefix)


def test_build_request_per_call_recv_window_and_timestamp_used_verbatim() -> None:
    request = _signed(ACCOUNT_INFO, {}, recv_window=60000, timestamp_ms=1)
    assert request.query.startswith("recvWindow=60000&timestamp=1&signature=")


def test_build_request_none_params_left_out_of_query_and_signature() -> None:
    request = _signed(ORDER, {"asset": None, "side": "BUY"})
    prefix = request.query.rpartition("&signature=")[0]
    assert prefix == "side=BUY&recvWindow=5000&timestamp=1499827319559"


def test_build_request_unsigned_none_endpoint_has_no_key_timestamp_or_signature() -> None:
    request = build_request(
        SERVER_TIME, {}, api_key=None, signer=None, timestamp_ms=1, recv_window=5000
    )
    assert request.query == ""
    assert request.target == "/api/v3/time"
    assert request.headers == ()


def test_build_request_market_data_sends_key_without_signature() -> None:
    request = build_request(
        MARKET, {"asset": "BTC"}, api_key=API_KEY, signer=None, timestamp_ms=1, recv_window=5000
    )
    assert request.query == "asset=BTC"
    assert request.headers == (("X-MBX-APIKEY", API_KEY),)


def test_build_request_signed_endpoint_without_signer_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="SIGNED"):
        build_request(
            ACCOUNT_INFO, {}, api_key=API_KEY, signer=None, timestamp_ms=1, recv_window=5000
        )


@pytest.mark.parametrize("api_key", [None, ""])
def test_build_request_keyed_endpoint_without_api_key_raises_configuration_error(
    api_key: str | None,
) -> None:
    with pytest.raises(ConfigurationError, match="API key"):
        build_request(
            ACCOUNT_INFO, {}, api_key=api_key, signer=SIGNER, timestamp_ms=1, recv_window=5000
        )


def test_prepared_request_repr_redacts_signature() -> None:
    request = _signed(ACCOUNT_INFO, {})
    signature = request.query.rpartition("=")[2]
    assert signature not in repr(request)
    assert signature not in str(request)
    assert "signature=<redacted>" in repr(request)
    assert "/sapi/v1/portfolio/account" in repr(request)


# --- percent-encoding (RFC 3986) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("AZaz09-_.~", "AZaz09-_.~"),  # unreserved: untouched
        ("a b", "a%20b"),
        ("a+b", "a%2Bb"),
        ("a&b=c", "a%26b%3Dc"),
        ("a/b?c#d", "a%2Fb%3Fc%23d"),
        ("100%", "100%25"),
        ("é", "%C3%A9"),
        ("", ""),
    ],
)
def test_encode_params_value_encoded_per_rfc3986(value: str, encoded: str) -> None:
    assert encode_params({"v": value}) == f"v={encoded}"


def test_encode_params_names_encoded_too() -> None:
    assert encode_params({"a b&c": "1"}) == "a%20b%26c=1"


def test_encode_params_keeps_given_order() -> None:
    assert encode_params({"b": 1, "a": 2, "c": 3}) == "b=1&a=2&c=3"


# --- value encoding -----------------------------------------------------------------------------


class _Side(enum.Enum):
    BUY = "BUY"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.1"), "0.1"),
        (Decimal("1E+5"), "100000"),
        (Decimal("1.00E-10"), "0.000000000100"),
        (Decimal("-2.5E-3"), "-0.0025"),
        (
            Decimal("123456789012345678901234567890.123456789"),
            "123456789012345678901234567890.123456789",
        ),
        (Decimal("5.000"), "5.000"),
        (True, "true"),
        (False, "false"),
        (7, "7"),
        (-1, "-1"),
        ("BTC", "BTC"),
        (_Side.BUY, "BUY"),
    ],
)
def test_encode_value_plain_text_without_exponent(value: object, text: str) -> None:
    assert encode_value(value) == text


@pytest.mark.parametrize("value", [0.1, 1.0, float("nan")])
def test_encode_value_float_refused(value: float) -> None:
    with pytest.raises(TypeError, match="float"):
        encode_value(value)


def test_encode_params_float_refused() -> None:
    with pytest.raises(TypeError):
        encode_params({"amount": 0.1})


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_encode_value_non_finite_decimal_refused(value: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_value(Decimal(value))


_decimals = st.builds(
    lambda mantissa, exponent: Decimal(f"{mantissa}E{exponent}"),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-40, max_value=40),
)


@settings(derandomize=True, deadline=None, max_examples=300)
@given(_decimals)
def test_encode_value_any_decimal_plain_and_exact(value: Decimal) -> None:
    text = encode_value(value)
    assert "e" not in text.lower()
    assert Decimal(text) == value
    assert encode_params({"amount": value}) == f"amount={text}"


# --- recvWindow bounds ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 5000, MAX_RECV_WINDOW_MS])
def test_check_recv_window_in_range_accepted(value: int) -> None:
    assert MAX_RECV_WINDOW_MS == 60000
    assert check_recv_window(value) == value


@pytest.mark.parametrize("value", [0, -1, 60001, True, False, 5000.0, "5000", None])
def test_check_recv_window_out_of_range_or_wrong_type_refused(value: object) -> None:
    with pytest.raises(ConfigurationError, match="recv_window"):
        check_recv_window(value)  # type: ignore[arg-type]


# --- property: what is signed is what is sent, and it parses back ----------------------------


_RESERVED = {"recvWindow", "timestamp", "signature"}
_names = st.text(min_size=1, max_size=12).filter(lambda name: name not in _RESERVED)
_values = st.one_of(
    st.text(max_size=20),
    _decimals,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.booleans(),
)


@settings(derandomize=True, deadline=None, max_examples=300)
@given(params=st.dictionaries(_names, _values, max_size=6), timestamp=st.integers(0, 2**45))
def test_build_request_any_params_signature_matches_prefix_and_round_trips(
    params: dict[str, Any], timestamp: int
) -> None:
    request = _signed(ORDER, params, timestamp_ms=timestamp)
    prefix, sep, signature = request.query.rpartition("&signature=")
    assert sep
    assert signature == _hmac(prefix)
    # Everything outside the unreserved set is escaped, so the query splits cleanly.
    assert all(ch.isascii() and ch not in " +#?" for ch in request.query)

    pairs = parse_qsl(request.query, keep_blank_values=True, strict_parsing=False)
    parsed_names = [name for name, _ in pairs]
    assert parsed_names == [*params, "recvWindow", "timestamp", "signature"]
    for (_, text), value in zip(pairs, params.values(), strict=False):
        if isinstance(value, bool):
            assert text == ("true" if value else "false")
        elif isinstance(value, Decimal):
            assert Decimal(text) == value
            assert "e" not in text.lower()
        elif isinstance(value, int):
            assert int(text) == value
        else:
            assert text == value
    assert pairs[-3:-1] == [("recvWindow", "5000"), ("timestamp", str(timestamp))]
