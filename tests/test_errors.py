"""The exception tree and the map from Binance's answers (status, code, msg, headers) to it."""

from __future__ import annotations

import json

import pytest

import binance_pmpro
from binance_pmpro import errors
from binance_pmpro.decoding import raise_for_error
from binance_pmpro.errors import (
    APIError,
    AuthenticationError,
    BinanceError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    DecodeError,
    EndpointGoneError,
    InvalidRequestError,
    InvalidSignatureError,
    IPBannedError,
    NotPortfolioMarginError,
    OutcomeUnknownError,
    PoolTimeoutError,
    RateLimitedError,
    RateLimitTimeoutError,
    ReadTimeoutError,
    ServerError,
    TimestampError,
    TransportError,
    WAFBlockedError,
    error_for,
    parse_retry_after,
)

BAN_MSG = (
    "Way too much request weight used; IP banned until 1499827319559. "
    "Please use WebSocket Streams for live updates to avoid bans."
)


def _raise(status: int, body: bytes, headers: dict[str, str] | None = None) -> APIError:
    with pytest.raises(APIError) as info:
        raise_for_error(status, headers or {}, body)
    return info.value


def _json(code: int, msg: str) -> bytes:
    return json.dumps({"code": code, "msg": msg}).encode()


# --- code and status -> class ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "msg", "cls"),
    [
        (400, -2014, "API-key format invalid.", AuthenticationError),
        (401, -2015, "Invalid API-key, IP, or permissions for action.", AuthenticationError),
        (401, -1002, "You are not authorized to execute this request.", AuthenticationError),
        (400, -1022, "Signature for this request is not valid.", InvalidSignatureError),
        (400, -1021, "Timestamp for this request is outside of the recvWindow.", TimestampError),
        (
            400,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
            TimestampError,
        ),
        (400, -21001, "request ID is not a Portfolio Margin Account", NotPortfolioMarginError),
        (400, -21015, "endpoint has been deprecated", EndpointGoneError),
        (400, -1102, "Mandatory parameter 'timestamp' was not sent.", InvalidRequestError),
        (400, -1131, "recvWindow must be less than 60000", InvalidRequestError),
        (400, -99999, "a code this release has never seen", InvalidRequestError),
        (404, -1099, "Not found, authenticated, or authorized", InvalidRequestError),
        (400, -1007, "Timeout waiting for response from backend server.", ServerError),
        (400, -1006, "An unexpected response was received from the message bus.", ServerError),
        (500, -1000, "An unknown error occurred while processing the request.", ServerError),
        (503, -1008, "Server is currently overloaded with other requests.", ServerError),
        (403, -2015, "Invalid API-key, IP, or permissions for action.", AuthenticationError),
    ],
)
def test_error_for_code_maps_to_class(
    status: int, code: int, msg: str, cls: type[APIError]
) -> None:
    headers = {"x-sapi-used-uid-weight-1m": "5", "content-type": "application/json"}
    err = _raise(status, _json(code, msg), headers)
    assert type(err) is cls
    assert (err.status, err.code, err.msg) == (status, code, msg)
    assert err.headers == headers
    assert str(code) in str(err)
    assert msg in str(err)
    assert f"HTTP {status}" in str(err)


def test_error_for_http_401_without_code_is_authentication_error() -> None:
    err = _raise(401, b"")
    assert type(err) is AuthenticationError
    assert err.code is None


def test_error_for_429_is_rate_limited_with_retry_after() -> None:
    msg = "Too much request weight used; current limit is 180000 request weight per 1 MINUTE."
    err = _raise(429, _json(-1003, msg), {"retry-after": "7"})
    assert type(err) is RateLimitedError
    assert err.retry_after == 7.0
    assert err.code == -1003
    assert "-1003" in str(err)


def test_error_for_429_without_retry_after_has_none() -> None:
    err = _raise(429, _json(-1003, "Too much request weight used"))
    assert isinstance(err, RateLimitedError)
    assert err.retry_after is None


def test_error_for_code_1003_without_429_still_rate_limited() -> None:
    assert type(_raise(400, _json(-1003, "Too many requests"))) is RateLimitedError


def test_error_for_418_is_ip_banned_with_banned_until_from_message() -> None:
    err = _raise(418, _json(-1003, BAN_MSG), {"retry-after": "120"})
    assert type(err) is IPBannedError
    assert isinstance(err, RateLimitedError)
    assert err.banned_until == pytest.approx(1499827319.559)
    assert err.retry_after == 120.0
    assert "banned until 1499827319559" in str(err)


def test_error_for_418_with_seconds_timestamp_gives_seconds() -> None:
    err = error_for(418, -1003, "IP banned until 1499827319.", {})
    assert isinstance(err, IPBannedError)
    assert err.banned_until == 1499827319.0


