"""Request-weight budgets: a pure, clock-free core and the async limiter that waits on it.

Binance counts weight per (account, endpoint) for UID-limited ``/sapi`` endpoints and per
(IP, endpoint) for IP-limited ones, per minute of *its* clock, and reports the running
count in a response header. Going over gives 429; ignoring 429s gives 418, an IP ban.

Each budget here runs three checks, all evaluated in one synchronous step:

1. a **pacer** (GCRA: a token bucket kept as one number) whose rate and burst are chosen so
   that no interval of ``window + arrival_spread`` receives more than the effective limit
   (limit minus headroom). That holds for fixed calendar minutes at any phase and for
   rolling minutes alike, without knowing the server's clock, and it spreads the weight
   through the window instead of spending it at once;
2. a **log** of grants over the same span: an exact hard cap that also covers requests
   heavier than the pacer's burst;
3. a **server guard** fed by the used-weight headers, for weight this process cannot see
   (other processes, other tools on the account). With the offset to the server's clock
   known it is a ledger per server minute: our own charges (a request that may land on
   either side of a boundary is charged to both until its answer proves which) plus the
   others' weight, bounded from each header reading by what the count surely includes of
   ours. The offset comes from :meth:`RateLimiter.set_server_offset` (a clock sync), else
   it is learned from the responses' ``Date`` headers, else from the count itself (a drop
   proves a minute boundary in between). Before any of that, the latest-sent response
   bounds the window it landed in.

A 429 pauses every caller of the budget until ``Retry-After`` (or the end of the server
minute); the pause ends paced, without a burst. A 418 bans the IP: every budget of that IP
group raises :class:`~binance_pmpro.errors.IPBannedError` at once until the ban ends.

Time in the core is integer nanoseconds passed in by the caller. The async layer reads the
event loop's clock (``anyio.current_time()``), so trio's MockClock and other virtual clocks
drive it in tests, and it only waits: strict FIFO per priority class, cancellation-safe
(a cancelled waiter consumes nothing, a granted permit is never lost).
"""

from __future__ import annotations

import calendar
import enum
import math
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import sniffio

from .endpoints import USED_WEIGHT_HEADERS, Budget
from .errors import IPBannedError, RateLimitTimeoutError, TransportError, parse_retry_after

__all__ = [
    "DEFAULT_LIMITS",
    "BudgetCore",
    "BudgetKey",
    "BudgetSnapshot",
    "Grant",
    "IPGroupState",
    "Limiter",
    "LimiterPermit",
    "Permit",
    "Priority",
    "RateLimiter",
    "ServerOffset",
    "shared_limiter",
]

NS = 1_000_000_000
WINDOW_NS = 60 * NS
DEFAULT_BAN_NS = 120 * NS
"""Ban assumed after a 418 without ``Retry-After``: Binance's shortest ban is 2 minutes."""

DEFAULT_LIMITS: Mapping[Budget, int] = {
    Budget.SAPI_UID: 180_000,
    Budget.SAPI_IP: 12_000,
    Budget.API_IP: 6_000,
    Budget.FAPI_IP: 2_400,
}
"""Binance's documented weight per minute for each budget kind."""

_PPM = 1_000_000
_NEVER = 1 << 100  # a time later than any clock reading
# Added to every timed wait: float clocks can land a hair before an integer deadline, and a
# head that wakes 1 ns early would otherwise spin on zero-length sleeps.
_WAKE_SLACK = 1e-6


class Priority(enum.IntEnum):
    """Priority class of a waiter; FIFO within a class, HIGH served before NORMAL."""

    HIGH = 0
    NORMAL = 1


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """Identifies one budget as Binance counts it: ``(kind, owner, endpoint)``.

    ``owner`` is the account id (or a digest of the API key, never the key) for UID budgets,
    the IP group for IP budgets; ``endpoint`` is the path ("" for the shared ``/api`` budget).
    ``ip_group`` names the egress IP a UID budget's requests leave from (a 418 bans every
    budget of the group); by default an IP budget's group is its owner, a UID budget's is
    ``"default"``.
    """

    kind: Budget
    owner: str
    endpoint: str
    ip_group: str | None = None

    @property
    def group(self) -> str:
        """The IP group whose 418 ban stops this budget."""
        if self.ip_group is not None:
            return self.ip_group
        return "default" if self.kind is Budget.SAPI_UID else self.owner


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """The state of one budget at a moment, for metrics."""

    key: BudgetKey
    limit: int
    """Weight the server allows per window, as currently believed (lowered by a 429 that
    showed a lower ceiling)."""
    used: int
    """Weight counted against the current window, as far as this limiter knows: its own
    grants plus weight reported by the server beyond them."""
    remaining: int
    """``effective_limit - used``, never below 0."""
    waiting: int
    """Callers queued for this budget."""
    paused_for: float
    """Seconds until a 429 pause or 418 ban ends (0 when neither)."""
    server_used: int | None
    """The last used-weight figure Binance reported for this budget, if any."""
    effective_limit: int = 0
    """The limit minus headroom: what the limiter lets through per window."""
    in_flight: int = 0
    """Permits granted and not yet finished."""
    banned: bool = False
    """Whether the budget's IP group is under a 418 ban."""


# --------------------------------------------------------------------------------------------
# Pure core: integer nanoseconds in, decisions out. No clock, no I/O, no awaiting.
# --------------------------------------------------------------------------------------------


