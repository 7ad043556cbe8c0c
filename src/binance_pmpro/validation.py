"""Local checks of a call's parameters and of Binance's per-endpoint caps. Pure.

Everything Binance documents and that can be checked here is checked before the call waits
for weight, so a bad call costs nothing: mandatory parameters, closed choices
(``transferSide``, ``from``, ``transferType``, ``autoRepay``, ``deltaEnabled``), documented
ranges (``marginCallLevel`` in [1.1, 2.0], ``size`` up to 100, positive amounts), and the
span of a date range. Asset names are left to Binance (Decision 12): its list changes.

The rules are read from the endpoint table (:class:`~binance_pmpro.endpoints.Param`), the
same data the fake exchange enforces.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .endpoints import Cap, Endpoint, Param, ParamType
from .errors import BinanceError, ConfigurationError
from .models import datetime_to_ms

__all__ = ["CapLedger", "EndpointCapError", "ParameterError", "prepare_params"]

DAY_MS = 86_400_000


class ParameterError(ConfigurationError):
    """A call's arguments break a rule Binance documents (a mandatory parameter missing, a
    value outside its choices or range). Raised before anything is sent or any weight is
    spent. ``endpoint`` is ``"METHOD path"``, ``param`` Binance's parameter name."""

    def __init__(self, message: str, *, endpoint: str = "", param: str | None = None) -> None:
        super().__init__(f"{endpoint}: {message}" if endpoint else message)
        self.endpoint = endpoint
        self.param = param


class EndpointCapError(BinanceError):
    """A per-endpoint call cap Binance documents was reached (BNB transfer: 2 per 10 minutes;
    fund auto-collection: 500 per hour; auto-repay switch: 20 per day).

    ``local`` is True when this client refused the call before sending it (its own count of
    calls says the cap is reached; ``retry_after`` is then the number of seconds until a
    call fits again), False when Binance refused it (``__cause__`` holds Binance's error;
    ``retry_after`` is None because Binance does not say).
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        cap: Cap,
        local: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.cap = cap
        self.local = local
        self.retry_after = retry_after


# --- parameters ---------------------------------------------------------------------------


def prepare_params(endpoint: Endpoint, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``values`` (Binance's parameter names; ``None`` = left out) against the table
    and return them ready for the wire, in the table's order.

    Accepted per type: ``DECIMAL`` a :class:`~decimal.Decimal`, an int or a decimal string
    (never a float); ``LONG`` an int, or an aware ``datetime`` for times; ``STRING`` a str or
    enum member, and a bool for Binance's ``"true"``/``"false"`` parameters. Raises
    :class:`ParameterError`.
    """
    where = f"{endpoint.method} {endpoint.path}"
    known = {param.name for param in endpoint.params}
    unknown = [name for name, value in values.items() if name not in known and value is not None]
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(sorted(unknown))}", endpoint=where)
    wire: dict[str, Any] = {}
    for param in endpoint.params:
        value = values.get(param.name)
        if value is None:
            if param.mandatory:
                raise ParameterError(f"{param.name} is mandatory", endpoint=where, param=param.name)
            continue
        wire[param.name] = _check_value(param, value, where)
    _check_range(endpoint, wire, where)
    return wire


def _check_value(param: Param, value: Any, where: str) -> Any:
    name = param.name
    if param.type is ParamType.STRING:
        if param.boolean:
            if isinstance(value, bool):
                return "true" if value else "false"
            if value in param.choices:
                return value
            raise ParameterError(
                f"{name} must be True or False, not {value!r}", endpoint=where, param=name
            )
        text = value.value if isinstance(value, enum.Enum) else value
        if not isinstance(text, str) or not text:
            raise ParameterError(
                f"{name} must be a non-empty string, not {value!r}", endpoint=where, param=name
            )
        if param.choices and text not in param.choices:
            raise ParameterError(
                f"{name} must be one of {', '.join(param.choices)}, not {text!r}",
                endpoint=where,
                param=name,
            )
        return text
    if param.type is ParamType.LONG:
        if param.time and isinstance(value, datetime):
            try:
                value = datetime_to_ms(value)
            except ValueError as exc:
                raise ParameterError(f"{name}: {exc}", endpoint=where, param=name) from None
        if isinstance(value, bool) or not isinstance(value, int):
            kind = "an aware datetime or epoch ms" if param.time else "an int"
            raise ParameterError(
                f"{name} must be {kind}, not {value!r}", endpoint=where, param=name
            )
        _check_bounds(param, Decimal(value), where)
        return value
    number = _decimal(value, name, where)
    _check_bounds(param, number, where)
    return number


