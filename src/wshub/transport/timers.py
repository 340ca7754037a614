"""Coarse per-connection timers: one event-loop timer per time slot, not per connection.

Every connection always has one timer armed (the next heartbeat, the pong deadline or the
close deadline). An event-loop timer each costs an allocation and a heap insertion in the
accept path and a few hundred bytes per idle connection; heartbeats do not need that
precision. Here a callback lands in the slot of ``resolution`` seconds that contains its
deadline (never early, at most one slot late), and each non-empty slot holds one loop timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("wshub.transport")

# Delays from here on (about 30 years, and inf) are never scheduled.
_NEVER = 1e9


class Timer:
    """A scheduled callback; ``cancel()`` is idempotent and safe after it ran."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None


class TimerWheel:
    """Owns the loop timers of its slots; :meth:`close` cancels them all."""

    __slots__ = ("_closed", "_handles", "_loop", "_resolution", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = 0.05) -> None:
        self._loop = loop
        self._resolution = resolution
        self._slots: dict[int, list[Timer]] = {}
        self._handles: dict[int, asyncio.TimerHandle] = {}
        self._closed = False

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once, no sooner than ``delay`` seconds from now."""
        timer = Timer(callback)
        if self._closed or not delay < _NEVER:
            return timer  # never runs (``inf`` is a valid configured interval)
        # the first slot that starts at or after the deadline
        slot = -int(-(self._loop.time() + delay) // self._resolution)
        timers = self._slots.get(slot)
        if timers is None:
            self._slots[slot] = [timer]
            self._handles[slot] = self._loop.call_at(slot * self._resolution, self._fire, slot)
        else:
            timers.append(timer)
        return timer

    def _fire(self, slot: int) -> None:
        self._handles.pop(slot, None)
        for timer in self._slots.pop(slot, ()):
            callback = timer.callback
            if callback is None:
                continue
            timer.callback = None
            try:
                callback()
            except Exception:
                log.exception("timer callback failed")

    def pending(self) -> int:
        """Timers still to run (cancelled ones excluded)."""
        return sum(t.callback is not None for timers in self._slots.values() for t in timers)

    def close(self) -> None:
        """Cancel every pending timer; later ones never run."""
        self._closed = True
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._slots.clear()
