"""Virtual clocks for asyncio and trio, for timing tests that must not depend on real time.

trio has one built in (``trio.testing.MockClock(autojump_threshold=0)``: whenever every task
is blocked, time jumps to the next deadline). :class:`VirtualEventLoop` does the same for
asyncio: its ``time()`` only moves when the loop would otherwise sleep, and then straight to
the next timer, so a test of five simulated minutes runs in as long as its callbacks take.
Never combine it with sockets or threads: nothing real would ever get a chance to happen.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

import trio.testing

__all__ = ["VirtualEventLoop", "virtual_backends"]

_START = 10_000.0  # an arbitrary epoch: code must not assume the clock starts at 0
_IDLE_LIMIT = 3  # blocking selects with nothing scheduled before we call it a deadlock


class _VirtualSelector(selectors.BaseSelector):
    """Wraps a real selector: polls it without blocking, and turns every wait into a jump
    of the loop's virtual clock."""

    def __init__(self, loop: VirtualEventLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop
        self._idle = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            self._idle = 0
            return ready
        if timeout is None:
            # Nothing scheduled and nothing ready: only the outside world (a thread's
            # call_soon_threadsafe) could wake us. Give it a moment of real time.
            self._idle += 1
            if self._idle > _IDLE_LIMIT:
                raise RuntimeError("virtual event loop deadlocked: no timers, no I/O")
            return self._real.select(1.0)
        self._idle = 0
        self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a virtual clock (see the module docstring)."""

    def __init__(self) -> None:
        self._virtual_now = _START
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Jump the clock forward: by ``seconds``, and at least to the next timer."""
        target = self._virtual_now + seconds
        scheduled = getattr(self, "_scheduled", None)
        if scheduled:
            # Float rounding must not leave the clock a hair short of the deadline.
            target = max(target, scheduled[0].when())
        self._virtual_now = target


def virtual_backends() -> list[Any]:
    """``anyio_backend`` parameters: asyncio and trio, both on virtual clocks (a fresh trio
    clock per call, so call it from a fixture)."""
    return [
        ("asyncio", {"loop_factory": VirtualEventLoop}),
        ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}),
    ]
