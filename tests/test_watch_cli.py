"""``binance-pmpro watch`` end to end, as subprocesses: the scripted demo, JSON lines, alerts
and their exit code, no automatic demo, a live watch against a served FakeExchange, the
terminal view, and the metrics endpoint scraped over loopback.

Every run is bounded by ``--count`` or ``--duration`` and a subprocess timeout, with a
short ``--every``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _cli import clean_env
from _cli import run_cli as _run_cli
from binance_pmpro import cli, decode_account_info
from binance_pmpro._watch_cli import EXIT_ALERT, _Terminal
from binance_pmpro.monitor import AccountSnapshot, RiskMonitor
from binance_pmpro.testing import DEFAULT_ACCOUNT, FakeExchange

TIMEOUT = 30.0  # a bound for a hung run, far above the ~1-2 s a run takes
EVERY = "0.04"
KEY = "watchTestKey0123456789abcdefABCDEF0123456789abcdefABCDEF012345678"
SECRET = "watchTestSecretZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210zyxwvutsrqpon"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run_cli(*args, env=env, timeout=TIMEOUT)


def lines_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def events_of(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (d["type"], d.get("rule") or d.get("status", "")) for d in docs if d["type"] != "snapshot"
    ]


# --- the demo -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run() -> subprocess.CompletedProcess[str]:
    # 26 polls cover the whole slide (22 periods) and a few more.
    return run_cli("watch", "--demo", "--every", EVERY, "--count", "26", "--json")


def test_watch_demo_json_lines_show_the_slide_as_events(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    assert demo_run.returncode == cli.EXIT_OK, demo_run.stderr
    docs = lines_of(demo_run.stdout)
    assert sum(d["type"] == "snapshot" for d in docs) == 26
    # Each crossing once: down through 1.50 and 1.20, the margin call, and back up. (Real
    # time: a late poll may see two crossings at once, so only each rule's order is fixed.)
    events = events_of(docs)
    assert sorted(events) == sorted(
        [
            ("breach", "tier_reminder"),
            ("status_change", "MARGIN_CALL"),
            ("breach", "tier_reduce_only"),
            ("recovery", "tier_reduce_only"),
            ("status_change", "NORMAL"),
            ("recovery", "tier_reminder"),
        ]
    )
    assert events.index(("breach", "tier_reminder")) < events.index(("breach", "tier_reduce_only"))
    assert events.index(("breach", "tier_reduce_only")) < events.index(
        ("recovery", "tier_reduce_only")
    )
    assert events.index(("recovery", "tier_reduce_only")) < events.index(
        ("recovery", "tier_reminder")
    )
    assert events.index(("status_change", "MARGIN_CALL")) < events.index(
        ("status_change", "NORMAL")
    )
    assert "fake exchange" in demo_run.stderr
    assert "not Binance" in demo_run.stderr


def test_watch_demo_json_lines_carry_snapshot_fields_exact(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    docs = lines_of(demo_run.stdout)
    for doc in docs:
        assert {"type", "time", "sequence", "uni_mmr", "account_status"} <= doc.keys()
        assert isinstance(doc["uni_mmr"], str)
    breach = next(d for d in docs if d["type"] == "breach")
    assert (breach["level"], breach["tier"]) == ("1.50", "reminder")
    assert breach["value"] == breach["uni_mmr"]
    assert float(breach["uni_mmr"]) < 1.5
    assert docs[0]["total_available_balance"] == "122559.90199491"


def test_watch_demo_not_a_terminal_prints_json_without_the_flag() -> None:
    result = run_cli("watch", "--demo", "--every", EVERY, "--count", "2")
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert [d["type"] for d in lines_of(result.stdout)] == ["snapshot", "snapshot"]


def test_watch_demo_exit_on_alert_exits_with_the_alert_code_after_the_breach() -> None:
    result = run_cli(
        "watch", "--demo", "--every", EVERY, "--count", "40", "--exit-on-alert", "--json"
    )
    assert result.returncode == EXIT_ALERT == 10, result.stderr
    docs = lines_of(result.stdout)
    assert docs[-1]["type"] == "breach"
    assert docs[-1]["rule"] == "tier_reminder"
    assert all(d["type"] == "snapshot" for d in docs[:-1])


def test_watch_alert_below_at_a_tier_level_gives_one_breach_per_crossing() -> None:
    result = run_cli(
        "watch", "--demo", "--every", EVERY, "--count", "18", "--alert-below", "1.2", "--json"
    )
    assert result.returncode == cli.EXIT_OK, result.stderr
    breaches = [e for e in events_of(lines_of(result.stdout)) if e[0] == "breach"]
    assert breaches == [("breach", "tier_reminder"), ("breach", "alert_below_1.2")]


def test_watch_duration_bounds_the_run() -> None:
    result = run_cli("watch", "--demo", "--every", "0.1", "--duration", "0.5", "--json")
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert 1 <= len(lines_of(result.stdout)) <= 10


# --- refusals -----------------------------------------------------------------------------------


def test_watch_without_credentials_never_starts_a_demo_exit_3() -> None:
    result = run_cli("watch", "--every", EVERY, "--count", "1")
    assert result.returncode == cli.EXIT_AUTH
    assert result.stdout == ""
    assert "binance-pmpro watch --demo" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--every", "0"],
        ["--every", "-1"],
        ["--every", "x"],
        ["--alert-below", "0"],
        ["--count", "0"],
    ],
)
def test_watch_bad_option_values_are_usage_errors(args: list[str]) -> None:
    result = run_cli("watch", "--demo", *args)
    assert result.returncode == cli.EXIT_USAGE
    assert result.stdout == ""


def test_watch_demo_with_a_base_url_is_refused() -> None:
    result = run_cli("watch", "--demo", "--base-url", "http://127.0.0.1:9", "--count", "1")
    assert result.returncode == cli.EXIT_USAGE
    assert "--base-url" in result.stderr


# --- live, against a served FakeExchange ----------------------------------------------------------


@contextmanager
def served(fake: FakeExchange) -> Iterator[str]:
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(fake.serve(host="127.0.0.1", port=0)) as server,
    ):
        yield server.base_url


def test_watch_live_reads_the_account_with_the_given_credentials(tmp_path: Path) -> None:
    fake = FakeExchange()
    fake.add_hmac_key(KEY, SECRET)
    fake.set_account(uni_mmr="1.10000000", account_status="REDUCE_ONLY")
    with served(fake) as base_url:
        result = run_cli(
            "watch", "--base-url", base_url, "--every", EVERY, "--count", "2", "--json",
            env=clean_env(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET),
        )  # fmt: skip
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert events_of(lines_of(result.stdout)) == [
        ("status_change", "REDUCE_ONLY"),
        ("breach", "tier_reminder"),
        ("breach", "tier_reduce_only"),
    ]
    assert SECRET not in result.stdout + result.stderr


def test_watch_live_bad_key_is_fatal_exit_3() -> None:
    fake = FakeExchange()
    with served(fake) as base_url:
        result = run_cli(
            "watch", "--base-url", base_url, "--every", EVERY, "--count", "5",
            env=clean_env(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET),
        )  # fmt: skip
    assert result.returncode == cli.EXIT_AUTH
    assert result.stdout == ""
    assert "authentication failed" in result.stderr


# --- the terminal view ----------------------------------------------------------------------------


def _snap(uni_mmr: str, status: str = "NORMAL", sequence: int = 1) -> AccountSnapshot:
    fields = dict(DEFAULT_ACCOUNT, uniMMR=uni_mmr, accountStatus=status)
    info = decode_account_info(json.dumps(fields).encode())
    when = datetime(2026, 1, 1, 12, 0, sequence, tzinfo=timezone.utc)
    return AccountSnapshot(info, float(sequence), float(sequence), when, sequence)


def test_terminal_view_updates_the_status_line_in_place_and_keeps_events() -> None:
    out = io.StringIO()
    view = _Terminal(out)
    monitor = RiskMonitor()
    for i, value in enumerate(["1.6", "1.4", "1.45"], start=1):
        snapshot = _snap(value, sequence=i)
        view.show(snapshot)
        for event in monitor.observe(snapshot):
            view.show(event)
    view.close()
    text = out.getvalue()
    # Status lines are redrawn (carriage return + erase), event lines end with a newline.
    assert text.count("\r\x1b[K12:00:0") == 4
    kept = [line.split("\r\x1b[K")[-1] for line in text.split("\n") if line]
    assert kept[0].startswith("12:00:02  BREACH")
    assert "uniMMR 1.4 below 1.50 (reminder:" in kept[0]
    assert kept[-1].startswith("12:00:03  uniMMR 1.45 (reminder)  status NORMAL")


# --- metrics --------------------------------------------------------------------------------------


def test_watch_metrics_port_serves_prometheus_text_that_parses() -> None:
    # Polling, so that the request metrics have account calls to count.
    proc = subprocess.Popen(
        [sys.executable, "-m", "binance_pmpro", "watch", "--demo", "--every", "0.05",
         "--duration", "20", "--json", "--metrics-port", "0", "--source", "poll"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=clean_env(),
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert proc.stdout is not None
        url = None
        for _ in range(5):  # the demo notice, then the metrics notice
            line = proc.stderr.readline()
            if "metrics at " in line:
                url = line.rsplit(" ", 1)[-1].strip()
                break
        assert url is not None
        assert url.startswith("http://127.0.0.1:")
        for _ in range(3):
            proc.stdout.readline()  # a few snapshots went by
        text = httpx.get(url, timeout=5.0).text
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    uni = families["binance_pmpro_account_uni_mmr"].samples[0].value
    assert 1.0 < uni <= 3.0
    requests = families["binance_pmpro_requests"].samples
    assert any(
        s.labels == {"endpoint": "account_info", "status": "200"} and s.value >= 3 for s in requests
    )
    used = families["binance_pmpro_rate_limit_used_weight"].samples
    assert any(s.labels["endpoint"] == "/sapi/v1/portfolio/account" and s.value >= 5 for s in used)
    status = {s.labels["status"]: s.value for s in families["binance_pmpro_account_status"].samples}
    assert sum(status.values()) == 1
