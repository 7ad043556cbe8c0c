"""The ``binance-pmpro`` command line (also ``python -m binance_pmpro``).

Commands::

    binance-pmpro account [--json] [--demo] [--base-url URL] [--recv-window MS]
                          [--timeout S] [--max-wait S] [--api-key KEY]
                          [--api-secret-file PATH | --private-key PATH] [-v]
    binance-pmpro fake-exchange [--host 127.0.0.1] [--port 0] [--stream-period S] [-v]
    binance-pmpro stream [--json] [--count N] [--duration S] [--close-listen-key]
                         [--stream-url URL] [--demo] [the options of account]
    binance-pmpro balance | collateral-rates | index-price | loan | repay-history | ...
                          [the options of account] [the endpoint's parameters]
    binance-pmpro repay | bnb-transfer | set-margin-call-level | ... [--yes]
    binance-pmpro watch [--every S] [--alert-below UNIMMR] [--json] [--exit-on-alert]
                        [--count N] [--duration S] [--metrics-port PORT] [--demo]
                        [--source auto|stream|poll] [--stream-url URL] [...]

``account`` prints the Portfolio Margin Pro account's risk summary: a table by default,
one JSON document with ``--json``. ``--demo`` (and, with a notice, a bare ``account`` run
from a terminal with no credentials configured at all) starts the built-in fake exchange on
loopback and runs the real client against it over HTTP. ``fake-exchange`` serves the fake
exchange until interrupted; its first stdout line is JSON with ``base_url``, ``api_key``,
``api_secret`` and ``stream_url``. ``stream`` prints the user data stream's events.

Every other Portfolio Margin Pro endpoint has a subcommand named in the endpoint table
(:attr:`binance_pmpro.endpoints.Endpoint.cli`), with the same options, output and exit codes
as ``account``. Write commands print exactly what they will send (to stderr) and ask for
confirmation unless ``--yes`` is given; they never start a demo on their own (Decision 7).

Exit codes (named constants below; also listed in ``--help``):

====  ==========================================================================
0     success
1     Binance refused the request for a reason not listed below (an API error)
2     usage: a bad command line or option value
3     authentication: no or unusable credentials, -2014/-2015/-1002, -1022, 401
4     rate limited or banned: 429/-1003, 418, a 403 from Binance's firewall
5     network: no connection, a timeout, a connection lost mid-request
6     server side: a 5xx or an "execution status unknown" code (-1000, -1006, ...)
7     bad response: an HTML page, malformed or truncated JSON, an unexpected shape
8     a write command was not confirmed: nothing was sent
9     a write's outcome is unknown (timeout, 5xx, unreadable answer): check first
10    ``watch --exit-on-alert``: a breach, or a status change away from NORMAL
70    internal error (a bug in binance-pmpro; run with -v for the traceback)
130   interrupted (Ctrl-C)
====  ==========================================================================

Importing this module stays light: the fake exchange and its server load only for
``--demo`` and ``fake-exchange``.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import logging
import math
import os
import re
import stat
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TextIO

import msgspec

from . import __version__
from .client import PortfolioMarginProClient, _check_base_url, _is_loopback
from .decoding import decode_account_info
from .endpoints import PORTFOLIO_ENDPOINTS, Budget, Endpoint, ParamType
from .errors import (
    APIError,
    AuthenticationError,
    BinanceError,
    ConfigurationError,
    DecodeError,
    IPBannedError,
    RateLimitedError,
    RateLimitTimeoutError,
    ServerError,
    TransportError,
    WAFBlockedError,
    redact,
)
from .models import AccountInfo, AccountStatus, AccountType, MarginCallLevel, datetime_to_ms
from .portfolio import WriteOutcomeUnknownError, decode_response
from .requests import check_recv_window, encode_value
from .validation import EndpointCapError, ParameterError, prepare_params

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_AUTH",
    "EXIT_BAD_RESPONSE",
    "EXIT_DECLINED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_OUTCOME_UNKNOWN",
    "EXIT_RATE_LIMITED",
    "EXIT_SERVER",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK = 0
"""Success."""
EXIT_API_ERROR = 1
"""Binance answered with an error not covered by a more specific code."""
EXIT_USAGE = 2
"""Bad command line or option value (argparse uses 2 as well)."""
EXIT_AUTH = 3
"""Missing or unusable credentials, or Binance rejected the key or the signature."""
EXIT_RATE_LIMITED = 4
"""Rate limited (429), IP banned (418), blocked by Binance's firewall (403), or the local
limiter could not grant the weight in time."""
EXIT_NETWORK = 5
"""No complete HTTP answer: connection refused, timeout, connection lost."""
EXIT_SERVER = 6
"""Binance failed on its side (5xx, execution status unknown)."""
EXIT_BAD_RESPONSE = 7
"""An answer came back but could not be understood."""
EXIT_DECLINED = 8
"""A write command was not confirmed: nothing was sent."""
EXIT_OUTCOME_UNKNOWN = 9
"""A write may or may not have been executed by Binance (timeout, 5xx, unreadable answer):
check the account before sending it again."""
EXIT_INTERNAL = 70
"""An unexpected exception: a bug (the traceback is printed with ``-v``)."""
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C (128 + SIGINT, as shells report it)."""

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK:<4} success
  {EXIT_API_ERROR:<4} Binance refused the request for another reason (an API error)
  {EXIT_USAGE:<4} usage: bad command line or option value
  {EXIT_AUTH:<4} authentication: no or unusable credentials, bad key (-2014/-2015),
       bad signature (-1022)
  {EXIT_RATE_LIMITED:<4} rate limited (429/-1003) or IP banned (418) or firewall-blocked (403)
  {EXIT_NETWORK:<4} network: connection refused, timeout, connection lost
  {EXIT_SERVER:<4} server side: 5xx or "execution status unknown" (-1000, -1006, ...)
  {EXIT_BAD_RESPONSE:<4} bad response: HTML page, malformed or truncated JSON
  {EXIT_DECLINED:<4} a write command was not confirmed: nothing was sent
  {EXIT_OUTCOME_UNKNOWN:<4} a write's outcome is unknown (timeout, 5xx): check before retrying
  {EXIT_INTERNAL:<4} internal error (a bug; run with -v for the traceback)
  {EXIT_INTERRUPTED:<4} interrupted (Ctrl-C)
