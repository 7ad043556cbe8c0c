"""The user data stream of FakeExchange: listen keys, and one stream connection as a state
machine.

Like the REST side, the logic is synchronous and free of I/O. :class:`StreamSession` is fed
the exchange's time and what the client sent, and fills an outbox with what goes on the wire
(text frames, pings, a close frame, or a dropped connection); it says by when it next wants
to run (:meth:`StreamSession.deadline_ms`). Two thin shells drive it: the loopback server
(``_server.py``, WebSocket over TCP with wsproto) and the in-process connector
(``_ws.py``, memory only, virtual clocks welcome).

Choices where Binance documents nothing (each is ours, and documented for test writers):

- A handshake with an unknown, expired or closed listen key is refused with HTTP 400 and
  ``{"code":-1125,"msg":"This listenKey does not exist."}``.
- ``PM_PRO_ACCOUNT_UPDATE`` goes out every ``stream_period`` seconds from the connection's
  opening (the first one a period after the handshake). Its fields are the REST account's:
  ``u`` uniMMR, ``eq`` accountEquity, ``ae`` actualEquity, ``im`` accountInitialMargin,
  ``mm`` accountMaintMargin, ``avb`` totalAvailableBalance, and ``vmw`` the same as ``avb``
  (Binance's example shows them equal; REST has no counterpart).
- The risk level is the account's ``accountStatus`` when that is ``MARGIN_CALL``,
  ``REDUCE_ONLY`` or ``FORCE_LIQUIDATION`` (``NORMAL`` when it is ``NORMAL``; other statuses
  leave it as it was), so the stream never contradicts what REST reports. With
  ``risk_levels="tiers"`` it is the worse of that and the uniMMR tier of
  ``monitor.RISK_TIERS`` (reminder tier ``MARGIN_CALL``, reduce-only ``REDUCE_ONLY``, at or
  below 1.05 ``FORCE_LIQUIDATION``), for tests that slide only uniMMR.
  ``riskLevelChange`` is sent when the level changes during a connection (not on
  connecting): into one of the three documented levels, and back to ``NORMAL`` (Binance's
  own SDK lists ``NORMAL`` among the values; that Binance sends it is unconfirmed). The
  level is looked at on every change made with ``set_account`` and every
  ``risk_check_interval``.
- After the connected key expires the connection sends ``listenKeyExpired`` and then no
  user events (pings go on), as the USDⓈ-M page describes. A ``DELETE`` of the key closes its
  connections with code 1000.
- The 24-hour lifetime and the scheduled-disconnect fault close with code 1001 ("going
  away"). Over ``stream_message_limit`` incoming messages within one second of the exchange's
  clock the connection is closed with 1008; no pong within ``pong_timeout`` of a ping drops it.
"""

from __future__ import annotations

import enum
import hashlib
import math
import secrets
import string
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from ._exchange import FakeExchange

__all__ = [
    "LISTEN_KEY_PATH",
    "STREAM_PATH_PREFIX",
    "ListenKeyRecord",
    "StreamConnection",
    "StreamFault",
    "StreamFaultRule",
]

LISTEN_KEY_PATH = "/fapi/v1/listenKey"
STREAM_PATH_PREFIX = "/pm-classic/ws/"
"""Connections go to ``<stream_url>/ws/<listenKey>``; the stream URL ends in ``/pm-classic``."""

_LEVEL_ORDER = {"NORMAL": 0, "MARGIN_CALL": 1, "REDUCE_ONLY": 2, "FORCE_LIQUIDATION": 3}
_TIER_LEVELS = {
    "free": "NORMAL",
    "reminder": "MARGIN_CALL",
    "reduce_only": "REDUCE_ONLY",
    "liquidation_risk": "FORCE_LIQUIDATION",
    "liquidation": "FORCE_LIQUIDATION",
}
_STATUS_LEVELS = {
    "MARGIN_CALL": "MARGIN_CALL",
    "REDUCE_ONLY": "REDUCE_ONLY",
    "FORCE_LIQUIDATION": "FORCE_LIQUIDATION",
}
_UPDATE_FIELDS = (
    ("u", "uniMMR"),
    ("eq", "accountEquity"),
    ("ae", "actualEquity"),
    ("im", "accountInitialMargin"),
    ("mm", "accountMaintMargin"),
    ("avb", "totalAvailableBalance"),
    ("vmw", "totalAvailableBalance"),
)
_RISK_FIELDS = (("u", "uniMMR"), ("eq", "accountEquity"), ("ae", "actualEquity"))

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


