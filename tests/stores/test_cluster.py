"""RedisStore on a real 3-primary Redis Cluster: hash-tagged keys (each script on one slot),
sync and async cluster clients, push wake-ups across nodes, and a herd of threads making one
token request per lifetime."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest
import redis.asyncio.cluster
import redis.cluster
from tests.stores.stores_cluster import RedisClusterServers
from tests.stores.stores_helpers import put, stored_token
from tests.stores.test_wakeups import (
    BOUND,
    KEY,
    Holder,
    fresh_token,
    in_thread,
    slow_safety_net,
    source,
    until,
)

import freshtoken as ft
from freshtoken._stores.store import storage_key
from freshtoken.redis import RedisStore
from freshtoken.testing import AuthorizationServer


def test_every_key_of_a_token_lies_in_one_slot_and_scripts_run_there(
    redis_cluster: RedisClusterServers,
) -> None:
    client = redis_cluster.client()
    try:
        backend = RedisStore(client, prefix="slots:")._backend
        keys = [f"v1:{n:040x}" for n in range(12)]  # spread over the nodes
        token = fresh_token()
        for key in keys:
            assert put(backend, key, token, ttl=60) == 1
            record = f"slots:{{{key}}}"
            assert client.keyslot(record) == client.keyslot(record + ":lease")  # type: ignore[no-untyped-call]
            assert client.exists(record) == 1
            assert stored_token(backend, key) == token
            owner = backend.acquire(key, 5)
            assert owner is not None and backend.acquire(key, 5) is None
            assert backend.extend(key, owner, 5) and backend.release(key, owner)
            assert backend.delete(key, token.fingerprint)
        slots = {client.keyslot(f"slots:{{{key}}}") for key in keys}  # type: ignore[no-untyped-call]
        nodes = {client.get_node_from_key(f"slots:{{{key}}}").name for key in keys}  # type: ignore[no-untyped-call]
        assert len(slots) == 12 and len(nodes) == 3
    finally:
        client.close()


def test_managers_share_one_token_through_a_cluster_and_are_woken_across_nodes(
    redis_cluster: RedisClusterServers,
) -> None:
    client = redis_cluster.client()
    try:
        store = slow_safety_net(RedisStore(client, prefix="wake:"))
        holder = Holder(store)
        thread, results = in_thread(ft.TokenManager(source(), store=store).get)
        assert store._wakeups is not None
        hub = store._wakeups.hub
        until(lambda: hub.waiting == 1, "the waiter to wait")
        token = fresh_token()
        holder.save(token)  # on the slot's primary; the listener is on any node
        thread.join(BOUND)
        assert results and results[0] == token
        holder.release()
        second = ft.TokenManager(source(), store=RedisStore(client, prefix="wake:"))
        assert second.get() == token
        channel = "wake:{" + storage_key(KEY) + "}:wake"
        counts = [
            dict(redis_cluster.node(port).pubsub_numsub(channel))[channel]
            for port in redis_cluster.ports
        ]
        assert sum(counts) == 1  # one subscription, on one node
    finally:
        client.close()


def test_an_async_cluster_client_serves_aget_and_its_blocking_twin_serves_get(
    redis_cluster: RedisClusterServers,
) -> None:
    async def main() -> tuple[ft.Token, ft.Token, ft.Token]:
        client = redis.asyncio.cluster.RedisCluster(
            host="127.0.0.1", port=redis_cluster.ports[1], socket_timeout=1
        )
        try:
            store = slow_safety_net(RedisStore(client, prefix="async:"))
            with redis_cluster.client() as blocking:
                holder = Holder(RedisStore(blocking, prefix="async:"))
                waiter = asyncio.ensure_future(ft.TokenManager(source(), store=store).aget())
                assert store._wakeups is not None
                while store._wakeups.hub.waiting < 1:
                    assert not waiter.done()
                    await asyncio.sleep(0.005)
                token = fresh_token()
                holder.save(token)
                got = await asyncio.wait_for(waiter, BOUND)
                holder.release()
            from_thread = await asyncio.to_thread(ft.TokenManager(source(), store=store).get)
            store._backend._backend._client.close()
            return token, got, from_thread
        finally:
            await client.aclose()

    token, got, from_thread = asyncio.run(main())
    assert got == token == from_thread


def test_a_herd_of_threads_makes_one_token_request_per_lifetime_through_a_cluster(
    redis_cluster: RedisClusterServers,
) -> None:
    lifetime, duration, threads = 1.5, 6.0, 8
    failures: list[str] = []
    with AuthorizationServer(token_lifetime=lifetime) as server:
        client_info = server.add_client(refresh_tokens=False)
        cluster = redis_cluster.client()
        store = RedisStore(cluster, prefix="herd:")
        grant = ft.ClientCredentials(
            server.token_url, client_info.client_id, str(client_info.client_secret)
        )
        end = time.monotonic() + duration

        def call() -> None:
            manager = ft.TokenManager(grant, store=store)  # one manager each: a fleet
            while time.monotonic() < end:
                try:
                    token = manager.get()
                    assert token.expires_at is not None
                    assert token.expires_at.timestamp() > time.time()
                except Exception as error:
                    failures.append(type(error).__name__)
                time.sleep(0.01)
            manager.close()

        herd = [threading.Thread(target=call) for _ in range(threads)]
        for thread in herd:
            thread.start()
        for thread in herd:
            thread.join(duration + 30)
        cluster.close()
        requests = server.token_requests
    assert failures == []
    low = math.floor(duration / (lifetime * 0.8)) - 1
    high = math.ceil(duration / (lifetime * 0.75)) + 1
    assert low <= requests <= high, requests


def test_a_cluster_client_of_another_kind_is_refused() -> None:
    with pytest.raises(ft.ConfigurationError, match="RedisCluster"):
        RedisStore(redis.cluster.ClusterNode("127.0.0.1", 1))  # type: ignore[arg-type,no-untyped-call]


def test_the_blocking_twin_of_an_async_cluster_client_keeps_its_settings() -> None:
    from freshtoken.redis import _cluster_settings, _sync_cluster_twin

    client = redis.asyncio.cluster.RedisCluster(
        host="127.0.0.1", port=1, ssl=True, password="pw", socket_timeout=2
    )
    settings = _cluster_settings(client)
    assert settings["ssl"] is True
    assert settings["password"] == "pw" and settings["socket_timeout"] == 2
    with pytest.raises(redis.exceptions.RedisClusterException):  # nothing listens there
        _sync_cluster_twin(client)
