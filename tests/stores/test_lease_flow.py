"""The lease flow driven by hand: the test answers each operation the flow asks for, as a driver
would, so every path through the protocol is checked without timing or threads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.stores.stores_helpers import MintingSource, put, token_at

import freshtoken as ft
from freshtoken._runtime.clock import Clock, FakeClock, SystemClock
from freshtoken._stores.memorystore import MemoryStore
from freshtoken._stores.shared import (
    Acquire,
    Extend,
    Fetch,
    LeaseFetcher,
    Load,
    Release,
    Save,
    Sleep,
    StoreHealth,
    Wait,
    Watch,
    _Run,
)
from freshtoken._stores.store import InlineBackend, Record, StoreUnavailable, storage_key
from freshtoken._stores.wakeups import Hub, Ticket, Wakeups


def SENDS_NONE(ctx: ft.FetchContext) -> bool:
    return False


def SENDS_REFRESH_TOKEN(ctx: ft.FetchContext) -> bool:
    return True


def context(clock: FakeClock, *, current: ft.Token | None = None) -> ft.FetchContext:
    events: list[ft.Event] = []
    return ft.FetchContext(
        clock=clock,
        policy=ft.RefreshPolicy(),
        deadline=clock.monotonic() + 30,
        current=current,
        emit=events.append,
        key="flow",
    )


def fetcher() -> LeaseFetcher:
    fetcher = MemoryStore().fetcher("flow")
    assert fetcher.key == storage_key("flow")
    return fetcher


def resumed(resume: Callable[[], object]) -> object:
    """What the flow asks for next, or ("returned", value) when it ended."""
    try:
        return resume()
    except StopIteration as stop:
        return ("returned", stop.value)


def step(flow: Any, reply: object) -> object:
    return resumed(lambda: flow.send(reply))


def throw(flow: Any, error: BaseException) -> object:
    return resumed(lambda: flow.throw(error))


def test_a_token_stored_while_the_lease_was_being_taken_is_used_not_fetched(
    fake_clock: FakeClock,
) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run(), SENDS_NONE)
    assert isinstance(next(flow), Load)
    assert isinstance(step(flow, None), Acquire)
    assert isinstance(step(flow, "owner"), Load)  # loads again under the lease
    landed = token_at(fake_clock, "landed")
    release = step(flow, Record(landed, 1))
    assert release == Release(storage_key("flow"), "owner")
    assert step(flow, True) == ("returned", landed)


def test_a_fetched_token_that_is_already_expired_is_not_saved(fake_clock: FakeClock) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run(), SENDS_NONE)
    next(flow)
    step(flow, None)
    step(flow, "owner")
    assert isinstance(step(flow, None), Extend)  # the lease is still ours before sending
    assert isinstance(step(flow, True), Fetch)
    dead = token_at(fake_clock, "dead", lifetime=10, age=20)
    assert isinstance(step(flow, dead), Release)
    assert step(flow, True) == ("returned", dead)


def test_a_token_without_expiry_is_saved_with_the_default_lifetime(fake_clock: FakeClock) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run(), SENDS_NONE)
    next(flow)
    step(flow, None)
    step(flow, "owner")
    step(flow, None)
    step(flow, True)
    opaque = ft.Token(
        access_token="opaque", issued_at=datetime.fromtimestamp(fake_clock.time(), UTC)
    )
    save = step(flow, opaque)
    assert isinstance(save, Save)
    assert save.token.expires_at == opaque.issued_at + timedelta(hours=1)


class StoppingSource(MintingSource):
    """Stops the store's server in the middle of its fetch."""

    def __init__(self, clock: Clock, stop: Any) -> None:
        super().__init__(clock)
        self.stop = stop

    def fetch(self, ctx: ft.FetchContext) -> ft.Token:
        self.stop()
        return super().fetch(ctx)


