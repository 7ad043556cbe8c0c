"""Watching the account's margin risk: a steady poll, rules as data, typed events.

Two layers:

- :meth:`WatchMixin.watch_account` (a method of the client) polls
  ``GET /sapi/v1/portfolio/account`` at a steady cadence and yields an
  :class:`AccountSnapshot` per answer, or a :class:`Stale` event when no fresh data has come
  for ``stale_after`` seconds;
- :class:`RiskMonitor` turns snapshots into :class:`Breach`, :class:`Recovery` and
  :class:`StatusChange` events according to its rules (by default the risk tiers Binance
  publishes, :data:`RISK_TIERS`), with hysteresis so a value hovering at a level does not
  flap. :meth:`RiskMonitor.observe` is pure; :meth:`RiskMonitor.watch` runs it over
  ``watch_account``.

The cadence: polls are scheduled on the event loop's clock at ``start + k * every``; a
slow answer that overruns one or more ticks makes the watcher skip them (never a burst of
catch-up calls), and there is never more than one call in flight. Each poll waits for
rate-limit weight at :attr:`~binance_pmpro.ratelimit.Priority.HIGH` priority, ahead of the
application's NORMAL calls; its share of the budget is bounded by its cadence (weight 5
per ``every`` seconds).

The error policy: the errors in :data:`FATAL_ERRORS` (bad credentials, a banned IP, an
account that is not a Portfolio Margin account, ...) end the watch by raising out of the
iterator, since no amount of waiting fixes them. Every other failure of a poll (a network
error, a 5xx, a 429 pause longer than the wait allowed, an unreadable answer) is retried at
the next tick; once ``stale_after`` seconds have passed without a fresh snapshot, one
:class:`Stale` event says so (again after the next fresh snapshot and a new outage).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import anyio

from ._host import ClientHost
from .endpoints import ACCOUNT_INFO
from .errors import (
    AuthenticationError,
    BinanceError,
    ClientClosedError,
    ConfigurationError,
    EndpointGoneError,
    InvalidRequestError,
    IPBannedError,
    NotPortfolioMarginError,
)
from .models import AccountInfo, AccountStatus
from .ratelimit import Priority

if TYPE_CHECKING:
    from .client import PortfolioMarginProClient

__all__ = [
    "DEFAULT_RECOVERY_MARGIN",
    "DEFAULT_RULES",
    "FATAL_ERRORS",
    "RISK_TIERS",
    "AccountSnapshot",
    "Breach",
    "EquityDrop",
    "Recovery",
    "RiskEvent",
    "RiskMonitor",
    "RiskTier",
    "Rule",
    "Stale",
    "StatusChange",
    "UniMMRBelow",
    "WatchItem",
    "WatchMixin",
    "default_rules",
    "event_document",
    "tier_for",
]

DEFAULT_RECOVERY_MARGIN = Decimal("0.02")
"""Recovery needs the value back at or above the level plus this fraction of it (2%)."""

FATAL_ERRORS: tuple[type[BinanceError], ...] = (
    AuthenticationError,
    IPBannedError,
    NotPortfolioMarginError,
    ConfigurationError,
    ClientClosedError,
    EndpointGoneError,
    InvalidRequestError,
)
"""Errors that end a watch: waiting would not fix them. Every other
:class:`~binance_pmpro.errors.BinanceError` of a poll is retried at the next tick."""


# --- the tiers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskTier:
    """One row of Binance's risk table for a Portfolio Margin Pro account.

    The tier holds ``floor < uniMMR <= ceiling`` (``None``: unbounded on that side).
    """

    name: str
    """A short identifier, e.g. ``"reduce_only"``."""
    floor: Decimal | None
    """Exclusive lower bound of ``uniMMR`` (None: no lower bound)."""
    ceiling: Decimal | None
    """Inclusive upper bound of ``uniMMR`` (None: no upper bound)."""
    action: str
    """What Binance does to an account in this tier."""
    confirmed: bool = True
    """False where the published table could not be read and the row is our best reading."""

    def contains(self, uni_mmr: Decimal) -> bool:
        """Whether ``uni_mmr`` falls in this tier."""
        above = self.floor is None or uni_mmr > self.floor
        below = self.ceiling is None or uni_mmr <= self.ceiling
        return above and below


RISK_TIERS: tuple[RiskTier, ...] = (
    RiskTier("free", Decimal("1.50"), None, "trade freely"),
    RiskTier(
        "reminder",
        Decimal("1.20"),
        Decimal("1.50"),
        "reminders to add funds to the futures or cross-margin accounts, repay margin loans "
        "or reduce futures positions",
    ),
    RiskTier(
        "reduce_only",
        Decimal("1.05"),
        Decimal("1.20"),
        "new orders refused except reduce-only; margin levels may not be increased",
    ),
    RiskTier(
        "liquidation_risk",
        Decimal("1.00"),
        Decimal("1.05"),
        "liquidation risk: Binance asks to keep uniMMR above 1.05 to avoid liquidation",
    ),
    RiskTier(
        "liquidation",
        None,
        Decimal("1.00"),
        "liquidation with a possible claim for loss (unconfirmed)",
        confirmed=False,
    ),
)
"""Binance's risk tiers by ``uniMMR``, healthiest first. Binance may change the figures and
says it notifies users when it does: replace this data rather than scattering constants.
The last row (at or below 1.00) is unconfirmed: the published table was not fully
readable."""


def tier_for(uni_mmr: Decimal, tiers: Sequence[RiskTier] = RISK_TIERS) -> RiskTier | None:
    """The tier ``uni_mmr`` falls in (None when no tier holds it)."""
    for tier in tiers:
        if tier.contains(uni_mmr):
            return tier
    return None


# --- snapshots and events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """One fresh state of the account during a watch: an answer of
    ``GET /sapi/v1/portfolio/account``, or (``source="stream"``/``"auto"``) the latest such
    answer updated with the numbers the user data stream pushed."""

    type: ClassVar[Literal["snapshot"]] = "snapshot"
    info: AccountInfo
    """The decoded account (exact ``Decimal`` amounts)."""
    at: float
    """The event loop's clock (``anyio.current_time()``) when the answer arrived."""
    scheduled_at: float
    """The tick of the cadence this poll belonged to (loop clock); for a pushed snapshot,
    when it arrived."""
    time: datetime
    """The wall clock (UTC) when the answer arrived."""
    sequence: int
    """1 for the first snapshot of a watch, 2 for the next, ..."""


