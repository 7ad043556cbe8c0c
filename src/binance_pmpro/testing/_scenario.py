"""Scripted account scenarios for FakeExchange: fields that step and slide over time.

A :class:`Scenario` is a timeline of account fields, in seconds from its start; once
installed on a :class:`~binance_pmpro.testing.FakeExchange` every
``GET /sapi/v1/portfolio/account`` answer, and every event of its user data stream, shows
the fields as they stand at that moment of the exchange's clock. Give the exchange a virtual
clock (``clock=lambda: anyio.current_time() * 1000``) and a scenario of minutes runs in a
test in no real time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._exchange import FakeExchange

__all__ = ["Scenario", "demo_scenario"]

_PLACES = Decimal("0.00000001")  # Binance sends account amounts with 8 decimal places


@dataclass(frozen=True, slots=True)
class _Point:
    seconds: float
    value: Any
    ramp: bool


class Scenario:
    """A script of account fields over time.

    ``at(t, **fields)`` sets fields at ``t`` seconds (a step); ``ramp(t, **fields)``
    slides each field linearly from its previous point to the value given at ``t``
    (exact decimals, 8 places). Field names are those of
    :meth:`~binance_pmpro.testing.FakeExchange.set_account`
    (``uni_mmr``, ``account_equity``, ``account_status``...). Calls chain::

        Scenario().at(0, uni_mmr="3.0").ramp(60, uni_mmr="1.1").ramp(120, uni_mmr="3.0")
    """

    def __init__(self) -> None:
        self._fields: dict[str, list[_Point]] = {}

    def at(self, seconds: float, **fields: Any) -> Scenario:
        """From ``seconds`` on, the fields have these values."""
        return self._add(seconds, fields, ramp=False)

    def ramp(self, seconds: float, **fields: Any) -> Scenario:
        """Slide each field linearly from its previous point to this value at ``seconds``."""
        for name in fields:
            if not self._fields.get(name):
                raise ValueError(f"ramp of {name!r} needs an earlier point to start from")
        return self._add(seconds, fields, ramp=True)

    def _add(self, seconds: float, fields: dict[str, Any], *, ramp: bool) -> Scenario:
        if not seconds >= 0:
            raise ValueError("seconds must be >= 0")
        for name, value in fields.items():
            if ramp:
                value = Decimal(str(value))
            points = self._fields.setdefault(name, [])
            if points and seconds < points[-1].seconds:
                raise ValueError(f"points of {name!r} must come in time order")
            points.append(_Point(float(seconds), value, ramp))
        return self

    @property
    def duration(self) -> float:
        """Seconds until the last point (after it every field keeps its last value)."""
        return max((p[-1].seconds for p in self._fields.values() if p), default=0.0)

    def fields_at(self, seconds: float) -> dict[str, Any]:
        """Every scripted field's value at ``seconds`` from the start (fields whose first
        point is later are left out)."""
        out: dict[str, Any] = {}
        for name, points in self._fields.items():
            times = [p.seconds for p in points]
            i = bisect.bisect_right(times, seconds)
            if i == 0:
                continue
            before = points[i - 1]
            value = before.value
            if i < len(points) and points[i].ramp:
                after = points[i]
                start = Decimal(str(before.value))
                span = after.seconds - before.seconds
                share = Decimal(str((seconds - before.seconds) / span)) if span > 0 else 1
                value = (start + (after.value - start) * share).quantize(_PLACES)
            out[name] = value
        return out

    def install(
        self, fake: FakeExchange, *, account: str = "main", start_ms: float | None = None
    ) -> None:
        """Drive ``account`` of ``fake`` by this scenario from ``start_ms`` (the exchange's
        clock, ms; default now): each account answer, and each user data stream event,
        shows the fields of its moment. Installing again replaces the previous scenario of
        the exchange."""
        start = fake.now_ms() if start_ms is None else start_ms
        fake._install_scenario(account, self, start)


def demo_scenario(period: float) -> Scenario:
    """The ``watch --demo`` script, in units of ``period`` seconds: ``uniMMR`` slides from
    3.0 to 1.15 over 12 periods (maintenance margin fixed, equity falling), the status turns
    ``MARGIN_CALL`` at the bottom, stays there for 2 periods, then climbs back to 1.6 by
    period 22 (the status back to ``NORMAL`` at period 19)."""
    p = period
    return (
        Scenario()
        .at(
            0,
            uni_mmr="3.00000000",
            account_equity="30000.00000000",
            actual_equity="33000.00000000",
            account_maint_margin="10000.00000000",
            account_status="NORMAL",
        )
        .ramp(12 * p, uni_mmr="1.15", account_equity="11500", actual_equity="14500")
        .at(12 * p, account_status="MARGIN_CALL")
        # A while at the bottom: a poll that comes late still sees it.
        .ramp(14 * p, uni_mmr="1.15", account_equity="11500", actual_equity="14500")
        .ramp(22 * p, uni_mmr="1.6", account_equity="16000", actual_equity="19000")
        .at(19 * p, account_status="NORMAL")
    )
