"""Reading an AccountInfo: exact amounts, the fields to ignore, and the status ladder.

The uniMMR tiers below come from Binance's published rules for Portfolio Margin Pro. Binance
may change them (it says it notifies users when it does), so they are data here, not logic
buried in code.
"""

from __future__ import annotations

from decimal import Decimal

from binance_pmpro import AccountInfo, AccountStatus, AccountType

# --8<-- [start:tiers]
# (lower bound exclusive, what Binance does above it), most comfortable first.
UNI_MMR_TIERS: list[tuple[Decimal, str]] = [
    (Decimal("1.50"), "trade freely"),
    (Decimal("1.20"), "Binance reminds you to add funds, repay or reduce positions"),
    (Decimal("1.05"), "new orders refused except reduce-only"),
]
AT_OR_BELOW_LAST = "liquidation risk"


def uni_mmr_tier(uni_mmr: Decimal) -> str:
    """What Binance does at this unified maintenance-margin ratio."""
    for floor, meaning in UNI_MMR_TIERS:
        if uni_mmr > floor:
            return meaning
    return AT_OR_BELOW_LAST


# --8<-- [end:tiers]


# --8<-- [start:ladder]
# The statuses from least to most severe.
LADDER: list[AccountStatus] = [
    AccountStatus.NORMAL,
    AccountStatus.MARGIN_CALL,
    AccountStatus.SUPPLY_MARGIN,
    AccountStatus.REDUCE_ONLY,
    AccountStatus.ACTIVE_LIQUIDATION,
    AccountStatus.FORCE_LIQUIDATION,
    AccountStatus.BANKRUPTED,
]


def severity(info: AccountInfo) -> int:
    """0 for NORMAL up to 6 for BANKRUPTED. A status this release does not know (UNKNOWN,
    the raw string in ``account_status_raw``) is treated as the worst: never assume a new
    status is harmless."""
    if info.account_status is AccountStatus.UNKNOWN:
        return len(LADDER) - 1
    return LADDER.index(info.account_status)


# --8<-- [end:ladder]


# --8<-- [start:summary]
def summary(info: AccountInfo) -> list[str]:
    """The fields that matter for a Portfolio Margin Pro account, in words."""
    lines = []
    if info.account_type is not AccountType.PM_1:
        lines.append(f"note: account type {info.account_type_raw or info.account_type.value}")
    if info.uni_mmr is None:  # Binance sent "" in this field
        lines.append("uniMMR: not given")
    else:
        lines.append(f"uniMMR {info.uni_mmr}: {uni_mmr_tier(info.uni_mmr)}")
    lines.append(f"equity {info.account_equity} USD (after collateral rates)")
    lines.append(f"maintenance margin {info.account_maint_margin} USD")
    status = info.account_status_raw or info.account_status.value
    lines.append(f"status {status} (severity {severity(info)} of {len(LADDER) - 1})")
    # account_initial_margin and total_available_balance are decoded but deliberately not
    # used: Binance says to ignore them for PM PRO and PM PRO SPAN accounts.
    return lines


# --8<-- [end:summary]