@dataclass(frozen=True, slots=True)
class Stale:
    """No fresh snapshot for at least ``stale_after`` seconds: the polls keep failing."""

    type: ClassVar[Literal["stale"]] = "stale"
    at: float
    """Loop clock when this was noticed."""
    age: float
    """Seconds since the last fresh snapshot (or since the watch started)."""
    failures: int
    """Failed polls in a row."""
    error: BinanceError
    """The latest failure."""
    last: AccountSnapshot | None
    """The last fresh snapshot, if there was one."""


@runtime_checkable
class Rule(Protocol):
    """A condition on snapshots with hysteresis: what :class:`RiskMonitor` evaluates.

    ``value`` extracts the watched number (None: cannot tell from this snapshot, the state
    is left alone); ``breached`` says whether a value is in breach; ``recovered`` whether a
    value ends a breach (stricter than ``not breached``, so a hovering value does not flap).
    """

    @property
    def name(self) -> str:
        """A stable identifier of the rule (used in events and JSON lines)."""
        ...

    def value(self, snapshot: AccountSnapshot, history: Sequence[AccountSnapshot]) -> Any:
        """The watched value for ``snapshot``; ``history`` holds earlier snapshots, oldest
        first."""
        ...

    def breached(self, value: Any) -> bool:
        """Whether ``value`` is in breach."""
        ...

    def recovered(self, value: Any) -> bool:
        """Whether ``value`` ends a breach."""
        ...


