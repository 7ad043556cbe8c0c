"""Rate-limit budgets shared by several processes (and hosts) through Redis.

:class:`RedisRateLimiter` keeps the budgets Binance counts per account and per egress IP in
Redis, so every process of an account reserves weight from the same ledger, in one atomic
step. Pass it to the client as ``rate_limiter=``, or give the client ``redis_url=`` (or set
``BINANCE_PMPRO_REDIS_URL``).

Why coredis: the SDK runs on asyncio **and** trio through anyio, so its Redis client must
too. coredis 6 is built on anyio and runs on both event loops (this module's tests run on
both); its scripts are called by SHA and reloaded after a ``NOSCRIPT``. redis-py's
``redis.asyncio`` client is asyncio-only: under anyio it would work on the asyncio backend
and fail on trio, and the pull requests adding an anyio/trio client to redis-py were closed
without being merged. coredis is an optional dependency (``pip install
'binance-pmpro[redis]'``); ``import binance_pmpro`` never imports it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

try:
    import coredis
    import coredis.exceptions
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "the Redis-shared budgets need coredis: pip install 'binance-pmpro[redis]'"
    ) from exc

from . import _redis_scripts as scripts
from .endpoints import ENDPOINTS, SERVER_TIME, USED_WEIGHT_HEADERS, Budget
from .errors import (
    IPBannedError,
    RateLimitTimeoutError,
    SharedBudgetUnavailableError,
    TransportError,
    parse_retry_after,
)
from .ratelimit import (
    DEFAULT_BAN_NS,
    DEFAULT_LIMITS,
    NS,
    BudgetKey,
    BudgetSnapshot,
    LimiterPermit,
    Priority,
    RateLimiter,
)

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger("binance_pmpro.redis")

_US = 1_000
"""ns per microsecond (Redis TIME is in microseconds)."""
_SLOTS_PER_SPAN = 512
_TAG_SAFE = re.compile(r"[^A-Za-z0-9._:/|-]")
_REDIS_ERRORS: tuple[type[BaseException], ...] = (
    coredis.exceptions.RedisError,
    OSError,
    TimeoutError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
# A waiter behind others re-checks at least this often (s): the queue ahead may move faster
# than estimated (refunds, cancelled waiters in other processes).
_MAX_POLL = 0.25
_REPORTS_PER_CALL = 128  # responses written to Redis in one script call
_REPORT_DELAY = 0.005  # s: responses gathered before they are written
_MIN_POLL = 0.002


def _heaviest() -> dict[Budget, int]:
    out = dict.fromkeys(Budget, 1)
    for endpoint in (*ENDPOINTS.values(), SERVER_TIME):
        weight = (
            endpoint.weight_for({}) if not isinstance(endpoint.weight, int) else endpoint.weight
        )
        out[endpoint.budget] = max(out[endpoint.budget], weight)
    return out


_HEAVIEST = _heaviest()


class _Unavailable(Exception):
    """Redis did not answer in time or at all."""


class _FellBack(_Unavailable):
    """The limiter switched to its fallback while this waiter was queued in Redis."""


class _Rejoined(Exception):
    """The limiter rejoined Redis while this waiter was queued on the fallback."""


def _tag(text: str) -> str:
    # Hash tags end at the first "}", and key names should stay printable: escape the rest.
    return _TAG_SAFE.sub(lambda m: f"%{ord(m.group()):02X}", text)


class _Params:
    """Integer parameters of one budget kind, as the scripts take them."""

    __slots__ = ("burst", "den", "effective", "limit", "slot_us", "span_us")

    def __init__(self, limit: int, headroom: float, burst: float, span_ns: int) -> None:
        self.limit = limit
        self.effective = max(1, math.floor(limit * (1 - headroom)))
        self.burst = max(1, math.floor(self.effective * burst))
        self.den = max(self.effective - self.burst, 1)
        self.span_us = span_ns // _US
        self.slot_us = max(1, self.span_us // _SLOTS_PER_SPAN)


class _Waiter:
    __slots__ = ("enqueued", "event", "priority", "score", "ticket", "weight")

    def __init__(self, ticket: str, weight: int, priority: int) -> None:
        self.ticket = ticket
        self.weight = weight
        self.priority = priority
        self.enqueued = False
        self.score = 1 << 62  # place in the shared queue, once it has one
        self.event: anyio.Event | None = None


class _RBudget:
    """One shared budget: its key names and this process's queue of waiters."""

    def __init__(self, key: BudgetKey, namespace: str, params: _Params) -> None:
        self.key = key
        self.params = params
        endpoint = key.endpoint or "-"
        self.tag = _tag(f"{key.kind.value}|{key.owner}|{endpoint}")
        self.prefix = f"{namespace}:{{{self.tag}}}:"
        self.s = self.prefix + "s"
        self.log = self.prefix + "log"
        self.q = self.prefix + "q"
        self.lease = self.prefix + "lease"
        self.b = self.prefix + "b"
        self.p = self.prefix + "p"
        self.queues: tuple[deque[_Waiter], ...] = tuple(deque() for _ in Priority)
        self.processes = 1
        self.registered = False  # with its IP group (for 418 bans), once per process
        self.server_used: int | None = None
        self.in_flight = 0
        self.paused_until = 0  # local ns, as far as this process knows
        # Server window -> (weight the ledger counted there, local ns the script may have
        # run at, the earliest): the last word from Redis, which seeds the fallback.
        self.known: dict[int, tuple[int, int]] = {}

    def window(self, k: int) -> str:
        return f"{self.prefix}w:{k}"

    def head(self) -> _Waiter | None:
        for queue in self.queues:
            if queue:
                return queue[0]
        return None

    def busy(self, priority: int) -> bool:
        return any(self.queues[p] for p in range(priority + 1))

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues)

    def tickets(self) -> list[str]:
        return [w.ticket for q in self.queues for w in q if w.enqueued]

    def insert(self, waiter: _Waiter) -> None:
        """Queue ``waiter`` in the order of its shared-queue ticket, so that the head here
        is this process's first ticket there (a later ticket can be answered first)."""
        queue = self.queues[waiter.priority]
        if not queue or queue[-1].score <= waiter.score:
            queue.append(waiter)
        else:
            old_head = self.head()
            index = next(i for i, other in enumerate(queue) if other.score > waiter.score)
            queue.insert(index, waiter)
            if old_head is not None and old_head is not self.head() and old_head.event:
                old_head.event.set()
        self.wake()

    def reorder(self, waiter: _Waiter) -> None:
        """``waiter`` got a (new) ticket: move it to its place."""
        queue = self.queues[waiter.priority]
        if waiter in queue:
            queue.remove(waiter)
            self.insert(waiter)

    def remove(self, waiter: _Waiter) -> None:
        was_head = self.head() is waiter
        queue = self.queues[waiter.priority]
        if waiter in queue:
            queue.remove(waiter)
        if was_head:
            self.wake()

    def wake(self) -> None:
        head = self.head()
        if head is not None and head.event is not None:
            head.event.set()

    def wake_all(self) -> None:
        for queue in self.queues:
            for waiter in queue:
                if waiter.event is not None:
                    waiter.event.set()

    def learn(self, k: int, used: int, at: int) -> None:
        """The ledger counted ``used`` in server window ``k`` at (the earliest) ``at``."""
        self.known[k] = (used, at)
        if len(self.known) > 8:
            for old in sorted(self.known)[:-4]:
                del self.known[old]