def _decimal(value: Any, name: str, where: str) -> Decimal:
    if isinstance(value, float):
        raise ParameterError(
            f"{name} must be a Decimal or a decimal string, never a float ({value!r} may "
            "not be the number you meant)",
            endpoint=where,
            param=name,
        )
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise ParameterError(f"{name} must be a Decimal, not {value!r}", endpoint=where, param=name)
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        raise ParameterError(
            f"{name} is not a decimal number: {value!r}", endpoint=where, param=name
        ) from None
    if not number.is_finite():
        raise ParameterError(f"{name} must be finite, not {value!r}", endpoint=where, param=name)
    return number


def _check_bounds(param: Param, number: Decimal, where: str) -> None:
    name = param.name
    if param.positive and number <= 0:
        raise ParameterError(f"{name} must be positive, not {number}", endpoint=where, param=name)
    low, high = param.minimum, param.maximum
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            rule = f"within [{low}, {high}]"
        elif low is not None:
            rule = f"at least {low}"
        else:
            rule = f"at most {high}"
        raise ParameterError(f"{name} must be {rule}, not {number}", endpoint=where, param=name)


def _check_range(endpoint: Endpoint, wire: Mapping[str, Any], where: str) -> None:
    start, end = wire.get("startTime"), wire.get("endTime")
    if start is None or end is None:
        return
    if start > end:
        raise ParameterError("startTime is after endTime", endpoint=where, param="startTime")
    rule = endpoint.date_range
    if rule is not None and end - start > rule.max_span_days * DAY_MS:
        raise ParameterError(
            f"startTime and endTime are more than {rule.max_span_days} days apart "
            "(Binance's limit; the iter_* methods split long ranges)",
            endpoint=where,
            param="endTime",
        )


# --- per-endpoint caps ----------------------------------------------------------------------


class CapLedger:
    """The calls one client made to capped endpoints, to refuse locally the call Binance
    would refuse. Times are seconds on the caller's clock (the event loop's).

    It sees only this client's calls: other clients and processes on the same account, the
    web interface, and calls before a restart all count at Binance but not here.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}

    def check(self, endpoint: Endpoint, now: float) -> None:
        """Raise :class:`EndpointCapError` when one more call now would exceed the cap."""
        cap = endpoint.cap
        if cap is None:
            return
        calls = self._expire(endpoint, cap, now)
        if len(calls) >= cap.calls:
            wait = max(0.0, calls[0] + cap.period_s - now)
            raise EndpointCapError(
                f"{endpoint.method} {endpoint.path}: Binance allows {cap.text} and this client "
                f"already made {len(calls)} such calls; the next fits in {math.ceil(wait)} s "
                "(not sent)",
                endpoint=f"{endpoint.method} {endpoint.path}",
                cap=cap,
                local=True,
                retry_after=wait,
            )

    def record(self, endpoint: Endpoint, now: float) -> None:
        """Count a call that reached (or may have reached) Binance."""
        if endpoint.cap is not None:
            self._calls.setdefault(endpoint.name, deque()).append(now)

    def _expire(self, endpoint: Endpoint, cap: Cap, now: float) -> deque[float]:
        calls = self._calls.setdefault(endpoint.name, deque())
        while calls and calls[0] + cap.period_s <= now:
            calls.popleft()
        return calls
