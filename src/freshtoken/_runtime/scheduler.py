"""The process-wide scheduler behind ``TokenManager(background=True)``.

Every background manager of a process shares one :class:`Scheduler`: a heap of (deadline, manager)
entries served by ONE daemon thread, however many managers exist, so 10,000 managers cost 10,000
heap entries, not 10,000 threads. When a deadline comes (a token's stale point, or the end of a
failed refresh's backoff) the thread hands ``manager._refresh_due()`` to a small pool of daemon
worker threads (at most four, started on demand, gone after a minute idle), so one slow token
endpoint never delays another manager's refresh.

The parts, from pure to impure:

* :class:`_Schedule` decides: which keys are due at ``now``, when the next one is. A pure data
  structure (no clock, no lock), tested with plain numbers.
* :func:`pending_wakeup` says when a manager whose wake-up came early should be woken again (pure).
* :class:`Scheduler` is the thin thread part: a lock, a condition variable, weak references.

Why not ``concurrent.futures.ThreadPoolExecutor`` for the workers: its threads are joined at
interpreter exit, so a refresh stuck on a dead token endpoint would hold the process open. Ours
are daemon threads and nothing ever joins them: exit is never blocked.

Managers are referenced weakly (a forgotten manager is collected and its entry dropped).
Deadlines are read on each manager's own monotonic clock and translated to the scheduler's, so a
manager driven by a :class:`~freshtoken.testing.FakeClock` still gets sensible wake-ups.
"""

from __future__ import annotations

import atexit
import collections
import heapq
import itertools
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from freshtoken._core.events import logger

from .clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from freshtoken._core.lifecycle import Lifecycle

__all__ = ["SCHEDULER", "Scheduler", "pending_wakeup"]

K = TypeVar("K", bound=Hashable)

#: The scheduler thread never sleeps longer than this, so it notices a shutdown or a dropped
#: manager within a minute even if nobody notifies it (one wake-up a minute costs nothing).
MAX_SLEEP = 60.0
#: How many refreshes may run at once (each in its own worker thread).
MAX_WORKERS = 4
#: A worker with nothing to do for this long ends; the next due refresh starts a new one.
WORKER_IDLE_TIMEOUT = 60.0


