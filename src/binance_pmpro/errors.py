"""The exception tree of binance-pmpro, and the map from Binance's answers to it.

Every exception raised by this package derives from :class:`BinanceError`. Messages never
contain an API secret, a private key or a request signature.

``BinanceError``
  ``ConfigurationError``       wrong or missing settings, found at construction
  ``ClientClosedError``        a call on a closed client
  ``TransportError``           no complete HTTP answer came back
    ``ConnectError``           no connection could be made: the request was not sent
    ``RequestTimeoutError``    (``ConnectTimeoutError``, ``ReadTimeoutError``, ``PoolTimeoutError``,
                               ``DeadlineExceededError``)
    ``ConnectionLostError``    the connection broke while sending or reading
  ``DecodeError``              an answer came back but could not be understood
    ``StreamDecodeError``      a user data stream frame that is not a readable event
  ``APIError``                 Binance answered with an error (``status``, ``code``, ``msg``)
    ``AuthenticationError``    key unknown/malformed, no permission (-2014, -2015, -1002, 401)
      ``InvalidSignatureError``  -1022
    ``TimestampError``         -1021: timestamp outside ``recvWindow``
    ``InvalidRequestError``    the request itself was refused (-11xx, other 4xx)
      ``ListenKeyNotFoundError``  -1125: the user data stream's listen key does not exist
    ``NotPortfolioMarginError``  -21001: the account is not a Portfolio Margin account
    ``EndpointGoneError``      -21015: Binance removed the endpoint
    ``RateLimitedError``       429: too much weight; ``retry_after`` seconds
      ``IPBannedError``        418: the IP is banned; ``banned_until``
    ``WAFBlockedError``        403: Binance's firewall blocked the request
    ``ServerError``            5xx or an "execution status unknown" code
  ``RateLimitTimeoutError``    the local limiter could not grant weight within ``max_wait``

``OutcomeUnknownError`` is a second base of the errors after which Binance may or may not
have executed the request (a 5xx, -1006/-1007, a connection lost after sending): for a read
it is harmless, for a write the caller must check the account before trying again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "APIError",
    "AuthenticationError",
    "BinanceError",
    "ClientClosedError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "DeadlineExceededError",
    "DecodeError",
    "EndpointGoneError",
    "IPBannedError",
    "InvalidRequestError",
    "InvalidSignatureError",
    "ListenKeyNotFoundError",
    "NotPortfolioMarginError",
    "OutcomeUnknownError",
    "PoolTimeoutError",
    "RateLimitTimeoutError",
    "RateLimitedError",
    "ReadTimeoutError",
    "RequestTimeoutError",
    "ServerError",
    "SharedBudgetUnavailableError",
    "StreamDecodeError",
    "TimestampError",
    "TransportError",
    "WAFBlockedError",
]

_EXCERPT_CHARS = 200
_SIGNATURE_RE = re.compile(r"(signature=)[^&\s'\"]+", re.IGNORECASE)


_LISTEN_KEY_TEXT_RE = re.compile(r'("listenKey"\s*:\s*")[^"]*')


def redact(text: str) -> str:
    """Replace every ``signature=...`` value and every JSON ``"listenKey"`` value (a user
    stream's credential) in ``text`` with ``<redacted>``."""
    return _LISTEN_KEY_TEXT_RE.sub(r"\1<redacted>", _SIGNATURE_RE.sub(r"\1<redacted>", text))


def excerpt(body: bytes, limit: int = _EXCERPT_CHARS) -> str:
    """A short, printable, signature-free piece of a response body for an error message."""
    text = body[: limit * 4].decode("utf-8", "replace")
    text = " ".join(text.split())  # HTML pages are mostly whitespace and newlines
    if len(text) > limit:
        text = text[:limit] + "..."
    return redact(text)


class BinanceError(Exception):
    """Root of every exception this package raises.

    ``attempts`` lists, for a call that was retried, why each attempt failed (oldest first,
    this error last); the message ends with that list when there was more than one.
    """

    attempts: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = super().__str__()
        if len(self.attempts) > 1:
            text = f"{text} [{len(self.attempts)} attempts: {_summarise(self.attempts)}]"
        return text


def _summarise(reasons: tuple[str, ...]) -> str:
    """Join attempt reasons, folding runs of the same reason into one ``(xN)`` entry."""
    parts: list[str] = []
    run = 0
    for i, reason in enumerate(reasons):
        run += 1
        if i + 1 == len(reasons) or reasons[i + 1] != reason:
            parts.append(reason if run == 1 else f"{reason} (x{run})")
            run = 0
    return "; ".join(parts)


class OutcomeUnknownError(BinanceError):
    """Binance may or may not have executed the request.

    Raised (as a second base class) for 5xx answers, the "execution status unknown" codes
    -1006 and -1007, and connections lost after the request was sent. Reads can simply be
    repeated; after a write, check the account's state before sending it again.
    """


class ClientClosedError(BinanceError, RuntimeError):
    """A call was made on a client after :meth:`aclose`."""


class ConfigurationError(BinanceError, ValueError):
    """The client was set up wrongly: missing or contradictory credentials, an unusable key,
    an out-of-range option. Raised at construction, before any request is sent."""


class TransportError(BinanceError):
    """No complete HTTP response came back.

    ``sent`` is False when the request provably never left this process (so Binance cannot
    have counted or executed it), True when it may have been received.
    """

    sent: bool = True

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(redact(message))
        self.method = method
        self.path = path


class ConnectError(TransportError):
    """No connection to Binance could be opened (DNS, refused, TLS handshake). Not sent."""

    sent = False


class RequestTimeoutError(TransportError):
    """A timeout expired before the response was complete."""


class ConnectTimeoutError(RequestTimeoutError, ConnectError):
    """Opening the connection took longer than the connect timeout. Not sent."""

    sent = False


class PoolTimeoutError(RequestTimeoutError, ConnectError):
    """No pooled connection became free within the pool timeout. Not sent."""

    sent = False


class ReadTimeoutError(RequestTimeoutError, OutcomeUnknownError):
    """The request was sent but the response did not arrive within the read timeout."""


class DeadlineExceededError(RequestTimeoutError, OutcomeUnknownError):
    """The call's overall deadline (``call_timeout=``, retries and waits included)
    expired. If a request was in flight, Binance may have received it."""


class ConnectionLostError(TransportError, OutcomeUnknownError):
    """The connection was reset or closed while the request or response was in transit."""


class DecodeError(BinanceError):
    """The response could not be understood: an HTML error page, malformed or truncated JSON,
    a wrong shape, or a value that is not what the field must hold.

    ``field`` names the offending field (a JSON path such as ``$.uniMMR``) when known;
    ``excerpt`` is a short, safe piece of the body.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: bytes = b"",
        field: str | None = None,
    ) -> None:
        self.status = status
        self.field = field
        self.excerpt = excerpt(body)
        detail = f"{message} (HTTP {status})" if status is not None else message
        if self.excerpt:
            detail = f"{detail}; body starts: {self.excerpt!r}"
        super().__init__(detail)


_LISTEN_KEY_RE = re.compile(rb'("(?:listenKey|stream)"\s*:\s*")[^"]*("?)')


class StreamDecodeError(DecodeError):
    """A frame of the user data stream is not a readable event: not JSON, not an object,
    no event type, or a known event with a field that cannot hold its value. The stream
    logs such a frame and skips it. The excerpt never shows a listen key.
    """

    def __init__(self, message: str, *, frame: bytes = b"", field: str | None = None) -> None:
        super().__init__(message, body=_LISTEN_KEY_RE.sub(rb"\1<redacted>\2", frame), field=field)


class APIError(BinanceError):
    """Binance answered with an error.

    Attributes: ``status`` (HTTP status), ``code`` (Binance's error code, e.g. -2015; None
    when the body carried none), ``msg`` (Binance's message), ``headers`` (the response
    headers, names in lower case).
    """

    def __init__(
        self,
        status: int,
        code: int | None,
        msg: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.msg = msg
        self.headers: Mapping[str, str] = dict(headers or {})
        label = f"code {code}" if code is not None else "no code"
        super().__init__(f"Binance error {label} (HTTP {status}): {redact(msg)}")


class AuthenticationError(APIError):
    """The API key is malformed, unknown, not allowed from this IP, or lacks the permission
    for this endpoint (-2014, -2015, -1002, or HTTP 401)."""


class InvalidSignatureError(AuthenticationError):
    """Binance rejected the signature (-1022): the secret or private key does not belong to
    the API key, or the signed bytes differ from the bytes sent."""


class TimestampError(APIError):
    """The request's timestamp was outside ``recvWindow`` or ahead of Binance's clock (-1021).

    ``offset_ms`` is the client's measured offset to the server clock when it knew one.
    """

    offset_ms: float | None = None

    def __str__(self) -> str:
        text = super().__str__()
        if self.offset_ms is not None:
            text = f"{text} (measured offset to Binance's clock: {self.offset_ms:+.1f} ms)"
        return text


class InvalidRequestError(APIError):
    """Binance refused the request's parameters (-11xx codes, other 4xx answers)."""


class ListenKeyNotFoundError(InvalidRequestError):
    """-1125: the user data stream's listen key does not exist (it expired or was closed).
    The stream creates a new one."""


class NotPortfolioMarginError(APIError):
    """The account is not a Portfolio Margin (Pro) account (-21001)."""


class EndpointGoneError(APIError):
    """Binance removed this endpoint (-21015), e.g. the former BFUSD mint/redeem."""


class RateLimitedError(APIError):
    """Too much request weight (HTTP 429, code -1003).

    ``retry_after`` is the number of seconds Binance asked to wait (None when it did not
    say). Keep sending and the IP gets banned (418).
    """

    def __init__(
        self,
        status: int,
        code: int | None,
        msg: str,
        headers: Mapping[str, str] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, msg, headers)
        self.retry_after = retry_after


class IPBannedError(RateLimitedError):
    """The IP is banned for ignoring 429s (HTTP 418). ``retry_after`` says for how many
    seconds, ``banned_until`` (epoch seconds, when known) until when. Do not retry earlier."""

    banned_until: float | None = None


class WAFBlockedError(APIError):
    """HTTP 403: Binance's web application firewall blocked the request (a rate or security
    rule). Back off for a while; the horizon is not stated."""


class ServerError(APIError, OutcomeUnknownError):
    """Binance failed on its side (5xx, -1000/-1001/-1004/-1006/-1007/-1008, -3000): execution
    status unknown."""


class RateLimitTimeoutError(BinanceError, TimeoutError):
    """The local rate limiter could not grant the weight within the caller's ``max_wait``.

    Nothing was sent and no weight was consumed. ``wait`` is the time (s) it would have taken.
    """

    def __init__(self, message: str, *, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class SharedBudgetUnavailableError(BinanceError):
    """The Redis-shared rate-limit budget could not be reached (down, or slower than its
    timeout) and the limiter runs with ``strict=True``, so it refuses rather than fall back
    to a local share. Nothing was sent."""


_AUTH_CODES = frozenset({-2014, -2015, -1002})
_SERVER_CODES = frozenset({-1000, -1001, -1004, -1006, -1007, -1008, -1016, -3000})
_BAN_UNTIL_RE = re.compile(r"banned until (\d{10,13})")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds only); None for absent or garbage."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


def error_for(status: int, code: int | None, msg: str, headers: Mapping[str, str]) -> APIError:
    """Pick the exception for an error answer: by Binance ``code`` first, then by HTTP status."""
    if status == 418:
        ban = IPBannedError(
            status, code, msg, headers, retry_after=parse_retry_after(headers.get("retry-after"))
        )
        match = _BAN_UNTIL_RE.search(msg)
        if match:
            stamp = int(match.group(1))
            ban.banned_until = stamp / 1000 if stamp > 10**11 else float(stamp)
        return ban
    if status == 429 or code == -1003:
        return RateLimitedError(
            status, code, msg, headers, retry_after=parse_retry_after(headers.get("retry-after"))
        )
    if code == -1021:
        return TimestampError(status, code, msg, headers)
    if code == -1022:
        return InvalidSignatureError(status, code, msg, headers)
    if code in _AUTH_CODES or (code is None and status == 401):
        return AuthenticationError(status, code, msg, headers)
    if status == 403:
        return WAFBlockedError(status, code, msg, headers)
    if code == -1125:
        return ListenKeyNotFoundError(status, code, msg, headers)
    if code == -21001:
        return NotPortfolioMarginError(status, code, msg, headers)
    if code == -21015:
        return EndpointGoneError(status, code, msg, headers)
    if status >= 500 or code in _SERVER_CODES:
        return ServerError(status, code, msg, headers)
    if status == 401:
        return AuthenticationError(status, code, msg, headers)
    return InvalidRequestError(status, code, msg, headers)
