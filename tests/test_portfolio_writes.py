"""Writes are not reads: a POST/DELETE that may have reached Binance is never sent again,
and its unknown outcome reaches the caller as WriteOutcomeUnknownError naming what to check;
a write that provably never left (connect failure) is retried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from _portfolio import Client, bound_client
from binance_pmpro.endpoints import BNB_TRANSFER, REPAY, SET_MARGIN_CALL_LEVEL, Endpoint
from binance_pmpro.errors import (
    BinanceError,
    ConnectError,
    ConnectionLostError,
    DecodeError,
    OutcomeUnknownError,
    ReadTimeoutError,
    ServerError,
)
from binance_pmpro.events import RequestEvent
from binance_pmpro.models import TransferSide
from binance_pmpro.portfolio import WriteOutcomeUnknownError
from binance_pmpro.requests import PreparedRequest
from binance_pmpro.retry import RetryPolicy
from binance_pmpro.testing import FakeExchange, FaultKind
from binance_pmpro.transport import Response
from binance_pmpro.transport.httpx import HttpxTransport
from binance_pmpro.validation import EndpointCapError

pytestmark = pytest.mark.anyio

RETRIES = RetryPolicy(base_delay=0.0, max_delay=0.0)
ATTEMPTS = RETRIES.max_attempts
MODES = ["in_process", "loopback"]

# kind, options, the underlying error, whether the exchange executed the request
FAULTS: list[tuple[FaultKind, dict[str, Any], type[BinanceError], bool]] = [
    (FaultKind.SLOW_RESPONSE, {"delay": 5.0}, ReadTimeoutError, True),
    (FaultKind.SERVER_ERROR_JSON, {}, ServerError, False),
    (FaultKind.SERVER_ERROR_EMPTY, {}, ServerError, False),
    (FaultKind.HTML_ERROR_PAGE, {}, ServerError, False),
    (FaultKind.ERROR, {"status": 400, "code": -1007, "msg": "Timeout"}, ServerError, False),
    (FaultKind.DROP_CONNECTION, {}, ConnectionLostError, False),
    (FaultKind.RESET_MID_BODY, {}, ConnectionLostError, True),
    (FaultKind.TRUNCATED_JSON, {}, DecodeError, True),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "options", "cause", "executed"), FAULTS, ids=[f[0].value for f in FAULTS]
)
async def test_write_with_unknown_outcome_is_sent_once_and_says_what_to_check(
    mode: str,
    kind: FaultKind,
    options: dict[str, Any],
    cause: type[BinanceError],
    executed: bool,
) -> None:
    fake = FakeExchange()
    async with bound_client(fake, mode, retry=RETRIES, timeout=0.2) as client:
        await client.sync_time()
        fake.inject(kind, times=ATTEMPTS + 2, path=REPAY.path, **options)
        with pytest.raises(WriteOutcomeUnknownError) as caught:
            await client.repay_bankruptcy_loan()
    error = caught.value
    assert isinstance(error, OutcomeUnknownError)
    assert isinstance(error.cause, cause)
    assert error.__cause__ is error.cause
    assert (error.method, error.path, error.endpoint) == (
        "POST",
        REPAY.path,
        "repay_bankruptcy_loan",
    )
    assert "pmloan-history" in error.verify
    assert "not sent again" in str(error)
    assert "check the repay history" in str(error)
    assert [r.path for r in fake.requests].count(REPAY.path) == 1
    # Why it must not be resent blindly: the repay history is where the truth is.
    state = fake.portfolio_state()
    assert (state.loan_amount == 0) is executed
    assert any(row.asset == "BUSD" for row in state.repays) is executed


@pytest.mark.parametrize(
    ("kind", "options", "cause", "executed"),
    [f for f in FAULTS if f[2] is not DecodeError],
    ids=[f[0].value for f in FAULTS if f[2] is not DecodeError],
)
async def test_read_with_the_same_faults_is_retried(
    kind: FaultKind, options: dict[str, Any], cause: type[BinanceError], executed: bool
) -> None:
    fake = FakeExchange()
    path = "/sapi/v1/portfolio/pmLoan"
    async with bound_client(fake, "in_process", retry=RETRIES, timeout=0.2) as client:
        await client.sync_time()
        fake.inject(kind, times=1, path=path, **options)
        loan = await client.bankruptcy_loan()
    assert loan.amount == Decimal("579.45")
    assert [r.path for r in fake.requests].count(path) == 2


WRITES: list[tuple[Endpoint, Callable[[Client], Awaitable[Any]], str]] = [
    (
        BNB_TRANSFER,
        lambda c: c.bnb_transfer(amount=Decimal("1"), side=TransferSide.TO_UM),
        "balances",
    ),
    (
        SET_MARGIN_CALL_LEVEL,
        lambda c: c.set_margin_call_level(level=Decimal("1.5")),
        "margin_call_level()",
    ),
]


@pytest.mark.parametrize(("endpoint", "call", "verify"), WRITES, ids=[w[0].name for w in WRITES])
async def test_every_write_kind_names_its_own_check(
    endpoint: Endpoint, call: Callable[[Client], Awaitable[Any]], verify: str
) -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process", retry=RETRIES) as client:
        await client.sync_time()
        fake.inject(FaultKind.SERVER_ERROR_JSON, times=ATTEMPTS, path=endpoint.path)
        with pytest.raises(WriteOutcomeUnknownError) as caught:
            await call(client)
    assert verify in caught.value.verify
    assert [r.path for r in fake.requests].count(endpoint.path) == 1


async def test_write_outcome_unknown_counts_on_the_cap_ledger() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process", retry=RETRIES) as client:
        await client.sync_time()
        fake.inject(FaultKind.SERVER_ERROR_JSON, times=2, path=BNB_TRANSFER.path)
        for _ in range(2):
            with pytest.raises(WriteOutcomeUnknownError):
                await client.bnb_transfer(amount=Decimal("1"), side=TransferSide.TO_UM)
        # Both may have been executed: a third within 10 minutes could break Binance's cap.
        with pytest.raises(EndpointCapError, match="2 per 10 minutes"):
            await client.bnb_transfer(amount=Decimal("1"), side=TransferSide.TO_UM)


class RefuseFirst:
    """A transport that fails the first ``refusals`` sends as a refused connection (nothing
    sent), then delegates."""

    def __init__(self, inner: HttpxTransport, refusals: int) -> None:
        self.inner = inner
        self.refusals = refusals

    async def send(self, request: PreparedRequest) -> Response:
        if self.refusals > 0:
            self.refusals -= 1
            raise ConnectError("connection refused", method=request.method, path=request.path)
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_write_whose_connect_failed_is_retried_and_executed_once() -> None:
    fake = FakeExchange()
    events: list[RequestEvent] = []
    async with fake.http_client() as http:
        transport = RefuseFirst(HttpxTransport(fake.base_url, client=http), refusals=1)
        async with Client(
            fake.demo_api_key,
            fake.demo_api_secret,
            base_url=fake.base_url,
            transport=transport,
            retry=RETRIES,
            time_sync=False,
            hooks=[events.append],
        ) as client:
            tran_id = await client.repay_bankruptcy_loan()
    starts = [e.attempt for e in events if e.phase == "start" and e.path == REPAY.path]
    assert starts == [1, 2]
    assert tran_id > 2**53
    assert [r.path for r in fake.requests].count(REPAY.path) == 1
    assert fake.portfolio_state().loan_amount == 0


async def test_write_to_closed_port_is_retried_then_raises_connect_error_not_outcome_unknown(
    unused_tcp_port: int,
) -> None:
    events: list[RequestEvent] = []
    async with Client(
        "k" * 64,
        "s" * 64,
        base_url=f"http://127.0.0.1:{unused_tcp_port}",
        retry=RETRIES,
        time_sync=False,
        hooks=[events.append],
    ) as client:
        with pytest.raises(ConnectError) as caught:
            await client.set_margin_call_level(level=Decimal("1.5"))
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert [e.attempt for e in events if e.phase == "start"] == list(range(1, ATTEMPTS + 1))