def test_a_store_lost_after_the_fetch_still_hands_the_token_out(
    redis_server: Any,
) -> None:
    """Real time: the holder tries its save again while its lease lasts, then gives up."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from freshtoken.redis import RedisStore

    with redis_server.client(retry=Retry(NoBackoff(), 0)) as client:
        events: list[ft.Event] = []
        source = StoppingSource(SystemClock(), redis_server.stop)
        manager = ft.TokenManager(
            source,
            store=RedisStore(client, lease_time=0.3),  # a save is tried again for 0.2 s
            on_event=events.append,
        )
        token = manager.get()
        assert source.calls == 1
        assert [e.kind for e in events] == ["store_unavailable", "fetched"]
        assert events[1].fingerprint == token.fingerprint
        redis_server.start()


@pytest.mark.parametrize("use_async", [False, True])
def test_an_interrupted_local_fetch_while_the_store_backs_off_holds_no_lease(
    fake_clock: FakeClock, use_async: bool
) -> None:
    store = MemoryStore()
    store._health.failed(fake_clock.monotonic())
    source = MintingSource(fake_clock, error=KeyboardInterrupt())
    manager = ft.TokenManager(source, store=store, clock=fake_clock)

    def call() -> object:
        return asyncio.run(manager.aget()) if use_async else manager.get()

    with pytest.raises(KeyboardInterrupt):
        call()
    assert source.calls == 1


def test_async_managers_replace_a_rejected_token_and_wait_for_a_holder(
    fake_clock: FakeClock,
) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock)
    backend = store._backend
    key = storage_key(source.key)

    async def main() -> None:
        manager = ft.TokenManager(source, store=store, clock=fake_clock)
        rejected = await manager.aget()
        manager.invalidate(rejected)
        replacement = await manager.aget()
        assert replacement != rejected
        owner = backend.acquire(key, 30)
        assert owner is not None
        waiter = ft.TokenManager(source, store=store, clock=fake_clock)
        waiter._rejected = replacement.fingerprint
        task = asyncio.create_task(waiter.aget())
        await asyncio.sleep(0.05)
        landed = token_at(fake_clock, "landed")
        put(backend, key, landed, ttl=100, owner=owner)
        backend.release(key, owner)
        assert await task == landed

    asyncio.run(main())
    assert source.calls == 2


def fetching(clock: FakeClock) -> Any:
    """A flow that found no stored token, took the lease ("owner") and now sends its request."""
    flow = fetcher()._flow(context(clock), _Run(), SENDS_REFRESH_TOKEN)
    assert isinstance(next(flow), Load)
    assert isinstance(step(flow, None), Acquire)
    assert isinstance(step(flow, "owner"), Load)
    assert isinstance(step(flow, None), Extend)
    assert isinstance(step(flow, True), Fetch)
    return flow


def holding_with_fetched_token(clock: FakeClock) -> tuple[Any, ft.Token]:
    """A flow that took the lease, fetched a token and now asks to save it."""
    flow = fetching(clock)
    fetched = token_at(clock, "rotated")
    assert isinstance(step(flow, fetched), Save)
    return flow, fetched


def test_a_holder_whose_save_fails_keeps_its_lease_and_saves_once_the_store_is_back(
    fake_clock: FakeClock,
) -> None:
    """Only the holder knows the rotated refresh token until it is saved: it does not let go
    of the lease (the next holder would refresh from the spent, stored one) but tries again."""
    flow, fetched = holding_with_fetched_token(fake_clock)
    pause = throw(flow, StoreUnavailable("down for a moment"))
    assert isinstance(pause, Sleep)
    fake_clock.advance(pause.seconds)
    assert step(flow, None) == Extend(storage_key("flow"), "owner", 10.0)  # still ours?
    save = step(flow, True)
    assert isinstance(save, Save) and save.token == fetched
    assert isinstance(step(flow, 7), Release)
    assert step(flow, True) == ("returned", fetched)


def test_a_holder_stops_trying_to_save_while_two_thirds_of_its_lease_remain_unsure(
    fake_clock: FakeClock,
) -> None:
    """A store that stays down: the holder tries while its lease surely lasts, a third of it
    kept as margin, then lets go and hands its token out (it is remembered as unsaved)."""
    flow, fetched = holding_with_fetched_token(fake_clock)
    started = fake_clock.monotonic()
    op = throw(flow, StoreUnavailable("down"))
    while isinstance(op, Sleep):
        fake_clock.advance(op.seconds)
        assert isinstance(step(flow, None), Extend)
        op = throw(flow, StoreUnavailable("still down"))
    assert fake_clock.monotonic() - started <= 10.0 * 2 / 3
    assert isinstance(op, Release)
    assert throw(flow, StoreUnavailable("down")) == ("returned", fetched)


def test_a_holder_whose_lease_ran_out_while_its_store_was_down_does_not_save(
    fake_clock: FakeClock,
) -> None:
    flow, fetched = holding_with_fetched_token(fake_clock)
    pause = throw(flow, StoreUnavailable("down"))
    assert isinstance(pause, Sleep)
    assert isinstance(step(flow, None), Extend)
    assert isinstance(step(flow, False), Release)  # a successor holds the lease now
    assert step(flow, True) == ("returned", fetched)


def test_a_fetch_that_sends_a_refresh_token_waits_for_a_failing_store_instead_of_going_alone(
    fake_clock: FakeClock,
) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run(), SENDS_REFRESH_TOKEN)
    assert isinstance(next(flow), Load)
    pause = throw(flow, StoreUnavailable("down"))
    assert isinstance(pause, Sleep)  # not a Fetch
    fake_clock.advance(pause.seconds)
    assert isinstance(step(flow, None), Load)  # the store again
    landed = token_at(fake_clock, "landed")
    assert step(flow, Record(landed, 3)) == ("returned", landed)


def test_a_fetch_that_sends_a_refresh_token_gives_up_on_a_store_down_past_max_wait(
    fake_clock: FakeClock,
) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run(), SENDS_REFRESH_TOKEN)
    next(flow)
    pauses = 0

    def keep_failing() -> None:
        nonlocal pauses
        while True:
            op = throw(flow, StoreUnavailable("down"))
            assert isinstance(op, Sleep)
            pauses += 1
            fake_clock.advance(op.seconds)
            assert isinstance(step(flow, None), Load)

    with pytest.raises(ft.TokenEndpointUnavailable, match="store is unavailable"):
        keep_failing()
    assert pauses > 1
    assert fake_clock.monotonic() - 1000.0 >= 30.0  # the context's deadline and max_wait


def test_a_fetch_that_sends_no_refresh_token_goes_alone_when_the_store_fails(
    fake_clock: FakeClock,
) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run(), SENDS_NONE)
    next(flow)
    fetch = throw(flow, StoreUnavailable("down"))
    assert isinstance(fetch, Fetch) and fetch.keepalive is None
    local = token_at(fake_clock, "local")
    assert step(flow, local) == ("returned", local)


def holding_with_a_late_token(clock: FakeClock) -> tuple[Any, ft.Token]:
    """A flow that took the lease and sent its request; the answer, a 2 s token with a rotated
    refresh token, comes back 5 s later (the process was frozen meanwhile), and the flow asks to
    save it."""
    flow = fetching(clock)
    late = token_at(clock, "late", lifetime=2).replace(refresh_token="rt-late")
    clock.advance(5)
    save = step(flow, late)
    assert isinstance(save, Save) and save.token == late  # its refresh token is kept first
    return flow, late


def test_a_token_that_arrived_late_is_asked_for_again_from_the_refresh_token_just_saved(
    fake_clock: FakeClock,
) -> None:
    flow, late = holding_with_a_late_token(fake_clock)
    assert step(flow, 1) == Extend(storage_key("flow"), "owner", 10.0)  # still the holder?
    again = step(flow, True)
    assert isinstance(again, Fetch) and again.ctx.current == late
    fresh = token_at(fake_clock, "fresh", lifetime=2)
    save = step(flow, fresh)
    assert isinstance(save, Save) and save.token == fresh
    assert save.generation == 1  # it replaces the late token's record, not the one before
    assert isinstance(step(flow, 2), Release)
    assert step(flow, True) == ("returned", fresh)


def test_a_late_token_whose_save_was_refused_gives_way_to_the_successors(
    fake_clock: FakeClock,
) -> None:
    """The lease ran out while this holder was frozen: its successor's token is handed out."""
    flow, _ = holding_with_a_late_token(fake_clock)
    assert isinstance(step(flow, None), Load)  # refused: what did the successor save?
    successor = token_at(fake_clock, "successor", lifetime=2)
    assert isinstance(step(flow, Record(successor, 3)), Release)
    assert step(flow, True) == ("returned", successor)


