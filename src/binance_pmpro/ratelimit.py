"""Request-weight budgets: a pure, clock-free core and the async limiter that waits on it.

Binance counts weight per (account, endpoint) for UID-limited ``/sapi`` endpoints and per
(IP, endpoint) for IP-limited ones, per minute. The core here keeps a log of grants and
never lets more than the limit be granted inside *any* interval of one window (60 s), so
no fixed calendar minute and no rolling minute can see more than the limit from us. A
permit whose request never left the process is refunded.

Time in the core is integer nanoseconds passed in by the caller; the async layer reads the
event loop's clock (``anyio.current_time()``), so trio's MockClock and other virtual clocks
drive it in tests.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import anyio
import anyio.lowlevel

from .endpoints import USED_WEIGHT_HEADERS, Budget
from .errors import RateLimitTimeoutError, TransportError, parse_retry_after

__all__ = [
    "DEFAULT_LIMITS",
    "BudgetKey",
    "BudgetSnapshot",
    "Permit",
    "RateLimiter",
    "WindowBudget",
]

NS = 1_000_000_000
WINDOW_NS = 60 * NS

DEFAULT_LIMITS: Mapping[Budget, int] = {
    Budget.SAPI_UID: 180_000,
    Budget.SAPI_IP: 12_000,
    Budget.API_IP: 6_000,
}
"""Binance's documented weight per minute for each budget kind."""


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """Identifies one budget as Binance counts it: ``(kind, owner, endpoint)``.

    ``owner`` is the account id (or a digest of the API key, never the key) for UID budgets,
    the IP group for IP budgets; ``endpoint`` is the path ("" for the shared ``/api`` budget).
    """

    kind: Budget
    owner: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """The state of one budget at a moment, for metrics."""

    key: BudgetKey
    limit: int
    """Weight allowed per window."""
    used: int
    """Weight granted by this limiter within the last window."""
    remaining: int
    waiting: int
    """Callers queued for this budget."""
    paused_for: float
    """Seconds until a 429/418 pause ends (0 when not paused)."""
    server_used: int | None
    """The last used-weight figure Binance reported for this budget, if any."""


class WindowBudget:
    """Pure weight accounting for one budget: a log of grants over the last window.

    Invariant: for every grant at time ``t``, the weight granted in ``(t - window, t]`` is at
    most ``limit``; hence every interval of length ``window`` holds at most ``limit``.
    """

    __slots__ = ("_log", "_used", "blocked_until", "limit", "server_used", "window")

    def __init__(self, limit: int, window_ns: int = WINDOW_NS) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.window = window_ns
        self._log: deque[list[int]] = deque()  # [grant time ns, weight], oldest first
        self._used = 0
        self.blocked_until = 0
        self.server_used: int | None = None

    def _expire(self, now: int) -> None:
        log = self._log
        horizon = now - self.window
        while log and log[0][0] <= horizon:
            self._used -= log.popleft()[1]

    def used(self, now: int) -> int:
        """Weight granted in ``(now - window, now]``."""
        self._expire(now)
        return self._used

    def wait_ns(self, weight: int, now: int) -> int:
        """Nanoseconds until ``weight`` can be granted (0 = now)."""
        if weight > self.limit:
            raise ValueError(f"weight {weight} exceeds the budget's limit {self.limit}")
        self._expire(now)
        wait = max(0, self.blocked_until - now)
        excess = self._used + weight - self.limit
        if excess > 0:
            # Walk the log until enough weight will have expired.
            freed = 0
            for stamp, w in self._log:
                freed += w
                if freed >= excess:
                    wait = max(wait, stamp + self.window - now + 1)
                    break
        return wait

    def grant(self, weight: int, now: int) -> list[int]:
        """Record a grant; the returned entry identifies it for :meth:`refund`."""
        entry = [now, weight]
        self._log.append(entry)
        self._used += weight
        return entry

    def refund(self, entry: list[int]) -> None:
        """Undo a grant whose request never left the process. Idempotent."""
        if entry[1] and entry in self._log:
            self._used -= entry[1]
            self._log.remove(entry)
        entry[1] = 0

    def pause(self, until: int) -> None:
        """Grant nothing before ``until`` (a 429's or 418's ``Retry-After``)."""
        self.blocked_until = max(self.blocked_until, until)


class _Waiter:
    __slots__ = ("event", "weight")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.event = anyio.Event()


class _Budget:
    """A :class:`WindowBudget` plus its FIFO queue of waiting tasks."""

    __slots__ = ("changed", "core", "key", "waiters")

    def __init__(self, key: BudgetKey, limit: int, window_ns: int) -> None:
        self.key = key
        self.core = WindowBudget(limit, window_ns)
        self.waiters: deque[_Waiter] = deque()
        self.changed: anyio.Event | None = None

    def notify(self) -> None:
        # anyio events cannot be cleared: wake whoever sleeps on this one, start a new one.
        if self.changed is not None:
            self.changed.set()
            self.changed = None


class Permit:
    """Weight granted for one request.

    Call :meth:`mark_sent` right before the request goes to the transport and
    :meth:`observe` with the response. A permit released without ``mark_sent`` (the caller
    was cancelled, building the request failed), or whose transport error proves nothing
    was sent, is refunded.
    """

    __slots__ = ("_budget", "_entry", "_limiter", "sent", "weight")

    def __init__(
        self, limiter: RateLimiter, budget: _Budget | None, entry: list[int] | None, weight: int
    ) -> None:
        self._limiter = limiter
        self._budget = budget
        self._entry = entry
        self.weight = weight
        self.sent = False

    def mark_sent(self) -> None:
        """The request is about to leave: from now on the weight is not refunded."""
        self.sent = True

    def refund(self) -> None:
        """Give the weight back (only meaningful before the request was sent)."""
        if self._budget is not None and self._entry is not None:
            self._budget.core.refund(self._entry)
            self._budget.notify()
            self._entry = None

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from a response: the server's used weight, and 429/418 pauses."""
        if self._budget is not None:
            self._limiter._observe(self._budget, status, headers)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.sent or (isinstance(exc, TransportError) and not exc.sent):
            self.refund()


