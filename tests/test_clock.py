"""Clock offset arithmetic: the estimate and its honest error bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from binance_pmpro.clock import ClockSample, ServerClock, offset_from_sample


def test_offset_from_sample_symmetric_round_trip_gives_midpoint() -> None:
    # Sent at 1000, received at 1100 (local ms); the server said 6050.
    offset, error = offset_from_sample(ClockSample(1000.0, 1100.0, 6050))
    assert offset == 5000.5
    assert error == 50.5


@given(
    sent=st.floats(min_value=0, max_value=1e12),
    rtt=st.floats(min_value=0, max_value=10_000),
    true_offset=st.floats(min_value=-1e7, max_value=1e7),
    server_at=st.floats(min_value=0, max_value=1),
)
def test_offset_from_sample_true_offset_always_within_bound(
    sent: float, rtt: float, true_offset: float, server_at: float
) -> None:
    # The server reads its clock at some instant inside the round trip and truncates to ms.
    local_read = sent + rtt * server_at
    server_ms = int((local_read + true_offset) // 1)
    offset, error = offset_from_sample(ClockSample(sent, sent + rtt, server_ms))
    assert abs(offset - true_offset) <= error + 1e-6 * max(1.0, abs(sent))


def test_server_clock_update_applies_offset_to_timestamps() -> None:
    clock = ServerClock()
    before = clock.now_ms()
    local = ServerClock.local_ms()
    clock.update(ClockSample(local, local, int(local) + 60_000))
    assert clock.synced
    assert clock.error_ms is not None
    assert clock.error_ms <= 1
    assert clock.now_ms() - before >= 59_000
