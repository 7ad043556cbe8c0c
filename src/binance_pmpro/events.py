"""Request events for metrics and tracing hooks.

Pass callables as ``hooks=`` to the client; each is called (synchronously, on the event
loop: keep it quick, never block) with a :class:`RequestEvent` when an HTTP attempt starts
and when it ends. A hook that raises is logged and otherwise ignored: observing a call never
breaks it. Events carry no secrets: no API key, no signature, no query string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Hook", "RequestEvent"]


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One HTTP attempt of a client call, at its start or its end."""

    phase: Literal["start", "end"]
    endpoint: str
    """The endpoint's name, e.g. ``"account_info"``."""
    method: str
    path: str
    attempt: int
    """1 for the first attempt of a call, 2 for its first retry, ..."""
    weight: int
    """Request weight charged for this attempt."""
    status: int | None = None
    """HTTP status (end events that got a response)."""
    error: BaseException | None = None
    """The transport error (end events that got no response)."""
    elapsed: float | None = None
    """Seconds from sending to the end of the response (end events)."""
    used_weight: int | None = None
    """The budget's used weight reported by Binance in this response, if any."""


Hook = Callable[[RequestEvent], object]
"""A callable receiving :class:`RequestEvent` objects."""
