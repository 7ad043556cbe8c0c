"""FakeExchange: the part of Binance this SDK talks to, played in memory.

The heart is :meth:`FakeExchange.handle`, a synchronous function of one request (method,
target, headers, body) and the server's time that returns a :class:`Reply`: status, headers
and body, plus what the shell must do about faults (wait, drop, reset). It never awaits, so
each request is handled atomically on asyncio and trio alike. The in-process httpx transport
and the loopback HTTP server are thin shells around it and behave the same.

Choices where Binance's behaviour is not documented (each can be changed per instance):

- A request answered 429 still counts toward its window (``charge_rate_limited=True``):
  Binance charges failed requests on the spot API, and a client that keeps hammering a full
  window should see the counter keep growing.
- An IP that has been answered 429 ``ban_after`` times within one window and sends yet
  another over-limit request is banned: that request and every request of the IP until
  the ban ends get 418. Bans last 2 minutes and double for each further ban of the same IP,
  up to 3 days. Banned requests are not charged.
- Requests with an unknown or missing API key are not charged to any UID budget (Binance
  cannot know the account); IP budgets are charged regardless. Every other request that
  reaches its budget is charged, whatever the answer (-1021, -1022, ...).
- Faults that replace the answer (5xx, HTML page, dropped connection, ...) are not charged;
  faults that spoil delivery (slow, truncated, reset, ...) are, since the exchange did the
  work.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import hmac
import math
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from ..endpoints import (
    ACCOUNT_INFO,
    ENDPOINTS,
    REMOVED_ENDPOINTS,
    USED_WEIGHT_HEADERS,
    Budget,
    Endpoint,
    Param,
    ParamType,
    Security,
)
from ..models import AccountInfo
from ._faults import FaultKind, FaultPlan, FaultRule
from ._stream import (
    LISTEN_KEY_PATH,
    ListenKeyRecord,
    StreamConnection,
    StreamFault,
    StreamFaultRule,
    StreamHub,
    fault_options,
)

if TYPE_CHECKING:
    import contextlib

    import httpx

    from ._portfolio import PortfolioState
    from ._scenario import Scenario
    from ._server import FakeServer
    from ._ws import FakeWebSocketConnector

__all__ = [
    "DEFAULT_ACCOUNT",
    "FAKE_BASE_URL",
    "FAKE_STREAM_URL",
    "ExchangeError",
    "FakeExchange",
    "FakeRequest",
    "Handler",
    "Reply",
    "ReplyAction",
    "RequestRecord",
    "WeightKey",
    "WindowUsage",
    "register_handler",
]

FAKE_BASE_URL = "https://fake-exchange.binance-pmpro.test"
"""Base URL for the in-process transport (never resolved: requests go to the fake directly).
It is ``https://`` because the client refuses plain HTTP to anything but loopback."""

FAKE_STREAM_URL = "wss://fake-stream.binance-pmpro.test/pm-classic"
"""Stream URL for the in-process connector (:meth:`FakeExchange.ws_connector`); never
resolved either."""

DEFAULT_ACCOUNT: Mapping[str, str] = {
    "uniMMR": "5167.92171923",
    "accountEquity": "122607.35137903",
    "actualEquity": "142607.35137903",
    "accountMaintMargin": "23.72469206",
    "accountInitialMargin": "47.44938412",
    "totalAvailableBalance": "122,559.90199491",
    "accountStatus": "NORMAL",
    "accountType": "PM_1",
}
"""The account fields of Binance's documentation example (``GET /sapi/v1/portfolio/account``),
thousands separator included; a new account starts with them."""

MINUTE_MS = 60_000
MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000
MAX_BAN_SECONDS = 3 * 24 * 3600
"""Binance: bans grow "from 2 minutes to 3 days"."""

_UINT_RE = re.compile(r"[0-9]{1,20}")
# Binance's keys are 64 letters and digits; a key with other characters cannot be one.
_KEY_FORMAT_RE = re.compile(r"[A-Za-z0-9]{1,256}")
_SIGNED_PARAMS = frozenset({"timestamp", "recvWindow"})

