"""RedisStore against a real redis-server: lease, versioned saves, TTLs, async, outages."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio
from cryptography.fernet import Fernet
from tests.stores.stores_helpers import MintingSource, put, stored_token, token_at
from tests.stores.stores_redis import RedisServer

import freshtoken as ft
from freshtoken._runtime.clock import FakeClock
from freshtoken._stores.store import StoreUnavailable, UnreadableRecord, storage_key
from freshtoken.redis import RedisStore


def test_the_lease_is_set_nx_px_and_only_its_owner_extends_or_releases_it(
    redis_client: redis.Redis,
) -> None:
    backend = RedisStore(redis_client)._backend
    owner = backend.acquire("v1:k", 5)
    assert owner is not None
    assert backend.acquire("v1:k", 5) is None
    assert 0 < redis_client.pttl("freshtoken:v1:k:lease") <= 5000
    assert not backend.extend("v1:k", "intruder", 60)
    assert not backend.release("v1:k", "intruder")
    assert backend.extend("v1:k", owner, 60)
    assert redis_client.pttl("freshtoken:v1:k:lease") > 5000
    assert backend.release("v1:k", owner)
    assert not backend.release("v1:k", owner)
    assert redis_client.exists("freshtoken:v1:k:lease") == 0


def test_a_token_lives_in_redis_as_long_as_it_lives(
    redis_client: redis.Redis, fake_clock: FakeClock
) -> None:
    backend = RedisStore(redis_client, prefix="app:")._backend
    token = token_at(fake_clock, "t")
    assert put(backend, "v1:k", token, ttl=42.0)
    assert 41000 < redis_client.pttl("app:v1:k") <= 42000
    assert stored_token(backend, "v1:k") == token


def test_a_stale_holder_never_overwrites_a_newer_token(
    redis_client: redis.Redis, fake_clock: FakeClock
) -> None:
    backend = RedisStore(redis_client)._backend
    newer, late = token_at(fake_clock, "newer"), token_at(fake_clock, "late")
    assert put(backend, "v1:k", late, ttl=60) == 1
    assert backend.save("v1:k", newer, ttl=60, owner="not-the-holder", generation=1) is None
    assert put(backend, "v1:k", newer, ttl=60) == 2
    holder = backend.acquire("v1:k", 10)
    assert holder is not None
    assert backend.save("v1:k", late, ttl=60, owner=holder, generation=1) is None  # stale
    backend.release("v1:k", holder)
    assert stored_token(backend, "v1:k") == newer
    assert not backend.delete("v1:k", late.fingerprint)
    assert backend.delete("v1:k", newer.fingerprint)
    assert stored_token(backend, "v1:k") is None


def test_managers_share_one_token_through_redis(
    redis_client: redis.Redis, fake_clock: FakeClock
) -> None:
    store = RedisStore(redis_client)
    source = MintingSource(fake_clock)
    first = ft.TokenManager(source, store=store, clock=fake_clock)
    second = ft.TokenManager(source, store=RedisStore(redis_client), clock=fake_clock)
    assert first.get() == second.get()
    assert source.calls == 1
    assert redis_client.exists("freshtoken:" + storage_key(source.key)) == 1
    assert "secretpart" not in repr(store)


def test_a_key_of_another_type_is_reported_and_replaced(
    redis_client: redis.Redis, fake_clock: FakeClock
) -> None:
    source = MintingSource(fake_clock)
    redis_client.set("freshtoken:" + storage_key(source.key), "not a hash")
    events: list[ft.Event] = []
    manager = ft.TokenManager(
        source, store=RedisStore(redis_client), clock=fake_clock, on_event=events.append
    )
    token = manager.get()
    assert "holds another type" in str(events[0].error)
    assert stored_token(RedisStore(redis_client)._backend, storage_key(source.key)) == token


def test_an_async_client_serves_aget_and_its_blocking_twin_serves_get(
    redis_server: RedisServer, fake_clock: FakeClock
) -> None:
    source = MintingSource(fake_clock)

    async def main() -> tuple[ft.Token, ft.Token]:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=1)
        try:
            store = RedisStore(client)
            first = ft.TokenManager(source, store=store, clock=fake_clock)
            token = await first.aget()
            second = ft.TokenManager(source, store=store, clock=fake_clock)
            from_thread = await asyncio.to_thread(second.get)
            store._backend._backend._client.close()
            return token, from_thread
        finally:
            await client.aclose()

    token, from_thread = asyncio.run(main())
    assert token == from_thread
    assert source.calls == 1


def test_a_blocking_client_serves_aget_from_a_worker_thread(
    redis_client: redis.Redis, fake_clock: FakeClock
) -> None:
    source = MintingSource(fake_clock)
    store = RedisStore(redis_client)
    token = asyncio.run(ft.TokenManager(source, store=store, clock=fake_clock).aget())
    assert asyncio.run(ft.TokenManager(source, store=store, clock=fake_clock).aget()) == token
    assert source.calls == 1


def test_a_client_decoding_responses_works_too(
    redis_server: RedisServer, fake_clock: FakeClock
) -> None:
    with redis_server.client(decode_responses=True) as client:
        source = MintingSource(fake_clock)
        first = ft.TokenManager(source, store=RedisStore(client), clock=fake_clock)
        second = ft.TokenManager(source, store=RedisStore(client), clock=fake_clock)
        assert first.get() == second.get()
        assert source.calls == 1


def test_redis_down_means_a_local_fetch_an_event_and_a_retry_after_a_backoff(
    redis_server: RedisServer, fake_clock: FakeClock
) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    source = MintingSource(fake_clock, lifetime=10)
    events: list[ft.Event] = []
    with redis_server.client(retry=Retry(NoBackoff(), 0)) as client:
        store = RedisStore(client)
        manager = ft.TokenManager(source, store=store, clock=fake_clock, on_event=events.append)
        redis_server.stop()
        manager.get()  # fetched locally
        assert [e.kind for e in events] == ["store_unavailable", "fetched"]
        assert "ConnectionError" in str(events[0].error)
        fake_clock.advance(9.8)  # past the hard deadline and the store's 1 s backoff:
        # the store is tried again (and fails again: a second report)
        manager.get()
        assert [e.kind for e in events].count("store_unavailable") == 2
        fake_clock.advance(0.1)  # the backoff is now 2 s: a fetch right away stays local, quietly
        manager.invalidate(manager.get())
        manager.get()
        assert [e.kind for e in events].count("store_unavailable") == 2
        assert source.calls == 3
        redis_server.start()
        fake_clock.advance(2.5)
        manager.invalidate(manager.get())
        token = manager.get()  # the store is back
        assert stored_token(store._backend, storage_key(source.key)) == token


def test_a_store_error_of_any_kind_is_reported_not_raised(
    redis_client: redis.Redis, fake_clock: FakeClock
) -> None:
    redis_client.config_set("maxmemory", "1")  # every write is refused (OOM)
    redis_client.config_set("maxmemory-policy", "noeviction")
    events: list[ft.Event] = []
    source = MintingSource(fake_clock)
    manager = ft.TokenManager(
        source, store=RedisStore(redis_client), clock=fake_clock, on_event=events.append
    )
    assert manager.get().access_token.startswith("access-")
    assert events[0].kind == "store_unavailable"
    redis_client.config_set("maxmemory", "0")


def test_encrypted_records_decrypt_after_a_key_rotation_and_others_are_not_trusted(
    redis_client: redis.Redis, fake_clock: FakeClock
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key().decode()
    token = token_at(fake_clock, "rotate-me-secretpart")
    put(RedisStore(redis_client, encryption_key=old)._backend, "v1:k", token, ttl=60)
    rotated = RedisStore(redis_client, encryption_key=[new, old])._backend
    assert stored_token(rotated, "v1:k") == token
    with pytest.raises(UnreadableRecord, match="cannot be decrypted"):
        stored_token(RedisStore(redis_client, encryption_key=new)._backend, "v1:k")
    with pytest.raises(UnreadableRecord, match="not valid JSON"):
        stored_token(RedisStore(redis_client)._backend, "v1:k")  # encrypted, read without a key


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client": object()}, "redis.Redis, redis.asyncio.Redis, redis.cluster.RedisCluster"),
        ({"pubsub": "yes"}, "pubsub must be True or False"),
        ({"prefix": 5}, "prefix"),
        ({"encryption_key": "not-a-key"}, "not a Fernet key"),
        ({"encryption_key": []}, "empty list"),
        ({"encryption_key": [5]}, r"encryption_key\[0\]"),
        ({"encryption_key": 5}, "Fernet key"),
        ({"lease_time": 0}, "lease_time"),
    ],
)
def test_a_misconfigured_store_is_refused_at_construction(
    redis_client: redis.Redis, options: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"client": redis_client, **options}
    client = arguments.pop("client")
    with pytest.raises(ft.ConfigurationError, match=message):
        RedisStore(client, **arguments)  # type: ignore[arg-type]


def test_connection_errors_become_store_unavailable(redis_server: RedisServer) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with redis_server.client(retry=Retry(NoBackoff(), 0)) as client:
        backend = RedisStore(client)._backend
        redis_server.stop()
        with pytest.raises(StoreUnavailable, match="ConnectionError"):
            stored_token(backend, "v1:k")
        redis_server.start()


def test_async_operations_map_refusals_and_outages_like_the_blocking_ones(
    redis_server: RedisServer, fake_clock: FakeClock
) -> None:
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff

    async def main() -> None:
        client = redis.asyncio.Redis(
            host="127.0.0.1", port=redis_server.port, retry=AsyncRetry(NoBackoff(), 0)
        )
        try:
            backend = RedisStore(client)._async_backend
            token = token_at(fake_clock, "t")
            owner = await backend.acquire("v1:k", 5)
            assert owner is not None
            assert await backend.save("v1:k", token, ttl=60, owner=owner, generation=0) == 1
            record = await backend.load("v1:k")
            assert record is not None and record.token == token and record.generation == 1
            assert await backend.release("v1:k", owner)
            assert not await backend.delete("v1:k", "00000000")
            assert await backend.delete("v1:k", token.fingerprint)
            owner = await backend.acquire("v1:k", 5)
            assert owner is not None
            assert await backend.extend("v1:k", owner, 5)
            assert await backend.release("v1:k", owner)
            await client.set("freshtoken:v1:odd", "x")
            with pytest.raises(UnreadableRecord):
                await backend.load("v1:odd")
            redis_server.stop()
            with pytest.raises(StoreUnavailable):
                await backend.load("v1:k")
        finally:
            await client.aclose()

    asyncio.run(main())
    redis_server.start()


def test_the_blocking_twin_of_an_async_client_keeps_its_connection_settings() -> None:
    from freshtoken.redis import _as_bytes, _sync_twin

    unix = redis.asyncio.Redis(unix_socket_path="/run/redis.sock", db=3, password="pw")
    tls = redis.asyncio.Redis(host="cache", port=6380, ssl=True, socket_timeout=2)
    for client, expected in (
        (unix, {"path": "/run/redis.sock", "db": 3}),
        (tls, {"host": "cache"}),
    ):
        twin = _sync_twin(client)
        settings = twin.connection_pool.connection_kwargs
        assert expected.items() <= settings.items()
        twin.close()
    assert "SSL" in _sync_twin(tls).connection_pool.connection_class.__name__
    asyncio.run(unix.aclose())
    asyncio.run(tls.aclose())
    with pytest.raises(UnreadableRecord):
        _as_bytes(5)
