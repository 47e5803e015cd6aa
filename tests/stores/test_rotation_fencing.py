"""Rotation when saves fail, clocks disagree, leases run out and holders hang or fork.

Every scenario runs against the real test server with reuse detection (a rotated-out refresh
token presented again revokes the family), real stores and, where hosts matter, real processes.
The proof of each is the server's own counters: no refresh token presented twice, no family
revoked, and every host still served at the end.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from tests.stores.stores_helpers import first_refresh_token, stored_token
from tests.stores.stores_redis import RedisServer, ReplyDroppingProxy, free_port

import freshtoken as ft
from freshtoken._stores.store import storage_key
from freshtoken.redis import RedisStore
from freshtoken.testing import AuthorizationServer

#: Refresh early (after about a tenth of a token's life), so scenarios take seconds, not minutes.
EAGER = ft.RefreshPolicy(stale_fraction=0.9, hard_fraction=0.05, error_cooldown=0.0)


@pytest.fixture
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(token_lifetime=4.0) as server:
        server.add_client(refresh_tokens=True)
        yield server


def grant(server: AuthorizationServer, refresh_token: str) -> ft.RefreshTokenGrant:
    client = server.client
    return ft.RefreshTokenGrant(
        server.token_url, refresh_token, client.client_id, str(client.client_secret)
    )


def refresh(manager: ft.TokenManager) -> ft.Token:
    """Wait (bounded) until ``manager``'s token is stale, let its refresh run, and return the
    token it holds afterwards."""
    thread = refreshing(manager)
    thread.join(20)
    assert not thread.is_alive(), "the refresh hangs"
    latest = manager._latest
    assert latest is not None
    return latest


def refreshing(manager: ft.TokenManager) -> threading.Thread:
    """Once ``manager``'s token is stale, ask for it (a refresh starts in the background) and
    return a thread that ends when that refresh has ended (bounded: 30 s)."""
    deadline = time.monotonic() + 10
    while manager._fresh() is not None:
        assert time.monotonic() < deadline, "the token never turned stale"
        time.sleep(0.02)
    manager.get()  # stale: served, and the refresh is in flight before get() returns
    flight = manager._flight
    assert flight is not None

    def until_landed() -> None:
        ends = time.monotonic() + 30
        while not flight.done and time.monotonic() < ends:
            time.sleep(0.01)

    waiter = threading.Thread(target=until_landed, daemon=True)
    waiter.start()
    return waiter


def assert_no_reuse(server: AuthorizationServer) -> None:
    assert server.refresh_tokens_reused == 0
    assert server.families_revoked == 0


class Skewed:
    """A host's clock whose wall time is ``offset`` seconds off (monotonic time is local)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time() + self.offset


class RefusingSource:
    """Delegates to a grant and, once asked, makes the Redis server refuse writes right after the
    token request (``min-replicas-to-write``), so the save of the rotated token fails while the
    store keeps the older record."""

    def __init__(self, inner: ft.RefreshTokenGrant, client: redis.Redis) -> None:
        self.inner = inner
        self.client = client
        self.refuse_next = False

    @property
    def key(self) -> str:
        return self.inner.key

    def fetch(self, ctx: ft.FetchContext) -> ft.Token:
        token = self.inner.fetch(ctx)
        if self.refuse_next:
            self.refuse_next = False
            self.client.config_set("min-replicas-to-write", 1)
        return token

    async def afetch(self, ctx: ft.FetchContext) -> ft.Token:  # pragma: no cover - sync only
        raise NotImplementedError

    def close(self) -> None:
        self.inner.close()


def test_a_rotated_token_whose_save_failed_is_refreshed_from_never_the_older_stored_one(
    server: AuthorizationServer, redis_server: RedisServer
) -> None:
    """Case 2 of issue 12: RT1 -> RT2 while Redis is frozen (the save fails, the store keeps RT1).
    When Redis is back, the next refresh starts from RT2, the manager's own, and saves RT3."""
    client = redis_server.client()
    store = RedisStore(client, lease_time=1.0)
    source = RefusingSource(grant(server, first_refresh_token(server)), client)
    manager = ft.TokenManager(source, store=store, policy=EAGER)
    key = storage_key(source.key)
    try:
        first = manager.get()  # RT0 -> RT1, saved
        source.refuse_next = True
        second = refresh(manager)  # RT1 -> RT2; the save is refused by Redis
        assert second.refresh_token != first.refresh_token
        client.config_set("min-replicas-to-write", 0)
        assert stored_token(store._backend, key) == first  # the store still holds RT1
        health_retry = time.monotonic() + 1.2  # the store is left alone for 1 s after failing
        while time.monotonic() < health_retry:
            time.sleep(0.05)
        third = refresh(manager)  # from RT2, saved
        assert third.access_token != second.access_token
        assert stored_token(store._backend, key) == third
    finally:
        client.config_set("min-replicas-to-write", 0)
        manager.close()
        client.close()
    assert_no_reuse(server)


