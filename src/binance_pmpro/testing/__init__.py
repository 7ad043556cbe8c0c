"""Test against a fake Binance: :class:`FakeExchange`, its faults, and a pytest plugin.

    from binance_pmpro import PortfolioMarginProClient
    from binance_pmpro.testing import FakeExchange, FaultKind

    fake = FakeExchange()
    fake.set_account(uni_mmr="1.08", account_status="MARGIN_CALL")
    fake.inject(FaultKind.HTML_ERROR_PAGE, path="/sapi/v1/portfolio/account")  # a 502 page
    async with PortfolioMarginProClient(
        fake.demo_api_key, fake.demo_api_secret,
        base_url=fake.base_url, http_client=fake.http_client(),
    ) as client:
        info = await client.account_info()

Every Portfolio Margin Pro endpoint is served with per-account state
(:meth:`FakeExchange.portfolio_state`): transfers and fund collection move the balances, a
repayment clears the loan and shows in the repay history, the switches show in their
queries, and Binance's per-endpoint caps and date-range rules apply.

With pytest, the ``fake_exchange`` and ``fake_client`` fixtures do the wiring (the plugin
is registered on install). ``async with fake.serve() as server:`` serves the same exchange
over real HTTP on 127.0.0.1 for other processes and languages. A :class:`Scenario` scripts
the account over time (``uniMMR`` sliding, status changes) for testing a risk watcher.

The Portfolio Margin Pro user data stream is played too: the listen key calls
(``/fapi/v1/listenKey``) and a WebSocket stream at ``<stream_url>/ws/<listenKey>`` that sends
``PM_PRO_ACCOUNT_UPDATE`` every ``stream_period`` seconds from the same account state,
``riskLevelChange``, pings and Binance's connection rules, with faults on demand
(:class:`StreamFault`). :meth:`FakeExchange.ws_connector` opens it in-process;
``server.stream_url`` serves it over loopback.
"""

from ._exchange import (
    DEFAULT_ACCOUNT,
    FAKE_BASE_URL,
    FAKE_STREAM_URL,
    ExchangeError,
    FakeExchange,
    FakeRequest,
    Handler,
    Reply,
    ReplyAction,
    RequestRecord,
    WeightKey,
    WindowUsage,
    register_handler,
)
from ._faults import FaultKind, FaultRule
from ._portfolio import InterestRow, PortfolioState, RepayRow
from ._scenario import Scenario
from ._server import FakeServer
from ._stream import ListenKeyRecord, StreamConnection, StreamFault, StreamFaultRule
from ._transport import FakeTransport
from ._ws import FakeWebSocket, FakeWebSocketConnector

__all__ = [
    "DEFAULT_ACCOUNT",
    "FAKE_BASE_URL",
    "FAKE_STREAM_URL",
    "ExchangeError",
    "FakeExchange",
    "FakeRequest",
    "FakeServer",
    "FakeTransport",
    "FakeWebSocket",
    "FakeWebSocketConnector",
    "FaultKind",
    "FaultRule",
    "Handler",
    "InterestRow",
    "ListenKeyRecord",
    "PortfolioState",
    "RepayRow",
    "Reply",
    "ReplyAction",
    "RequestRecord",
    "Scenario",
    "StreamConnection",
    "StreamFault",
    "StreamFaultRule",
    "WeightKey",
    "WindowUsage",
    "register_handler",
]
