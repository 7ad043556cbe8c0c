"""``binance-pmpro stream``: the user data stream's events on the command line.

Registered by :func:`binance_pmpro.cli.build_parser`; kept in its own module so that the
other commands do not load the stream. ``--stream-url`` (shared with ``watch``) lives here
too.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

import anyio
import msgspec

from .cli import (
    EXIT_AUTH,
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    _add_common,
    _add_connection_options,
    _client_options,
    _count,
    _credentials_configured,
    _make_live_client,
    _refuse_demo_with_credentials,
    _seconds,
    _Secrets,
    render_json,
)
from .client import PortfolioMarginProClient, _check_stream_url
from .models import AccountInfo
from .stream_events import (
    AccountUpdate,
    ListenKeyExpired,
    RiskLevel,
    RiskLevelChange,
    StreamEvent,
    StreamReconnected,
    UnknownEvent,
)

__all__ = ["DEMO_STREAM_PERIOD", "add_stream_command", "add_stream_url_option", "stream_document"]

DEMO_STREAM_PERIOD = 1.0
"""Seconds between account updates of the ``--demo`` fake exchange (Binance: 5): short, so
the demo is lively."""

_DESCRIPTION = f"""\
Print the Portfolio Margin Pro user data stream's events as they arrive: an account update
(uniMMR, equity, maintenance margin, ...) every 5 seconds, a risk level change the moment
the account enters MARGIN_CALL, REDUCE_ONLY or FORCE_LIQUIDATION, and the SDK's own notes
(a reconnect, after which events may have been missed; an expired listen key, renewed by
itself; an event type this release does not know).

The listen key is created on start (POST /fapi/v1/listenKey on the futures host, weight 1,
API key only: no signature), kept alive every 30 minutes, and left to expire on exit, since
the account's one key also feeds its USDⓈ-M streams; --close-listen-key closes it instead.
The stream URL is Binance's own (wss://fstream.binance.com/pm-classic) with Binance's own
--base-url; with another --base-url give --stream-url too.

Output: one text line per event; --json prints one JSON object per line, flushed as
written, with a "type" ("account_update", "risk_level_change", "listen_key_expired",
"reconnected", "unknown") and the event's fields in snake_case (amounts as exact strings,
enums as Binance's strings, event_time in ms). The listen key is never printed.

--demo streams from the built-in fake exchange on 127.0.0.1 (not Binance): it pushes an
update every {DEMO_STREAM_PERIOD:g} s (Binance: 5) while its uniMMR slides from 3.0 to
1.15 and back. There is no automatic demo: without credentials, stream fails with exit
code 3.
"""


def _stream_url_arg(text: str) -> str:
    try:
        _check_stream_url(text)
    except Exception as exc:  # ConfigurationError: a usage error (2), not a credential one
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_stream_url_option(parser: argparse.ArgumentParser) -> None:
    """``--stream-url URL`` (``stream`` and ``watch``)."""
    parser.add_argument(
        "--stream-url",
        type=_stream_url_arg,
        metavar="URL",
        help="the user data stream's WebSocket root, <URL>/ws/<listenKey> (default: "
        "wss://fstream.binance.com/pm-classic with Binance's own --base-url, none with "
        "another); ws:// only for loopback hosts",
    )


def add_stream_command(commands: Any) -> None:
    """Add the ``stream`` subcommand to the ``binance-pmpro`` subparsers."""
    stream = commands.add_parser(
        "stream",
        help="print the user data stream's events (account updates, risk level changes)",
        description=_DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    stream.add_argument(
        "--count", type=_count, metavar="N", help="stop after N events (default: never)"
    )
    stream.add_argument(
        "--duration",
        type=lambda text: _seconds(text, allow_zero=False),
        metavar="SECONDS",
        help="stop after this many seconds (default: never)",
    )
    stream.add_argument(
        "--close-listen-key",
        action="store_true",
        help="close the listen key on exit (it also cuts the account's USDⓈ-M streams)",
    )
    add_stream_url_option(stream)
    _add_connection_options(stream)
    for action in stream._actions:
        if action.dest == "json":
            action.help = "one JSON object per line instead of text lines"
    _add_common(stream)
    stream.set_defaults(handler=_run_stream)


# --- rendering -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Enum):
        return str(value.value)
    return value


def _account_fields(info: AccountInfo) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for field in msgspec.structs.fields(info):
        if field.name.endswith("_raw"):
            continue
        value = getattr(info, field.name)
        raw = getattr(info, field.name + "_raw", None)
        doc[field.name] = raw if raw is not None else _plain(value)
    return doc


def _redact_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<redacted>" if k == "listenKey" else _redact_keys(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_keys(v) for v in value]
    return value


def stream_document(event: StreamEvent) -> dict[str, Any]:
    """One ``stream --json`` line: ``type`` first, then the event's fields in snake_case."""
    doc: dict[str, Any] = {"type": event.type}
    if isinstance(event, UnknownEvent):
        doc["event_type"] = event.event_type
        try:
            doc["raw"] = _redact_keys(json.loads(event.raw))
        except ValueError:
            doc["raw"] = None
        return doc
    if isinstance(event, StreamReconnected):
        doc["reason"] = event.reason
        doc["attempt"] = event.attempt
        doc["snapshot"] = _account_fields(event.snapshot) if event.snapshot else None
        return doc
    for field in msgspec.structs.fields(event):
        if field.name.endswith("_raw"):
            continue
        doc[field.name] = _plain(getattr(event, field.name))
    if isinstance(event, RiskLevelChange) and event.risk_level is RiskLevel.UNKNOWN:
        doc["risk_level"] = event.risk_level_raw
    return doc