class _Schedule(Generic[K]):
    """Deadlines by key: a heap with replace-on-reschedule and lazy deletion. Pure.

    Each key has at most one deadline; scheduling it again replaces the old one (the old heap
    entry stays in the heap, marked stale by its sequence number, and is skipped when it
    surfaces). So ``add`` and ``remove`` are O(log n) / O(1) and ``due`` pops in deadline order.
    """

    __slots__ = ("_current", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._current: dict[K, tuple[int, float]] = {}  # key -> (sequence, deadline)
        self._seq = itertools.count()

    def add(self, key: K, when: float) -> bool:
        """Set ``key``'s deadline to ``when``; True if it is now the earliest deadline."""
        seq = next(self._seq)
        self._current[key] = (seq, when)
        earliest = self.next_wakeup()
        heapq.heappush(self._heap, (when, seq, key))
        return earliest is None or when < earliest

    def remove(self, key: K) -> None:
        """Forget ``key``'s deadline (its heap entry is skipped when it surfaces)."""
        self._current.pop(key, None)

    def deadline(self, key: K) -> float | None:
        """``key``'s deadline, or ``None`` when it has none."""
        current = self._current.get(key)
        return None if current is None else current[1]

    def due(self, now: float) -> list[K]:
        """Remove and return the keys whose deadline is at or before ``now``, earliest first."""
        heap = self._heap
        out: list[K] = []
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            current = self._current.get(key)
            if current is not None and current[0] == seq:
                del self._current[key]
                out.append(key)
        return out

    def next_wakeup(self) -> float | None:
        """The earliest live deadline, or ``None`` when nothing is scheduled."""
        heap = self._heap
        while heap:
            _, seq, key = heap[0]
            current = self._current.get(key)
            if current is not None and current[0] == seq:
                return heap[0][0]
            heapq.heappop(heap)  # a replaced or removed entry: drop it now
        return None

    def __len__(self) -> int:
        return len(self._current)

    def __contains__(self, key: object) -> bool:
        return key in self._current


def pending_wakeup(life: Lifecycle, now: float) -> float | None:
    """When a manager woken at ``now`` with nothing to do should be woken again. Pure.

    * a fetch is in flight: ``None`` (its outcome schedules the next wake-up);
    * the token is still fresh (the wake-up came early): its stale point;
    * a failure is backing off: the end of the backoff;
    * otherwise ``None``.
    """
    if life.fetching:
        return None
    entry = life.entry
    if entry is not None and entry.fresh(now):
        return entry.stale_at
    failure = life.failure
    if failure is not None and now < failure.not_before:
        return failure.not_before
    return None


class Refreshable(Protocol):
    """What the scheduler needs of a manager."""

    @property
    def clock(self) -> Clock: ...

    def _refresh_due(self) -> None: ...


class _ManagerRef(weakref.ref[Refreshable]):
    """A weak reference that remembers the schedule key of its manager (for dropping it)."""

    __slots__ = ("key",)
    key: int


class _Workers:
    """At most ``limit`` daemon threads running submitted callables; started on demand."""

    def __init__(self, limit: int, idle_timeout: float, name: str) -> None:
        self._limit = limit
        self._idle_timeout = idle_timeout
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._tasks: collections.deque[Callable[[], None]] = collections.deque()
        self._threads = 0
        self._idle = 0
        self._stopped = False
        self._numbers = itertools.count(1)

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, task: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                return
            self._tasks.append(task)
            self._cond.notify()
            if len(self._tasks) > self._idle and self._threads < self._limit:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{next(self._numbers)}", daemon=True
                ).start()

    def stop(self) -> None:
        """Drop queued tasks; each worker ends after its current task."""
        with self._cond:
            self._stopped = True
            self._tasks.clear()
            self._cond.notify_all()

    def _next_task(self) -> Callable[[], None] | None:
        with self._cond:
            self._idle += 1
            try:
                while not self._tasks and not self._stopped:
                    if not self._cond.wait(self._idle_timeout):
                        break  # idle too long (a task that came just now is still taken below)
                if self._stopped or not self._tasks:
                    self._threads -= 1
                    return None
                return self._tasks.popleft()
            finally:
                self._idle -= 1

    def _work(self) -> None:
        while (task := self._next_task()) is not None:
            try:
                task()
            except Exception as error:
                logger.warning("background refresh raised %s", type(error).__name__)
            del task


