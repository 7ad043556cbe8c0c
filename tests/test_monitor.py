"""The risk monitor's pure core: tiers as data, rules with hysteresis, events, JSON lines,
and FakeExchange scenarios. No I/O, no clock: snapshots are built by hand."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from binance_pmpro import AccountStatus, decode_account_info
from binance_pmpro.errors import ServerError
from binance_pmpro.monitor import (
    DEFAULT_RULES,
    RISK_TIERS,
    AccountSnapshot,
    Breach,
    EquityDrop,
    Recovery,
    RiskMonitor,
    Rule,
    Stale,
    StatusChange,
    UniMMRBelow,
    default_rules,
    event_document,
    tier_for,
)
from binance_pmpro.testing import DEFAULT_ACCOUNT, FakeExchange, Scenario
from binance_pmpro.testing._scenario import demo_scenario

D = Decimal


def snap(
    uni_mmr: str | None = "2",
    *,
    at: float = 0.0,
    status: str = "NORMAL",
    equity: str = "1000",
    sequence: int = 1,
) -> AccountSnapshot:
    fields = dict(DEFAULT_ACCOUNT)
    fields.update(accountStatus=status, accountEquity=equity)
    fields["uniMMR"] = "" if uni_mmr is None else uni_mmr
    info = decode_account_info(json.dumps(fields).encode())
    return AccountSnapshot(info, at, at, datetime(2026, 1, 1, tzinfo=timezone.utc), sequence)


def run(monitor: RiskMonitor, values: list[str]) -> list[tuple[str, int]]:
    """(event type, index of the snapshot that caused it) for a series of uniMMR values."""
    out = []
    for i, value in enumerate(values):
        for event in monitor.observe(snap(value, at=float(i), sequence=i + 1)):
            out.append((event.type, i))
    return out


# --- tiers ----------------------------------------------------------------------------------


def test_tiers_follow_the_reference_table_with_the_last_row_unconfirmed() -> None:
    bounds = [(t.floor, t.ceiling) for t in RISK_TIERS]
    assert bounds == [
        (D("1.50"), None),
        (D("1.20"), D("1.50")),
        (D("1.05"), D("1.20")),
        (D("1.00"), D("1.05")),
        (None, D("1.00")),
    ]
    assert [t.confirmed for t in RISK_TIERS] == [True, True, True, True, False]
    assert "unconfirmed" in RISK_TIERS[-1].action


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("5167.9", "free"),
        ("1.50000001", "free"),
        ("1.5", "reminder"),
        ("1.2", "reduce_only"),
        ("1.05", "liquidation_risk"),
        ("1.0", "liquidation"),
        ("0.3", "liquidation"),
    ],
)
def test_tier_for_boundary_values_belong_to_the_lower_tier(value: str, name: str) -> None:
    tier = tier_for(D(value))
    assert tier is not None
    assert tier.name == name


def test_default_rules_one_per_tier_boundary() -> None:
    levels = [r.level for r in DEFAULT_RULES if isinstance(r, UniMMRBelow)]
    assert levels == [D("1.50"), D("1.20"), D("1.05"), D("1.00")]
    assert all(isinstance(r, Rule) for r in DEFAULT_RULES)


def test_default_rules_alert_below_at_a_tier_level_replaces_that_rule() -> None:
    rules = default_rules(D("1.2"))
    levels = sorted(r.level for r in rules if isinstance(r, UniMMRBelow))
    assert levels == [D("1.00"), D("1.05"), D("1.2"), D("1.50")]
    # One crossing of 1.2 gives one breach.
    assert run(RiskMonitor(rules), ["1.3", "1.19"]) == [("breach", 0), ("breach", 1)]
    breaches = [e for e in RiskMonitor(rules).observe(snap("1.19")) if isinstance(e, Breach)]
    assert [e.rule.name for e in breaches] == ["tier_reminder", "alert_below_1.2"]


def test_default_rules_alert_below_between_levels_is_added_in_level_order() -> None:
    rules = default_rules(D("1.3"))
    assert [r.name for r in rules] == [
        "tier_reminder",
        "alert_below_1.3",
        "tier_reduce_only",
        "tier_liquidation_risk",
        "tier_liquidation",
    ]
    # One snapshot crossing three levels reports them in the order uniMMR fell through them.
    events = RiskMonitor(rules).observe(snap("1.1"))
    assert [e.rule.name for e in events if isinstance(e, Breach)] == [
        "tier_reminder",
        "alert_below_1.3",
        "tier_reduce_only",
    ]


# --- hysteresis -----------------------------------------------------------------------------


def test_uni_mmr_below_hovering_at_the_level_breaches_once_and_recovers_past_two_percent() -> None:
    monitor = RiskMonitor([UniMMRBelow(D("1.20"))])
    values = ["1.21", "1.19", "1.2", "1.199", "1.21", "1.2239", "1.224", "1.23", "1.19"]
    assert run(monitor, values) == [("breach", 1), ("recovery", 6), ("breach", 8)]


def test_uni_mmr_below_first_snapshot_already_below_breaches_at_once() -> None:
    monitor = RiskMonitor([UniMMRBelow(D("1.20"))])
    events = monitor.observe(snap("1.1"))
    assert len(events) == 1
    assert isinstance(events[0], Breach)
    assert events[0].value == D("1.1")
    assert events[0].snapshot.info.uni_mmr == D("1.1")


def test_uni_mmr_below_exactly_at_the_level_is_not_a_breach() -> None:
    assert run(RiskMonitor([UniMMRBelow(D("1.20"))]), ["1.20", "1.2000"]) == []


def test_uni_mmr_missing_leaves_the_rule_state_alone() -> None:
    monitor = RiskMonitor([UniMMRBelow(D("1.20"))])
    assert run(monitor, ["1.1", None, "1.3"]) == [("breach", 0), ("recovery", 2)]  # type: ignore[list-item]


def test_default_rules_slide_down_and_back_gives_one_breach_and_one_recovery_per_level() -> None:
    down = [str(D("3.0") - D("0.05") * i) for i in range(40)]  # 3.00 .. 1.05
    values = down + list(reversed(down))
    events = []
    monitor = RiskMonitor()
    for i, value in enumerate(values):
        events += [
            (e.type, e.rule.name)
            for e in monitor.observe(snap(value, at=i))
            if not isinstance(e, StatusChange)
        ]  # type: ignore[union-attr]
    assert events == [
        ("breach", "tier_reminder"),
        ("breach", "tier_reduce_only"),
        ("recovery", "tier_reduce_only"),
        ("recovery", "tier_reminder"),
    ]
    assert monitor.in_breach() == []


def test_status_change_is_only_a_status_change_event() -> None:
    monitor = RiskMonitor()
    assert monitor.observe(snap("3", status="NORMAL")) == []
    events = monitor.observe(snap("3", status="MARGIN_CALL", at=1))
    assert len(events) == 1
    assert isinstance(events[0], StatusChange)
    assert (events[0].previous, events[0].current) == (
        AccountStatus.NORMAL,
        AccountStatus.MARGIN_CALL,
    )
    assert monitor.observe(snap("3", status="MARGIN_CALL", at=2)) == []


def test_status_not_normal_on_the_first_snapshot_is_reported_from_none() -> None:
    events = RiskMonitor().observe(snap("3", status="REDUCE_ONLY"))
    assert [(e.previous, e.current) for e in events if isinstance(e, StatusChange)] == [
        (None, AccountStatus.REDUCE_ONLY)
    ]


def test_equity_drop_within_the_period_breaches_and_recovers_with_margin() -> None:
    rule = EquityDrop(D("50"), within=60)
    monitor = RiskMonitor([rule])
    equities = [("1000", 0), ("980", 10), ("940", 20), ("950", 30), ("950.5", 35), ("951", 40)]
    out = []
    for equity, at in equities:
        out += [(e.type, e.value) for e in monitor.observe(snap("3", equity=equity, at=at))]
    # Drop 60 > 50: breach; 50 and 49.5 stay in breach (hysteresis); 49 = 50 - 2% recovers.
    assert out == [("breach", D("60")), ("recovery", D("49"))]


def test_equity_drop_outside_the_period_is_forgotten() -> None:
    monitor = RiskMonitor([EquityDrop(D("50"), within=30)])
    assert monitor.observe(snap("3", equity="1000", at=0)) == []
    assert monitor.observe(snap("3", equity="900", at=31)) == []


def test_monitor_duplicate_rule_names_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unique"):
        RiskMonitor([UniMMRBelow(D("1.2")), UniMMRBelow(D("1.2"))])


@pytest.mark.parametrize("level", [D("0"), D("-1"), D("NaN")])
def test_uni_mmr_below_bad_level_raises_value_error(level: Decimal) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        UniMMRBelow(level)


# --- JSON lines -----------------------------------------------------------------------------


def test_event_document_breach_has_type_rule_and_snapshot_fields_exact() -> None:
    monitor = RiskMonitor([UniMMRBelow(D("1.20"))])
    (event,) = monitor.observe(snap("1.19999999"))
    doc = json.loads(json.dumps(event_document(event)))
    assert doc["type"] == "breach"
    assert doc["rule"] == "uni_mmr_below_1.20"
    assert (doc["level"], doc["value"], doc["uni_mmr"]) == ("1.20", "1.19999999", "1.19999999")
    assert doc["total_available_balance"] == "122559.90199491"
    assert doc["account_status"] == "NORMAL"
    assert doc["account_type"] == "PM_1"
    assert doc["time"] == "2026-01-01T00:00:00.000Z"


def test_event_document_snapshot_status_change_and_stale() -> None:
    first = snap("3", status="MARGIN_CALL")
    assert event_document(first)["type"] == "snapshot"
    (change,) = RiskMonitor().observe(first)
    doc = event_document(change)
    assert (doc["type"], doc["previous_status"], doc["status"]) == (
        "status_change",
        None,
        "MARGIN_CALL",
    )
    stale = Stale(12.0, 11.5, 3, ServerError(503, None, "down"), first)
    doc = event_document(stale)
    assert (doc["type"], doc["age_s"], doc["failures"]) == ("stale", 11.5, 3)
    assert doc["error"].startswith("ServerError")
    assert doc["uni_mmr"] == "3"
    assert "uni_mmr" not in event_document(Stale(1.0, 1.0, 1, ServerError(503, None, "x"), None))


def test_event_types_are_the_documented_strings() -> None:
    assert [c.type for c in (AccountSnapshot, Breach, Recovery, StatusChange, Stale)] == [
        "snapshot",
        "breach",
        "recovery",
        "status_change",
        "stale",
    ]


# --- scenarios ------------------------------------------------------------------------------


def test_scenario_ramp_is_linear_and_exact_between_points() -> None:
    scenario = Scenario().at(0, uni_mmr="3.0").ramp(60, uni_mmr="1.2").ramp(120, uni_mmr="3.0")
    assert scenario.fields_at(0)["uni_mmr"] == D("3")
    assert scenario.fields_at(30)["uni_mmr"] == D("2.10000000")
    assert scenario.fields_at(60)["uni_mmr"] == D("1.2")
    assert scenario.fields_at(90)["uni_mmr"] == D("2.10000000")
    assert scenario.fields_at(500)["uni_mmr"] == D("3.0")
    assert scenario.duration == 120


def test_scenario_steps_and_fields_that_start_later() -> None:
    scenario = Scenario().at(0, uni_mmr="2").at(10, account_status="MARGIN_CALL")
    assert scenario.fields_at(5) == {"uni_mmr": "2"}
    assert scenario.fields_at(10) == {"uni_mmr": "2", "account_status": "MARGIN_CALL"}


def test_scenario_ramp_without_a_start_or_out_of_order_raises() -> None:
    with pytest.raises(ValueError, match="earlier point"):
        Scenario().ramp(10, uni_mmr="1")
    with pytest.raises(ValueError, match="time order"):
        Scenario().at(10, uni_mmr="1").at(5, uni_mmr="2")


def test_scenario_installed_drives_the_account_by_the_exchange_clock() -> None:
    now = [1_000_000.0]
    fake = FakeExchange(clock=lambda: now[0])
    Scenario().at(0, uni_mmr="3.0").ramp(10, uni_mmr="1.0").install(fake)
    from binance_pmpro.endpoints import ACCOUNT_INFO
    from binance_pmpro.testing._exchange import FakeRequest

    handler = fake._handlers["account_info"].function
    now[0] += 5_000
    request = FakeRequest(ACCOUNT_INFO, {}, "main", "127.0.0.1", fake.now_ms())
    assert handler(fake, request)["uniMMR"] == "2.00000000"


def test_demo_scenario_crosses_the_tiers_and_comes_back() -> None:
    scenario = demo_scenario(1.0)
    lowest = min(D(str(scenario.fields_at(t / 2)["uni_mmr"])) for t in range(60))
    assert lowest == D("1.15")
    assert D(str(scenario.fields_at(scenario.duration)["uni_mmr"])) == D("1.6")
    assert scenario.fields_at(12)["account_status"] == "MARGIN_CALL"