@dataclass(slots=True)
class _Offset:
    offset: int
    error: int
    set_at: int

    def eps(self, now: int) -> int:
        return self.error + abs(now - self.set_at) // 10_000  # 100 ppm drift


class RedisPermit:
    """Weight granted from a shared budget for one request (the interface of
    :class:`~binance_pmpro.ratelimit.Permit`).

    ``mark_sent``, ``refund`` and ``observe`` are synchronous and only record; the Redis
    side (a refund, a 429 pause or 418 ban) is written when the permit's ``async with``
    ends, so use it as a context manager around the exchange. The server's count follows a
    few milliseconds later, in one script call with other responses (until then the weight
    stays charged to every window it may have landed in: the safe side).
    """

    __slots__ = (
        "_budget",
        "_done",
        "_limiter",
        "_observed",
        "_refund",
        "granted_at",
        "redis_at",
        "sent",
        "sent_at",
        "seq",
        "slot",
        "snaps",
        "weight",
        "windows",
    )

    def __init__(
        self,
        limiter: RedisRateLimiter,
        budget: _RBudget,
        weight: int,
        seq: int,
        slot: int,
        windows: tuple[int, ...],
        snaps: tuple[int, ...],
        granted_at: int,
    ) -> None:
        self._limiter = limiter
        self._budget = budget
        self.weight = weight
        self.seq = seq
        self.slot = slot
        self.windows = windows
        self.snaps = snaps
        self.granted_at = granted_at
        self.redis_at = 0  # the grant's time on Redis's clock (us)
        self.sent = False
        self.sent_at = granted_at
        self._observed: tuple[int, int | None, int | None, int] | None = None
        self._refund = False
        self._done = False

    @property
    def key(self) -> BudgetKey:
        """The budget this permit draws on."""
        return self._budget.key

    def mark_sent(self) -> None:
        """The request is about to leave: from now on the weight is not refunded."""
        if not self.sent:
            self.sent = True
            self.sent_at = _now_ns()

    def refund(self) -> None:
        """Give the weight back (only meaningful before the request was sent). Idempotent;
        written to Redis when the permit's context ends, or by the next heartbeat."""
        if not self._done and not self._refund:
            self._refund = True
            self._limiter._later(self)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from the response: the server's used weight, 429 pauses, 418 bans.

        A 418 bans the budget's IP group in this process at once; the shared ledger is
        updated when the permit's context ends."""
        if self._done:
            return
        raw = headers.get(USED_WEIGHT_HEADERS[self._budget.key.kind])
        used = int(raw) if raw is not None and raw.isdigit() else None
        retry_ns: int | None = None
        if status in (418, 429):
            retry = parse_retry_after(headers.get("retry-after"))
            if retry is not None and retry < 10 * 86_400:
                retry_ns = round(retry * NS)
        now = _now_ns()
        self._observed = (status, used, retry_ns, now)
        if used is not None:
            self._budget.server_used = used
        self._limiter._observed_locally(self._budget, status, retry_ns, now)

    async def __aenter__(self) -> RedisPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._done:
            return
        if not self.sent or (isinstance(exc, TransportError) and not exc.sent):
            self._refund = True
        await self._limiter._finish(self)