class Scheduler:
    """One thread waking managers at their deadlines (see the module docstring).

    ``register(manager)`` makes a manager eligible; ``schedule(manager, when)`` sets its one
    deadline (``when`` on the manager's own monotonic clock; a later call replaces an earlier
    one); ``unregister(manager)`` forgets it (``close()`` does this, so closed managers are never
    woken). ``threaded=False`` runs no thread: :meth:`run_pending` then runs the due refreshes in
    the calling thread, which is how tests drive it with a fake clock. ``name`` prefixes the
    threads' names (``freshtoken-scheduler``, ``freshtoken-refresh-worker-N``).
    """

    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        *,
        threaded: bool = True,
        max_workers: int = MAX_WORKERS,
        worker_idle_timeout: float = WORKER_IDLE_TIMEOUT,
        max_sleep: float = MAX_SLEEP,
        name: str = "freshtoken",
    ) -> None:
        self._name = name
        self._clock = clock
        self._threaded = threaded
        self._max_workers = max_workers
        self._worker_idle_timeout = worker_idle_timeout
        self._max_sleep = max_sleep
        self._schedule: _Schedule[int] = _Schedule()
        self._refs: dict[int, _ManagerRef] = {}
        self._collected: collections.deque[_ManagerRef] = collections.deque()
        self._shutdown = False
        self._reset_threads()
        _SCHEDULERS.add(self)

    def _reset_threads(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._workers = _Workers(
            self._max_workers, self._worker_idle_timeout, f"{self._name}-refresh-worker"
        )

    # -- the managers' side -----------------------------------------------------------------------

    def register(self, manager: Refreshable) -> None:
        """Make ``manager`` eligible for wake-ups (it has none until :meth:`schedule`)."""
        key = id(manager)
        ref = _ManagerRef(manager, self._collected.append)
        ref.key = key
        with self._cond:
            self._drop_collected()
            self._refs[key] = ref
            self._schedule.remove(key)  # a stale deadline of a collected manager with this id

    def unregister(self, manager: Refreshable) -> None:
        """Forget ``manager``: it is never woken again (unless registered anew)."""
        key = id(manager)
        with self._cond:
            if self._owns(key, manager):
                del self._refs[key]
                self._schedule.remove(key)

    def schedule(self, manager: Refreshable, when: float) -> None:
        """Wake ``manager`` at ``when`` (its own monotonic clock); ignored if not registered."""
        delay = when - manager.clock.monotonic()
        key = id(manager)
        with self._cond:
            if self._shutdown or not self._owns(key, manager):
                return
            earliest = self._schedule.add(key, self._clock.monotonic() + delay)
            if self._threaded:
                if self._thread is None:
                    self._start_thread()
                elif earliest:
                    self._cond.notify()

    def deadline(self, manager: Refreshable) -> float | None:
        """When ``manager`` is next woken, on its own monotonic clock (``None``: not scheduled)."""
        with self._cond:
            if not self._owns(id(manager), manager):
                return None
            when = self._schedule.deadline(id(manager))
            if when is None:
                return None
            return when - self._clock.monotonic() + manager.clock.monotonic()

    def __contains__(self, manager: object) -> bool:
        """True while ``manager`` is registered."""
        with self._cond:
            return self._owns(id(manager), manager)

    def __len__(self) -> int:
        """How many managers have a pending wake-up."""
        with self._cond:
            return len(self._schedule)

    @property
    def thread(self) -> threading.Thread | None:
        """The scheduler thread, once started."""
        return self._thread

    @property
    def worker_threads(self) -> int:
        """How many worker threads exist right now."""
        return self._workers.threads

    def shutdown(self) -> None:
        """Stop waking managers (at interpreter exit). Never waits for a thread."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
        self._workers.stop()

    # -- the decisions --------------------------------------------------------------------------

    def run_pending(self) -> int:
        """Wake every manager due now, in this thread; returns how many were woken."""
        managers = self._take_due()
        for manager in managers:
            manager._refresh_due()
        return len(managers)

    def _owns(self, key: int, manager: object) -> bool:
        ref = self._refs.get(key)
        return ref is not None and ref() is manager

    def _drop_collected(self) -> None:
        """Forget managers that were garbage-collected (queued by their weakref callbacks).

        The callbacks only append to a deque: they may run in any thread at any moment (even
        while this thread holds the lock), so they must not take it themselves. A queued
        reference is always the registered one for its key: a reference removed from ``_refs``
        dies with it and never calls back, and a new manager can only get a collected one's id
        after that one's callback has run (``register`` drops it first).
        """
        while self._collected:
            ref = self._collected.popleft()
            self._refs.pop(ref.key, None)
            self._schedule.remove(ref.key)

    def _take_due(self) -> list[Refreshable]:
        with self._cond:
            self._drop_collected()
            if self._shutdown:
                return []
            managers = []
            for key in self._schedule.due(self._clock.monotonic()):
                manager = self._refs[key]()
                if manager is not None:
                    managers.append(manager)
            return managers

    def _sleep_for(self) -> float:
        """Seconds until the next deadline (capped at ``max_sleep``); lock held."""
        upcoming = self._schedule.next_wakeup()
        if upcoming is None:
            return self._max_sleep
        return min(max(upcoming - self._clock.monotonic(), 0.0), self._max_sleep)

    # -- the thread -----------------------------------------------------------------------------

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name=f"{self._name}-scheduler", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            managers = self._take_due()
            for manager in managers:
                self._workers.submit(manager._refresh_due)
            del managers
            with self._cond:
                if self._shutdown or self._thread is not me:
                    return
                self._cond.wait(self._sleep_for())

    def _after_fork_in_child(self) -> None:
        """In a forked child no thread of ours exists: new locks, and a thread if needed."""
        self._reset_threads()
        if self._threaded and not self._shutdown and len(self._schedule):
            self._start_thread()


_SCHEDULERS: weakref.WeakSet[Scheduler] = weakref.WeakSet()

#: The scheduler every ``TokenManager(background=True)`` of this process uses.
SCHEDULER = Scheduler()


def _after_fork_in_child() -> None:
    for scheduler in list(_SCHEDULERS):
        scheduler._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(SCHEDULER.shutdown)
