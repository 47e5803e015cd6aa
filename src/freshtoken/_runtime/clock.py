"""Time as an interface.

freshtoken reads two clocks and never confuses them:

* ``monotonic()`` drives every deadline (when a token turns stale, when callers must wait, when a
  backoff ends). It never jumps, so an NTP step or a suspend/resume cannot expire a good token or
  keep a dead one alive.
* ``time()`` (seconds since the epoch) is only used to talk to the outside world: the ``exp`` and
  ``iat`` claims of a JWT, ``Token.expires_at``, the ``Date`` header, and tokens shared through a
  store between processes or hosts.

Tests pass a :class:`FakeClock` (re-exported as ``freshtoken.testing.FakeClock``) instead of
sleeping, in the spirit of trio's ``MockClock``.
"""

from __future__ import annotations

import threading
import time as _time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock", "SYSTEM_CLOCK"]


@runtime_checkable
class Clock(Protocol):
    """What freshtoken needs from a clock: a monotonic reading and the wall-clock time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (only differences are meaningful)."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch, as the rest of the world counts them."""
        ...


class SystemClock:
    """The real clocks: :func:`time.monotonic` and :func:`time.time`."""

    __slots__ = ()

    monotonic = staticmethod(_time.monotonic)
    time = staticmethod(_time.time)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to.

    ``advance(s)`` moves both clocks forward together, as real time does. ``jump_wall(s)`` moves the
    wall clock alone (by a negative amount too), as an NTP step or a resume from suspend does; the
    monotonic clock is unaffected, so deadlines must not move.

    It is safe to share between threads.
    """

    __slots__ = ("_lock", "_monotonic", "_wall")

    def __init__(self, *, monotonic: float = 1000.0, time: float = 1_800_000_000.0) -> None:
        self._lock = threading.Lock()
        self._monotonic = float(monotonic)
        self._wall = float(time)

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on both clocks."""
        if seconds < 0:
            raise ValueError("FakeClock.advance() takes a non-negative number of seconds")
        with self._lock:
            self._monotonic += seconds
            self._wall += seconds

    def jump_wall(self, seconds: float) -> None:
        """Step the wall clock alone by ``seconds`` (positive or negative)."""
        with self._lock:
            self._wall += seconds

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._monotonic!r}, time={self._wall!r})"