@dataclass(frozen=True, slots=True)
class UniMMRBelow:
    """``uniMMR`` below ``level``: a breach on the first snapshot strictly below it (the
    first snapshot of a watch included); recovery once it is at or above ``level`` plus
    ``recovery_margin`` of it (2%: 1.224 for a level of 1.20)."""

    level: Decimal
    label: str | None = None
    """The rule's name (default ``"uni_mmr_below_<level>"``)."""
    recovery_margin: Decimal = DEFAULT_RECOVERY_MARGIN
    tier: RiskTier | None = None
    """The tier this rule warns of entering, for the default rules."""

    def __post_init__(self) -> None:
        if not isinstance(self.level, Decimal) or not self.level.is_finite() or self.level <= 0:
            raise ValueError(f"level must be a positive finite Decimal, not {self.level!r}")
        if self.recovery_margin < 0:
            raise ValueError("recovery_margin must be >= 0")

    @property
    def name(self) -> str:
        """The rule's name."""
        return self.label or f"uni_mmr_below_{self.level}"

    @property
    def recovery_level(self) -> Decimal:
        """The value at or above which a breach ends."""
        return self.level + self.level * self.recovery_margin

    def value(self, snapshot: AccountSnapshot, history: Sequence[AccountSnapshot]) -> Any:
        """``snapshot.info.uni_mmr``."""
        return snapshot.info.uni_mmr

    def breached(self, value: Any) -> bool:
        """``value < level``."""
        return bool(value < self.level)

    def recovered(self, value: Any) -> bool:
        """``value >= level * (1 + recovery_margin)``."""
        return bool(value >= self.recovery_level)


@dataclass(frozen=True, slots=True)
class EquityDrop:
    """Equity falling by more than ``amount`` (USD) within ``within`` seconds: the watched
    value is the highest equity seen in that period minus the current one. Recovery once
    the drop is back at or below ``amount`` less ``recovery_margin`` of it."""

    amount: Decimal
    within: float
    """The period, in seconds of the event loop's clock."""
    field: Literal["account_equity", "actual_equity"] = "account_equity"
    label: str | None = None
    """The rule's name (default ``"<field>_drop_<amount>"``)."""
    recovery_margin: Decimal = DEFAULT_RECOVERY_MARGIN

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite() or self.amount <= 0:
            raise ValueError(f"amount must be a positive finite Decimal, not {self.amount!r}")
        if not self.within > 0:
            raise ValueError("within must be a positive number of seconds")

    @property
    def name(self) -> str:
        """The rule's name."""
        return self.label or f"{self.field}_drop_{self.amount}"

    def value(self, snapshot: AccountSnapshot, history: Sequence[AccountSnapshot]) -> Any:
        """The peak equity of the last ``within`` seconds minus the current equity."""
        current = getattr(snapshot.info, self.field)
        if current is None:
            return None
        peak: Decimal = current
        for earlier in history:
            if snapshot.at - earlier.at <= self.within:
                seen = getattr(earlier.info, self.field)
                if seen is not None and seen > peak:
                    peak = seen
        return peak - current

    def breached(self, value: Any) -> bool:
        """``value > amount``."""
        return bool(value > self.amount)

    def recovered(self, value: Any) -> bool:
        """``value <= amount * (1 - recovery_margin)``."""
        return bool(value <= self.amount - self.amount * self.recovery_margin)


@dataclass(frozen=True, slots=True)
class Breach:
    """A rule went into breach with this snapshot."""

    type: ClassVar[Literal["breach"]] = "breach"
    rule: Rule
    value: Any
    """The rule's value that breached (``uniMMR`` for :class:`UniMMRBelow`)."""
    snapshot: AccountSnapshot


