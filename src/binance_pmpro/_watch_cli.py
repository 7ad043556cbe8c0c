"""``binance-pmpro watch``: the risk monitor on the command line.

Registered by :func:`binance_pmpro.cli.build_parser`; kept in its own module so that the
account and endpoint commands do not load the monitor.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from decimal import Decimal
from typing import Any, TextIO

import anyio

from ._stream_cli import DEMO_STREAM_PERIOD, add_stream_url_option
from .cli import (
    EXIT_AUTH,
    EXIT_CODES_HELP,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    _add_common,
    _add_connection_options,
    _client_options,
    _count,
    _credentials_configured,
    _decimal_arg,
    _make_live_client,
    _port,
    _refuse_demo_with_credentials,
    _seconds,
    _Secrets,
    render_json,
)
from .client import PortfolioMarginProClient
from .monitor import (
    AccountSnapshot,
    Breach,
    Recovery,
    RiskMonitor,
    Stale,
    StatusChange,
    WatchItem,
    default_rules,
    event_document,
    tier_for,
)

__all__ = ["EXIT_ALERT", "add_watch_command"]

EXIT_ALERT = 10
"""``watch --exit-on-alert``: a breach, or a status change away from ``NORMAL``."""

_DESCRIPTION = """\
Watch the Portfolio Margin Pro account's margin risk and report what changes.

Source (--source): "stream" takes the numbers Binance's user data stream pushes every 5
seconds (and at once on a risk level change), with a REST snapshot at the start and every 5
minutes; "poll" polls GET /sapi/v1/portfolio/account every --every seconds (at high
priority in the rate limiter, at most one call at a time, a steady cadence that skips ticks
a slow answer overran); "auto" (the default) is "stream" when a stream URL is known
(Binance's own hosts, or --stream-url), polling while the stream is down, and "poll"
otherwise: with a custom --base-url alone it polls.

Rules: by default a breach when uniMMR goes below each tier of Binance's risk table (1.50,
1.20, 1.05 and 1.00; the last row is unconfirmed); --alert-below UNIMMR adds a level (it
replaces the tier rule at the same level). A breach fires on the first snapshot strictly
below the level, the first snapshot included; recovery needs uniMMR back at or above the
level plus 2% of it. Every change of accountStatus is a status change.

Output: in a terminal, a status line updated in place with events printed above it; with
--json, or when stdout is not a terminal, one JSON object per line, flushed as written,
with "type" "snapshot", "breach", "recovery", "status_change" or "stale" and the snapshot's
fields in snake_case (amounts as exact strings).

Errors: bad credentials, an IP ban or an account that is not Portfolio Margin end the
watch with their exit code; other failures are retried at the next tick and reported as
"stale" once no fresh data has come for --stale-after seconds.

