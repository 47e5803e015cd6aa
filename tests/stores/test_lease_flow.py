"""The lease flow driven by hand: the test answers each operation the flow asks for, as a driver
would, so every path through the protocol is checked without timing or threads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.stores.stores_helpers import MintingSource, put, token_at

import freshtoken as ft
from freshtoken._runtime.clock import FakeClock
from freshtoken._stores.memorystore import MemoryStore
from freshtoken._stores.shared import (
    Acquire,
    Extend,
    Fetch,
    LeaseFetcher,
    Load,
    Release,
    Save,
    _Run,
)
from freshtoken._stores.store import Record, storage_key


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


def step(flow: Any, reply: object) -> object:
    try:
        return flow.send(reply)
    except StopIteration as stop:
        return ("returned", stop.value)


def test_a_token_stored_while_the_lease_was_being_taken_is_used_not_fetched(
    fake_clock: FakeClock,
) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run())
    assert isinstance(next(flow), Load)
    assert isinstance(step(flow, None), Acquire)
    assert isinstance(step(flow, "owner"), Load)  # loads again under the lease
    landed = token_at(fake_clock, "landed")
    release = step(flow, Record(landed, 1))
    assert release == Release(storage_key("flow"), "owner")
    assert step(flow, True) == ("returned", landed)


def test_a_fetched_token_that_is_already_expired_is_not_saved(fake_clock: FakeClock) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run())
    next(flow)
    step(flow, None)
    step(flow, "owner")
    assert isinstance(step(flow, None), Extend)  # the lease is still ours before sending
    assert isinstance(step(flow, True), Fetch)
    dead = token_at(fake_clock, "dead", lifetime=10, age=20)
    assert isinstance(step(flow, dead), Release)
    assert step(flow, True) == ("returned", dead)


def test_a_token_without_expiry_is_saved_with_the_default_lifetime(fake_clock: FakeClock) -> None:
    flow = fetcher()._flow(context(fake_clock), _Run())
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

    def __init__(self, clock: FakeClock, stop: Any) -> None:
        super().__init__(clock)
        self.stop = stop

    def fetch(self, ctx: ft.FetchContext) -> ft.Token:
        self.stop()
        return super().fetch(ctx)


def test_a_store_lost_after_the_fetch_still_hands_the_token_out(
    fake_clock: FakeClock, redis_server: Any
) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from freshtoken.redis import RedisStore

    with redis_server.client(retry=Retry(NoBackoff(), 0)) as client:
        events: list[ft.Event] = []
        source = StoppingSource(fake_clock, redis_server.stop)
        manager = ft.TokenManager(
            source, store=RedisStore(client), clock=fake_clock, on_event=events.append
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
