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
from tests.stores.stores_helpers import first_refresh_token, stored_token
from tests.stores.stores_redis import RedisServer

import freshtoken as ft
from freshtoken._runtime.launch import wait_for_launches
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
    deadline = time.monotonic() + 10
    while manager._fresh() is not None:
        assert time.monotonic() < deadline, "the token never turned stale"
        time.sleep(0.02)
    manager.get()  # stale: served, and a refresh starts off the caller's path
    assert wait_for_launches(10)
    for thread in threading.enumerate():
        if thread.name == "freshtoken-refresh":
            thread.join(20)
            assert not thread.is_alive(), "the refresh hangs"
    latest = manager._latest
    assert latest is not None
    return latest


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
    send the refresh token the other host holds as well. Both keep serving their token while it
    lasts and refresh through the store once it takes writes again: nothing is presented twice."""
    setup = redis_server.client()
    a_client, b_client = redis_server.client(), redis_server.client()
    refresh_token = first_refresh_token(server)
    a = ft.TokenManager(
        grant(server, refresh_token),
        store=RedisStore(a_client, lease_time=1.0),
        policy=EAGER,
    )
    b = ft.TokenManager(
        grant(server, refresh_token),
        store=RedisStore(b_client, lease_time=1.0),
        policy=EAGER,
    )
    try:
        first = a.get()
        assert b.get() == first  # B adopts A's token, refresh token included
        setup.config_set("min-replicas-to-write", 1)  # every write now fails: NOREPLICAS
        assert refresh(a).access_token == first.access_token  # still served, not refreshed
        assert refresh(b).access_token == first.access_token
        setup.config_set("min-replicas-to-write", 0)
        health_retry = time.monotonic() + 1.2  # a failed store is left alone for 1 s
        while time.monotonic() < health_retry:
            time.sleep(0.05)
        rotated = refresh(a)  # through the store: the lease, then RT1 -> RT2, saved
        assert rotated.access_token != first.access_token
        assert refresh(b).refresh_token == rotated.refresh_token or b.get() == rotated
    finally:
        setup.config_set("min-replicas-to-write", 0)
        a.close()
        b.close()
        for client in (setup, a_client, b_client):
            client.close()
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
