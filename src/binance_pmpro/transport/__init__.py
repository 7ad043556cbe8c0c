"""The transport seam: a prepared request in, status, headers and body bytes out.

A transport does one HTTP exchange and nothing else: no retries, no rate limiting, no
decoding. It raises the :class:`~binance_pmpro.errors.TransportError` subclasses, with
``sent=False`` only when the request provably never left the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from ..errors import ConfigurationError
from ..requests import PreparedRequest

__all__ = ["Response", "Timeouts", "Transport"]

# Response header names as received -> lower-case str, for every transport: a server sends
# the same few names on every answer. Bounded, so a server sending ever new names cannot
# grow it for good.
HEADER_NAMES: dict[bytes, str] = {}
_HEADER_NAMES_SIZE = 256


def header_name(raw: bytes) -> str:
    """The lower-case text of the response header name ``raw`` (remembered in
    :data:`HEADER_NAMES`; the transports look there first, inline, on their hot path)."""
    name = HEADER_NAMES.get(raw)
    if name is None:
        name = raw.decode("latin-1").lower()
        if len(HEADER_NAMES) < _HEADER_NAMES_SIZE:
            HEADER_NAMES[raw] = name
    return name


def add_header(headers: dict[str, str], raw_name: bytes, raw_value: bytes) -> None:
    """Add one response header as received to ``headers``: lower-case name, and a repeated
    header joined to the earlier value with ``", "`` (as HTTP allows)."""
    name = HEADER_NAMES.get(raw_name) or header_name(raw_name)
    value = raw_value.decode("latin-1")
    previous = headers.get(name)
    headers[name] = value if previous is None else f"{previous}, {value}"


class Response(NamedTuple):
    """One HTTP response. ``headers.get(name)`` works with lower-case names."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Timeouts in seconds (``None`` = wait forever).

    Defaults suit a trading engine: fail fast when Binance is unreachable, but give a slow
    answer the same 10 s Binance gives its own backend.
    """

    connect: float | None = 3.0
    """Opening a connection, TLS handshake included."""
    read: float | None = 10.0
    """Between bytes of the response."""
    write: float | None = 10.0
    """Sending the request."""
    pool: float | None = 5.0
    """Waiting for a free pooled connection."""

    @classmethod
    def coerce(cls, value: float | Timeouts | None) -> Timeouts:
        """A :class:`Timeouts` from a single number (every phase), ``None`` or itself."""
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(None, None, None, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, not {value!r}")
        return cls(float(value), float(value), float(value), float(value))


@runtime_checkable
class Transport(Protocol):
    """What the client needs from an HTTP implementation."""

    async def send(self, request: PreparedRequest) -> Response:
        """Send ``request`` to the transport's base URL and return the whole response."""
        ...

    async def aclose(self) -> None:
        """Release connections (a user-supplied HTTP client is left open)."""
        ...