def test_error_for_418_without_ban_time_has_none() -> None:
    err = _raise(418, b"<html>I'm a teapot</html>")
    assert isinstance(err, IPBannedError)
    assert err.banned_until is None
    assert err.retry_after is None


@pytest.mark.parametrize(
    ("status", "body", "needle"),
    [
        (500, _json(-1000, "An unknown error occurred"), "An unknown error occurred"),
        (502, b"<html><body><h1>502 Bad Gateway</h1>\n</body></html>", "502 Bad Gateway"),
        (503, b"Service Unavailable.", "Service Unavailable."),
        (504, b"", "empty error body"),
    ],
    ids=["json", "html", "text", "empty"],
)
def test_raise_for_error_5xx_is_server_error_outcome_unknown_with_excerpt(
    status: int, body: bytes, needle: str
) -> None:
    err = _raise(status, body)
    assert type(err) is ServerError
    assert isinstance(err, OutcomeUnknownError)
    assert err.status == status
    assert needle in str(err)
    assert needle in err.msg


def test_raise_for_error_long_html_body_excerpt_is_short_and_flat() -> None:
    body = b"<html>\n" + b"<p>maintenance</p>\n" * 500 + b"</html>"
    err = _raise(502, body)
    assert len(err.msg) < 300
    assert "\n" not in err.msg
    assert "maintenance" in err.msg


def test_raise_for_error_403_html_is_waf_blocked() -> None:
    err = _raise(403, b"<html><body>Request blocked by WAF</body></html>")
    assert type(err) is WAFBlockedError
    assert err.code is None
    assert "Request blocked by WAF" in str(err)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_raise_for_error_2xx_returns_none(status: int) -> None:
    assert raise_for_error(status, {}, b'{"code": -1000, "msg": "x"}') is None


def test_raise_for_error_json_without_code_uses_status() -> None:
    err = _raise(400, b'{"error": "bad"}')
    assert type(err) is InvalidRequestError
    assert err.code is None


def test_api_error_message_redacts_signature_in_msg() -> None:
    err = error_for(400, -1100, "Illegal characters in signature=0123abcd&x=1", {})
    assert "0123abcd" not in str(err)
    assert "signature=<redacted>" in str(err)


def test_api_error_headers_are_a_copy() -> None:
    headers = {"retry-after": "1"}
    err = error_for(400, -1100, "x", headers)
    headers["retry-after"] = "999"
    assert err.headers == {"retry-after": "1"}


# --- Retry-After parsing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        (None, None),
        ("", None),
        ("abc", None),
        ("-1", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after_delta_seconds_only(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


# --- the tree -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_class_exported_from_package_root(name: str) -> None:
    assert name in binance_pmpro.__all__
    assert getattr(binance_pmpro, name) is getattr(errors, name)
    cls = getattr(errors, name)
    assert issubclass(cls, BinanceError)
    assert cls.__doc__


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (ConfigurationError, (BinanceError, ValueError)),
        (AuthenticationError, (APIError,)),
        (InvalidSignatureError, (AuthenticationError,)),
        (IPBannedError, (RateLimitedError,)),
        (ServerError, (APIError, OutcomeUnknownError)),
        (ReadTimeoutError, (TransportError, OutcomeUnknownError)),
        (ConnectionLostError, (TransportError, OutcomeUnknownError)),
        (ConnectTimeoutError, (ConnectError,)),
        (PoolTimeoutError, (ConnectError,)),
        (RateLimitTimeoutError, (BinanceError, TimeoutError)),
        (DecodeError, (BinanceError,)),
    ],
)
def test_error_class_has_documented_bases(cls: type, bases: tuple[type, ...]) -> None:
    for base in bases:
        assert issubclass(cls, base)


@pytest.mark.parametrize(
    ("cls", "sent"),
    [
        (ConnectError, False),
        (ConnectTimeoutError, False),
        (PoolTimeoutError, False),
        (ReadTimeoutError, True),
        (ConnectionLostError, True),
    ],
)
def test_transport_error_sent_flag_says_whether_binance_may_have_it(
    cls: type[TransportError], sent: bool
) -> None:
    assert cls("x").sent is sent


def test_transport_error_message_redacts_signature() -> None:
    err = ConnectionLostError(
        "GET /sapi/v1/portfolio/account?timestamp=1&signature=deadbeef: reset", method="GET"
    )
    assert "deadbeef" not in str(err)
    assert err.method == "GET"


def test_rate_limit_timeout_error_carries_wait() -> None:
    err = RateLimitTimeoutError("too long", wait=12.5)
    assert err.wait == 12.5
    assert isinstance(err, TimeoutError)
