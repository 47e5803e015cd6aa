"""One fetch in flight, awaited by threads and by asyncio tasks on any event loop.

A :class:`Flight` is resolved exactly once, by the caller that owns the fetch, with a token, an
error, or nothing at all (the owner was cancelled: waiters then ask the lifecycle again and one of
them takes the fetch over). Thread waiters block on a :class:`threading.Event`; task waiters await
a future on their own loop, resolved through ``call_soon_threadsafe``, so a fetch led by a thread
wakes tasks on three loops, and a fetch led by a task wakes threads.

A flight also knows who runs its fetch (a thread or an event loop), so that a waiter can tell a
fetch that is merely slow from one whose owner is gone (its loop closed with the task still
pending, its thread dead) and would otherwise be waited for forever. Waits are bounded slices:
the caller decides, between slices, whether to keep waiting, take the fetch over or give up.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading

from freshtoken._core.token import Token

__all__ = ["ABANDONED", "PENDING", "Flight", "clone_error"]


class _Abandoned:
    """The flight ended without a result; ask again."""

    def __repr__(self) -> str:
        return "ABANDONED"


ABANDONED = _Abandoned()


class _Pending:
    """The wait slice ran out before the outcome was published; the flight goes on."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()

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

    __slots__ = ("_done", "_lock", "_outcome", "_owner_loop", "_owner_thread", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._outcome: Outcome | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._owner_loop: asyncio.AbstractEventLoop | None = None
        self._owner_thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def run_by_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Record that a task on ``loop`` runs the fetch (it lands only while the loop runs)."""
        self._owner_loop = loop
        self._owner_thread = None

    def run_by_thread(self, thread: threading.Thread) -> None:
        """Record that ``thread`` runs the fetch (it lands only while the thread lives)."""
        self._owner_thread = thread
        self._owner_loop = None

    def owner_gone(self) -> bool:
        """True when the fetch can never land: its loop is closed or its thread has ended.

        A flight whose owner is not recorded yet (a refresh thread being launched) counts as
        alive; a failed launch resolves the flight itself.
        """
        if self._done.is_set():
            return False
        loop, thread = self._owner_loop, self._owner_thread
        if loop is not None:
            return loop.is_closed()
        return thread is not None and not thread.is_alive()

    def run_by_running_loop_of_this_thread(self) -> bool:
        """True when the fetch's task belongs to the loop running in the calling thread.

        Blocking this thread until the flight lands would then stop the very loop that has to
        land it.
        """
        loop = self._owner_loop
        return loop is not None and asyncio._get_running_loop() is loop

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

    def wait(self, timeout: float) -> Outcome | _Pending:
        """Block the calling thread until the outcome is published, or ``timeout`` seconds."""
        if not self._done.wait(timeout):
            return PENDING
        return self._result()

    async def wait_async(self, timeout: float) -> Outcome | _Pending:
        """Wait on the running loop until the outcome is published, or ``timeout`` seconds.

        Cancelling the waiting task stops only this wait, never the fetch: the waiter's own
        future is dropped and the flight goes on for the others.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._outcome is not None:
                return self._result()
            future: asyncio.Future[None] = loop.create_future()
            waiter = (loop, future)
            self._waiters.append(waiter)
        try:
            await asyncio.wait((future,), timeout=timeout)
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        if not self._done.is_set():
            return PENDING
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
