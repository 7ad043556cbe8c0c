"""Typed, exact responses: msgspec Structs and open enums.

Conventions shared by every model here:

- Field names are snake_case; the wire (camelCase) name is given with ``field(name=...)``.
- Money and ratios are :class:`decimal.Decimal`, exact to the last digit Binance sent, never
  float. Binance's documented quirks decode: ``"122,559.90199491"`` (thousands separators in
  strict groups of three) and ``""`` (empty, decoded as ``None``). Anything else that is not
  a finite decimal number is a :class:`~binance_pmpro.errors.DecodeError` naming the field.
- Enums are *open*: a value Binance adds after this release decodes to the member
  ``UNKNOWN`` and the string Binance sent is kept in the companion ``<field>_raw`` attribute
  (``None`` when the value is known). Detect it with ``x.account_status is
  AccountStatus.UNKNOWN``.
- Fields Binance may leave out have defaults; unknown extra fields are ignored.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec

__all__ = [
    "AccountInfo",
    "AccountStatus",
    "AccountType",
    "AssetIndexPrice",
    "AssetLeverage",
    "AutoRepayStatus",
    "Balance",
    "BankruptcyLoan",
    "CollateralRate",
    "CollateralTier",
    "DeltaModeStatus",
    "EarnAsset",
    "EarnAssetBalance",
    "EarnTransferType",
    "InterestRecord",
    "MarginCallLevel",
    "OperationResult",
    "PortfolioSnapshot",
    "RepayHistoryPage",
    "RepayRecord",
    "RepaySource",
    "RiskUnitMaintenance",
    "ServerTime",
    "SpanAccountInfo",
    "TieredCollateralRate",
    "TransactionResult",
    "TransferSide",
    "datetime_to_ms",
    "ms_to_datetime",
]


UNKNOWN_VALUES_SEEN = [0]
"""How many unknown enum values have been decoded so far (a counter the decoder compares)."""


class _OpenEnum(str, enum.Enum):
    """A str enum whose unknown values become ``UNKNOWN`` instead of raising."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        # msgspec and plain calls (`AccountStatus("X")`) both land here for values this
        # release does not know. Counting them lets the decoder's fast path notice, without
        # inspecting every field, that it must go back for the raw string.
        UNKNOWN_VALUES_SEEN[0] += 1
        return cls.__members__["UNKNOWN"]

    def __str__(self) -> str:
        return str(self.value)


class AccountStatus(_OpenEnum):
    """``accountStatus``: where the account stands on Binance's risk ladder.

    From least to most severe: ``NORMAL``; ``MARGIN_CALL`` (add margin); ``SUPPLY_MARGIN``
    (add margin again); ``REDUCE_ONLY`` (trading restricted to reducing positions);
    ``ACTIVE_LIQUIDATION`` (liquidation started by the user); ``FORCE_LIQUIDATION``
    (Binance is liquidating); ``BANKRUPTED``. ``UNKNOWN`` stands for a value this release
    does not know; the raw string is in ``AccountInfo.account_status_raw``.
    """

    NORMAL = "NORMAL"
    MARGIN_CALL = "MARGIN_CALL"
    SUPPLY_MARGIN = "SUPPLY_MARGIN"
    REDUCE_ONLY = "REDUCE_ONLY"
    ACTIVE_LIQUIDATION = "ACTIVE_LIQUIDATION"
    FORCE_LIQUIDATION = "FORCE_LIQUIDATION"
    BANKRUPTED = "BANKRUPTED"
    UNKNOWN = "UNKNOWN"


class AccountType(_OpenEnum):
    """``accountType``: ``PM_1`` = Portfolio Margin Pro, ``PM_2`` = Portfolio Margin,
    ``PM_3`` = Portfolio Margin Pro SPAN. ``UNKNOWN`` stands for a value this release does
    not know; the raw string is in ``AccountInfo.account_type_raw``."""

    PM_1 = "PM_1"
    PM_2 = "PM_2"
    PM_3 = "PM_3"
    UNKNOWN = "UNKNOWN"


