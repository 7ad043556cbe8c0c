"""Every file in examples/ runs here against FakeExchange, on asyncio and trio.

The documentation shows these files (whole or in marked pieces), so a doc example that stops
working fails this module. Examples build their client as ``PortfolioMarginProClient()``
with keys from the environment, exactly as readers would; the tests set the environment to
the fake exchange's demo key and swap the module's ``PortfolioMarginProClient`` for one
that talks in-process to the fake. Nothing here reaches a host other than 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import logging
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import anyio
import pytest

from binance_pmpro import (
    AccountStatus,
    IPBannedError,
    PortfolioMarginProClient,
    RateLimiter,
    ServerError,
)
from binance_pmpro.testing import FakeExchange, FaultKind

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ACCOUNT_PATH = "/sapi/v1/portfolio/account"
Backend = Literal["asyncio", "trio"]
CREDENTIAL_VARIABLES = (
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
    "BINANCE_PRIVATE_KEY_PATH",
    "BINANCE_PRIVATE_KEY_PASSWORD",
)


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` afresh (examples are files, not a package)."""
    module_name = f"_example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class Fake:
    """A FakeExchange, one in-process httpx client for it, and the wiring of examples."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.exchange = FakeExchange()
        self.http = self.exchange.http_client()
        self._monkeypatch = monkeypatch
        for name in CREDENTIAL_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("BINANCE_API_KEY", self.exchange.demo_api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", self.exchange.demo_api_secret)

    def client(self, *args: Any, **options: Any) -> PortfolioMarginProClient:
        """A client of the fake; the same arguments as PortfolioMarginProClient."""
        options.setdefault("base_url", self.exchange.base_url)
        options.setdefault("http_client", self.http)
        return PortfolioMarginProClient(*args, **options)

    def aim(self, module: ModuleType) -> ModuleType:
        """Make the example's ``PortfolioMarginProClient(...)`` talk to the fake."""
        self._monkeypatch.setattr(module, "PortfolioMarginProClient", self.client)
        return module

    def account_statuses(self) -> list[int | None]:
        return [r.status for r in self.exchange.requests if r.path == ACCOUNT_PATH]


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fake]:
    wiring = Fake(monkeypatch)
    yield wiring
    await wiring.http.aclose()


@pytest.fixture
def sync_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    """For the web frameworks' synchronous test clients (they run their own event loop)."""
    wiring = Fake(monkeypatch)
    yield wiring
    anyio.run(wiring.http.aclose)


# --- quickstart ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_quickstart_main_prints_exact_amounts(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    await fake.aim(load("quickstart")).main()
    out = capsys.readouterr().out
    assert "uniMMR          5167.92171923\n" in out
    assert "account equity  122607.35137903 USD\n" in out
    assert "status          NORMAL\n" in out
    assert "not in NORMAL standing" not in out