"""

CREDENTIAL_ENV_VARS = ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_PRIVATE_KEY_PATH")
PASSWORD_ENV_VAR = "BINANCE_PRIVATE_KEY_PASSWORD"

_DEMO_HINT = "to try the command without keys, run: binance-pmpro account --demo"

log = logging.getLogger("binance_pmpro.cli")


class CliError(Exception):
    """A failure the command line reports as one ``error:`` line and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- option values -----------------------------------------------------------------------


def _recv_window(text: str) -> int:
    try:
        return check_recv_window(int(text))
    except ValueError:  # ConfigurationError is a ValueError too
        raise argparse.ArgumentTypeError(
            f"not a whole number of ms between 1 and 60000 (Binance's bounds): {text!r}"
        ) from None


def _seconds(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds {bound}")
    return value


def _timeout(text: str) -> float:
    return _seconds(text, allow_zero=False)


def _max_wait(text: str) -> float:
    return _seconds(text, allow_zero=True)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65_535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535 (0: any free port)")
    return value


def _base_url(text: str) -> str:
    # Checked here rather than left to the client so that a bad URL is a usage error (2),
    # not mistaken for a credentials problem at client construction. Same rules as the
    # client's own check.
    try:
        _check_base_url(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# --- the parser ----------------------------------------------------------------------------

_DESCRIPTION = """\
Command line for Binance's Portfolio Margin Pro API.

  binance-pmpro account --demo     try it without keys, against the built-in fake exchange
  binance-pmpro account            your account (BINANCE_API_KEY + BINANCE_API_SECRET)
  binance-pmpro account --json     the same as one JSON document
  binance-pmpro balance --demo     balances; every endpoint has its command (list below)
  binance-pmpro stream --demo      the user data stream's events as they arrive
  binance-pmpro fake-exchange      serve the fake exchange for other programs' tests
"""

_ACCOUNT_DESCRIPTION = """\
Fetch GET /sapi/v1/portfolio/account (signed, weight 5 on the account's UID budget) and
print it: a table by default, every amount in full; --json prints one JSON document with
every field Binance sent (snake_case names, amounts as exact strings, enums as Binance's
strings).

credentials (the first that applies):
  --api-key KEY with --api-secret-file PATH (HMAC) or --private-key PATH (RSA/Ed25519);
  otherwise the environment: BINANCE_API_KEY with BINANCE_API_SECRET or
  BINANCE_PRIVATE_KEY_PATH. BINANCE_PRIVATE_KEY_PASSWORD unlocks an encrypted private key.

  There is deliberately no option that takes the secret itself: a secret typed on the
  command line is saved in the shell history and visible to every user of the machine in
  the process list (ps, /proc/PID/cmdline). Use a file (chmod 600), '-' for standard input,
  or the environment.

demo:
  --demo starts the built-in fake exchange on 127.0.0.1 (not Binance) and runs the real
  client against it over HTTP with the fake's own demo key. Without --demo, a run from a
  terminal with no credentials configured at all (no options, none of the environment
  variables, no --base-url) does the same with a notice; when stdout is not a terminal it
  fails with exit code 3 instead, so scripts never mistake demo numbers for an account's.
"""

_FAKE_DESCRIPTION = """\
Serve the built-in fake exchange (Binance's Portfolio Margin Pro endpoints, signature and
timestamp checks, weight accounting) over HTTP until interrupted (Ctrl-C or SIGTERM; exit
code 0), with its user data stream: the listen key calls (/fapi/v1/listenKey) on the same
port, and a WebSocket stream at STREAM_URL/ws/<listenKey> pushing an account update every
--stream-period seconds. The first line on stdout is one JSON object, flushed at once:
  {"base_url": "http://127.0.0.1:PORT", "api_key": "...", "api_secret": "...",
   "stream_url": "ws://127.0.0.1:PORT/pm-classic"}
with a demo HMAC key pair the fake exchange accepts. Notices go to stderr.
"""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log each request to stderr (signatures and secrets redacted) and show "
        "tracebacks on errors",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default: asyncio; trio needs the trio package)",
    )


