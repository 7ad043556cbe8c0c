"""The response models: open enums, frozen exact structs, Binance's wire names."""

from __future__ import annotations

import inspect
from decimal import Decimal

import msgspec
import pytest

import binance_pmpro
from binance_pmpro.models import AccountInfo, AccountStatus, AccountType, ServerTime

INFO = AccountInfo(
    uni_mmr=Decimal("5167.92171923"),
    account_equity=Decimal("122607.35137903"),
    actual_equity=Decimal("142607.35137903"),
    account_maint_margin=Decimal("23.72469206"),
    account_status=AccountStatus.NORMAL,
    account_type=AccountType.PM_1,
)


def test_account_status_members_match_binance_values() -> None:
    assert [s.value for s in AccountStatus] == [
        "NORMAL",
        "MARGIN_CALL",
        "SUPPLY_MARGIN",
        "REDUCE_ONLY",
        "ACTIVE_LIQUIDATION",
        "FORCE_LIQUIDATION",
        "BANKRUPTED",
        "UNKNOWN",
    ]


def test_account_type_members_match_binance_values() -> None:
    assert [t.value for t in AccountType] == ["PM_1", "PM_2", "PM_3", "UNKNOWN"]


@pytest.mark.parametrize("cls", [AccountStatus, AccountType])
@pytest.mark.parametrize("value", ["SOMETHING_NEW", "", "normal", 5])
def test_open_enum_unknown_value_gives_unknown_member(cls: type, value: object) -> None:
    assert cls(value) is cls.UNKNOWN  # type: ignore[attr-defined]


def test_open_enum_known_value_gives_member_and_compares_as_str() -> None:
    assert AccountStatus("MARGIN_CALL") is AccountStatus.MARGIN_CALL
    assert AccountType.PM_3 == "PM_3"
    assert str(AccountStatus.REDUCE_ONLY) == "REDUCE_ONLY"
    assert f"{AccountType.PM_2}" == "PM_2"


def test_account_info_frozen_assignment_refused() -> None:
    with pytest.raises(AttributeError):
        INFO.uni_mmr = Decimal(0)  # type: ignore[misc]


def test_account_info_keyword_only_construction() -> None:
    with pytest.raises(TypeError):
        AccountInfo(Decimal(1), Decimal(2), Decimal(3), Decimal(4))  # type: ignore[misc]


def test_account_info_ignored_fields_and_raw_default_to_none() -> None:
    assert INFO.account_initial_margin is None
    assert INFO.total_available_balance is None
    assert INFO.account_status_raw is None
    assert INFO.account_type_raw is None


def test_account_info_equal_by_value_and_hashable() -> None:
    twin = msgspec.structs.replace(INFO)
    assert twin == INFO
    assert hash(twin) == hash(INFO)
    assert msgspec.structs.replace(INFO, uni_mmr=Decimal("5167.92171924")) != INFO


def test_account_info_wire_names_are_binance_field_names() -> None:
    names = {f.name: f.encode_name for f in msgspec.structs.fields(AccountInfo)}
    assert names == {
        "uni_mmr": "uniMMR",
        "account_equity": "accountEquity",
        "actual_equity": "actualEquity",
        "account_maint_margin": "accountMaintMargin",
        "account_initial_margin": "accountInitialMargin",
        "total_available_balance": "totalAvailableBalance",
        "account_status": "accountStatus",
        "account_type": "accountType",
        "account_status_raw": "accountStatus.raw",
        "account_type_raw": "accountType.raw",
    }


def test_account_info_amount_fields_typed_decimal() -> None:
    hints = {f.name: f.type for f in msgspec.structs.fields(AccountInfo)}
    for name in (
        "uni_mmr",
        "account_equity",
        "actual_equity",
        "account_maint_margin",
        "account_initial_margin",
        "total_available_balance",
    ):
        assert hints[name] == Decimal | None, name


def test_account_info_encodes_amounts_as_exact_strings() -> None:
    encoded = msgspec.json.decode(msgspec.json.encode(INFO))
    assert encoded["uniMMR"] == "5167.92171923"
    assert encoded["accountStatus"] == "NORMAL"
    assert encoded["accountType"] == "PM_1"


def test_server_time_decodes_server_time_field() -> None:
    assert msgspec.json.decode(b'{"serverTime": 1499827319559}', type=ServerTime).server_time == (
        1499827319559
    )


def test_models_exported_from_package_root() -> None:
    assert binance_pmpro.AccountInfo is AccountInfo
    assert binance_pmpro.AccountStatus is AccountStatus
    assert binance_pmpro.AccountType is AccountType


@pytest.mark.parametrize("obj", [AccountInfo, AccountStatus, AccountType, ServerTime])
def test_model_public_names_documented(obj: type) -> None:
    assert inspect.getdoc(obj)
