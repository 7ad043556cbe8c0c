"""The family's subcommands: one per endpoint of the table, the same table/--json output and
exit codes as ``account``, --demo everywhere; writes print their plan and ask (or take
--yes), never start a demo on their own, and exit 9 when their outcome is unknown.

Most runs call ``cli.main`` in this process against the demo or a FakeExchange served from
a thread; one runs the console entry as a subprocess.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from binance_pmpro import cli
from binance_pmpro.endpoints import BNB_TRANSFER, PORTFOLIO_ENDPOINTS, REPAY
from binance_pmpro.errors import ReadTimeoutError
from binance_pmpro.portfolio import WriteOutcomeUnknownError
from binance_pmpro.testing import FakeExchange, FaultKind
from binance_pmpro.validation import EndpointCapError, ParameterError

KEY = "cliFamilyKey0123456789abcdefABCDEF0123456789abcdefABCDEF012345678"
SECRET = "cliFamilySecretZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210zyxwvutsrqponm"


@pytest.fixture(autouse=True)
def _restore_package_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``main`` configures the package logger for a process; undo it after each test."""
    logger = logging.getLogger("binance_pmpro")
    saved = (logger.propagate, list(logger.handlers), logger.level)
    for name in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    yield
    logger.propagate, logger.handlers[:], logger.level = saved[0], saved[1], saved[2]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = "") -> Result:
    sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(list(argv))
    finally:
        sys.stdin = sys.__stdin__
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@dataclass
class Served:
    fake: FakeExchange
    base_url: str
    portal: Any

    def call(self, func: Any, *args: Any) -> Any:
        """Run ``func`` in the server's thread (the fake is not thread-safe)."""
        return self.portal.call(lambda: func(*args))

    def paths(self) -> list[str]:
        return self.call(lambda: [r.path for r in self.fake.requests])


@contextmanager
def served() -> Iterator[Served]:
    fake = FakeExchange()
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


def live(server: Served, secret_file: Path) -> list[str]:
    return ["--base-url", server.base_url, "--api-key", KEY, "--api-secret-file", str(secret_file)]


# --- every endpoint has its command ----------------------------------------------------------


def test_every_endpoint_but_account_has_its_subcommand() -> None:
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for endpoint in PORTFOLIO_ENDPOINTS[1:]:
        assert endpoint.cli in commands
        assert commands[endpoint.cli].get_default("endpoint") is endpoint
    assert "account" in commands


READS: list[tuple[list[str], list[str]]] = [
    (["span-account"], ["uni_mmr               5167.92171923", "risk_unit_mm_list:", "PM_3"]),
    (["balance"], ["cm_unrealized_pnl", "(empty)", "122607.35137903"]),
    (["balance", "--asset", "BTC"], ["BTC    100"]),
    (["collateral-rates"], ["USDC   1.0000"]),
    (["tiered-collateral-rates"], ["BNB    1000.0000   2000.0000  0.9000"]),
    (["index-price", "--asset", "BTC"], ["28251.9136906"]),
    (["asset-leverage"], ["USDT   10"]),
    (["loan"], ["amount  579.45"]),
    (
        ["repay-history", "--start", "2024-09-01", "--end", "1733000000000"],
        ["total  2", "404.80294503"],
    ),
    (["interest-history", "--start", "2022-12-01T00:00:00Z", "--asset", "USDT"], ["24.4440"]),
    (["auto-repay"], ["auto_repay  true"]),
    (["earn-balance", "--asset", "LDUSDT", "--type", "EARN_TO_FUTURE"], ["amount  0.55"]),
    (["delta-mode"], ["delta_enabled  false"]),
    (["margin-call-level"], ["margin_call_level  (not set)"]),
]


@pytest.mark.parametrize(("argv", "needles"), READS, ids=[" ".join(r[0]) for r in READS])
def test_read_command_demo_table_exit_0(
    capsys: pytest.CaptureFixture[str], argv: list[str], needles: list[str]
) -> None:
    result = run(capsys, *argv, "--demo")
    assert result.code == cli.EXIT_OK, result.err
    for needle in needles:
        assert needle in result.out
    assert "not from Binance" in result.err
    assert "about to send" not in result.err


@pytest.mark.parametrize(("argv", "needles"), READS, ids=[" ".join(r[0]) for r in READS])
def test_read_command_demo_json_one_document(
    capsys: pytest.CaptureFixture[str], argv: list[str], needles: list[str]
) -> None:
    result = run(capsys, *argv, "--demo", "--json")
    assert result.code == cli.EXIT_OK, result.err
    assert result.out.count("\n") == 1
    assert isinstance(result.json(), (dict, list))


