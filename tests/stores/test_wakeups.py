"""Push wake-ups: a RedisStore waiter is woken by the holder's save through pub/sub, one
subscription per client and process, with polling as the fallback when pub/sub is refused.

The waiters here use a safety-net interval of 10 s (``store._recheck``) and every test is
bounded at 5 s: a waiter that got its token in time was woken by the message, since it would
not have looked at the store again before 7.5 s. That is proof of the push path, not a
measurement of its speed (benchmarks/wakeup.py measures).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio
from tests.stores.stores_redis import RedisServer

import freshtoken as ft
from freshtoken._stores.store import storage_key
from freshtoken._stores.wakeups import Hub
from freshtoken.redis import RedisStore

BOUND = 5.0
KEY = "wakeups"


def never_called() -> str:
    raise AssertionError("a waiter fetched: the holder's token should have reached it")


def source() -> ft.FunctionSource:
    return ft.FunctionSource(never_called, key=KEY)


def fresh_token(name: str = "pushed-secretpart") -> ft.Token:
    issued = datetime.now(UTC)
    return ft.Token(access_token=name, issued_at=issued, expires_at=issued + timedelta(hours=1))


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for the test's own setup to reach a state; not an assertion of timing."""
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def slow_safety_net(store: RedisStore) -> RedisStore:
    store._recheck = 10.0
    return store


def channel(store: RedisStore) -> str:
    return store.prefix + storage_key(KEY) + ":wake"


def subscribers(client: redis.Redis, name: str) -> int:
    [(_, count)] = client.pubsub_numsub(name)
    return int(count)


class Holder:
    """Holds the lease of the token (as another host's fetcher would) and saves through it."""

    def __init__(self, store: RedisStore) -> None:
        self.backend = store._backend
        owner = self.backend.acquire(storage_key(KEY), 30.0)
        assert owner is not None
        self.owner: str = owner

    def save(self, token: ft.Token) -> float:
        """Save ``token`` (the generation after none); the monotonic time just before."""
        started = time.monotonic()
        assert self.backend.save(storage_key(KEY), token, ttl=60.0, owner=self.owner, generation=0)
        return started

    def release(self) -> None:
        self.backend.release(storage_key(KEY), self.owner)


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []

    def run() -> None:
        results.append(call())
        results.append(time.monotonic())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results


def one_waiter(
    client: redis.Redis,
) -> tuple[RedisStore, Holder, Any, threading.Thread, list[Any]]:
    """A store with a 10 s safety net, a holder of the lease, and one waiter waiting now."""
    store = slow_safety_net(RedisStore(client))
    holder = Holder(store)
    manager = ft.TokenManager(source(), store=store)
    thread, results = in_thread(manager.get)
    hub = _hub(store)
    until(lambda: hub.waiting == 1, "the waiter to wait")
    return store, holder, hub, thread, results


def test_a_waiter_is_woken_by_the_holders_save(redis_client: redis.Redis) -> None:
    _, holder, _, thread, results = one_waiter(redis_client)
    token = fresh_token()
    saved_at = holder.save(token)
    thread.join(BOUND)
    assert results, "the waiter was not woken by the save"
    got, woken_at = results
    assert got == token
    assert woken_at - saved_at < BOUND
    holder.release()


def test_an_async_waiter_is_woken_by_the_holders_save(redis_server: RedisServer) -> None:
    async def main() -> tuple[ft.Token, ft.Token, float]:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=1)
        try:
            store = slow_safety_net(RedisStore(client))
            with redis_server.client() as blocking:
                holder = Holder(RedisStore(blocking))
                waiter = asyncio.ensure_future(ft.TokenManager(source(), store=store).aget())
                hub = _hub(store)
                while hub.waiting < 1:
                    assert not waiter.done()
                    await asyncio.sleep(0.005)
                token = fresh_token()
                saved_at = holder.save(token)
                got = await asyncio.wait_for(waiter, BOUND)
                woken = time.monotonic() - saved_at
                holder.release()
            return token, got, woken
        finally:
            await client.aclose()

    token, got, woken = asyncio.run(main())
    assert got == token
    assert woken < BOUND


def test_one_subscription_per_process_however_many_waiters(redis_client: redis.Redis) -> None:
    stores = [slow_safety_net(RedisStore(redis_client)) for _ in range(2)]
    holder = Holder(stores[0])
    managers = [ft.TokenManager(source(), store=stores[n % 2]) for n in range(8)]
    waiting = [in_thread(manager.get) for manager in managers]
    hub = _hub(stores[0])
    assert _hub(stores[1]) is hub
    until(lambda: hub.waiting == 8, "8 waiters to wait")
    assert subscribers(redis_client, channel(stores[0])) == 1
    token = fresh_token()
    holder.save(token)
    for thread, results in waiting:
        thread.join(BOUND)
        assert results and results[0] == token
    holder.release()
    assert subscribers(redis_client, channel(stores[0])) == 1