--demo watches the built-in fake exchange on 127.0.0.1 (not Binance) while its uniMMR
slides from 3.0 to 1.15 and back, so the alerts can be seen; its stream pushes an update
every second (Binance: 5), or every --every seconds when that is shorter. There is no
automatic demo: without credentials, watch fails with exit code 3.
"""

_DEMO_NOTICE = (
    "notice: --demo: watching the built-in fake exchange at {url}, not Binance; its uniMMR "
    "slides from 3.0 to 1.15 and back"
)


_EPILOG = EXIT_CODES_HELP.replace(
    f"  {EXIT_INTERNAL:<4}",
    f"  {EXIT_ALERT:<4} --exit-on-alert: a breach, or a status change away from NORMAL\n"
    f"  {EXIT_INTERNAL:<4}",
)


def _every(text: str) -> float:
    return _seconds(text, allow_zero=False)


def _level(text: str) -> Decimal:
    value = _decimal_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive uniMMR level, e.g. 1.3")
    return value


def add_watch_command(commands: Any) -> None:
    """Add the ``watch`` subcommand to the ``binance-pmpro`` subparsers."""
    watch = commands.add_parser(
        "watch",
        help="watch the account's margin risk (uniMMR, status) and alert",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    watch.add_argument(
        "--every",
        type=_every,
        default=5.0,
        metavar="SECONDS",
        help="seconds between polls, fractions allowed (default: 5)",
    )
    watch.add_argument(
        "--alert-below",
        type=_level,
        metavar="UNIMMR",
        help="also alert when uniMMR goes below this level (replaces the tier rule at it)",
    )
    watch.add_argument(
        "--stale-after",
        type=_every,
        metavar="SECONDS",
        help="report stale data after this long without a fresh snapshot "
        "(default: 3 polls, at least 10 s)",
    )
    watch.add_argument(
        "--exit-on-alert",
        action="store_true",
        help=f"exit with code {EXIT_ALERT} at the first breach or status change away from NORMAL",
    )
    watch.add_argument(
        "--count", type=_count, metavar="N", help="stop after N snapshots (default: never)"
    )
    watch.add_argument(
        "--duration",
        type=_every,
        metavar="SECONDS",
        help="stop after this many seconds (default: never)",
    )
    watch.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT (needs the [metrics] extra)",
    )
    watch.add_argument(
        "--source",
        choices=("auto", "stream", "poll"),
        default="auto",
        help="where snapshots come from: the user data stream, polling, or auto (the stream "
        "when a stream URL is known, polling while it is down; default)",
    )
    add_stream_url_option(watch)
    _add_connection_options(watch)
    for action in watch._actions:
        if action.dest == "json":
            action.help = "one JSON object per line (the default when stdout is not a terminal)"
    _add_common(watch)
    watch.set_defaults(handler=_run_watch)


def _is_alert(item: WatchItem) -> bool:
    if isinstance(item, Breach):
        return True
    return isinstance(item, StatusChange) and item.current.value != "NORMAL"


class _Terminal:
    """A status line updated in place, with events printed above it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = False

    def _line(self, text: str, *, keep: bool) -> None:
        self.out.write("\r\x1b[K" + text + ("\n" if keep else ""))
        self.out.flush()
        self.live = not keep

    def show(self, item: WatchItem) -> None:
        if isinstance(item, AccountSnapshot):
            self._line(_status_text(item), keep=False)
            return
        self._line(_event_text(item), keep=True)

    def close(self) -> None:
        if self.live:
            self.out.write("\n")
            self.out.flush()
            self.live = False


def _amount(value: Decimal | None) -> str:
    return "-" if value is None else format(value, "f")


def _status_text(snapshot: AccountSnapshot) -> str:
    info = snapshot.info
    tier = tier_for(info.uni_mmr) if info.uni_mmr is not None else None
    when = snapshot.time.strftime("%H:%M:%S")
    tier_text = f" ({tier.name})" if tier is not None else ""
    return (
        f"{when}  uniMMR {_amount(info.uni_mmr)}{tier_text}  status {info.account_status}  "
        f"equity {_amount(info.account_equity)} USD  maint. margin "
        f"{_amount(info.account_maint_margin)} USD"
    )


def _event_text(item: WatchItem) -> str:
    if isinstance(item, Stale):
        return (
            f"STALE     no fresh data for {item.age:.1f} s ({item.failures} failed polls; "
            f"last: {type(item.error).__name__}: {item.error})"
        )
    snapshot = item.snapshot if not isinstance(item, AccountSnapshot) else item
    when = snapshot.time.strftime("%H:%M:%S")
    if isinstance(item, StatusChange):
        before = "-" if item.previous is None else str(item.previous)
        return f"{when}  STATUS    accountStatus {before} -> {item.current}"
    assert isinstance(item, (Breach, Recovery))
    label = "BREACH   " if isinstance(item, Breach) else "RECOVERY "
    level = getattr(item.rule, "level", None)
    tier = getattr(item.rule, "tier", None)
    what = f"uniMMR {_amount(item.value)}"
    if level is not None:
        what += (" below " if isinstance(item, Breach) else " back above ") + (
            str(level)
            if isinstance(item, Breach)
            else str(getattr(item.rule, "recovery_level", level))
        )
    else:
        what = f"{item.rule.name}: {item.value}"
    if tier is not None:
        what += f" ({tier.name}: {tier.action})" if isinstance(item, Breach) else ""
    return f"{when}  {label} {what}"


