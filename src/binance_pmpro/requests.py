"""Building the exact request Binance receives. Pure: the timestamp is passed in.

Binance's rule (since 2026-01-15): percent-encode the parameters (RFC 3986, UTF-8; ``A-Z
a-z 0-9 - _ . ~`` stay as they are), sign exactly those encoded bytes, send exactly those
bytes, and append ``signature`` last. Every parameter goes in the query string, for POST
and DELETE too, as Binance's own SDK does, so the signed payload is the query string alone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from .endpoints import Endpoint
from .errors import ConfigurationError
from .signing import HmacSigner, Signer

__all__ = ["PreparedRequest", "build_request", "encode_params", "encode_value"]

MAX_RECV_WINDOW_MS = 60_000
_UNRESERVED = "-_.~"


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request ready for the wire: the transport sends it verbatim."""

    method: str
    path: str
    query: str
    """Percent-encoded query string, ``signature`` last for signed requests; may be empty."""
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    # True only for requests from build_request whose target (path and query) is visible
    # ASCII by construction, so a transport may skip scanning it on every send. A request
    # made any other way is checked by the transport before anything is written.
    _safe_target: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def target(self) -> str:
        """The request target: path and query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def __repr__(self) -> str:
        # The signature is not a secret, but it proves the key: keep it out of logs.
        return f"PreparedRequest({self.method} {redact_query(self.target)})"


def redact_query(target: str) -> str:
    """``target`` with the signature value replaced by ``<redacted>``."""
    head, sep, _ = target.partition("signature=")
    return f"{head}{sep}<redacted>" if sep else target


def encode_value(value: Any) -> str:
    """The wire text of one parameter value, before percent-encoding.

    Decimals in plain notation (never an exponent, never a float round-trip), booleans as
    ``true``/``false``, enums by value.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite decimal: {value}")
        return format(value, "f")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        raise TypeError("pass amounts as Decimal or str, never float")
    return str(value)


def encode_params(params: Mapping[str, Any]) -> str:
    """Percent-encode ``params`` (in their given order; ``None`` values left out)."""
    return "&".join(
        f"{quote(name, safe=_UNRESERVED)}={quote(encode_value(value), safe=_UNRESERVED)}"
        for name, value in params.items()
        if value is not None
    )


def check_recv_window(recv_window: int) -> int:
    """Validate ``recvWindow`` (ms): an int in [1, 60000], Binance's documented bounds."""
    if isinstance(recv_window, bool) or not isinstance(recv_window, int):
        raise ConfigurationError(f"recv_window must be an int of milliseconds, not {recv_window!r}")
    if not 0 < recv_window <= MAX_RECV_WINDOW_MS:
        raise ConfigurationError(
            f"recv_window must be between 1 and {MAX_RECV_WINDOW_MS} ms, not {recv_window}"
        )
    return recv_window


def build_request(
    endpoint: Endpoint,
    params: Mapping[str, Any],
    *,
    api_key: str | None,
    signer: Signer | None,
    timestamp_ms: int,
    recv_window: int,
) -> PreparedRequest:
    """Build the request for ``endpoint``; for a SIGNED endpoint add ``recvWindow``,
    ``timestamp`` and the ``signature`` over exactly the encoded query that is sent."""
    plan = _PLANS.get(id(endpoint))
    if plan is None or plan[0] is not endpoint:
        plan = _plan(endpoint)
    # encode_params and quote() leave only unreserved characters and %XX escapes, and ints
    # print as digits: the target is visible ASCII if the path is.
    safe_target = plan[3]
    query = encode_params(params) if params else ""
    headers: tuple[tuple[str, str], ...] = ()
    if plan[1]:
        if not api_key:
            raise ConfigurationError(f"{endpoint.path} needs an API key")
        headers = (("X-MBX-APIKEY", api_key),)
    if plan[2]:
        if signer is None:
            raise ConfigurationError(
                f"{endpoint.path} is a SIGNED endpoint: give api_secret or private_key"
            )
        timing = f"recvWindow={recv_window}&timestamp={timestamp_ms}"
        if type(recv_window) is not int or type(timestamp_ms) is not int:
            safe_target = False  # their text is not known to be digits
        query = f"{query}&{timing}" if query else timing
        signature = signer.sign(query.encode())
        if signer.algorithm != "HMAC_SHA256":  # base64 carries + / =; hex needs no escaping
            signature = quote(signature, safe="")
        elif type(signer) is not HmacSigner:
            safe_target = False  # another signer's "hex" is not ours to vouch for
        query = f"{query}&signature={signature}"
    return _new_request(endpoint.method, endpoint.path, query, headers, safe_target)


# What build_request reads from an endpoint, worked out once per endpoint object. Keyed by
# identity: an Endpoint's own hash covers every field, and the plan's reference keeps the
# id from being reused. Bounded, since callers may build endpoints of their own.
_PLANS: dict[int, tuple[Endpoint, bool, bool, bool]] = {}
_PLANS_SIZE = 256


def _plan(endpoint: Endpoint) -> tuple[Endpoint, bool, bool, bool]:
    if len(_PLANS) >= _PLANS_SIZE:
        _PLANS.clear()
    path = endpoint.path
    safe_path = path.isascii() and path.isprintable() and " " not in path
    plan = (endpoint, endpoint.security.needs_api_key, endpoint.security.signed, safe_path)
    _PLANS[id(endpoint)] = plan
    return plan


_set_method = PreparedRequest.__dict__["method"].__set__
_set_path = PreparedRequest.__dict__["path"].__set__
_set_query = PreparedRequest.__dict__["query"].__set__
_set_headers = PreparedRequest.__dict__["headers"].__set__
_set_body = PreparedRequest.__dict__["body"].__set__
_set_safe_target = PreparedRequest.__dict__["_safe_target"].__set__


def _new_request(
    method: str, path: str, query: str, headers: tuple[tuple[str, str], ...], safe_target: bool
) -> PreparedRequest:
    # The frozen dataclass __init__ goes through object.__setattr__ per field, which costs
    # twice as much as writing the slots directly; the result is the same object.
    request: PreparedRequest = object.__new__(PreparedRequest)
    _set_method(request, method)
    _set_path(request, path)
    _set_query(request, query)
    _set_headers(request, headers)
    _set_body(request, b"")
    _set_safe_target(request, safe_target)
    return request