def test_a_late_token_whose_holder_lost_its_lease_after_saving_is_handed_out(
    fake_clock: FakeClock,
) -> None:
    """Saved, but the lease is gone before the second request: sending the saved refresh token
    now could race the successor, so the late token is what the manager gets (and refuses)."""
    flow, late = holding_with_a_late_token(fake_clock)
    assert isinstance(step(flow, 1), Extend)
    assert step(flow, False) == ("returned", late)


def pushing_fetcher() -> LeaseFetcher:
    """A fetcher with wake-ups (their hub's transport is the test: it confirms by hand)."""
    hub = Hub(lambda channel: None, confirm_timeout=0.0)
    wakeups = Wakeups(hub, lambda key: "channel:" + key, recheck=0.2)
    store = MemoryStore()
    return LeaseFetcher(
        "flow", store._backend, InlineBackend(store._backend), health=StoreHealth(), wakeups=wakeups
    )


def test_a_waiter_subscribes_before_its_last_look_and_then_waits_for_the_wake_up(
    fake_clock: FakeClock,
) -> None:
    flow = pushing_fetcher()._flow(context(fake_clock), _Run(), SENDS_NONE)
    assert isinstance(next(flow), Load)
    assert isinstance(step(flow, None), Acquire)
    assert step(flow, None) == Watch(storage_key("flow"))  # busy: subscribe first,
    ticket = Ticket("channel:" + storage_key("flow"), 0, 0)
    assert isinstance(step(flow, ticket), Load)  # then look once more,
    wait = step(flow, None)
    assert isinstance(wait, Wait) and wait.ticket == ticket  # then wait for the wake-up
    assert 0.15 <= wait.seconds <= 0.2  # or the safety net, never longer than polling
    assert step(flow, True) == Watch(storage_key("flow"))  # woken: subscribe, then look
    assert isinstance(step(flow, ticket), Load)
    landed = token_at(fake_clock, "landed")
    assert step(flow, Record(landed, 1)) == ("returned", landed)


def test_a_waiter_without_a_subscription_polls(fake_clock: FakeClock) -> None:
    flow = pushing_fetcher()._flow(context(fake_clock), _Run(), SENDS_NONE)
    assert isinstance(next(flow), Load)
    assert isinstance(step(flow, None), Acquire)
    assert isinstance(step(flow, None), Watch)
    pause = step(flow, None)  # refused or lost: no ticket
    assert isinstance(pause, Sleep) and pause.seconds <= 0.01
    assert isinstance(step(flow, None), Watch)
    assert isinstance(step(flow, None), Load)
    landed = token_at(fake_clock, "landed")
    assert step(flow, Record(landed, 1)) == ("returned", landed)