def test_a_release_without_a_save_wakes_a_waiter_to_take_the_lease(
    redis_client: redis.Redis,
) -> None:
    calls: list[int] = []

    def fetch() -> str:
        calls.append(1)
        return "fetched-by-the-waiter-secretpart"

    store = slow_safety_net(RedisStore(redis_client))
    holder = Holder(store)
    manager = ft.TokenManager(ft.FunctionSource(fetch, key=KEY), store=store)
    thread, results = in_thread(manager.get)
    hub = _hub(store)
    until(lambda: hub.waiting == 1, "the waiter to wait")
    holder.release()  # the holder failed: it saves nothing and lets go
    thread.join(BOUND)
    assert results, "the release did not wake the waiter"
    assert results[0].access_token == "fetched-by-the-waiter-secretpart"
    assert calls == [1]


def test_a_lost_subscription_wakes_waiters_to_poll_until_it_is_back(
    redis_client: redis.Redis,
) -> None:
    store, holder, hub, thread, results = one_waiter(redis_client)
    epoch = hub._epoch
    redis_client.client_kill_filter(_type="pubsub")
    until(lambda: hub._epoch != epoch, "the listener to notice")
    until(lambda: subscribers(redis_client, channel(store)) == 1, "the listener to subscribe again")
    token = fresh_token()
    holder.save(token)
    thread.join(BOUND)
    assert results and results[0] == token
    holder.release()