class _RefuseSecret(argparse.Action):
    """``--api-secret VALUE``: refused with the reason, the value never repeated."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            f"there is no {option_string} option: a secret on the command line is saved in "
            "the shell history and shown in the process list; use --api-secret-file PATH "
            "(or '-' for standard input) or the BINANCE_API_SECRET environment variable"
        )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    """--json, --demo, --base-url, timing and credential options (account and the family)."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the table"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="ask the built-in fake exchange on 127.0.0.1 instead of Binance (no keys needed)",
    )
    parser.add_argument(
        "--base-url",
        type=_base_url,
        metavar="URL",
        help="Binance's REST root (default: https://api.binance.com); http:// only for "
        "loopback hosts",
    )
    parser.add_argument(
        "--recv-window",
        type=_recv_window,
        metavar="MS",
        help="how long a signed request stays valid, in ms, 1..60000 (default: 5000)",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        metavar="S",
        help="network timeout for each phase of the request, in seconds (fractions allowed)",
    )
    parser.add_argument(
        "--max-wait",
        type=_max_wait,
        metavar="S",
        help="longest wait for rate-limit weight, a 429 pause included, in seconds "
        "(default: 10; 0: fail at once)",
    )
    parser.add_argument("--api-key", metavar="KEY", help="API key (default: $BINANCE_API_KEY)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--api-secret-file",
        metavar="PATH",
        help="file holding the HMAC API secret ('-': standard input); never the secret "
        "itself on the command line (see above)",
    )
    secret.add_argument(
        "--private-key",
        metavar="PATH",
        help="RSA or Ed25519 private key file (PEM or DER); its password, if any, from "
        f"${PASSWORD_ENV_VAR}",
    )
    # `--api-secret X` is the likeliest mistake: refuse it with the reason, where argparse's
    # generic "unrecognized arguments" would repeat the secret on stderr.
    parser.add_argument(
        "--api-secret", "--secret", nargs="?", action=_RefuseSecret, help=argparse.SUPPRESS
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of the ``binance-pmpro`` command line."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="binance-pmpro",
        description=_DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    account = commands.add_parser(
        "account",
        help="print the Portfolio Margin Pro account's risk summary",
        description=_ACCOUNT_DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
        allow_abbrev=False,
    )
    _add_connection_options(account)
    _add_common(account)
    account.set_defaults(handler=_run_account)

    for endpoint in PORTFOLIO_ENDPOINTS:
        if endpoint.cli is not None:
            _add_endpoint_command(commands, endpoint)

    from ._stream_cli import add_stream_command  # the stream loads with its commands only
    from ._watch_cli import add_watch_command  # the monitor loads with its command only

    add_watch_command(commands)
    add_stream_command(commands)

    fake = commands.add_parser(
        "fake-exchange",
        help="serve the built-in fake exchange over HTTP until interrupted",
        description=_FAKE_DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
        allow_abbrev=False,
    )
    fake.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    fake.add_argument(
        "--port", type=_port, default=0, help="port to listen on (default: 0, any free port)"
    )
    fake.add_argument(
        "--stream-period",
        type=lambda text: _seconds(text, allow_zero=False),
        default=5.0,
        metavar="SECONDS",
        help="seconds between the user data stream's account updates, fractions allowed "
        "(default: 5, as Binance)",
    )
    _add_common(fake)
    fake.set_defaults(handler=_run_fake_exchange)
    return parser


# --- the Portfolio Margin Pro family: one subcommand per endpoint of the table -------------

_OPTION_NAMES: dict[str, str] = {
    "startTime": "--start",
    "endTime": "--end",
    "current": "--page",
    "transferSide": "--side",
    "transferType": "--type",
    "marginCallLevel": "--level",
}
"""Command-line spellings of Binance's parameter names (others: ``--`` + kebab-case)."""

_ON_OFF = {"on": True, "true": True, "off": False, "false": False}


def _option_name(name: str) -> str:
    return _OPTION_NAMES.get(name, "--" + _snake(name).replace("_", "-"))


def _dest(name: str) -> str:
    return "p_" + _snake(name)


def _decimal_arg(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _count(text: str) -> int:
    """A whole number of at least 1 (``--count``)."""
    value = _int_arg(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _time_arg(text: str) -> int:
    """Epoch ms, or an ISO 8601 date/time (UTC unless it carries an offset)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 like 2024-11-01 or 2024-11-01T12:00:00Z, or "
            "epoch milliseconds)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return datetime_to_ms(moment)


def _budget_text(endpoint: Endpoint) -> str:
    weight = endpoint.weight_text or str(endpoint.weight_for({}))
    budget = "the account's UID budget" if endpoint.budget is Budget.SAPI_UID else "the IP budget"
    return f"weight {weight} on {budget}"


def _endpoint_description(endpoint: Endpoint) -> str:
    lines = [
        f"{endpoint.title}: {endpoint.method} {endpoint.path}",
        f"({endpoint.security.value}, {_budget_text(endpoint)}).",
    ]
    if endpoint.cap is not None:
        lines.append(f"Binance allows {endpoint.cap.text} per account.")
    if endpoint.date_range is not None:
        rule = endpoint.date_range
        lines.append(
            f"Range: no bound = the last {rule.default_days} days; one bound = "
            f"{rule.default_days} days from/up to it; both at most {rule.max_span_days} days "
            "apart."
        )
    if endpoint.is_write:
        text = (
            "This is a write: it prints exactly what it will send and asks for confirmation "
            "(--yes skips the question). It is never sent twice: when its outcome is unknown "
            f"(timeout, 5xx) it exits with code {EXIT_OUTCOME_UNKNOWN}; check "
            f"{endpoint.verify} before trying again. There is no automatic demo for writes: "
            "--demo says you mean the fake exchange."
        )
        lines += ["", *textwrap.wrap(text, 88)]
    else:
        lines += [
            "",
            "Prints a table by default, every amount in full; --json prints one JSON document",
            "with every field Binance sent (snake_case names, amounts as exact strings).",
        ]
    return "\n".join(lines) + "\n"


def _add_endpoint_command(commands: Any, endpoint: Endpoint) -> None:
    assert endpoint.cli is not None
    sub = commands.add_parser(
        endpoint.cli,
        help=endpoint.title,
        description=_endpoint_description(endpoint),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    for param in endpoint.params:
        if param.boolean:
            sub.add_argument(
                _dest(param.name),
                metavar="on|off",
                choices=sorted(_ON_OFF),
                help=f"the new value of {param.name}",
            )
            continue
        kwargs: dict[str, Any] = {"dest": _dest(param.name), "required": param.mandatory}
        if param.choices:
            kwargs["choices"] = param.choices
        if param.time:
            kwargs.update(type=_time_arg, metavar="TIME")
        elif param.type is ParamType.DECIMAL:
            kwargs.update(type=_decimal_arg, metavar="DECIMAL")
        elif param.type is ParamType.LONG:
            kwargs.update(type=_int_arg, metavar="N")
        else:
            kwargs["metavar"] = "|".join(param.choices) if param.choices else param.name.upper()
        notes = [param.doc] if param.doc else []
        if param.known:
            notes.append("documented: " + ", ".join(param.known))
        if param.minimum is not None and param.maximum is not None:
            notes.append(f"{param.minimum}..{param.maximum}")
        if param.default is not None:
            notes.append(f"Binance's default: {param.default}")
        if param.time:
            notes.append("ISO 8601 (UTC unless given) or epoch ms")
        kwargs["help"] = f"{param.name}" + (f": {'; '.join(notes)}" if notes else "")
        if param.choices:
            del kwargs["metavar"]
        sub.add_argument(_option_name(param.name), **kwargs)
    _add_connection_options(sub)
    if endpoint.is_write:
        sub.add_argument(
            "--yes",
            "-y",
            action="store_true",
            help="send without asking (the plan is still printed to stderr)",
        )
    _add_common(sub)
    sub.set_defaults(handler=_run_endpoint, endpoint=endpoint)


# --- output --------------------------------------------------------------------------------

_IGNORED_NOTE = "ignored for PM PRO and PM PRO SPAN (Binance)"
_NOTES = {
    "uni_mmr": "unified maintenance-margin ratio; liquidation risk at or below 1.05",
    "account_equity": "USD, after collateral rates",
    "actual_equity": "USD, ignoring collateral rates",
    "account_maint_margin": "USD, maintenance margin required",
    "account_initial_margin": "USD; " + _IGNORED_NOTE,
    "total_available_balance": "USD; " + _IGNORED_NOTE,
}
_STATUS_NOTES = {
    AccountStatus.NORMAL: "",
    AccountStatus.MARGIN_CALL: "add margin",
    AccountStatus.SUPPLY_MARGIN: "add margin again",
    AccountStatus.REDUCE_ONLY: "only position-reducing trades allowed",
    AccountStatus.ACTIVE_LIQUIDATION: "liquidation started by the user",
    AccountStatus.FORCE_LIQUIDATION: "Binance is liquidating",
    AccountStatus.BANKRUPTED: "bankrupted",
}
_TYPE_NOTES = {
    AccountType.PM_1: "Portfolio Margin Pro",
    AccountType.PM_2: "Portfolio Margin",
    AccountType.PM_3: "Portfolio Margin Pro SPAN",
}
_UNKNOWN_NOTE = "a value this release does not know"
_EXTRA_NOTE = "a field this release does not know"

_SNAKE_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _snake(name: str) -> str:
    """``"uniMMR"`` -> ``"uni_mmr"``, ``"riskUnitMMList"`` -> ``"risk_unit_mm_list"``."""
    return _SNAKE_RE.sub("_", name).lower()


def amount_text(value: Decimal) -> str:
    """An amount in full, in plain notation: every digit Binance sent, no rounding, no
    thousands separators. Equal to ``str(value)`` for the plain numbers Binance sends;
    unlike it, never switches to exponent notation (``1E-8`` prints ``0.00000001``)."""
    return format(value, "f")


def _wire_names() -> dict[str, str]:
    """Binance's field name -> AccountInfo attribute, for the fields Binance sends."""
    info = msgspec.inspect.type_info(AccountInfo)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name: f.name for f in info.fields if not f.name.endswith("_raw")}


def _enum_wire(info: AccountInfo, attr: str) -> str:
    value = getattr(info, attr)
    assert isinstance(value, enum.Enum)
    if value.name == "UNKNOWN":
        raw = getattr(info, f"{attr}_raw", None)
        return raw if raw is not None else str(value.value)
    return str(value.value)


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_snake(str(k)): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def account_document(info: AccountInfo, body: bytes) -> dict[str, Any]:
    """The ``--json`` document: every field of ``body`` in Binance's order, snake_case.

    Known amounts come from the decoded ``info`` as exact plain-notation strings (the
    thousands separators gone), enums as Binance's strings (the raw one for a value this
    release does not know), ``null`` where Binance sent ``""``. Fields this release does not
    know are passed through as sent, numbers exact.
    """
    plain = msgspec.json.Decoder(float_hook=Decimal).decode(body)
    if not isinstance(plain, dict):  # decode_account_info accepted it, so it is an object
        raise DecodeError("the account response is not a JSON object", body=body)
    names = _wire_names()
    doc: dict[str, Any] = {}
    for wire, sent in plain.items():
        attr = names.get(wire)
        if attr is None:
            doc[_snake(wire)] = _snake_keys(sent)
            continue
        typed = getattr(info, attr)
        if isinstance(typed, enum.Enum):
            doc[attr] = _enum_wire(info, attr)
        elif isinstance(typed, Decimal):
            doc[attr] = amount_text(typed)
        else:
            doc[attr] = typed
    return doc


def render_json(doc: Any) -> str:
    """One line of JSON; numbers of unknown fields (decoded as Decimal) stay exact."""
    return _JSON_ENCODER.encode(doc).decode()


_JSON_ENCODER = msgspec.json.Encoder(decimal_format="number")


def render_table(info: AccountInfo, body: bytes) -> str:
    """The default table: field, value in full, and a note (units, the ignored fields)."""
    plain = msgspec.json.Decoder(float_hook=Decimal).decode(body)
    sent = plain if isinstance(plain, dict) else {}
    names = _wire_names()
    rows: list[tuple[str, str, str]] = [("field", "value", "note")]
    for wire, attr in names.items():
        typed = getattr(info, attr)
        note = _NOTES.get(attr, "")
        if isinstance(typed, enum.Enum):
            text = _enum_wire(info, attr)
            if typed.name == "UNKNOWN":
                note = _UNKNOWN_NOTE
            elif isinstance(typed, AccountStatus):
                note = _STATUS_NOTES.get(typed, "")
            elif isinstance(typed, AccountType):
                note = _TYPE_NOTES.get(typed, "")
        elif isinstance(typed, Decimal):
            text = amount_text(typed)
        elif wire not in sent:
            text = "(not sent)"
        elif typed is None:
            text = "(empty)"
        else:
            text = str(typed)
        rows.append((attr, text, note))
    for wire, value in sent.items():
        if wire not in names:
            text = value if isinstance(value, str) else render_json(value)
            rows.append((_snake(wire), text, _EXTRA_NOTE))
    # Columns fit their longest cell: values are never cut, wrapped or rounded.
    width0 = max(len(r[0]) for r in rows)
    width1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{width0}}  {b:<{width1}}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines) + "\n"


