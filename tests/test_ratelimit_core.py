"""The rate limiter's pure state machine, on an integer clock (no event loop).

The property tests drive a :class:`BudgetCore` against a simulated server that counts
weight per fixed minute of its own clock (any phase) and reports the count in a header, with
arbitrary arrival delays, response delays (so responses come back in any order), refunds and
lost answers, and check that no fixed window at the server's phase and no rolling window
ever holds more than the limit.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binance_pmpro.ratelimit import (
    NS,
    BudgetCore,
    Grant,
    IPGroupState,
    ServerOffset,
    _http_date_s,
)

W = 60 * NS
J = NS
T0 = 1_700_000_000 * NS  # epoch-sized local times: integer arithmetic must stay exact


def make(limit: int = 6000, *, window: int = W, spread: int = J, **kw: object) -> BudgetCore:
    kw.setdefault("probe", False)
    return BudgetCore(limit, window_ns=window, spread_ns=spread, **kw)  # type: ignore[arg-type]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --- pacer ---------------------------------------------------------------------------------


def test_core_effective_limit_keeps_one_percent_headroom() -> None:
    core = make(6000)
    assert core.effective == 5940
    assert core.burst == 29
    assert make(180_000).effective == 178_200


def test_core_headroom_below_one_percent_is_refused() -> None:
    with pytest.raises(ValueError, match="headroom"):
        make(6000, headroom=0.005)


@pytest.mark.parametrize("start", [0, 1, T0, T0 + 123_456_789, 2**62 + 7])
def test_core_burst_at_any_epoch_grants_exactly_burst_then_paces(start: int) -> None:
    core = make(6000)
    granted = 0
    while core.ready_at(start, 1) <= start:
        core.grant(start, 1)
        granted += 1
    assert granted == core.burst
    # The next unit is due exactly one unit's pacing interval later, to the nanosecond.
    expected = start + ceil_div(core.span, core.effective - core.burst)
    assert core.ready_at(start, 1) == expected
    assert core.ready_at(expected - 1, 1) > expected - 1
    core.grant(expected, 1)


def test_core_saturated_rate_is_effective_minus_burst_per_window_plus_spread() -> None:
    core = make(6000)
    t = T0
    total = 0
    while t < T0 + 10 * W:
        t = max(t, core.ready_at(t, 5))
        core.grant(t, 5)
        total += 5
    expected_per_s = (core.effective - core.burst) / 61
    measured = (total - core.burst) / 600
    assert measured == pytest.approx(expected_per_s, rel=1e-3)
    # 96.9 % of the limit per minute: the efficiency the design promises.
    assert measured * 60 / 6000 == pytest.approx(0.969, abs=0.002)


def test_core_denial_changes_nothing() -> None:
    core = make(600)
    while core.ready_at(T0, 5) <= T0:
        core.grant(T0, 5)
    before = (core._tat, core.log_weight, core.granted_cum, core.outstanding)
    for _ in range(3):
        assert core.ready_at(T0, 5) > T0
    assert (core._tat, core.log_weight, core.granted_cum, core.outstanding) == before


def test_core_weight_above_effective_limit_is_refused() -> None:
    core = make(100)
    with pytest.raises(ValueError, match="exceeds"):
        core.check_weight(100)
    with pytest.raises(ValueError, match="positive"):
        core.check_weight(0)
    core.check_weight(99)


def test_core_heavy_weight_waits_for_empty_bucket_and_log_caps_the_span() -> None:
    # 1,500 on 12,000 (decision 3): far above the burst; the log keeps any span <= effective.
    core = make(12_000)
    t = T0
    grants: list[int] = []
    while t < T0 + 5 * W:
        t = max(t, core.ready_at(t, 1500))
        core.grant(t, 1500)
        grants.append(t)
    for i, start in enumerate(grants):
        in_span = sum(1500 for g in grants[i:] if g <= start + core.span)
        assert in_span <= core.effective
    # Seven per span at most: 87.5 % of a window at best, as decision 3 expects.
    assert max(sum(1 for g in grants if s <= g <= s + core.span) for s in grants) == 7


# --- refunds -------------------------------------------------------------------------------


def test_core_refund_of_latest_grant_restores_the_state_exactly() -> None:
    core = make(6000)
    core.grant(T0, 5)
    state = (core._tat, core.log_weight, core.granted_cum, core.outstanding)
    g = core.grant(T0, 5)
    assert core.refund(g, T0)
    assert (core._tat, core.log_weight, core.granted_cum, core.outstanding) == state
    assert not core.refund(g, T0)  # idempotent
    assert (core._tat, core.log_weight, core.granted_cum, core.outstanding) == state


def test_core_refund_of_older_grant_frees_log_and_ledger_but_not_the_pacer() -> None:
    offset = ServerOffset()
    core = make(6000, offset=offset)
    offset.set(0, 0, T0)
    old = core.grant(T0, 5)
    core.grant(T0, 5)
    tat = core._tat
    k = old.windows[0]
    charged = core.window_state(k)[0]  # type: ignore[index]
    core.refund(old, T0)
    assert core._tat == tat
    assert core.log_weight == 5
    assert core.window_state(k)[0] == charged - 5  # type: ignore[index]


def test_core_no_refund_after_finish_or_response() -> None:
    core = make(6000)
    g = core.grant(T0, 5)
    core.mark_sent(g, T0)
    assert core.finish(g, T0 + NS)
    assert not core.refund(g, T0 + NS)
    assert core.log_weight == 5
    h = core.grant(T0 + NS, 5)
    core.on_response(h, T0 + 2 * NS, 200, 10)
    assert not core.refund(h, T0 + 2 * NS)
    assert core.outstanding == 0
    assert core.granted_cum == 10


def test_core_refund_of_expired_log_entry_does_not_corrupt_the_sum() -> None:
    core = make(6000)
    g = core.grant(T0, 5)
    later = T0 + 2 * W
    core.ready_at(later, 5)  # expires the entry
    core.grant(later, 5)
    core.refund(g, later)
    assert core.log_weight == 5


# --- server clock, windows, reconciliation --------------------------------------------------


def aligned_core(limit: int = 6000, *, offset: int = 0, eps: int = 0, **kw: object) -> BudgetCore:
    clock = ServerOffset(drift_ppm=0)
    core = make(limit, offset=clock, **kw)
    clock.set(offset, eps, T0)
    return core


def test_core_grant_near_boundary_charges_both_windows_and_response_releases_one() -> None:
    core = aligned_core(eps=50_000_000)
    k = 1000
    t = k * W - NS // 2  # 0.5 s before the server minute ends: arrival may fall either side
    g = core.grant(t, 5)
    h = core.grant(t + NS // 10, 5)
    assert g.windows == (k - 1, k)
    assert h.windows == (k - 1, k)
    assert core.window_state(k - 1)[0] == 10  # type: ignore[index]
    assert core.window_state(k)[0] == 10  # type: ignore[index]
    core.mark_sent(g, t)
    core.mark_sent(h, t + NS // 10)
    # h came back before the boundary (minus eps): it was surely handled in k - 1. Its
    # header counts g too (g may have arrived first): that stays in excess, not in done.
    core.on_response(h, t + NS // 4, 200, 10)
    assert core.windows_of(h) == (k - 1,)
    assert core.window_state(k - 1) == (10, 5, 5)
    assert core.window_state(k) == (5, 0, 0)
    # g answered after the boundary: it may have been handled on either side of it, so
    # nothing is released and its header cannot be attributed.
    core.on_response(g, t + 3 * NS // 4, 200, 5)
    assert core.windows_of(g) == (k - 1, k)
    assert core.window_state(k - 1) == (10, 5, 5)
    assert core.window_state(k) == (5, 0, 0)


def test_core_response_proving_the_later_window_releases_the_earlier_one() -> None:
    core = aligned_core(eps=50_000_000)
    k = 1000
    t = k * W - NS // 2
    g = core.grant(t, 5)
    core.mark_sent(g, t + 3 * NS // 5)  # left late: surely after the boundary (+ eps)
    core.on_response(g, t + NS, 200, 7)
    assert core.windows_of(g) == (k,)
    assert core.window_state(k - 1) == (0, 0, 0)
    assert core.window_state(k) == (5, 5, 2)


def test_core_header_excess_uses_the_order_independent_max_rule() -> None:
    k = T0 // W + 1
    t = k * W + 10 * NS  # mid-window, far from both boundaries
    # Others used 1,000 in this window; the server saw our four in some order.
    headers = [1005, 1020, 1010, 1015]
    for order in itertools.permutations(range(4)):
        trial = aligned_core()
        tg = [trial.grant(t + i, 5) for i in range(4)]
        for i, g in enumerate(tg):
            trial.mark_sent(g, t + i)
        for i in order:
            trial.on_response(tg[i], t + NS, 200, headers[i])
        assert trial.window_state(k) == (20, 20, 1015)
        charged, _done, excess = trial.window_state(k)  # type: ignore[misc]
        assert charged + excess >= 1020  # never below what the server counted


def test_core_snapshot_taken_at_send_credits_responses_received_before() -> None:
    core = aligned_core()
    k = T0 // W + 1
    t = k * W + 10 * NS
    a = core.grant(t, 5)
    core.mark_sent(a, t)
    core.on_response(a, t + NS, 200, 5)  # nobody else: excess 0
    b = core.grant(t + 2 * NS, 5)
    core.mark_sent(b, t + 2 * NS)
    core.on_response(b, t + 3 * NS, 200, 10)  # a + b: still nobody else
    assert core.window_state(k) == (10, 10, 0)


def test_core_full_window_blocks_until_it_surely_ended() -> None:
    eps = 20_000_000
    core = aligned_core(600, eps=eps)
    k = T0 // W + 1
    t = k * W + 30 * NS
    g = core.grant(t, 5)
    core.mark_sent(g, t)
    core.on_response(g, t + NS, 200, 590)  # others have used almost everything
    assert core.window_state(k) == (5, 5, 585)
    ready = core.ready_at(t + NS, 5)
    assert ready == (k + 1) * W + eps
    assert core.ready_at(ready, 5) == ready


def test_core_late_response_charges_the_window_it_may_have_landed_in() -> None:
    core = aligned_core()
    k = T0 // W + 1
    t = k * W + 58 * NS
    g = core.grant(t, 5)
    assert g.windows == (k,)
    core.mark_sent(g, t)
    core.on_response(g, t + 3 * NS, 200, 5)  # took 3 s: may have landed in k + 1
    assert core.windows_of(g) == (k, k + 1)
    assert core.window_state(k + 1)[0] == 5  # type: ignore[index]


def test_core_offset_set_after_grant_charges_at_response() -> None:
    clock = ServerOffset(drift_ppm=0)
    core = make(6000, offset=clock)
    t = (T0 // W + 1) * W + 10 * NS
    g = core.grant(t, 5)
    assert g.windows == ()
    core.mark_sent(g, t)
    clock.set(0, 0, t)
    core.on_response(g, t + NS, 200, 105)
    k = t // W
    assert core.window_state(k) == (5, 5, 100)


def test_core_error_bound_grows_with_drift() -> None:
    clock = ServerOffset(drift_ppm=100)
    clock.set(0, 1_000_000, T0)
    assert clock.eps(T0) == 1_000_000
    assert clock.eps(T0 + 60 * NS) == 1_000_000 + 6_000_000


def test_core_wide_error_bound_falls_back_to_the_offset_free_guard() -> None:
    core = aligned_core(600, eps=7 * NS)  # wider than a tenth of the window
    t = T0 + 10 * NS
    g = core.grant(t, 5)
    core.mark_sent(g, t)
    core.on_response(g, t + NS, 200, 594)
    # 594 reported, plus nothing of ours in flight: 5 more would pass the effective limit.
    assert core.ready_at(t + NS, 5) == t + NS + W


def test_core_later_reading_supersedes_one_answered_before_it_was_sent() -> None:
    core = aligned_core()
    k = T0 // W + 1
    t = k * W + 10 * NS
    a = core.grant(t, 5)
    b = core.grant(t + NS // 10, 5)
    core.mark_sent(a, t)
    core.mark_sent(b, t + NS // 10)
    # a's count may include b (in flight when a left): bound 105 - 0 - 5 = 100 others.
    core.on_response(a, t + NS // 2, 200, 105)
    assert core.window_state(k)[2] == 100  # type: ignore[index]
    # c left after a's answer came back, so the server counted c later than a: c's reading
    # replaces a's even though it is lower. a and b have surely arrived by c's send (more
    # than the 1 s spread after their grant): 110 - 10 - 5 (c) = 95 others.
    c = core.grant(t + 2 * NS, 5)
    core.mark_sent(c, t + 2 * NS)
    core.on_response(c, t + 3 * NS, 200, 110)
    assert core.window_state(k)[2] == 95  # type: ignore[index]
    core.on_response(b, t + 4 * NS, 200, 100)  # b's reading: 100 - 0 - 5, no higher
    assert core.window_state(k)[2] == 95  # type: ignore[index]


def test_core_requests_surely_arrived_count_as_included() -> None:
    core = aligned_core()  # spread 1 s: a request has surely arrived 1 s after its grant
    k = T0 // W + 1
    t = k * W + 10 * NS
    old = [core.grant(t, 5) for _ in range(3)]
    for g in old:
        core.mark_sent(g, t)
    x = core.grant(t + 2 * NS, 5)
    core.mark_sent(x, t + 2 * NS)  # the three are still unanswered, but surely arrived
    core.on_response(x, t + 3 * NS, 200, 20)
    assert core.window_state(k)[2] == 0  # 20 = our four: nobody else


def test_core_rejected_request_is_not_assumed_counted() -> None:
    core = aligned_core()
    k = T0 // W + 1
    t = k * W + 10 * NS
    old = [core.grant(t, 5) for _ in range(3)]
    for g in old:
        core.mark_sent(g, t)
    # Refused (a 418 here: a 429 would mark the whole window full anyway).
    core.on_response(old[0], t + NS // 2, 418, None, retry_after_ns=NS)
    x = core.grant(t + 2 * NS, 5)
    core.mark_sent(x, t + 2 * NS)
    # 20 = two of ours that surely arrived and were counted, x, and 5 of someone else's.
    core.on_response(x, t + 3 * NS, 200, 20)
    assert core.window_state(k)[2] == 5  # type: ignore[index]


def test_core_send_after_boundary_releases_the_earlier_window() -> None:
    core = aligned_core(eps=10_000_000)
    k = T0 // W + 1
    t = k * W - NS // 2
    g = core.grant(t, 5)
    assert g.windows == (k - 1, k)
    core.mark_sent(g, k * W + NS // 10)  # left after the boundary: cannot land in k - 1
    assert g.windows == (k,)
    assert core.window_state(k - 1)[0] == 0  # type: ignore[index]


def test_core_late_send_moves_the_charge_to_where_it_can_land() -> None:
    core = aligned_core(eps=10_000_000)
    k = T0 // W + 1
    t = k * W + 58 * NS
    g = core.grant(t, 5)
    assert g.windows == (k,)
    core.mark_sent(g, t + 5 * NS // 2)  # left 2.5 s after its grant, in the next minute
    assert g.windows == (k + 1,)
    assert core.window_state(k)[0] == 0  # type: ignore[index]
    assert core.window_state(k + 1)[0] == 5  # type: ignore[index]


def test_core_offset_learned_from_date_headers_narrows() -> None:
    clock = ServerOffset(drift_ppm=0)
    true = 123_456_789_012
    # Answers whose [send, receive] straddle server second ticks pin the offset down.
    for sent in range(0, 20 * NS, 97_654_321):
        received = sent + 40_000_000
        stamped = sent + 15_000_000 + true  # server time when it wrote the Date header
        date = stamped // NS
        clock.learn(date * NS - received, (date + 1) * NS - sent, received)
        assert clock.lo <= true <= clock.hi
    assert clock.offset is not None
    assert abs(clock.offset - true) <= clock.error <= 40_000_000
    assert not clock.phase_only


def test_core_explicit_offset_is_not_overridden_by_learning() -> None:
    clock = ServerOffset()
    clock.set(5 * NS, NS // 100, 0)
    clock.learn(0, NS, 10)
    clock.learn_boundary(0, NS, 10)
    assert (clock.offset, clock.error) == (5 * NS, NS // 100)


def _drop_across_boundary(core: BudgetCore, boundary: int) -> None:
    """One request answered 3 s before ``boundary`` (local), one after it: count drops."""
    a = core.grant(boundary - 3 * NS, 5)
    core.mark_sent(a, boundary - 3 * NS)
    core.on_response(a, boundary - 3 * NS + NS // 2, 200, 3000)
    b = core.grant(boundary + NS, 5)
    core.mark_sent(b, boundary + NS)
    core.on_response(b, boundary + NS + NS // 2, 200, 5)


def test_core_count_drops_a_window_apart_teach_the_window_phase() -> None:
    core = make(6000)
    phase = 37 * NS + 123_456_789  # server time = local + phase (mod the window)
    boundary = T0 + W - (T0 + phase) % W  # a local time where a server minute starts
    _drop_across_boundary(core, boundary)
    assert core.clock.offset is not None  # adopted at once...
    _drop_across_boundary(core, boundary + W)  # ...and narrowed by the next sighting
    clock = core.clock
    assert clock.offset is not None
    assert clock.phase_only
    # Both sightings put the boundary between a's send and b's answer: within 4.5 s.
    distance = (clock.offset - phase) % W
    assert min(distance, W - distance) <= clock.error <= 9 * NS // 4


def test_core_count_that_never_grows_teaches_nothing() -> None:
    # A mock answering the same figure every time is not a fixed-window counter.
    core = make(6000)
    t = T0
    for _ in range(200):
        g = core.grant(t, 5)
        core.mark_sent(g, t)
        t += NS // 2
        core.on_response(g, t, 200, 5)
    assert core.clock.offset is None


def test_core_count_drops_that_disagree_are_unlearned_then_need_confirmation() -> None:
    core = make(6000)
    boundary = T0 + 17 * NS
    _drop_across_boundary(core, boundary)
    assert core.clock.offset is not None
    _drop_across_boundary(core, boundary + W + 20 * NS)  # not a whole window later
    assert core.clock.offset is None
    _drop_across_boundary(core, boundary + 2 * W + 20 * NS)  # agrees with the last one
    assert core.clock.offset is not None
    assert core.clock.phase_only


def test_core_http_date_parsing() -> None:
    assert _http_date_s("Tue, 14 Nov 2023 22:13:20 GMT") == 1_700_000_000
    assert _http_date_s("garbage") is None
    assert _http_date_s("Tue, 14 Foo 2023 22:13:20 GMT") is None
    assert _http_date_s("Tue, 14 Nov 2023 22:13:20 CET") is None
    assert _http_date_s(None) is None


# --- offset-free guard ----------------------------------------------------------------------


def test_core_offset_free_guard_bounds_by_latest_sent_response() -> None:
    core = make(600, probe_timeout_ns=5 * NS)  # effective 594
    t = T0
    a = core.grant(t, 5)
    core.mark_sent(a, t)
    b = core.grant(t + NS, 5)
    core.mark_sent(b, t + NS)
    # b (sent later) answers first: the server had 500 then. a is still in flight and may
    # not be in b's count, so the bound is 500 + 5.
    now = t + 2 * NS
    core.on_response(b, now, 200, 500)
    assert core.used(now) == 500  # the estimate; the guard's bound below is 505
    assert core.ready_at(now, 5) <= now + NS  # paced, not blocked
    # 505 + 100 > 594: blocked; a's answer may tell more, so look again soon.
    assert core.ready_at(now, 100) == now + 5 * NS
    # a's answer (sent earlier) does not replace b's reading: still 505.
    core.on_response(a, now + NS, 200, 10)
    assert core.used(now + NS) == 500
    # Nothing in flight: blocked until b's window is surely over...
    assert core.ready_at(now + NS, 100) == now + W
    # ...but one probe may use a quarter of the headroom (505 + 90 <= 594 + 6 / 4).
    assert core.ready_at(now + NS, 90) <= now + NS
    # The window b landed in is over a minute after b's answer at the latest.
    assert core.ready_at(now + W, 100) <= now + W + NS


def test_core_offset_free_guard_follows_a_newer_reading_after_reset() -> None:
    core = make(600)
    t = T0
    a = core.grant(t, 5)
    core.mark_sent(a, t)
    core.on_response(a, t + NS, 200, 592)  # too full even for a probe
    assert core.ready_at(t + NS, 5) == t + NS + W
    # A request granted before the reading, sent later, reports a fresh window.
    core2 = make(600)
    x = core2.grant(t, 5)
    y = core2.grant(t, 5)
    core2.mark_sent(x, t)
    core2.on_response(x, t + NS, 200, 590)
    core2.mark_sent(y, t + 2 * NS)
    core2.on_response(y, t + 3 * NS, 200, 5)
    assert core2.ready_at(t + 3 * NS, 5) < t + 4 * NS


# --- cold start probe ----------------------------------------------------------------------


def test_core_cold_budget_sends_one_probe_then_opens_after_a_response() -> None:
    core = make(6000, probe=True, probe_timeout_ns=5 * NS)
    g = core.grant(T0, 5)
    assert core.ready_at(T0, 5) == T0 + 5 * NS
    core.mark_sent(g, T0)
    core.on_response(g, T0 + NS, 200, 5)
    assert core.ready_at(T0 + NS, 5) == T0 + NS
    # Warm while answers keep coming: several in flight are fine.
    core.grant(T0 + NS, 5)
    assert core.ready_at(T0 + NS, 5) <= T0 + NS + NS // 10
    # Idle for more than a window: cold again.
    later = T0 + 3 * W
    h = core.grant(later, 5)
    assert core.ready_at(later, 5) == later + 5 * NS
    core.refund(h, later)


# --- 429 / 418 -----------------------------------------------------------------------------


def test_core_429_with_retry_after_pauses_then_resumes_paced() -> None:
    core = make(6000)
    t = T0
    g = core.grant(t, 5)
    core.mark_sent(g, t)
    core.on_response(g, t + NS, 429, None, retry_after_ns=7 * NS)
    until = t + 8 * NS
    assert core.paused_until == until
    assert core.ready_at(t + NS, 5) >= until
    # After the pause: one weight-5 interval, not a burst.
    first = core.ready_at(until, 5)
    step = ceil_div(5 * core.span, core.effective - core.burst)
    assert first == until + step
    core.grant(first, 5)
    assert abs(core.ready_at(first, 5) - (first + step)) <= 1


def test_core_429_without_retry_after_waits_for_the_server_minute_to_end() -> None:
    eps = 30_000_000
    core = aligned_core(offset=123_456_789, eps=eps)
    t = T0 + 5 * NS
    g = core.grant(t, 5)
    core.mark_sent(g, t)
    core.on_response(g, t + NS, 429, None)
    server_now = t + NS + 123_456_789
    end_local = (server_now + eps) // W * W + W - 123_456_789 + eps
    assert core.paused_until == end_local


def test_core_429_without_offset_or_retry_after_pauses_a_full_window() -> None:
    core = make(6000)
    g = core.grant(T0, 5)
    core.on_response(g, T0 + NS, 429, None)
    assert core.paused_until == T0 + NS + W


def test_core_429_without_retry_after_marks_the_window_full() -> None:
    core = aligned_core()
    k = T0 // W + 1
    t = k * W + 10 * NS
    g = core.grant(t, 5)
    core.mark_sent(g, t)
    core.on_response(g, t + NS, 429, None)
    assert core.ready_at(t + 3 * NS, 5) >= (k + 1) * W
    assert core.used(t + 3 * NS) == core.ceiling


def test_core_429_with_retry_after_trusts_the_server_on_when_to_resume() -> None:
    core = aligned_core()
    k = T0 // W + 1
    t = k * W + 10 * NS
    g = core.grant(t, 5)
    core.mark_sent(g, t)
    core.on_response(g, t + NS, 429, None, retry_after_ns=NS)
    assert core.ready_at(t + 2 * NS, 5) < t + 3 * NS


def test_core_429_header_teaches_a_lower_limit() -> None:
    core = make(6000)
    g = core.grant(T0, 5)
    core.on_response(g, T0 + NS, 429, 5000, retry_after_ns=NS)
    assert core.ceiling == 4995
    assert core.effective == 4995 * 99 // 100


def test_core_429_with_implausibly_low_header_does_not_collapse_the_limit() -> None:
    core = make(6000)
    g = core.grant(T0, 5)
    core.on_response(g, T0 + NS, 429, 10, retry_after_ns=NS)
    assert core.ceiling == 6000


def test_core_418_bans_the_group_for_retry_after() -> None:
    group = IPGroupState("default")
    core = make(6000, group=group)
    g = core.grant(T0, 5)
    until = core.on_response(g, T0 + NS, 418, None, retry_after_ns=120 * NS)
    assert until == T0 + 121 * NS
    assert group.banned(T0 + 100 * NS)
    assert not group.banned(until)
    assert core.ready_at(T0 + 2 * NS, 5) >= until


def test_core_rejected_request_is_not_counted_as_done() -> None:
    core = aligned_core()
    k = T0 // W + 1
    t = k * W + 10 * NS
    g = core.grant(t, 5)
    core.mark_sent(g, t)
    core.on_response(g, t + NS, 429, 300, retry_after_ns=NS)
    charged, done, _ = core.window_state(k)  # type: ignore[misc]
    assert (charged, done) == (5, 0)


def test_core_foreign_usage_slows_the_pacer_and_spreads_the_window() -> None:
    core = aligned_core()
    rate = core.rate
    k = T0 // W + 1
    t = k * W + 30 * NS
    g = core.grant(t, 5)
    core.mark_sent(g, t)
    core.on_response(g, t + NS, 200, 605)  # others: at least 600 so far
    assert core.rate < rate
    assert core.rate == pytest.approx((core.effective - core.burst - 600) * NS / core.span)


# --- property tests --------------------------------------------------------------------------


@dataclass(order=True)
class _Event:
    at: int
    seq: int
    kind: str = field(compare=False)
    grant: Grant | None = field(compare=False, default=None)
    weight: int = field(compare=False, default=0)
    down: int = field(compare=False, default=0)
    fate: str = field(compare=False, default="ok")
    header: int = field(compare=False, default=0)


@dataclass
class _Server:
    offset: int  # true server time minus local time
    window: int
    counts: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    own: list[tuple[int, int]] = field(default_factory=list)  # (server arrival, weight)

    def arrive(self, local: int, weight: int, own: bool = True) -> int:
        at = local + self.offset
        k = at // self.window
        self.counts[k] += weight
        if own:
            self.own.append((at, weight))
        return self.counts[k]


_request = st.tuples(
    st.integers(0, 3 * NS),  # gap before the caller asks
    st.integers(1, 60),  # weight
    st.integers(0, J),  # grant -> arrival at the server
    st.integers(0, 2 * NS),  # arrival -> response back
    st.sampled_from(["ok", "ok", "ok", "refund", "lost", "429"]),
)


def _simulate(
    core: BudgetCore,
    server: _Server,
    requests: list[tuple[int, int, int, int, str]],
    foreign: dict[int, int] | None = None,
    check_ledger: bool = False,
) -> None:
    """Drive ``core`` through ``requests`` against ``server``; events in time order."""
    events: list[_Event] = []
    seq = itertools.count()
    t = T0
    first_k = (T0 + server.offset) // server.window
    if foreign:
        for i, amount in foreign.items():
            at = (first_k + i) * server.window - server.offset  # at the window's first instant
            heapq.heappush(events, _Event(at, next(seq), "foreign", weight=amount))

    def run_until(limit: int) -> None:
        while events and events[0].at <= limit:
            ev = heapq.heappop(events)
            if ev.kind == "foreign":
                server.arrive(ev.at, ev.weight, own=False)
            elif ev.kind == "arrive":
                header = server.arrive(ev.at, ev.weight)
                heapq.heappush(
                    events,
                    _Event(
                        ev.at + ev.down,
                        next(seq),
                        "answer",
                        ev.grant,
                        ev.weight,
                        0,
                        ev.fate,
                        header,
                    ),
                )
            else:
                assert ev.grant is not None
                if ev.fate == "lost":
                    core.finish(ev.grant, ev.at)
                elif ev.fate == "429":
                    core.on_response(ev.grant, ev.at, 429, None, retry_after_ns=NS)
                else:
                    core.on_response(ev.grant, ev.at, 200, ev.header)

    for gap, weight, up, down, fate in requests:
        t += gap
        weight = min(weight, core.effective)
        while True:
            run_until(t)
            ready = core.ready_at(t, weight)
            if ready <= t:
                break
            nxt = events[0].at if events else ready
            t = min(ready, max(nxt, t + 1))
        if check_ledger:
            _check_ledger(core, server, t)
        g = core.grant(t, weight)
        if fate == "refund":
            core.refund(g, t)
            continue
        core.mark_sent(g, t)
        heapq.heappush(events, _Event(t + up, next(seq), "arrive", g, weight, down, fate))
    run_until(t + 10 * W)


def _check_ledger(core: BudgetCore, server: _Server, now: int) -> None:
    """Once the server has reported on a window, the ledger never under-counts it."""
    offset = core.clock.offset
    assert offset is not None
    for k in range((now + offset) // server.window - 1, (now + offset) // server.window + 2):
        state = core.window_state(k)
        if state is None or state[1] == 0:
            continue
        charged, _done, excess = state
        assert charged + excess >= server.counts.get(k, 0), (k, state, server.counts.get(k))


def _assert_windows(server: _Server, limit: int, window: int) -> None:
    # Fixed windows at the server's phase.
    for k, count in server.counts.items():
        assert count <= limit, f"server minute {k} saw {count} > {limit}"
    # Rolling windows: every [a, a + window) starting at an arrival.
    arrivals = sorted(server.own)
    j = 0
    total = 0
    for i, (start, _w) in enumerate(arrivals):
        while j < len(arrivals) and arrivals[j][0] < start + window:
            total += arrivals[j][1]
            j += 1
        assert total <= limit, f"rolling window at {start} saw {total} > {limit}"
        total -= arrivals[i][1]


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    requests=st.lists(_request, min_size=50, max_size=250),
    limit=st.integers(100, 600),
    phase=st.integers(0, 10 * NS),
)
def test_core_property_own_traffic_never_exceeds_any_window_without_offset(
    requests: list[tuple[int, int, int, int, str]], limit: int, phase: int
) -> None:
    window = 10 * NS
    core = make(limit, window=window, spread=J)
    server = _Server(offset=phase, window=window)
    _simulate(core, server, requests)
    _assert_windows(server, core.effective, window)


@PROPERTY
@given(
    requests=st.lists(_request, min_size=50, max_size=250),
    limit=st.integers(100, 600),
    phase=st.integers(-(10**12), 10**12),
    error=st.integers(-50_000_000, 50_000_000),
    probe=st.booleans(),
)
def test_core_property_own_traffic_never_exceeds_any_window_with_offset(
    requests: list[tuple[int, int, int, int, str]],
    limit: int,
    phase: int,
    error: int,
    probe: bool,
) -> None:
    window = 10 * NS
    clock = ServerOffset(drift_ppm=0)
    clock.set(phase + error, abs(error), T0)
    core = make(limit, window=window, spread=J, offset=clock, probe=probe)
    server = _Server(offset=phase, window=window)
    _simulate(core, server, requests, check_ledger=True)
    _assert_windows(server, core.effective, window)


@PROPERTY
@given(
    requests=st.lists(_request.filter(lambda r: r[4] != "429"), min_size=50, max_size=250),
    limit=st.integers(200, 600),
    phase=st.integers(-(10**12), 10**12),
    error=st.integers(-50_000_000, 50_000_000),
    foreign=st.dictionaries(st.integers(0, 40), st.integers(1, 150), max_size=40),
)
def test_core_property_ledger_never_undercounts_a_reported_window(
    requests: list[tuple[int, int, int, int, str]],
    limit: int,
    phase: int,
    error: int,
    foreign: dict[int, int],
) -> None:
    window = 10 * NS
    clock = ServerOffset(drift_ppm=0)
    clock.set(phase + error, abs(error), T0)
    core = make(limit, window=window, spread=J, offset=clock)
    server = _Server(offset=phase, window=window)
    _simulate(core, server, requests, foreign=foreign, check_ledger=True)


class _Twins:
    """Two cores driven in lockstep: ``fast`` decides through ``ready_now`` first (as the
    async limiter does, which fills and uses its span cache), ``plain`` through
    ``ready_at`` alone. Every answer and every window must agree."""

    def __init__(self, fast: BudgetCore, plain: BudgetCore) -> None:
        self.fast, self.plain = fast, plain
        self.twin: dict[int, Grant] = {}
        self.clock = fast.clock
        self.effective = fast.effective
        self.fast_answers = 0

    def _agree(self, now: int) -> None:
        offset = self.fast.clock.offset
        if offset is not None:
            k = (now + offset) // self.fast.window
            for j in range(k - 2, k + 3):
                assert self.fast.window_state(j) == self.plain.window_state(j), j
        assert self.fast.granted_cum == self.plain.granted_cum
        assert self.fast.outstanding == self.plain.outstanding
        assert self.fast.paused_until == self.plain.paused_until

    def ready_at(self, now: int, weight: int) -> int:
        fast = self.fast.ready_now(now, weight)
        ready = self.fast.ready_at(now, weight)
        assert ready == self.plain.ready_at(now, weight)
        assert not fast or ready <= now, (now, weight, ready)
        self.fast_answers += fast
        return ready

    def grant(self, now: int, weight: int) -> Grant:
        g = self.fast.grant(now, weight)
        h = self.twin[id(g)] = self.plain.grant(now, weight)
        assert g.windows == h.windows
        self._agree(now)
        return g

    def refund(self, g: Grant, now: int) -> None:
        assert self.fast.refund(g, now) == self.plain.refund(self.twin[id(g)], now)
        self._agree(now)

    def mark_sent(self, g: Grant, now: int) -> None:
        self.fast.mark_sent(g, now)
        self.plain.mark_sent(self.twin[id(g)], now)
        assert g.windows == self.twin[id(g)].windows
        assert g.snap == self.twin[id(g)].snap
        self._agree(now)

    def finish(self, g: Grant, now: int) -> None:
        assert self.fast.finish(g, now) == self.plain.finish(self.twin[id(g)], now)

    def on_response(self, g: Grant, now: int, status: int, used: int | None, **kw: int) -> None:
        h = self.twin[id(g)]
        assert self.fast.on_response(g, now, status, used, **kw) == self.plain.on_response(
            h, now, status, used, **kw
        )
        assert g.windows == h.windows
        self._agree(now)

    def window_state(self, k: int) -> tuple[int, int, int] | None:
        return self.fast.window_state(k)


@PROPERTY
@given(
    requests=st.lists(_request, min_size=50, max_size=250),
    limit=st.integers(200, 600),
    phase=st.integers(-(10**12), 10**12),
    error=st.integers(-50_000_000, 50_000_000),
    drift=st.sampled_from([0, 100, 20_000]),
    foreign=st.dictionaries(st.integers(0, 40), st.integers(1, 150), max_size=40),
    aligned=st.booleans(),
    probe=st.booleans(),
)
def test_core_property_fast_path_decides_and_books_exactly_as_ready_at(
    requests: list[tuple[int, int, int, int, str]],
    limit: int,
    phase: int,
    error: int,
    drift: int,
    foreign: dict[int, int],
    aligned: bool,
    probe: bool,
) -> None:
    window = 10 * NS
    cores = []
    for _ in range(2):
        clock = ServerOffset(drift_ppm=drift, window_ns=window)
        if aligned:
            clock.set(phase + error, abs(error), T0)
        cores.append(make(limit, window=window, spread=J, offset=clock, probe=probe))
    twins = _Twins(*cores)
    _simulate(twins, _Server(offset=phase, window=window), requests, foreign=foreign)  # type: ignore[arg-type]