class RateLimiter:
    """Local weight budgets for one process, shared by every task (and every client) using it.

    ``limits`` maps each :class:`~binance_pmpro.endpoints.Budget` kind to its weight per
    window (defaults: Binance's 180,000 UID / 12,000 IP / 6,000 ``/api`` per minute).
    """

    def __init__(
        self,
        *,
        uid_limit: int = DEFAULT_LIMITS[Budget.SAPI_UID],
        ip_limit: int = DEFAULT_LIMITS[Budget.SAPI_IP],
        api_limit: int = DEFAULT_LIMITS[Budget.API_IP],
        window: float = 60.0,
    ) -> None:
        self.limits: dict[Budget, int] = {
            Budget.SAPI_UID: uid_limit,
            Budget.SAPI_IP: ip_limit,
            Budget.API_IP: api_limit,
        }
        for kind, limit in self.limits.items():
            if limit <= 0:
                raise ValueError(f"the {kind.value} limit must be positive")
        self._window_ns = round(window * NS)
        self._budgets: dict[BudgetKey, _Budget] = {}

    def _budget(self, key: BudgetKey) -> _Budget:
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = _Budget(key, self.limits[key.kind], self._window_ns)
        return budget

    async def acquire(
        self, key: BudgetKey, weight: int, *, max_wait: float | None = None
    ) -> Permit:
        """Wait (FIFO) until ``weight`` fits the budget ``key`` and return the permit.

        Raises :class:`RateLimitTimeoutError` when the weight cannot be granted within
        ``max_wait`` seconds. Cancellation while waiting consumes nothing.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        budget = self._budget(key)
        core = budget.core
        now = _now_ns()
        if not budget.waiters and core.wait_ns(weight, now) == 0:
            entry = core.grant(weight, now)
        else:
            entry = await self._wait_in_line(budget, weight, now, max_wait)
        # The grant is committed: a cancellation arriving now must not lose it, so yield
        # without being cancellable (anyio's own locks do the same).
        permit = Permit(self, budget, entry, weight)
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return permit

    async def _wait_in_line(
        self, budget: _Budget, weight: int, now: int, max_wait: float | None
    ) -> list[int]:
        core = budget.core
        core.wait_ns(weight, now)  # validates the weight before queueing
        deadline = math.inf if max_wait is None else now + max_wait * NS
        waiter = _Waiter(weight)
        budget.waiters.append(waiter)
        try:
            while True:
                if budget.waiters[0] is waiter:
                    now = _now_ns()
                    wait = core.wait_ns(weight, now)
                    if wait == 0:
                        return core.grant(weight, now)  # no await between check and grant
                    if now + wait > deadline:
                        raise RateLimitTimeoutError(
                            f"{weight} weight on {budget.key.kind.value} budget "
                            f"{budget.key.endpoint or 'api'} needs {wait / NS:.3f} s, "
                            f"more than max_wait={max_wait} s",
                            wait=wait / NS,
                        )
                    if budget.changed is None:
                        budget.changed = anyio.Event()
                    with anyio.move_on_after(wait / NS):
                        await budget.changed.wait()
                else:
                    remaining = deadline - _now_ns()
                    with anyio.move_on_after(remaining / NS if remaining != math.inf else None):
                        await waiter.event.wait()
                    if not waiter.event.is_set() and budget.waiters[0] is not waiter:
                        raise RateLimitTimeoutError(
                            f"{weight} weight on {budget.key.kind.value} budget: still queued "
                            f"after max_wait={max_wait} s",
                        )
        finally:
            was_head = budget.waiters[0] is waiter
            budget.waiters.remove(waiter)
            if was_head and budget.waiters:
                budget.waiters[0].event.set()

    def _observe(self, budget: _Budget, status: int, headers: Mapping[str, str]) -> None:
        header = USED_WEIGHT_HEADERS[budget.key.kind]
        used = headers.get(header)
        if used is not None and used.isdigit():
            budget.core.server_used = int(used)
        if status in (418, 429):
            retry_after = parse_retry_after(headers.get("retry-after"))
            pause = retry_after if retry_after is not None else 60.0
            until = _now_ns() + round(pause * NS)
            # A 418 bans the IP: nothing from it gets through, whatever the budget.
            targets = list(self._budgets.values()) if status == 418 else [budget]
            for target in targets:
                target.core.pause(until)
                target.notify()

    def snapshot(self) -> list[BudgetSnapshot]:
        """The state of every budget this limiter has seen, for metrics and dashboards."""
        now = _now_ns_or_zero()
        out = []
        for budget in self._budgets.values():
            core = budget.core
            used = core.used(now) if now else core._used
            out.append(
                BudgetSnapshot(
                    key=budget.key,
                    limit=core.limit,
                    used=used,
                    remaining=max(0, core.limit - used),
                    waiting=len(budget.waiters),
                    paused_for=max(0, core.blocked_until - now) / NS if now else 0.0,
                    server_used=core.server_used,
                )
            )
        return out


def _now_ns() -> int:
    return int(anyio.current_time() * NS)


def _now_ns_or_zero() -> int:
    try:
        return _now_ns()
    except Exception:  # no event loop running (metrics read from sync code)
        return 0
