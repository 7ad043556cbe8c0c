"""Fault injection for FakeExchange: the kinds of misbehaviour, and the rules that pick them.

Two families of faults:

- *replacing* faults answer instead of the exchange: the request is not authenticated, not
  executed and not charged any weight (a proxy, a load balancer or a crashed backend
  answered, or nobody did);
- *mangling* faults let the exchange process the request normally (weight charged, checks
  done) and then spoil the delivery of its answer: delayed, cut short, or made unreadable.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultKind", "FaultRule"]


class FaultKind(str, enum.Enum):
    """A way for :class:`~binance_pmpro.testing.FakeExchange` to misbehave.

    Options (keyword arguments of ``inject``/``inject_randomly``) are listed per kind with
    their defaults.
    """

    SERVER_ERROR_JSON = "server_error_json"
    """Replacing: a 5xx answer with Binance's JSON error body.
    Options: ``status=500``, ``code=-1000``, ``msg`` (Binance's text for -1000)."""
    SERVER_ERROR_EMPTY = "server_error_empty"
    """Replacing: a 5xx answer with an empty body. Options: ``status=503``."""
    HTML_ERROR_PAGE = "html_error_page"
    """Replacing: an HTML error page from a proxy in front of the exchange.
    Options: ``status=502``."""
    DROP_CONNECTION = "drop_connection"
    """Replacing: the connection is closed after the request arrived, without any answer.
    In-process this raises ``httpx.RemoteProtocolError``, as httpx does for a real socket."""
    TIMESTAMP_ERROR = "timestamp_error"
    """Replacing: a one-off ``-1021`` (HTTP 400), as if the request had arrived late."""
    RATE_LIMITED = "rate_limited"
    """Replacing: HTTP 429 with ``-1003`` and ``Retry-After``.
    Options: ``retry_after`` (seconds; default: until the end of the server's minute)."""
    IP_BANNED = "ip_banned"
    """Replacing: bans the client's IP (every later request gets 418 until the ban ends)
    and answers this request with 418. Options: ``seconds=120``."""
    ERROR = "error"
    """Replacing: any Binance error answer. Options: ``status=400``, ``code=-1000``,
    ``msg``."""
    TRUNCATED_JSON = "truncated_json"
    """Mangling: the answer's body is cut short (``Content-Length`` matches the cut body,
    so the HTTP exchange itself is complete). Options: ``keep`` (bytes kept; default half)."""
    MALFORMED_JSON = "malformed_json"
    """Mangling: the answer's body is not valid JSON. Options: ``body`` (bytes to send
    instead; default: the real body with its first ``:`` replaced by ``=``)."""
    SLOW_RESPONSE = "slow_response"
    """Mangling: the answer is sent ``delay`` seconds late (default 30). In-process, a delay
    longer than the request's read timeout raises ``httpx.ReadTimeout`` after the timeout,
    as a real socket would; the wait uses ``anyio.sleep``, so virtual clocks apply."""
    RESET_MID_BODY = "reset_mid_body"
    """Mangling: the status line, the headers (with the full ``Content-Length``) and part
    of the body go out, then the connection is reset. Options: ``keep`` (body bytes sent
    before the reset; default half)."""
    CLOCK_SKEW = "clock_skew"
    """Mangling: the exchange handles the request as if its clock were ``offset_ms`` ms
    ahead (negative: behind). Options: ``offset_ms=5000``. For a lasting offset set
    ``FakeExchange.clock_offset_ms`` instead."""

    @property
    def replaces_answer(self) -> bool:
        """Whether the fault answers instead of the exchange (no checks, no weight)."""
        return self in _REPLACING


_REPLACING = frozenset(
    {
        FaultKind.SERVER_ERROR_JSON,
        FaultKind.SERVER_ERROR_EMPTY,
        FaultKind.HTML_ERROR_PAGE,
        FaultKind.DROP_CONNECTION,
        FaultKind.TIMESTAMP_ERROR,
        FaultKind.RATE_LIMITED,
        FaultKind.IP_BANNED,
        FaultKind.ERROR,
    }
)

_DEFAULTS: Mapping[FaultKind, Mapping[str, Any]] = {
    FaultKind.SERVER_ERROR_JSON: {
        "status": 500,
        "code": -1000,
        "msg": "An unknown error occurred while processing the request.",
    },
    FaultKind.SERVER_ERROR_EMPTY: {"status": 503},
    FaultKind.HTML_ERROR_PAGE: {"status": 502},
    FaultKind.DROP_CONNECTION: {},
    FaultKind.TIMESTAMP_ERROR: {},
    FaultKind.RATE_LIMITED: {"retry_after": None},
    FaultKind.IP_BANNED: {"seconds": 120},
    FaultKind.ERROR: {
        "status": 400,
        "code": -1000,
        "msg": "An unknown error occurred while processing the request.",
    },
    FaultKind.TRUNCATED_JSON: {"keep": None},
    FaultKind.MALFORMED_JSON: {"body": None},
    FaultKind.SLOW_RESPONSE: {"delay": 30.0},
    FaultKind.RESET_MID_BODY: {"keep": None},
    FaultKind.CLOCK_SKEW: {"offset_ms": 5000},
}


def fault_options(kind: FaultKind, options: Mapping[str, Any]) -> dict[str, Any]:
    """The full option set of a fault: defaults overlaid with ``options``, validated."""
    defaults = _DEFAULTS[kind]
    unknown = set(options) - set(defaults)
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise TypeError(
            f"unknown option(s) {', '.join(sorted(unknown))} for {kind.name}; allowed: {allowed}"
        )
    merged = {**defaults, **options}
    status = merged.get("status")
    if status is not None and not (isinstance(status, int) and 100 <= status <= 599):
        raise ValueError(f"status must be an HTTP status code, not {status!r}")
    server_error = kind in (FaultKind.SERVER_ERROR_JSON, FaultKind.SERVER_ERROR_EMPTY)
    if server_error and status is not None and status < 500:
        raise ValueError(f"{kind.name} needs a 5xx status, not {status}")
    for name in ("delay", "seconds", "retry_after"):
        value = merged.get(name)
        if value is not None and (isinstance(value, bool) or value < 0):
            raise ValueError(f"{name} must be a non-negative number of seconds, not {value!r}")
    keep = merged.get("keep")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise ValueError(f"keep must be a non-negative number of bytes, not {keep!r}")
    return merged


@dataclass(eq=False)
class FaultRule:
    """One injected fault: what to do, to which requests, how often.

    Returned by ``FakeExchange.inject`` and ``inject_randomly``; ``hits`` counts the
    requests it has spoiled so far.
    """

    kind: FaultKind
    path: str | None
    """Only requests to this path (``None``: any path)."""
    options: Mapping[str, Any]
    remaining: int | None = None
    """Requests still to spoil (scripted rules); ``None`` for probabilistic rules."""
    probability: float | None = None
    """Chance per matching request (probabilistic rules)."""
    hits: int = field(default=0)

    def matches(self, path: str) -> bool:
        """Whether a request to ``path`` is subject to this rule."""
        return self.path is None or self.path == path


class FaultPlan:
    """The scripted and probabilistic fault rules of one exchange, and the random source."""

    def __init__(self, seed: int | None) -> None:
        # A seeded generator makes "fail 10% of requests" runs reproducible; not for secrets.
        self._rng = random.Random(seed)  # noqa: S311
        self.scripted: list[FaultRule] = []
        self.random: list[FaultRule] = []

    def add_scripted(
        self, kind: FaultKind, times: int, path: str | None, options: Mapping[str, Any]
    ) -> FaultRule:
        """Spoil the next ``times`` requests matching ``path``."""
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive int, not {times!r}")
        rule = FaultRule(kind, path, fault_options(kind, options), remaining=times)
        self.scripted.append(rule)
        return rule

    def add_random(
        self, kind: FaultKind, probability: float, path: str | None, options: Mapping[str, Any]
    ) -> FaultRule:
        """Spoil each request matching ``path`` with ``probability``."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], not {probability!r}")
        rule = FaultRule(kind, path, fault_options(kind, options), probability=probability)
        self.random.append(rule)
        return rule

    def clear(self) -> None:
        """Forget every rule (the random source keeps its position)."""
        self.scripted.clear()
        self.random.clear()

    def pick(self, path: str) -> FaultRule | None:
        """The rule that spoils the next request to ``path``, if any; scripted rules first,
        in the order they were injected."""
        for rule in self.scripted:
            if rule.matches(path):
                assert rule.remaining is not None
                rule.remaining -= 1
                rule.hits += 1
                if rule.remaining <= 0:
                    self.scripted.remove(rule)
                return rule
        for rule in self.random:
            if rule.matches(path):
                assert rule.probability is not None
                if self._rng.random() < rule.probability:
                    rule.hits += 1
                    return rule
        return None
