"""TokenManager: the thin driver around the lifecycle core.

The decisions live in :mod:`freshtoken._core.lifecycle`; this module only does what the core cannot:
hold a lock around each decision, run the fetch (in the caller, in a helper thread, or in a task),
and wake the threads and tasks waiting for it.

One acquisition flow (:meth:`TokenManager._acquire`, a generator in the manner of httpx's auth
flows) serves both ``get()`` and ``aget()``: it yields the I/O steps it needs ("run this fetch",
"wait for this flight", "start this refresh off the caller's path") and the sync and async drivers
carry them out, each in its own way. So the rules are written once.

The fast path — a fresh token cached — reads one attribute and the monotonic clock, with no lock.

Nothing waits without a bound: waiters wait in short slices, and between slices the flow decides
whether to go on waiting, take over a fetch whose owner is gone, or give up after ``max_wait``.
An aget() never runs the token request in the caller's task: the manager owns the task, so a
cancelled caller stops only its own wait and the request, once sent, always lands.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import os
import random
import threading
import weakref
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast, overload

from freshtoken._core.errors import (
    ConfigurationError,
    FreshTokenError,
    TokenEndpointUnavailable,
    TokenRequestError,
)
from freshtoken._core.events import Event, EventKind, EventSink, describe_error, log_event, logger
from freshtoken._core.lifecycle import Action, Lifecycle
from freshtoken._core.policy import RefreshPolicy
from freshtoken._core.token import Token

from .clock import SYSTEM_CLOCK, Clock
from .flight import ABANDONED, PENDING, Flight, Outcome, clone_error
from .launch import launch
from .source import (
    FetchContext,
    FunctionSource,
    TokenFunction,
    TokenSource,
    require_identity,
)

if TYPE_CHECKING:
    import httpx

    from freshtoken._stores.store import Store

__all__ = ["TokenManager"]

P = ParamSpec("P")
R = TypeVar("R")

_MANAGERS: weakref.WeakSet[TokenManager] = weakref.WeakSet()


class _Step(enum.Enum):
    RUN = "run"  # run the fetch now, in this caller
    WAIT = "wait"  # wait for the flight in progress
    SPAWN = "spawn"  # start the fetch off the caller's path, then hand out the current token


_StepRequest = tuple[_Step, Flight, FetchContext | None]
_Flow = Generator[_StepRequest, object, Token]

# Real seconds one wait slice lasts: how soon a waiter notices max_wait or an owner that is gone.
_WAIT_SLICE = 0.05


class TokenManager:
    """Keeps one token fresh for any number of threads, asyncio tasks and event loops.

    ``source`` is a token source (a grant such as :class:`~freshtoken.ClientCredentials`, or a
    :class:`~freshtoken.FunctionSource`) or a bare callable, which is wrapped in a FunctionSource.

    ``store``       where the token lives between processes and hosts (default: this manager only)
    ``policy``      a :class:`~freshtoken.RefreshPolicy` (when to refresh, how to back off)
    ``background``  refresh ahead of time on the process-wide scheduler thread
    ``http`` / ``async_http``  httpx clients that token requests are sent through
    ``clock``       an object with ``monotonic()`` and ``time()`` (tests pass a FakeClock)
    ``on_event``    a callable receiving :class:`~freshtoken.Event` values
    """

    def __init__(
        self,
        source: TokenSource | TokenFunction,
        *,
        store: Store | None = None,
        policy: RefreshPolicy | None = None,
        background: bool = False,
        http: httpx.Client | None = None,
        async_http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        if isinstance(source, TokenSource):
            self._source: TokenSource = source
        elif callable(source):
            self._source = FunctionSource(source)
        else:
            raise ConfigurationError(
                f"TokenManager needs a token source or a callable, got {type(source).__name__}"
            )
        if store is not None:  # shared beyond this manager: the key must name the principal
            require_identity(self._source)
        if policy is not None and not isinstance(policy, RefreshPolicy):
            raise ConfigurationError("policy must be a freshtoken.RefreshPolicy")
        self._policy = policy if policy is not None else RefreshPolicy()
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._monotonic = self._clock.monotonic
        self._life = Lifecycle(self._policy)
        self._lock = threading.Lock()
        self._flight: Flight | None = (
            None  # jitter draws use the module-level random: reseeded in forked children
        )
        self._latest: Token | None = None  # newest token obtained, kept across invalidation
        self._rejected: str | None = None  # fingerprint of the token last invalidated
        self._rejected_at: float | None = None  # when (wall), until a token is obtained after it
        self._on_event = on_event
        self._http = http
        self._async_http = async_http
        self._background = background
        self._closed = False
        self._tasks: set[asyncio.Task[Outcome]] = set()
        # The event loop of the last aget() that went past the fast path: background refreshes
        # run there while it runs (async sources and clients belong to their loop).
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._store = store
        self._shared = None if store is None else store.fetcher(self._source.key)
        _MANAGERS.add(self)
        if background:
            from .scheduler import SCHEDULER

            SCHEDULER.register(self)

    # -- public API ---------------------------------------------------------------------------

    @property
    def source(self) -> TokenSource:
        return self._source

    @property
    def policy(self) -> RefreshPolicy:
        return self._policy

    @property
    def clock(self) -> Clock:
        return self._clock

    def get(self) -> Token:
        """A token that is usable now, fetching one only when needed (blocking this thread)."""
        entry = self._life.entry
        if entry is not None and self._monotonic() < entry.stale_at:
            return entry.token
        return self._drive_sync(self._acquire())

    def _fresh(self) -> Token | None:
        """The cached token if it is fresh now, else ``None``: never fetches, waits or locks
        (the integrations' fast path, which needs no coroutine for a fresh token)."""
        entry = self._life.entry
        if entry is not None and self._monotonic() < entry.stale_at:
            return entry.token
        return None

    async def aget(self) -> Token:
        """Like :meth:`get`, for asyncio tasks; the same state and the same single flight."""
        entry = self._life.entry
        if entry is not None and self._monotonic() < entry.stale_at:
            return entry.token
        return await self._drive_async(self._acquire())

    def invalidate(self, token: Token) -> bool:
        """Drop the cached token if it is still ``token`` (after a 401); True if it was dropped."""
        with self._lock:
            dropped = self._life.invalidate(token)
            if dropped:
                self._rejected = token.fingerprint
                self._rejected_at = self._clock.time()
        if dropped:
            self._emit("invalidated", token.fingerprint)
        return dropped

    def prefetch(self) -> None:
        """Make sure a usable token is cached now, raising at once if none can be had."""
        self.get()

    async def aprefetch(self) -> None:
        """Like :meth:`prefetch`, for asyncio code."""
        await self.aget()

    def close(self) -> None:
        """Stop background refreshes and close the clients this manager owns. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._life.entry = None  # also closes the lock-free fast path; forget the secret
            self._latest = None
        if self._background:
            from .scheduler import SCHEDULER

            SCHEDULER.unregister(self)
        closer = getattr(self._source, "close", None)
        if callable(closer):
            closer()

    async def aclose(self) -> None:
        """Like :meth:`close`, also closing async clients the source owns."""
        self.close()
        for task in list(self._tasks):
            task.cancel()
        closer = getattr(self._source, "aclose", None)
        if callable(closer):
            await closer()

    def __enter__(self) -> TokenManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> TokenManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @overload
    def authenticated(self, fn: Callable[Concatenate[Token, P], R], /) -> Callable[P, R]: ...

    @overload
    def authenticated(
        self, /, *, retry_if: Callable[[BaseException], bool] | None = None
    ) -> Callable[[Callable[Concatenate[Token, P], R]], Callable[P, R]]: ...

    def authenticated(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> Callable[..., Any]:
        """Decorate a function whose first argument is the fresh token (sync or async).

        ``@tokens.authenticated`` or ``@tokens.authenticated(retry_if=...)``; see
        :func:`freshtoken.authenticated` for the 401 retry.
        """
        from .decorators import wrap_function

        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            return wrap_function(function, self, retry_if)

        if fn is not None:
            return decorate(fn)
        return decorate

    def __repr__(self) -> str:
        entry = self._life.entry
        if entry is None:
            state = "empty"
        else:
            now = self._monotonic()
            state = "fresh" if entry.fresh(now) else "stale" if entry.usable(now) else "expired"
            state += f" fingerprint={entry.token.fingerprint}"
        return f"<TokenManager source={self._source.key!r} {state}>"

    # -- the acquisition flow, written once -----------------------------------------------------

    def _acquire(self) -> _Flow:
        """Decide, yield the I/O step needed, repeat until a token (or an error) comes out."""
        while True:
            with self._lock:
                if self._closed:
                    raise ConfigurationError("this TokenManager is closed")
                if self._flight is not None:
                    self._take_over_if_orphaned(self._flight)
                now = self._monotonic()
                decision = self._life.next_action(now)
                action = decision.action
                if action is Action.FETCH or action is Action.USE_AND_REFRESH:
                    self._flight = Flight()
                    ctx = self._context(
                        self._life.fetch_deadline(now),
                        now + self._policy.max_wait,
                        urgent=self._life.urgent(now),
                    )
                flight = self._flight
            if action is Action.USE:
                return cast(Token, decision.token)
            if action is Action.FAIL:
                raise clone_error(cast(BaseException, decision.error))
            assert flight is not None
            if action is Action.USE_AND_REFRESH:
                yield (_Step.SPAWN, flight, ctx)
                return cast(Token, decision.token)
            give_up_at = now + self._policy.max_wait
            if action is Action.FETCH:
                outcome = yield (_Step.RUN, flight, ctx)
            else:
                outcome = yield (_Step.WAIT, flight, None)
            while outcome is PENDING:
                outcome = yield from self._keep_waiting(flight, give_up_at)
            if outcome is ABANDONED:
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            return cast(Token, outcome)

    def _keep_waiting(
        self, flight: Flight, give_up_at: float
    ) -> Generator[_StepRequest, object, object]:
        """One more wait slice, unless the fetch's owner is gone or ``max_wait`` has run out.

        An orphaned fetch (its loop closed, its thread dead) is abandoned so that this caller
        takes it over; past ``give_up_at`` this caller gives up, while the fetch goes on for the
        others. A flight that has landed meanwhile is never given up on.
        """
        with self._lock:
            if self._take_over_if_orphaned(flight):
                return ABANDONED
        if self._monotonic() >= give_up_at and not flight.done:
            raise TokenEndpointUnavailable(
                f"no token within max_wait ({self._policy.max_wait:g} s): the token request"
                " in flight has not answered yet",
                retry_after=self._policy.max_wait,
            )
        return (yield (_Step.WAIT, flight, None))

    def _take_over_if_orphaned(self, flight: Flight) -> bool:
        """Abandon ``flight`` if it is the fetch in flight and its owner is gone (lock held)."""
        if flight is not self._flight or not flight.owner_gone():
            return False
        self._life.fetch_abandoned()
        flight.resolve(ABANDONED)
        self._flight = None
        return True

    def _context(
        self, deadline: float, request_deadline: float, *, urgent: bool = False
    ) -> FetchContext:
        return FetchContext(
            clock=self._clock,
            policy=self._policy,
            deadline=deadline,
            current=self._latest,
            emit=self._emit_event,
            key=self._source.key,
            http=self._http,
            async_http=self._async_http,
            rejected=self._rejected,
            rejected_at=self._rejected_at,
            request_deadline=request_deadline,
            urgent=urgent,
        )

    # -- sync driver ----------------------------------------------------------------------------

    def _drive_sync(self, flow: _Flow) -> Token:
        self._loop = None
        outcome: object = None
        while True:
            try:
                step, flight, ctx = flow.send(outcome)
            except StopIteration as stop:
                return cast(Token, stop.value)
            if step is _Step.RUN:
                outcome = self._run_sync(flight, cast(FetchContext, ctx))
            elif step is _Step.WAIT:
                if flight.run_by_running_loop_of_this_thread():
                    flow.close()
                    raise ConfigurationError(
                        "get() was called on the thread of the event loop whose task is fetching"
                        " the token; waiting would block that loop for good: use await aget()"
                    )
                outcome = flight.wait(_WAIT_SLICE)
            else:  # refresh off the caller's path; launch() does not wait for the thread to run
                thread = threading.Thread(
                    target=self._run_sync,
                    args=(flight, ctx),
                    name="freshtoken-refresh",
                    daemon=True,
                )
                launch(thread, functools.partial(self._not_started, flight, self._monotonic()))
                outcome = None

    def _run_sync(self, flight: Flight, ctx: FetchContext) -> Outcome:
        flight.run_by_thread(threading.current_thread())
        started = self._monotonic()
        try:
            if self._shared is not None:
                token = self._shared.fetch(ctx, self._source)
            else:
                token = self._source.fetch(ctx)
        except Exception as error:
            return self._failed(flight, error, started)
        except BaseException:
            self._abandon(flight)
            raise
        return self._succeeded(flight, token, started)

    # -- async driver ---------------------------------------------------------------------------

    async def _drive_async(self, flow: _Flow) -> Token:
        self._loop = weakref.ref(asyncio.get_running_loop())
        outcome: object = None
        while True:
            try:
                step, flight, ctx = flow.send(outcome)
            except StopIteration as stop:
                return cast(Token, stop.value)
            if step is _Step.RUN:
                self._start_task(flight, cast(FetchContext, ctx))
                outcome = await flight.wait_async(_WAIT_SLICE)
            elif step is _Step.WAIT:
                outcome = await flight.wait_async(_WAIT_SLICE)
            else:
                self._start_task(flight, cast(FetchContext, ctx))
                outcome = None

    def _start_task(self, flight: Flight, ctx: FetchContext) -> None:
        """Run the fetch in a task the manager owns, on the running loop.

        The caller only waits for the flight, so cancelling the caller never cancels a request
        already sent: its answer still lands in the cache and the store for the others.
        """
        loop = asyncio.get_running_loop()
        flight.run_by_loop(loop)
        task = loop.create_task(self._run_async(flight, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_async(self, flight: Flight, ctx: FetchContext) -> Outcome:
        started = self._monotonic()
        try:
            if self._shared is not None:
                token = await self._shared.afetch(ctx, self._source)
            else:
                token = await self._source.afetch(ctx)
        except Exception as error:
            return self._failed(flight, error, started)
        except BaseException as error:
            if _stopped_from_outside():
                self._abandon(flight)  # the next caller takes the fetch over
            else:
                self._interrupted(flight, error)
            raise
        return self._succeeded(flight, token, started)

    # -- outcomes -------------------------------------------------------------------------------

    def _succeeded(self, flight: Flight, token: Token, started: float) -> Outcome:
        with self._lock:
            if self._closed:
                return self._discard_after_close(flight)
            now = self._monotonic()
            previous = self._life.entry
            replaced_usable = previous is not None and previous.usable(started)
            try:
                entry = self._life.fetch_succeeded(
                    token, now=now, wall=self._clock.time(), jitter_draw=random.random()
                )
            except FreshTokenError as error:
                flight.resolve(error)
                arrived_dead: FreshTokenError | None = error
            else:
                arrived_dead = None
                self._latest = token
                self._rejected_at = None
                flight.resolve(token)
        if arrived_dead is not None:
            self._emit("failed", token.fingerprint, duration=now - started, error=arrived_dead)
            return arrived_dead
        self._emit(
            "refreshed" if replaced_usable else "fetched",
            token.fingerprint,
            duration=now - started,
            remaining=entry.expires_at - now,
        )
        if self._background:
            from .scheduler import SCHEDULER

            SCHEDULER.schedule(self, entry.stale_at)
        return token

    def _discard_after_close(self, flight: Flight) -> Outcome:
        """A token that lands after close() is not cached, not served (close() is final)."""
        self._life.fetch_abandoned()
        error = ConfigurationError(
            "this TokenManager was closed while its token request was in flight;"
            " the token was discarded"
        )
        flight.resolve(error)
        return error

    def _failed(self, flight: Flight, error: Exception, started: float) -> Outcome:
        if not isinstance(error, FreshTokenError):
            wrapped = TokenRequestError(f"the token source raised {describe_error(error)}")
            wrapped.__cause__ = error
            error = wrapped
        with self._lock:
            now = self._monotonic()
            failure = self._life.fetch_failed(error, now=now, draw=random.random())
            entry = self._life.entry
            serving = entry if entry is not None and entry.usable(now) else None
            flight.resolve(error)
        self._emit("failed", None, duration=now - started, error=error)
        if serving is not None:
            self._emit(
                "served_stale", serving.token.fingerprint, remaining=serving.expires_at - now
            )
        if self._background:
            from .scheduler import SCHEDULER

            SCHEDULER.schedule(self, failure.not_before)
        return error

    def _not_started(self, flight: Flight, started: float, error: BaseException) -> None:
        """The refresh thread could not be started: a failed fetch (backoff, waiters told)."""
        if isinstance(error, Exception):
            failure = TokenRequestError(
                f"could not start the refresh thread: {describe_error(error)}"
            )
            failure.__cause__ = error
            self._failed(flight, failure, started)
        else:
            self._abandon(flight)

    def _abandon(self, flight: Flight) -> None:
        with self._lock:
            self._life.fetch_abandoned()
        flight.resolve(ABANDONED)

    def _interrupted(self, flight: Flight, error: BaseException) -> None:
        """The source itself raised ``CancelledError``, ``KeyboardInterrupt`` or the like inside
        the manager's task: the callers get it, as they would had they run the fetch themselves,
        rather than taking the fetch over again and again."""
        with self._lock:
            self._life.fetch_abandoned()
        flight.resolve(error)

    # -- background refresh (called by the scheduler thread) ------------------------------------

    def _refresh_due(self) -> None:
        """Refresh now if the token is due for it (called in a scheduler worker); never raises.

        A manager last used through aget() on a loop that still runs refreshes on that loop (its
        async source and clients belong there); otherwise the refresh runs in this thread.
        """
        loop = None if self._loop is None else self._loop()
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(self._refresh_on_loop)
            except RuntimeError:  # the loop closed meanwhile: refresh here instead
                pass
            else:
                return
        started = self._refresh_step()
        if started is not None:
            self._run_sync(*started)

    def _refresh_on_loop(self) -> None:
        started = self._refresh_step()
        if started is not None:
            self._start_task(*started)

    def _refresh_step(self) -> tuple[Flight, FetchContext] | None:
        """The fetch a background wake-up should run, or ``None`` (then maybe wake up later).

        The acquisition flow decides, as for any caller: in the stale window it starts a refresh
        (USE_AND_REFRESH), without a usable token a fetch (FETCH). A wake-up that finds nothing
        to do came early (a clock translated, a manager used meanwhile): it is scheduled again.
        """
        flow = self._acquire()
        try:
            kind, flight, ctx = next(flow)
        except (StopIteration, FreshTokenError):
            if self._background:
                from .scheduler import SCHEDULER, pending_wakeup

                with self._lock:
                    when = pending_wakeup(self._life, self._monotonic())
                if when is not None:
                    SCHEDULER.schedule(self, when)
            return None
        flow.close()
        if kind is _Step.WAIT:
            return None
        return flight, cast(FetchContext, ctx)

    # -- events ---------------------------------------------------------------------------------

    def _emit(
        self,
        kind: EventKind,
        fingerprint: str | None,
        *,
        duration: float | None = None,
        remaining: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        self._emit_event(
            Event(
                kind,
                self._source.key,
                fingerprint=fingerprint,
                duration=duration,
                remaining=remaining,
                error=None if error is None else describe_error(error),
            )
        )

    def _emit_event(self, event: Event) -> None:
        log_event(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as error:
                logger.warning("on_event sink raised %s", type(error).__name__)

    # -- fork safety ----------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._life.reset_after_fork()
        self._flight = None
        self._tasks = set()
        self._loop = None


def _stopped_from_outside() -> bool:
    """Whether the running fetch task ends because it was cancelled (``aclose()``, the loop
    shutting down) or destroyed with its closed loop, rather than by its source's own doing."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: the coroutine is being closed with its loop gone
        return True
    return task is None or task.cancelling() > 0


def _reset_managers_after_fork() -> None:
    for manager in list(_MANAGERS):
        manager._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_managers_after_fork)