def key_id(listen_key: str) -> str:
    """A short digest naming a listen key in reprs and logs (the key is a credential)."""
    return hashlib.sha256(listen_key.encode()).hexdigest()[:10]


def _new_listen_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(64))


# --- faults ------------------------------------------------------------------------------


class StreamFault(str, enum.Enum):
    """A way for FakeExchange's user data stream to misbehave (see
    ``FakeExchange.inject_stream``). Options are listed per kind with their defaults."""

    DROP = "drop"
    """The connection ends without a close frame (a network drop)."""
    STALL = "stall"
    """The connection stays open, pings go on, but no event is sent any more: for
    ``seconds`` (default None: for the rest of the connection)."""
    EXPIRE_LISTEN_KEY = "expire_listen_key"
    """The account's listen key expires now: its connections send ``listenKeyExpired`` and
    fall silent, and a keep-alive gets ``-1125``."""
    DISCONNECT = "disconnect"
    """The scheduled (24-hour) disconnect, now: a close frame with code 1001."""
    MALFORMED_FRAME = "malformed_frame"
    """One text frame that is not JSON (``text`` to choose it)."""
    UNKNOWN_EVENT = "unknown_event"
    """One event of a type Binance does not document (``event`` to choose its ``e``)."""


_FAULT_DEFAULTS: Mapping[StreamFault, Mapping[str, Any]] = {
    StreamFault.DROP: {},
    StreamFault.STALL: {"seconds": None},
    StreamFault.EXPIRE_LISTEN_KEY: {},
    StreamFault.DISCONNECT: {},
    StreamFault.MALFORMED_FRAME: {"text": '{"e":"PM_PRO_ACCOUNT_UPDATE","E":'},
    StreamFault.UNKNOWN_EVENT: {"event": "FAKE_FUTURE_EVENT"},
}


@dataclass(eq=False)
class StreamFaultRule:
    """One injected stream fault; ``hits`` counts the connections it has spoiled."""

    kind: StreamFault
    account: str | None
    """Only connections of this account (None: any)."""
    options: Mapping[str, Any]
    hits: int = 0
    pending: bool = False
    """True while it waits for a connection to open (none was open when it was injected)."""


# --- records tests read ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenKeyRecord:
    """One listen key call the exchange answered (:attr:`FakeExchange.listen_key_log`).

    ``action`` is ``"created"`` (a new key), ``"reused"`` (a POST that found the live key
    and extended it), ``"kept_alive"`` (PUT), ``"closed"`` (DELETE), ``"expired"`` (an
    expiry forced by a fault or ``expire_listen_key``) or ``"not_found"`` (PUT or DELETE
    without a live key: ``-1125``).
    """

    action: str
    account: str
    at_ms: int
    """The exchange's clock when it happened."""
    expires_ms: int | None
    """When the key expires after this call (None once closed, expired, or not found)."""
    key_id: str
    """A short digest of the key (the key itself is a credential: see ``listen_key``)."""
    listen_key: str = field(repr=False)
    """The key itself ("" for ``not_found``); left out of the repr."""