def test_balance_json_exact_strings_and_null_for_empty_amount(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = run(capsys, "balance", "--demo", "--json").json()
    usdt = rows[0]
    assert usdt["asset"] == "USDT"
    assert usdt["cm_unrealized_pnl"] is None
    assert usdt["total_wallet_balance"] == "122607.35137903"
    assert usdt["um_wallet_balance"] == "0.00000000"
    assert usdt["update_time"] == 1617939110373
    assert list(usdt)[:3] == ["asset", "total_wallet_balance", "cross_margin_asset"]


def test_margin_call_level_unset_json_is_what_binance_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, "margin-call-level", "--demo", "--json").json() == {}


def test_span_account_json_nested_risk_units(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run(capsys, "span-account", "--demo", "--json").json()
    assert doc["risk_unit_mm_list"] == [{"asset": "BTC", "uni_maintain_usd": "23.72469206"}]
    assert doc["account_type"] == "PM_3"


def test_read_without_credentials_not_a_terminal_auth_exit_with_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(capsys, "balance")
    assert result.code == cli.EXIT_AUTH
    assert "binance-pmpro balance --demo" in result.err


def test_read_without_credentials_at_a_terminal_runs_the_demo_with_notice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = run(capsys, "loan")
    assert result.code == cli.EXIT_OK
    assert "DEMO" in result.err
    assert "579.45" in result.out


def test_read_live_against_served_exchange(
    capsys: pytest.CaptureFixture[str], secret_file: Path
) -> None:
    with served() as server:
        server.call(lambda: setattr(server.fake.portfolio_state(), "delta_enabled", True))
        result = run(capsys, "delta-mode", "--json", *live(server, secret_file))
        assert result.json() == {"delta_enabled": True}
        assert server.paths().count("/sapi/v1/portfolio/delta-mode") == 1
    assert SECRET not in result.out + result.err


# --- writes -----------------------------------------------------------------------------------

WRITES: list[tuple[list[str], str, Any]] = [
    (["repay"], "POST /sapi/v1/portfolio/repay  (no parameters)", {"tran_id": 58203331886213504}),
    (
        ["set-auto-repay", "off"],
        "POST /sapi/v1/portfolio/repay-futures-switch  autoRepay=false",
        {"msg": "success"},
    ),
    (
        ["repay-negative-balance", "--from", "MARGIN"],
        "POST /sapi/v1/portfolio/repay-futures-negative-balance  from=MARGIN",
        {"msg": "success"},
    ),
    (
        ["auto-collect"],
        "POST /sapi/v1/portfolio/auto-collection  (no parameters)",
        {"msg": "success"},
    ),
    (
        ["collect", "--asset", "USDT"],
        "POST /sapi/v1/portfolio/asset-collection  asset=USDT",
        {"msg": "success"},
    ),
    (
        ["bnb-transfer", "--amount", "0.50", "--side", "TO_UM"],
        "POST /sapi/v1/portfolio/bnb-transfer  amount=0.50 transferSide=TO_UM",
        None,
    ),
    (
        ["earn-transfer", "--asset", "LDUSDT", "--type", "EARN_TO_FUTURE", "--amount", "0.1"],
        "POST /sapi/v1/portfolio/earn-asset-transfer  asset=LDUSDT transferType=EARN_TO_FUTURE "
        "amount=0.1",
        {"msg": "success"},
    ),
    (
        ["set-delta-mode", "on"],
        "POST /sapi/v1/portfolio/delta-mode  deltaEnabled=true",
        {"msg": "success"},
    ),
    (
        ["set-margin-call-level", "--level", "1.5"],
        "POST /sapi/v1/portfolio/margin-call-level  marginCallLevel=1.5",
        {"margin_call_level": "1.50000000"},
    ),
    (
        ["delete-margin-call-level"],
        "DELETE /sapi/v1/portfolio/margin-call-level  (no parameters)",
        {"msg": "success"},
    ),
]


def test_writes_cover_every_write_endpoint() -> None:
    assert {w[0][0] for w in WRITES} == {e.cli for e in PORTFOLIO_ENDPOINTS if e.is_write}


@pytest.mark.parametrize(("argv", "plan", "doc"), WRITES, ids=[w[0][0] for w in WRITES])
def test_write_command_demo_yes_prints_plan_then_result(
    capsys: pytest.CaptureFixture[str], argv: list[str], plan: str, doc: Any
) -> None:
    result = run(capsys, *argv, "--demo", "--yes", "--json")
    assert result.code == cli.EXIT_OK, result.err
    assert "about to send to the built-in fake exchange" in result.err
    assert plan in result.err
    assert "proceed?" not in result.err
    if doc is not None:
        assert result.json() == doc
    else:
        assert isinstance(result.json()["tran_id"], int)


@pytest.mark.parametrize(("argv", "plan", "doc"), WRITES, ids=[w[0][0] for w in WRITES])
def test_write_command_without_credentials_never_auto_demo(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    plan: str,
    doc: Any,
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = run(capsys, *argv, "--yes", stdin="y\n")
    assert result.code == cli.EXIT_AUTH
    assert f"binance-pmpro {argv[0]} --demo" in result.err
    assert "about to send" not in result.err
    assert result.out == ""


@pytest.mark.parametrize("answer", ["n\n", "", "no\n", "yes please\n"])
def test_write_not_confirmed_sends_nothing_exit_8(
    capsys: pytest.CaptureFixture[str], secret_file: Path, answer: str
) -> None:
    with served() as server:
        result = run(
            capsys,
            "bnb-transfer",
            "--amount",
            "1",
            "--side",
            "TO_UM",
            *live(server, secret_file),
            stdin=answer,
        )
        assert result.code == cli.EXIT_DECLINED
        assert "proceed? [y/N]" in result.err
        assert "nothing was sent" in result.err
        assert "/sapi/v1/portfolio/bnb-transfer" not in server.paths()
    assert result.out == ""


@pytest.mark.parametrize("answer", ["y\n", "YES\n"])
def test_write_confirmed_sends_once(
    capsys: pytest.CaptureFixture[str], secret_file: Path, answer: str
) -> None:
    with served() as server:
        result = run(
            capsys,
            "set-margin-call-level",
            "--level",
            "1.25",
            *live(server, secret_file),
            stdin=answer,
        )
        assert result.code == cli.EXIT_OK, result.err
        assert f"about to send to Binance at {server.base_url}" in result.err
        assert "margin_call_level  1.25000000" in result.out
        assert server.paths().count("/sapi/v1/portfolio/margin-call-level") == 1
        level = server.call(lambda: server.fake.portfolio_state().margin_call_level)
    assert level == Decimal("1.25")


def test_write_outcome_unknown_exit_9_sent_once_names_what_to_check(
    capsys: pytest.CaptureFixture[str], secret_file: Path
) -> None:
    with served() as server:
        server.call(
            lambda: server.fake.inject(FaultKind.SERVER_ERROR_JSON, times=5, path=REPAY.path)
        )
        result = run(capsys, "repay", "--yes", *live(server, secret_file))
        assert server.paths().count(REPAY.path) == 1
    assert result.code == cli.EXIT_OUTCOME_UNKNOWN
    lines = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1
    assert "outcome unknown" in lines[0]
    assert "check the repay history" in lines[0]


def test_write_cap_refused_by_binance_rate_limited_exit(
    capsys: pytest.CaptureFixture[str], secret_file: Path
) -> None:
    args = ["bnb-transfer", "--amount", "0.1", "--side", "TO_UM", "--yes"]
    with served() as server:
        codes = [run(capsys, *args, *live(server, secret_file)).code for _ in range(2)]
        third = run(capsys, *args, *live(server, secret_file))
    assert codes == [cli.EXIT_OK, cli.EXIT_OK]
    assert third.code == cli.EXIT_RATE_LIMITED
    assert "endpoint cap reached" in third.err
    assert "2 per 10 minutes" in third.err


def test_bad_parameter_usage_exit_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(capsys, "set-margin-call-level", "--level", "2.5", "--demo", "--yes")
    assert result.code == cli.EXIT_USAGE
    assert "within [1.1, 2.0]" in result.err
    assert "about to send" not in result.err


@pytest.mark.parametrize(
    "argv",
    [
        ["bnb-transfer", "--amount", "1", "--side", "UP"],
        ["bnb-transfer", "--side", "TO_UM"],
        ["bnb-transfer", "--amount", "abc", "--side", "TO_UM"],
        ["set-delta-mode", "maybe"],
        ["repay-history", "--start", "yesterday"],
        ["repay", "--api-secret", "s3cr3t-value-do-not-echo"],
    ],
)
def test_bad_command_line_usage_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == cli.EXIT_USAGE
    assert "s3cr3t-value-do-not-echo" not in capsys.readouterr().err


def test_demo_with_credentials_usage_exit(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "balance", "--demo", "--api-key", KEY)
    assert result.code == cli.EXIT_USAGE


def test_classify_family_errors() -> None:
    unknown = WriteOutcomeUnknownError(REPAY, ReadTimeoutError("read timed out"))
    assert cli.classify(unknown)[0] == cli.EXIT_OUTCOME_UNKNOWN
    assert cli.classify(ParameterError("bad"))[0] == cli.EXIT_USAGE
    assert BNB_TRANSFER.cap is not None
    cap = EndpointCapError("x", endpoint="POST /x", cap=BNB_TRANSFER.cap, local=True)
    assert cli.classify(cap)[0] == cli.EXIT_RATE_LIMITED


def test_console_script_subprocess_balance_demo_json() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "binance_pmpro",
            "index-price",
            "--demo",
            "--json",
            "--asset",
            "BTC",
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    [row] = json.loads(completed.stdout)
    assert row["asset_index_price"] == "28251.9136906"