def _amount(value: Decimal | None) -> str:
    return "-" if value is None else format(value, "f")


def _clock(event_time: int | None) -> str:
    when = (
        datetime.fromtimestamp(event_time / 1000, tz=timezone.utc)
        if event_time is not None
        else datetime.now(timezone.utc)
    )
    return when.strftime("%H:%M:%S")


def stream_text(event: StreamEvent) -> str:
    """One text line for ``stream`` (times in UTC; amounts in full, USD)."""
    if isinstance(event, AccountUpdate):
        return (
            f"{_clock(event.event_time)}  UPDATE     uniMMR {_amount(event.uni_mmr)}  "
            f"equity {_amount(event.equity)}  actual equity {_amount(event.actual_equity)}  "
            f"maint. margin {_amount(event.maintenance_margin)}  "
            f"initial margin {_amount(event.initial_margin)}  "
            f"available {_amount(event.available_balance)}  "
            f"max withdraw {_amount(event.virtual_max_withdraw)}"
        )
    if isinstance(event, RiskLevelChange):
        level = event.risk_level_raw or str(event.risk_level.value)
        return (
            f"{_clock(event.event_time)}  RISK       {level}  uniMMR {_amount(event.uni_mmr)}  "
            f"equity {_amount(event.equity)}  actual equity {_amount(event.actual_equity)}  "
            f"maint. margin {_amount(event.maintenance_margin)}"
        )
    if isinstance(event, ListenKeyExpired):
        return f"{_clock(event.event_time)}  KEY        the listen key expired; a new one is made"
    if isinstance(event, StreamReconnected):
        text = (
            f"{_clock(None)}  RECONNECT  {event.reason} (attempt {event.attempt}); events may "
            "have been missed"
        )
        if event.snapshot is not None:
            info = event.snapshot
            text += (
                f"; REST snapshot: uniMMR {_amount(info.uni_mmr)}  status "
                f"{info.account_status_raw or info.account_status.value}"
            )
        return text
    return f"{_clock(None)}  UNKNOWN    event type {event.event_type!r} (passed through)"


# --- running -----------------------------------------------------------------------------


async def _run_stream(args: argparse.Namespace, secrets: _Secrets) -> int:
    if args.demo:
        _refuse_demo_with_credentials(args)
        from .testing import FakeExchange
        from .testing._scenario import demo_scenario

        fake = FakeExchange(stream_period=DEMO_STREAM_PERIOD)
        secrets.add(fake.demo_api_secret)
        async with fake.serve(host="127.0.0.1", port=0) as server:
            demo_scenario(5.0).install(fake)
            print(
                f"notice: --demo: streaming from the built-in fake exchange at "
                f"{server.stream_url}, not Binance; an update every {DEMO_STREAM_PERIOD:g} s "
                "while its uniMMR slides from 3.0 to 1.15 and back",
                file=sys.stderr,
                flush=True,
            )
            client = PortfolioMarginProClient(
                api_key=fake.demo_api_key,
                api_secret=fake.demo_api_secret,
                base_url=server.base_url,
                stream_url=server.stream_url,
                **_client_options(args),
            )
            return await _stream(args, client)
    if not _credentials_configured(args):
        # Decision 7: no automatic demo for a command that runs until stopped.
        raise CliError(
            EXIT_AUTH,
            "no Binance credentials: set BINANCE_API_KEY (the stream needs the API key only; "
            "a secret lets it fetch a snapshot after a reconnect), or pass --api-key; to try "
            "it without keys, run: binance-pmpro stream --demo",
        )
    client = _make_live_client(args, secrets)
    if client.stream_url is None:
        raise CliError(
            EXIT_USAGE,
            "no stream URL for a custom --base-url: give --stream-url too",
        )
    return await _stream(args, client)


async def _stream(args: argparse.Namespace, client: PortfolioMarginProClient) -> int:
    events = 0
    async with client:
        scope = anyio.move_on_after(args.duration) if args.duration else anyio.CancelScope()
        with scope:
            stream = client.user_stream(
                close_listen_key=args.close_listen_key,
                snapshot_after_reconnect=client.signing_algorithm is not None,
            )
            async with stream:
                async for event in stream:
                    line = render_json(stream_document(event)) if args.json else stream_text(event)
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                    events += 1
                    if args.count is not None and events >= args.count:
                        break
    return EXIT_OK