@dataclass(eq=False)
class StreamConnection:
    """One stream connection the exchange accepted, updated while it runs
    (:attr:`FakeExchange.stream_connections`)."""

    id: int
    account: str
    client_ip: str
    key_id: str
    """A short digest of the listen key it connected with."""
    opened_ms: int
    closed_ms: int | None = None
    close_code: int | None = None
    """The close code sent or received; None while open or when dropped."""
    close_reason: str = ""
    """``"client"``, ``"lifetime"``, ``"disconnect"``, ``"listen_key_closed"``,
    ``"message_limit"``, ``"pong_timeout"``, ``"dropped"``, ``"client_gone"`` or
    ``"server_stopped"``."""
    events_sent: dict[str, int] = field(default_factory=dict)
    """Text frames sent, by event type (``"malformed"`` for the malformed-frame fault)."""
    pings_sent: int = 0
    pongs_received: int = 0
    pongs_matching: int = 0
    """Pongs that echoed the payload of the last ping."""
    incoming_messages: int = 0
    """Every frame the client sent: pongs, pings, data and close frames."""
    incoming_by_second: dict[int, int] = field(default_factory=dict)
    """Incoming frames per second of the exchange's clock (epoch seconds; busy seconds only)."""

    @property
    def max_incoming_per_second(self) -> int:
        """The most frames the client sent within one second of the exchange's clock."""
        return max(self.incoming_by_second.values(), default=0)

    @property
    def is_open(self) -> bool:
        """Whether the connection is still open."""
        return self.closed_ms is None


# --- outgoing frames ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutText:
    text: str


@dataclass(frozen=True, slots=True)
class OutPing:
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutClose:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class OutDrop:
    pass


Outgoing = OutText | OutPing | OutClose | OutDrop


class Rejected(Exception):
    """A handshake the exchange refuses: the HTTP status and JSON body to answer with."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status
        self.body = body


# --- listen keys ---------------------------------------------------------------------------


class _Key:
    __slots__ = ("account", "closed", "expires_ms", "value")

    def __init__(self, value: str, account: str, expires_ms: int) -> None:
        self.value = value
        self.account = account
        self.expires_ms = expires_ms
        self.closed = False

    def alive(self, now: int) -> bool:
        return not self.closed and now < self.expires_ms


class StreamHub:
    """The stream state of one exchange: listen keys, open sessions, faults, records."""

    def __init__(self, exchange: FakeExchange) -> None:
        self.exchange = exchange
        self._by_account: dict[str, _Key] = {}
        self._by_value: dict[str, _Key] = {}
        self.log: list[ListenKeyRecord] = []
        self.connections: list[StreamConnection] = []
        self.sessions: list[StreamSession] = []
        self.rejected_handshakes = 0
        self.pending: list[StreamFaultRule] = []

    # listen keys (the REST handlers call these)

    def _record(self, action: str, key: _Key | None, account: str, now: int) -> None:
        value = key.value if key is not None else ""
        expires = key.expires_ms if key is not None and key.alive(now) else None
        self.log.append(
            ListenKeyRecord(action, account, now, expires, key_id(value) if value else "", value)
        )

    def live_key(self, account: str, now: int) -> _Key | None:
        key = self._by_account.get(account)
        return key if key is not None and key.alive(now) else None

    def create(self, account: str, now: int) -> str:
        validity = self._validity_ms()
        key = self.live_key(account, now)
        if key is not None:
            key.expires_ms = now + validity
            self._record("reused", key, account, now)
            return key.value
        key = _Key(_new_listen_key(), account, now + validity)
        self._by_account[account] = key
        self._by_value[key.value] = key
        self._record("created", key, account, now)
        return key.value

    def keep_alive(self, account: str, now: int) -> str | None:
        key = self.live_key(account, now)
        if key is None:
            self._record("not_found", None, account, now)
            return None
        key.expires_ms = now + self._validity_ms()
        self._record("kept_alive", key, account, now)
        return key.value

    def close(self, account: str, now: int) -> bool:
        key = self.live_key(account, now)
        if key is None:
            self._record("not_found", None, account, now)
            return False
        key.closed = True
        self._record("closed", key, account, now)
        for session in list(self.sessions):
            if session.key is key:
                session.close(CLOSE_NORMAL, "listen_key_closed", "listenKey closed", now)
        return True

    def expire(self, account: str, now: int) -> bool:
        key = self.live_key(account, now)
        if key is None:
            return False
        key.expires_ms = now
        self._record("expired", key, account, now)
        self.poke_all()
        return True

    def _validity_ms(self) -> int:
        return math.ceil(self.exchange.listen_key_validity * 1000)

    # connections

    def open(self, path: str, client_ip: str, now: int) -> StreamSession:
        """Accept a connection to ``path`` or raise :class:`Rejected`."""
        value = path[len(STREAM_PATH_PREFIX) :] if path.startswith(STREAM_PATH_PREFIX) else None
        key = self._by_value.get(value) if value else None
        if key is None or not key.alive(now):
            self.rejected_handshakes += 1
            if value is None:
                raise Rejected(404, b'{"code":-1099,"msg":"Not found."}')
            raise Rejected(400, b'{"code":-1125,"msg":"This listenKey does not exist."}')
        record = StreamConnection(
            id=len(self.connections) + 1,
            account=key.account,
            client_ip=client_ip,
            key_id=key_id(key.value),
            opened_ms=now,
        )
        self.connections.append(record)
        session = StreamSession(self, key, record, now)
        self.sessions.append(session)
        for rule in list(self.pending):
            if rule.account is None or rule.account == key.account:
                self.pending.remove(rule)
                rule.pending = False
                rule.hits += 1
                session.fault(rule.kind, rule.options, now)
        return session

    def inject(
        self, kind: StreamFault, account: str | None, options: Mapping[str, Any]
    ) -> StreamFaultRule:
        now = self.exchange.now_ms()
        rule = StreamFaultRule(kind, account, options)
        if kind is StreamFault.EXPIRE_LISTEN_KEY:
            accounts = [account] if account is not None else list(self._by_account)
            rule.hits = sum(self.expire(name, now) for name in accounts)
            return rule
        targets = [s for s in self.sessions if account is None or s.record.account == account]
        if not targets:
            rule.pending = True
            self.pending.append(rule)
        for session in targets:
            rule.hits += 1
            session.fault(kind, options, now)
        return rule

    def poke_all(self) -> None:
        for session in self.sessions:
            session.poke()

    def forget(self, session: StreamSession) -> None:
        if session in self.sessions:
            self.sessions.remove(session)

    # account state

    def fields(self, account: str, now: int) -> dict[str, Any]:
        return self.exchange.account_fields(account, now_ms=now)


def fault_options(kind: StreamFault, options: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``options``, unknown names refused."""
    defaults = _FAULT_DEFAULTS[kind]
    unknown = set(options) - set(defaults)
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise TypeError(
            f"unknown option(s) {', '.join(sorted(unknown))} for {kind.name}; allowed: {allowed}"
        )
    merged = {**defaults, **options}
    seconds = merged.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or seconds < 0):
        raise ValueError(f"seconds must be a non-negative number or None, not {seconds!r}")
    return merged


