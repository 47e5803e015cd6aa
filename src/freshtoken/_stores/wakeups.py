"""Push wake-ups: one process's notifications from a store, fanned out to its waiting fetchers.

A waiter whose lease is held by another process used to poll the store (10 ms doubling to 200 ms),
which adds up to 200 ms to every waiter at each rotation and multiplies the store's traffic by the
number of waiters. A store that can notify (RedisStore's pub/sub) instead tells each process when
a holder saved a token or let go of its lease, and every waiter of the process wakes at once.

The protocol that makes a notification impossible to miss: a waiter *watches* its key (the
process is subscribed to the key's channel, and the waiter notes how many notifications it has
seen: a :class:`Ticket`), **then** looks at the store a last time, and only then waits for a
notification newer than its ticket, or for a safety-net timeout. A save that landed before the
look is seen by the look; one after it sends a notification the ticket has not counted.

This module holds what is not specific to one store: the tickets, the waiting (threads on one
condition, asyncio tasks on futures of their own loops), and the states of a subscription
(confirmed, lost, refused). A store's transport (RedisStore's listener thread) reports to it
with :meth:`Hub.confirmed`, :meth:`Hub.notified`, :meth:`Hub.lost` and :meth:`Hub.refused`, and
is asked for a subscription with ``subscribe(channel)``.

Fork: a child inherits the hub but not the transport's thread; the hub notices the new pid and
starts over (its waiters, counts and subscriptions belonged to the parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from freshtoken._runtime.forksafe import fork_safe_lock

__all__ = ["Hub", "Ticket", "Wakeups"]

#: How long a first watch of a channel waits for the subscription to be confirmed before the
#: waiter polls instead (this wait happens once per channel and process, before any waiting).
CONFIRM_TIMEOUT = 1.0


@dataclass(slots=True)
class _Channel:
    count: int = 0  # notifications received
    confirmed: bool = False
    requested: bool = False  # asked for once: later watches never wait for the confirmation
    futures: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=set
    )


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a waiter had seen when it watched: a notification of ``channel`` past ``count``, or
    a change of the hub's ``epoch`` (the subscription was lost or the process forked), wakes it."""

    channel: str
    count: int
    epoch: int


