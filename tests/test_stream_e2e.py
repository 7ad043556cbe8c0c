"""The SDK's user stream end to end against FakeExchange.

In-process on virtual clocks (no sockets): the listen key kept alive and closed, as the
exchange's ledger shows; the 24-hour cut pre-empted; a watcher on the stream alerting on the
scripted uniMMR slide within one period with no account-info weight while the stream is
healthy. Over loopback sockets in real time (asyncio and trio, the default wsproto
connector): every stream fault healed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import trio.testing

import binance_pmpro.clock
from _virtual_time import VirtualEventLoop
from binance_pmpro import (
    AccountSnapshot,
    AccountUpdate,
    Breach,
    ListenKeyExpired,
    PortfolioMarginProClient,
    RiskMonitor,
    StreamReconnected,
    UniMMRBelow,
    UnknownEvent,
)
from binance_pmpro.retry import RetryPolicy
from binance_pmpro.testing import FakeExchange, Scenario, StreamFault

pytestmark = pytest.mark.anyio

EPOCH_S = 1_700_000_017.25
ACCOUNT = "/sapi/v1/portfolio/account"
LISTEN_KEY = "/fapi/v1/listenKey"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualEventLoop})


@contextlib.contextmanager
def virtual_wall_clock() -> Any:
    # The client stamps signed requests from the wall clock: make it the exchange's.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            binance_pmpro.clock,
            "time",
            SimpleNamespace(time=lambda: anyio.current_time() + EPOCH_S),
        )
        yield


def virtual_fake(**options: Any) -> FakeExchange:
    return FakeExchange(clock=lambda: (anyio.current_time() + EPOCH_S) * 1000, **options)


@contextlib.asynccontextmanager
async def in_process(fake: FakeExchange) -> AsyncIterator[PortfolioMarginProClient]:
    http_client = fake.http_client()
    with virtual_wall_clock():
        async with (
            PortfolioMarginProClient(
                fake.demo_api_key,
                fake.demo_api_secret,
                base_url=fake.base_url,
                futures_base_url=fake.futures_base_url,
                stream_url=fake.stream_url,
                stream_connector=fake.ws_connector(),
                http_client=http_client,
                time_offset_ms=0,
                retry=RetryPolicy(base_delay=0.0, max_delay=0.0),
            ) as client,
            http_client,
        ):
            yield client


def loop_seconds(at_ms: int) -> float:
    return at_ms / 1000 - EPOCH_S


# --- in-process, virtual clocks -------------------------------------------------------------


async def test_listen_key_is_kept_alive_and_closed_in_the_exchange_ledger() -> None:
    fake = virtual_fake(stream_period=60.0)
    async with in_process(fake) as client:
        start = anyio.current_time()
        async with client.user_stream(
            keepalive_interval=1800.0, close_listen_key=True, stall_after=300.0
        ) as stream:
            async for _ in stream:
                if anyio.current_time() - start >= 2 * 3600:
                    break
    log = fake.listen_key_log
    assert [r.action for r in log] == ["created", *["kept_alive"] * 4, "closed"]
    created = loop_seconds(log[0].at_ms)
    assert [round(loop_seconds(r.at_ms) - created, 3) for r in log[1:5]] == [
        1800.0,
        3600.0,
        5400.0,
        7200.0,
    ]
    # Never let lapse: every keep-alive came while the key was still valid.
    for before, after in itertools.pairwise(log):
        assert before.expires_ms is None or after.at_ms < before.expires_ms
    assert len({r.key_id for r in log}) == 1
    # Through the client's normal path: API key only, weight 1 on the futures budget.
    calls = [r for r in fake.requests if r.path == LISTEN_KEY]
    assert [r.method for r in calls] == ["POST", "PUT", "PUT", "PUT", "PUT", "DELETE"]
    assert all(r.weight == 1 and r.status == 200 for r in calls)
    assert all(dict(r.params) == {} for r in calls)  # no timestamp, no signature
    assert fake.stream_connections[0].close_code == 1000


async def test_default_exit_leaves_the_listen_key_alive() -> None:
    fake = virtual_fake(stream_period=5.0)
    async with in_process(fake) as client, client.user_stream() as stream:
        async for event in stream:
            if isinstance(event, AccountUpdate):
                break
    assert [r.action for r in fake.listen_key_log] == ["created"]  # decision 25


async def test_stream_is_replaced_before_the_24_hour_cut() -> None:
    fake = virtual_fake(stream_period=600.0, ping_interval=1800.0, risk_check_interval=600.0)
    async with in_process(fake) as client:
        start = anyio.current_time()
        reasons: list[str] = []
        async with client.user_stream(stall_after=1800.0) as stream:
            async for event in stream:
                if isinstance(event, StreamReconnected):
                    reasons.append(event.reason)
                if anyio.current_time() - start > 25 * 3600:
                    break
    assert reasons == ["scheduled"]
    first, second = fake.stream_connections[:2]
    assert first.close_reason == "client"  # closed by us, not by the exchange's cut
    assert loop_seconds(second.opened_ms) - loop_seconds(first.opened_ms) == pytest.approx(
        23.5 * 3600, abs=1.0
    )
    assert first.closed_ms is not None
    assert first.closed_ms >= second.opened_ms  # the new one was open first


@pytest.mark.parametrize("source", ["stream", "auto"])
async def test_stream_watcher_alerts_on_the_slide_within_one_period_without_account_weight(
    source: str,
) -> None:
    period = 5.0
    fake = virtual_fake(stream_period=period)
    # uniMMR slides from 3.0 to 1.1 over 190 s: it crosses below 1.20 at t = 180 s.
    Scenario().at(0, uni_mmr="3.0").ramp(190, uni_mmr="1.1").install(fake)
    monitor = RiskMonitor([UniMMRBelow(Decimal("1.20"))])
    async with in_process(fake) as client:
        start = anyio.current_time()
        breach: Breach | None = None
        snapshots = 0
        items = monitor.watch(client, every=period, source=source, reconcile_every=3600.0)  # type: ignore[arg-type]
        async with contextlib.aclosing(items) as watch:
            async for item in watch:
                snapshots += isinstance(item, AccountSnapshot)
                if isinstance(item, Breach):
                    breach = item
                    break
    assert breach is not None
    assert breach.value < Decimal("1.20")
    crossed_at = start + 180.0
    assert crossed_at < breach.snapshot.at <= crossed_at + period + 0.001
    # One account call: the first snapshot (the stream carries no status). Every other
    # snapshot was pushed.
    account_calls = [r for r in fake.requests if r.path == ACCOUNT]
    assert len(account_calls) == 1
    assert snapshots >= 30


# --- over loopback sockets, real time ------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_stream_over_loopback_heals_every_fault(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeExchange(stream_period=0.05)
    faults = [
        StreamFault.UNKNOWN_EVENT,
        StreamFault.MALFORMED_FRAME,
        StreamFault.DROP,
        StreamFault.DISCONNECT,
        StreamFault.EXPIRE_LISTEN_KEY,
        StreamFault.STALL,
    ]
    seen: list[Any] = []
    async with (
        fake.serve() as server,
        PortfolioMarginProClient(
            fake.demo_api_key,
            fake.demo_api_secret,
            base_url=server.base_url,
            stream_url=server.stream_url,
            retry=RetryPolicy(base_delay=0.0, max_delay=0.0),
        ) as client,
    ):
        # A generous bound: this is about healing, not speed (the backoffs are short).
        with anyio.fail_after(60):
            async with client.user_stream(
                stall_after=0.5, backoff_initial=0.02, backoff_max=0.2, close_listen_key=True
            ) as stream:
                async for event in stream:
                    seen.append(event)
                    if isinstance(event, AccountUpdate) and faults:
                        fake.inject_stream(faults.pop(0))
                    elif not faults and sum(isinstance(e, AccountUpdate) for e in seen) > 25:
                        break
                skipped = stream.frames_skipped
    assert skipped == 1
    assert any(isinstance(e, UnknownEvent) for e in seen)
    assert any(isinstance(e, ListenKeyExpired) for e in seen)
    reasons = {e.reason for e in seen if isinstance(e, StreamReconnected)}
    assert {"dropped", "closed_by_server", "listen_key_expired", "stalled"} <= reasons
    assert all(e.snapshot is not None for e in seen if isinstance(e, StreamReconnected))
    assert isinstance(seen[-1], AccountUpdate)
    actions = [r.action for r in fake.listen_key_log]
    assert actions.count("created") == 2  # the expired key was replaced once
    assert actions[-1] == "closed"
    for record in fake.stream_connections:
        assert record.max_incoming_per_second <= 5
    # The listen keys are credentials: in no log line, no event, no repr.
    keys = {r.listen_key for r in fake.listen_key_log if r.listen_key}
    assert len(keys) == 2
    shown = caplog.text + repr(seen) + repr(stream)
    assert caplog.text
    assert not [key for key in keys if key in shown]
