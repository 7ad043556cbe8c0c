"""The command line end to end: ``python -m binance_pmpro`` run as a subprocess against the
fake exchange over real HTTP on 127.0.0.1 (served from this test process, or by the
``fake-exchange`` command itself).

Every subprocess has a timeout; no test sleeps for a fixed time.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest

from _cli import clean_env
from _cli import run_cli as _run_cli
from binance_pmpro import cli
from binance_pmpro.testing import FakeExchange

DATA = Path(__file__).parent / "data"
ACCOUNT_PATH = "/sapi/v1/portfolio/account"
RUN_TIMEOUT = 20.0  # seconds: a bound for a hung run, far above the ~0.5 s a run takes

# Distinctive values, so a leak into any output is found by a plain substring search.
KEY = "cliTestKey0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789ab"
SECRET = "cliTestSecretZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210zyxwvutsrqponmlk"
WRONG_SECRET = "cliWrongSecret0000000000000000000000000000000000000000000000000000"
KEY_PASSWORD = "correct-horse-battery"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run_cli(*args, env=env, timeout=RUN_TIMEOUT)


@dataclass
class Served:
    """A FakeExchange serving on loopback from a thread of this test process."""

    fake: FakeExchange
    base_url: str
    portal: Any

    def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` in the server's event loop thread (the fake is not thread-safe)."""
        return self.portal.call(lambda: func(*args, **kwargs))