class Hub:
    """The notifications of one process (see the module docstring).

    ``subscribe(channel)`` asks the transport for a subscription; it must not block for long and
    must not raise. ``clock`` is the monotonic clock that refusals are timed on.
    """

    def __init__(
        self,
        subscribe: Callable[[str], None],
        *,
        confirm_timeout: float = CONFIRM_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscribe = subscribe
        self._confirm_timeout = confirm_timeout
        self._clock = clock
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._lock = fork_safe_lock()
        self._changed = threading.Condition(self._lock)
        self._channels: dict[str, _Channel] = {}
        self._epoch = 0
        self._refused_until = float("-inf")
        self.waiting = 0  # threads and tasks waiting now (for tests and benchmarks)

    def _here(self) -> None:
        """Start over in a forked child (called with no lock held)."""
        if self._pid != os.getpid():
            self._start()

    # -- reports from the transport --------------------------------------------------------------

    def confirmed(self, channel: str) -> None:
        """The subscription to ``channel`` is active: notifications from now on arrive."""
        with self._lock:
            self._channels.setdefault(channel, _Channel()).confirmed = True
            self._changed.notify_all()

    def notified(self, channel: str) -> None:
        """A notification of ``channel`` arrived: wake its waiters."""
        with self._lock:
            state = self._channels.get(channel)
            if state is None:
                return
            state.count += 1
            futures = list(state.futures)
            self._changed.notify_all()
        _wake(futures)

    def lost(self) -> None:
        """The subscription is gone (the connection dropped): notifications may have been missed
        since, so every waiter looks at the store again now, and watches poll until the
        transport confirms its subscriptions anew."""
        with self._lock:
            self._epoch += 1
            futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
            for state in self._channels.values():
                state.confirmed = False
                futures += state.futures
            self._changed.notify_all()
        _wake(futures)

    def refused(self, seconds: float) -> None:
        """The store refused the subscription (no pub/sub permission, no pub/sub at all): waiters
        poll, and no watch asks again for ``seconds``."""
        with self._lock:
            self._refused_until = self._clock() + seconds
        self.lost()

    # -- waiters -----------------------------------------------------------------------------

    def watch(self, channel: str) -> Ticket | None:
        """A ticket for ``channel``, the subscription confirmed; ``None`` when notifications are
        not available now (refused, lost, or not confirmed within the confirm timeout): poll.

        Only the first watch of a channel waits for its confirmation (once per process); while
        a subscription is lost or refused, watches return at once, and the waiter polls."""
        self._here()
        with self._lock:
            ticket = self._ticket(channel)
            if ticket is not None or self._clock() < self._refused_until:
                return ticket
            state = self._channels.setdefault(channel, _Channel())
            if state.requested:
                return None
            state.requested = True
        self._subscribe(channel)
        with self._lock:
            self._changed.wait_for(
                lambda: self._confirmed(channel) or self._clock() < self._refused_until,
                self._confirm_timeout,
            )
            return self._ticket(channel)

    async def awatch(self, channel: str) -> Ticket | None:
        """Like :meth:`watch`; the first watch of a channel waits in a worker thread."""
        self._here()
        with self._lock:
            ticket = self._ticket(channel)
        if ticket is not None:
            return ticket
        return await asyncio.to_thread(self.watch, channel)

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        """Block until a notification newer than ``ticket`` (True) or ``timeout`` (False)."""
        self._here()
        with self._lock:
            self.waiting += 1
            try:
                return self._changed.wait_for(lambda: self._past(ticket), max(0.0, timeout))
            finally:
                self.waiting -= 1

    async def async_wait(self, ticket: Ticket, timeout: float) -> bool:
        """Like :meth:`wait`, for a task: it waits on a future of its own loop, which the
        transport's thread completes; a cancelled task leaves nothing behind."""
        self._here()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._past(ticket):
                return True
            state = self._channels.setdefault(ticket.channel, _Channel())
            state.futures.add(entry)
            self.waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, max(0.0, timeout))
        finally:
            with self._lock:
                state.futures.discard(entry)
                self.waiting -= 1
        with self._lock:
            return self._past(ticket)

    # -- under the lock ----------------------------------------------------------------------

    def _confirmed(self, channel: str) -> bool:
        state = self._channels.get(channel)
        return state is not None and state.confirmed

    def _ticket(self, channel: str) -> Ticket | None:
        state = self._channels.get(channel)
        if state is None or not state.confirmed:
            return None
        return Ticket(channel, state.count, self._epoch)

    def _past(self, ticket: Ticket) -> bool:
        if self._epoch != ticket.epoch:
            return True
        state = self._channels.get(ticket.channel)
        return state is None or state.count != ticket.count


def _wake(futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    """Complete each future on its own loop (from the transport's thread)."""
    for loop, future in futures:
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(_done, future)


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled, or woken twice
        future.set_result(None)


class Wakeups:
    """A store's wake-ups as its fetchers use them: by storage key (``channel_of`` names the
    key's channel), with ``recheck`` the safety-net interval after which a waiter looks at the
    store although no notification came (see :func:`~freshtoken._stores.shared.wait_delay`)."""

    __slots__ = ("channel_of", "hub", "recheck")

    def __init__(self, hub: Hub, channel_of: Callable[[str], str], *, recheck: float) -> None:
        self.hub = hub
        self.channel_of = channel_of
        self.recheck = recheck

    def watch(self, key: str) -> Ticket | None:
        return self.hub.watch(self.channel_of(key))

    async def awatch(self, key: str) -> Ticket | None:
        return await self.hub.awatch(self.channel_of(key))

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        return self.hub.wait(ticket, timeout)

    async def async_wait(self, ticket: Ticket, timeout: float) -> bool:
        return await self.hub.async_wait(ticket, timeout)