@dataclass(frozen=True, slots=True)
class Recovery:
    """A rule in breach recovered with this snapshot (past its hysteresis margin)."""

    type: ClassVar[Literal["recovery"]] = "recovery"
    rule: Rule
    value: Any
    snapshot: AccountSnapshot


@dataclass(frozen=True, slots=True)
class StatusChange:
    """``accountStatus`` changed (or, on the first snapshot, is not ``NORMAL``)."""

    type: ClassVar[Literal["status_change"]] = "status_change"
    previous: AccountStatus | None
    """The status before (None on the first snapshot of a watch)."""
    current: AccountStatus
    snapshot: AccountSnapshot


RiskEvent = Breach | Recovery | StatusChange | Stale
"""What :class:`RiskMonitor` reports besides snapshots."""

WatchItem = AccountSnapshot | Breach | Recovery | StatusChange | Stale
"""What :meth:`RiskMonitor.watch` yields: each snapshot, then the events it caused."""


def default_rules(
    alert_below: Decimal | None = None, *, tiers: Sequence[RiskTier] = RISK_TIERS
) -> tuple[Rule, ...]:
    """One :class:`UniMMRBelow` per tier boundary (1.50, 1.20, 1.05, 1.00 by default).

    ``alert_below`` adds a rule at that level, replacing the tier rule at the same level
    if there is one, so crossing it gives one breach, not two. Rules come highest level
    first, so that a snapshot crossing several levels at once reports them in the order a
    falling ``uniMMR`` crosses them.
    """
    rules: list[UniMMRBelow] = []
    for tier in tiers:
        if tier.ceiling is not None and not (
            alert_below is not None and tier.ceiling == alert_below
        ):
            rules.append(UniMMRBelow(tier.ceiling, label=f"tier_{tier.name}", tier=tier))
    if alert_below is not None:
        rules.append(UniMMRBelow(alert_below, label=f"alert_below_{alert_below}"))
    rules.sort(key=lambda rule: rule.level, reverse=True)
    return tuple(rules)


DEFAULT_RULES: tuple[Rule, ...] = default_rules()
"""The rules of a :class:`RiskMonitor` unless told otherwise: entering each risk tier."""


# --- the monitor (pure) ---------------------------------------------------------------------


