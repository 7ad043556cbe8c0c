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
from decimal import Decimal
from typing import Any

import msgspec

__all__ = ["AccountInfo", "AccountStatus", "AccountType", "ServerTime"]


class _OpenEnum(str, enum.Enum):
    """A str enum whose unknown values become ``UNKNOWN`` instead of raising."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        # msgspec and plain calls (`AccountStatus("X")`) both land here for values this
        # release does not know; the decoder keeps the raw string on the struct.
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
    Above 1.5 trading is free; at or below 1.05 the account is liquidated."""
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