@pytest.fixture
def limited_client(redis_client: redis.Redis, redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client whose user may do everything but pub/sub (an ACL without ``@pubsub``)."""
    redis_client.acl_setuser(
        "nopubsub",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-@pubsub"],
    )
    client = redis_server.client(username="nopubsub", password="secret")
    try:
        yield client
    finally:
        client.close()


def test_waiters_poll_when_the_server_refuses_subscribe(
    limited_client: redis.Redis, redis_client: redis.Redis
) -> None:
    store = slow_safety_net(RedisStore(limited_client))
    holder = Holder(store)  # its saves publish nothing (refused inside the script), yet succeed
    manager = ft.TokenManager(source(), store=store)
    thread, results = in_thread(manager.get)
    hub = _hub(store)
    until(lambda: hub._refused_until > time.monotonic(), "the subscription to be refused")
    assert hub.watch(channel(store)) is None
    token = fresh_token()
    holder.save(token)
    thread.join(BOUND)  # polling (10-200 ms), not the 10 s safety net
    assert results and results[0] == token
    assert hub.waiting == 0
    assert subscribers(redis_client, channel(store)) == 0
    holder.release()


def test_without_pubsub_saves_announce_nothing_and_waiters_poll(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, pubsub=False)
    assert store._wakeups is None
    pubsub = redis_client.pubsub()
    pubsub.subscribe(channel(store))
    assert pubsub.get_message(timeout=BOUND)["type"] == "subscribe"
    holder = Holder(store)
    manager = ft.TokenManager(source(), store=store)
    thread, results = in_thread(manager.get)
    token = fresh_token()
    holder.save(token)
    holder.release()
    thread.join(BOUND)
    assert results and results[0] == token
    assert pubsub.get_message(timeout=0.05) is None
    pubsub.close()


def _forked_waiter(store: RedisStore, answer: Any) -> None:
    token = ft.TokenManager(source(), store=store).get()
    answer.send(token.access_token)
    answer.close()


def test_a_forked_child_subscribes_on_its_own_connection(redis_client: redis.Redis) -> None:
    store = slow_safety_net(RedisStore(redis_client))
    hub = _hub(store)
    assert hub.watch(channel(store)) is not None  # the parent's listener runs
    holder = Holder(store)
    receiving, sending = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=_forked_waiter, args=(store, sending)
    )
    child.start()
    try:
        until(lambda: subscribers(redis_client, channel(store)) == 2, "the child to subscribe")
        token = fresh_token()
        holder.save(token)
        assert receiving.poll(BOUND), "the child was not woken"
        assert receiving.recv() == token.access_token
        child.join(BOUND)  # (its exit code is coverage's under a coverage run, not ours)
    finally:
        if child.is_alive():
            os.kill(child.pid, 9)  # type: ignore[arg-type]
            child.join()
        receiving.close()
        sending.close()
    holder.release()
    assert hub.watch(channel(store)) is not None  # the parent's subscription is untouched


def _hub(store: RedisStore) -> Any:
    assert store._wakeups is not None
    return store._wakeups.hub


# -- the hub alone: its transport is the test, which confirms and notifies by hand ------------


def test_a_first_watch_waits_for_the_confirmation_and_later_ones_never_do() -> None:
    asked: list[str] = []
    hub = Hub(asked.append, confirm_timeout=0.0)
    assert hub.watch("c") is None  # not confirmed in time: poll
    assert hub.watch("c") is None
    assert asked == ["c"]  # asked once
    hub.confirmed("c")
    ticket = hub.watch("c")
    assert ticket is not None
    assert not hub.wait(ticket, 0.0)
    hub.notified("other")  # a channel nobody watches: ignored
    hub.notified("c")
    assert hub.wait(ticket, 0.0)
    hub.refused(60.0)
    assert hub.watch("c") is None  # refused: poll, without asking again
    assert hub.wait(ticket, 0.0)  # a waiter holding an old ticket looks again
    assert asked == ["c"]


def test_async_waiters_are_woken_on_their_loops_and_leave_nothing_when_cancelled() -> None:
    hub = Hub(lambda channel: None, confirm_timeout=0.0)
    hub.confirmed("c")

    async def main() -> None:
        ticket = await hub.awatch("c")
        assert ticket is not None
        assert not await hub.async_wait(ticket, 0.0)
        woken = asyncio.ensure_future(hub.async_wait(ticket, BOUND))
        cancelled = asyncio.ensure_future(hub.async_wait(ticket, BOUND))
        while hub.waiting < 2:
            await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await asyncio.to_thread(hub.notified, "c")  # from another thread, like the listener
        assert await asyncio.wait_for(woken, BOUND)
        assert await hub.async_wait(ticket, BOUND)  # already past: no waiting
        assert hub.waiting == 0
        assert await hub.awatch("new") is None  # a first watch, in a worker thread

    asyncio.run(main())
    assert hub._channels["c"].futures == set()


def test_a_wake_up_for_a_closed_loop_is_dropped() -> None:
    hub = Hub(lambda channel: None, confirm_timeout=0.0)
    hub.confirmed("c")
    loop = asyncio.new_event_loop()
    future: asyncio.Future[None] = loop.create_future()
    hub._channels["c"].futures.add((loop, future))
    loop.close()
    hub.notified("c")  # no error
    hub.lost()
    assert not future.done()


# -- the listener's own life -----------------------------------------------------------------


def test_a_second_token_is_subscribed_on_the_running_connection(
    redis_server: RedisServer,
) -> None:
    with redis_server.client(decode_responses=True) as client:  # channels arrive as str
        store = slow_safety_net(RedisStore(client))
        hub = _hub(store)
        first, second = (store._wakeups.channel_of(storage_key(k)) for k in ("a", "b"))  # type: ignore[union-attr]
        assert hub.watch(first) is not None
        ticket = hub.watch(second)  # subscribed through the listener's connection
        assert ticket is not None
        assert subscribers(client, first) == subscribers(client, second) == 1
        client.publish(second, "1")
        assert hub.wait(ticket, BOUND)


def test_a_hung_server_is_noticed_by_the_heartbeat(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    import freshtoken.redis

    monkeypatch.setattr(freshtoken.redis, "_HEARTBEAT", 0.1)
    with redis_server.client() as client:
        hub = _hub(RedisStore(client))
        assert hub.watch("quiet") is not None
        epoch = hub._epoch
        process = redis_server._process
        assert process is not None
        process.send_signal(signal.SIGSTOP)  # answers nothing, closes nothing
        try:
            until(lambda: hub._epoch != epoch, "the heartbeat to give up")
        finally:
            process.send_signal(signal.SIGCONT)
        assert hub.watch("quiet") is None  # poll until it is subscribed again


def test_the_listener_ends_with_its_client(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    import freshtoken.redis

    monkeypatch.setattr(freshtoken.redis, "_HEARTBEAT", 0.05)
    client = redis_server.client()
    listener = freshtoken.redis._listener(client)
    assert RedisStore(client)._wakeups is not None
    assert listener.hub.watch("c") is not None
    thread = listener._thread
    assert thread is not None and thread.is_alive()
    client.close()
    del client
    gc.collect()
    thread.join(BOUND)
    assert not thread.is_alive()