@contextmanager
def served(**options: Any) -> Iterator[Served]:
    fake = FakeExchange(**options)
    fake.add_hmac_key(KEY, SECRET)
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(fake.serve(host="127.0.0.1", port=0)) as server,
    ):
        yield Served(fake, server.base_url, portal)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def _assert_one_error_line(stderr: str, *needles: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in stderr
    return lines[0]


# --- --demo --------------------------------------------------------------------------------


def test_account_demo_table_doc_example_exit_0() -> None:
    result = run_cli("account", "--demo")

    assert result.returncode == cli.EXIT_OK, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
    assert rows["uni_mmr"] == "5167.92171923"
    assert rows["total_available_balance"] == "122559.90199491"
    assert rows["account_status"] == "NORMAL"
    assert "fake exchange" in result.stderr
    assert "not from Binance" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_account_demo_json_exact_amount_strings() -> None:
    result = run_cli("account", "--demo", "--json")

    assert result.returncode == cli.EXIT_OK, result.stderr
    doc = json.loads(result.stdout)
    assert doc["uni_mmr"] == "5167.92171923"
    assert doc["total_available_balance"] == "122559.90199491"
    assert doc["account_equity"] == "122607.35137903"
    assert doc["account_status"] == "NORMAL"
    assert doc["account_type"] == "PM_1"
    assert result.stdout.count("\n") == 1


def test_account_demo_trio_backend_same_result() -> None:
    result = run_cli("account", "--demo", "--json", "--backend", "trio")

    assert result.returncode == cli.EXIT_OK, result.stderr
    assert json.loads(result.stdout)["uni_mmr"] == "5167.92171923"


def test_account_demo_with_credentials_options_usage_error() -> None:
    result = run_cli("account", "--demo", "--api-key", KEY)

    assert result.returncode == cli.EXIT_USAGE
    _assert_one_error_line(result.stderr, "--api-key")


# --- against a fake exchange served by the test ----------------------------------------------


def test_account_key_and_secret_file_success_table(secret_file: Path) -> None:
    with served() as s:
        result = run_cli(
            "account", "--base-url", s.base_url, "--api-key", KEY,
            "--api-secret-file", str(secret_file),
        )  # fmt: skip

    assert result.returncode == cli.EXIT_OK, result.stderr
    assert "5167.92171923" in result.stdout
    assert result.stderr == ""


def test_account_secret_from_stdin_dash_success() -> None:
    with served() as s:
        result = subprocess.run(
            [sys.executable, "-m", "binance_pmpro", "account", "--json",
             "--base-url", s.base_url, "--api-key", KEY, "--api-secret-file", "-"],
            input=SECRET + "\n", capture_output=True, text=True, env=clean_env(),
            timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip

    assert result.returncode == cli.EXIT_OK, result.stderr
    assert json.loads(result.stdout)["uni_mmr"] == "5167.92171923"


def test_account_env_credentials_success_json() -> None:
    with served() as s:
        result = run_cli(
            "account", "--json", "--base-url", s.base_url,
            env=clean_env(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET),
        )  # fmt: skip

    assert result.returncode == cli.EXIT_OK, result.stderr
    assert json.loads(result.stdout)["total_available_balance"] == "122559.90199491"


@pytest.mark.parametrize(
    ("private", "public", "password"),
    [
        ("rsa-2048.pem", "rsa-2048.pub.pem", None),
        ("ed25519-encrypted.pem", "ed25519.pub.pem", KEY_PASSWORD),
    ],
)
def test_account_private_key_file_signs_accepted(
    private: str, public: str, password: str | None
) -> None:
    extra = {"BINANCE_PRIVATE_KEY_PASSWORD": password} if password else {}
    with served() as s:
        pem = (DATA / public).read_text()
        if private.startswith("rsa"):
            s.call(s.fake.add_rsa_key, "cliAsymKey", pem)
        else:
            s.call(s.fake.add_ed25519_key, "cliAsymKey", pem)
        result = run_cli(
            "account", "--json", "--base-url", s.base_url, "--api-key", "cliAsymKey",
            "--private-key", str(DATA / private), env=clean_env(**extra),
        )  # fmt: skip

    assert result.returncode == cli.EXIT_OK, result.stderr
    assert json.loads(result.stdout)["uni_mmr"] == "5167.92171923"


def test_account_unknown_key_auth_exit_and_2015_line(secret_file: Path) -> None:
    with served() as s:
        result = run_cli(
            "account", "--base-url", s.base_url, "--api-key", "someoneElsesKey",
            "--api-secret-file", str(secret_file),
        )  # fmt: skip

    assert result.returncode == cli.EXIT_AUTH
    assert result.stdout == ""
    _assert_one_error_line(result.stderr, "-2015")


def test_account_wrong_secret_auth_exit_and_1022_line(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text(WRONG_SECRET)
    wrong.chmod(0o600)
    with served() as s:
        result = run_cli(
            "account", "--base-url", s.base_url, "--api-key", KEY, "--api-secret-file", str(wrong)
        )

    assert result.returncode == cli.EXIT_AUTH
    _assert_one_error_line(result.stderr, "-1022")


def test_account_over_uid_limit_rate_limited_exit(secret_file: Path) -> None:
    # A limit below the endpoint's weight (5) refuses the very first call: no dependence on
    # where the fake's minute window happens to end.
    with served(uid_limit=4) as s:
        result = run_cli(
            "account", "--max-wait", "0", "--base-url", s.base_url, "--api-key", KEY,
            "--api-secret-file", str(secret_file),
        )  # fmt: skip

    assert result.returncode == cli.EXIT_RATE_LIMITED
    _assert_one_error_line(result.stderr, "429", "-1003", "retry after")


@pytest.mark.parametrize(
    ("kind", "options", "code", "needle"),
    [
        ("drop_connection", {}, cli.EXIT_NETWORK, "network error"),
        ("reset_mid_body", {}, cli.EXIT_NETWORK, "network error"),
        ("server_error_json", {"status": 503}, cli.EXIT_SERVER, "503"),
        ("html_error_page", {}, cli.EXIT_SERVER, "502"),
        ("malformed_json", {}, cli.EXIT_BAD_RESPONSE, "bad response"),
        ("truncated_json", {}, cli.EXIT_BAD_RESPONSE, "bad response"),
        ("ip_banned", {}, cli.EXIT_RATE_LIMITED, "418"),
        ("error", {"status": 400, "code": -1102}, cli.EXIT_API_ERROR, "-1102"),
    ],
)
def test_account_injected_fault_maps_to_exit_code(
    kind: str, options: dict[str, Any], code: int, needle: str, secret_file: Path
) -> None:
    with served() as s:
        s.call(s.fake.inject, kind, times=100, path=ACCOUNT_PATH, **options)
        result = run_cli(
            "account", "--base-url", s.base_url, "--api-key", KEY,
            "--api-secret-file", str(secret_file),
        )  # fmt: skip

    assert result.returncode == code
    assert result.stdout == ""
    _assert_one_error_line(result.stderr, needle)


def test_account_connection_refused_network_exit(secret_file: Path) -> None:
    with served() as s:
        dead_url = s.base_url  # the port is free again once the server has stopped
    result = run_cli(
        "account", "--base-url", dead_url, "--api-key", KEY, "--api-secret-file", str(secret_file)
    )

    assert result.returncode == cli.EXIT_NETWORK
    _assert_one_error_line(result.stderr, "network error")


def test_account_json_unknown_status_extra_and_absent_fields_as_sent(secret_file: Path) -> None:
    with served() as s:
        s.call(s.fake.set_account, account_status="SOMETHING_NEW", account_initial_margin=None)
        s.call(lambda: s.fake.account_state().update(newRatio="0.5"))
        args = ["--base-url", s.base_url, "--api-key", KEY, "--api-secret-file", str(secret_file)]
        as_json = run_cli("account", "--json", *args)
        as_table = run_cli("account", *args)

    assert as_json.returncode == cli.EXIT_OK, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["account_status"] == "SOMETHING_NEW"
    assert "account_initial_margin" not in doc
    assert doc["new_ratio"] == "0.5"
    assert as_table.returncode == cli.EXIT_OK, as_table.stderr
    rows = {line.split()[0]: line for line in as_table.stdout.splitlines()}
    assert "SOMETHING_NEW" in rows["account_status"]
    assert "(not sent)" in rows["account_initial_margin"]
    assert "0.5" in rows["new_ratio"]


def test_account_not_portfolio_margin_api_error_exit_and_21001_line(secret_file: Path) -> None:
    with served() as s:
        s.call(s.fake.set_portfolio_margin, False)
        result = run_cli(
            "account", "--base-url", s.base_url, "--api-key", KEY,
            "--api-secret-file", str(secret_file),
        )  # fmt: skip

    assert result.returncode == cli.EXIT_API_ERROR
    _assert_one_error_line(result.stderr, "-21001")


# --- credentials -----------------------------------------------------------------------------


def test_account_no_credentials_not_tty_auth_exit_hint_demo() -> None:
    result = run_cli("account")

    assert result.returncode == cli.EXIT_AUTH
    assert result.stdout == ""
    _assert_one_error_line(result.stderr, "BINANCE_API_KEY", "--demo")


def test_account_key_without_secret_auth_exit() -> None:
    result = run_cli("account", "--base-url", "http://127.0.0.1:9", "--api-key", KEY)

    assert result.returncode == cli.EXIT_AUTH
    _assert_one_error_line(result.stderr, "--api-secret-file")


def test_account_secret_without_key_auth_exit(secret_file: Path) -> None:
    result = run_cli("account", "--api-secret-file", str(secret_file))

    assert result.returncode == cli.EXIT_AUTH
    _assert_one_error_line(result.stderr, "--api-key", "BINANCE_API_KEY")


def test_account_encrypted_key_without_password_auth_exit() -> None:
    result = run_cli(
        "account", "--api-key", KEY, "--private-key", str(DATA / "ed25519-encrypted.pem")
    )

    assert result.returncode == cli.EXIT_AUTH
    _assert_one_error_line(result.stderr, "private key", "BINANCE_PRIVATE_KEY_PASSWORD")


def test_account_missing_secret_file_auth_exit(tmp_path: Path) -> None:
    result = run_cli(
        "account", "--api-key", KEY, "--api-secret-file", str(tmp_path / "does-not-exist")
    )

    assert result.returncode == cli.EXIT_AUTH
    _assert_one_error_line(result.stderr, "does-not-exist")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_account_no_credentials_tty_automatic_demo_with_notice() -> None:
    controller, terminal = os.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "binance_pmpro", "account"],
            stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.PIPE, text=True,
            env=clean_env(), timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip
        os.close(terminal)
        terminal = -1
        output = _drain(controller)
    finally:
        if terminal != -1:
            os.close(terminal)
        os.close(controller)

    assert proc.returncode == cli.EXIT_OK, proc.stderr
    assert "5167.92171923" in output
    assert "DEMO" in proc.stderr
    assert "not Binance" in proc.stderr


def _drain(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal side is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


# --- secrets ---------------------------------------------------------------------------------


def test_account_verbose_logs_requests_without_secrets(tmp_path: Path, secret_file: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text(WRONG_SECRET)
    wrong.chmod(0o600)
    with served() as s:
        runs = [
            run_cli(
                "account", "-v", "--base-url", s.base_url, "--api-key", KEY,
                "--api-secret-file", str(secret_file),
            ),
            run_cli(
                "account", "-v", "--base-url", s.base_url, "--api-key", KEY,
                "--api-secret-file", str(wrong),
            ),
            run_cli(
                "account", "-v", "--json", "--base-url", s.base_url,
                env=clean_env(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET),
            ),
            run_cli("account", "-v", "--demo"),
        ]  # fmt: skip

    assert [r.returncode for r in runs] == [cli.EXIT_OK, cli.EXIT_AUTH, cli.EXIT_OK, cli.EXIT_OK]
    for result in runs:
        output = result.stdout + result.stderr
        assert SECRET not in output
        assert WRONG_SECRET not in output
        assert ACCOUNT_PATH in result.stderr  # the request was logged
        for line in output.splitlines():
            if "signature=" in line:
                assert "signature=<redacted>" in line
    assert "Traceback" in runs[1].stderr  # -v shows it; the secret is still absent


# --- fake-exchange -----------------------------------------------------------------------------


def _readline(stream: Any, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def test_fake_exchange_port_in_use_is_a_usage_error_not_a_crash() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("fake-exchange", "--port", str(port))
    assert result.returncode == cli.EXIT_USAGE, result.stderr
    assert result.stdout == ""  # no JSON line: nothing is served
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "internal error" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_fake_exchange_prints_json_line_serves_and_stops_cleanly(
    signum: int, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "binance_pmpro", "fake-exchange", "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(),
    )  # fmt: skip
    try:
        first = json.loads(_readline(proc.stdout, RUN_TIMEOUT))
        assert set(first) == {"base_url", "api_key", "api_secret", "stream_url"}
        assert first["base_url"].startswith("http://127.0.0.1:")
        port = first["base_url"].rsplit(":", 1)[1]
        assert first["stream_url"] == f"ws://127.0.0.1:{port}/pm-classic"
        server_time = httpx.get(first["base_url"] + "/api/v3/time", timeout=5).json()
        assert isinstance(server_time["serverTime"], int)
        secret = tmp_path / "secret"
        secret.write_text(first["api_secret"])
        secret.chmod(0o600)
        result = run_cli(
            "account", "--json", "--base-url", first["base_url"], "--api-key", first["api_key"],
            "--api-secret-file", str(secret),
        )  # fmt: skip
        assert result.returncode == cli.EXIT_OK, result.stderr
        assert json.loads(result.stdout)["uni_mmr"] == "5167.92171923"

        proc.send_signal(signum)
        code = proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=RUN_TIMEOUT)
    stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)

    assert code == cli.EXIT_OK
    assert stdout == ""  # the JSON line was the only stdout output
    assert "Traceback" not in stderr
    assert "not Binance" in stderr


# --- interruption ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_account_ctrl_c_during_request_exit_130_no_traceback(secret_file: Path) -> None:
    with served() as s:
        s.call(s.fake.inject, "slow_response", times=1, path=ACCOUNT_PATH, delay=30.0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "binance_pmpro", "account", "-v", "--timeout", "60",
             "--base-url", s.base_url, "--api-key", KEY, "--api-secret-file", str(secret_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=clean_env(),
        )  # fmt: skip
        try:
            # The client is logged as made just before its first request; the account
            # request then hangs on the slow answer until the signal comes.
            for _ in range(50):
                if "recv window" in _readline(proc.stderr, RUN_TIMEOUT):
                    break
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=RUN_TIMEOUT)
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT)

    assert code == cli.EXIT_INTERRUPTED
    assert "Traceback" not in stderr


# --- packaging -----------------------------------------------------------------------------


def test_import_cli_leaves_fake_exchange_unloaded() -> None:
    code = (
        "import sys, binance_pmpro.cli; "
        "loaded = [m for m in sys.modules if m.startswith(('binance_pmpro.testing', 'trio'))]; "
        "print(loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(),
        timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_console_script_version_exit_0() -> None:
    script = Path(sys.executable).with_name("binance-pmpro")
    if not script.exists():
        pytest.skip("the binance-pmpro script is not installed next to this Python")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, env=clean_env(),
        timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("binance-pmpro ")
