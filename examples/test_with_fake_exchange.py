"""Testing your own code against FakeExchange with the pytest plugin's fixtures.

Installing binance-pmpro registers the plugin: the ``fake_exchange`` and ``fake_client``
fixtures are there in every test session, no conftest needed. Run with
``pytest examples/test_with_fake_exchange.py``.
"""

from __future__ import annotations

# --8<-- [start:code-under-test]
from decimal import Decimal

import pytest

from binance_pmpro import AccountStatus, PortfolioMarginProClient, ServerError
from binance_pmpro.testing import FakeExchange, FaultKind

ACCOUNT = "/sapi/v1/portfolio/account"


async def may_open_positions(client: PortfolioMarginProClient) -> bool:
    """Your code: trade only with a comfortable margin and a NORMAL account."""
    info = await client.account_info()
    return (
        info.account_status is AccountStatus.NORMAL
        and info.uni_mmr is not None
        and info.uni_mmr > Decimal("1.5")
    )


# --8<-- [end:code-under-test]


# --8<-- [start:backend]
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test on asyncio and on trio (anyio's default is asyncio only)."""
    return str(request.param)


# --8<-- [end:backend]


# --8<-- [start:tests]
@pytest.mark.anyio
async def test_may_open_positions_with_the_documented_account_says_yes(
    fake_client: PortfolioMarginProClient,
) -> None:
    # A fresh FakeExchange serves Binance's documentation example: uniMMR 5167.92...
    assert await may_open_positions(fake_client)


@pytest.mark.anyio
async def test_may_open_positions_on_margin_call_says_no(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    fake_exchange.set_account(uni_mmr=Decimal("1.18"), account_status="MARGIN_CALL")
    assert not await may_open_positions(fake_client)


@pytest.mark.anyio
async def test_may_open_positions_after_one_bad_gateway_still_answers(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    # The next account request gets a 502 page. (Without path= a fault hits the next
    # request of any path: a new client's first request is its clock sync.)
    fake_exchange.inject(FaultKind.HTML_ERROR_PAGE, path=ACCOUNT)
    assert await may_open_positions(fake_client)  # the client retried the read
    assert [r.status for r in fake_exchange.requests if r.path == ACCOUNT] == [502, 200]


@pytest.mark.anyio
async def test_may_open_positions_when_binance_keeps_failing_raises(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    fake_exchange.inject(FaultKind.SERVER_ERROR_JSON, path=ACCOUNT, times=3)  # every attempt
    with pytest.raises(ServerError):
        await may_open_positions(fake_client)


# --8<-- [end:tests]