# --- one connection ------------------------------------------------------------------------


def _amount(value: Any) -> Any:
    """A wire amount as the stream sends it: a decimal string without thousands separators."""
    if isinstance(value, str) and "," in value:
        return value.replace(",", "")
    return value


def risk_level(fields: Mapping[str, Any], previous: str, *, tiers: bool) -> str:
    """The account's risk level as ``riskLevelChange`` names it (see the module docstring)."""
    from ..monitor import tier_for

    status = str(fields.get("accountStatus"))
    status_level = "NORMAL" if status == "NORMAL" else _STATUS_LEVELS.get(status)
    if not tiers:
        return status_level if status_level is not None else previous
    level = "NORMAL"
    raw = fields.get("uniMMR")
    try:
        tier = tier_for(Decimal(str(_amount(raw)))) if raw is not None else None
    except (InvalidOperation, ValueError):
        tier = None
    if tier is not None:
        level = _TIER_LEVELS.get(tier.name, "NORMAL")
    if status_level is not None and _LEVEL_ORDER[status_level] > _LEVEL_ORDER[level]:
        level = status_level
    return level


def _encode(document: dict[str, Any]) -> str:
    return msgspec.json.encode(document).decode()


class StreamSession:
    """One open stream connection: what to send when (a pure state machine).

    Shells call :meth:`tick` with the exchange's time whenever :meth:`deadline_ms` has come or
    :meth:`poke` woke them, send what :attr:`outbox` holds, and report what the client sent
    (:meth:`on_pong`, :meth:`on_message`, :meth:`on_client_close`, :meth:`on_client_gone`).
    """

    def __init__(self, hub: StreamHub, key: _Key, record: StreamConnection, now: int) -> None:
        exchange = hub.exchange
        self.hub = hub
        self.key = key
        self.record = record
        self.outbox: deque[Outgoing] = deque()
        self.closed = False
        self._wake: Callable[[], None] | None = None
        self._period_ms = max(1, math.ceil(exchange.stream_period * 1000))
        self._ping_ms = max(1, math.ceil(exchange.ping_interval * 1000))
        self._risk_ms = max(1, math.ceil(exchange.risk_check_interval * 1000))
        self._pong_timeout_ms = math.ceil(exchange.pong_timeout * 1000)
        self._next_update = now + self._period_ms
        self._next_ping = now + self._ping_ms
        self._next_risk = now + self._risk_ms
        self._end_of_life = now + math.ceil(exchange.max_connection_lifetime * 1000)
        self._pong_due: int | None = None
        self._last_ping: bytes | None = None
        self._expired_sent = False
        self._stall_until: float | None = None  # math.inf: for the rest of the connection
        self._tiers = exchange.risk_levels == "tiers"
        self._level = risk_level(hub.fields(key.account, now), "NORMAL", tiers=self._tiers)

    # the shells' side

    def set_waker(self, wake: Callable[[], None] | None) -> None:
        """The shell's callback that ends its wait (sets an event); None to unset."""
        self._wake = wake

    def poke(self) -> None:
        """Ask the shell to call :meth:`tick` now (state changed outside the session)."""
        if self._wake is not None:
            self._wake()

    def deadline_ms(self) -> int | None:
        """The exchange time by which :meth:`tick` must run next (None once closed)."""
        if self.closed:
            return None
        candidates = [self._end_of_life, self._next_ping, self._next_risk]
        if not self._silent(self._next_update):
            candidates.append(self._next_update)
        elif self._stall_until is not None and self._stall_until != math.inf:
            candidates.append(math.ceil(self._stall_until))
        if self._pong_due is not None:
            candidates.append(self._pong_due)
        if not self._expired_sent:
            candidates.append(self.key.expires_ms)  # a keep-alive moves it later
        return min(candidates)

    def tick(self, now: int) -> None:
        """Queue everything that is due at ``now``."""
        if self.closed:
            return
        if now >= self._end_of_life:
            self.close(CLOSE_GOING_AWAY, "lifetime", "connection lifetime reached", now)
            return
        if self._pong_due is not None and now >= self._pong_due:
            self.drop("pong_timeout", now)
            return
        if not self._expired_sent and not self.key.alive(now):
            self._expired_sent = True
            if not self.key.closed:
                self._send(
                    {"e": "listenKeyExpired", "E": now, "listenKey": self.key.value}, now, True
                )
        if self._stall_until is not None and now >= self._stall_until:
            self._stall_until = None
        fields: dict[str, Any] | None = None
        if now >= self._next_risk or now >= self._next_update:
            fields = self.hub.fields(self.key.account, now)
            self.check_risk(now, fields)
            while self._next_risk <= now:
                self._next_risk += self._risk_ms
        if now >= self._next_update:
            if not self._silent(now):
                assert fields is not None
                document: dict[str, Any] = {"e": "PM_PRO_ACCOUNT_UPDATE", "E": now}
                for short, wire in _UPDATE_FIELDS:
                    if wire in fields:
                        document[short] = _amount(fields[wire])
                self._send(document, now)
            # One update per tick: a shell that woke late does not burst the missed ones.
            while self._next_update <= now:
                self._next_update += self._period_ms
        if now >= self._next_ping:
            payload = str(now).encode()
            self._last_ping = payload
            self.outbox.append(OutPing(payload))
            self.record.pings_sent += 1
            if self._pong_due is None:
                self._pong_due = now + self._pong_timeout_ms
            while self._next_ping <= now:
                self._next_ping += self._ping_ms

    def check_risk(self, now: int, fields: Mapping[str, Any] | None = None) -> None:
        """Send ``riskLevelChange`` if the account's level changed into a risky one."""
        if self.closed:
            return
        if fields is None:
            fields = self.hub.fields(self.key.account, now)
        level = risk_level(fields, self._level, tiers=self._tiers)
        if level == self._level:
            return
        self._level = level
        if self._silent(now):
            return
        document: dict[str, Any] = {"e": "riskLevelChange", "E": now}
        for short, wire in _RISK_FIELDS:
            if wire in fields:
                document[short] = _amount(fields[wire])
        document["s"] = level
        if "accountMaintMargin" in fields:
            document["m"] = _amount(fields["accountMaintMargin"])
        # Binance's example puts "s" after "u"; keep its key order.
        ordered: dict[str, Any] = {
            k: document[k] for k in ("e", "E", "u", "s", "eq", "ae", "m") if k in document
        }
        self._send(ordered, now)

    def on_pong(self, payload: bytes, now: int) -> None:
        """The client sent a pong."""
        self.record.pongs_received += 1
        if payload == self._last_ping:
            self.record.pongs_matching += 1
        # Binance drops a connection only when no pong at all came after its ping.
        self._pong_due = None
        self.on_message(now)

    def on_message(self, now: int) -> None:
        """Count one incoming frame (pongs call this themselves)."""
        record = self.record
        record.incoming_messages += 1
        second = now // 1000
        count = record.incoming_by_second.get(second, 0) + 1
        record.incoming_by_second[second] = count
        limit = self.hub.exchange.stream_message_limit
        if limit is not None and count > limit and not self.closed:
            self.close(CLOSE_POLICY, "message_limit", "too many messages", now)

    def on_client_close(self, code: int | None, now: int) -> None:
        """The client closed the connection with a close frame."""
        if self.closed:
            return
        self.on_message(now)
        self._finish(now, code, "client")

    def on_client_gone(self, now: int) -> None:
        """The connection ended from the client's side without a close frame."""
        self.end("client_gone", now)

    def end(self, why: str, now: int) -> None:
        """Record the end of a connection the shell lost (nothing more is sent)."""
        if not self.closed:
            self._finish(now, None, why)

    # faults and server-side endings

    def fault(self, kind: StreamFault, options: Mapping[str, Any], now: int) -> None:
        """Apply a stream fault to this connection now."""
        if self.closed:
            return
        if kind is StreamFault.DROP:
            self.drop("dropped", now)
        elif kind is StreamFault.DISCONNECT:
            self.close(CLOSE_GOING_AWAY, "disconnect", "scheduled disconnect", now)
        elif kind is StreamFault.STALL:
            seconds = options.get("seconds")
            self._stall_until = math.inf if seconds is None else now + seconds * 1000
        elif kind is StreamFault.MALFORMED_FRAME:
            self.outbox.append(OutText(str(options["text"])))
            self._count("malformed")
        elif kind is StreamFault.UNKNOWN_EVENT:
            self._send({"e": str(options["event"]), "E": now, "x": "1.00000000"}, now, True)
        elif kind is StreamFault.EXPIRE_LISTEN_KEY:  # pragma: no cover - handled by the hub
            self.hub.expire(self.key.account, now)
        self.poke()

    def close(self, code: int, why: str, reason: str, now: int) -> None:
        """Close with a close frame."""
        if self.closed:
            return
        self.outbox.append(OutClose(code, reason))
        self._finish(now, code, why)

    def drop(self, why: str, now: int) -> None:
        """End the connection without a close frame."""
        if self.closed:
            return
        self.outbox.append(OutDrop())
        self._finish(now, None, why)

    # internals

    def _silent(self, now: float) -> bool:
        return self._expired_sent or (self._stall_until is not None and now < self._stall_until)

    def _send(self, document: dict[str, Any], now: int, force: bool = False) -> None:
        if not force and self._silent(now):
            return
        self.outbox.append(OutText(_encode(document)))
        self._count(str(document.get("e")))

    def _count(self, name: str) -> None:
        sent = self.record.events_sent
        sent[name] = sent.get(name, 0) + 1

    def _finish(self, now: int, code: int | None, why: str) -> None:
        self.closed = True
        self.record.closed_ms = now
        self.record.close_code = code
        self.record.close_reason = why
        self.hub.forget(self)
        self.poke()
