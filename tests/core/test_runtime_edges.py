"""The drivers never abandon a sent request and never hang (issue 12 case 3, issue 13 items 3-5, 8).

Each test is bounded: every thread is joined and every await wrapped with a timeout, so a
regression fails here instead of hanging the suite. Timing is driven by a FakeClock; the real
seconds below (latencies, join timeouts) are never asserted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

import freshtoken as ft
from freshtoken._runtime.flight import ABANDONED, PENDING, Flight
from freshtoken.testing import AuthorizationServer, FakeClock

BOUND = 10.0  # real seconds after which a wait counts as a hang


@pytest.fixture(scope="module")
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer() as running:
        yield running


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``fn`` in a daemon thread; its result or exception lands in the returned box."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as error:
            box.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def joined(thread: threading.Thread, box: list[object]) -> object:
    thread.join(BOUND)
    assert not thread.is_alive(), "the call hung"
    return box[0]


def wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(int(BOUND / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


class GatedSource:
    """A sync token callable that blocks each fetch until ``gate`` opens."""

    def __init__(self, lifetime: float = 100.0) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.lifetime = lifetime

    def __call__(self) -> dict[str, object]:
        self.calls += 1
        assert self.gate.wait(BOUND)
        return {"access_token": f"tok-{self.calls}", "expires_in": self.lifetime}


class AsyncGatedSource:
    """An async token callable that waits for ``open`` (an asyncio.Event made on first use)."""

    def __init__(self, lifetime: float = 100.0, *, gated: bool = True) -> None:
        self.calls = 0
        self.lifetime = lifetime
        self.gated = gated
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> dict[str, object]:
        self.calls += 1
        if self.gated:
            self.gate = asyncio.Event()
            await asyncio.wait_for(self.gate.wait(), BOUND)
        return {"access_token": f"tok-{self.calls}", "expires_in": self.lifetime}


# -- a sent request is never abandoned (issue 12 case 3) ----------------------------------------


def test_callers_that_time_out_share_one_token_request(server: AuthorizationServer) -> None:
    """f13b: ten callers with a 0.2 s budget against a 0.5 s endpoint make one token request."""
    client = server.add_client()
    before = server.token_requests
    server.inject(latency=0.5, times=1)
    tokens = ft.TokenManager(
        ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
    )

    async def main() -> ft.Token:
        for _ in range(10):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tokens.aget(), 0.2)
        return await asyncio.wait_for(tokens.aget(), BOUND)

    token = asyncio.run(main())
    assert server.token_requests - before == 1
    assert tokens.get() is token
    assert server.token_requests - before == 1


def test_a_cancelled_caller_keeps_the_rotated_refresh_token(server: AuthorizationServer) -> None:
    """f13: the refresh the cancelled caller started lands; the next refresh uses its token."""
    client = server.add_client(refresh_tokens=True)
    first = httpx.post(
        server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, str(client.client_secret)),
    ).json()["refresh_token"]
    reused, revoked = server.refresh_tokens_reused, server.families_revoked
    grant = ft.RefreshTokenGrant(server.token_url, first, client.client_id, client.client_secret)
    tokens = ft.TokenManager(grant)
    issued = server.counters.tokens_issued
    server.inject(latency=0.5, times=1)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tokens.aget(), 0.2)
        # The server rotates the refresh token although the caller gave up on the request.
        for _ in range(int(BOUND / 0.01)):
            if server.counters.tokens_issued > issued:
                break
            await asyncio.sleep(0.01)  # polling a condition, bounded: no timing is asserted
        landed = await asyncio.wait_for(tokens.aget(), BOUND)
        assert tokens.invalidate(landed)
        await asyncio.wait_for(tokens.aget(), BOUND)

    asyncio.run(main())
    assert server.token_requests_by_grant.get("refresh_token", 0) >= 2
    assert server.refresh_tokens_reused == reused
    assert server.families_revoked == revoked


# -- no hang: an orphaned fetch is taken over (issue 13 item 3) ---------------------------------


def run_once(coroutine: object) -> object:
    """The sync bridge of f6: a fresh loop per call, closed without cancelling its tasks."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)  # type: ignore[arg-type]
    finally:
        loop.close()


# The orphaned tasks die with their closed loop: the tests collect them (gc) while the warnings
# this causes are expected, rather than in some later test.


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_refresh_orphaned_on_a_closed_loop_is_taken_over() -> None:
    """f6: get() after the refresh task's loop closed fetches anew instead of hanging."""
    clock = FakeClock()
    source = AsyncGatedSource(lifetime=100.0)
    tokens = ft.TokenManager(source, clock=clock)
    source.gated = False
    assert run_once(tokens.aget()) == tokens.get()
    entry = tokens._life.entry
    assert entry is not None
    source.gated = True
    clock.advance(entry.stale_at - clock.monotonic())  # aget() serves it, starts a refresh task
    run_once(tokens.aget())
    clock.advance(entry.expires_at - clock.monotonic())  # no usable token left
    source.gated = False
    token = joined(*in_thread(tokens.get))
    assert isinstance(token, ft.Token)
    assert token.access_token == f"tok-{source.calls}"
    gc.collect()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_fetch_waited_for_on_a_loop_that_closes_is_taken_over() -> None:
    """A waiter that finds the owning loop closed takes the fetch over (owner not cancelled)."""
    clock = FakeClock()
    source = AsyncGatedSource()
    tokens = ft.TokenManager(source, clock=clock)
    loop = asyncio.new_event_loop()
    owner = loop.create_task(tokens.aget())
    loop.run_until_complete(asyncio.sleep(0.05))  # the manager's fetch task is now in flight
    waiter = in_thread(tokens.get)
    loop.close()  # neither the caller nor the fetch task is cancelled
    source.gated = False
    token = joined(*waiter)
    assert isinstance(token, ft.Token)
    assert source.calls == 2
    assert not owner.done()
    del owner, loop
    gc.collect()