# --- output of the family's commands ---------------------------------------------------------


def _struct_names(struct: msgspec.Struct) -> dict[str, str]:
    """Binance's field name -> attribute of a decoded struct (the ``*_raw`` ones left out)."""
    return {
        f.encode_name: f.name
        for f in msgspec.structs.fields(type(struct))
        if not f.encode_name.endswith(".raw")
    }


def _typed_value(struct: msgspec.Struct, attr: str, sent: Any) -> Any:
    value = getattr(struct, attr)
    if isinstance(value, enum.Enum):
        raw = getattr(struct, f"{attr}_raw", None)
        return raw if value.name == "UNKNOWN" and raw is not None else str(value.value)
    if isinstance(value, Decimal):
        return amount_text(value)
    if isinstance(value, (list, msgspec.Struct)):
        return endpoint_document(value, sent)
    return value


def endpoint_document(typed: Any, plain: Any) -> Any:
    """The ``--json`` document of a family command: ``plain`` (the body as plain JSON, its
    numbers Decimals) in Binance's order with snake_case names; known amounts from the
    decoded ``typed`` value as exact strings, enums as Binance's strings, ``null`` for an
    empty amount; unknown fields passed through as sent."""
    if isinstance(typed, list):
        items = plain if isinstance(plain, list) else [plain]  # a bare object: one item
        return [endpoint_document(t, p) for t, p in zip(typed, items, strict=False)]
    if not (isinstance(typed, msgspec.Struct) and isinstance(plain, dict)):
        return plain
    names = _struct_names(typed)
    doc: dict[str, Any] = {}
    for wire, sent in plain.items():
        attr = names.get(wire)
        doc[_snake(wire)] = _snake_keys(sent) if attr is None else _typed_value(typed, attr, sent)
    return doc