_MSG_TOO_MUCH = (
    "Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
_MSG_BANNED = (
    "Way too much request weight used; IP banned until {until}. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
_HTML_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>fake-edge</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


# --- what the shells get back ----------------------------------------------------------


class ReplyAction(enum.Enum):
    """What the shell does with a :class:`Reply`."""

    RESPOND = "respond"
    """Send the whole answer."""
    DROP = "drop"
    """Close the connection without answering."""
    RESET = "reset"
    """Send the status, headers and ``Reply.send_bytes`` bytes of the body, then reset."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The exchange's answer to one request, before it goes on the wire.

    ``headers`` never include ``Content-Length``: the shell adds it from ``len(body)``.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    action: ReplyAction = ReplyAction.RESPOND
    delay: float = 0.0
    """Seconds the shell waits before doing anything (a slow answer)."""
    send_bytes: int | None = None
    """For :attr:`ReplyAction.RESET`: body bytes sent before the reset."""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the exchange saw, and how it answered. Never holds a signature."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    """Decoded parameters (query string, then form body), ``signature`` left out."""
    api_key: str | None
    """The ``X-MBX-APIKEY`` header as sent (an API key is an identifier, not a secret)."""
    account: str | None
    """The account the key belongs to; None for a missing or unknown key."""
    client_ip: str
    server_time_ms: int
    """The exchange's clock when the request arrived (clock skew faults included)."""
    status: int | None
    """HTTP status answered; None when the connection was dropped without an answer."""
    code: int | None
    """Binance error code of the answer; None for a success."""
    weight: int
    """Request weight charged to the request's budget (0 when nothing was charged)."""
    fault: FaultKind | None
    """The injected fault that spoiled this request, if any."""


@dataclass(frozen=True, slots=True)
class WeightKey:
    """One weight budget as the fake exchange counts it (decision 1).

    ``owner`` is the account for UID budgets, the client's IP for IP budgets; ``endpoint``
    is the path, or ``""`` when the budget is shared (all of ``/api``; all IP-limited
    ``/sapi`` endpoints when the exchange counts per IP in total).
    """

    budget: Budget
    owner: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """The weight counted on one budget in one server minute."""

    key: WeightKey
    window_start_ms: int
    """Start of the window on the server's clock (a multiple of the window length)."""
    limit: int
    """The budget's current limit per window."""
    weight: int
    """Weight counted, as the used-weight header reports it (429'd requests included when
    the exchange charges them)."""
    accepted_weight: int
    """Weight of the requests that were let through (not answered 429)."""
    attempted_weight: int
    """Weight of every request that reached the budget, 429'd or not."""
    requests: int
    rate_limited: int
    """Requests answered 429 (or 418 at the moment of the ban) in this window."""

    @property
    def over_limit(self) -> bool:
        """Whether clients tried to spend more than the limit in this window."""
        return self.attempted_weight > self.limit


class _Usage:
    __slots__ = ("accepted", "attempted", "rate_limited", "requests", "weight")

    def __init__(self) -> None:
        self.weight = 0
        self.accepted = 0
        self.attempted = 0
        self.requests = 0
        self.rate_limited = 0


class _IpState:
    """Rate-limit strikes and bans of one client IP."""

    __slots__ = ("banned_until_ms", "bans", "strike_window", "strikes")

    def __init__(self) -> None:
        self.strike_window = -1
        self.strikes = 0
        self.bans = 0
        self.banned_until_ms = 0


# --- handlers --------------------------------------------------------------------------


class ExchangeError(Exception):
    """Raised by a handler to answer with Binance's error body ``{"code", "msg"}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"HTTP {status} code {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """What a handler sees: an authenticated request that passed every check."""

    endpoint: Endpoint
    params: Mapping[str, str]
    """Decoded parameters, ``timestamp``/``recvWindow`` included, ``signature`` left out."""
    account: str | None
    """The account of the API key (None for endpoints that need no key)."""
    client_ip: str
    server_time_ms: int


Handler = Callable[["FakeExchange", FakeRequest], Any]
"""Answers one endpoint: returns the JSON-serialisable body of a 200 answer, or raises
:class:`ExchangeError`."""


@dataclass(frozen=True, slots=True)
class _HandlerSpec:
    function: Handler
    params: frozenset[str]


_HANDLERS: dict[str, _HandlerSpec] = {}


def register_handler(name: str, *, params: Iterable[str] = ()) -> Callable[[Handler], Handler]:
    """Decorator: make ``function`` the default handler of the endpoint called ``name`` in
    :data:`binance_pmpro.endpoints.ENDPOINTS` for every FakeExchange.

    ``params`` lists the endpoint's own parameters; ``timestamp`` and ``recvWindow`` are
    accepted on SIGNED endpoints without listing them. Any other parameter is refused with
    ``-1104``, as Binance does.
    """

    def decorate(function: Handler) -> Handler:
        _HANDLERS[name] = _HandlerSpec(function, frozenset(params))
        return function

    return decorate


@register_handler("account_info")
def _account_info(exchange: FakeExchange, request: FakeRequest) -> Any:
    assert request.account is not None  # SIGNED: the key was checked
    if not exchange.is_portfolio_margin(request.account):
        raise ExchangeError(
            400, -21001, "invalid request: request ID is not a Portfolio Margin Account"
        )
    return exchange.account_fields(request.account, now_ms=request.server_time_ms)


@register_handler("server_time")
def _server_time(exchange: FakeExchange, request: FakeRequest) -> Any:
    return {"serverTime": request.server_time_ms}


# The listen key calls live on the USDⓈ-M futures host. The fake routes them itself, ahead of
# the SDK's endpoint table, so what it serves does not depend on how the client names them.
_LISTEN_KEY_ENDPOINTS: Mapping[tuple[str, str], Endpoint] = {
    (method, LISTEN_KEY_PATH): Endpoint(
        name=name,
        method=method,
        path=LISTEN_KEY_PATH,
        security=Security.USER_STREAM,
        budget=Budget.FAPI_IP,
        weight=1,
        response=dict,
    )
    for method, name in (
        ("POST", "fake_listen_key_create"),
        ("PUT", "fake_listen_key_keep_alive"),
        ("DELETE", "fake_listen_key_close"),
    )
}
_NO_LISTEN_KEY = "This listenKey does not exist."


@register_handler("fake_listen_key_create")
def _listen_key_create(exchange: FakeExchange, request: FakeRequest) -> Any:
    assert request.account is not None  # USER_STREAM: the key was checked
    return {"listenKey": exchange._stream.create(request.account, request.server_time_ms)}


@register_handler("fake_listen_key_keep_alive")
def _listen_key_keep_alive(exchange: FakeExchange, request: FakeRequest) -> Any:
    assert request.account is not None
    value = exchange._stream.keep_alive(request.account, request.server_time_ms)
    if value is None:
        raise ExchangeError(400, -1125, _NO_LISTEN_KEY)
    return {"listenKey": value}


@register_handler("fake_listen_key_close")
def _listen_key_close(exchange: FakeExchange, request: FakeRequest) -> Any:
    assert request.account is not None
    if not exchange._stream.close(request.account, request.server_time_ms):
        raise ExchangeError(400, -1125, _NO_LISTEN_KEY)
    return {}


# --- keys ------------------------------------------------------------------------------


class _Key:
    """A registered API key: its account and how its signatures are checked."""

    __slots__ = ("_public", "_secret", "account", "algorithm")

    def __init__(
        self,
        algorithm: str,
        account: str,
        *,
        secret: bytes | None = None,
        public: rsa.RSAPublicKey | ed25519.Ed25519PublicKey | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.account = account
        self._secret = secret
        self._public = public

    def verify(self, payload: bytes, signature: str) -> bool:
        """Whether ``signature`` (already percent-decoded) signs ``payload``."""
        if not signature or not signature.isascii():
            return False
        if self._secret is not None:
            # Binance compares HMAC signatures case-insensitively.
            expected = hmac.new(self._secret, payload, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, signature.lower())
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        try:
            if isinstance(self._public, rsa.RSAPublicKey):
                self._public.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
            elif isinstance(self._public, ed25519.Ed25519PublicKey):
                self._public.verify(raw, payload)
            else:  # pragma: no cover - every key has a secret or a public key
                return False
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"_Key({self.algorithm}, account={self.account!r})"


def _load_public_key(pem: str | bytes, expected: type[Any], label: str) -> Any:
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    if b"PRIVATE KEY" in data:
        raise ValueError(f"give the {label} *public* key, not the private key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ValueError(f"not a PEM {label} public key") from None
    if not isinstance(key, expected):
        raise ValueError(f"the key is a {type(key).__name__}, not an {label} public key")
    return key


def _random_token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


# --- request parsing -------------------------------------------------------------------


@dataclass(slots=True)
class _Params:
    values: dict[str, str]
    duplicate: bool
    signature: str | None
    signature_last: bool
    payload: bytes


def _pairs(raw: str) -> list[tuple[str, str, int]]:
    """``name=value`` pieces of a query string or form body, still encoded, with the offset
    of each piece."""
    pieces: list[tuple[str, str, int]] = []
    offset = 0
    for chunk in raw.split("&") if raw else ():
        if chunk:
            name, _, value = chunk.partition("=")
            pieces.append((name, value, offset))
        offset += len(chunk) + 1
    return pieces


def _parse(query: str, body: bytes) -> _Params:
    """Parameters and the signed payload, as Binance reads them.

    The payload is the query string followed by the body with no separator, ``signature``
    excluded (reference section 2.2). A name given twice in the same place is a -1101; one
    given in both, the query string's value wins.
    """
    body_text = body.decode("latin-1")  # one char per byte: offsets stay byte offsets
    sources = (("query", _pairs(query)), ("body", _pairs(body_text)))
    values: dict[str, str] = {}
    duplicate = False
    signature: str | None = None
    signature_last = False
    payload = query.encode("latin-1", "replace") + body
    for where, pieces in reversed(sources):  # body first, so the query string wins
        seen: set[str] = set()
        for index, (raw_name, raw_value, offset) in enumerate(pieces):
            name = unquote_plus(raw_name)
            if name in seen:
                duplicate = True
            seen.add(name)
            if name == "signature":
                if signature is not None:
                    duplicate = True
                signature = unquote_plus(raw_value)
                signature_last = index == len(pieces) - 1
                cut = max(offset - 1, 0)
                if where == "query":
                    payload = query[:cut].encode("latin-1", "replace") + body
                else:
                    payload = query.encode("latin-1", "replace") + body[:cut]
                continue
            values[name] = unquote_plus(raw_value)
    return _Params(values, duplicate, signature, signature_last, payload)


def _error_body(code: int, msg: str) -> bytes:
    return msgspec.json.encode({"code": code, "msg": msg})


@dataclass(slots=True)
class _Answer:
    """A reply under construction, with what the request record needs."""

    status: int
    body: bytes
    code: int | None = None
    headers: list[tuple[str, str]] | None = None
    weight: int = 0
    content_type: str = "application/json"


def _error(status: int, code: int, msg: str) -> _Answer:
    return _Answer(status, _error_body(code, msg), code)


# --- the exchange ----------------------------------------------------------------------


class FakeExchange:
    """A stand-in for Binance's Portfolio Margin Pro REST API, for tests and demos.

    It checks requests as Binance does (API key, HMAC/RSA/Ed25519 signature over the exact
    bytes sent, ``timestamp`` and ``recvWindow``), counts request weight per budget in
    fixed minutes of its own clock and answers 429/418 like Binance, keeps per-account state
    that tests can set, logs every request, and misbehaves on demand (:meth:`inject`).

    Use it in-process through :meth:`transport` / :meth:`http_client` (no sockets; virtual
    clocks work), or as a real HTTP/1.1 server on loopback with :meth:`serve`. Both ways
    behave the same. A :class:`~binance_pmpro.PortfolioMarginProClient` talks to it with
    ``base_url=fake.base_url, http_client=fake.http_client()`` and the demo key pair
    (:attr:`demo_api_key`, :attr:`demo_api_secret`), or keys registered with
    :meth:`add_hmac_key`, :meth:`add_rsa_key` and :meth:`add_ed25519_key`.

    Options:

    - ``uid_limit``, ``ip_limit``, ``api_limit``: weight per minute of each UID-limited
      ``/sapi`` endpoint, each IP-limited ``/sapi`` endpoint, and the shared ``/api``
      budget (Binance: 180,000, 12,000 and 6,000). Settable later as attributes.
    - ``clock``: a zero-argument callable giving the server's time in ms (for virtual
      clocks, e.g. ``lambda: anyio.current_time() * 1000``); default the wall clock.
      ``clock_offset_ms`` (also an attribute, changeable at any time) is added to it.
    - ``seed``: seeds the random source of :meth:`inject_randomly`.
    - ``ip_total``: count all IP-limited ``/sapi`` endpoints of an IP on one budget
      instead of one budget per endpoint.
    - ``charge_rate_limited``: whether 429'd requests count toward their window.
    - ``ban_after``: 429 answers an IP may get within one server minute before its next
      over-limit request bans it (418); None never bans.
    - ``ban_seconds``: length of an IP's first ban; each further ban doubles it (3 days
      at most).
    - ``window_ms``: length of the counting window (Binance: one minute). Shorter windows
      let real-time tests see several windows quickly; limits then apply per window and the
      headers keep their ``-1M`` names.
    - ``fapi_limit``: weight per minute of the futures host's IP budget, which the listen
      key calls draw on (Binance: 2,400).

    The user data stream (``/fapi/v1/listenKey`` and ``<stream_url>/ws/<listenKey>``):

    - ``stream_period``: seconds between ``PM_PRO_ACCOUNT_UPDATE`` events (Binance: 5).
    - ``ping_interval``: seconds between the server's pings (Binance: 180);
      ``pong_timeout``: the connection is dropped when no pong came this long after a
      ping (Binance: 600).
    - ``max_connection_lifetime``: seconds after which a connection is closed (Binance: 24 h).
    - ``listen_key_validity``: seconds a listen key lives after its creation or last
      keep-alive (Binance: 60 minutes).
    - ``stream_message_limit``: incoming frames per second a connection may send before it
      is closed (Binance's documented 5 for Portfolio Margin Pro); None: no limit.
    - ``risk_levels``: what ``riskLevelChange`` follows: ``"status"`` (default), the
      account's ``accountStatus``, as REST reports it; ``"tiers"``, the worse of that and the
      uniMMR tier of Binance's risk table (for tests that slide only uniMMR).
    - ``risk_check_interval``: how often (seconds) an open connection looks at the account's
      risk level for ``riskLevelChange`` (default: the smaller of 1 s and ``stream_period``);
      changes made with :meth:`set_account` are seen at once.

    All of them are attributes too; changes apply to connections opened afterwards.

    Not thread-safe: use it from one event loop thread.
    """

    def __init__(
        self,
        *,
        uid_limit: int = 180_000,
        ip_limit: int = 12_000,
        api_limit: int = 6_000,
        clock_offset_ms: float = 0,
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
        ip_total: bool = False,
        charge_rate_limited: bool = True,
        ban_after: int | None = 10,
        ban_seconds: float = 120.0,
        window_ms: int = MINUTE_MS,
        max_records: int = 100_000,
        fapi_limit: int = 2_400,
        stream_period: float = 5.0,
        ping_interval: float = 180.0,
        pong_timeout: float = 600.0,
        max_connection_lifetime: float = 24 * 3600.0,
        listen_key_validity: float = 3600.0,
        stream_message_limit: int | None = 5,
        risk_levels: str = "status",
        risk_check_interval: float | None = None,
    ) -> None:
        if isinstance(window_ms, bool) or not isinstance(window_ms, int) or window_ms <= 0:
            raise ValueError(f"window_ms must be a positive int, not {window_ms!r}")
        self.uid_limit = uid_limit
        self.ip_limit = ip_limit
        self.api_limit = api_limit
        self.fapi_limit = fapi_limit
        for name, seconds in (
            ("stream_period", stream_period),
            ("ping_interval", ping_interval),
            ("pong_timeout", pong_timeout),
            ("max_connection_lifetime", max_connection_lifetime),
            ("listen_key_validity", listen_key_validity),
        ):
            if isinstance(seconds, bool) or not seconds > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {seconds!r}")
        self.stream_period = stream_period
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_connection_lifetime = max_connection_lifetime
        self.listen_key_validity = listen_key_validity
        self.stream_message_limit = stream_message_limit
        if risk_levels not in ("status", "tiers"):
            raise ValueError(f"risk_levels must be 'status' or 'tiers', not {risk_levels!r}")
        self.risk_levels = risk_levels
        self._risk_check_interval = risk_check_interval
        self.clock_offset_ms = clock_offset_ms
        """Added to the server clock (ms); change it at any time to skew the exchange."""
        self._clock = clock
        self.ip_total = ip_total
        self.charge_rate_limited = charge_rate_limited
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.window_ms = window_ms
        """Length of a counting window in ms (60,000 like Binance unless told otherwise)."""
        self.max_records = max_records
        self.requests: list[RequestRecord] = []
        """Every request seen, oldest first (the oldest are dropped past ``max_records``)."""
        self._keys: dict[str, _Key] = {}
        self._accounts: dict[str, dict[str, Any]] = {}
        self._portfolio: dict[str, PortfolioState] = {}
        self._not_pm: set[str] = set()
        self._usage: dict[tuple[WeightKey, int], _Usage] = {}
        self._ips: dict[str, _IpState] = {}
        self._faults = FaultPlan(seed)
        self._handlers: dict[str, _HandlerSpec] = dict(_HANDLERS)
        self._stream = StreamHub(self)
        self._scenario: tuple[str, Scenario, float] | None = None
        self.demo_api_key = _random_token(64)
        """A pre-registered HMAC API key of account ``"main"`` (new for every instance)."""
        self.demo_api_secret = _random_token(64)
        """The secret of :attr:`demo_api_key`."""
        self.add_hmac_key(self.demo_api_key, self.demo_api_secret)

    def __repr__(self) -> str:
        return (
            f"FakeExchange(keys={len(self._keys)}, accounts={len(self._accounts)}, "
            f"requests={len(self.requests)})"
        )

    # --- clock ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The server's current time in whole ms (clock plus ``clock_offset_ms``)."""
        base = self._clock() if self._clock is not None else time.time() * 1000
        return math.floor(base + self.clock_offset_ms)

    # --- keys and accounts ---------------------------------------------------------------

    def add_hmac_key(self, api_key: str, secret: str, *, account: str = "main") -> None:
        """Register an HMAC-SHA256 key pair for ``account`` (created if new)."""
        if not secret:
            raise ValueError("the secret is empty")
        self._add_key(api_key, _Key("HMAC_SHA256", account, secret=secret.encode()))

    def add_rsa_key(self, api_key: str, public_pem: str | bytes, *, account: str = "main") -> None:
        """Register an RSA key (its PEM public key) for ``account`` (created if new)."""
        public = _load_public_key(public_pem, rsa.RSAPublicKey, "RSA")
        self._add_key(api_key, _Key("RSA", account, public=public))

    def add_ed25519_key(
        self, api_key: str, public_pem: str | bytes, *, account: str = "main"
    ) -> None:
        """Register an Ed25519 key (its PEM public key) for ``account`` (created if new)."""
        public = _load_public_key(public_pem, ed25519.Ed25519PublicKey, "Ed25519")
        self._add_key(api_key, _Key("ED25519", account, public=public))

    def remove_key(self, api_key: str) -> None:
        """Forget an API key: later requests with it get ``-2015``."""
        self._keys.pop(api_key, None)

    def _add_key(self, api_key: str, key: _Key) -> None:
        if not api_key or api_key.strip() != api_key:
            raise ValueError("the API key must be non-empty and without surrounding whitespace")
        self._keys[api_key] = key
        self.account_state(key.account)

    def account_state(self, account: str = "main") -> dict[str, Any]:
        """The live wire fields of ``account`` (created with :data:`DEFAULT_ACCOUNT` if new).

        Keys are Binance's names (``"uniMMR"``...), values what goes into the JSON
        (normally strings). Changes apply to the next answer; delete a key to leave the
        field out.
        """
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = dict(DEFAULT_ACCOUNT)
        return state

    def account_fields(
        self, account: str = "main", *, now_ms: float | None = None
    ) -> dict[str, Any]:
        """A copy of the wire fields of ``account`` as they stand at ``now_ms`` (default now),
        an installed :class:`~binance_pmpro.testing.Scenario` applied: what
        ``GET /sapi/v1/portfolio/account`` answers and the user data stream sends."""
        if self._scenario is not None and self._scenario[0] == account:
            _, scenario, start = self._scenario
            now = self.now_ms() if now_ms is None else now_ms
            self._set_fields(account, scenario.fields_at(max(0.0, (now - start) / 1000)))
        return dict(self.account_state(account))

    def _install_scenario(self, account: str, scenario: Scenario, start_ms: float) -> None:
        self._scenario = (account, scenario, start_ms)
        self.set_account(account, **scenario.fields_at(0.0))

    def set_account(self, account: str = "main", **fields: Any) -> None:
        """Set fields of ``account`` by their snake_case names (``uni_mmr=Decimal("1.2")``,
        ``account_status="MARGIN_CALL"``); Binance's own names work too.

        Decimals are written in plain notation, enums by value, other values with
        ``str()`` (a string goes out verbatim, so malformed values can be tested); ``None``
        removes the field from the answer.
        """
        self._set_fields(account, fields)
        # Open stream connections see a change at once (riskLevelChange is immediate).
        now = self.now_ms()
        for session in list(self._stream.sessions):
            if session.record.account == account:
                session.check_risk(now)
                session.poke()

    def _set_fields(self, account: str, fields: Mapping[str, Any]) -> None:
        state = self.account_state(account)
        for name, value in fields.items():
            wire = _ACCOUNT_WIRE_NAMES.get(name, name)
            if wire not in _ACCOUNT_WIRE_NAMES.values():
                known = ", ".join(sorted(_ACCOUNT_WIRE_NAMES))
                raise TypeError(f"unknown account field {name!r}; known: {known}")
            if value is None:
                state.pop(wire, None)
            else:
                state[wire] = _wire_value(value)

    def portfolio_state(self, account: str = "main") -> PortfolioState:
        """The Portfolio Margin Pro state of ``account`` (balances, loan, histories,
        switches) that the family's endpoints read and change; created from Binance's
        documentation examples if new. Change it freely: the next answer reflects it."""
        state = self._portfolio.get(account)
        if state is None:
            from ._portfolio import PortfolioState

            state = self._portfolio[account] = PortfolioState()
        return state

    def set_portfolio_margin(self, enabled: bool, *, account: str = "main") -> None:
        """Make ``account`` a Portfolio Margin account or not; a non-PM account's
        ``GET /sapi/v1/portfolio/account`` gets ``-21001``."""
        self.account_state(account)
        if enabled:
            self._not_pm.discard(account)
        else:
            self._not_pm.add(account)

    def is_portfolio_margin(self, account: str = "main") -> bool:
        """Whether ``account`` is a Portfolio Margin account (default True)."""
        return account not in self._not_pm

    def set_handler(self, name: str, function: Handler, *, params: Iterable[str] = ()) -> None:
        """Answer the endpoint ``name`` with ``function`` on this exchange only
        (see :func:`register_handler`)."""
        self._handlers[name] = _HandlerSpec(function, frozenset(params))

    # --- faults --------------------------------------------------------------------------

    def inject(
        self,
        kind: FaultKind | str,
        *,
        times: int = 1,
        path: str | None = None,
        **options: Any,
    ) -> FaultRule:
        """Spoil the next ``times`` requests (to ``path``, or any) with fault ``kind``.

        Scripted faults fire in the order they were injected, before random ones. Options
        per kind are listed on :class:`FaultKind`. Returns the rule (``rule.hits`` counts).
        """
        return self._faults.add_scripted(FaultKind(kind), times, path, options)

    def inject_randomly(
        self,
        kind: FaultKind | str,
        probability: float,
        *,
        path: str | None = None,
        **options: Any,
    ) -> FaultRule:
        """Spoil each request (to ``path``, or any) with fault ``kind`` with the given
        probability, drawn from the generator seeded by ``seed``."""
        return self._faults.add_random(FaultKind(kind), probability, path, options)

    def clear_faults(self) -> None:
        """Remove every injected fault (an IP ban already in force stays: see
        :meth:`clear_bans`)."""
        self._faults.clear()

    # --- weight ledger ---------------------------------------------------------------------

    def limit_of(self, budget: Budget) -> int:
        """The current weight limit per minute of a budget kind."""
        if budget is Budget.SAPI_UID:
            return self.uid_limit
        if budget is Budget.SAPI_IP:
            return self.ip_limit
        if budget is Budget.FAPI_IP:
            return self.fapi_limit
        return self.api_limit

    def weight_key(
        self, path: str = ACCOUNT_INFO.path, *, account: str = "main", ip: str = "127.0.0.1"
    ) -> WeightKey:
        """The budget a request to ``path`` by ``account`` from ``ip`` is charged to."""
        endpoint = _endpoint_for_path(path)
        return self._weight_key(endpoint, account, ip)

    def _weight_key(self, endpoint: Endpoint, account: str | None, ip: str) -> WeightKey:
        if endpoint.budget is Budget.SAPI_UID:
            return WeightKey(Budget.SAPI_UID, account or "", endpoint.path)
        if endpoint.budget is Budget.SAPI_IP:
            return WeightKey(Budget.SAPI_IP, ip, "" if self.ip_total else endpoint.path)
        if endpoint.budget is Budget.FAPI_IP:
            return WeightKey(Budget.FAPI_IP, ip, "")
        return WeightKey(Budget.API_IP, ip, "")

    def used_weight(
        self,
        path: str = ACCOUNT_INFO.path,
        *,
        account: str = "main",
        ip: str = "127.0.0.1",
        at_ms: float | None = None,
    ) -> int:
        """Weight counted on the budget of ``path`` (for ``account`` / ``ip``) in the server
        minute containing ``at_ms`` (default: now) — what the used-weight header says."""
        key = self.weight_key(path, account=account, ip=ip)
        at = self.now_ms() if at_ms is None else math.floor(at_ms)
        usage = self._usage.get((key, at - at % self.window_ms))
        return usage.weight if usage is not None else 0

    @property
    def ledger(self) -> list[WindowUsage]:
        """Every (budget, server minute) that saw a request, oldest minute first."""
        entries = [
            WindowUsage(
                key,
                window,
                self.limit_of(key.budget),
                usage.weight,
                usage.accepted,
                usage.attempted,
                usage.requests,
                usage.rate_limited,
            )
            for (key, window), usage in self._usage.items()
        ]
        entries.sort(key=lambda u: (u.window_start_ms, u.key.budget.value, u.key.owner))
        return entries

    def windows_over_limit(self) -> list[WindowUsage]:
        """The ledger entries where clients tried to spend more than the limit."""
        return [usage for usage in self.ledger if usage.over_limit]

    def banned_until_ms(self, ip: str = "127.0.0.1") -> int | None:
        """When the ban of ``ip`` ends (server ms), or None when it is not banned now."""
        state = self._ips.get(ip)
        if state is None or state.banned_until_ms <= self.now_ms():
            return None
        return state.banned_until_ms

    def clear_bans(self) -> None:
        """Lift every IP ban and forget the 429 strikes (ban lengths restart at 2 minutes)."""
        self._ips.clear()

    def clear_requests(self) -> None:
        """Empty :attr:`requests`."""
        self.requests.clear()

    # --- the user data stream ---------------------------------------------------------------

    @property
    def risk_check_interval(self) -> float:
        """Seconds between an open connection's looks at the risk level (see the class)."""
        if self._risk_check_interval is not None:
            return self._risk_check_interval
        return min(1.0, self.stream_period)

    @risk_check_interval.setter
    def risk_check_interval(self, seconds: float | None) -> None:
        self._risk_check_interval = seconds

    @property
    def listen_key_log(self) -> list[ListenKeyRecord]:
        """Every listen key call answered and every forced expiry, oldest first: keys
        created, reused, kept alive and closed, with the exchange's time of each."""
        return list(self._stream.log)

    def listen_key(self, account: str = "main") -> str | None:
        """The live listen key of ``account``, or None (none created, expired or closed)."""
        key = self._stream.live_key(account, self.now_ms())
        return key.value if key is not None else None

    def expire_listen_key(self, account: str = "main") -> bool:
        """Make the live listen key of ``account`` expire now (as if nobody had kept it
        alive): its connections send ``listenKeyExpired``. False when there was none."""
        return self._stream.expire(account, self.now_ms())

    @property
    def stream_connections(self) -> list[StreamConnection]:
        """Every stream connection accepted, oldest first, with its counters (events sent,
        pings, pongs, incoming frames per second); updated while they run."""
        return list(self._stream.connections)

    @property
    def rejected_handshakes(self) -> int:
        """Stream handshakes refused (unknown, expired or closed listen key)."""
        return self._stream.rejected_handshakes

    def inject_stream(
        self, kind: StreamFault | str, *, account: str | None = None, **options: Any
    ) -> StreamFaultRule:
        """Make the user data stream misbehave now (kinds and options: :class:`StreamFault`).

        The fault hits every open connection (of ``account``, if given); when none is open
        it waits for the next connection and hits it right after its handshake.
        ``EXPIRE_LISTEN_KEY`` acts on the live keys instead, connected or not. Returns the
        rule (``rule.hits`` counts the connections, or keys, it hit).
        """
        fault = StreamFault(kind)
        return self._stream.inject(fault, account, fault_options(fault, options))

    def clear_stream_faults(self) -> None:
        """Forget stream faults still waiting for a connection."""
        self._stream.pending.clear()

    @property
    def stream_url(self) -> str:
        """The stream URL to give a client that uses :meth:`ws_connector` (in-process)."""
        return FAKE_STREAM_URL

    @property
    def futures_base_url(self) -> str:
        """The futures base URL for the in-process transport (the listen key calls): the
        same fake host as :attr:`base_url`."""
        return FAKE_BASE_URL

    def ws_connector(self, *, client_ip: str = "127.0.0.1") -> FakeWebSocketConnector:
        """A WebSocket connector (``stream_connector=`` of the client) that opens stream
        connections to this exchange in-process: no sockets, so virtual clocks work when
        the exchange's ``clock`` follows the event loop's."""
        from ._ws import FakeWebSocketConnector

        return FakeWebSocketConnector(self, client_ip=client_ip)

    # --- the shells ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The base URL to give a client that uses :meth:`http_client` (in-process)."""
        return FAKE_BASE_URL

    def transport(self, *, client_ip: str = "127.0.0.1") -> httpx.AsyncBaseTransport:
        """An httpx transport answering from this exchange in-process (no sockets).

        ``client_ip`` is the address the exchange sees (to simulate several hosts).
        """
        from ._transport import FakeTransport

        return FakeTransport(self, client_ip=client_ip)

    def http_client(self, *, client_ip: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` bound in-process to this exchange, ``base_url`` set to
        :attr:`base_url`; keyword arguments go to ``httpx.AsyncClient``."""
        import httpx

        kwargs.setdefault("base_url", FAKE_BASE_URL)
        return httpx.AsyncClient(transport=self.transport(client_ip=client_ip), **kwargs)

    def serve(
        self, host: str = "127.0.0.1", port: int = 0
    ) -> contextlib.AbstractAsyncContextManager[FakeServer]:
        """Serve this exchange over HTTP/1.1 on ``host:port`` (port 0: an ephemeral one)
        while the ``async with`` block runs; works on asyncio and trio.

        ``async with fake.serve() as server:`` gives ``server.base_url``.
        """
        from ._server import serve

        return serve(self, host=host, port=port)

    # --- the pure core -------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes = b"",
        *,
        client_ip: str = "127.0.0.1",
        now_ms: float | None = None,
    ) -> Reply:
        """Answer one request: ``target`` is the path with its query string exactly as sent,
        ``now_ms`` the server's time (default: :meth:`now_ms`). Records the request.

        Synchronous and free of I/O: the shells do the waiting and the socket work that the
        returned :class:`Reply` asks for.
        """
        now = self.now_ms() if now_ms is None else math.floor(now_ms)
        method = method.upper()
        path, _, query = target.partition("?")
        api_key: str | None = None
        for name, value in headers:
            if name.lower() == "x-mbx-apikey":
                api_key = value
        rule = self._faults.pick(path)
        if rule is not None and rule.kind is FaultKind.CLOCK_SKEW:
            now += math.floor(rule.options["offset_ms"])
        params = _parse(query, body)
        key = self._keys.get(api_key) if api_key else None
        if rule is not None and rule.kind.replaces_answer:
            answer = self._fault_answer(rule, now, client_ip)
        else:
            answer = self._process(method, path, params, api_key, key, client_ip, now)
        if rule is not None and rule.kind is FaultKind.DROP_CONNECTION:
            reply = Reply(0, (), b"", action=ReplyAction.DROP)
        else:
            reply = self._reply(answer, now)
        if rule is not None and not rule.kind.replaces_answer:
            reply = _mangle(reply, rule)
        self._record(
            RequestRecord(
                method=method,
                path=path,
                params=tuple(params.values.items()),
                api_key=api_key,
                account=key.account if key is not None else None,
                client_ip=client_ip,
                server_time_ms=now,
                status=None if reply.action is ReplyAction.DROP else reply.status,
                code=answer.code,
                weight=answer.weight,
                fault=rule.kind if rule is not None else None,
            )
        )
        return reply

    def _record(self, record: RequestRecord) -> None:
        self.requests.append(record)
        if len(self.requests) > 2 * self.max_records:  # trim in batches: O(1) amortised
            del self.requests[: len(self.requests) - self.max_records]

    def _reply(self, answer: _Answer, now: int) -> Reply:
        headers = [("Content-Type", answer.content_type)] if answer.body else []
        headers.append(("Date", formatdate(now / 1000, usegmt=True)))
        if answer.headers:
            headers.extend(answer.headers)
        return Reply(answer.status, tuple(headers), answer.body)

    def _process(
        self,
        method: str,
        path: str,
        params: _Params,
        api_key: str | None,
        key: _Key | None,
        client_ip: str,
        now: int,
    ) -> _Answer:
        endpoint = _LISTEN_KEY_ENDPOINTS.get((method, path)) or ENDPOINTS.get((method, path))
        if endpoint is None:
            if (method, path) in REMOVED_ENDPOINTS:
                return _error(400, -21015, "This endpoint has been deprecated and removed.")
            return _error(404, -1099, "Not found, unauthenticated, or unauthorized.")
        ip_state = self._ips.get(client_ip)
        if ip_state is not None and now < ip_state.banned_until_ms:
            return self._banned(ip_state.banned_until_ms, now)

        key_error: _Answer | None = None
        if endpoint.security.needs_api_key and key is None:
            if not api_key or not _KEY_FORMAT_RE.fullmatch(api_key):
                key_error = _error(401, -2014, "API-key format invalid.")
            else:
                key_error = _error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        account = key.account if key is not None else None

        try:
            weight = endpoint.weight_for(params.values)
        except (KeyError, ValueError, TypeError):
            weight = endpoint.weight_for({})
        extra: list[tuple[str, str]] = []
        charged = 0
        if endpoint.budget is not Budget.SAPI_UID or account is not None:
            limited, charged, extra = self._charge(
                self._weight_key(endpoint, account, client_ip), weight, client_ip, now
            )
            if limited is not None:
                limited.headers = extra + (limited.headers or [])
                limited.weight = charged
                return limited

        answer = key_error or self._check(endpoint, params, key, now)
        if answer is None:
            answer = self._run_handler(endpoint, params, account, client_ip, now)
        answer.headers = extra + (answer.headers or [])
        answer.weight = charged
        return answer

    def _check(
        self, endpoint: Endpoint, params: _Params, key: _Key | None, now: int
    ) -> _Answer | None:
        """Binance's parameter, timing and signature checks; None when all pass."""
        if params.duplicate:
            return _error(400, -1101, "Duplicate values for a parameter detected.")
        values = params.values
        if endpoint.security.signed:
            assert key is not None
            timestamp = values.get("timestamp")
            if not timestamp:
                return _mandatory("timestamp")
            if not _UINT_RE.fullmatch(timestamp):
                return _illegal("timestamp")
            raw_window = values.get("recvWindow")
            recv_window = DEFAULT_RECV_WINDOW_MS
            if raw_window is not None:
                if not _UINT_RE.fullmatch(raw_window):
                    return _illegal("recvWindow")
                recv_window = int(raw_window)
                if not 0 < recv_window <= MAX_RECV_WINDOW_MS:
                    return _error(400, -1131, "recvWindow must be less than 60000.")
            if not params.signature:
                return _mandatory("signature")
            stamp = int(timestamp)
            if stamp >= now + 1000:
                return _error(
                    400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
                )
            if now - stamp > recv_window:
                return _error(
                    400, -1021, "Timestamp for this request is outside of the recvWindow."
                )
            if not params.signature_last or not key.verify(params.payload, params.signature):
                return _error(400, -1022, "Signature for this request is not valid.")
        spec = self._handlers.get(endpoint.name)
        allowed = spec.params if spec is not None else frozenset()
        allowed = allowed | {param.name for param in endpoint.params}
        if endpoint.security.signed:
            allowed = allowed | _SIGNED_PARAMS
        unread = [name for name in values if name not in allowed]
        if unread:
            read = len(values) - len(unread)
            return _error(
                400,
                -1104,
                f"Not all sent parameters were read; read '{read}' parameter(s) but was sent "
                f"'{len(values)}'.",
            )
        for param in endpoint.params:
            problem = _param_problem(param, values.get(param.name))
            if problem is not None:
                return problem
        return None

    def _run_handler(
        self, endpoint: Endpoint, params: _Params, account: str | None, client_ip: str, now: int
    ) -> _Answer:
        spec = self._handlers.get(endpoint.name)
        if spec is None:
            return _error(
                501, -1020, f"FakeExchange has no handler for {endpoint.method} {endpoint.path}."
            )
        request = FakeRequest(endpoint, dict(params.values), account, client_ip, now)
        try:
            result = spec.function(self, request)
        except ExchangeError as exc:
            return _error(exc.status, exc.code, exc.msg)
        return _Answer(200, msgspec.json.encode(result))

    def _charge(
        self, key: WeightKey, weight: int, client_ip: str, now: int
    ) -> tuple[_Answer | None, int, list[tuple[str, str]]]:
        """Count ``weight`` on ``key`` in the current minute: ``(refusal or None, weight
        charged, used-weight headers)``."""
        window = now - now % self.window_ms
        usage = self._usage.get((key, window))
        if usage is None:
            usage = self._usage[key, window] = _Usage()
        limit = self.limit_of(key.budget)
        usage.requests += 1
        usage.attempted += weight
        refusal: _Answer | None = None
        if usage.weight + weight > limit:
            usage.rate_limited += 1
            refusal = self._over_limit(limit, window, client_ip, now)
            charged = weight if self.charge_rate_limited else 0
        else:
            usage.accepted += weight
            charged = weight
        usage.weight += charged
        return refusal, charged, _weight_headers(key.budget, usage.weight)

    def _over_limit(self, limit: int, window: int, client_ip: str, now: int) -> _Answer:
        state = self._ips.get(client_ip)
        if state is None:
            state = self._ips[client_ip] = _IpState()
        if state.strike_window != window:
            state.strike_window, state.strikes = window, 0
        if self.ban_after is not None and state.strikes >= self.ban_after:
            seconds = min(self.ban_seconds * 2**state.bans, MAX_BAN_SECONDS)
            state.bans += 1
            state.strikes = 0
            state.banned_until_ms = now + math.ceil(seconds * 1000)
            return self._banned(state.banned_until_ms, now)
        state.strikes += 1
        answer = _error(429, -1003, _MSG_TOO_MUCH.format(limit=limit))
        answer.headers = [("Retry-After", str(_seconds_until(window + self.window_ms, now)))]
        return answer

    def _banned(self, until: int, now: int) -> _Answer:
        answer = _error(418, -1003, _MSG_BANNED.format(until=until))
        answer.headers = [("Retry-After", str(_seconds_until(until, now)))]
        return answer

    def _fault_answer(self, rule: FaultRule, now: int, client_ip: str) -> _Answer:
        options = rule.options
        kind = rule.kind
        if kind is FaultKind.SERVER_ERROR_JSON or kind is FaultKind.ERROR:
            return _error(options["status"], options["code"], options["msg"])
        if kind is FaultKind.SERVER_ERROR_EMPTY:
            return _Answer(options["status"], b"")
        if kind is FaultKind.HTML_ERROR_PAGE:
            status = options["status"]
            page = _HTML_PAGE.format(status=status, reason=_REASONS.get(status, "Error"))
            return _Answer(status, page.encode(), content_type="text/html")
        if kind is FaultKind.TIMESTAMP_ERROR:
            return _error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        if kind is FaultKind.RATE_LIMITED:
            window_end = now - now % self.window_ms + self.window_ms
            retry_after = options["retry_after"]
            answer = _error(429, -1003, _MSG_TOO_MUCH.format(limit=self.uid_limit))
            wait = _seconds_until(window_end, now) if retry_after is None else retry_after
            answer.headers = [("Retry-After", _number(wait))]
            return answer
        if kind is FaultKind.IP_BANNED:
            state = self._ips.get(client_ip)
            if state is None:
                state = self._ips[client_ip] = _IpState()
            state.banned_until_ms = now + math.ceil(options["seconds"] * 1000)
            return self._banned(state.banned_until_ms, now)
        assert kind is FaultKind.DROP_CONNECTION
        return _Answer(0, b"")


def _mangle(reply: Reply, rule: FaultRule) -> Reply:
    """Apply a mangling fault to an answer the exchange produced."""
    options = rule.options
    kind = rule.kind
    if kind is FaultKind.SLOW_RESPONSE:
        return dataclasses.replace(reply, delay=float(options["delay"]))
    if kind is FaultKind.TRUNCATED_JSON:
        keep = options["keep"]
        cut = len(reply.body) // 2 if keep is None else min(keep, max(len(reply.body) - 1, 0))
        return dataclasses.replace(reply, body=reply.body[:cut])
    if kind is FaultKind.MALFORMED_JSON:
        body = options["body"]
        if body is None:
            body = reply.body.replace(b":", b"=", 1) if b":" in reply.body else b"{" + reply.body
        return dataclasses.replace(reply, body=bytes(body))
    if kind is FaultKind.RESET_MID_BODY:
        keep = options["keep"]
        sent = len(reply.body) // 2 if keep is None else min(keep, max(len(reply.body) - 1, 0))
        return dataclasses.replace(reply, action=ReplyAction.RESET, send_bytes=sent)
    return reply  # CLOCK_SKEW: already applied to the request's time


def _weight_headers(budget: Budget, used: int) -> list[tuple[str, str]]:
    name = USED_WEIGHT_HEADERS[budget].upper()
    if budget is Budget.API_IP:
        # /api answers carry the legacy interval-less header as well.
        return [("X-MBX-USED-WEIGHT", str(used)), (name, str(used))]
    return [(name, str(used))]


def _seconds_until(end_ms: int, now: int) -> int:
    return max(1, math.ceil((end_ms - now) / 1000))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _mandatory(name: str) -> _Answer:
    return _error(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _illegal(name: str) -> _Answer:
    return _error(
        400,
        -1100,
        f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
    )


_DECIMAL_RE = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?")


def _invalid(name: str) -> _Answer:
    return _error(400, -1130, f"Data sent for parameter '{name}' is not valid.")


def _param_problem(param: Param, raw: str | None) -> _Answer | None:
    """Binance's answer to a bad value of ``param`` per the endpoint table; None if good."""
    if raw is None or raw == "":
        return _mandatory(param.name) if param.mandatory else None
    if param.type is ParamType.LONG:
        if not _UINT_RE.fullmatch(raw):
            return _illegal(param.name)
        number = Decimal(raw)
    elif param.type is ParamType.DECIMAL:
        if not _DECIMAL_RE.fullmatch(raw):
            return _invalid(param.name)
        number = Decimal(raw)
    else:
        if param.choices and raw not in param.choices:
            return _invalid(param.name)
        return None
    if param.positive and number <= 0:
        return _invalid(param.name)
    if (param.minimum is not None and number < param.minimum) or (
        param.maximum is not None and number > param.maximum
    ):
        return _invalid(param.name)
    return None


def _endpoint_for_path(path: str) -> Endpoint:
    for endpoint in (*_LISTEN_KEY_ENDPOINTS.values(), *ENDPOINTS.values()):
        if endpoint.path == path:
            return endpoint
    raise KeyError(f"no endpoint with path {path!r} in the endpoint table")


def _wire_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise TypeError("give amounts as Decimal or str, never float")
    return str(value)


_ACCOUNT_WIRE_NAMES: Mapping[str, str] = {
    f.name: f.encode_name
    for f in msgspec.structs.fields(AccountInfo)
    if not f.encode_name.endswith(".raw")
}


# The family's handlers register themselves; imported last, as they build on this module.
from . import _portfolio  # noqa: E402, F401