class ServerOffset:
    """What is known about the server's clock: ``server_ns = local_ns + offset`` within
    ``error`` ns at ``set_at``; the error grows by ``drift_ppm`` afterwards. Shared by every
    budget of a limiter.

    Set explicitly (:meth:`set`, from a clock sync), or learned while nothing was set: from
    the ``Date`` headers of responses (each bounds the offset), and from the used-weight
    header itself (a count that drops proves a window boundary in between, which gives the
    offset up to whole windows: ``phase_only``). The intersection of the bounds tightens as
    answers arrive.
    """

    __slots__ = (
        "_candidate",
        "_cores",
        "_doubted",
        "drift_ppm",
        "error",
        "explicit",
        "hi",
        "lo",
        "offset",
        "phase_only",
        "set_at",
        "version",
        "window",
    )

    def __init__(self, drift_ppm: int = 100, window_ns: int = WINDOW_NS) -> None:
        # Bumped whenever offset, error or set_at change: budgets cache derived figures.
        self.version = 0
        # The budgets reading this clock: a bump also drops their per-request span state at
        # once, so that their hot paths need not compare versions.
        self._cores: weakref.WeakSet[BudgetCore] = weakref.WeakSet()
        self.offset: int | None = None
        self.error = 0
        self.set_at = 0
        self.drift_ppm = drift_ppm
        self.window = window_ns
        self.explicit = False
        self.phase_only = False
        self.lo = 0
        self.hi = 0
        self._candidate: tuple[int, int, int] | None = None
        self._doubted = False

    def set(self, offset_ns: int, error_ns: int, now: int) -> None:
        """Adopt a measured offset (server time minus local time) and its error bound."""
        if error_ns < 0:
            raise ValueError("the error bound must be >= 0")
        self.offset = int(offset_ns)
        self.error = int(error_ns)
        self.set_at = now
        self._bump()
        self.explicit = True
        self.phase_only = False

    def learn(self, lo: int, hi: int, now: int) -> None:
        """Narrow a learned offset with one more bound ``lo <= offset <= hi`` (from a
        ``Date`` header). Ignored while an explicit offset is set."""
        if self.explicit or hi < lo:
            return
        if self.offset is not None:
            if self.phase_only:
                # Known only up to whole windows so far: line it up with this bound.
                shift = self._shift(lo, hi)
                self.lo, self.hi = self.lo - shift, self.hi - shift
            grown = (now - self.set_at) * self.drift_ppm // _PPM
            new_lo = max(self.lo - grown, lo)
            new_hi = min(self.hi + grown, hi)
            # Disjoint bounds: the clock jumped (suspend, a step of either clock); start over.
            if new_lo <= new_hi:
                lo, hi = new_lo, new_hi
        self._adopt(lo, hi, now, phase_only=False)

    def learn_boundary(self, after: int, until: int, now: int) -> None:
        """A server window started at some local time in ``(after, until]``: the offset is
        in ``[-until, -after]`` up to whole windows. The first sighting is adopted; once two
        sightings have disagreed (a count that is not per fixed window), a sighting is only
        a candidate until another one, at least half a window later, agrees with it."""
        if self.explicit or until < after:
            return
        lo, hi = -until, -after
        if self.offset is not None:
            shift = self._shift(lo, hi)
            lo, hi = lo + shift, hi + shift
            grown = (now - self.set_at) * self.drift_ppm // _PPM
            new_lo, new_hi = max(self.lo - grown, lo), min(self.hi + grown, hi)
            if new_lo <= new_hi:
                if self.phase_only:
                    self._adopt(new_lo, new_hi, now, phase_only=True)
            elif self.phase_only:
                # Contradicts what was learned from counts before: unlearn it, and from now
                # on want a confirmation.
                self.offset = None
                self._bump()
                self._doubted = True
                self._candidate = (-until, -after, now)
            return
        if not self._doubted:
            self._adopt(lo, hi, now, phase_only=True)
            return
        if self._candidate is None:
            self._candidate = (lo, hi, now)
            return
        c_lo, c_hi, c_at = self._candidate
        shift = self._shift(lo, hi, (c_lo + c_hi) // 2)
        lo, hi = lo + shift, hi + shift
        new_lo, new_hi = max(c_lo, lo), min(c_hi, hi)
        if new_lo > new_hi:
            self._candidate = (-until, -after, now)
        elif now - c_at >= self.window // 2:
            self._candidate = None
            self._adopt(new_lo, new_hi, now, phase_only=True)
        else:
            self._candidate = (new_lo, new_hi, c_at)

    def _shift(self, lo: int, hi: int, centre: int | None = None) -> int:
        """The multiple of the window that brings ``[lo, hi]`` nearest to ``centre``."""
        w = self.window
        target = self.offset if centre is None else centre
        assert target is not None
        return (target - (lo + hi) // 2 + w // 2) // w * w

    def _adopt(self, lo: int, hi: int, now: int, *, phase_only: bool) -> None:
        self.lo, self.hi = lo, hi
        self.offset = (lo + hi) // 2
        self.error = (hi - lo + 1) // 2
        self.set_at = now
        self._bump()
        self.phase_only = phase_only

    def clear(self) -> None:
        """Forget the offset (back to the mode that needs none)."""
        self.offset = None
        self._bump()
        self.explicit = False
        self.phase_only = False
        self._candidate = None

    def _bump(self) -> None:
        self.version += 1
        for core in self._cores:
            core._drop_span()

    def eps(self, now: int) -> int:
        """The error bound at ``now``, drift included."""
        return self.error + abs(now - self.set_at) * self.drift_ppm // _PPM


class IPGroupState:
    """A 418 ban shared by every budget leaving from one egress IP."""

    __slots__ = ("banned_until", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.banned_until = 0

    def banned(self, now: int) -> bool:
        """Whether the ban is still running at ``now``."""
        return now < self.banned_until


class _Window:
    """Ledger of one server minute."""

    __slots__ = (
        "charged",
        "done",
        "foreign",
        "frontier",
        "full",
        "ks",
        "last_sent",
        "pending",
        "settled",
    )

    def __init__(self, k: int) -> None:
        self.ks = (k,)  # the windows of a grant charged to this one alone (shared tuple)
        self.charged = 0  # own weight that may land in this window (in flight included)
        self.done = 0  # own weight the server's header proved it counted here
        self.foreign = 0  # lower bound of others' weight here (drives the foreign forecast)
        self.full = False  # the server said so (429)
        # Header readings still in the running for "latest": [received at, bound on others'
        # weight], bounds decreasing. A reading is dropped once a request sent after it was
        # received has reported (that one was counted later, so it bounds more).
        self.frontier: deque[list[int]] = deque()
        self.last_sent = -(2**63)
        # Own requests surely landing here, by the time they have surely arrived.
        self.pending: deque[list[int]] = deque()  # [arrived by, weight, settled?]
        self.settled = 0

    @property
    def excess(self) -> int:
        """Upper bound of the weight the server counted here beyond our own, as of the
        latest reading (all of it once the server answered 429)."""
        if self.full:
            return 1 << 62
        return max(self.frontier[0][1], 0) if self.frontier else 0

    def reading(self, sent: int, received: int, bound: int) -> None:
        """Add one header reading: sent/received times of its request, and its bound."""
        frontier = self.frontier
        if sent > self.last_sent:
            self.last_sent = sent
            while frontier and frontier[0][0] <= sent:
                frontier.popleft()
        while frontier and frontier[-1][1] <= bound:
            frontier.pop()
        frontier.append([received, bound])

    def settle(self, now: int) -> int:
        """Settle every request that has surely arrived by ``now``; the settled weight."""
        pending = self.pending
        while pending and pending[0][0] <= now:
            cell = pending.popleft()
            cell[2] = 1
            self.settled += cell[1]
        return self.settled


_GRANTED, _SENT, _FINISHED, _REFUNDED = 0, 1, 2, 3


class Grant:
    """One grant of the pure core (a :class:`Permit` is one, with the async layer's fields)."""

    __slots__ = (
        "cell",
        "cum_snap",
        "fin_snap",
        "granted_at",
        "ref_sent",
        "ref_used",
        "sent_at",
        "seq",
        "snap",
        "span",
        "state",
        "weight",
        "windows",
    )

    def __init__(self, weight: int, now: int, seq: int) -> None:
        self.weight = weight
        self.granted_at = now
        self.sent_at = now
        self.seq = seq  # also finds its entry in the log: every grant appends one
        self.cell: list[int] | None = None  # its cell in a window's pending list
        self.windows: tuple[int, ...] = ()  # server minutes charged with this grant
        self.snap: tuple[int, ...] = ()  # each window's ``done`` when the request left
        self.fin_snap = 0  # finished weight when the request left
        self.cum_snap = 0  # granted weight (this one included) when the request left
        self.ref_sent = 0  # the latest-sent answered request when this one left...
        self.ref_used = -1  # ...and the count it reported (-1: none)
        self.span = -1  # the span cache's id when it left within its stretch (else -1)
        self.state = _GRANTED

    @property
    def open(self) -> bool:
        """Granted and neither finished nor refunded."""
        return self.state < _FINISHED


_new_record = object.__new__


class BudgetCore:
    """Pure weight accounting for one budget. Every method takes ``now`` (integer ns of the
    local monotonic clock) and never reads a clock itself.

    Use: ``ready_at(now, w) <= now`` → ``grant(now, w)``; then ``mark_sent``, and
    ``on_response`` / ``finish`` / ``refund``. A denial changes nothing.
    """

    # Slots: attribute reads and writes on the per-request path are the cheapest kind.
    # ``__dict__`` stays for callers (and tests) that wrap a method on one instance.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_den",
        "_foreign_rate",
        "_last_grant_at",
        "_last_response_at",
        "_log_first",
        "_log_sum",
        "_log_t",
        "_log_w",
        "_low_window",
        "_pf_granted",
        "_pf_received",
        "_pf_sent",
        "_pf_used",
        "_pf_value",
        "_seq",
        "_sp_fast",
        "_sp_from",
        "_sp_id",
        "_sp_k",
        "_sp_prev",
        "_sp_to",
        "_sp_ver",
        "_sp_win",
        "_tat",
        "_windows",
        "burst",
        "burst_ppm",
        "ceiling",
        "clock",
        "effective",
        "finished_cum",
        "granted_cum",
        "group",
        "headroom_ppm",
        "limit",
        "outstanding",
        "paused_until",
        "probe",
        "probe_timeout",
        "record",
        "server_used",
        "span",
        "spread",
        "window",
    )

    def __init__(
        self,
        limit: int,
        *,
        window_ns: int = WINDOW_NS,
        spread_ns: int = NS,
        headroom: float = 0.01,
        burst: float = 0.005,
        probe: bool = True,
        probe_timeout_ns: int = 5 * NS,
        offset: ServerOffset | None = None,
        group: IPGroupState | None = None,
    ) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        if not 0.01 <= headroom < 0.5:
            raise ValueError("headroom must be in [0.01, 0.5): at least 1% stays unused")
        if not 0 <= burst < 0.5:
            raise ValueError("burst must be in [0, 0.5)")
        if window_ns <= 0 or spread_ns < 0:
            raise ValueError("window must be positive and spread >= 0")
        self.limit = limit
        self.ceiling = limit  # the server's limit as believed now (a 429 can lower it)
        self.window = window_ns
        self.spread = spread_ns
        self.span = window_ns + spread_ns
        self.headroom_ppm = round(headroom * _PPM)
        self.burst_ppm = round(burst * _PPM)
        self.probe = probe
        self.probe_timeout = probe_timeout_ns
        self.clock = offset if offset is not None else ServerOffset(window_ns=window_ns)
        self.group = group if group is not None else IPGroupState("default")
        # Pacer state: ``tat`` in units of ns * ``_den`` so that one unit of weight costs
        # exactly ``span`` units: integer arithmetic, no rounding drift.
        self.effective = 0
        self.burst = 0
        self._den = 1
        self._tat = 0
        self._foreign_rate = 0  # forecast of others' weight per window
        self._set_ceiling(limit)
        # The log of grants, oldest first: times and weights (0 once refunded) in two deques
        # of plain ints (no per-grant object for the garbage collector to keep visiting).
        # The last entry is grant ``_seq``. ``_log_first`` is the oldest time (far in the
        # future while empty): expiry is checked without touching the deque's cold end.
        self._log_t: deque[int] = deque()
        self._log_w: deque[int] = deque()
        self._log_first = _NEVER
        self._log_sum = 0
        self._windows: dict[int, _Window] = {}
        self._low_window = 0
        self.paused_until = 0
        self.server_used: int | None = None
        # Offset-free guard: the latest-sent response with a header.
        self._pf_value: int | None = None
        self._pf_used = -1  # -1: no response with a count yet
        self._pf_granted = 0
        self._pf_sent = 0
        self._pf_received = 0
        self.granted_cum = 0  # weight granted, refunds deducted
        self.finished_cum = 0  # weight of permits finished (response or gave up)
        self.outstanding = 0
        self._seq = 0
        self._last_grant_at = 0
        self._last_response_at: int | None = None
        # The span cache: while the clock's version is ``_sp_ver``, any request sent at a
        # local time in [_sp_from, _sp_to] arrives within server minute ``_sp_k`` alone (for
        # the error bound at any of those times), and is surely handled there if answered
        # by ``_sp_to``: the window arithmetic of the common case, done once per span
        # instead of per request. ``_sp_win`` / ``_sp_prev`` are windows k and k - 1 as
        # they were when it was filled; creating or collecting a window empties it.
        self._sp_ver = -1
        self._sp_from = 0
        self._sp_to = -1
        self._sp_k = 0
        self._sp_win: _Window | None = None
        self._sp_prev: _Window | None = None
        # For the per-request paths: window k while the span cache is valid and k exists
        # (else None), and an id that changes whenever that state is filled or dropped (a
        # grant sent within a span carries it; the same id at its answer proves the span
        # still holds). The clock drops it on any change (no version compare per request).
        self._sp_fast: _Window | None = None
        self._sp_id = 0
        self.clock._cores.add(self)
        # The class of the grant records (the async layer's permits are grants).
        self.record: type[Grant] = Grant

    # --- configuration ----------------------------------------------------------------

    def _set_ceiling(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.effective = max(1, ceiling * (_PPM - self.headroom_ppm) // _PPM)
        self.burst = max(1, self.effective * self.burst_ppm // _PPM)
        self._retune()

    def _retune(self) -> None:
        """Set the pacing rate: ``effective - burst - foreign`` weight per span."""
        den = max(self.effective - self.burst - self._foreign_rate, self.effective // 10, 1)
        if den != self._den:
            # Keep the theoretical arrival time (in ns) where it is, rounding up.
            self._tat = -(-self._tat * den // self._den)
            self._den = den

    @property
    def rate(self) -> float:
        """Pacing rate in weight per second (for reports)."""
        return self._den * NS / self.span

    def check_weight(self, weight: int) -> None:
        """Raise ValueError for a weight this budget can never grant."""
        if weight <= 0:
            raise ValueError("weight must be positive")
        if weight > self.effective:
            raise ValueError(
                f"weight {weight} exceeds the budget's effective limit {self.effective}"
            )

    # --- the decision -------------------------------------------------------------------

    def ready_at(self, now: int, weight: int) -> int:
        """The earliest local time (>= ``now``) at which ``weight`` could be granted if
        nothing else changed. ``<= now`` means: grant now. Pure apart from expiring old
        log entries."""
        # Written out flat (no helper calls on the way through): it runs once per request.
        ready = now
        if self.paused_until > ready:
            ready = self.paused_until
        if self.group.banned_until > ready:
            ready = self.group.banned_until
        # Pacer (GCRA). A weight above the burst needs the bucket empty of debt.
        tol = self.burst if weight <= self.burst else weight
        pacer = -(-(self._tat + (weight - tol) * self.span) // self._den)
        if pacer > ready:
            ready = pacer
        # Hard cap over the span.
        if self._log_first < now - self.span:
            self._expire(now)
        if self._log_sum + weight > self.effective:
            ready = max(ready, self._log_ready(weight))
        # Server guard.
        clock = self.clock
        offset = clock.offset
        eps = 0
        if offset is not None:
            eps = clock.eps(now)
        if offset is not None and eps * 10 <= self.window:
            if self._windows:
                ledger = self._ledger_ready(now, weight, offset, eps)
                if ledger > ready:
                    ready = ledger
        elif self._pf_value is not None and now < self._pf_received + self.window:
            # No clock alignment: the latest-sent response bounds the window it landed in
            # (its count plus everything of ours it may not include) until that window is
            # surely over. When that blocks, one request at a time may spend a quarter of the
            # headroom to find out whether the server's window has turned over meanwhile.
            bound = self._pf_value + self.granted_cum + weight
            if bound > self.effective:
                until = self._pf_received + self.window
                if self.outstanding:
                    # Answers still to come may show the window turned over: look again
                    # then (they wake the queue) or after a while, not a minute from now.
                    ready = max(ready, min(until, now + self.probe_timeout))
                elif 4 * bound > self.ceiling + 3 * self.effective:
                    ready = max(ready, until)
        # Cold start (or after an idle window): one request at a time until the server has
        # told us how much of the window others already used.
        if self.probe and self.outstanding and self._cold(now):
            ready = max(ready, self._last_grant_at + self.probe_timeout)
        return ready

    def _fill_span(self, now: int) -> None:
        """Fill the span cache from ``now`` for up to a quarter window, when the whole
        arrival interval of a request sent then lies in one server minute."""
        self._drop_span()
        clock = self.clock
        offset = clock.offset
        if offset is None or now < clock.set_at:
            return
        w = self.window
        horizon = now + w // 4
        # The error bound only grows after set_at: its value at the horizon bounds it
        # everywhere in [set_at, horizon].
        eps = clock.error + (horizon - clock.set_at) * clock.drift_ppm // _PPM
        if eps * 10 > w:
            return
        k = (now + offset - eps) // w
        end = min(horizon, (k + 1) * w - offset - eps - self.spread - 1)
        if end < now:
            return
        self._sp_from = max(k * w - offset + eps, clock.set_at)
        self._sp_to = end
        self._sp_k = k
        self._sp_win = self._sp_fast = self._windows.get(k)
        self._sp_prev = self._windows.get(k - 1)
        self._sp_ver = clock.version

    def _drop_span(self) -> None:
        """Invalidate the span cache (the clock changed, or a window came or went)."""
        self._sp_ver = -1
        self._sp_fast = None
        self._sp_id += 1

    def _cold(self, now: int) -> bool:
        last = self._last_response_at
        return last is None or now - last > self.window

    def _expire(self, now: int) -> None:
        log_t = self._log_t
        log_w = self._log_w
        horizon = now - self.span
        while log_t and log_t[0] < horizon:
            log_t.popleft()
            self._log_sum -= log_w.popleft()
        self._log_first = log_t[0] if log_t else _NEVER

    def _log_ready(self, weight: int) -> int:
        need = self._log_sum + weight - self.effective
        freed = 0
        for stamp, w in zip(self._log_t, self._log_w, strict=True):
            freed += w
            if freed >= need:
                return stamp + self.span + 1
        return 0  # unreachable: weight <= effective

    def _arrival_windows(self, now: int, offset: int, eps: int) -> range:
        w = self.window
        return range((now + offset - eps) // w, (now + offset + eps + self.spread) // w + 1)

    def _ledger_ready(self, now: int, weight: int, offset: int, eps: int) -> int:
        ready = now
        w = self.window
        eff = self.effective
        windows = self._windows
        for k in range((now + offset - eps) // w, (now + offset + eps + self.spread) // w + 1):
            win = windows.get(k)
            if win is None:
                continue
            used = win.charged + win.excess if win.full or win.frontier else win.charged
            exit_at = (k + 1) * w - offset + eps  # from here on no arrival can fall in k
            if used + weight > eff:
                ready = max(ready, exit_at)
                continue
            foreign = win.foreign  # the forecast (_forecast), inlined: never below 0
            prev = windows.get(k - 1)
            if prev is not None and prev.foreign > foreign:
                foreign = prev.foreign
            if foreign:
                # Keep room for the others' weight still to come in this window, so that
                # the window is shared out evenly rather than filled early by us.
                elapsed = min(max(now + offset - eps - k * w, 0), w)
                if used + weight + -(-foreign * (w - elapsed) // w) > eff:
                    free = eff - used - weight
                    ready = max(ready, min(exit_at, k * w + w - free * w // foreign - offset + eps))
        return ready

    def _forecast(self, k: int) -> int:
        win = self._windows.get(k)
        prev = self._windows.get(k - 1)
        return max(win.foreign if win else 0, prev.foreign if prev else 0)

    def estimate_ready(self, now: int, weight: int, ahead: int) -> int:
        """A lower bound of when ``weight`` is granted behind ``ahead`` queued weight: the
        pacer's time for both, and any pause. Used to refuse a ``max_wait`` early."""
        tol = self.burst if weight <= self.burst else weight
        base = max(self._tat, now * self._den)
        pacer = -(-(base + (ahead + weight - tol) * self.span) // self._den)
        return max(now, pacer, self.paused_until, self.group.banned_until)

    def ready_now(self, now: int, weight: int) -> bool:
        """True when ``ready_at(now, weight) <= now`` is certain from the common case alone:
        nothing paused, the pacer and the log with room, and the arrival windows far from
        full (room for this weight and the whole foreign forecast besides). False means "ask
        ``ready_at``" (a check would need the exact time of readiness): the decision is
        always theirs, in fewer steps."""
        if self.paused_until > now or self.group.banned_until > now:
            return False
        span = self.span
        tol = self.burst if weight <= self.burst else weight
        # ceil((tat + (weight - tol) * span) / den) <= now, without the division.
        if self._tat + (weight - tol) * span > now * self._den:
            return False
        if self._log_first < now - span:
            self._expire(now)
        if self._log_sum + weight > self.effective:
            return False
        w = self.window
        clock = self.clock
        if clock.version == self._sp_ver and self._sp_from <= now <= self._sp_to:
            # One arrival window, k, known from the span cache.
            win = self._sp_win
            if win is not None:
                if win.full:
                    return False
                used = win.charged
                frontier = win.frontier
                if frontier and frontier[0][1] > 0:
                    used += frontier[0][1]
                # The room kept for others' weight still to come in the window is at most
                # their whole forecast: far enough below the limit, it cannot hold us.
                foreign = win.foreign
                prev = self._sp_prev
                if prev is not None and prev.foreign > foreign:
                    foreign = prev.foreign
                if used + weight + foreign > self.effective:
                    return False
            return self._probe_clear(now)
        offset = clock.offset
        if offset is not None:
            eps = clock.eps(now)
        if offset is not None and eps * 10 <= w:
            self._fill_span(now)
            windows = self._windows
            if windows:
                eff = self.effective
                for k in range(
                    (now + offset - eps) // w, (now + offset + eps + self.spread) // w + 1
                ):
                    win = windows.get(k)
                    if win is None:
                        continue
                    used = win.charged + win.excess if win.full or win.frontier else win.charged
                    foreign = win.foreign
                    prev = windows.get(k - 1)
                    if prev is not None and prev.foreign > foreign:
                        foreign = prev.foreign
                    if used + weight + foreign > eff:
                        return False  # near the limit: ready_at works out when
        elif (
            self._pf_value is not None
            and now < self._pf_received + w
            and self._pf_value + self.granted_cum + weight > self.effective
        ):
            return False
        return self._probe_clear(now)

    def _probe_clear(self, now: int) -> bool:
        """False while a cold start's probe may hold the next grant back."""
        if self.probe and self.outstanding:
            last = self._last_response_at
            if last is None or now - last > self.window:
                return False
        return True

    def take(self, now: int, weight: int) -> Grant | None:
        """``ready_now(now, weight)`` and then ``grant(now, weight)`` in one pass, for the
        usual case only: the span cache covers ``now`` and its window exists. The grant, or
        None, which changes nothing (then decide with ``ready_now`` / ``ready_at``)."""
        # The same checks as ready_now's span-cache branch, then grant's, inline: this runs
        # once per request, and the pieces as separate calls cost more than the work.
        win = self._sp_fast
        if (
            win is None
            or now < self._sp_from
            or now > self._sp_to
            or self.paused_until > now
            or self.group.banned_until > now
            or win.full
        ):
            return None
        span = self.span
        tat = self._tat
        now_den = now * self._den
        if tat + (weight - (self.burst if weight <= self.burst else weight)) * span > now_den:
            return None
        if self._log_first < now - span:
            self._expire(now)
        eff = self.effective
        if self._log_sum + weight > eff:
            return None
        used = win.charged
        frontier = win.frontier
        if frontier and frontier[0][1] > 0:
            used += frontier[0][1]
        foreign = win.foreign
        prev = self._sp_prev
        if prev is not None and prev.foreign > foreign:
            foreign = prev.foreign
        if used + weight + foreign > eff:
            return None
        if self.probe and self.outstanding:
            last = self._last_response_at
            if last is None or now - last > self.window:
                return None
        self._tat = (tat if tat > now_den else now_den) + weight * span
        log_t = self._log_t
        if not log_t:
            self._log_first = now
        log_t.append(now)
        self._log_w.append(weight)
        self._log_sum += weight
        self._seq = seq = self._seq + 1
        win.charged += weight
        # The record: what refund / finish / mark_sent read. mark_sent sets the rest (the
        # snapshot fields) before anything reads them.
        g = _new_record(self.record)
        g.weight = weight
        g.granted_at = now
        g.seq = seq
        g.cell = None
        g.windows = win.ks
        g.state = _GRANTED
        self.granted_cum += weight
        self.outstanding += 1
        self._last_grant_at = now
        return g

    def grant(self, now: int, weight: int) -> Grant:
        """Commit a grant (the caller checked ``ready_at(now, weight) <= now``)."""
        tat = now * self._den
        if self._tat > tat:
            tat = self._tat
        self._tat = tat + weight * self.span
        if not self._log_t:
            self._log_first = now
        self._log_t.append(now)
        self._log_w.append(weight)
        self._log_sum += weight
        self._seq += 1
        g = _new_record(self.record)
        Grant.__init__(g, weight, now, self._seq)
        clock = self.clock
        offset = clock.offset
        win = self._sp_win
        if (
            win is not None
            and clock.version == self._sp_ver
            and self._sp_from <= now <= self._sp_to
        ):
            g.windows = win.ks
            win.charged += weight
        elif offset is not None:
            eps = clock.eps(now)
            w = self.window
            lo = (now + offset - eps) // w
            hi = (now + offset + eps + self.spread) // w
            windows = self._windows
            if lo == hi:
                win = windows.get(lo)
                if win is None:
                    win = self._new_window(lo)
                    self._collect(lo)
                g.windows = win.ks
                win.charged += weight
            else:
                g.windows = tuple(range(lo, hi + 1))
                for k in g.windows:
                    win = windows.get(k)
                    if win is None:
                        win = self._new_window(k)
                        self._collect(k)
                    win.charged += weight
        self.granted_cum += weight
        self.outstanding += 1
        self._last_grant_at = now
        return g

    def _new_window(self, k: int) -> _Window:
        win = self._windows[k] = _Window(k)
        self._drop_span()  # the span cache may hold None for it
        return win

    def _collect(self, k: int) -> None:
        # Windows two minutes old can no longer receive anything of ours.
        if k - 2 > self._low_window:
            self._low_window = k - 2
            self._drop_span()
            for old in [j for j in self._windows if j < k - 2]:
                del self._windows[old]

    def try_grant(self, now: int, weight: int) -> Grant | None:
        """``grant`` if ready now, else None (and nothing changes)."""
        if self.ready_at(now, weight) <= now:
            return self.grant(now, weight)
        return None

    # --- after the grant ----------------------------------------------------------------

    def mark_sent(self, g: Grant, now: int) -> None:
        """The request is leaving now: no refund from here on (unless provably unsent)."""
        if g.state != _GRANTED:
            return
        g.state = _SENT
        g.sent_at = now
        g.fin_snap = self.finished_cum
        g.cum_snap = self.granted_cum
        g.ref_sent = self._pf_sent  # 0 and -1 until a count came back
        g.ref_used = self._pf_used
        win = self._sp_fast
        if win is not None and g.windows is win.ks and self._sp_from <= now <= self._sp_to:
            # Still where the grant charged it (the span cache says so): the snapshot.
            g.span = self._sp_id
            pending = win.pending
            settled = win.settled
            if pending and pending[0][0] <= now:
                settled = win.settle(now)
            g.snap = (win.done if win.done > settled else settled,)
            g.cell = cell = [now + self.spread, g.weight, 0]
            pending.append(cell)
            return
        g.span = -1
        windows = self._windows
        clock = self.clock
        offset = clock.offset
        if offset is not None:
            # Where it can land, seen from the moment it leaves: not before it leaves (a
            # window that ends before then is released), and within the spread after
            # (a request sent late, or after the offset became known, is charged to the
            # windows it may now reach).
            eps = clock.eps(now)
            w = self.window
            lo = (now + offset - eps) // w
            hi = (now + offset + eps + self.spread) // w
            old = g.windows
            if old and old[0] == lo and old[-1] == hi and len(old) == hi - lo + 1:
                reach = old
            else:
                reach = tuple(range(lo, hi + 1))
            if reach is not old:
                for k in g.windows:
                    if k not in reach and k in windows:
                        windows[k].charged -= g.weight
                for k in reach:
                    if k not in g.windows:
                        win = windows.get(k)
                        if win is None:
                            win = self._new_window(k)
                        win.charged += g.weight
                g.windows = reach
        # What the server's count will surely include of ours, per window: the answers
        # already back, or the requests that have surely arrived, whichever is more (both
        # are lower bounds; the max rule needs one).
        ks = g.windows
        if len(ks) == 1:
            win = windows.get(ks[0])
            if win is None:
                g.snap = (0,)
            else:
                pending = win.pending
                settled = win.settled
                if pending and pending[0][0] <= now:
                    settled = win.settle(now)
                g.snap = (win.done if win.done > settled else settled,)
                g.cell = cell = [now + self.spread, g.weight, 0]
                pending.append(cell)
        elif ks:
            snap = []
            for k in ks:
                win = windows.get(k)
                snap.append(max(win.done, win.settle(now)) if win is not None else 0)
            g.snap = tuple(snap)

    def refund(self, g: Grant, now: int) -> bool:
        """Undo a grant whose request never reached the server. Idempotent; False when
        there was nothing to undo."""
        if not g.open:
            return False
        g.state = _REFUNDED
        w = g.weight
        back = self._seq - g.seq  # entries after this grant's own in the log
        log_w = self._log_w
        if 0 <= back < len(log_w) and log_w[-1 - back]:  # not expired yet
            log_w[-1 - back] = 0
            self._log_sum -= w
        for k in g.windows:
            win = self._windows.get(k)
            if win is not None:
                win.charged -= w
        self._unsettle(g)  # sent, then proved not to have left (a connect error)
        if g.seq == self._seq:
            # The pacer's state is exact to undo only for the latest grant; an older one
            # stays spent in the pacer (the log and ledger are refunded exactly).
            self._tat -= w * self.span
            if self.paused_until > now:
                self.pause(self.paused_until)
        self.granted_cum -= w
        self.outstanding -= 1
        return True

    def _unsettle(self, g: Grant) -> None:
        """Stop counting ``g`` among the requests the server surely counted."""
        cell = g.cell
        if cell is None or not cell[1]:
            return
        if cell[2]:
            win = self._windows.get(g.windows[0]) if g.windows else None
            if win is not None:
                win.settled -= cell[1]
        cell[1] = 0

    def finish(self, g: Grant, now: int) -> bool:
        """The permit ended after being sent, without (more) news from the server."""
        if not g.open:
            return False
        g.state = _FINISHED
        self.finished_cum += g.weight
        self.outstanding -= 1
        return True

    def on_response(
        self,
        g: Grant,
        now: int,
        status: int,
        used: int | None,
        retry_after_ns: int | None = None,
    ) -> int | None:
        """Learn from the server's answer to ``g``'s request.

        ``used`` is the used-weight header of this budget (None when absent). Returns the
        local time a 418 ban ends (the caller spreads it over the IP group), else None.
        """
        state = g.state
        if state >= _FINISHED:  # finished or refunded
            return None
        if (
            state == _SENT
            and g.span == self._sp_id
            and used is not None
            and status != 429
            and status != 418
            and (win := self._sp_fast) is not None
            and (sent := g.sent_at) <= now <= self._sp_to
            and used >= g.ref_used
        ):
            # The usual answer, in one pass: counted, with a header, sent (``span``: its
            # mark_sent found it within the span cache's stretch of the one window it was
            # charged to, and the cache is still the same) and answered within that stretch
            # (so surely handled there), and no count drop to learn from. The same steps as
            # below, in the same order.
            w = g.weight
            self._last_response_at = now
            bound = used - g.snap[0] - w
            frontier = win.frontier
            if sent > win.last_sent:
                win.last_sent = sent
                while frontier and frontier[0][0] <= sent:
                    frontier.popleft()
            while frontier and frontier[-1][1] <= bound:
                frontier.pop()
            frontier.append([now, bound])
            win.done += w
            foreign = used - win.charged
            if foreign > win.foreign:
                win.foreign = foreign
                self._update_forecast(self._sp_k)
            if sent >= self._pf_sent:
                self._pf_sent = sent
                self._pf_received = now
                self._pf_value = used - g.fin_snap - w
                self._pf_used = used
                self._pf_granted = g.cum_snap
                self.server_used = used
            elif self.server_used is None:
                self.server_used = used
            g.state = _FINISHED
            self.finished_cum += w
            self.outstanding -= 1
            return None
        if state == _GRANTED:
            self.mark_sent(g, g.granted_at)
        w = g.weight
        sent = g.sent_at
        self._last_response_at = now
        clock = self.clock
        offset = clock.offset
        counted = status != 429 and status != 418  # a rejected request may not be counted
        if not counted:
            self._unsettle(g)
        k_single: int | None = None
        win = self._sp_win
        if (
            win is not None
            and g.windows is win.ks
            and clock.version == self._sp_ver
            and self._sp_from <= sent <= now <= self._sp_to
        ):
            # The usual case: charged to one window, and sent and answered within the
            # span cache's stretch of it: surely handled there.
            k_single = self._sp_k
        elif offset is not None:
            eps = clock.eps(now)
            old = g.windows
            window = self.window
            lo = (sent + offset - eps) // window
            win = None
            if len(old) == 1 and old[0] == lo and (now + offset + eps) // window == lo:
                win = self._windows.get(lo)  # one window charged, and surely it
            k_single = lo if win is not None else self._attribute(g, sent, now, offset, eps)
        if counted and used is not None and k_single is not None:
            if win is None:
                win = self._windows[k_single]
            idx = 0 if len(g.windows) == 1 else g.windows.index(k_single)
            # The order-independent max rule: whatever the server counted beyond our
            # own weight known to be in its count (responses received before we sent,
            # and this request) is others' usage, or ours still in flight.
            snap = g.snap[idx] if idx < len(g.snap) else 0
            bound = used - snap - w
            # ``win.reading(sent, now, bound)``, inline: it runs once per answer.
            frontier = win.frontier
            if sent > win.last_sent:
                win.last_sent = sent
                while frontier and frontier[0][0] <= sent:
                    frontier.popleft()
            while frontier and frontier[-1][1] <= bound:
                frontier.pop()
            frontier.append([now, bound])
            win.done += w
            foreign = used - win.charged  # everything of ours could be in there
            if foreign > win.foreign:
                win.foreign = foreign
                self._update_forecast(k_single)
        if used is not None and counted:
            if 0 <= used < g.ref_used and not self.clock.explicit:
                # The reference answer arrived before this request left, so in one window
                # this count could not be lower: a window boundary passed between the
                # reference's send and this answer.
                self.clock.learn_boundary(g.ref_sent, now, now)
            if sent >= self._pf_sent:
                self._pf_sent = sent
                self._pf_received = now
                self._pf_value = used - g.fin_snap - w
                self._pf_used = used
                self._pf_granted = g.cum_snap
        if used is not None and (sent >= self._pf_sent or self.server_used is None):
            self.server_used = used
        g.state = _FINISHED  # finish(), inline
        self.finished_cum += w
        self.outstanding -= 1
        if status == 429:
            self._on_429(now, used, w, retry_after_ns, k_single)
        elif status == 418:
            until = now + (retry_after_ns if retry_after_ns is not None else DEFAULT_BAN_NS)
            self.group.banned_until = max(self.group.banned_until, until)
            self.pause(until)
            return until
        return None

    def _attribute(self, g: Grant, sent: int, now: int, offset: int, eps: int) -> int | None:
        """Posterior attribution: the server handled the request between send and receive.
        Release the charge on windows it cannot have landed in, charge any it may have
        landed in but was not charged to; return the window when only one is possible."""
        w = self.window
        lo = (sent + offset - eps) // w
        hi = (now + offset + eps) // w
        windows = self._windows
        old = g.windows
        if old and lo >= old[0] and hi <= old[-1] and lo == hi:
            for k in old:
                if k != lo and k in windows:
                    windows[k].charged -= g.weight
            if len(old) > 1:
                g.snap = (g.snap[old.index(lo)],) if g.snap else ()
                g.windows = (lo,)
            return lo
        # The arrival interval is not inside what was charged (a late answer, or the offset
        # changed since the grant): charge the possible windows that were not.
        keep = range(lo, hi + 1)
        for k in old:
            if k not in keep and k in windows:
                windows[k].charged -= g.weight
        snaps = dict(zip(old, g.snap, strict=False))
        for k in keep:
            if k not in old:
                win = windows.get(k)
                if win is None:
                    win = self._new_window(k)
                win.charged += g.weight
        g.windows = tuple(keep)
        g.snap = tuple(snaps.get(k, 0) for k in keep)
        return lo if lo == hi else None

    def _update_forecast(self, k: int) -> None:
        forecast = self._forecast(k)
        if forecast != self._foreign_rate:
            self._foreign_rate = forecast
            self._retune()

    def _on_429(
        self, now: int, used: int | None, weight: int, retry_after_ns: int | None, k: int | None
    ) -> None:
        offset = self.clock.offset
        if retry_after_ns is not None:
            until = now + retry_after_ns
        elif offset is not None:
            # Until the server's minute is surely over.
            eps = self.clock.eps(now)
            until = ((now + offset + eps) // self.window + 1) * self.window - offset + eps
        else:
            until = now + self.window
        if k is not None and retry_after_ns is None:
            # No word on when to come back: that minute is full as far as we know. (With a
            # Retry-After, the server's word on when it takes requests again is kept.)
            self._windows[k].full = True
        if used is not None and used - weight >= self.limit // 2:
            # The server refused at ``used``: its real ceiling is no higher than that (the
            # refused request's own weight may or may not be in the figure). A refusal far
            # below the configured limit is more likely some other limit: only pause then.
            learned = used - weight
            if learned < self.ceiling:
                self._set_ceiling(learned)
        self.pause(until)

    def pause(self, until: int) -> None:
        """Grant nothing before ``until``; resume at the pacing rate, without a burst."""
        if until > self.paused_until:
            self.paused_until = until
        # With the theoretical arrival time a full burst past the pause, the first grant
        # after it waits for its own weight: the queue drains at the paced rate.
        floor = until * self._den + self.burst * self.span
        if self._tat < floor:
            self._tat = floor

    def set_offset(self, offset_ns: int, error_ns: int, now: int) -> None:
        """Adopt a new estimate of the server clock (shared with the other budgets)."""
        self.clock.set(offset_ns, error_ns, now)

    # --- introspection ------------------------------------------------------------------

    def used(self, now: int) -> int:
        """Best estimate of the weight counted against the server's current window: our
        own (in flight included) plus what the server showed of others'. The guard works
        with a more cautious figure; this one is for metrics."""
        offset = self.clock.offset
        if offset is not None:
            win = self._windows.get((now + offset) // self.window)
            if win is None:
                return 0
            if win.full:
                return self.ceiling
            return min(win.charged + max(win.foreign, 0), self.ceiling)
        own = sum(
            w
            for stamp, w in zip(self._log_t, self._log_w, strict=True)
            if stamp > now - self.window
        )
        if self._pf_used >= 0 and now < self._pf_received + self.window:
            return max(own, self._pf_used + self.granted_cum - self._pf_granted)
        return own

    def window_state(self, k: int) -> tuple[int, int, int] | None:
        """``(charged, done, excess)`` of server minute ``k`` (tests and debugging)."""
        win = self._windows.get(k)
        return (win.charged, win.done, win.excess) if win else None

    def windows_of(self, g: Grant) -> tuple[int, ...]:
        """The server minutes ``g`` is currently charged to."""
        return g.windows

    @property
    def log_weight(self) -> int:
        """Own weight in the log (granted within the last span, refunds deducted)."""
        return self._log_sum


# --------------------------------------------------------------------------------------------
# Async layer: waits on the core; never does arithmetic of its own.
# --------------------------------------------------------------------------------------------


class _Waiter:
    __slots__ = ("event", "priority", "weight")

    def __init__(self, weight: int, priority: int) -> None:
        self.weight = weight
        self.priority = priority
        self.event: anyio.Event | None = None


class _Budget:
    """A :class:`BudgetCore` plus its queues of waiting tasks (one per priority class)."""

    __slots__ = ("core", "header", "key", "limiter", "n_waiting", "queued", "queues")

    def __init__(self, key: BudgetKey, core: BudgetCore, limiter: RateLimiter) -> None:
        self.key = key
        self.core = core
        self.limiter = limiter
        self.header = USED_WEIGHT_HEADERS[key.kind]
        self.queues: tuple[deque[_Waiter], ...] = tuple(deque() for _ in Priority)
        self.queued = [0] * len(Priority)  # queued weight per class
        self.n_waiting = 0  # waiters in all classes: 0 lets acquire and wake skip the scans

    def head(self) -> _Waiter | None:
        for queue in self.queues:
            if queue:
                return queue[0]
        return None

    def busy(self, priority: int) -> bool:
        """Whether anyone of this class or a higher one is waiting."""
        return self.n_waiting > 0 and any(self.queues[p] for p in range(priority + 1))

    def ahead(self, priority: int) -> int:
        return sum(self.queued[: priority + 1])

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues)

    def enqueue(self, waiter: _Waiter) -> None:
        self.queues[waiter.priority].append(waiter)
        self.queued[waiter.priority] += waiter.weight
        self.n_waiting += 1

    def remove(self, waiter: _Waiter) -> None:
        was_head = self.head() is waiter
        queue = self.queues[waiter.priority]
        if queue and queue[0] is waiter:
            queue.popleft()
        else:
            queue.remove(waiter)
        self.queued[waiter.priority] -= waiter.weight
        self.n_waiting -= 1
        if was_head:
            self.wake()

    def wake(self) -> None:
        """Tell the head to look at the state again."""
        if not self.n_waiting:
            return
        head = self.head()
        if head is not None and head.event is not None:
            head.event.set()


class Permit(Grant):
    """Weight granted for one request.

    Use it as an async context manager around the exchange. Call :meth:`mark_sent` right
    before the request goes to the transport and :meth:`observe` with the response. A
    permit released without ``mark_sent`` (the caller was cancelled, building the request
    failed), or with a :class:`~binance_pmpro.errors.TransportError` whose ``sent`` is
    False, is refunded; otherwise its weight stays spent (the server may have counted it).

    It is its own :class:`Grant` (one object per request, not two).
    """

    __slots__ = ("_budget", "_clock", "sent")

    def __init__(
        self,
        limiter: RateLimiter | None,
        budget: _Budget | None,
        grant: Grant | None,
        weight: int,
        loop: Any = None,
    ) -> None:
        # What it reads the time from (see ``_clock_of``): the loop it was granted on.
        self._clock = _clock_of(loop) if loop is not None else _ANY_LOOP
        self.sent = False
        if grant is None or budget is None:
            # Accounts for nothing: finished from the start.
            Grant.__init__(self, weight, 0, 0)
            self.state = _FINISHED
            self._budget = None
        else:
            for name in Grant.__slots__:
                setattr(self, name, getattr(grant, name))
            self._budget = budget

    @property
    def key(self) -> BudgetKey | None:
        """The budget this permit draws on (None for a no-op permit)."""
        return self._budget.key if self._budget is not None else None

    def mark_sent(self) -> None:
        """The request is about to leave: from now on the weight is not refunded."""
        self.sent = True
        budget = self._budget
        if budget is not None:
            clock = self._clock
            budget.core.mark_sent(
                self, _monotonic_ns() if clock is None else math.floor(clock.time() * NS)
            )

    def refund(self) -> None:
        """Give the weight back (only meaningful before the request was sent). Idempotent."""
        budget = self._budget
        if budget is not None and budget.core.refund(self, _now_ns()):
            budget.wake()

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from the response: the server's used weight, 429 pauses, 418 bans.

        ``headers`` must answer ``get`` with lower-case names (``httpx.Headers`` or a dict
        with lower-case keys).
        """
        budget = self._budget
        if budget is None:
            return
        clock = self._clock
        now = _monotonic_ns() if clock is None else math.floor(clock.time() * NS)
        core = budget.core
        server = core.clock
        if (status != 429 and status != 418) and (
            server.explicit or (server.offset is not None and server.eps(now) <= _DATE_GOOD_ENOUGH)
        ):
            # The usual answer, handled here (what ``_observe`` does for it): no pause or
            # ban to spread, no Date header to learn the clock from.
            raw = headers.get(budget.header)
            core.on_response(
                self, now, status, int(raw) if raw is not None and raw.isdigit() else None
            )
            if budget.n_waiting:
                budget.wake()
            return
        budget.limiter._observe(budget, self, status, headers, now)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state >= _FINISHED:
            return  # the usual end: the answer already finished the grant (or a no-op permit)
        budget = self._budget
        if budget is None:
            return
        if not self.sent or (isinstance(exc, TransportError) and not exc.sent):
            self.refund()
        elif budget.core.finish(self, _now_ns()):
            budget.wake()


class RateLimiter:
    """Weight budgets for one process, shared by every task (and every client) using it.

    Options (all per limiter; every budget of a kind gets the same limit):

    - ``uid_limit``, ``ip_limit``, ``api_limit``, ``fapi_limit``: weight per window of the
      UID, ``/sapi`` IP, ``/api`` IP and futures (``/fapi``) IP budgets (defaults: Binance's
      180,000 / 12,000 / 6,000 / 2,400 per minute);
    - ``window``: seconds per window (60; other values are for tests);
    - ``headroom``: share of the limit never used, at least 0.01;
    - ``burst``: share of the effective limit that may go out at once (default 0.005);
    - ``arrival_spread``: bound (s) on how late after its grant a request reaches the server
      (grant-to-send lag plus one-way delay). Pacing assumes weight granted within
      ``window + arrival_spread`` may land in one server window;
    - ``probe``: after start-up or an idle window, send one request and read the server's
      count before sending more;
    - ``drift_ppm``: how fast the server-offset error bound grows after
      :meth:`set_server_offset`.

    Create it inside or outside an event loop, but use it from one loop only.
    """

    def __init__(
        self,
        *,
        uid_limit: int = DEFAULT_LIMITS[Budget.SAPI_UID],
        ip_limit: int = DEFAULT_LIMITS[Budget.SAPI_IP],
        api_limit: int = DEFAULT_LIMITS[Budget.API_IP],
        fapi_limit: int = DEFAULT_LIMITS[Budget.FAPI_IP],
        window: float = 60.0,
        headroom: float = 0.01,
        burst: float = 0.005,
        arrival_spread: float = 1.0,
        probe: bool = True,
        drift_ppm: int = 100,
    ) -> None:
        self.limits: dict[Budget, int] = {
            Budget.SAPI_UID: uid_limit,
            Budget.SAPI_IP: ip_limit,
            Budget.API_IP: api_limit,
            Budget.FAPI_IP: fapi_limit,
        }
        for kind, limit in self.limits.items():
            if limit <= 0:
                raise ValueError(f"the {kind.value} limit must be positive")
        if window <= 0 or arrival_spread < 0 or arrival_spread * 2 > window:
            raise ValueError("window must be positive and arrival_spread in [0, window / 2]")
        self._window_ns = round(window * NS)
        self._spread_ns = round(arrival_spread * NS)
        self._headroom = headroom
        self._burst = burst
        self._probe = probe
        # Validate the shared options once, on a throwaway core.
        BudgetCore(1000, headroom=headroom, burst=burst, window_ns=self._window_ns)
        self._offset = ServerOffset(drift_ppm, self._window_ns)
        self._groups: dict[str, IPGroupState] = {}
        self._budgets: dict[BudgetKey, _Budget] = {}
        # id(key) -> (key, budget) for the key objects callers keep passing (the key is held,
        # so its id cannot be reused while the entry lives).
        self._by_id: dict[int, tuple[BudgetKey, _Budget]] = {}
        self._last_now = 0

    # --- configuration ----------------------------------------------------------------

    def set_server_offset(self, offset_ns: int, error_ns: int) -> None:
        """Tell the limiter the server's clock: ``offset_ns`` = server time (ns since the
        epoch, as Binance reports it) minus the event loop's clock (``anyio.current_time()``
        in ns), with ``error_ns`` a hard bound on the estimate's error.

        With it, header readings are attributed to the server's own minutes. Until it is
        called, the limiter learns the offset from the responses' ``Date`` headers (to
        within tens of ms after a few seconds of traffic), and before the first of those it
        uses an offset-free bound, which is safe but idles longer after the server reports a
        nearly full window. Call it again after each clock sync.
        """
        now = _now_ns()
        self._offset.set(offset_ns, error_ns, now)
        for budget in self._budgets.values():
            budget.wake()

    def clear_server_offset(self) -> None:
        """Forget the server offset (e.g. after the host was suspended)."""
        self._offset.clear()

    @property
    def server_offset(self) -> tuple[int, int] | None:
        """``(offset_ns, error_ns)`` as set or learned from ``Date`` headers, or None."""
        off = self._offset
        if off.offset is None or off.phase_only:
            return None
        return (off.offset, off.error)

    def core(self, key: BudgetKey) -> BudgetCore:
        """The pure state of one budget (created on first use)."""
        return self._budget(key).core

    def _budget(self, key: BudgetKey) -> _Budget:
        budget = self._budgets.get(key)
        if budget is None:
            name = key.group
            group = self._groups.get(name)
            if group is None:
                group = self._groups[name] = IPGroupState(name)
            core = BudgetCore(
                self.limits[key.kind],
                window_ns=self._window_ns,
                spread_ns=self._spread_ns,
                headroom=self._headroom,
                burst=self._burst,
                probe=self._probe,
                offset=self._offset,
                group=group,
            )
            core.record = Permit
            budget = self._budgets[key] = _Budget(key, core, self)
        return budget

    # --- acquiring ----------------------------------------------------------------------

    async def acquire(
        self,
        key: BudgetKey,
        weight: int,
        *,
        max_wait: float | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Permit:
        """Wait until ``weight`` fits the budget ``key`` and return the permit.

        Waiters are served strictly first-in first-out within a priority class, HIGH
        before NORMAL. Raises :class:`~binance_pmpro.errors.RateLimitTimeoutError` as soon
        as the computed wait exceeds ``max_wait`` seconds, and
        :class:`~binance_pmpro.errors.IPBannedError` at once while the budget's IP group is
        banned (whatever ``max_wait`` is). Cancellation while waiting consumes nothing.
        """
        cached = self._by_id.get(id(key))
        if cached is not None and cached[0] is key:
            budget = cached[1]
        else:
            budget = self._budgets.get(key) or self._budget(key)
            if len(self._by_id) >= 64:
                self._by_id.clear()
            self._by_id[id(key)] = (key, budget)
        core = budget.core
        # What the time is read from, here and by the permit (a task never changes loops):
        # the running asyncio loop's clock directly (no library look-up per read), else
        # anyio's. See ``_clock_of``.
        clock: Any = _ANY_LOOP
        if _sniffio_thread.name is None and _sniffio_var.get() is None:
            loop = (_running_loop or _loop_getter())()
            if loop is not None:
                clock = _clock_of(loop)
        now = _monotonic_ns() if clock is None else math.floor(clock.time() * NS)
        self._last_now = now
        if weight <= 0:
            if core.group.banned_until > now:
                raise self._ban_error(core.group, now)
            core.check_weight(weight)
        if not budget.n_waiting or not budget.busy(priority):
            # Uncontended: granted without yielding. The request that follows awaits its
            # transport anyway, and an event-loop round trip here was the largest part of
            # an uncontended acquire's cost. (A caller already cancelled is stopped at that
            # await; its weight is then kept, which errs on the safe side.) ``take`` grants
            # nothing while banned, paused or over the limit.
            grant = core.take(now, weight)
            if grant is None:
                if core.group.banned_until > now:
                    raise self._ban_error(core.group, now)
                if weight > core.effective:
                    core.check_weight(weight)
                if core.ready_now(now, weight) or core.ready_at(now, weight) <= now:
                    grant = core.grant(now, weight)
            if grant is not None:
                if isinstance(grant, Permit):  # the core's grant records are permits
                    grant._budget = budget
                    grant._clock = clock
                    grant.sent = False
                    return grant
                permit = Permit(self, budget, grant, weight)
                permit._clock = clock
                return permit
        elif core.group.banned_until > now:
            raise self._ban_error(core.group, now)
        elif weight > core.effective:
            core.check_weight(weight)
        await anyio.lowlevel.checkpoint_if_cancelled()
        grant = await self._wait(budget, weight, int(priority), now, max_wait)
        permit = grant if isinstance(grant, Permit) else Permit(self, budget, grant, weight)
        permit._budget = budget
        permit._clock = clock
        permit.sent = False
        # The grant is committed: yield to others without being cancellable, so a
        # cancellation arriving now cannot lose it (anyio's own locks do the same).
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return permit

    async def _wait(
        self, budget: _Budget, weight: int, priority: int, now: int, max_wait: float | None
    ) -> Grant:
        core = budget.core
        deadline: int | None = None
        if max_wait is not None:
            deadline = now + max(0, round(max_wait * NS))
            estimate = core.estimate_ready(now, weight, budget.ahead(priority))
            if estimate > deadline:
                raise self._timeout(budget, weight, estimate - now, max_wait)
        waiter = _Waiter(weight, priority)
        budget.enqueue(waiter)
        try:
            while True:
                now = _now_ns()
                if core.group.banned_until > now:
                    raise self._ban_error(core.group, now)
                if budget.head() is waiter:
                    ready = core.ready_at(now, weight)
                    if ready <= now:
                        return core.grant(now, weight)  # no await between check and grant
                    if deadline is not None and ready > deadline:
                        raise self._timeout(budget, weight, ready - now, max_wait)
                    until: int | None = ready
                else:
                    if deadline is not None and now >= deadline:
                        raise self._timeout(budget, weight, None, max_wait)
                    until = deadline
                event = waiter.event = anyio.Event()
                if until is None:
                    await event.wait()
                else:
                    with anyio.move_on_after((until - now) / NS + _WAKE_SLACK):
                        await event.wait()
        finally:
            waiter.event = None
            budget.remove(waiter)

    def _timeout(
        self, budget: _Budget, weight: int, wait_ns: int | None, max_wait: float | None
    ) -> RateLimitTimeoutError:
        key = budget.key
        where = f"{key.kind.value} budget {key.endpoint or 'api'}"
        if wait_ns is None:
            return RateLimitTimeoutError(
                f"{weight} weight on the {where}: still queued after max_wait={max_wait} s"
            )
        wait = wait_ns / NS
        return RateLimitTimeoutError(
            f"{weight} weight on the {where} needs {wait:.3f} s, more than max_wait={max_wait} s",
            wait=wait,
        )

    def _ban_error(self, group: IPGroupState, now: int) -> IPBannedError:
        remaining = (group.banned_until - now) / NS
        err = IPBannedError(
            418,
            -1003,
            f"IP group {group.name!r} is banned by Binance for another {remaining:.1f} s",
            {},
            retry_after=remaining,
        )
        clock = self._offset
        err.banned_until = (
            (group.banned_until + clock.offset) / NS
            if clock.offset is not None and not clock.phase_only
            else time.time() + remaining
        )
        return err

    # --- responses ----------------------------------------------------------------------

    def _observe(
        self,
        budget: _Budget,
        grant: Grant,
        status: int,
        headers: Mapping[str, str],
        now: int,
    ) -> None:
        raw = headers.get(budget.header)
        used = int(raw) if raw is not None and raw.isdigit() else None
        retry_ns: int | None = None
        if status == 429 or status == 418:
            retry = parse_retry_after(headers.get("retry-after"))
            if retry is not None and retry < 10 * 86_400:  # a ban lasts 3 days at most
                retry_ns = round(retry * NS)
        clock = self._offset
        if not clock.explicit and (clock.offset is None or clock.eps(now) > _DATE_GOOD_ENOUGH):
            date = _http_date_s(headers.get("date"))
            if date is not None:
                sent = grant.sent_at if grant.state != _GRANTED else grant.granted_at
                # The server stamped the answer somewhere between our send and receive, with
                # a clock that read ``date`` whole seconds then.
                clock.learn(date * NS - now, (date + 1) * NS - sent, now)
        ban_until = budget.core.on_response(grant, now, status, used, retry_ns)
        if ban_until is not None:
            group = budget.core.group
            for other in self._budgets.values():
                if other.core.group is group:
                    other.core.pause(ban_until)
                    other.wake()
        if budget.n_waiting:
            budget.wake()

    # --- metrics ------------------------------------------------------------------------

    def snapshot(self) -> list[BudgetSnapshot]:
        """The state of every budget this limiter has seen, for metrics and dashboards."""
        try:
            now = _now_ns()
        except Exception:  # no event loop running (metrics read from sync code)
            now = self._last_now
        out = []
        for budget in self._budgets.values():
            core = budget.core
            used = core.used(now)
            blocked = max(core.paused_until, core.group.banned_until)
            out.append(
                BudgetSnapshot(
                    key=budget.key,
                    limit=core.ceiling,
                    used=used,
                    remaining=max(0, core.effective - used),
                    waiting=budget.waiting(),
                    paused_for=max(0, blocked - now) / NS,
                    server_used=core.server_used,
                    effective_limit=core.effective,
                    in_flight=core.outstanding,
                    banned=core.group.banned(now),
                )
            )
        return out

    def budgets(self) -> Iterable[BudgetKey]:
        """The keys of every budget seen so far."""
        return list(self._budgets)

    async def aclose(self) -> None:
        """Nothing to release (the :class:`Limiter` protocol's close, for shared backends)."""


class LimiterPermit(Protocol):
    """What a limiter's :meth:`Limiter.acquire` returns: the interface of :class:`Permit`."""

    def mark_sent(self) -> None:
        """The request is about to leave: from now on the weight is not refunded."""

    def refund(self) -> None:
        """Give the weight back (the request was not sent). Idempotent."""

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from the response (lower-case header names)."""

    async def __aenter__(self) -> Any:
        """Enter the exchange."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Finish the permit: refund it unless it was sent."""


class Limiter(Protocol):
    """What the client needs of a rate limiter. :class:`RateLimiter` (one process) and
    :class:`~binance_pmpro.redis_budget.RedisRateLimiter` (budgets shared through Redis)
    both provide it; pass either as ``rate_limiter=``."""

    async def acquire(
        self,
        key: BudgetKey,
        weight: int,
        *,
        max_wait: float | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> LimiterPermit:
        """Wait until ``weight`` fits the budget ``key`` and return the permit."""

    def set_server_offset(self, offset_ns: int, error_ns: int) -> None:
        """The server's clock minus the event loop's clock (ns), within ``error_ns``."""

    def clear_server_offset(self) -> None:
        """Forget the server offset."""

    def snapshot(self) -> list[BudgetSnapshot]:
        """The state of every budget seen so far."""

    def budgets(self) -> Iterable[BudgetKey]:
        """The keys of every budget seen so far."""

    async def aclose(self) -> None:
        """Release what the limiter holds (connections, background tasks)."""


_sniffio_thread = sniffio.thread_local
_sniffio_var = sniffio.current_async_library_cvar
_running_loop: Callable[[], Any] | None = None  # asyncio._get_running_loop, once imported
_base_time: Any = None  # asyncio.BaseEventLoop.time, once imported
_monotonic_ns = time.monotonic_ns


def _no_loop() -> None:
    return None


def _loop_getter() -> Callable[[], Any]:
    # Importing asyncio costs ~10 ms; if nobody has, no asyncio loop can be running.
    global _running_loop, _base_time
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return _no_loop
    _base_time = asyncio.BaseEventLoop.time
    _running_loop = asyncio._get_running_loop
    return _running_loop


class _AnyLoop:
    """The clock of whatever runs, through anyio (trio, or a loop sniffio names)."""

    __slots__ = ()

    def time(self) -> float:
        return anyio.current_time()


_ANY_LOOP = _AnyLoop()


def _clock_of(loop: Any) -> Any:
    """What to read the running asyncio ``loop``'s time from: None when it keeps asyncio's
    own clock (``BaseEventLoop.time`` is ``time.monotonic()``: ``time.monotonic_ns()`` is
    the same clock, read without a Python-level call or float rounding), else the loop
    itself (uvloop, a virtual test clock, a ``time`` replaced on the instance)."""
    # Asked of the bound method: reading ``loop.__dict__`` would give the loop a real
    # instance dict, which makes every attribute read of the event loop's own code slower.
    return None if getattr(loop.time, "__func__", None) is _base_time else loop


def _now_ns() -> int:
    """The event loop's clock in integer ns (what ``anyio.current_time()`` reads)."""
    # anyio asks sniffio which library runs on every read (about 1 us, several times per
    # call). trio and other libraries announce themselves through sniffio's thread-local or
    # context variable; with neither set, a running asyncio loop is the one anyio would find,
    # and its own ``time()`` is what anyio would return.
    if _sniffio_thread.name is None and _sniffio_var.get() is None:
        loop = (_running_loop or _loop_getter())()
        if loop is not None:
            clock = _clock_of(loop)
            if clock is None:
                return _monotonic_ns()
            now: float = clock.time()
            return math.floor(now * NS)
    return math.floor(anyio.current_time() * NS)


def loop_time() -> float:
    """``anyio.current_time()`` without its sniffio look-up on asyncio (see ``_now_ns``)."""
    if _sniffio_thread.name is None and _sniffio_var.get() is None:
        loop = (_running_loop or _loop_getter())()
        if loop is not None:
            return float(loop.time())
    return anyio.current_time()


# Stop reading Date headers once the learned offset is this good (ns).
_DATE_GOOD_ENOUGH = 20_000_000
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def _http_date_s(value: str | None) -> int | None:
    """Epoch seconds of an HTTP date (``Sun, 06 Nov 1994 08:49:37 GMT``); None otherwise."""
    if not value:
        return None
    try:
        _weekday, day, month, year, clock, zone = value.split()
        hours, minutes, seconds = clock.split(":")
        if zone != "GMT":
            return None
        return calendar.timegm(
            (int(year), _MONTHS[month], int(day), int(hours), int(minutes), int(seconds), 0, 0, 0)
        )
    except (ValueError, KeyError):
        return None


_per_loop: weakref.WeakKeyDictionary[Any, dict[tuple[int, int], RateLimiter]] = (
    weakref.WeakKeyDictionary()
)


def shared_limiter(
    *,
    uid_limit: int = DEFAULT_LIMITS[Budget.SAPI_UID],
    ip_limit: int = DEFAULT_LIMITS[Budget.SAPI_IP],
) -> RateLimiter:
    """The process's limiter for the running event loop and these limits.

    Every client that brings no limiter of its own uses it, so clients of one process share
    the budgets Binance shares: the IP budgets of one egress address, and the UID budgets of
    an account they have in common. Each event loop has its own (a loop's waits and pauses
    never reach another's), forgotten with the loop. Needs a running event loop.
    """
    native = anyio.lowlevel.current_token().native_token
    limiters = _per_loop.get(native)
    if limiters is None:
        limiters = _per_loop[native] = {}
    limiter = limiters.get((uid_limit, ip_limit))
    if limiter is None:
        limiter = limiters[(uid_limit, ip_limit)] = RateLimiter(
            uid_limit=uid_limit, ip_limit=ip_limit
        )
    return limiter