def test_a_flight_whose_thread_ended_counts_as_orphaned() -> None:
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    flight = Flight()
    assert not flight.owner_gone()  # no owner recorded yet: a refresh thread being launched
    flight.run_by_thread(ended)
    assert flight.owner_gone()
    flight.run_by_thread(threading.current_thread())
    assert not flight.owner_gone()
    flight.run_by_thread(ended)
    flight.resolve(ABANDONED)
    assert not flight.owner_gone()  # a resolved flight is never orphaned


# -- a sync get() on the owning loop's thread raises (issue 13 item 4) --------------------------


def test_sync_get_on_the_thread_of_the_fetching_loop_raises() -> None:
    """f7: get() would block the loop that has to land the fetch; it raises instead."""
    source = AsyncGatedSource()
    tokens = ft.TokenManager(source)

    async def main() -> ft.Token:
        fetch = asyncio.create_task(tokens.aget())
        while source.gate is None:
            await asyncio.sleep(0.001)
        with pytest.raises(ft.ConfigurationError, match=r"await aget\(\)"):
            tokens.get()
        source.gate.set()
        return await asyncio.wait_for(fetch, BOUND)

    token = joined(*in_thread(lambda: asyncio.run(main())))
    assert isinstance(token, ft.Token)
    assert tokens.get() is token  # a fresh token is served on any thread, no fetch needed


# -- max_wait bounds every waiter (issue 13 item 5, the waiters) --------------------------------


def test_a_thread_waiter_gives_up_after_max_wait_while_the_fetch_goes_on() -> None:
    clock = FakeClock()
    source = GatedSource()
    tokens = ft.TokenManager(source, clock=clock, policy=ft.RefreshPolicy(max_wait=2.0))
    owner = in_thread(tokens.get)
    wait_until(lambda: source.calls == 1)
    waiter = in_thread(tokens.get)
    clock.advance(2.5)
    error = joined(*waiter)
    assert isinstance(error, ft.TokenEndpointUnavailable)
    assert "max_wait" in str(error)
    source.gate.set()
    token = joined(*owner)
    assert tokens.get() is token
    assert source.calls == 1


def test_an_async_caller_gives_up_after_max_wait_and_its_fetch_still_lands() -> None:
    clock = FakeClock()
    source = AsyncGatedSource()
    tokens = ft.TokenManager(source, clock=clock, policy=ft.RefreshPolicy(max_wait=2.0))

    async def main() -> ft.Token:
        owner = asyncio.create_task(tokens.aget())
        waiter = asyncio.create_task(tokens.aget())
        while source.gate is None:
            await asyncio.sleep(0.001)
        clock.advance(2.5)
        for caller in (owner, waiter):
            with pytest.raises(ft.TokenEndpointUnavailable, match="max_wait"):
                await asyncio.wait_for(caller, BOUND)
        source.gate.set()
        while tokens._fresh() is None:
            await asyncio.sleep(0.001)
        return await asyncio.wait_for(tokens.aget(), BOUND)

    token = joined(*in_thread(lambda: asyncio.run(main())))
    assert isinstance(token, ft.Token)
    assert source.calls == 1


# -- close() is final (issue 13 item 8) ---------------------------------------------------------


def test_a_fetch_that_lands_after_close_is_discarded() -> None:
    """f4: the token of a fetch in flight at close() is neither cached nor served."""
    source = GatedSource()
    tokens = ft.TokenManager(source)
    owner = in_thread(tokens.get)
    wait_until(lambda: source.calls == 1)
    tokens.close()
    source.gate.set()
    error = joined(*owner)
    assert isinstance(error, ft.ConfigurationError)
    assert "closed" in str(error)
    assert "tok-1" not in repr(tokens) and "empty" in repr(tokens)
    with pytest.raises(ft.ConfigurationError, match="closed"):
        tokens.get()
    with pytest.raises(ft.ConfigurationError, match="closed"):
        asyncio.run(tokens.aget())


def test_aclose_during_a_fetch_tells_the_async_callers() -> None:
    source = AsyncGatedSource()
    tokens = ft.TokenManager(source)

    async def main() -> None:
        caller = asyncio.create_task(tokens.aget())
        while source.gate is None:
            await asyncio.sleep(0.001)
        await tokens.aclose()
        with pytest.raises(ft.ConfigurationError, match="closed"):
            await asyncio.wait_for(caller, BOUND)

    joined(*in_thread(lambda: asyncio.run(main())))
    assert source.calls == 1


def test_a_cancelled_async_waiter_leaves_no_trace_on_the_flight() -> None:
    flight = Flight()

    async def main() -> object:
        waiter = asyncio.create_task(flight.wait_async(BOUND))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await flight.wait_async(0.001) is PENDING
        flight.resolve(ABANDONED)
        return await flight.wait_async(BOUND)

    assert asyncio.run(main()) is ABANDONED


def test_a_source_that_raises_cancelled_error_itself_fails_its_caller_once() -> None:
    """Raised by the source, not by cancelling the manager's task: the caller gets it (as if it
    had run the fetch itself) instead of taking the fetch over again and again."""
    calls = 0

    async def cancelling_source() -> dict[str, object]:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    tokens = ft.TokenManager(cancelling_source)

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(tokens.aget(), BOUND)

    asyncio.run(main())
    assert calls == 1