def test_hosts_whose_store_refuses_writes_never_spend_the_shared_refresh_token_alone(
    server: AuthorizationServer, redis_server: RedisServer
) -> None:
    """Redis refuses every write (as while it fails over) to two hosts holding the same token.
    Taking the lease is a write too, so neither host can coordinate: refreshing on its own would
    send the refresh token the other host holds as well. Both keep serving their token and wait
    for the store; once it takes writes again, one refreshes through it and the other adopts its
    token: one refresh, nothing presented twice."""
    setup = redis_server.client()
    a_client, b_client = redis_server.client(), redis_server.client()
    refresh_token = first_refresh_token(server)
    a = ft.TokenManager(
        grant(server, refresh_token), store=RedisStore(a_client, lease_time=1.0), policy=EAGER
    )
    b = ft.TokenManager(
        grant(server, refresh_token), store=RedisStore(b_client, lease_time=1.0), policy=EAGER
    )
    try:
        first = a.get()
        assert b.get() == first  # B adopts A's token, refresh token included
        requests = server.token_requests
        setup.config_set("min-replicas-to-write", 1)  # every write now fails: NOREPLICAS
        waiting = [refreshing(a), refreshing(b)]  # stale: both want a new token
        assert a.get() == b.get() == first  # still served while they wait for the store
        assert server.token_requests == requests  # and nothing was sent
        setup.config_set("min-replicas-to-write", 0)
        for thread in waiting:
            thread.join(20)
            assert not thread.is_alive(), "a refresh hangs"
        assert a._latest == b._latest != first
        assert server.token_requests == requests + 1
    finally:
        setup.config_set("min-replicas-to-write", 0)
        a.close()
        b.close()
        for client in (setup, a_client, b_client):
            client.close()
    assert_no_reuse(server)


class DroppingSource(RefusingSource):
    """Delegates to a grant and, once asked, makes the proxy in front of Redis drop every reply
    from right after the token request on: the save of the rotated token lands, and the manager
    never hears so (its save times out), nor anything else from its store."""

    def __init__(self, inner: ft.RefreshTokenGrant, proxy: ReplyDroppingProxy) -> None:
        self.inner = inner
        self.proxy = proxy
        self.refuse_next = False

    def fetch(self, ctx: ft.FetchContext) -> ft.Token:
        token = self.inner.fetch(ctx)
        if self.refuse_next:
            self.refuse_next = False
            self.proxy.dropping.set()
        return token


def test_a_token_whose_save_landed_unacknowledged_is_never_refreshed_from_alone(
    server: AuthorizationServer, redis_server: RedisServer
) -> None:
    """Host A rotates RT1 -> RT2 and saves it; Redis stores RT2, but its reply is lost, and A's
    store stays unreachable. Every other host now loads RT2, so A must not refresh from RT2 on
    its own, though A believes it never saved it: A waits for its store. Host B adopts RT2 and
    rotates it to RT3 through the store; A adopts RT3 once its store answers again."""
    proxy = ReplyDroppingProxy(redis_server.port)
    no_retries = Retry(NoBackoff(), 0)
    a_client = redis.Redis(port=proxy.port, socket_timeout=0.3, retry=no_retries)
    b_client = redis_server.client()
    refresh_token = first_refresh_token(server)
    source = DroppingSource(grant(server, refresh_token), proxy)
    b_store = RedisStore(b_client, lease_time=1.0)
    a = ft.TokenManager(source, store=RedisStore(a_client, lease_time=1.0), policy=EAGER)
    b = ft.TokenManager(grant(server, refresh_token), store=b_store, policy=EAGER)
    try:
        first = a.get()
        assert b.get() == first
        source.refuse_next = True
        second = refresh(a)  # RT1 -> RT2: stored, unacknowledged
        assert second.refresh_token != first.refresh_token
        assert stored_token(b_store._backend, storage_key(b.source.key)) == second
        waiting = refreshing(a)  # A's store is unreachable: A must not spend RT2 alone
        assert refresh(b) == second  # B adopts RT2 from the store
        third = refresh(b)  # and rotates it, through the store: RT2 -> RT3
        assert third.refresh_token != second.refresh_token
        proxy.dropping.clear()  # A's store answers again
        waiting.join(20)
        assert not waiting.is_alive(), "A's refresh hangs"
        assert a._latest == third
    finally:
        proxy.dropping.clear()
        a.close()
        b.close()
        for client in (a_client, b_client):
            client.close()
        proxy.close()
    assert_no_reuse(server)


def test_a_host_with_no_token_of_its_own_never_refreshes_alone_while_its_store_is_down(
    server: AuthorizationServer, redis_server: RedisServer
) -> None:
    """A restarted host (no token in memory) comes back while its store is unreachable. The
    refresh token it was configured with was rotated by the fleet long ago: sending it alone
    would be reuse, and the server would revoke the family. The host fails its callers with
    TokenEndpointUnavailable once ``max_wait`` has passed, and sends nothing."""
    refresh_token = first_refresh_token(server)
    client = redis_server.client()
    fleet = ft.TokenManager(grant(server, refresh_token), store=RedisStore(client))
    unreachable = redis.Redis(port=free_port(), socket_timeout=0.3, retry=Retry(NoBackoff(), 0))
    policy = ft.RefreshPolicy(max_wait=1.0)
    restarted = ft.TokenManager(
        grant(server, refresh_token), store=RedisStore(unreachable), policy=policy
    )
    try:
        assert fleet.get().refresh_token != refresh_token  # the fleet rotated RT0 away
        requests = server.token_requests
        with pytest.raises(ft.TokenEndpointUnavailable, match="store"):
            restarted.get()
        assert server.token_requests == requests
    finally:
        fleet.close()
        restarted.close()
        client.close()
        unreachable.close()
    assert_no_reuse(server)


