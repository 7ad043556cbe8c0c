"""watch_account(source=...) on the user stream, over a scripted WebSocket on virtual clocks:
alerts within one stream period, no account-info weight while the stream is healthy, polling
while it is down (auto), the slow reconciliation, fatal errors, the poll default without a
stream URL."""

from __future__ import annotations

import contextlib
import itertools
from decimal import Decimal
from typing import Any

import pytest
import trio.testing

from _stream import STALL, FakeConnector, ScriptedRest, frames, make_client, update_frame
from _virtual_time import VirtualEventLoop
from binance_pmpro import (
    AccountSnapshot,
    AccountStatus,
    AuthenticationError,
    Breach,
    ConfigurationError,
    PortfolioMarginProClient,
    RiskMonitor,
    Stale,
    StatusChange,
    UniMMRBelow,
)
from binance_pmpro.transport import Response

pytestmark = pytest.mark.anyio

ACCOUNT = "/sapi/v1/portfolio/account"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualEventLoop})


def slide(period: float = 5.0) -> Any:
    """uniMMR sliding by 0.05 per update from 1.60: below 1.20 at the ninth update."""

    def make() -> Any:
        for n in itertools.count():
            uni_mmr = max(Decimal("1.60") - Decimal("0.05") * n, Decimal("1.01"))
            yield period, update_frame(1000 + n, str(uni_mmr))

    return make


async def collect(client: Any, count: int, monitor: RiskMonitor | None = None, **kw: Any) -> list:
    items: list[Any] = []
    source = (
        monitor.watch(client, every=kw.pop("every", 5.0), **kw)
        if monitor is not None
        else client.watch_account(**kw)
    )
    async with contextlib.aclosing(source) as watch:
        async for item in watch:
            items.append(item)
            if len(items) >= count:
                break
    return items


async def test_stream_watch_alerts_within_one_period_without_account_weight() -> None:
    rest, connector = ScriptedRest(), FakeConnector(scripts=[slide()])
    monitor = RiskMonitor([UniMMRBelow(Decimal("1.20"))])
    async with make_client(rest, connector) as client:
        items = await collect(client, 14, monitor, source="stream", reconcile_every=3600.0)
    snapshots = [i for i in items if isinstance(i, AccountSnapshot)]
    breaches = [i for i in items if isinstance(i, Breach)]
    assert len(breaches) == 1
    breach = breaches[0]
    assert breach.value == Decimal("1.15")
    # The update that crossed the level was pushed at 10 x 5 s after the connection opened;
    # the alert came with it, well within one period.
    opened_at = connector.opened[0][0]
    assert breach.snapshot.at - (opened_at + 50.0) < 5.0
    assert breach.snapshot.at == pytest.approx(opened_at + 50.0)
    # One account call (the first snapshot, for the status), none while the stream pushed.
    assert len(rest.calls_of("GET", ACCOUNT)) == 1
    assert snapshots[0].info.uni_mmr == Decimal("5167.92171923")  # the REST snapshot
    assert snapshots[1].info.uni_mmr == Decimal("1.60")  # then the pushed numbers
    assert snapshots[1].info.account_status is AccountStatus.NORMAL
    assert [s.sequence for s in snapshots] == list(range(1, len(snapshots) + 1))


async def test_stream_watch_risk_level_change_is_a_status_change_at_once() -> None:
    risk = '{"e":"riskLevelChange","E":9,"u":"1.10","s":"REDUCE_ONLY","eq":"1","ae":"1","m":"1"}'
    connector = FakeConnector(scripts=[frames((5.0, update_frame(1, "1.5")), (0.5, risk))])
    async with make_client(ScriptedRest(), connector) as client:
        items = await collect(client, 5, RiskMonitor([]), source="stream")
    changes = [i for i in items if isinstance(i, StatusChange)]
    assert len(changes) == 1
    assert changes[0].current is AccountStatus.REDUCE_ONLY
    assert changes[0].snapshot.info.uni_mmr == Decimal("1.10")