async def _run_watch(args: argparse.Namespace, secrets: _Secrets) -> int:
    if args.demo:
        _refuse_demo_with_credentials(args)
        from .testing import FakeExchange
        from .testing._scenario import demo_scenario

        # Lively: an update a second (Binance: 5), faster still when --every asks for it.
        period = min(DEMO_STREAM_PERIOD, args.every)
        fake = FakeExchange(stream_period=period)
        secrets.add(fake.demo_api_secret)
        async with fake.serve(host="127.0.0.1", port=0) as server:
            demo_scenario(args.every).install(fake)
            notice = _DEMO_NOTICE.format(url=server.base_url)
            if args.source != "poll":
                notice += f"; its stream pushes an update every {period:g} s"
            print(notice, file=sys.stderr, flush=True)
            client = PortfolioMarginProClient(
                api_key=fake.demo_api_key,
                api_secret=fake.demo_api_secret,
                base_url=server.base_url,
                stream_url=server.stream_url,
                **_client_options(args),
            )
            return await _watch(args, client, stream_period=period)
    if not _credentials_configured(args):
        # Decision 7: never an automatic demo for watch.
        raise CliError(
            EXIT_AUTH,
            "no Binance credentials: set BINANCE_API_KEY and BINANCE_API_SECRET (or "
            "BINANCE_PRIVATE_KEY_PATH), or pass --api-key with --api-secret-file or "
            "--private-key; to try it without keys, run: binance-pmpro watch --demo",
        )
    client = _make_live_client(args, secrets)
    if client.signing_algorithm is None:
        raise CliError(
            EXIT_AUTH,
            "credentials: an API key but no secret: give --api-secret-file or --private-key "
            "(or set BINANCE_API_SECRET or BINANCE_PRIVATE_KEY_PATH)",
        )
    if args.source == "stream" and client.stream_url is None:
        raise CliError(
            EXIT_USAGE,
            "--source stream needs a stream URL with a custom --base-url: give --stream-url too",
        )
    return await _watch(args, client)


async def _watch(
    args: argparse.Namespace, client: PortfolioMarginProClient, *, stream_period: float = 5.0
) -> int:
    monitor = RiskMonitor(default_rules(args.alert_below))
    as_json = args.json or not sys.stdout.isatty()
    terminal = None if as_json else _Terminal(sys.stdout)
    snapshots = 0
    code = EXIT_OK
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(client)
        if args.metrics_port is not None:
            try:
                from .metrics import ClientMetrics
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise CliError(
                    EXIT_USAGE,
                    f"--metrics-port needs the [metrics] extra "
                    f"(pip install 'binance-pmpro[metrics]'): {exc}",
                ) from None
            metrics = ClientMetrics()
            metrics.track(client)
            port = metrics.serve(args.metrics_port)
            stack.callback(metrics.shutdown)
            print(
                f"notice: Prometheus metrics at http://127.0.0.1:{port}/metrics",
                file=sys.stderr,
                flush=True,
            )
        else:
            metrics = None
        scope = anyio.move_on_after(args.duration) if args.duration else anyio.CancelScope()
        try:
            with scope:
                watch = client.watch_account(
                    every=args.every,
                    stale_after=args.stale_after,
                    source=args.source,
                    stream_period=stream_period,
                )
                async with contextlib.aclosing(watch) as polls:
                    async for poll in polls:
                        # A snapshot, then the events it caused, before the next poll.
                        items: list[WatchItem] = [poll]
                        if isinstance(poll, AccountSnapshot):
                            snapshots += 1
                            items += monitor.observe(poll)
                        for item in items:
                            if metrics is not None:
                                metrics.observe(item)
                            if terminal is None:
                                sys.stdout.write(render_json(event_document(item)) + "\n")
                                sys.stdout.flush()
                            else:
                                terminal.show(item)
                            if args.exit_on_alert and _is_alert(item):
                                code = EXIT_ALERT
                        if code == EXIT_ALERT or (
                            args.count is not None and snapshots >= args.count
                        ):
                            break
        finally:
            if terminal is not None:
                terminal.close()
    return code
