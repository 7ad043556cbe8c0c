"""The endpoint reference page of the docs, generated from the endpoint table.

    python -m binance_pmpro._reference docs/reference/endpoints.md

``tests/test_endpoints_docs.py`` fails when the committed page differs from what this
module generates, so the page cannot drift from the table.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from .client import PortfolioMarginProClient
from .endpoints import ACCOUNT_INFO, PORTFOLIO_ENDPOINTS, REMOVED_ENDPOINTS, Budget, Endpoint, Param
from .portfolio import PortfolioEndpointsMixin

__all__ = ["endpoint_reference"]

# The first issue's entry predates the table's title and CLI columns.
_ACCOUNT_TITLE = "Get Portfolio Margin Pro Account Info"
_ACCOUNT_CLI = "account"


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    if isinstance(tp, types.UnionType):
        return " | ".join(_type_name(t) for t in typing.get_args(tp))
    if tp is type(None):
        return "None"
    return str(tp.__name__)


def _returns(endpoint: Endpoint) -> str:
    """What the client method returns, and the decoded response when it unwraps it."""
    method = getattr(PortfolioEndpointsMixin, endpoint.name, None) or getattr(
        PortfolioMarginProClient, endpoint.name
    )
    returned = _type_name(typing.get_type_hints(method)["return"])
    decoded = _type_name(endpoint.response)
    if returned == decoded:
        return f"`{returned}`"
    return f"`{returned}` (from `{decoded}`)"


def _param_text(param: Param) -> str:
    parts = [f"`{param.name}` {param.type.value} {'mand' if param.mandatory else 'opt'}"]
    if param.choices:
        parts.append(": " + " \\| ".join(f"`{c}`" for c in param.choices))
    notes = []
    if param.known:
        notes.append("documented: " + ", ".join(f"`{k}`" for k in param.known))
    if param.positive:
        notes.append("> 0")
    if param.minimum is not None and param.maximum is not None:
        notes.append(f"[{param.minimum}, {param.maximum}]")
    elif param.minimum is not None and not param.time:
        notes.append(f">= {param.minimum}")
    if param.time:
        notes.append("epoch ms")
    if param.default is not None:
        notes.append(f"default `{param.default}`")
    if notes:
        parts.append(" (" + "; ".join(notes) + ")")
    return "".join(parts)


def _weight(endpoint: Endpoint) -> str:
    budget = "UID" if endpoint.budget is Budget.SAPI_UID else "IP"
    return f"{budget} {endpoint.weight_text or endpoint.weight_for({})}"


def _row(endpoint: Endpoint) -> str:
    title = endpoint.title or _ACCOUNT_TITLE
    cli = endpoint.cli or (_ACCOUNT_CLI if endpoint is ACCOUNT_INFO else "")
    params = "<br>".join(_param_text(p) for p in endpoint.params) or "—"
    cells = [
        endpoint.method,
        f"`{endpoint.path}`",
        title,
        f"`{endpoint.name}()`",
        f"`{cli}`",
        endpoint.security.value,
        _weight(endpoint),
        params,
        _returns(endpoint),
    ]
    return "| " + " | ".join(cells) + " |"


def endpoint_reference() -> str:
    """The Markdown of ``docs/reference/endpoints.md``."""
    lines = [
        "# Endpoint reference",
        "",
        "<!-- Generated from binance_pmpro.endpoints by "
        "`python -m binance_pmpro._reference docs/reference/endpoints.md`; do not edit by "
        "hand: tests/test_endpoints_docs.py fails when this page is stale. -->",
        "",
        "Every Portfolio Margin Pro endpoint the SDK calls, as its endpoint table "
        "(`binance_pmpro.endpoints.PORTFOLIO_ENDPOINTS`) describes it. The same table "
        "drives the client's request building and local checks, the rate limiter's weights "
        "and budgets, the fake exchange and the command line.",
        "",
        "- **Client method**: on `PortfolioMarginProClient`; keyword arguments only, "
        "`Decimal` amounts, aware `datetime` times, enums for closed choices.",
        "- **Weight**: `UID` endpoints count on the account's budget of 180,000 per minute "
        "per endpoint, `IP` endpoints on the egress IP's budget of 12,000 per minute per "
        "endpoint.",
        "- **Parameters**: Binance's names and types; SIGNED endpoints (`USER_DATA`, "
        "`TRADE`) also take `recvWindow` and `timestamp`, added by the client. Closed "
        "choices, ranges and positive amounts are checked before any weight is spent; asset "
        "names are left to Binance.",
        "",
        "| Method | Path | Binance's name | Client method | CLI | Security | Weight "
        "| Parameters | Returns |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(endpoint) for endpoint in PORTFOLIO_ENDPOINTS]
    lines += [
        "",
        "## Per-endpoint caps",
        "",
        "Binance caps these endpoints per account on top of the weight budgets. The client "
        "counts its own calls and refuses the one that would break a cap before sending it "
        "(`EndpointCapError` with `local=True` and `retry_after`); it cannot see calls made "
        "by other clients, processes or the web interface, so Binance's own refusal is "
        "reported as `EndpointCapError` with `local=False`.",
        "",
        "| Endpoint | Client method | Cap |",
        "|---|---|---|",
    ]
    lines += [
        f"| {e.method} `{e.path}` | `{e.name}()` | {e.cap.text} |"
        for e in PORTFOLIO_ENDPOINTS
        if e.cap is not None
    ]
    lines += ["", "## Date ranges", ""]
    for endpoint in PORTFOLIO_ENDPOINTS:
        rule = endpoint.date_range
        if rule is not None:
            lines.append(
                f"`{endpoint.path}` (`{endpoint.name}()`): no bound covers the last "
                f"{rule.default_days} days; only `startTime` covers {rule.default_days} days "
                f"from it; only `endTime` the {rule.default_days} days up to it; both at most "
                f"{rule.max_span_days} days apart. `iter_{endpoint.name}()` splits longer "
                "ranges and walks the pages."
            )
    lines += [
        "",
        "`/sapi/v1/portfolio/interest-history` (`interest_history()`) has no page number: "
        "`iter_interest_history()` walks it by time.",
        "",
        "## Writes",
        "",
        "Never sent again once they may have reached Binance. When the outcome is unknown the "
        "call raises `WriteOutcomeUnknownError`; look at the following before trying again "
        "(see the [safe writes guide](../guides/safe-writes.md)).",
        "",
        "| Endpoint | Client method | Check |",
        "|---|---|---|",
    ]
    lines += [
        f"| {e.method} `{e.path}` | `{e.name}()` | {e.verify} |"
        for e in PORTFOLIO_ENDPOINTS
        if e.is_write
    ]
    lines += [
        "",
        "## Removed endpoints",
        "",
        "Binance removed these; a call gets `-21015`, raised as `EndpointGoneError`. The SDK "
        "does not implement them.",
        "",
    ]
    lines += [f"- {method} `{path}`" for method, path in REMOVED_ENDPOINTS]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Write the page to ``argv[0]`` (or print it)."""
    text = endpoint_reference()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