class RiskMonitor:
    """Turns snapshots into events, rule by rule, with hysteresis.

    ``rules``: what to watch (default :data:`DEFAULT_RULES`). ``history``: seconds of
    snapshots kept for rules that look back (:class:`EquityDrop`; default the longest
    ``within`` of the rules). Status changes always give a :class:`StatusChange` event and
    nothing else.
    """

    def __init__(
        self, rules: Iterable[Rule] = DEFAULT_RULES, *, history: float | None = None
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        self._keep = (
            history
            if history is not None
            else max((float(getattr(r, "within", 0.0)) for r in self.rules), default=0.0)
        )
        self._history: deque[AccountSnapshot] = deque()
        self._in_breach: dict[str, bool] = {}
        self._status: AccountStatus | None = None
        self.latest: AccountSnapshot | None = None
        """The most recent snapshot observed."""

    def in_breach(self) -> list[Rule]:
        """The rules currently in breach."""
        return [rule for rule in self.rules if self._in_breach.get(rule.name)]

    def observe(self, snapshot: AccountSnapshot) -> list[RiskEvent]:
        """The events ``snapshot`` causes, in rule order, the status change first."""
        events: list[RiskEvent] = []
        status = snapshot.info.account_status
        if status is not self._status and not (
            self._status is None and status is AccountStatus.NORMAL
        ):
            events.append(StatusChange(self._status, status, snapshot))
        self._status = status
        history = list(self._history)
        for rule in self.rules:
            value = rule.value(snapshot, history)
            if value is None:
                continue
            if self._in_breach.get(rule.name, False):
                if rule.recovered(value):
                    self._in_breach[rule.name] = False
                    events.append(Recovery(rule, value, snapshot))
            elif rule.breached(value):
                self._in_breach[rule.name] = True
                events.append(Breach(rule, value, snapshot))
        self._history.append(snapshot)
        while self._history and snapshot.at - self._history[0].at > self._keep:
            self._history.popleft()
        self.latest = snapshot
        return events

    async def watch(
        self,
        client: PortfolioMarginProClient,
        *,
        every: float,
        stale_after: float | None = None,
        source: Literal["auto", "stream", "poll"] = "auto",
        **options: Any,
    ) -> AsyncGenerator[WatchItem, None]:
        """Each snapshot of ``client.watch_account(every=..., stale_after=..., source=...,
        **options)`` followed by the events it causes, and the :class:`Stale` events, as
        they happen."""
        # Closed here, not left to the garbage collector, when our caller closes us.
        polls = client.watch_account(every=every, stale_after=stale_after, source=source, **options)
        async with aclosing(polls) as items:
            async for item in items:
                yield item
                if isinstance(item, AccountSnapshot):
                    for event in self.observe(item):
                        yield event


# --- the poll loop (a client method) --------------------------------------------------------


class WatchMixin(ClientHost):
    """:meth:`watch_account`, mixed into :class:`~binance_pmpro.PortfolioMarginProClient`."""

    async def watch_account(
        self,
        *,
        every: float = 5.0,
        stale_after: float | None = None,
        source: Literal["auto", "stream", "poll"] = "auto",
        stream_period: float = 5.0,
        reconcile_every: float = 300.0,
        stream_options: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[AccountSnapshot | Stale, None]:
        """Watch the account: yield each :class:`AccountSnapshot`, and a :class:`Stale`
        event once no fresh snapshot has come for ``stale_after`` seconds (default: three
        periods, at least 10 s).

        ``source``: ``"poll"`` polls ``GET /sapi/v1/portfolio/account`` every ``every``
        seconds. ``"stream"`` takes the numbers the user data stream pushes every
        ``stream_period`` seconds (Binance's 5), each as a snapshot: the first snapshot and
        a reconciliation every ``reconcile_every`` seconds come from REST (the stream
        carries no account status or type), the rest cost no weight. ``"auto"`` (the
        default) is ``"stream"`` when the client knows a stream URL, polling at every tick
        of ``every`` while the stream is down or silent for two periods, and ``"poll"``
        otherwise. ``stream_options`` go to :meth:`user_stream`.

        The poll: polls run at ``start + k * every`` on the event loop's clock, one at a
        time, at HIGH rate-limit priority; ticks a slow poll overran are skipped.

        Polls run at ``start + k * every`` on the event loop's clock, one at a time, at
        HIGH rate-limit priority; ticks a slow poll overran are skipped, not caught up.
        Each poll waits at most ``stale_after`` seconds in all (rate-limit wait, retries and
        the client's ``call_timeout`` included). The errors of :data:`FATAL_ERRORS` raise
        out of the iterator; other failures are retried at the next tick. Leave the
        ``async for`` (``break``, cancellation) to stop: no call is left behind.
        """
        if not (isinstance(every, (int, float)) and math.isfinite(every) and every > 0):
            raise ConfigurationError("every must be a positive, finite number of seconds")
        if stale_after is None:
            stale_after = max(3.0 * every, 10.0)
        elif not (math.isfinite(stale_after) and stale_after > 0):
            raise ConfigurationError("stale_after must be a positive number of seconds")
        max_wait = min(self.max_wait, stale_after)
        call_timeout = (
            stale_after if self.call_timeout is None else min(self.call_timeout, stale_after)
        )
        if source not in ("auto", "stream", "poll"):
            raise ConfigurationError(f"source must be 'auto', 'stream' or 'poll', not {source!r}")
        if source == "stream" and self.stream_url is None:
            raise ConfigurationError(
                "source='stream' needs a stream URL: pass stream_url= to the client"
            )
        if source != "poll" and self.stream_url is not None:
            from ._watch_stream import watch_pushed

            for name, value in (
                ("stream_period", stream_period),
                ("reconcile_every", reconcile_every),
            ):
                if not (math.isfinite(value) and value > 0):
                    raise ConfigurationError(f"{name} must be a positive number of seconds")
            client: PortfolioMarginProClient = self  # type: ignore[assignment]
            async with aclosing(
                watch_pushed(
                    client,
                    every=every,
                    stale_after=stale_after,
                    fallback=source == "auto",
                    stream_period=stream_period,
                    reconcile_every=reconcile_every,
                    max_wait=max_wait,
                    call_timeout=call_timeout,
                    stream_options=stream_options or {},
                )
            ) as pushed:
                async for pushed_item in pushed:
                    yield pushed_item
            return
        start = anyio.current_time()
        tick = 0
        last_fresh = start
        last: AccountSnapshot | None = None
        failures = 0
        stale_reported = False
        sequence = 0
        while True:
            scheduled = start + tick * every
            await anyio.sleep_until(scheduled)
            try:
                info: AccountInfo = await self._call(
                    ACCOUNT_INFO,
                    {},
                    max_wait=max_wait,
                    call_timeout=call_timeout,
                    priority=Priority.HIGH,
                )
            except FATAL_ERRORS:
                raise
            except BinanceError as exc:
                now = anyio.current_time()
                failures += 1
                item: AccountSnapshot | Stale | None = None
                if not stale_reported and now - last_fresh >= stale_after:
                    stale_reported = True
                    item = Stale(now, now - last_fresh, failures, exc, last)
            else:
                now = anyio.current_time()
                sequence += 1
                failures = 0
                stale_reported = False
                last_fresh = now
                item = last = AccountSnapshot(
                    info, now, scheduled, datetime.now(timezone.utc), sequence
                )
            # The next tick strictly after now: ticks a slow poll overran are dropped.
            tick = max(tick + 1, math.floor((now - start) / every) + 1)
            if item is not None:
                yield item


# --- JSON lines -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, AccountStatus) or hasattr(value, "value"):
        return str(value.value)
    return value


def _snapshot_fields(snapshot: AccountSnapshot) -> dict[str, Any]:
    info = snapshot.info
    doc: dict[str, Any] = {
        "time": snapshot.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sequence": snapshot.sequence,
    }
    for name in info.__struct_fields__:
        if name.endswith("_raw"):
            continue
        value = getattr(info, name)
        raw = getattr(info, f"{name}_raw", None)
        doc[name] = raw if raw is not None else _plain(value)
    return doc


def event_document(item: WatchItem) -> dict[str, Any]:
    """One ``watch --json`` line as a dict: ``"type"``, the event's own fields, then the
    snapshot's fields in snake_case (amounts as exact strings, enums as Binance's
    strings; for a :class:`Stale` event, those of the last fresh snapshot, if any)."""
    doc: dict[str, Any] = {"type": item.type}
    snapshot: AccountSnapshot | None
    if isinstance(item, AccountSnapshot):
        snapshot = item
    elif isinstance(item, Stale):
        doc["age_s"] = round(item.age, 3)
        doc["failures"] = item.failures
        doc["error"] = f"{type(item.error).__name__}: {item.error}"
        snapshot = item.last
    elif isinstance(item, StatusChange):
        doc["previous_status"] = None if item.previous is None else str(item.previous.value)
        doc["status"] = str(item.current.value)
        snapshot = item.snapshot
    else:
        doc["rule"] = item.rule.name
        level = getattr(item.rule, "level", None) or getattr(item.rule, "amount", None)
        if level is not None:
            doc["level"] = _plain(level)
        doc["value"] = _plain(item.value)
        tier = getattr(item.rule, "tier", None)
        if tier is not None:
            doc["tier"] = tier.name
        snapshot = item.snapshot
    if snapshot is not None:
        for key, value in _snapshot_fields(snapshot).items():
            doc.setdefault(key, value)
    return doc
