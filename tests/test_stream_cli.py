"""``binance-pmpro stream`` and the stream side of ``watch``, end to end as subprocesses: the
demo, JSON and text lines, faults seen as lines, credentials and URL rules, Ctrl-C, the
fake exchange's stream URL and --stream-period, and watch choosing the stream or polling
(Decision 18) as FakeExchange's ledger shows.

Every run is bounded by ``--count`` (or a signal) and a subprocess timeout; the served
fakes push an update every 0.05 s."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio.from_thread
import pytest

from _cli import clean_env
from _cli import run_cli as _run_cli
from binance_pmpro import cli
from binance_pmpro._stream_cli import stream_document, stream_text
from binance_pmpro.endpoints import ACCOUNT_INFO
from binance_pmpro.stream_events import decode_stream_event
from binance_pmpro.testing import FakeExchange, FakeServer, StreamFault
from binance_pmpro.testing._stream import LISTEN_KEY_PATH

TIMEOUT = 30.0  # a bound for a hung run, far above the ~1 s a run takes
KEY = "streamTestKey0123456789abcdefABCDEF0123456789abcdefABCDEF0123456"
SECRET = "streamTestSecretZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210zyxwvutsrqpo"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run_cli(*args, env=env, timeout=TIMEOUT)


def creds() -> dict[str, str]:
    return clean_env(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET)


@contextmanager
def served(fake: FakeExchange) -> Iterator[tuple[FakeServer, Any]]:
    fake.add_hmac_key(KEY, SECRET)
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(fake.serve(host="127.0.0.1", port=0)) as server,
    ):
        yield server, portal


def lines_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


# --- the demo ----------------------------------------------------------------------------


def test_stream_demo_json_prints_one_flushed_object_per_event() -> None:
    result = run_cli("stream", "--demo", "--count", "3", "--json")
    assert result.returncode == cli.EXIT_OK, result.stderr
    docs = lines_of(result.stdout)
    assert [d["type"] for d in docs] == ["account_update"] * 3
    assert all(isinstance(d["uni_mmr"], str) for d in docs)
    assert set(docs[0]) >= {"event_time", "uni_mmr", "equity", "maintenance_margin"}
    assert "not Binance" in result.stderr
    assert "every 1 s" in result.stderr


def test_stream_demo_text_lines_show_time_kind_and_amounts() -> None:
    result = run_cli("stream", "--demo", "--count", "2")
    assert result.returncode == cli.EXIT_OK, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line[2] == ":"
        assert line[5] == ":"
        assert "  UPDATE     uniMMR " in line


def test_stream_without_credentials_never_starts_a_demo_exit_3() -> None:
    result = run_cli("stream", "--count", "1")
    assert result.returncode == cli.EXIT_AUTH
    assert result.stdout == ""
    assert "--demo" in result.stderr


@pytest.mark.parametrize(
    "extra",
    [["--base-url", "http://127.0.0.1:9"], ["--stream-url", "ws://127.0.0.1:9/pm-classic"]],
)
def test_stream_demo_with_urls_is_refused_exit_2(extra: list[str]) -> None:
    result = run_cli("stream", "--demo", "--count", "1", *extra)
    assert result.returncode == cli.EXIT_USAGE
    assert extra[0] in result.stderr


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/pm-classic", "ws://example.com/pm-classic", "wss://h/x?q=1"]
)
def test_stream_bad_stream_url_is_a_usage_error(url: str) -> None:
    result = run_cli("stream", "--stream-url", url, "--count", "1", env=creds())
    assert result.returncode == cli.EXIT_USAGE
    assert "stream" in result.stderr


def test_stream_ctrl_c_exits_130_without_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "binance_pmpro", "stream", "--demo", "--json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["type"] == "account_update"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=TIMEOUT)
        stderr = proc.stderr.read() if proc.stderr is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == cli.EXIT_INTERRUPTED
    assert "interrupted" in stderr
    assert "Traceback" not in stderr


# --- live, against a served FakeExchange ---------------------------------------------------


def test_stream_live_prints_events_and_leaves_the_key_alive() -> None:
    fake = FakeExchange(stream_period=0.05)
    with served(fake) as (server, _):
        result = run_cli(
            "stream", "--base-url", server.base_url, "--stream-url", server.stream_url,
            "--count", "3", "--json", env=creds(),
        )  # fmt: skip
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert [d["type"] for d in lines_of(result.stdout)] == ["account_update"] * 3
    log = fake.listen_key_log
    assert [r.action for r in log] == ["created"]  # Decision 25: not closed on exit
    assert log[0].listen_key not in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert fake.stream_connections[0].max_incoming_per_second <= 5


def test_stream_live_close_listen_key_closes_it_on_exit() -> None:
    fake = FakeExchange(stream_period=0.05)
    with served(fake) as (server, _):
        result = run_cli(
            "stream", "--base-url", server.base_url, "--stream-url", server.stream_url,
            "--count", "1", "--close-listen-key", env=creds(),
        )  # fmt: skip
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert [r.action for r in fake.listen_key_log] == ["created", "closed"]


def test_stream_live_faults_show_as_unknown_and_reconnected_lines() -> None:
    fake = FakeExchange(stream_period=0.05)
    with served(fake) as (server, portal):
        # Waiting for the first connection: an unknown event, then a drop.
        portal.call(lambda: fake.inject_stream(StreamFault.UNKNOWN_EVENT))
        portal.call(lambda: fake.inject_stream(StreamFault.DROP))
        result = run_cli(
            "stream", "--base-url", server.base_url, "--stream-url", server.stream_url,
            "--count", "4", "--json", env=creds(),
        )  # fmt: skip
    assert result.returncode == cli.EXIT_OK, result.stderr
    docs = lines_of(result.stdout)
    assert docs[0] == {
        "type": "unknown",
        "event_type": "FAKE_FUTURE_EVENT",
        "raw": {"e": "FAKE_FUTURE_EVENT", "E": docs[0]["raw"]["E"], "x": "1.00000000"},
    }
    assert docs[1]["type"] == "reconnected"
    assert docs[1]["reason"] == "dropped"  # no close frame came, as the fake's record says
    assert fake.stream_connections[0].close_reason == "dropped"
    assert fake.stream_connections[0].close_code is None
    assert docs[1]["snapshot"]["uni_mmr"] == "5167.92171923"
    assert docs[2]["type"] == "account_update"
    assert len(fake.stream_connections) == 2


def test_stream_custom_base_url_without_stream_url_is_a_usage_error() -> None:
    result = run_cli("stream", "--base-url", "http://127.0.0.1:9", "--count", "1", env=creds())
    assert result.returncode == cli.EXIT_USAGE
    assert "--stream-url" in result.stderr


def test_fake_exchange_stream_period_serves_a_stream_other_processes_read() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "binance_pmpro", "fake-exchange", "--stream-period", "0.05"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        result = run_cli(
            "stream", "--base-url", first["base_url"], "--stream-url", first["stream_url"],
            "--count", "3", "--json", env=clean_env(BINANCE_API_KEY=first["api_key"]),
        )  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=TIMEOUT)
    # An API key alone is enough for the stream (USER_STREAM: no signature).
    assert result.returncode == cli.EXIT_OK, result.stderr
    times = [d["event_time"] for d in lines_of(result.stdout)]
    assert len(times) == 3
    assert times == sorted(times)
    assert times[-1] - times[0] < 3000  # 0.05 s apart, not Binance's 5 s


# --- watch: the stream or polling ----------------------------------------------------------


def account_calls(fake: FakeExchange) -> int:
    return sum(r.path == ACCOUNT_INFO.path for r in fake.requests)


def listen_key_calls(fake: FakeExchange) -> int:
    return sum(r.path == LISTEN_KEY_PATH for r in fake.requests)


def test_watch_with_stream_url_takes_snapshots_from_the_stream() -> None:
    fake = FakeExchange(stream_period=0.05)
    with served(fake) as (server, _):
        result = run_cli(
            "watch", "--base-url", server.base_url, "--stream-url", server.stream_url,
            "--every", "0.05", "--count", "8", "--json", env=creds(),
        )  # fmt: skip
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert sum(d["type"] == "snapshot" for d in lines_of(result.stdout)) == 8
    assert len(fake.stream_connections) == 1
    assert fake.stream_connections[0].events_sent["PM_PRO_ACCOUNT_UPDATE"] >= 7
    assert account_calls(fake) <= 2  # the first snapshot (and at most one fallback poll)


def test_watch_source_poll_never_opens_the_stream() -> None:
    fake = FakeExchange(stream_period=0.05)
    with served(fake) as (server, _):
        result = run_cli(
            "watch", "--base-url", server.base_url, "--stream-url", server.stream_url,
            "--source", "poll", "--every", "0.05", "--count", "3", "--json", env=creds(),
        )  # fmt: skip
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert fake.stream_connections == []
    assert listen_key_calls(fake) == 0
    assert account_calls(fake) == 3


def test_watch_custom_base_url_alone_polls() -> None:
    fake = FakeExchange(stream_period=0.05)
    with served(fake) as (server, _):
        result = run_cli(
            "watch", "--base-url", server.base_url, "--every", "0.05", "--count", "3",
            "--json", env=creds(),
        )  # fmt: skip
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert listen_key_calls(fake) == 0
    assert account_calls(fake) == 3


def test_watch_source_stream_without_stream_url_is_a_usage_error() -> None:
    result = run_cli(
        "watch", "--base-url", "http://127.0.0.1:9", "--source", "stream", "--count", "1",
        env=creds(),
    )  # fmt: skip
    assert result.returncode == cli.EXIT_USAGE
    assert "--stream-url" in result.stderr


# --- rendering, in-process -------------------------------------------------------------------


def test_stream_document_and_text_of_documented_risk_event_are_exact() -> None:
    frame = (
        '{"e":"riskLevelChange","E":1587727187525,"u":"1.99999999","s":"MARGIN_CALL",'
        '"eq":"30.23416728","ae":"30.23416728","m":"15.11708371"}'
    )
    event = decode_stream_event(frame)
    assert stream_document(event) == {
        "type": "risk_level_change",
        "event_time": 1587727187525,
        "uni_mmr": "1.99999999",
        "risk_level": "MARGIN_CALL",
        "equity": "30.23416728",
        "actual_equity": "30.23416728",
        "maintenance_margin": "15.11708371",
    }
    assert stream_text(event) == (
        "11:19:47  RISK       MARGIN_CALL  uniMMR 1.99999999  equity 30.23416728  "
        "actual equity 30.23416728  maint. margin 15.11708371"
    )


def test_stream_document_of_unknown_event_redacts_a_listen_key() -> None:
    event = decode_stream_event('{"e":"somethingNew","E":1,"listenKey":"secretKey123"}')
    doc = stream_document(event)
    assert doc["raw"]["listenKey"] == "<redacted>"
    assert "secretKey123" not in json.dumps(doc) + stream_text(event)