class AccountInfo(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /sapi/v1/portfolio/account``: the Portfolio Margin Pro account's risk summary.

    All amounts are in USD. ``None`` means Binance sent an empty string.
    """

    uni_mmr: Decimal | None = msgspec.field(name="uniMMR")
    """Unified maintenance-margin ratio: unified equity / unified maintenance margin.
    Above 1.5 trading is free; at or below 1.05 the account risks liquidation (Binance: keep it
    above 1.05)."""
    account_equity: Decimal | None = msgspec.field(name="accountEquity")
    """Account equity after collateral rates (USD)."""
    actual_equity: Decimal | None = msgspec.field(name="actualEquity")
    """Account equity ignoring collateral rates (USD)."""
    account_maint_margin: Decimal | None = msgspec.field(name="accountMaintMargin")
    """Maintenance margin the account's positions and loans require (USD)."""
    account_initial_margin: Decimal | None = msgspec.field(
        default=None, name="accountInitialMargin"
    )
    """Binance: "ignored for PM PRO and PM PRO SPAN". Kept for completeness; absent → None."""
    total_available_balance: Decimal | None = msgspec.field(
        default=None, name="totalAvailableBalance"
    )
    """Binance: "ignored for PM PRO and PM PRO SPAN"; its documented example carries a
    thousands separator (``"122,559.90199491"``), which decodes. Absent → None."""
    account_status: AccountStatus = msgspec.field(name="accountStatus")
    """Where the account stands on the risk ladder (see :class:`AccountStatus`)."""
    account_type: AccountType = msgspec.field(name="accountType")
    """PM_1 (PM Pro), PM_2 (PM) or PM_3 (PM Pro SPAN)."""
    account_status_raw: str | None = msgspec.field(default=None, name="accountStatus.raw")
    """The string Binance sent when ``account_status`` is ``UNKNOWN``; None otherwise."""
    account_type_raw: str | None = msgspec.field(default=None, name="accountType.raw")
    """The string Binance sent when ``account_type`` is ``UNKNOWN``; None otherwise."""


class ServerTime(msgspec.Struct, frozen=True):
    """``GET /api/v3/time``: Binance's clock, milliseconds since the epoch."""

    server_time: int = msgspec.field(name="serverTime")


# --- the rest of the Portfolio Margin Pro family (reference section 7) ---------------------
#
# Request-side choices are *closed* enums: a value outside them is refused locally before any
# weight is spent. Response models follow the conventions of the module docstring. Times are
# whole milliseconds since the epoch in ``*_ms`` fields, with an aware UTC ``datetime``
# property of the same name without the suffix.

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ms_to_datetime(ms: int) -> datetime:
    """Binance's epoch milliseconds as an aware UTC ``datetime`` (exact: no float step)."""
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(moment: datetime) -> int:
    """An aware ``datetime`` as Binance's epoch milliseconds (sub-millisecond part dropped).

    Raises ``ValueError`` for a naive ``datetime``: its time zone would be a guess.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{moment.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. datetime(..., tzinfo=timezone.utc))"
        )
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class TransferSide(str, enum.Enum):
    """``transferSide`` of ``POST /sapi/v1/portfolio/bnb-transfer``: BNB into the USDⓈ-M
    futures wallet (``TO_UM``) or back to the margin wallet (``FROM_UM``)."""

    TO_UM = "TO_UM"
    FROM_UM = "FROM_UM"

    def __str__(self) -> str:
        return str(self.value)


class RepaySource(str, enum.Enum):
    """``from``: the wallet a repayment is paid from (Binance's default: ``SPOT``)."""

    SPOT = "SPOT"
    MARGIN = "MARGIN"

    def __str__(self) -> str:
        return str(self.value)


class EarnTransferType(str, enum.Enum):
    """``transferType`` of the Earn-asset endpoints: from Binance Earn into the futures
    wallet (``EARN_TO_FUTURE``) or back (``FUTURE_TO_EARN``)."""

    EARN_TO_FUTURE = "EARN_TO_FUTURE"
    FUTURE_TO_EARN = "FUTURE_TO_EARN"

    def __str__(self) -> str:
        return str(self.value)


class EarnAsset(str, enum.Enum):
    """The Earn assets Binance documents for the Earn-asset endpoints. Not a closed list:
    the methods take any asset name as a string too and leave its check to Binance."""

    LDUSDT = "LDUSDT"
    RWUSD = "RWUSD"

    def __str__(self) -> str:
        return str(self.value)


class RiskUnitMaintenance(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``riskUnitMMList``: the maintenance margin of one risk unit."""

    asset: str
    uni_maintain_usd: Decimal | None = msgspec.field(name="uniMaintainUsd")
    """Maintenance margin of the risk unit (USD)."""


class SpanAccountInfo(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /sapi/v2/portfolio/account``: the account summary of a Portfolio Margin Pro
    SPAN account, with the maintenance margin per risk unit. All amounts in USD."""

    uni_mmr: Decimal | None = msgspec.field(name="uniMMR")
    """Unified maintenance-margin ratio."""
    account_equity: Decimal | None = msgspec.field(name="accountEquity")
    """Account equity after collateral rates (USD)."""
    actual_equity: Decimal | None = msgspec.field(name="actualEquity")
    """Account equity ignoring collateral rates (USD)."""
    account_maint_margin: Decimal | None = msgspec.field(name="accountMaintMargin")
    """Total maintenance margin (USD)."""
    risk_unit_mm_list: list[RiskUnitMaintenance] = msgspec.field(
        default_factory=list, name="riskUnitMMList"
    )
    """Maintenance margin per risk unit (USD)."""
    margin_mm: Decimal | None = msgspec.field(default=None, name="marginMM")
    """Maintenance margin of the cross-margin part (USD)."""
    other_mm: Decimal | None = msgspec.field(default=None, name="otherMM")
    """Maintenance margin of everything else (USD)."""
    account_status: AccountStatus = msgspec.field(name="accountStatus")
    """Where the account stands on the risk ladder (see :class:`AccountStatus`)."""
    account_type: AccountType = msgspec.field(name="accountType")
    """PM_1 (PM Pro), PM_2 (PM) or PM_3 (PM Pro SPAN)."""
    account_status_raw: str | None = msgspec.field(default=None, name="accountStatus.raw")
    """The string Binance sent when ``account_status`` is ``UNKNOWN``; None otherwise."""
    account_type_raw: str | None = msgspec.field(default=None, name="accountType.raw")
    """The string Binance sent when ``account_type`` is ``UNKNOWN``; None otherwise."""


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    """One asset of ``GET /sapi/v1/portfolio/balance``. Amounts are in units of ``asset``;
    ``None`` means Binance sent an empty string (its own example does, for
    ``cmUnrealizedPNL``) or, for the newer fields, left the field out."""

    asset: str
    total_wallet_balance: Decimal | None = msgspec.field(name="totalWalletBalance")
    cross_margin_asset: Decimal | None = msgspec.field(name="crossMarginAsset")
    cross_margin_borrowed: Decimal | None = msgspec.field(name="crossMarginBorrowed")
    cross_margin_free: Decimal | None = msgspec.field(name="crossMarginFree")
    cross_margin_interest: Decimal | None = msgspec.field(name="crossMarginInterest")
    cross_margin_locked: Decimal | None = msgspec.field(name="crossMarginLocked")
    um_wallet_balance: Decimal | None = msgspec.field(name="umWalletBalance")
    """USDⓈ-M futures wallet balance."""
    um_unrealized_pnl: Decimal | None = msgspec.field(name="umUnrealizedPNL")
    cm_wallet_balance: Decimal | None = msgspec.field(name="cmWalletBalance")
    """COIN-M futures wallet balance."""
    cm_unrealized_pnl: Decimal | None = msgspec.field(name="cmUnrealizedPNL")
    update_time_ms: int = msgspec.field(default=0, name="updateTime")
    """Last update, epoch ms (Binance's English example sends 0)."""
    negative_balance: Decimal | None = msgspec.field(default=None, name="negativeBalance")
    option_wallet_balance: Decimal | None = msgspec.field(default=None, name="optionWalletBalance")
    """Binance: for PM PRO SPAN only."""
    option_equity: Decimal | None = msgspec.field(default=None, name="optionEquity")
    """Binance: for PM PRO SPAN only."""

    @property
    def update_time(self) -> datetime:
        """``update_time_ms`` as an aware UTC datetime."""
        return ms_to_datetime(self.update_time_ms)


class CollateralRate(msgspec.Struct, frozen=True, kw_only=True):
    """One asset of ``GET /sapi/v1/portfolio/collateralRate``."""

    asset: str
    collateral_rate: Decimal | None = msgspec.field(name="collateralRate")
    """Share of the asset's value that counts as collateral (``1.0000`` = all of it)."""


class CollateralTier(msgspec.Struct, frozen=True, kw_only=True):
    """One tier of a tiered collateral rate: the rate that applies between ``tier_floor``
    and ``tier_cap`` (USD value), with ``cum`` the cumulative deduction."""

    tier_floor: Decimal | None = msgspec.field(name="tierFloor")
    tier_cap: Decimal | None = msgspec.field(name="tierCap")
    collateral_rate: Decimal | None = msgspec.field(name="collateralRate")
    cum: Decimal | None = None


class TieredCollateralRate(msgspec.Struct, frozen=True, kw_only=True):
    """One asset of ``GET /sapi/v2/portfolio/collateralRate`` with its tiers."""

    asset: str
    collateral_info: list[CollateralTier] = msgspec.field(
        default_factory=list, name="collateralInfo"
    )


class AssetIndexPrice(msgspec.Struct, frozen=True, kw_only=True):
    """One asset of ``GET /sapi/v1/portfolio/asset-index-price``."""

    asset: str
    asset_index_price: Decimal | None = msgspec.field(name="assetIndexPrice")
    """Index price in USD."""
    time_ms: int = msgspec.field(name="time")
    """When the price was taken, epoch ms."""

    @property
    def time(self) -> datetime:
        """``time_ms`` as an aware UTC datetime."""
        return ms_to_datetime(self.time_ms)


class AssetLeverage(msgspec.Struct, frozen=True, kw_only=True):
    """One asset of ``GET /sapi/v1/portfolio/margin-asset-leverage``."""

    asset: str
    leverage: int
    """Binance sends a JSON integer here, not a string."""


class BankruptcyLoan(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /sapi/v1/portfolio/pmLoan``: the bankruptcy loan still owed (0 when none)."""

    asset: str
    amount: Decimal | None


class TransactionResult(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of a write that creates a transaction (repay, BNB transfer)."""

    tran_id: int = msgspec.field(name="tranId")
    """Binance's transaction id: an exact int (ids exceed 2**53, so never a float)."""


class RepayRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One bankruptcy-loan repayment."""

    asset: str
    amount: Decimal | None
    repay_time_ms: int = msgspec.field(name="repayTime")
    """Epoch ms."""

    @property
    def repay_time(self) -> datetime:
        """``repay_time_ms`` as an aware UTC datetime."""
        return ms_to_datetime(self.repay_time_ms)


class RepayHistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``GET /sapi/v1/portfolio/pmloan-history``."""

    total: int
    """Repayments matching the query in all pages, not just this one."""
    rows: list[RepayRecord] = msgspec.field(default_factory=list)


class InterestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``GET /sapi/v1/portfolio/interest-history``: interest charged on a
    negative balance."""

    asset: str
    interest: Decimal | None
    interest_accrued_time_ms: int = msgspec.field(name="interestAccruedTime")
    """Epoch ms."""
    interest_rate: Decimal | None = msgspec.field(name="interestRate")
    """Daily rate."""
    principal: Decimal | None

    @property
    def interest_accrued_time(self) -> datetime:
        """``interest_accrued_time_ms`` as an aware UTC datetime."""
        return ms_to_datetime(self.interest_accrued_time_ms)


class AutoRepayStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /sapi/v1/portfolio/repay-futures-switch``."""

    auto_repay: bool = msgspec.field(name="autoRepay")
    """Whether futures negative balances are repaid automatically."""


class DeltaModeStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /sapi/v1/portfolio/delta-mode``."""

    delta_enabled: bool = msgspec.field(name="deltaEnabled")


class EarnAssetBalance(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /sapi/v1/portfolio/earn-asset-balance``: how much can be transferred."""

    asset: str
    amount: Decimal | None


class MarginCallLevel(msgspec.Struct, frozen=True, kw_only=True):
    """``GET``/``POST /sapi/v1/portfolio/margin-call-level``. Binance answers ``{}`` when no
    level is set: ``margin_call_level`` is then None."""

    margin_call_level: Decimal | None = msgspec.field(default=None, name="marginCallLevel")
    """The uniMMR at which Binance sends a margin-call e-mail/SMS, or None when not set."""


class OperationResult(msgspec.Struct, frozen=True, kw_only=True):
    """``{"msg": "success"}``: the answer of most writes."""

    msg: str = ""

    @property
    def ok(self) -> bool:
        """Whether Binance said ``success``."""
        return self.msg.lower() == "success"


class PortfolioSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`PortfolioMarginProClient.portfolio` fetched, concurrently."""

    account: AccountInfo
    """``GET /sapi/v1/portfolio/account``."""
    balances: list[Balance]
    """``GET /sapi/v1/portfolio/balance``, one entry per asset."""
    span: SpanAccountInfo | None = None
    """``GET /sapi/v2/portfolio/account`` when asked for (``span=True``), else None."""