async def test_auto_watch_polls_while_the_stream_is_down_then_stops() -> None:
    rest = ScriptedRest()
    # Connection 1: two updates then silence; the stream reconnects after 15 s, but the
    # next two connection attempts fail; connection 2 then pushes updates again.
    connector = FakeConnector(
        scripts=[frames((5.0, update_frame(1)), (5.0, update_frame(2)), (0.0, STALL))], fail=2
    )
    async with make_client(rest, connector) as client:
        items = await collect(client, 16, source="auto", every=5.0, reconcile_every=3600.0)
        polls = rest.calls_of("GET", ACCOUNT)
    assert all(isinstance(i, AccountSnapshot) for i in items)
    start = polls[0]
    healthy_until = connector.opened[0][0] + 10.0
    back_at = connector.opened[1][0]
    during_outage = [t for t in polls[1:] if healthy_until < t < back_at]
    # Polled at the ticks of the outage (the stream silent for two periods or closed)...
    assert len(during_outage) >= 2
    assert all(round(t - start, 6) % 5.0 == 0 for t in during_outage)
    # ...and nothing polled while the stream was healthy before the outage.
    assert not [t for t in polls[1:] if t <= healthy_until]
    # After the reconnect only its snapshot; pushed updates again.
    after = [t for t in polls if t > back_at + 10.0]
    assert after == []


async def test_stream_watch_reconciles_over_rest_slowly() -> None:
    rest, connector = ScriptedRest(), FakeConnector()
    async with make_client(rest, connector) as client:
        await collect(client, 40, source="stream", reconcile_every=60.0)
        polls = rest.calls_of("GET", ACCOUNT)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(polls)]
    assert gaps
    assert all(gap == 60.0 for gap in gaps)


async def test_stream_watch_fatal_error_raises_out_of_the_watch() -> None:
    class Refusing(ScriptedRest):
        async def send(self, request: Any) -> Response:
            if request.path == ACCOUNT:
                body = b'{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'
                return Response(401, {}, body)
            return await super().send(request)

    async with make_client(Refusing(), FakeConnector()) as client:
        with pytest.raises(AuthenticationError):
            await collect(client, 3, source="stream")


async def test_stream_watch_reports_stale_when_nothing_arrives() -> None:
    class Down(ScriptedRest):
        async def send(self, request: Any) -> Response:
            if request.path == ACCOUNT and self.calls_of("GET", ACCOUNT):
                return Response(503, {}, b"")
            return await super().send(request)

    connector = FakeConnector(scripts=[frames((5.0, update_frame(1)), (0.0, STALL))], fail=100)
    async with make_client(Down(), connector, retry=None) as client:
        items = await collect(client, 3, source="auto", stale_after=20.0)
    assert isinstance(items[-1], Stale)
    assert items[-1].age >= 20.0


async def test_watch_without_a_stream_url_polls_and_stream_source_is_refused() -> None:
    client = PortfolioMarginProClient("A" * 64, "s" * 64, base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="stream"):
        await client.watch_account(source="stream").__anext__()
    with pytest.raises(ConfigurationError, match="source"):
        await client.watch_account(source="push").__anext__()  # type: ignore[arg-type]


# --- examples/streaming.py -------------------------------------------------------------------


def _example() -> Any:
    from test_examples import load

    return load("streaming")


async def test_streaming_example_prints_updates_and_reconnects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    connector = FakeConnector(
        scripts=[frames((5.0, update_frame(1, "1.4")), (1.0, STALL))], default=slide()
    )
    async with make_client(ScriptedRest(), connector) as client:
        assert await _example().print_events(client, limit=3) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "update    uniMMR 1.4  equity 30.23416728 USD"
    assert out[1] == "reconnect (stalled); uniMMR now 5167.92171923"
    assert out[2].startswith("update    uniMMR 1.60")


async def test_streaming_example_alerts_on_the_slide(capsys: pytest.CaptureFixture[str]) -> None:
    rest, connector = ScriptedRest(), FakeConnector(scripts=[slide()])
    async with make_client(rest, connector) as client:
        breach = await _example().alert_on_stream(client, level="1.3")
    assert breach.value == Decimal("1.25")
    assert "BREACH  uniMMR 1.25 < 1.3" in capsys.readouterr().out
    assert len(rest.calls_of("GET", ACCOUNT)) == 1
