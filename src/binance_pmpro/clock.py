"""Timestamps for signed requests.

Binance rejects a request whose ``timestamp`` is more than 1 s ahead of its clock or older
than ``recvWindow`` (-1021). The client stamps each request from :class:`ServerClock`: the
local wall clock plus an offset to Binance's clock (0 until measured or set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["ClockSample", "ServerClock", "offset_from_sample"]


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One ``GET /api/v3/time`` exchange: local send/receive times and the server's time (ms)."""

    sent_ms: float
    received_ms: float
    server_ms: int

    @property
    def round_trip_ms(self) -> float:
        """Round-trip time of the exchange."""
        return self.received_ms - self.sent_ms


def offset_from_sample(sample: ClockSample) -> tuple[float, float]:
    """``(offset, error bound)`` in ms from one sample; pure.

    The server read its clock somewhere between our send and receive, so the true offset
    lies in ``[server - received, server + 1 - sent]`` (the +1: the server truncates to
    whole ms). The midpoint is the estimate, half the interval the bound.
    """
    low = sample.server_ms - sample.received_ms
    high = sample.server_ms + 1 - sample.sent_ms
    return (low + high) / 2, (high - low) / 2


class ServerClock:
    """Binance's clock as seen from here: local wall clock plus a measured or given offset."""

    __slots__ = ("error_ms", "offset_ms", "synced")

    def __init__(self, offset_ms: float = 0.0) -> None:
        self.offset_ms = offset_ms
        """Add this to the local clock to get Binance's (ms)."""
        self.error_ms: float | None = None
        """Bound on the offset's error (ms), None until measured."""
        self.synced = False

    def now_ms(self) -> int:
        """Binance's current time in ms, as best known."""
        return int(time.time() * 1000 + self.offset_ms)

    def update(self, sample: ClockSample) -> None:
        """Adopt the offset measured by ``sample``."""
        self.offset_ms, self.error_ms = offset_from_sample(sample)
        self.synced = True

    @staticmethod
    def local_ms() -> float:
        """The local wall clock in ms, for timing a sample."""
        return time.time() * 1000
