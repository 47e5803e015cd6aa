"""MemoryStore and the lease flow: managers with one source key share one token and one fetch."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from tests.stores.stores_helpers import MintingSource, put, stored_token, token_at

import freshtoken as ft
from freshtoken._runtime.clock import FakeClock
from freshtoken._stores.memorystore import MemoryStore
from freshtoken._stores.store import storage_key


def managers(
    store: MemoryStore, source: MintingSource, clock: FakeClock, count: int = 2, **options: object
) -> list[ft.TokenManager]:
    return [
        ft.TokenManager(source, store=store, clock=clock, **options)  # type: ignore[arg-type]
        for _ in range(count)
    ]


def test_managers_with_one_key_share_one_token_and_one_fetch(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock)
    first, second = managers(store, source, fake_clock)
    assert first.get() == second.get()
    assert source.calls == 1


def test_an_expired_token_is_replaced_once_for_all_managers(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock, lifetime=100)
    first, second = managers(store, source, fake_clock)
    old = first.get()
    assert second.get() == old
    fake_clock.advance(97)  # past the hard deadline (95 s): callers must wait for a new token
    new = first.get()
    assert new != old
    assert second.get() == new
    assert source.calls == 2


def test_the_new_token_is_saved_before_it_is_handed_out(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock, refresh=True)
    seen_in_store: list[ft.Token | None] = []
    backend = store._backend
    key = storage_key(source.key)

    def on_event(event: ft.Event) -> None:
        if event.kind == "fetched":
            seen_in_store.append(stored_token(backend, key))

    manager = ft.TokenManager(source, store=store, clock=fake_clock, on_event=on_event)
    token = manager.get()
    assert seen_in_store == [token]
    stored = stored_token(backend, key)
    assert stored is not None
    assert stored.refresh_token == token.refresh_token


def test_a_fetch_starts_from_the_stored_token_with_the_newest_refresh_token(
    fake_clock: FakeClock,
) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock, refresh=True)
    first = ft.TokenManager(source, store=store, clock=fake_clock)
    stored = first.get()
    fake_clock.advance(97)
    # A manager that never saw a token refreshes from the one in the store.
    late = ft.TokenManager(source, store=store, clock=fake_clock)
    late.get()
    assert source.contexts[-1].current == stored
    assert source.contexts[-1].current is not None
    assert source.contexts[-1].current.refresh_token == stored.refresh_token


def test_a_token_invalidated_after_a_401_is_replaced_in_the_store(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock)
    first, second = managers(store, source, fake_clock)
    rejected = first.get()
    assert first.invalidate(rejected)
    replacement = first.get()
    assert replacement != rejected
    assert source.calls == 2
    assert stored_token(store._backend, storage_key(source.key)) == replacement
    assert second.get() == replacement  # the second manager never sees the rejected token


def test_a_rejected_token_found_after_the_lease_is_deleted_before_the_fetch(
    fake_clock: FakeClock,
) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock, error=ft.TokenEndpointUnavailable("down"))
    key = storage_key(source.key)
    rejected = token_at(fake_clock, "rejected-token")
    put(store._backend, key, rejected, ttl=100)
    manager = ft.TokenManager(source, store=store, clock=fake_clock)
    manager._rejected = rejected.fingerprint  # as after invalidate() in an earlier run
    with pytest.raises(ft.TokenEndpointUnavailable):
        manager.get()
    assert (
        stored_token(store._backend, key) is None
    )  # gone, although no replacement could be fetched


def test_a_waiter_uses_the_token_the_lease_holder_saves(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock)
    backend = store._backend
    key = storage_key(source.key)
    owner = backend.acquire(key, 30)
    assert owner is not None
    manager = ft.TokenManager(source, store=store, clock=fake_clock)
    got: list[ft.Token] = []
    waiter = threading.Thread(target=lambda: got.append(manager.get()))
    waiter.start()
    landed = token_at(fake_clock, "from-the-holder")
    put(backend, key, landed, ttl=100, owner=owner)
    assert backend.release(key, owner)
    waiter.join(timeout=10)
    assert got == [landed]
    assert source.calls == 0


def test_a_waiter_takes_over_when_the_holder_releases_without_a_token(
    fake_clock: FakeClock,
) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock)
    backend = store._backend
    key = storage_key(source.key)
    owner = backend.acquire(key, 30)
    assert owner is not None
    manager = ft.TokenManager(source, store=store, clock=fake_clock)
    got: list[ft.Token] = []
    waiter = threading.Thread(target=lambda: got.append(manager.get()))
    waiter.start()
    assert backend.release(key, owner)  # the holder's fetch failed
    waiter.join(timeout=10)
    assert source.calls == 1
    assert stored_token(backend, key) == got[0]


def test_a_holder_whose_lease_ran_out_is_replaced(fake_clock: FakeClock) -> None:
    store = MemoryStore(lease_time=0.05)
    source = MintingSource(fake_clock)
    assert store._backend.acquire(storage_key(source.key), 0.05) is not None  # then "crashes"
    manager = ft.TokenManager(source, store=store, clock=fake_clock)
    manager.get()
    assert source.calls == 1


def test_waiting_for_a_holder_gives_up_at_the_deadline(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock)
    assert store._backend.acquire(storage_key(source.key), 30) is not None
    manager = ft.TokenManager(
        source, store=store, clock=fake_clock, policy=ft.RefreshPolicy(max_wait=0)
    )
    with pytest.raises(ft.TokenEndpointUnavailable, match="another process holds the lease"):
        manager.get()
    assert source.calls == 0


def test_a_failed_fetch_releases_the_lease(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock, error=ft.OAuthError("invalid_client"))
    manager = ft.TokenManager(source, store=store, clock=fake_clock)
    with pytest.raises(ft.OAuthError):
        manager.get()
    key = storage_key(source.key)
    owner = store._backend.acquire(key, 1)
    assert owner is not None


def test_an_interrupted_fetch_releases_the_lease(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock, error=KeyboardInterrupt())
    manager = ft.TokenManager(source, store=store, clock=fake_clock)
    with pytest.raises(KeyboardInterrupt):
        manager.get()
    assert store._backend.acquire(storage_key(source.key), 1) is not None


def test_an_interrupted_async_fetch_releases_the_lease(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock, error=asyncio.CancelledError())
    manager = ft.TokenManager(source, store=store, clock=fake_clock)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(manager.aget())
    assert store._backend.acquire(storage_key(source.key), 1) is not None


def test_aget_shares_the_token_of_get(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock)
    first, second = managers(store, source, fake_clock)
    token = asyncio.run(first.aget())
    assert asyncio.run(second.aget()) == token
    assert second.get() == token
    assert source.calls == 1


def test_async_waiters_and_stale_refresh_share_one_fetch(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    source = MintingSource(fake_clock, lifetime=100)
    first, second = managers(store, source, fake_clock)

    async def main() -> tuple[ft.Token, ft.Token]:
        old = await first.aget()
        fake_clock.advance(90)  # stale, still usable: served while one refresh runs
        assert await first.aget() == old
        for _ in range(200):
            if first._life.entry is not None and first._life.entry.token != old:
                break
            await asyncio.sleep(0.005)
        fake_clock.advance(6)  # the old token is now past its hard deadline
        return await first.aget(), await second.aget()

    new, seen_by_second = asyncio.run(main())
    assert new == seen_by_second
    assert source.calls == 2


def test_store_entries_expire_with_their_token(fake_clock: FakeClock) -> None:
    store = MemoryStore()
    backend = store._backend
    put(backend, "k", token_at(fake_clock, "t"), ttl=0.0)
    assert stored_token(backend, "k") is None
    assert stored_token(backend, "missing") is None


def test_a_save_is_fenced_by_the_lease_and_the_generation(fake_clock: FakeClock) -> None:
    backend = MemoryStore()._backend
    newer, older = token_at(fake_clock, "newer"), token_at(fake_clock, "older")
    assert put(backend, "k", older) == 1
    assert backend.save("k", newer, ttl=100, owner="not-the-holder", generation=1) is None
    assert put(backend, "k", newer) == 2
    holder = backend.acquire("k", 10)
    assert holder is not None
    assert backend.save("k", older, ttl=100, owner=holder, generation=1) is None  # stale
    assert stored_token(backend, "k") == newer


def test_only_the_lease_owner_can_extend_or_release_it() -> None:
    backend = MemoryStore()._backend
    owner = backend.acquire("k", 10)
    assert owner is not None
    assert backend.acquire("k", 10) is None
    assert not backend.extend("k", "someone-else", 10)
    assert not backend.release("k", "someone-else")
    assert backend.extend("k", owner, 10)
    assert backend.release("k", owner)
    assert not backend.extend("k", owner, 10)
    assert not backend.release("k", owner)


def test_compare_and_delete_only_removes_the_named_token(fake_clock: FakeClock) -> None:
    backend = MemoryStore()._backend
    token = token_at(fake_clock, "t")
    put(backend, "k", token, ttl=100)
    assert not backend.delete("k", "00000000")
    assert backend.delete("k", token.fingerprint)
    assert not backend.delete("k", token.fingerprint)


def test_no_secret_reaches_the_logs_or_the_reprs(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryStore()
    source = MintingSource(fake_clock, refresh=True)
    first, second = managers(store, source, fake_clock)
    token = first.get()
    first.invalidate(token)
    fake_clock.advance(97)
    second.get()
    assert "secretpart" not in caplog.text
    assert "secretpart" not in repr(store) + repr(first) + repr(first._shared)
    assert caplog.text  # the flow was logged, by fingerprint


def test_a_refresh_keeps_waiting_for_the_holder_past_the_hard_deadline(
    fake_clock: FakeClock,
) -> None:
    # A refresh started in the stale window has its token's hard deadline as its own deadline;
    # waiting for another holder's token may outlast it (up to max_wait), so that callers arriving
    # after the hard deadline wait for that token instead of getting an error.
    store = MemoryStore()
    source = MintingSource(fake_clock, lifetime=100)
    manager = ft.TokenManager(source, store=store, clock=fake_clock)
    old = manager.get()
    backend = store._backend
    key = storage_key(source.key)
    owner = backend.acquire(key, 60)
    assert owner is not None
    fake_clock.advance(90)  # stale: served, while a refresh waits for the holder
    assert manager.get() == old
    fake_clock.advance(7)  # past the hard deadline while the refresh still waits
    got: list[ft.Token] = []
    caller = threading.Thread(target=lambda: got.append(manager.get()))
    caller.start()
    caller.join(timeout=0.3)
    assert caller.is_alive()  # waiting for the refresh, not failed
    landed = token_at(fake_clock, "landed")
    put(backend, key, landed, ttl=100, owner=owner)
    backend.release(key, owner)
    caller.join(timeout=10)
    assert got == [landed]
    assert source.calls == 1