def _cell(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return render_json(value)
    if isinstance(value, Decimal):
        return amount_text(value)
    return str(value)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """A columnar table of flat rows; columns in first-seen order, cells never cut."""
    if not rows:
        return ["(none)"]
    header: list[str] = []
    for row in rows:
        header += [key for key in row if key not in header]
    cells = [header] + [[_cell(row.get(key, "")) for key in header] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]


def _flatten(rows: list[Any]) -> list[dict[str, Any]]:
    """One line per nested item when each row carries one list of objects (tiers)."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if not isinstance(row, dict):
            out.append({"value": row})
            continue
        nested = [
            k for k, v in row.items() if isinstance(v, list) and all(isinstance(i, dict) for i in v)
        ]
        if len(nested) != 1 or not row[nested[0]]:
            out.append(row)
            continue
        scalars = {k: v for k, v in row.items() if k != nested[0]}
        out += [{**scalars, **item} for item in row[nested[0]]]
    return out


def endpoint_table(endpoint: Endpoint, doc: Any) -> str:
    """The default output of a family command, from its :func:`endpoint_document`."""
    if isinstance(doc, list):
        return "\n".join(_columns(_flatten(doc))) + "\n"
    assert isinstance(doc, dict)
    scalars = {k: v for k, v in doc.items() if not isinstance(v, list)}
    lists = {k: v for k, v in doc.items() if isinstance(v, list)}
    if not doc and endpoint.response is MarginCallLevel:
        scalars = {"margin_call_level": "(not set)"}
    lines: list[str] = []
    if scalars:
        rows = [("field", "value")] + [(k, _cell(v)) for k, v in scalars.items()]
        width = max(len(r[0]) for r in rows)
        lines += [f"{a:<{width}}  {b}".rstrip() for a, b in rows]
    for key, items in lists.items():
        if lines:
            lines.append("")
        lines.append(f"{key}:")
        lines += _columns(_flatten(items))
    return "\n".join(lines) + "\n"


# --- logging and messages ------------------------------------------------------------------


class _RedactingFormatter(logging.Formatter):
    """Formats a record, then removes signatures and every known secret from the text."""

    def __init__(self, secrets: Callable[[], Sequence[str]]) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
        )
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return _scrub(super().format(record), self._secrets())


class _Secrets:
    """Every secret value this run has seen, to scrub from anything it prints."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def add(self, value: str | None) -> None:
        # Very short values would blank out ordinary text and protect nothing.
        if value and len(value) >= 4 and value not in self.values:
            self.values.append(value)

    def __call__(self) -> Sequence[str]:
        return self.values


def _scrub(text: str, secrets: Sequence[str]) -> str:
    text = redact(text)
    for value in secrets:
        text = text.replace(value, "<redacted>")
    return text


def _setup_logging(verbose: bool, secrets: _Secrets) -> None:
    package = logging.getLogger("binance_pmpro")
    package.propagate = False
    if not verbose:
        # Without -v a failure is one error line: the library's warnings (a failed clock
        # sync before the same network error, say) would otherwise reach Python's
        # last-resort handler and print bare lines of their own.
        package.addHandler(logging.NullHandler())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(secrets))
    # Only our own logger: httpx's logger would print the full URL, signature included.
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)


