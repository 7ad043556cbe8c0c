"""``watch_account(source="stream" | "auto")``: account snapshots pushed by the user stream.

Three tasks feed one queue, read by the generator that yields to the caller:

- the stream task keeps ``client.user_stream()`` open (re-entering it with backoff when it
  cannot be opened) and turns each ``PM_PRO_ACCOUNT_UPDATE`` and ``riskLevelChange`` into a
  snapshot, and on each reconnect asks the REST task for the snapshot after the gap;
- the REST task fetches ``account_info()`` at the start (the first snapshot, with the
  account's status and type, which the stream does not carry), after each reconnect,
  every ``reconcile_every`` seconds (the slow reconciliation) and, in ``auto``, at every
  tick of ``every`` while the stream is down or silent; one call at a time (decision 5);
- the generator numbers snapshots, reports :class:`~binance_pmpro.monitor.Stale` once no
  fresh data came for ``stale_after`` seconds, and raises the errors of
  :data:`~binance_pmpro.monitor.FATAL_ERRORS`.

While the stream is healthy no account-info weight is spent apart from the reconciliation
and the snapshot after a reconnect.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .endpoints import ACCOUNT_INFO
from .errors import BinanceError, ReadTimeoutError
from .models import AccountInfo, AccountStatus
from .monitor import FATAL_ERRORS, AccountSnapshot, Stale
from .ratelimit import Priority
from .stream_events import AccountUpdate, RiskLevel, RiskLevelChange, StreamReconnected
from .user_stream import STREAM_FATAL_ERRORS, UserStream

if TYPE_CHECKING:
    from .client import PortfolioMarginProClient

__all__ = ["watch_pushed"]

logger = logging.getLogger("binance_pmpro.monitor")
_rng = random.Random()  # noqa: S311 - jitter, not cryptography
_ENDING = (*FATAL_ERRORS, *STREAM_FATAL_ERRORS)


@dataclass(frozen=True, slots=True)
class _Fresh:
    info: AccountInfo | None
    update: AccountUpdate | RiskLevelChange | None = None


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BinanceError


def merge(base: AccountInfo, event: AccountUpdate | RiskLevelChange) -> AccountInfo:
    """``base`` (the latest REST answer) with the pushed numbers: uniMMR, both equities and
    the maintenance margin; a risk level change also sets the status. The fields Binance
    marks "ignored for PM PRO" and the account type stay as REST gave them."""
    changes: dict[str, Any] = {
        "uni_mmr": event.uni_mmr,
        "account_equity": event.equity,
        "actual_equity": event.actual_equity,
        "account_maint_margin": event.maintenance_margin,
    }
    if isinstance(event, RiskLevelChange) and event.risk_level is not RiskLevel.UNKNOWN:
        changes["account_status"] = AccountStatus(event.risk_level.value)
        changes["account_status_raw"] = None
    return msgspec.structs.replace(base, **changes)


class _Holder:
    def __init__(self) -> None:
        self.stream: UserStream | None = None
        self.poll_now = anyio.Event()
        """Set when the stream reconnected: the REST task fetches the snapshot after the gap
        (one account call in flight at most, decision 5)."""


async def watch_pushed(
    client: PortfolioMarginProClient,
    *,
    every: float,
    stale_after: float,
    fallback: bool,
    stream_period: float,
    reconcile_every: float,
    max_wait: float,
    call_timeout: float,
    stream_options: Mapping[str, Any],
) -> AsyncGenerator[AccountSnapshot | Stale, None]:
    """The pushed watch (see the module docstring); ``fallback`` is ``source="auto"``."""
    send, receive = anyio.create_memory_object_stream[_Fresh | _Failed | BaseException](1000)
    holder = _Holder()
    start = anyio.current_time()

    async def rest_task() -> None:
        tick = 0
        next_reconcile = start
        while True:
            scheduled = start + tick * every
            urgent = False
            with anyio.move_on_after(max(0.0, scheduled - anyio.current_time())):
                await holder.poll_now.wait()
                urgent = True
            if urgent:
                holder.poll_now = anyio.Event()
            now = anyio.current_time()
            stream = holder.stream
            healthy = stream is not None and stream.is_fresh(2 * stream_period)
            if urgent or now >= next_reconcile or (fallback and not healthy):
                try:
                    info: AccountInfo = await client._call(
                        ACCOUNT_INFO,
                        {},
                        max_wait=max_wait,
                        call_timeout=call_timeout,
                        priority=Priority.HIGH,
                    )
                except _ENDING as exc:
                    await send.send(exc)
                    return
                except BinanceError as exc:
                    await send.send(_Failed(exc))
                else:
                    next_reconcile = anyio.current_time() + reconcile_every
                    await send.send(_Fresh(info))
                now = anyio.current_time()
            # The next tick strictly after now (an urgent poll between ticks keeps the next).
            tick = max(tick if urgent else tick + 1, math.floor((now - start) / every) + 1)

    async def stream_task() -> None:
        attempt = 0
        options = {
            "stall_after": 3 * stream_period,
            "snapshot_after_reconnect": False,  # the REST task fetches it (poll_now)
            **stream_options,
        }
        while True:
            try:
                async with client.user_stream(**options) as stream:
                    holder.stream = stream
                    attempt = 0
                    async for event in stream:
                        if isinstance(event, (AccountUpdate, RiskLevelChange)):
                            await send.send(_Fresh(None, event))
                        elif isinstance(event, StreamReconnected):
                            if event.snapshot is not None:
                                await send.send(_Fresh(event.snapshot))
                            else:
                                holder.poll_now.set()
            except _ENDING as exc:
                await send.send(exc)
                return
            except BinanceError as exc:
                attempt += 1
                logger.warning("user stream unavailable (%s); retrying", exc)
                await send.send(_Failed(exc))
            finally:
                holder.stream = None
            delay = min(60.0, 2.0 ** (attempt - 1)) * _rng.uniform(0.5, 1.0)
            await anyio.sleep(delay)

    failure: BaseException | None = None
    closing = False
    base: AccountInfo | None = None
    last: AccountSnapshot | None = None
    last_fresh = start
    failures = 0
    latest_error: BinanceError | None = None
    stale_reported = False
    sequence = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(rest_task)
        tg.start_soon(stream_task)
        try:
            while True:
                item: _Fresh | _Failed | BaseException | None = None
                wait = (
                    math.inf if stale_reported else last_fresh + stale_after - anyio.current_time()
                )
                with anyio.move_on_after(max(0.0, wait)):
                    item = await receive.receive()
                now = anyio.current_time()
                if isinstance(item, BaseException):
                    failure = item
                    break
                if isinstance(item, _Failed):
                    failures += 1
                    latest_error = item.error
                if isinstance(item, _Fresh):
                    if item.info is not None:
                        base = item.info
                    elif item.update is not None and base is not None:
                        base = merge(base, item.update)
                    else:
                        continue  # a push before the first REST answer: no status yet
                    assert base is not None
                    sequence += 1
                    failures = 0
                    stale_reported = False
                    last_fresh = now
                    last = AccountSnapshot(base, now, now, datetime.now(timezone.utc), sequence)
                    out: AccountSnapshot | Stale = last
                else:
                    if stale_reported or now - last_fresh < stale_after:
                        continue
                    stale_reported = True
                    error = latest_error or ReadTimeoutError(
                        f"no account data from the stream or REST for {now - last_fresh:.1f} s"
                    )
                    out = Stale(now, now - last_fresh, failures, error, last)
                # The caller closing us throws GeneratorExit here, inside the task group:
                # leave the loop so the group ends cleanly instead of reporting it.
                try:
                    yield out
                except GeneratorExit:
                    closing = True
                    break
        finally:
            tg.cancel_scope.cancel()
    if failure is not None and not closing:
        raise failure