def test_two_hosts_whose_wall_clocks_differ_still_agree_on_the_newest_token(
    server: AuthorizationServer, tmp_path: Path
) -> None:
    """Case 2 of issue 12, refused saves: host A's wall clock runs 8 s ahead. Records are ordered
    by their generation, not by expiry times computed on each host's clock, so host B's rotated
    token is saved and host A refreshes from it."""
    refresh_token = first_refresh_token(server)
    store = ft.FileStore(tmp_path / "tokens")
    a = ft.TokenManager(grant(server, refresh_token), store=store, clock=Skewed(8.0), policy=EAGER)
    b = ft.TokenManager(grant(server, refresh_token), store=store, clock=Skewed(0.0), policy=EAGER)
    try:
        first = a.get()
        assert b.get() == first  # B adopts A's token
        rotated = refresh(b)  # RT1 -> RT2: saved although A's record "expires later"
        assert rotated != first
        assert stored_token(store._backend, storage_key(b.source.key)) == rotated
        later = refresh(a)  # A takes RT2's token from the store, or refreshes from RT2
        assert later.access_token != first.access_token
        assert b.get().access_token in {rotated.access_token, later.access_token}
    finally:
        a.close()
        b.close()
    assert_no_reuse(server)


@pytest.mark.parametrize("kind", ["memory", "file", "redis"])
def test_the_lease_outlives_a_token_request_longer_than_the_lease_time(
    server: AuthorizationServer, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """Case 4 of issue 12: a 1 s lease and a token request that takes 1.5 s. The holder extends
    its lease while the request runs, so the second host waits for its token instead of taking
    the lease and sending the same refresh token."""
    store: ft.Store
    if kind == "memory":
        store = ft.MemoryStore(lease_time=1.0)
    elif kind == "file":
        store = ft.FileStore(tmp_path / "tokens", lease_time=1.0)
    else:
        client: redis.Redis = request.getfixturevalue("redis_client")
        store = RedisStore(client, lease_time=1.0)
    refresh_token = first_refresh_token(server)
    policy = ft.RefreshPolicy(stale_fraction=0.5)  # the new token stays fresh for the checks
    a = ft.TokenManager(grant(server, refresh_token), store=store, policy=policy)
    b = ft.TokenManager(grant(server, refresh_token), store=store, policy=policy)
    try:
        first = a.get()
        assert b.get() == first
        server.inject(latency=1.5, times=1)
        results: dict[str, ft.Token] = {}
        threads = [
            threading.Thread(target=lambda m=m, n=n: results.update({n: refresh(m)}))
            for n, m in (("a", a), ("b", b))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
            assert not thread.is_alive()
        assert results["a"] == results["b"] != first
    finally:
        a.close()
        b.close()
    assert server.token_requests_by_grant.get("refresh_token") == 2  # the first token, one refresh
    assert_no_reuse(server)


_CHILD: dict[str, object] = {}


def _stuck() -> dict[str, object]:
    """The child's token function: says it holds the lease, then freezes (SIGSTOP) or forks a
    long-lived grandchild (which inherits every descriptor) and dies (SIGKILL)."""
    os.write(int(str(_CHILD["ready"])), b"x")
    if _CHILD["action"] == "fork-and-die":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if os.fork() == 0:
                time.sleep(10)
                os._exit(0)
        os.kill(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(30)
    return {"access_token": "never", "expires_in": 60}


def _successor() -> dict[str, object]:
    return {"access_token": "from-the-successor", "expires_in": 60}


@pytest.mark.parametrize("action", ["freeze", "fork-and-die"])
def test_a_file_store_holder_that_hangs_or_dies_after_forking_is_superseded(
    tmp_path: Path, action: str
) -> None:
    """A FileStore lease has a deadline: a holder frozen by SIGSTOP loses it when its lease runs
    out (it cannot extend it), a holder that died loses it at once, even though a child it forked
    still holds every descriptor it had."""
    directory = tmp_path / "tokens"
    ready_r, ready_w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        try:
            _CHILD.update(ready=ready_w, action=action)
            ft.TokenManager(_stuck, store=ft.FileStore(directory, lease_time=1.0)).get()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"x"  # the child holds the lease
        manager = ft.TokenManager(
            _successor,
            store=ft.FileStore(directory, lease_time=1.0),
            policy=ft.RefreshPolicy(max_wait=8.0),
        )
        assert manager.get().access_token == "from-the-successor"
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
        os.waitpid(pid, 0)
