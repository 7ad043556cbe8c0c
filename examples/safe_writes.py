"""Safe writes: repay the bankruptcy loan at most once, and test what happens when the
answer is lost."""

from __future__ import annotations

from decimal import Decimal

from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.portfolio import WriteOutcomeUnknownError
from binance_pmpro.testing import FakeExchange, FaultKind


# --8<-- [start:repay]
async def repay_once(client: PortfolioMarginProClient) -> str:
    """Repay the bankruptcy loan if there is one; never twice."""
    loan = await client.bankruptcy_loan()
    if not loan.amount:
        return "no loan"
    try:
        tran_id = await client.repay_bankruptcy_loan()
    except WriteOutcomeUnknownError as exc:
        # The repayment may or may not have happened; exc.verify says where to look
        # (the repay history and the loan), exc.cause is the timeout, 5xx, ...
        after = await client.bankruptcy_loan()
        if after.amount == 0:
            return "repaid (its answer was lost; the repay history has the transaction)"
        return f"still owed {after.amount} {after.asset}: {exc.cause}"
    return f"repaid, transaction {tran_id}"


# --8<-- [end:repay]


# --8<-- [start:test]
def lost_answer_exchange() -> FakeExchange:
    """A fake exchange that executes the repayment but answers too late for the client."""
    fake = FakeExchange()
    fake.inject(FaultKind.SLOW_RESPONSE, delay=30, path="/sapi/v1/portfolio/repay")
    return fake


def assert_repaid_once(fake: FakeExchange) -> None:
    state = fake.portfolio_state()
    assert state.loan_amount == 0
    assert [row.amount for row in state.repays if row.asset == "BUSD"] == [Decimal("579.45")]


# --8<-- [end:test]