class RedisRateLimiter:
    """Weight budgets shared through Redis by every process using the same Redis and
    ``namespace``, with the guarantees of :class:`~binance_pmpro.ratelimit.RateLimiter`.

    ``redis`` is a URL (``redis://host:6379/0``; the limiter then owns the connection and
    closes it in :meth:`aclose`) or a ``coredis.Redis`` client (left open). Options:

    - ``uid_limit``, ``ip_limit``, ``api_limit``, ``window``, ``headroom``, ``burst``,
      ``arrival_spread``: as for :class:`~binance_pmpro.ratelimit.RateLimiter`; every
      process sharing a budget must use the same values;
    - ``strict``: when Redis is down or slower than ``timeout``, raise
      :class:`~binance_pmpro.errors.SharedBudgetUnavailableError` instead of falling back;
    - ``heartbeat``: seconds between heartbeats (live-process count, queue-ticket leases);
    - ``timeout``: seconds one Redis call may take before Redis counts as unavailable;
    - ``processes``: the least number of processes assumed to share each budget when
      Redis is unavailable before any heartbeat was seen;
    - ``namespace``: prefix of every key.

    What it guarantees, across processes:

    - **Never over the limit** in any server window: every grant is one atomic Lua script
      on Redis's clock (``TIME``) that checks a pacer (GCRA) whose rate keeps any interval
      of ``window + arrival_spread`` within the effective limit (limit minus headroom), a
      hard cap over that span (for weights above the burst), any 429 pause or 418 ban, and
      the ledger of the server windows the request may land in. The weight is spread
      through the window, never spent at once and then waited for.
    - **Header reconciliation**: each response's used-weight header is folded into its
      server window: what the server counted beyond the weight it surely includes of the
      fleet's bounds others' weight (or the fleet's still in flight), until a request
      granted after that reading was written reports in turn (as the local limiter's
      sent/received rule), so traffic outside the fleet is respected and the fleet's own
      weight in flight is not counted twice; others' weight also slows the pace, keeping
      room for the rest of the window. This needs the server clock offset (the client's
      clock sync provides it).
    - **Priorities and FIFO**: each waiter takes a ticket in a Redis queue per budget;
      HIGH tickets are served before NORMAL ones, each class in ticket order, whatever
      process holds them. Tickets carry leases renewed by heartbeats, so a crashed process
      cannot block the queue; a cancelled waiter drops its ticket and consumes nothing.
    - **429 and 418**: a 429 pauses the budget for every process until ``Retry-After``
      (resuming at the paced rate); a 418 bans every budget of the IP group in every
      process, and :meth:`acquire` raises :class:`~binance_pmpro.errors.IPBannedError` at
      once while it lasts.
    - **All or nothing**: a call reserves its whole weight in one script. Each endpoint
      draws on exactly one budget, so one script per call is all-or-nothing.
    - **Redis unavailable**: by default the limiter falls back to local limiting with this
      process's share of each budget (the limit divided by the live processes counted by
      the heartbeats, never "no limit"), still comparing the account-wide used-weight header
      with the full limit. In the window Redis went away in, the share is of what the fleet
      had left there (the ledger's last count this process saw, plus the most the fleet can
      have been granted since). Calls queued in Redis move to the fallback at once. When
      Redis answers again, the process first reserves its fallback share in the (possibly
      emptied) ledger, then rejoins at a server-window boundary after every process has
      had time to do the same (granting nothing locally in the window of the rejoin),
      giving back what it did not spend. No call fails because of the outage, and
      :meth:`aclose` succeeds.
      With ``strict=True`` it raises instead.

    Keys: one Redis Cluster hash tag per budget (``{uid|<account>|<endpoint>}``; the
    account is the client's ``account_id`` or a digest of the API key, never the key), one
    per IP group for its ban; every key has a TTL, so an idle budget leaves nothing behind.

    Use it from one event loop. It starts a background task on first use (heartbeats, and
    the connection pool coredis keeps under it) and stops it in :meth:`aclose`.
    """

    def __init__(
        self,
        redis: str | coredis.Redis[Any],
        *,
        uid_limit: int = DEFAULT_LIMITS[Budget.SAPI_UID],
        ip_limit: int = DEFAULT_LIMITS[Budget.SAPI_IP],
        api_limit: int = DEFAULT_LIMITS[Budget.API_IP],
        window: float = 60.0,
        headroom: float = 0.01,
        burst: float = 0.005,
        arrival_spread: float = 1.0,
        strict: bool = False,
        heartbeat: float = 1.0,
        timeout: float = 0.25,
        processes: int = 1,
        namespace: str = "bpm",
    ) -> None:
        limits = {Budget.SAPI_UID: uid_limit, Budget.SAPI_IP: ip_limit, Budget.API_IP: api_limit}
        for kind, limit in limits.items():
            if limit <= 0:
                raise ValueError(f"the {kind.value} limit must be positive")
        if window <= 0 or arrival_spread < 0 or arrival_spread * 2 > window:
            raise ValueError("window must be positive and arrival_spread in [0, window / 2]")
        if not 0.01 <= headroom < 0.5:
            raise ValueError("headroom must be in [0.01, 0.5): at least 1% stays unused")
        if not 0 <= burst < 0.5:
            raise ValueError("burst must be in [0, 0.5)")
        if heartbeat <= 0 or timeout <= 0 or processes < 1:
            raise ValueError("heartbeat and timeout must be positive, processes >= 1")
        if not namespace or _TAG_SAFE.search(namespace):
            raise ValueError("namespace: letters, digits and . _ : / | - only")
        if isinstance(redis, str):
            # A few connections serve every waiter: commands are short, and each new
            # connection costs a handshake when it is least welcome (under load).
            self._redis: coredis.Redis[Any] = coredis.Redis.from_url(redis, max_connections=8)
            self._owns_redis = True
        else:
            self._redis = redis
            self._owns_redis = False
        self.limits = limits
        self.window = window
        self.strict = strict
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.processes = processes
        self.namespace = namespace
        self._window_ns = round(window * NS)
        self._spread_ns = round(arrival_spread * NS)
        self._headroom = headroom
        self._burst = burst
        self._arrival_spread = arrival_spread
        span = self._window_ns + self._spread_ns
        self._params = {k: _Params(v, headroom, burst, span) for k, v in limits.items()}
        self._lease_ms = max(round(3 * heartbeat * 1000), 1000)
        self._queue_ttl_ms = 2 * self._lease_ms
        self._hb_ttl_ms = max(round(3 * heartbeat * 1000), 1000)
        self._window_ttl_ms = 3 * self._window_ns // 1_000_000 + 1000
        self._proc = os.urandom(6).hex()
        self._ticket_n = 0
        self._budgets: dict[BudgetKey, _RBudget] = {}
        self._bans: dict[str, int] = {}  # IP group -> local ns the ban ends
        self._offset: _Offset | None = None
        self._deferred: list[RedisPermit] = []
        self._reports: list[tuple[_RBudget, list[str], tuple[int, int, int, int, int]]] = []
        self._flushing = False
        self._fallback: _Fallback | None = None
        self._down_since: int | None = None
        self._back_at: int | None = None
        self._live = 1
        self._started = False
        self._closed = False
        self._ready: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._start_error: BaseException | None = None
        self._acquire_script = self._redis.register_script(scripts.ACQUIRE)
        self._refund_script = self._redis.register_script(scripts.REFUND)
        self._complete_script = self._redis.register_script(scripts.COMPLETE)
        self._penalty_script = self._redis.register_script(scripts.PENALTY)
        self._heartbeat_script = self._redis.register_script(scripts.HEARTBEAT)
        self._drop_script = self._redis.register_script(scripts.DROP)
        self._group_beat_script = self._redis.register_script(scripts.GROUP_BEAT)
        self._group_ban_script = self._redis.register_script(scripts.GROUP_BAN)
        self._charge_script = self._redis.register_script(scripts.CHARGE)

    def __repr__(self) -> str:
        location = self._redis.connection_pool.location
        return f"RedisRateLimiter({location!s}, namespace={self.namespace!r}, mode={self.mode!r})"

    # --- state ------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"shared"`` while the budgets live in Redis, ``"fallback"`` while Redis is
        unavailable and this process runs on its local share."""
        return "fallback" if self._fallback is not None else "shared"

    @property
    def live_processes(self) -> int:
        """Processes sharing the budgets, as last counted from the heartbeats."""
        return self._live

    def set_server_offset(self, offset_ns: int, error_ns: int) -> None:
        """Tell the limiter the server's clock: ``offset_ns`` = server time (ns since the
        epoch) minus the event loop's clock (``anyio.current_time()`` in ns), within
        ``error_ns``. It names the server windows a request may land in, for header
        reconciliation; call it again after each clock sync."""
        if error_ns < 0:
            raise ValueError("the error bound must be >= 0")
        self._offset = _Offset(int(offset_ns), int(error_ns), _now_ns())
        if self._fallback is not None:
            self._fallback.set_server_offset(offset_ns, error_ns)

    def clear_server_offset(self) -> None:
        """Forget the server offset."""
        self._offset = None
        if self._fallback is not None:
            self._fallback.clear_server_offset()

    def budgets(self) -> Iterable[BudgetKey]:
        """The keys of every budget seen so far."""
        return list(self._budgets)

    def snapshot(self) -> list[BudgetSnapshot]:
        """What this process knows of each budget it used (the shared ledger itself is in
        Redis; ``used`` here is the last used-weight figure Binance reported)."""
        try:
            now = _now_ns()
        except Exception:  # no event loop running
            now = 0
        out = []
        for budget in self._budgets.values():
            params = budget.params
            used = budget.server_used or 0
            blocked = max(budget.paused_until, self._bans.get(budget.key.group, 0))
            out.append(
                BudgetSnapshot(
                    key=budget.key,
                    limit=params.limit,
                    used=used,
                    remaining=max(0, params.effective - used),
                    waiting=budget.waiting(),
                    paused_for=max(0, blocked - now) / NS,
                    server_used=budget.server_used,
                    effective_limit=params.effective,
                    in_flight=budget.in_flight,
                    banned=self._bans.get(budget.key.group, 0) > now,
                )
            )
        return out

    def _budget(self, key: BudgetKey) -> _RBudget:
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = _RBudget(key, self.namespace, self._params[key.kind])
        return budget

    def _group_keys(self, group: str) -> tuple[str, str]:
        prefix = f"{self.namespace}:{{group|{_tag(group)}}}:"
        return prefix + "ban", prefix + "members"

    def _windows(self, now: int) -> tuple[int, ...]:
        off = self._offset
        if off is None:
            return ()
        eps = off.eps(now)
        if eps * 10 > self._window_ns:
            return ()  # too uncertain to name windows; pacing alone keeps the limit
        w = self._window_ns
        return tuple(
            range(
                (now + off.offset - eps) // w, (now + off.offset + eps + self._spread_ns) // w + 1
            )
        )

    # --- Redis calls ------------------------------------------------------------------

    async def _start(self) -> None:
        if self._closed:
            raise RuntimeError("the limiter is closed")
        if not self._started:
            self._started = True
            self._ready = anyio.Event()
            self._stop = anyio.Event()
            self._stopped = anyio.Event()
            _spawn_system_task(self._run)
        assert self._ready is not None
        await self._ready.wait()

    async def _run(self) -> None:
        """The background task: holds the connection pool open and beats."""
        assert self._ready is not None
        assert self._stop is not None
        assert self._stopped is not None
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    await stack.enter_async_context(self._redis)
                except RuntimeError:
                    if self._owns_redis:
                        raise
                    # The caller's client, already entered by its owner: use it as it is.
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    self._ready.set()
                    tg.start_soon(self._beat_loop)
                    await self._stop.wait()
                    self._tg = None
                    tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # a background task must not take the event loop down
            self._start_error = exc
            logger.warning("shared rate-limit budget: background task ended: %r", exc)
        finally:
            self._tg = None
            self._ready.set()
            self._stopped.set()

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run one script, shielded from cancellation (so its result is never lost) and
        bounded by ``timeout``; _Unavailable when Redis does not answer."""
        if self._tg is None:
            raise _Unavailable("the connection task is not running")
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(self.timeout):
                    return await script(keys=keys, args=args)
            except _REDIS_ERRORS as exc:
                if isinstance(exc, coredis.exceptions.ResponseError) and "NOSCRIPT" not in str(exc):
                    raise  # a script error is a bug, not an outage
                raise _Unavailable(repr(exc)) from exc

    def _went_down(self, why: BaseException) -> None:
        if self._fallback is None:
            live = max(self.processes, self._live)
            logger.warning(
                "shared rate-limit budget unavailable (%s): falling back to 1/%d of each "
                "budget in this process",
                why,
                live,
            )
            fallback = self._fallback = _Fallback(self, live)
            if self._offset is not None:
                fallback.set_server_offset(self._offset.offset, self._offset.error)
            fallback.seed(_now_ns())
            # Waiters queued in Redis would wait there until their max_wait: wake them
            # all, they ask the fallback instead.
            for budget in self._budgets.values():
                budget.wake_all()
        else:
            # Whatever was reserved in Redis for the rejoin may be lost: reserve again.
            self._fallback.reserved.clear()
        self._down_since = _now_ns()
        self._back_at = None

    def _unavailable_error(self, why: BaseException) -> SharedBudgetUnavailableError:
        return SharedBudgetUnavailableError(f"the shared rate-limit budget is unavailable: {why}")

    # --- acquiring ----------------------------------------------------------------------

    async def acquire(
        self,
        key: BudgetKey,
        weight: int,
        *,
        max_wait: float | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> LimiterPermit:
        """Wait until ``weight`` fits the shared budget ``key`` and return the permit.

        HIGH before NORMAL and first-in first-out within a class, across every process
        sharing the budget. Raises :class:`~binance_pmpro.errors.RateLimitTimeoutError`
        as soon as the wait is known to exceed ``max_wait`` seconds, and
        :class:`~binance_pmpro.errors.IPBannedError` at once while the IP group is banned.
        Cancellation while waiting consumes nothing.
        """
        params = self._params[key.kind]
        if weight <= 0:
            raise ValueError("weight must be positive")
        if weight > params.effective:
            raise ValueError(
                f"weight {weight} exceeds the budget's effective limit {params.effective}"
            )
        now = _now_ns()
        self._check_ban(key, now)
        deadline = None if max_wait is None else now + max(0, round(max_wait * NS))
        budget = self._budget(key)
        while True:
            if self._fallback is None:
                try:
                    await self._start()
                    return await self._acquire_shared(budget, weight, int(priority), deadline)
                except _Unavailable as exc:
                    if self.strict:
                        raise self._unavailable_error(exc) from None
                    if not isinstance(exc, _FellBack):
                        self._went_down(exc)
            elif self.strict:
                raise self._unavailable_error(RuntimeError("Redis did not answer"))
            fallback = self._fallback
            if fallback is None:
                continue  # rejoined meanwhile
            remaining = None if deadline is None else max(0.0, (deadline - _now_ns()) / NS)
            try:
                return await fallback.acquire(budget, weight, remaining, priority)
            except _Rejoined:
                # Back on the shared budget: what is granted now must be in its ledger.
                self._check_ban(key, _now_ns())

    def _check_ban(self, key: BudgetKey, now: int) -> None:
        until = self._bans.get(key.group, 0)
        if until > now:
            remaining = (until - now) / NS
            err = IPBannedError(
                418,
                -1003,
                f"IP group {key.group!r} is banned by Binance for another {remaining:.1f} s",
                {},
                retry_after=remaining,
            )
            off = self._offset
            err.banned_until = (until + off.offset) / NS if off is not None else None
            raise err

    async def _acquire_shared(
        self, budget: _RBudget, weight: int, priority: int, deadline: int | None
    ) -> RedisPermit:
        if not budget.registered:
            # First use here: join the IP group, so that a 418 elsewhere reaches this budget,
            # and learn of a ban that is already running before sending anything.
            ban, members = self._group_keys(budget.key.group)
            remaining = await self._call(
                self._group_beat_script, [ban, members], [self._hb_ttl_ms, budget.tag]
            )
            budget.registered = True
            if int(remaining) > 0:
                now = _now_ns()
                self._ban_locally(budget.key.group, now + int(remaining) * _US)
                self._check_ban(budget.key, now)
        self._ticket_n += 1
        waiter = _Waiter(f"{self._proc}:{self._ticket_n}:{weight}", weight, priority)
        queued = False
        granted = False
        try:
            # Every waiter asks at once: granted, or it takes its ticket in the shared queue
            # (behind every ticket of its class or above, from any process).
            await anyio.lowlevel.checkpoint_if_cancelled()
            result = await self._try(budget, waiter, deadline)
            if isinstance(result, RedisPermit):
                granted = True
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return result
            wait: tuple[int, bool] | None = result
            budget.insert(waiter)
            queued = True
            poll = _MIN_POLL
            while True:
                delay: float | None = None
                if budget.head() is waiter:
                    if wait is None:
                        result = await self._try(budget, waiter, deadline)
                        if isinstance(result, RedisPermit):
                            granted = True
                            await anyio.lowlevel.cancel_shielded_checkpoint()
                            return result
                        wait = result
                    wait_ns, exact = wait
                    if exact:
                        # The head's ready time is computed: sleep until then.
                        delay = wait_ns / NS
                    elif wait_ns > _MIN_POLL * NS:
                        # Behind waiters of other processes: the estimate (when they are
                        # served at the pace) is a lower bound; look again then. A pause
                        # grown on earlier misses would leave the pacer idle once this
                        # waiter is first, so the estimate resets it.
                        delay = min(wait_ns / NS, _MAX_POLL)
                        poll = _MIN_POLL
                    else:
                        # Those ahead are late: look again with a growing pause, never in
                        # a tight loop.
                        delay = poll
                        poll = min(poll * 2, _MAX_POLL)
                    delay += random.uniform(0, 0.001)  # noqa: S311 - de-synchronises processes
                wait = None
                if deadline is not None:
                    now = _now_ns()
                    if now >= deadline:
                        raise RateLimitTimeoutError(
                            f"{weight} weight on the {self._where(budget)}: still queued after "
                            "max_wait"
                        )
                    left = (deadline - now) / NS + 1e-6
                    delay = left if delay is None else min(delay, left)
                if self._fallback is not None:
                    raise _FellBack("the limiter fell back while this call was queued")
                event = waiter.event = anyio.Event()
                if delay is None:
                    await event.wait()
                else:
                    with anyio.move_on_after(delay):
                        await event.wait()
                if self._fallback is not None:
                    raise _FellBack("the limiter fell back while this call was queued")
        finally:
            waiter.event = None
            if queued:
                budget.remove(waiter)
            if not granted and waiter.enqueued:
                if self._fallback is None:
                    await self._drop(budget, waiter)
                else:
                    waiter.enqueued = False  # Redis is away: the ticket's lease runs out

    async def _try(
        self, budget: _RBudget, waiter: _Waiter, deadline: int | None
    ) -> RedisPermit | tuple[int, bool]:
        """One ACQUIRE: the permit, or (ns to wait, whether that time is exact). Raises on
        a ban, and when the wait is known to exceed max_wait."""
        params = budget.params
        for _ in range(3):
            started = _now_ns()
            windows = self._windows(started)
            keys = [budget.s, budget.log, budget.q, budget.lease, budget.b]
            if windows:
                keys.append(budget.window(windows[0] - 1))  # the others' weight, last window
                keys.extend(budget.window(k) for k in windows)
            args = [
                waiter.weight,
                params.effective,
                params.burst,
                params.span_us,
                params.den,
                waiter.priority,
                waiter.ticket,
                1 if waiter.enqueued else 0,
                self._lease_ms,
                self._window_ttl_ms,
                params.slot_us,
                self._queue_ttl_ms,
                *self._elapsed_ppm(started, windows),
            ]
            reply = await self._call(self._acquire_script, keys, args)
            now = _now_ns()
            code = int(reply[0])
            if code == 0:
                waiter.enqueued = False
                n = len(windows)
                for k, used in zip(windows, reply[3 + n : 3 + 2 * n], strict=False):
                    budget.learn(k, int(used), started)
                permit = RedisPermit(
                    self,
                    budget,
                    waiter.weight,
                    int(reply[1]),
                    int(reply[2]),
                    windows,
                    tuple(int(x) for x in reply[3 : 3 + n]),
                    now,
                )
                permit.redis_at = int(reply[3 + 2 * n])
                budget.in_flight += 1
                if (
                    windows
                    and now - started > self._spread_ns // 2
                    and self._windows(now) != windows
                ):
                    # The answer came back so late that the request may land in a window
                    # it was not charged to: give the weight back and ask again.
                    await self._finish(permit, refund=True)
                    continue
                return permit
            if code == 4:
                waiter.enqueued = False  # the lease ran out (Redis was slow): queue again
                continue
            exact = True
            place = int(reply[4 if code == 5 else 3]) if len(reply) > 3 else 0
            if place and waiter.score != place:
                waiter.score = place
                budget.reorder(waiter)
            if code == 3:
                remaining = int(reply[1]) * _US
                if int(reply[2]):
                    self._ban_locally(budget.key.group, now + remaining)
                    self._check_ban(budget.key, now)
                waiter.enqueued = True
                budget.paused_until = max(budget.paused_until, now + remaining)
                wait = remaining
            elif code in (2, 5):
                waiter.enqueued = True
                off = self._offset
                assert off is not None
                k = windows[int(reply[1]) - 1]
                w = self._window_ns
                if code == 2:
                    budget.learn(k, params.effective, started)  # full, as far as we know
                else:
                    budget.learn(k, params.effective - waiter.weight - int(reply[2]), started)
                # From then on no arrival can fall in window k.
                ready = (k + 1) * w - off.offset + off.eps(now)
                if code == 5:
                    # Room is kept for the others' weight still to come in window k: wait
                    # until the part of the window left needs no more than what is free.
                    free, forecast = int(reply[2]), max(int(reply[3]), 1)
                    ready = min(ready, k * w + w - free * w // forecast - off.offset + off.eps(now))
                wait = max(ready - now, int(reply[-1]) * _US, 0)
            else:
                waiter.enqueued = True
                wait = int(reply[1]) * _US
                exact = bool(int(reply[2]))
            if deadline is not None and now + wait > deadline:
                raise RateLimitTimeoutError(
                    f"{waiter.weight} weight on the {self._where(budget)} needs "
                    f"{wait / NS:.3f} s, more than max_wait",
                    wait=wait / NS,
                )
            if code == 2:
                # A full window can free up before it ends (a refund; a process rejoining
                # after an outage gives back the share it reserved): look again now and
                # then rather than sleeping to the boundary.
                wait = min(wait, round(_MAX_POLL * NS))
            return max(wait, 1), exact
        return max(self._spread_ns // 4, 1), False

    def _elapsed_ppm(self, now: int, windows: tuple[int, ...]) -> list[int]:
        """How much of each window is surely past at ``now`` (ppm of the window)."""
        off = self._offset
        if off is None or not windows:
            return []
        w = self._window_ns
        earliest = now + off.offset - off.eps(now)
        return [min(max(earliest - k * w, 0), w) * 1_000_000 // w for k in windows]

    def _where(self, budget: _RBudget) -> str:
        key = budget.key
        return f"shared {key.kind.value} budget {key.endpoint or 'api'}"

    async def _drop(self, budget: _RBudget, waiter: _Waiter) -> None:
        waiter.enqueued = False
        # On failure its lease is no longer renewed: it expires.
        with contextlib.suppress(_Unavailable):
            await self._call(self._drop_script, [budget.q, budget.lease], [waiter.ticket])

    # --- after the grant --------------------------------------------------------------

    def _later(self, permit: RedisPermit) -> None:
        self._deferred.append(permit)

    def _ban_locally(self, group: str, until: int) -> None:
        if until > self._bans.get(group, 0):
            self._bans[group] = until
        for budget in self._budgets.values():
            if budget.key.group == group:
                budget.paused_until = max(budget.paused_until, until)
                for queue in budget.queues:
                    for waiter in queue:
                        if waiter.event is not None:
                            waiter.event.set()

    def _observed_locally(
        self, budget: _RBudget, status: int, retry_ns: int | None, now: int
    ) -> None:
        if status == 418:
            self._ban_locally(budget.key.group, now + (retry_ns or DEFAULT_BAN_NS))
        elif status == 429:
            budget.paused_until = max(budget.paused_until, now + (retry_ns or self._window_ns))

    async def _finish(self, permit: RedisPermit, *, refund: bool = False) -> None:
        """Write a finished permit to Redis: refund, the server's count, pause or ban."""
        if permit._done:
            return
        permit._done = True
        budget = permit._budget
        budget.in_flight = max(0, budget.in_flight - 1)
        if self._fallback is not None:
            return  # the outage: the shared ledger cannot be reached (its charge stands)
        try:
            if refund or permit._refund:
                params = budget.params
                keys = [budget.s, budget.log, budget.b]
                keys.extend(budget.window(k) for k in permit.windows)
                await self._call(
                    self._refund_script,
                    keys,
                    [permit.weight, permit.seq, permit.slot, params.span_us, params.den],
                )
                budget.wake()
                return
            observed = permit._observed
            if observed is None:
                return
            status, used, retry_ns, received = observed
            if status in (418, 429):
                await self._penalize(permit, status, retry_ns)
            counted = status not in (418, 429)
            if permit.windows:
                keep = self._attribute(permit, received)
                if keep or len(permit.windows) > 1:
                    snap = permit.snaps[keep - 1] if keep else 0
                    value = used if used is not None and counted else -1
                    keys = [budget.window(k) for k in permit.windows]
                    # Off the caller's path, several in one call: until it lands, the
                    # weight stays charged to every window it might have hit and the count
                    # is read lower, both on the safe side.
                    item = (permit.weight, keep, value, snap, permit.redis_at)
                    self._reports.append((budget, keys, item))
                    tg = self._tg
                    if tg is None:
                        await self._flush_reports()
                    elif not self._flushing:
                        self._flushing = True
                        tg.start_soon(self._flush_reports)
        except _Unavailable as exc:
            if self.strict:
                return  # nothing to fall back to; the next acquire reports it
            self._went_down(exc)

    async def _flush_reports(self) -> None:
        """Send the responses waiting to be written, one script call per budget and batch."""
        try:
            # A moment's delay gathers the responses of many calls into one script call.
            await anyio.sleep(_REPORT_DELAY)
            while self._reports:
                batch, self._reports = self._reports, []
                per_budget: dict[str, list[tuple[list[str], tuple[int, int, int, int, int]]]] = {}
                for budget, keys, item in batch:
                    per_budget.setdefault(budget.tag, []).append((keys, item))
                for items in per_budget.values():
                    for at in range(0, len(items), _REPORTS_PER_CALL):
                        union: list[str] = []
                        args: list[int] = [0]
                        for keys, item in items[at : at + _REPORTS_PER_CALL]:
                            weight, keep, used, snap, granted = item
                            index = []
                            for key in keys:
                                if key not in union:
                                    union.append(key)
                                index.append(union.index(key) + 1)
                            kept = index[keep - 1] if keep else 0
                            args += [weight, kept, used, snap, granted, len(index), *index]
                            args[0] += 1
                        await self._call(self._complete_script, union, args)
        except _Unavailable as exc:
            self._reports.clear()  # their weight stays charged: safe, if pessimistic
            if not self.strict:
                self._went_down(exc)
        finally:
            self._flushing = False

    def _attribute(self, permit: RedisPermit, received: int) -> int:
        """1-based index of the one window the request can have landed in, else 0."""
        off = self._offset
        if off is None:
            return 0
        eps = off.eps(received)
        w = self._window_ns
        lo = (permit.sent_at + off.offset - eps) // w
        hi = (received + off.offset + eps) // w
        if lo == hi and lo in permit.windows:
            return permit.windows.index(lo) + 1
        return 0

    async def _penalize(self, permit: RedisPermit, status: int, retry_ns: int | None) -> None:
        budget = permit._budget
        params = budget.params
        kind = "ban" if status == 418 else "pause"
        if retry_ns is None:
            retry_ns = DEFAULT_BAN_NS if status == 418 else self._window_ns
        full = status == 429 and permit.windows and permit._observed is not None
        keep = self._attribute(permit, permit._observed[3]) if full and permit._observed else 0
        keys = [budget.s, budget.b]
        if keep:
            keys.append(budget.window(permit.windows[keep - 1]))
        args = [
            retry_ns // _US,
            kind,
            params.burst,
            params.span_us,
            params.den,
            # Without Retry-After the server's minute is full as far as we know.
            1 if keep and permit._observed and permit._observed[2] is None else 0,
            params.effective,
            self._window_ttl_ms,
        ]
        await self._call(self._penalty_script, keys, args)
        if status == 418:
            ban, members = self._group_keys(budget.key.group)
            tags = await self._call(self._group_ban_script, [ban, members], [retry_ns // _US])
            for raw in tags or ():
                tag = raw.decode() if isinstance(raw, bytes) else str(raw)
                if tag == budget.tag:
                    continue
                prefix = f"{self.namespace}:{{{tag}}}:"
                args[5] = 0
                await self._call(self._penalty_script, [prefix + "s", prefix + "b"], args)

    # --- background -----------------------------------------------------------------------

    async def _beat_loop(self) -> None:
        while True:
            try:
                await self._beat()
            except _Unavailable as exc:
                if not self.strict:
                    self._went_down(exc)
            except Exception:  # never let the background task die of one bad beat
                logger.exception("shared rate-limit budget: heartbeat failed")
            await anyio.sleep(self.heartbeat if self._fallback is None else self.heartbeat / 4)

    async def _beat(self) -> None:
        if self._fallback is not None:
            await self._probe()
            return
        deferred, self._deferred = self._deferred, []
        for permit in deferred:
            await self._finish(permit)
        live = 1
        groups: dict[str, list[str]] = {}
        for budget in list(self._budgets.values()):
            n = await self._call(
                self._heartbeat_script,
                [budget.p, budget.lease, budget.q],
                [
                    self._proc,
                    self._hb_ttl_ms,
                    self._lease_ms,
                    self._queue_ttl_ms,
                    *budget.tickets(),
                ],
            )
            budget.processes = max(1, int(n))
            live = max(live, budget.processes)
            groups.setdefault(budget.key.group, []).append(budget.tag)
        self._live = live
        for group, tags in groups.items():
            ban, members = self._group_keys(group)
            remaining = await self._call(
                self._group_beat_script, [ban, members], [self._hb_ttl_ms, *tags]
            )
            if int(remaining) > 0:
                self._ban_locally(group, _now_ns() + int(remaining) * _US)

    async def _probe(self) -> None:
        """While on the fallback: is Redis back? Reserve this process's fallback share in
        the ledger at once (a restarted Redis has lost the window's ledger; processes that
        rejoin first must not spend it), then rejoin at a server-window boundary, late
        enough that every process has seen Redis back and reserved its share too."""
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(self.timeout):
                await self._redis.ping()
        except _REDIS_ERRORS:
            self._back_at = None
            return
        fallback = self._fallback
        assert fallback is not None
        now = _now_ns()
        off = self._offset
        w = self._window_ns
        if self._back_at is None:
            # Every process probes every heartbeat / 4 (each probe may take ``timeout``):
            # by then the others have seen Redis back as well.
            seen_by_all = now + round((self.heartbeat + 2 * self.timeout) * NS)
            if off is not None:
                eps = off.eps(seen_by_all)
                boundary = ((seen_by_all + off.offset + eps) // w + 1) * w - off.offset + eps
                back_at = boundary + self._spread_ns
            else:
                back_at = seen_by_all + w + self._spread_ns
            if off is not None:
                eps = off.eps(back_at)
                first = (now + off.offset - off.eps(now)) // w
                last = (back_at + off.offset + eps + self._spread_ns) // w
                rejoin_window = (back_at - self._spread_ns + off.offset + eps) // w
                for budget in self._budgets.values():
                    # The window of the rejoin gets no more weight from the fallback: its
                    # ledger then holds only grants made through Redis, and no header
                    # reading there counts fallback weight the ledger cannot place.
                    caps = fallback.caps.setdefault(budget.key, {})
                    spent = fallback.spent.get(budget.key, {})
                    for k in range(max(first, rejoin_window), last + 1):
                        caps[k] = min(caps.get(k, spent.get(k, 0)), spent.get(k, 0))
                try:
                    for budget in list(self._budgets.values()):
                        reserved = fallback.reserved.setdefault(budget.key, {})
                        windows = [k for k in range(first, last + 1) if k not in reserved]
                        if not windows:
                            continue
                        amounts = [fallback.allowance(budget.key, k) for k in windows]
                        args = [self._window_ttl_ms]
                        for amount in amounts:
                            args += [amount, 0]
                        await self._call(
                            self._charge_script, [budget.window(k) for k in windows], args
                        )
                        reserved.update(zip(windows, amounts, strict=True))
                except _Unavailable:
                    return  # not back after all: try again at the next probe
            self._back_at = back_at
            logger.info(
                "Redis answers again; rejoining the shared budget in %.1f s",
                (self._back_at - now) / NS,
            )
        if now >= self._back_at:
            # Give back what this process reserved but did not spend on the fallback, and
            # count as done what the server answered (later headers include it: without
            # this it would read as others' weight for the rest of the window).
            try:
                for key, reserved in fallback.reserved.items():
                    budget = self._budgets[key]
                    spent = fallback.spent.get(key, {})
                    answered = fallback.answered.get(key, {})
                    args = [self._window_ttl_ms]
                    windows = []
                    for k, r in reserved.items():
                        give = max(r - spent.get(k, 0), 0)
                        if give or answered.get(k):
                            windows.append(k)
                            args += [-give, answered.get(k, 0)]
                    if windows:
                        await self._call(
                            self._charge_script, [budget.window(k) for k in windows], args
                        )
            except _Unavailable as exc:
                self._went_down(exc)
                return
            self._fallback = None
            self._down_since = None
            self._back_at = None
            fallback.close()
            logger.info("rejoined the shared rate-limit budget")
            # Heartbeat at once so the others count us again.
            try:
                await self._beat()
            except _Unavailable as exc:
                self._went_down(exc)

    async def aclose(self) -> None:
        """Stop the background task and close the connection pool if the limiter opened
        it. Idempotent; succeeds whether or not Redis is reachable."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        assert self._stop is not None
        assert self._stopped is not None
        deferred, self._deferred = self._deferred, []
        if self._fallback is None and self._tg is not None:
            with anyio.move_on_after(self.timeout * 4):
                for permit in deferred:
                    await self._finish(permit)
                if self._reports and not self._flushing:
                    self._flushing = True
                    await self._flush_reports()
        self._stop.set()
        with anyio.move_on_after(5):
            await self._stopped.wait()


class _FallbackPermit:
    """A permit of the fallback: one from the process's share, one from the full budget."""

    __slots__ = ("_full", "_marked", "_own", "on_answer", "sent_at", "weight")

    def __init__(self, own: LimiterPermit, full: LimiterPermit, weight: int) -> None:
        self._own = own
        self._full = full
        self.weight = weight
        self.on_answer: Callable[[int, int], None] | None = None
        self.sent_at = 0
        self._marked = False

    def mark_sent(self) -> None:
        if not self._marked:
            self._marked = True
            self.sent_at = _now_ns()
        self._own.mark_sent()
        self._full.mark_sent()

    def refund(self) -> None:
        self._own.refund()
        self._full.refund()

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        # The share limiter counts our own weight only: the account-wide count goes to the
        # full-budget limiter, which compares it with the full limit.
        own = {k: v for k, v in headers.items() if k not in _USED_HEADERS}
        self._own.observe(status, own)
        self._full.observe(status, headers)
        if status not in (418, 429) and self.on_answer is not None:
            # The server counted it: once back on Redis, it is part of the window's done.
            self.on_answer(self.sent_at, _now_ns())
            self.on_answer = None

    async def __aenter__(self) -> _FallbackPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._own.__aexit__(exc_type, exc, tb)
        finally:
            await self._full.__aexit__(exc_type, exc, tb)


_USED_HEADERS = frozenset(USED_WEIGHT_HEADERS.values())


class _Fallback:
    """Local limiting while Redis is unavailable: this process's share of each budget, and
    the full budget checked against the account-wide used-weight header."""

    def __init__(self, owner: RedisRateLimiter, processes: int) -> None:
        self.processes = processes
        # Per budget and server window: the most this process may still spend there (the
        # windows the fleet had already spent from when Redis went away), what it granted
        # there while on the fallback, and what it reserved in Redis for its rejoin.
        self.caps: dict[BudgetKey, dict[int, int]] = {}
        self.spent: dict[BudgetKey, dict[int, int]] = {}
        self.reserved: dict[BudgetKey, dict[int, int]] = {}
        self.share_effective: dict[Budget, int] = {}
        # Waits in progress: cancelled on rejoin, so that the waiters ask Redis instead
        # (weight granted here after the rejoin would be in no ledger).
        self.active = True
        self.waits: set[anyio.CancelScope] = set()
        # Weight the server answered for, per budget and the one window it landed in.
        self.answered: dict[BudgetKey, dict[int, int]] = {}

        def share(kind: Budget) -> int:
            limit = owner.limits[kind]
            # A call heavier than the share must still be able to run (slowly): the share
            # never drops below what the heaviest call of the budget needs.
            need = math.ceil((_HEAVIEST[kind] + 1) / (1 - owner._headroom)) + 1
            out = min(limit, max(limit // processes, need))
            self.share_effective[kind] = max(1, math.floor(out * (1 - owner._headroom)))
            return out

        common: dict[str, Any] = {
            "window": owner.window,
            "headroom": owner._headroom,
            "burst": owner._burst,
            "arrival_spread": owner._arrival_spread,
        }
        self.own = RateLimiter(
            uid_limit=share(Budget.SAPI_UID),
            ip_limit=share(Budget.SAPI_IP),
            api_limit=share(Budget.API_IP),
            probe=False,
            **common,
        )
        self.full = RateLimiter(
            uid_limit=owner.limits[Budget.SAPI_UID],
            ip_limit=owner.limits[Budget.SAPI_IP],
            api_limit=owner.limits[Budget.API_IP],
            **common,
        )
        self.owner = owner

    def seed(self, now: int) -> None:
        """Cap what this process spends in the windows the fleet had already spent from.

        The fresh local limiters know nothing of the weight the fleet was granted in the
        current window. What Redis last said (the ledger's count of each window, with the
        time its script could have run at the earliest) plus the most the pacer can have
        granted since (its rate over that time, and one burst or heaviest call) bounds the
        fleet's spending there; what is left is shared out among the live processes."""
        owner = self.owner
        off = owner._offset
        if off is None:
            return
        w = owner._window_ns
        eps = off.eps(now)
        first = (now + off.offset - eps) // w
        last = (now + off.offset + eps + owner._spread_ns) // w
        span = w + owner._spread_ns
        for budget in owner._budgets.values():
            params = budget.params
            tol = max(params.burst, _HEAVIEST[budget.key.kind])
            caps = self.caps.setdefault(budget.key, {})
            for k in range(first, last + 1):
                used, since = budget.known.get(k, (0, k * w - off.offset - eps - span))
                since = min(since, now)
                unknown = math.ceil(params.den * (now - since) / span) + tol
                left = max(0, params.effective - used - unknown)
                caps[k] = left // self.processes
            logger.info(
                "fallback for the %s budget: at most %s in server windows %s (fleet spent "
                "about %s)",
                budget.key.kind.value,
                [caps[k] for k in range(first, last + 1)],
                list(range(first, last + 1)),
                [budget.known.get(k, (None, 0))[0] for k in range(first, last + 1)],
            )

    def close(self) -> None:
        """The limiter rejoined Redis: every wait here ends, its caller asks Redis."""
        self.active = False
        for scope in self.waits:
            scope.cancel()

    def allowance(self, key: BudgetKey, k: int) -> int:
        """The most this process may grant in server window ``k`` while on the fallback."""
        share = self.share_effective[key.kind]
        cap = self.caps.get(key, {}).get(k, share)
        return max(min(cap, share), self.spent.get(key, {}).get(k, 0))

    def _blocked(self, key: BudgetKey, weight: int, now: int) -> int | None:
        """Local ns from which ``weight`` no longer meets a capped window, or None."""
        caps = self.caps.get(key)
        if not caps:
            return None
        owner = self.owner
        off = owner._offset
        windows = owner._windows(now)
        if off is None or not windows:
            return None
        spent = self.spent.get(key, {})
        full = [k for k in windows if k in caps and spent.get(k, 0) + weight > caps[k]]
        if not full:
            return None
        return (max(full) + 1) * owner._window_ns - off.offset + off.eps(now)

    def _spend(self, key: BudgetKey, weight: int, now: int) -> tuple[int, ...]:
        spent = self.spent.setdefault(key, {})
        windows = self.owner._windows(now)
        for k in windows:
            spent[k] = spent.get(k, 0) + weight
        return windows

    def _answered(self, key: BudgetKey, weight: int, sent: int, received: int) -> None:
        """The server answered between ``sent`` and ``received``: note the window it
        counted the weight in, when only one is possible."""
        off = self.owner._offset
        if off is None:
            return
        w = self.owner._window_ns
        eps = off.eps(received)
        lo = (sent + off.offset - eps) // w
        if lo == (received + off.offset + eps) // w:
            answered = self.answered.setdefault(key, {})
            answered[lo] = answered.get(lo, 0) + weight

    def set_server_offset(self, offset_ns: int, error_ns: int) -> None:
        self.own.set_server_offset(offset_ns, error_ns)
        self.full.set_server_offset(offset_ns, error_ns)

    def clear_server_offset(self) -> None:
        self.own.clear_server_offset()
        self.full.clear_server_offset()

    async def acquire(
        self, budget: _RBudget, weight: int, max_wait: float | None, priority: Priority
    ) -> _FallbackPermit:
        now = _now_ns()
        if budget.paused_until > now:
            pause = (budget.paused_until - now) / NS
            if max_wait is not None and pause > max_wait:
                raise RateLimitTimeoutError(
                    f"{weight} weight on a paused budget needs {pause:.3f} s, more than max_wait",
                    wait=pause,
                )
            await anyio.sleep(pause)
            if max_wait is not None:
                max_wait = max(0.0, max_wait - pause)
        started = anyio.current_time()
        deadline = None if max_wait is None else started + max_wait
        key = budget.key
        while True:
            if not self.active:
                raise _Rejoined
            permits: tuple[LimiterPermit, LimiterPermit] | None = None
            with anyio.CancelScope() as scope:
                self.waits.add(scope)
                try:
                    permits = await self._acquire_local(key, weight, deadline, priority)
                finally:
                    self.waits.discard(scope)
            if permits is None:
                continue  # waited out a capped window, or rejoined (checked above)
            own, full = permits
            now = _now_ns()
            if not self.active or self._blocked(key, weight, now) is not None:
                own.refund()
                full.refund()
                continue
            self._spend(key, weight, now)
            permit = _FallbackPermit(own, full, weight)
            permit.sent_at = now
            permit.on_answer = functools.partial(self._answered, key, weight)
            return permit

    async def _acquire_local(
        self, key: BudgetKey, weight: int, deadline: float | None, priority: Priority
    ) -> tuple[LimiterPermit, LimiterPermit] | None:
        """Both local permits, or None after waiting for a capped window to pass."""
        ready = self._blocked(key, weight, _now_ns())
        if ready is not None:
            # A window the fleet had already spent from: wait until the call cannot land
            # in it any more.
            pause = max(0.0, (ready - _now_ns()) / NS)
            if deadline is not None and anyio.current_time() + pause > deadline:
                raise RateLimitTimeoutError(
                    f"{weight} weight on the fallback needs {pause:.3f} s, more than max_wait",
                    wait=pause,
                )
            await anyio.sleep(pause + 0.001)
            return None
        left = None if deadline is None else max(0.0, deadline - anyio.current_time())
        own = await self.own.acquire(key, weight, max_wait=left, priority=priority)
        try:
            left = None if deadline is None else max(0.0, deadline - anyio.current_time())
            full = await self.full.acquire(key, weight, max_wait=left, priority=priority)
        except BaseException:
            own.refund()
            raise
        return own, full


def _now_ns() -> int:
    return math.floor(anyio.current_time() * NS)


_keepalive: set[Any] = set()


def _spawn_system_task(fn: Any) -> None:
    """Start ``fn`` as a task of the event loop itself, not of the caller: the connection
    pool must outlive whichever task used the limiter first."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        trio = sys.modules.get("trio") or __import__("trio")
        trio.lowlevel.spawn_system_task(fn)
        return
    import asyncio

    task = asyncio.get_running_loop().create_task(fn())
    _keepalive.add(task)  # the loop keeps only a weak reference
    task.add_done_callback(_keepalive.discard)
