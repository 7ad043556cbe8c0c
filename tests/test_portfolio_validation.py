"""Local checks: what Binance documents is refused before any weight is spent (Decision 12),
and the per-endpoint cap ledger."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from _portfolio import bound_client
from binance_pmpro.endpoints import (
    ASSET_COLLECTION,
    ASSET_INDEX_PRICE,
    BNB_TRANSFER,
    EARN_ASSET_TRANSFER,
    INTEREST_HISTORY,
    REPAY,
    REPAY_HISTORY,
    SET_AUTO_REPAY,
    SET_MARGIN_CALL_LEVEL,
)
from binance_pmpro.errors import ConfigurationError
from binance_pmpro.models import EarnAsset, EarnTransferType, RepaySource, TransferSide
from binance_pmpro.testing import FakeExchange
from binance_pmpro.validation import CapLedger, EndpointCapError, ParameterError, prepare_params

UTC = timezone.utc


# --- prepare_params -------------------------------------------------------------------------


def test_prepare_params_enums_and_decimals_wire_values_in_table_order() -> None:
    wire = prepare_params(
        EARN_ASSET_TRANSFER,
        {
            "amount": Decimal("0.10"),
            "transferType": EarnTransferType.FUTURE_TO_EARN,
            "asset": EarnAsset.RWUSD,
        },
    )
    assert list(wire.items()) == [
        ("asset", "RWUSD"),
        ("transferType", "FUTURE_TO_EARN"),
        ("amount", Decimal("0.10")),
    ]


def test_prepare_params_none_values_left_out() -> None:
    assert prepare_params(REPAY, {"from": None}) == {}
    assert prepare_params(REPAY, {"from": RepaySource.MARGIN}) == {"from": "MARGIN"}


def test_prepare_params_bool_choice_sent_as_true_false() -> None:
    assert prepare_params(SET_AUTO_REPAY, {"autoRepay": False}) == {"autoRepay": "false"}
    assert prepare_params(SET_AUTO_REPAY, {"autoRepay": "true"}) == {"autoRepay": "true"}


def test_prepare_params_aware_datetime_becomes_exact_epoch_ms() -> None:
    moment = datetime(2024, 11, 11, 14, 47, 7, 804_999, tzinfo=UTC)
    wire = prepare_params(REPAY_HISTORY, {"startTime": moment})
    assert wire == {"startTime": 1731336427804}


def test_prepare_params_asset_names_are_left_to_binance() -> None:
    assert prepare_params(ASSET_INDEX_PRICE, {"asset": "NEWCOIN"}) == {"asset": "NEWCOIN"}
    assert (
        prepare_params(
            EARN_ASSET_TRANSFER,
            {
                "asset": "LDNEW",
                "transferType": "EARN_TO_FUTURE",
                "amount": 1,
            },
        )["asset"]
        == "LDNEW"
    )


BAD: list[tuple[Any, dict[str, Any], str]] = [
    (BNB_TRANSFER, {"transferSide": "TO_UM"}, "amount is mandatory"),
    (BNB_TRANSFER, {"amount": Decimal(1)}, "transferSide is mandatory"),
    (BNB_TRANSFER, {"amount": Decimal(0), "transferSide": "TO_UM"}, "must be positive"),
    (BNB_TRANSFER, {"amount": Decimal(-1), "transferSide": "TO_UM"}, "must be positive"),
    (BNB_TRANSFER, {"amount": 0.1, "transferSide": "TO_UM"}, "never a float"),
    (BNB_TRANSFER, {"amount": "1e", "transferSide": "TO_UM"}, "not a decimal number"),
    (BNB_TRANSFER, {"amount": Decimal("NaN"), "transferSide": "TO_UM"}, "must be finite"),
    (BNB_TRANSFER, {"amount": Decimal(1), "transferSide": "SIDEWAYS"}, "one of TO_UM, FROM_UM"),
    (BNB_TRANSFER, {"amount": 1, "transferSide": "TO_UM", "x": 1}, "unknown parameter"),
    (SET_MARGIN_CALL_LEVEL, {"marginCallLevel": Decimal("1.09")}, "within [1.1, 2.0]"),
    (SET_MARGIN_CALL_LEVEL, {"marginCallLevel": Decimal("2.01")}, "within [1.1, 2.0]"),
    (REPAY, {"from": "FUTURES"}, "one of SPOT, MARGIN"),
    (SET_AUTO_REPAY, {"autoRepay": "yes"}, "True or False"),
    (SET_AUTO_REPAY, {}, "autoRepay is mandatory"),
    (EARN_ASSET_TRANSFER, {"asset": "LDUSDT", "transferType": "IN", "amount": 1}, "one of"),
    (ASSET_COLLECTION, {"asset": ""}, "non-empty string"),
    (REPAY_HISTORY, {"size": 101}, "within [1, 100]"),
    (REPAY_HISTORY, {"current": 0}, "at least 1"),
    (REPAY_HISTORY, {"size": True}, "must be an int"),
    (REPAY_HISTORY, {"startTime": datetime(2024, 1, 1)}, "no time zone"),
    (REPAY_HISTORY, {"startTime": 2_000, "endTime": 1_000}, "after endTime"),
    (REPAY_HISTORY, {"startTime": 0, "endTime": 361 * 86_400_000}, "more than 360 days"),
    (INTEREST_HISTORY, {"size": 0}, "within [1, 100]"),
]


@pytest.mark.parametrize(("endpoint", "values", "message"), BAD)
def test_prepare_params_bad_value_raises_naming_the_rule(
    endpoint: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        prepare_params(endpoint, values)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{endpoint.method} {endpoint.path}: ")
    assert isinstance(caught.value, ConfigurationError)  # a ValueError and a BinanceError


def test_prepare_params_360_days_exactly_allowed() -> None:
    wire = prepare_params(REPAY_HISTORY, {"startTime": 0, "endTime": 360 * 86_400_000})
    assert wire == {"startTime": 0, "endTime": 360 * 86_400_000}


def test_margin_call_level_bounds_inclusive() -> None:
    for level in ("1.1", "2.0", "1.10000000"):
        assert prepare_params(SET_MARGIN_CALL_LEVEL, {"marginCallLevel": Decimal(level)})


# --- the client refuses before sending --------------------------------------------------------


@pytest.mark.anyio
async def test_client_bad_arguments_raise_before_any_request() -> None:
    fake = FakeExchange()
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(ParameterError, match="marginCallLevel"):
            await client.set_margin_call_level(level=Decimal("2.5"))
        with pytest.raises(ParameterError, match="amount must be positive"):
            await client.bnb_transfer(amount=Decimal(0), side=TransferSide.TO_UM)
        with pytest.raises(ParameterError, match="transferSide"):
            await client.bnb_transfer(amount=Decimal(1), side="UP")  # type: ignore[arg-type]
        with pytest.raises(ParameterError, match="360 days"):
            await client.repay_history(
                start=datetime(2023, 1, 1, tzinfo=UTC), end=datetime(2024, 1, 1, tzinfo=UTC)
            )
        with pytest.raises(ParameterError, match="no time zone"):
            await client.interest_history(start=datetime(2024, 1, 1))
        with pytest.raises(ParameterError, match="start is after end"):
            async for _ in client.iter_repay_history(
                start=datetime(2024, 2, 1, tzinfo=UTC), end=datetime(2024, 1, 1, tzinfo=UTC)
            ):
                pass
    assert fake.requests == []
    assert fake.ledger == []


# --- the cap ledger ---------------------------------------------------------------------------


def test_cap_ledger_refuses_third_bnb_transfer_within_ten_minutes() -> None:
    ledger = CapLedger()
    ledger.check(BNB_TRANSFER, 100.0)
    ledger.record(BNB_TRANSFER, 100.0)
    ledger.record(BNB_TRANSFER, 400.0)
    with pytest.raises(EndpointCapError) as caught:
        ledger.check(BNB_TRANSFER, 650.0)
    assert caught.value.local is True
    assert caught.value.retry_after == pytest.approx(50.0)
    assert "2 per 10 minutes" in str(caught.value)
    ledger.check(BNB_TRANSFER, 700.0)  # the first call left the rolling window


def test_cap_ledger_ignores_endpoints_without_cap() -> None:
    ledger = CapLedger()
    for _ in range(100):
        ledger.record(REPAY, 0.0)
        ledger.check(REPAY, 0.0)


def test_cap_ledger_counts_per_endpoint() -> None:
    ledger = CapLedger()
    for second in range(20):
        ledger.record(SET_AUTO_REPAY, float(second))
    ledger.check(BNB_TRANSFER, 30.0)
    with pytest.raises(EndpointCapError, match="20 per day"):
        ledger.check(SET_AUTO_REPAY, 30.0)
    ledger.check(SET_AUTO_REPAY, timedelta(days=1).total_seconds() + 0.5)