def _say(stream: TextIO, text: str, secrets: _Secrets) -> None:
    stream.write(_scrub(text, secrets()) + "\n")
    stream.flush()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    """``str(exc)`` with a retried call's attempts summarised: the library lists every
    attempt's failure, which for three identical failures is the same text three times."""
    attempts: tuple[str, ...] = getattr(exc, "attempts", ())
    if len(attempts) < 2:
        return str(exc)
    exc.attempts = ()  # type: ignore[attr-defined]
    try:
        text = str(exc)
    finally:
        exc.attempts = attempts  # type: ignore[attr-defined]
    distinct = list(dict.fromkeys(attempts))
    if len(distinct) == 1:
        return f"{text} (after {len(attempts)} attempts)"
    return f"{text} (after {len(attempts)} attempts: {'; '.join(distinct)})"


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line ``error:`` text for an exception."""
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    text = _describe(exc)
    if isinstance(exc, WriteOutcomeUnknownError):
        return EXIT_OUTCOME_UNKNOWN, f"outcome unknown: {text}"
    if isinstance(exc, EndpointCapError):
        return EXIT_RATE_LIMITED, f"endpoint cap reached: {text}"
    if isinstance(exc, ParameterError):
        return EXIT_USAGE, f"bad parameter: {text}"
    if isinstance(exc, RateLimitedError):
        when = []
        if exc.retry_after is not None:
            when.append(f"retry after {exc.retry_after:g} s")
        if isinstance(exc, IPBannedError) and exc.banned_until is not None:
            moment = datetime.fromtimestamp(exc.banned_until, tz=timezone.utc)
            when.append(f"banned until {moment:%Y-%m-%d %H:%M:%S} UTC")
        label = "IP banned" if isinstance(exc, IPBannedError) else "rate limited"
        return EXIT_RATE_LIMITED, f"{label}: {text}" + (f" ({', '.join(when)})" if when else "")
    if isinstance(exc, WAFBlockedError):
        return EXIT_RATE_LIMITED, f"blocked by Binance's firewall: {text}"
    if isinstance(exc, RateLimitTimeoutError):
        return EXIT_RATE_LIMITED, f"rate limited (local limiter): {text}"
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH, f"authentication failed: {text}"
    if isinstance(exc, ServerError):
        return EXIT_SERVER, f"server error: {text}"
    if isinstance(exc, APIError):
        return EXIT_API_ERROR, text
    if isinstance(exc, TransportError):
        return EXIT_NETWORK, f"network error: {text}"
    if isinstance(exc, DecodeError):
        return EXIT_BAD_RESPONSE, f"bad response: {text}"
    if isinstance(exc, ConfigurationError):
        return EXIT_AUTH, f"credentials: {text}"
    if isinstance(exc, BinanceError):
        return EXIT_API_ERROR, text
    return EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {text}"


# --- account -------------------------------------------------------------------------------


def _read_secret_file(path: str, secrets: _Secrets) -> str:
    if path == "-":
        text = sys.stdin.read()
    else:
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
            mode = file.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise CliError(
                EXIT_AUTH, f"cannot read the API secret file {path!r}: {reason}"
            ) from None
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(
                f"warning: {path} can be read by other users; chmod 600 it",
                file=sys.stderr,
                flush=True,
            )
    secret = text.strip()
    secrets.add(secret)
    if not secret:
        raise CliError(EXIT_AUTH, f"the API secret file {path!r} is empty")
    if any(ch.isspace() for ch in secret):
        raise CliError(
            EXIT_AUTH, f"the API secret file {path!r} holds more than one word: one secret only"
        )
    return secret


def _credentials_configured(args: argparse.Namespace) -> bool:
    given = (args.api_key, args.api_secret_file, args.private_key)
    return any(x is not None for x in given) or any(os.environ.get(v) for v in CREDENTIAL_ENV_VARS)


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.recv_window is not None:
        options["recv_window"] = args.recv_window
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.max_wait is not None:
        options["max_wait"] = args.max_wait
    return options


async def _fetch_account(client: PortfolioMarginProClient) -> tuple[AccountInfo, bytes]:
    async with client:
        # One request: the raw body feeds --json (every field Binance sent) and the typed
        # decode checks it and gives exact amounts.
        body: bytes = await client.account_info_raw()
    return decode_account_info(body), body


async def _account_live(args: argparse.Namespace, secrets: _Secrets) -> tuple[AccountInfo, bytes]:
    client = _make_live_client(args, secrets)
    if client.signing_algorithm is None:
        raise CliError(
            EXIT_AUTH,
            "credentials: an API key but no secret: give --api-secret-file or --private-key "
            "(or set BINANCE_API_SECRET or BINANCE_PRIVATE_KEY_PATH)",
        )
    log.debug("%r, recv window %s ms", client, client.recv_window)
    return await _fetch_account(client)


async def _account_demo(
    args: argparse.Namespace, secrets: _Secrets, notice: str
) -> tuple[AccountInfo, bytes]:
    from .testing import FakeExchange

    fake = FakeExchange()
    secrets.add(fake.demo_api_secret)
    async with fake.serve(host="127.0.0.1", port=0) as server:
        print(notice.format(url=server.base_url), file=sys.stderr, flush=True)
        client = PortfolioMarginProClient(
            api_key=fake.demo_api_key,
            api_secret=fake.demo_api_secret,
            base_url=server.base_url,
            **_client_options(args),
        )
        log.debug("%r, recv window %s ms", client, client.recv_window)
        return await _fetch_account(client)


_DEMO_NOTICE = (
    "notice: --demo: these numbers come from the built-in fake exchange at {url} "
    "(Binance's documentation example), not from Binance"
)
_AUTO_DEMO_NOTICE = (
    "notice: no Binance credentials configured, so this is a DEMO against the built-in fake "
    "exchange at {url}, not Binance; set BINANCE_API_KEY and BINANCE_API_SECRET for your "
    "account, or pass --demo to say you mean it"
)


async def _run_account(args: argparse.Namespace, secrets: _Secrets) -> int:
    if args.demo:
        _refuse_demo_with_credentials(args)
        info, body = await _account_demo(args, secrets, _DEMO_NOTICE)
    elif not _credentials_configured(args):
        # Decision 7: automatic demo only for a person at a terminal who configured nothing.
        if args.base_url is None and sys.stdout.isatty():
            info, body = await _account_demo(args, secrets, _AUTO_DEMO_NOTICE)
        else:
            raise CliError(
                EXIT_AUTH,
                "no Binance credentials: set BINANCE_API_KEY and BINANCE_API_SECRET (or "
                "BINANCE_PRIVATE_KEY_PATH), or pass --api-key with --api-secret-file or "
                f"--private-key; {_DEMO_HINT}",
            )
    else:
        info, body = await _account_live(args, secrets)
    if args.json:
        out = render_json(account_document(info, body)) + "\n"
    else:
        out = render_table(info, body)
    sys.stdout.write(out)
    sys.stdout.flush()
    return EXIT_OK


# --- the family's commands -----------------------------------------------------------------


def _endpoint_values(args: argparse.Namespace, endpoint: Endpoint) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in endpoint.params:
        value = getattr(args, _dest(param.name))
        if param.boolean and value is not None:
            value = _ON_OFF[value]
        values[param.name] = value
    return values


def _plan(endpoint: Endpoint, wire: dict[str, Any], where: str) -> str:
    sent = " ".join(f"{k}={encode_value(v)}" for k, v in wire.items()) or "(no parameters)"
    lines = [
        f"about to send to {where}:",
        f"  {endpoint.method} {endpoint.path}  {sent}",
        f"  {endpoint.title}; {_budget_text(endpoint)}",
    ]
    if endpoint.security.signed:
        lines.append("  signed: recvWindow, timestamp and signature are added when it is sent")
    if endpoint.cap is not None:
        lines.append(f"  Binance allows {endpoint.cap.text} per account")
    return "\n".join(lines)


def _confirm() -> bool:
    sys.stderr.write("proceed? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        sys.stderr.write("\n")  # a piped answer is not echoed: end the prompt's line
    return answer.strip().lower() in ("y", "yes")


def _make_live_client(args: argparse.Namespace, secrets: _Secrets) -> PortfolioMarginProClient:
    api_secret = None
    if args.api_secret_file is not None:
        api_secret = _read_secret_file(args.api_secret_file, secrets)
    for name in ("BINANCE_API_SECRET", PASSWORD_ENV_VAR):
        secrets.add(os.environ.get(name))
    if not (args.api_key or os.environ.get("BINANCE_API_KEY")):
        raise CliError(
            EXIT_AUTH,
            "credentials: a secret or private key but no API key: pass --api-key or set "
            "BINANCE_API_KEY",
        )
    options = _client_options(args)
    if args.base_url is not None:
        options["base_url"] = args.base_url
    if getattr(args, "stream_url", None) is not None:  # stream and watch only
        options["stream_url"] = args.stream_url
    try:
        client = PortfolioMarginProClient(
            api_key=args.api_key,
            api_secret=api_secret,
            private_key=Path(args.private_key) if args.private_key is not None else None,
            **options,
        )
    except ConfigurationError as exc:
        hint = ""
        if "password" in str(exc).lower() and not os.environ.get(PASSWORD_ENV_VAR):
            hint = f"; the password of an encrypted key comes from {PASSWORD_ENV_VAR}"
        raise CliError(EXIT_AUTH, f"credentials: {exc}{hint}") from None
    return client


async def _run_endpoint(args: argparse.Namespace, secrets: _Secrets) -> int:
    endpoint: Endpoint = args.endpoint
    try:
        wire = prepare_params(endpoint, _endpoint_values(args, endpoint))
    except ParameterError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None
    hint = f"to try it without keys, run: binance-pmpro {endpoint.cli} --demo"
    if args.demo:
        _refuse_demo_with_credentials(args)
        demo = True
        notice = _DEMO_NOTICE
    elif not _credentials_configured(args):
        # Decision 7: never an automatic demo for a write, nor when stdout is not a terminal.
        if endpoint.is_write or args.base_url is not None or not sys.stdout.isatty():
            raise CliError(
                EXIT_AUTH,
                "no Binance credentials: set BINANCE_API_KEY and BINANCE_API_SECRET (or "
                "BINANCE_PRIVATE_KEY_PATH), or pass --api-key with --api-secret-file or "
                f"--private-key; {hint}",
            )
        demo = True
        notice = _AUTO_DEMO_NOTICE
    else:
        demo = False
        notice = ""
    if demo:
        from .testing import FakeExchange

        fake = FakeExchange()
        secrets.add(fake.demo_api_secret)
        async with fake.serve(host="127.0.0.1", port=0) as server:
            print(notice.format(url=server.base_url), file=sys.stderr, flush=True)
            client = PortfolioMarginProClient(
                api_key=fake.demo_api_key,
                api_secret=fake.demo_api_secret,
                base_url=server.base_url,
                **_client_options(args),
            )
            where = f"the built-in fake exchange at {server.base_url} (demo, not Binance)"
            body = await _call_endpoint(args, client, endpoint, wire, where, secrets)
    else:
        client = _make_live_client(args, secrets)
        if client.signing_algorithm is None and endpoint.security.signed:
            raise CliError(
                EXIT_AUTH,
                "credentials: an API key but no secret: give --api-secret-file or "
                "--private-key (or set BINANCE_API_SECRET or BINANCE_PRIVATE_KEY_PATH)",
            )
        where = f"Binance at {client.base_url}"
        body = await _call_endpoint(args, client, endpoint, wire, where, secrets)
    if body is None:
        return EXIT_DECLINED
    try:
        typed = decode_response(endpoint, body)
    except DecodeError as exc:
        if endpoint.is_write:
            raise WriteOutcomeUnknownError(endpoint, exc) from exc
        raise
    doc = endpoint_document(typed, msgspec.json.Decoder(float_hook=Decimal).decode(body))
    out = render_json(doc) + "\n" if args.json else endpoint_table(endpoint, doc)
    sys.stdout.write(out)
    sys.stdout.flush()
    return EXIT_OK


async def _call_endpoint(
    args: argparse.Namespace,
    client: PortfolioMarginProClient,
    endpoint: Endpoint,
    wire: dict[str, Any],
    where: str,
    secrets: _Secrets,
) -> bytes | None:
    """The body of one call, or None when a write was not confirmed (nothing sent)."""
    async with client:
        log.debug("%r, recv window %s ms", client, client.recv_window)
        if endpoint.is_write:
            _say(sys.stderr, _plan(endpoint, wire, where), secrets)
            if not args.yes and not _confirm():
                _say(sys.stderr, "not confirmed: nothing was sent", secrets)
                return None
        body: bytes = await client.call_raw(endpoint, wire)
        return body


def _refuse_demo_with_credentials(args: argparse.Namespace) -> None:
    given = [
        flag
        for flag, value in (
            ("--base-url", args.base_url),
            ("--stream-url", getattr(args, "stream_url", None)),
            ("--api-key", args.api_key),
            ("--api-secret-file", args.api_secret_file),
            ("--private-key", args.private_key),
        )
        if value is not None
    ]
    if given:
        raise CliError(
            EXIT_USAGE,
            f"--demo talks to its own fake exchange with its own key: drop {', '.join(given)}",
        )


# --- fake-exchange -------------------------------------------------------------------------


async def _run_fake_exchange(args: argparse.Namespace, secrets: _Secrets) -> int:
    import json
    import signal

    import anyio

    from .testing import FakeExchange

    fake = FakeExchange(stream_period=args.stream_period)
    if not _is_loopback(args.host):
        print(
            f"warning: serving on {args.host}, reachable from other machines; the fake "
            "exchange is for tests only",
            file=sys.stderr,
            flush=True,
        )

    async def serve(wait: Callable[[], Any]) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                server = await stack.enter_async_context(fake.serve(host=args.host, port=args.port))
            except OSError as exc:
                # An address this host does not own, a port in use: the options are at
                # fault, not the program.
                raise _CannotListen(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
            line = {
                "base_url": server.base_url,
                "api_key": fake.demo_api_key,
                "api_secret": fake.demo_api_secret,
                "stream_url": server.stream_url,
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            print(
                f"notice: fake exchange (not Binance) serving at {server.base_url}; "
                "stop with Ctrl-C or SIGTERM",
                file=sys.stderr,
                flush=True,
            )
            await wait()

    try:
        if sys.platform == "win32":  # no signal receiver there: Ctrl-C ends the sleep instead
            with contextlib.suppress(KeyboardInterrupt):
                await serve(anyio.sleep_forever)
            return EXIT_OK

        # The receiver is in place before the first line is printed, so a reader may signal
        # the process as soon as it has read the line.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def until_signal() -> None:
                async for signum in signals:
                    log.debug("received signal %s, shutting down", signum)
                    return

            await serve(until_signal)
    except _CannotListen as exc:
        return _fail(str(exc), EXIT_USAGE, secrets)
    return EXIT_OK


class _CannotListen(Exception):
    """The fake exchange could not bind the address given on the command line."""


# --- entry point ---------------------------------------------------------------------------


def _fail(message: str, code: int, secrets: _Secrets) -> int:
    _say(sys.stderr, f"error: {_one_line(message)}", secrets)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Usage errors exit through ``SystemExit(2)`` from ``argparse``.
    """
    args = build_parser().parse_args(argv)
    secrets = _Secrets()
    _setup_logging(args.verbose, secrets)
    if args.backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            return _fail("--backend trio needs the trio package (pip install trio)", 2, secrets)
    import anyio

    handler: Callable[[argparse.Namespace, _Secrets], Any] = args.handler
    try:
        code: int = anyio.run(handler, args, secrets, backend=args.backend)
    except KeyboardInterrupt:
        _say(sys.stderr, "interrupted", secrets)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        code, message = classify(exc)
        if args.verbose:
            _say(sys.stderr, "".join(traceback.format_exception(exc)).rstrip(), secrets)
        return _fail(message, code, secrets)
    return code


def _silence_stdout() -> None:
    # The reader went away (`binance-pmpro account | head -1`): nothing more can be shown,
    # and Python's own flush at exit must not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run() -> NoReturn:
    """``python -m binance_pmpro``: :func:`main`, then exit with its code."""
    sys.exit(main())
