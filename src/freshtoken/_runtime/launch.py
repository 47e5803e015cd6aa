"""Starting a refresh thread without making the caller wait for it.

``threading.Thread.start()`` returns only once the new thread has begun to run. That takes the
GIL, and a new thread with work to do keeps it for up to the interpreter's switch interval
(5 ms by default) before the starting thread gets it back. ``benchmarks/thread_start.py``
measured it: a caller starting a thread with 10 ms of work waited 5.3 ms (median) and up to
10.9 ms in ``start()``. The caller that finds a token stale and starts its refresh is one of the
callers the refresh must not delay, so it hands the ``start()`` to a short-lived low-level
thread (``_thread.start_new_thread`` returns at once: 0.09 ms median, 0.71 ms max, same run) and
goes on with the still-valid token. The refresh itself still runs in an ordinary named daemon
thread.

:func:`wait_for_launches` lets tests wait until every launch has started its thread (after which
they can ``join()`` it by name).
"""

from __future__ import annotations

import _thread
import os
import threading
from collections.abc import Callable

__all__ = ["launch", "wait_for_launches"]


class _Launcher:
    """Counts launches that have not started their thread yet (for :func:`wait_for_launches`)."""

    def __init__(self) -> None:
        self._pending = 0
        self._idle = threading.Condition(threading.Lock())

    def launch(self, thread: threading.Thread, on_failure: Callable[[BaseException], None]) -> None:
        with self._idle:
            self._pending += 1

        def start() -> None:
            try:
                thread.start()
            except BaseException as error:
                on_failure(error)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

        try:
            _thread.start_new_thread(start, ())
        except RuntimeError:  # no thread can be started now: try the ordinary way, here
            start()

    def wait(self, timeout: float | None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def reset(self) -> None:
        """In a forked child: the launching threads did not survive the fork."""
        self._pending = 0
        self._idle = threading.Condition(threading.Lock())


_LAUNCHER = _Launcher()


def launch(thread: threading.Thread, on_failure: Callable[[BaseException], None]) -> None:
    """Start ``thread`` without waiting for it to run; ``on_failure(error)`` if it cannot start
    (in whichever thread found out), so that whoever waits for its work is told, never left
    waiting."""
    _LAUNCHER.launch(thread, on_failure)


def wait_for_launches(timeout: float | None = None) -> bool:
    """Block until every :func:`launch` so far has started its thread (or failed to)."""
    return _LAUNCHER.wait(timeout)


os.register_at_fork(after_in_child=_LAUNCHER.reset)