@pytest.mark.anyio
async def test_quickstart_main_on_margin_call_warns(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.exchange.set_account(account_status="MARGIN_CALL")
    await fake.aim(load("quickstart")).main()
    assert "not in NORMAL standing" in capsys.readouterr().out


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
async def test_keys_generated_pair_signs_requests_the_fake_accepts(
    fake: Fake, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = fake.aim(load("keys"))
    public = keys.generate_key_pair(tmp_path, kind=kind, password=b"correct horse")
    private = tmp_path / "private.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in private.read_bytes()
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    register = fake.exchange.add_ed25519_key if kind == "ed25519" else fake.exchange.add_rsa_key
    register("my-own-key", public.read_bytes())
    monkeypatch.setenv("BINANCE_PRIVATE_KEY_PASSWORD", "correct horse")

    async with keys.private_key_client("my-own-key", private) as client:
        info = await client.account_info()
    assert client.signing_algorithm == ("ED25519" if kind == "ed25519" else "RSA")
    assert info.uni_mmr == Decimal("5167.92171923")


@pytest.mark.anyio
async def test_keys_hmac_and_environment_clients_are_accepted(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = fake.aim(load("keys"))
    async with keys.hmac_client(
        fake.exchange.demo_api_key, fake.exchange.demo_api_secret
    ) as client:
        assert (await client.account_info()).account_status is AccountStatus.NORMAL
    assert client.signing_algorithm == "HMAC_SHA256"

    public = keys.generate_key_pair(tmp_path, kind="ed25519")
    fake.exchange.add_ed25519_key("env-key", public.read_bytes())
    monkeypatch.setenv("BINANCE_API_KEY", "env-key")
    monkeypatch.delenv("BINANCE_API_SECRET")
    monkeypatch.setenv("BINANCE_PRIVATE_KEY_PATH", str(tmp_path / "private.pem"))
    async with keys.client_from_environment() as client:
        assert (await client.account_info()).account_status is AccountStatus.NORMAL
    assert client.signing_algorithm == "ED25519"


# --- trading engine ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_trading_engine_normal_account_trades(fake: Fake) -> None:
    engine = load("trading_engine")
    async with fake.client() as client:
        state = await engine.run_engine(client, every=0.05, ticks=3)
    assert not state.halted
    assert state.latest is not None
    # Each strategy decided three times; a tick whose read ran late is skipped, not traded.
    for name in ("basis", "funding"):
        decisions = [e for e in state.events if e.startswith(f"{name}: ")]
        assert len(decisions) == 3
        assert f"{name}: trade" in decisions
        assert set(decisions) <= {f"{name}: trade", f"{name}: skip"}


@pytest.mark.anyio
async def test_trading_engine_margin_call_halts_strategies(fake: Fake) -> None:
    engine = load("trading_engine")
    fake.exchange.set_account(uni_mmr="1.12", account_status="REDUCE_ONLY")
    async with fake.client() as client:
        state = await engine.run_engine(client, every=0.01, ticks=3)
    assert state.halted
    assert "halt: REDUCE_ONLY, uniMMR 1.12" in state.events
    assert not any(event.endswith(": trade") for event in state.events)


@pytest.mark.anyio
async def test_trading_engine_read_account_late_answer_gives_none(fake: Fake) -> None:
    engine = load("trading_engine")
    fake.exchange.inject(FaultKind.SLOW_RESPONSE, path=ACCOUNT_PATH, delay=30.0)
    async with fake.client() as client:
        assert await engine.read_account(client, budget=0.05) is None
        assert await engine.first_answer_or_give_up(client, 5.0) == "uniMMR 5167.92171923"


@pytest.mark.anyio
async def test_trading_engine_read_account_over_local_budget_gives_none(fake: Fake) -> None:
    engine = load("trading_engine")
    # A budget of 10 weight per minute holds at most two calls of weight 5: the limiter
    # must refuse within the 50 ms budget rather than wait for the next minute.
    async with fake.client(uid_limit=10) as client:
        results = [await engine.read_account(client, budget=0.05) for _ in range(3)]
    assert results[0] is not None
    assert results[-1] is None
    assert len(fake.account_statuses()) < 3


@pytest.mark.anyio
async def test_trading_engine_cancelled_call_gives_up(fake: Fake) -> None:
    engine = load("trading_engine")
    fake.exchange.inject(FaultKind.SLOW_RESPONSE, path=ACCOUNT_PATH, delay=30.0)
    async with fake.client() as client:
        assert await engine.first_answer_or_give_up(client, 0.05) == "gave up"


@pytest.mark.anyio
async def test_trading_engine_main_reports_events(
    fake: Fake, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = fake.aim(load("trading_engine"))
    quick = partial(engine.run_engine, every=0.05, ticks=2)
    monkeypatch.setattr(engine, "run_engine", lambda client, **_: quick(client))
    await engine.main()
    decisions = capsys.readouterr().out.splitlines()
    assert len(decisions) == 4
    assert "basis: trade" in decisions
    assert "funding: trade" in decisions


@pytest.mark.anyio
async def test_trading_engine_main_with_refused_key_stops(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = fake.aim(load("trading_engine"))
    fake.exchange.remove_key(fake.exchange.demo_api_key)
    await engine.main()
    out = capsys.readouterr().out
    assert "engine stopped: Binance error code -2015" in out


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_engine_trio_three_tasks_share_one_client(
    fake: Fake, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = fake.aim(load("engine_trio"))
    monkeypatch.setattr(example, "EVERY", 0.01)
    await example.main()
    assert capsys.readouterr().out == "15 answers, last uniMMR 5167.92171923\n"
    assert fake.account_statuses() == [200] * 15


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is Python 3.11+")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_engine_asyncio_three_tasks_share_one_client(
    fake: Fake, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = fake.aim(load("engine_asyncio"))
    monkeypatch.setattr(example, "EVERY", 0.01)
    await example.main()
    assert capsys.readouterr().out == "15 answers, last uniMMR 5167.92171923\n"


# --- web backends --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_web_fastapi_risk_route_serves_and_maps_errors(sync_fake: Fake, backend: Backend) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    example = sync_fake.aim(load("web_fastapi"))
    with TestClient(example.app, backend=backend) as http:  # runs the lifespan
        ok = http.get("/risk")
        assert ok.status_code == 200
        assert ok.json() == {
            "uni_mmr": "5167.92171923",
            "account_equity": "122607.35137903",
            "account_status": "NORMAL",
        }
        sync_fake.exchange.inject(FaultKind.SERVER_ERROR_JSON, times=3)
        assert http.get("/risk").status_code == 502
        # Last: a 429 pauses this client's budget for the Retry-After.
        sync_fake.exchange.inject(FaultKind.RATE_LIMITED, retry_after=30)
        busy = http.get("/risk")
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "30"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_web_fastapi_refused_key_is_a_server_error(sync_fake: Fake, backend: Backend) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    example = sync_fake.aim(load("web_fastapi"))
    sync_fake.exchange.remove_key(sync_fake.exchange.demo_api_key)
    with TestClient(example.app, backend=backend) as http:
        assert http.get("/risk").status_code == 500


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_web_litestar_risk_route_serves_and_maps_errors(sync_fake: Fake, backend: Backend) -> None:
    pytest.importorskip("litestar")
    from litestar.testing import TestClient

    example = sync_fake.aim(load("web_litestar"))
    with TestClient(app=example.app, backend=backend) as http:  # runs the lifespan
        ok = http.get("/risk")
        assert ok.status_code == 200
        assert ok.json() == {"uni_mmr": "5167.92171923", "account_status": "NORMAL"}
        sync_fake.exchange.inject(FaultKind.HTML_ERROR_PAGE, times=3)
        assert http.get("/risk").status_code == 502


# --- rate limits ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_rate_limits_metrics_and_hook_report_the_weight(fake: Fake) -> None:
    example = load("rate_limits")
    counter = example.RequestCounter()
    async with example.client_with_metrics(
        counter, base_url=fake.exchange.base_url, http_client=fake.http
    ) as client:
        await client.account_info()
        await client.account_info()
        rows = {row["budget"]: row for row in example.budget_metrics(client)}
    account = rows["uid:/sapi/v1/portfolio/account"]
    assert account["limit"] == 180_000
    assert account["effective_limit"] == 178_200
    assert account["in_flight"] == 0
    assert account["banned"] is False
    assert account["used"] >= 10
    assert account["server_used"] == 10
    assert account["waiting"] == 0
    assert account["paused_for"] == 0
    assert counter.outcomes["200"] == 3  # the clock sync and two account reads
    assert counter.last_used_weight == 10


@pytest.mark.anyio
async def test_rate_limits_clients_of_one_account_share_one_budget(fake: Fake) -> None:
    example = load("rate_limits")
    fake.exchange.add_hmac_key("second-key", "second-secret")
    keys = [(fake.exchange.demo_api_key, fake.exchange.demo_api_secret)]
    keys.append(("second-key", "second-secret"))
    first, second = example.clients_sharing_one_budget(
        keys, base_url=fake.exchange.base_url, http_client=fake.http
    )
    async with first, second:
        await first.account_info()
        await second.account_info()
        uid = [s for s in first.rate_limit if s.key.kind.value == "uid"]
    assert len(uid) == 1
    assert uid[0].used >= 10
    assert uid[0].server_used == 10  # Binance counts both keys on the account's budget


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "options", "expected"),
    [
        (None, {}, "uniMMR 5167.92171923"),
        (FaultKind.RATE_LIMITED, {"retry_after": 60}, "rate limited, retry after 60.0 s"),
        (FaultKind.IP_BANNED, {"seconds": 120}, "banned for 120.0 s"),
    ],
)
async def test_rate_limits_read_or_explain_names_the_cause(
    fake: Fake, fault: FaultKind | None, options: dict[str, Any], expected: str
) -> None:
    example = load("rate_limits")
    if fault is not None:
        fake.exchange.inject(fault, path=ACCOUNT_PATH, **options)
    async with fake.client() as client:
        assert await example.read_or_explain(client) == expected


@pytest.mark.anyio
async def test_rate_limits_after_a_ban_every_call_fails_without_sending(fake: Fake) -> None:
    example = load("rate_limits")
    fake.exchange.inject(FaultKind.IP_BANNED, path=ACCOUNT_PATH, seconds=120)
    async with fake.client() as client:
        assert (await example.read_or_explain(client)).startswith("banned for 120")
        sent = len(fake.exchange.requests)
        assert (await example.read_or_explain(client)).startswith("banned for 1")
        with pytest.raises(IPBannedError):
            await client.server_time()  # every budget of the IP, not just this endpoint's
        assert all(s.banned for s in client.rate_limit)
    assert len(fake.exchange.requests) == sent


@pytest.mark.anyio
async def test_rate_limits_during_a_429_pause_calls_that_cannot_wait_send_nothing(
    fake: Fake,
) -> None:
    example = load("rate_limits")
    fake.exchange.inject(FaultKind.RATE_LIMITED, path=ACCOUNT_PATH, retry_after=60)
    async with fake.client() as client:
        assert await example.read_or_explain(client) == "rate limited, retry after 60.0 s"
        sent = len(fake.exchange.requests)
        assert (await example.read_or_explain(client)).startswith("over our own budget")
        paused = [s.paused_for for s in client.rate_limit if s.key.kind.value == "uid"]
    assert paused[0] > 50
    assert len(fake.exchange.requests) == sent


@pytest.mark.anyio
async def test_rate_limits_read_or_explain_over_local_budget_sends_nothing(fake: Fake) -> None:
    example = load("rate_limits")
    async with fake.client(uid_limit=10, max_wait=0.0) as client:
        answers = [await example.read_or_explain(client) for _ in range(3)]
    assert answers[0] == "uniMMR 5167.92171923"
    assert answers[-1].startswith("over our own budget")
    assert len(fake.account_statuses()) < 3


@pytest.mark.anyio
async def test_rate_limits_client_for_worker_takes_its_share(fake: Fake) -> None:
    example = load("rate_limits")
    async with example.client_for_worker(
        4, base_url=fake.exchange.base_url, http_client=fake.http
    ) as client:
        await client.account_info()
        limits = {s.key.kind.value: s.limit for s in client.rate_limit}
    assert limits["uid"] == 45_000


@pytest.mark.anyio
async def test_rate_limits_short_429_is_waited_out_and_resent(fake: Fake) -> None:
    example = load("rate_limits")
    # Two-second windows on both sides, so that "until the window ends" is short: a 429
    # without Retry-After pauses the budget to the end of the exchange's window.
    fake.exchange.window_ms = 2_000
    limiter = RateLimiter(window=2.0, arrival_spread=0.5)
    fake.exchange.inject(FaultKind.RATE_LIMITED, path=ACCOUNT_PATH)
    async with fake.client(rate_limiter=limiter) as client:
        assert await example.read_or_explain(client) == "uniMMR 5167.92171923"
    assert fake.account_statuses() == [429, 200]


# --- errors and retries --------------------------------------------------------------------


def _no_pm(exchange: FakeExchange) -> None:
    exchange.set_portfolio_margin(False)


def _refused(exchange: FakeExchange) -> None:
    exchange.remove_key(exchange.demo_api_key)


ERROR_CASES: list[tuple[str, Any, str]] = [
    ("ok", None, "ok, uniMMR 5167.92171923"),
    ("not pm", _no_pm, "this account has no Portfolio Margin Pro"),
    ("bad key", _refused, "check the key: permissions, IP whitelist, right secret"),
    ("-1021 twice", (FaultKind.TIMESTAMP_ERROR, {"times": 2}), "fix the host clock"),
    ("429", (FaultKind.RATE_LIMITED, {"retry_after": 60}), "back off for 60.0 s"),
    ("403", (FaultKind.ERROR, {"status": 403}), "blocked by Binance's firewall"),
    ("-1102", (FaultKind.ERROR, {"code": -1102}), "a bug or a removed endpoint"),
    ("-21015", (FaultKind.ERROR, {"code": -21015}), "a bug or a removed endpoint"),
    ("5xx", (FaultKind.SERVER_ERROR_JSON, {"times": 3}), "unknown outcome"),
    ("502 page", (FaultKind.HTML_ERROR_PAGE, {"times": 3}), "unknown outcome"),
    ("dropped", (FaultKind.DROP_CONNECTION, {"times": 3}), "unknown outcome"),
    ("bad json", (FaultKind.MALFORMED_JSON, {}), "unreadable answer"),
    ("other code", (FaultKind.ERROR, {"status": 409, "code": -3999}), "a bug or a removed"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("case", "setup", "expected"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
async def test_errors_fetch_and_decide_names_the_action(
    fake: Fake, case: str, setup: Any, expected: str
) -> None:
    example = load("errors_and_retries")
    if callable(setup):
        setup(fake.exchange)
    elif setup is not None:
        kind, options = setup
        fake.exchange.inject(kind, path=ACCOUNT_PATH, **options)
    async with fake.client() as client:
        assert (await example.fetch_and_decide(client)).startswith(expected)


@pytest.mark.anyio
async def test_errors_fetch_and_decide_without_network_says_nothing_went_out(
    fake: Fake,
) -> None:
    example = load("errors_and_retries")
    with refusing_port() as port:
        async with PortfolioMarginProClient(
            "key", "secret", base_url=f"http://127.0.0.1:{port}", time_sync=False
        ) as client:
            answer = await example.fetch_and_decide(client)
    assert answer == "network down: no request went out"


def refusing_port() -> Any:
    """A loopback port that refuses connections for the whole block.

    The socket stays bound without listening: the kernel answers a connect with a reset, and
    no other process can take the port meanwhile (closing it first raced with other suites).
    """
    import contextlib
    import socket

    @contextlib.contextmanager
    def port() -> Iterator[int]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            yield sock.getsockname()[1]

    return port()


@pytest.mark.anyio
async def test_errors_patient_client_outlasts_two_failures(fake: Fake) -> None:
    example = fake.aim(load("errors_and_retries"))
    fake.exchange.inject(FaultKind.SERVER_ERROR_EMPTY, path=ACCOUNT_PATH, times=2)
    async with example.patient_client() as client:
        assert (await client.account_info()).uni_mmr == Decimal("5167.92171923")
    assert fake.account_statuses() == [503, 503, 200]


@pytest.mark.anyio
async def test_errors_impatient_client_raises_the_first_failure(fake: Fake) -> None:
    example = fake.aim(load("errors_and_retries"))
    fake.exchange.inject(FaultKind.SERVER_ERROR_EMPTY, path=ACCOUNT_PATH)
    async with example.impatient_client() as client:
        with pytest.raises(ServerError):
            await client.account_info()
    assert fake.account_statuses() == [503]


# --- account fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uni_mmr", "meaning"),
    [
        ("5167.92171923", "trade freely"),
        ("1.50000001", "trade freely"),
        ("1.50", "Binance reminds you to add funds, repay or reduce positions"),
        ("1.20", "new orders refused except reduce-only"),
        ("1.05000001", "new orders refused except reduce-only"),
        ("1.05", "liquidation risk"),
        ("0.3", "liquidation risk"),
    ],
)
def test_account_fields_uni_mmr_tier_bounds(uni_mmr: str, meaning: str) -> None:
    assert load("account_fields").uni_mmr_tier(Decimal(uni_mmr)) == meaning


@pytest.mark.anyio
async def test_account_fields_summary_of_the_documented_account(fake: Fake) -> None:
    example = load("account_fields")
    async with fake.client() as client:
        lines = example.summary(await client.account_info())
    assert lines == [
        "uniMMR 5167.92171923: trade freely",
        "equity 122607.35137903 USD (after collateral rates)",
        "maintenance margin 23.72469206 USD",
        "status NORMAL (severity 0 of 6)",
    ]


@pytest.mark.anyio
async def test_account_fields_unknown_status_is_the_most_severe(fake: Fake) -> None:
    example = load("account_fields")
    fake.exchange.set_account(account_status="PARTIAL_LIQUIDATION", uni_mmr="", account_type="PM_3")
    async with fake.client() as client:
        info = await client.account_info()
    assert example.severity(info) == 6
    assert example.summary(info) == [
        "note: account type PM_3",
        "uniMMR: not given",
        "equity 122607.35137903 USD (after collateral rates)",
        "maintenance margin 23.72469206 USD",
        "status PARTIAL_LIQUIDATION (severity 6 of 6)",
    ]


# --- testing with the plugin ---------------------------------------------------------------


def test_with_fake_exchange_example_passes_under_pytest(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(
        str(EXAMPLES / "test_with_fake_exchange.py"), "-p", "no:cacheprovider", "-q"
    )
    result.assert_outcomes(passed=8)


def test_stream_with_fake_exchange_example_passes_under_pytest(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(
        str(EXAMPLES / "test_stream_with_fake_exchange.py"), "-p", "no:cacheprovider", "-q"
    )
    result.assert_outcomes(passed=6)  # three tests, on asyncio and trio


# --- fake exchange server, logging, configuration ------------------------------------------


@pytest.mark.anyio
async def test_fake_exchange_server_serves_a_client_over_loopback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await load("fake_exchange_server").main()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("serving on http://127.0.0.1:")
    assert out[1] == "MARGIN_CALL 1.31"


@pytest.fixture
def restore_logger_levels() -> Iterator[None]:
    names = ("binance_pmpro", "httpx")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.anyio
@pytest.mark.usefixtures("restore_logger_levels")
async def test_logging_setup_logs_requests_without_secrets(
    fake: Fake, caplog: pytest.LogCaptureFixture
) -> None:
    load("logging_setup").configure_logging(debug_binance=True)
    with caplog.at_level(logging.DEBUG):
        async with fake.client() as client:
            await client.account_info()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("binance_pmpro")]
    assert any(
        "/sapi/v1/portfolio/account" in line and "signature=<redacted>" in line for line in ours
    )
    assert not [r for r in caplog.records if r.name.startswith("httpx")]
    assert fake.exchange.demo_api_secret not in caplog.text


@pytest.mark.anyio
async def test_configuration_clients_construct_without_network(fake: Fake) -> None:
    example = load("configuration")
    credentials = {"api_key": "key", "api_secret": "secret"}
    async with example.configured_client(**credentials) as client:
        assert client.recv_window == 5_000
        assert client.timeouts.read == 10.0
        assert client.max_wait == 10.0
        assert client.call_timeout == 15.0
        assert client.transport_name is None  # chosen at the first call, which never comes
    proxied = example.client_behind_proxy("http://127.0.0.1:3128", **credentials)
    await proxied.aclose()


def test_every_example_file_is_exercised_by_a_test() -> None:
    tests = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    for path in EXAMPLES.glob("*.py"):
        assert f'"{path.stem}"' in tests or path.name in tests, path.name


def test_examples_hold_no_literal_secrets() -> None:
    # Readers copy examples: keys come from the environment or files, never from the code.
    for path in EXAMPLES.glob("*.py"):
        text = path.read_text()
        assert 'api_secret="' not in text, path.name
        assert "PRIVATE KEY-----" not in text, path.name
