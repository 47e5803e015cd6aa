"""One fetch in flight, awaited by threads and by asyncio tasks on any event loop.

A :class:`Flight` is resolved exactly once, by the caller that owns the fetch, with a token, an
error, or nothing at all (the owner was cancelled: waiters then ask the lifecycle again and one of
them takes the fetch over). Thread waiters block on a :class:`threading.Event`; task waiters await
a future on their own loop, resolved through ``call_soon_threadsafe``, so a fetch led by a thread
wakes tasks on three loops, and a fetch led by a task wakes threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading

from ._token import Token

__all__ = ["ABANDONED", "Flight", "clone_error"]


class _Abandoned:
    """The flight ended without a result; ask again."""

    def __repr__(self) -> str:
        return "ABANDONED"


ABANDONED = _Abandoned()

Outcome = Token | BaseException | _Abandoned


def clone_error(error: BaseException) -> BaseException:
    """A copy of ``error`` to raise in one more waiter, with its own traceback.

    Raising one exception object in many threads at once would splice their tracebacks together.
    The copy keeps the type, the attributes and the chained cause.
    """
    try:
        clone = copy.copy(error)
    except Exception:
        return error
    clone.__cause__ = error.__cause__
    clone.__context__ = error.__context__
    clone.__suppress_context__ = error.__suppress_context__
    return clone.with_traceback(None)


class Flight:
    """The shared outcome of one fetch."""

    __slots__ = ("_done", "_lock", "_outcome", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._outcome: Outcome | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def resolve(self, outcome: Outcome) -> None:
        """Publish the outcome and wake every waiter (a second call changes nothing)."""
        with self._lock:
            if self._outcome is not None:
                return
            self._outcome = outcome
            waiters, self._waiters = self._waiters, []
        self._done.set()
        for loop, future in waiters:
            # A closed loop (RuntimeError) has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    def wait(self) -> Outcome:
        """Block the calling thread until the outcome is published."""
        self._done.wait()
        return self._result()

    async def wait_async(self) -> Outcome:
        """Wait on the running loop until the outcome is published."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._outcome is None:
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            else:
                return self._result()
        await future
        return self._result()

    def _result(self) -> Outcome:
        outcome = self._outcome
        assert outcome is not None
        if isinstance(outcome, BaseException):
            return clone_error(outcome)
        return outcome


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
