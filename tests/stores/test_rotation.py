"""Rotation across processes and hosts: a refresh token is never lost and never sent twice.

Every test runs against the real test server, which detects reuse: a rotated-out refresh token
presented again revokes the whole family and answers ``invalid_grant``. So "the fleet still gets
tokens at the end" is the proof that no refresh token was spent twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet
from tests.stores.stores_helpers import first_refresh_token, put

import freshtoken as ft
from freshtoken._stores.shared import record_ttl
from freshtoken.redis import RedisStore
from freshtoken.testing import AuthorizationServer

#: Access-token lifetime of the rotation scenarios (real seconds: the stores expire records on
#: their own clocks, Redis on the server's, so the scenarios wait for real expiry).
LIFETIME = 1.0


@pytest.fixture
def rotating_server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(token_lifetime=LIFETIME) as server:
        server.add_client(refresh_tokens=True)
        yield server


def host(server: AuthorizationServer, refresh_token: str, store: ft.Store) -> ft.TokenManager:
    """One host of the fleet: its own grant (holding the first refresh token) and manager."""
    client = server.client
    grant = ft.RefreshTokenGrant(
        server.token_url, refresh_token, client.client_id, str(client.client_secret)
    )
    return ft.TokenManager(grant, store=store)


def wait_past_expiry(token: ft.Token, *, margin: float = 0.3) -> None:
    """Block until ``token``'s access token has expired (the stores drop expired records on
    their own real clocks; a loaded machine only makes the wait longer, never wrong)."""
    assert token.expires_at is not None
    deadline = token.expires_at.timestamp() + margin
    while (left := deadline - time.time()) > 0:
        time.sleep(min(left, 0.1))


StoreFactory = Callable[[], ft.Store]


@pytest.fixture(params=["memory", "file", "redis", "redis-encrypted"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    kind: str = request.param
    if kind == "memory":
        return ft.MemoryStore
    if kind == "file":
        return lambda: ft.FileStore(tmp_path / "tokens")
    client: redis.Redis = request.getfixturevalue("redis_client")
    key = Fernet.generate_key() if kind == "redis-encrypted" else None
    return lambda: RedisStore(client, encryption_key=key)


def test_an_idle_host_finds_the_newest_refresh_token_after_its_access_token_expired(
    rotating_server: AuthorizationServer, make_store: StoreFactory
) -> None:
    """Case 1 of issue 12: host B sleeps through two lifetimes while host A rotates RT1 -> RT2.
    The store keeps the record (refresh token included) past the access token's expiry, so B
    refreshes with RT2, never with the RT1 it remembers (which would revoke the family)."""
    refresh_token = first_refresh_token(rotating_server)
    store = make_store()
    host_a = host(rotating_server, refresh_token, store)
    host_b = host(rotating_server, refresh_token, store)
    try:
        first = host_a.get()  # RT0 -> RT1, stored
        assert host_b.get() == first  # B adopts the stored token (and RT1)
        wait_past_expiry(first)
        second = host_a.get()  # RT1 -> RT2, stored
        wait_past_expiry(second)
        third = host_b.get()  # must refresh with RT2, found in the store
        assert third.access_token != second.access_token
        assert host_a.get() == third
    finally:
        host_a.close()
        host_b.close()


def test_a_restarted_process_finds_the_refresh_token_its_predecessor_rotated(
    rotating_server: AuthorizationServer, make_store: StoreFactory
) -> None:
    """A new process configured with the first refresh token finds the rotated one in the store
    even after the last access token expired, and keeps the family alive."""
    refresh_token = first_refresh_token(rotating_server)
    store = make_store()
    before = host(rotating_server, refresh_token, store)
    try:
        last = before.get()  # RT0 -> RT1
    finally:
        before.close()
    wait_past_expiry(last)
    after = host(rotating_server, refresh_token, store)  # still configured with RT0 (spent)
    try:
        assert after.get().access_token != last.access_token
    finally:
        after.close()


def test_a_record_lives_while_its_refresh_token_may_be_valid() -> None:
    """Without a refresh token the record lives as long as the access token; with one, until it
    is replaced, or as long as the server said the refresh token lives (never shorter)."""
    wall = 1_800_000_000.0
    issued = datetime.fromtimestamp(wall, UTC)
    plain = ft.Token("a", expires_at=issued + timedelta(seconds=60), issued_at=issued)
    rotating = plain.replace(refresh_token="r")
    assert record_ttl(plain, wall=wall) == pytest.approx(60)
    assert record_ttl(rotating, wall=wall) is None
    assert record_ttl(rotating.replace(extra={"refresh_expires_in": 3600}), wall=wall) == 3600
    assert record_ttl(rotating.replace(extra={"refresh_token_expires_in": 30}), wall=wall) == 60
    assert record_ttl(rotating.replace(extra={"refresh_expires_in": 0}), wall=wall) is None
    assert record_ttl(rotating.replace(extra={"refresh_expires_in": True}), wall=wall) is None


def test_redis_keeps_a_record_with_a_refresh_token_without_an_expiry(
    redis_client: redis.Redis,
) -> None:
    issued = datetime.now(UTC)
    token = ft.Token("a", expires_at=issued + timedelta(seconds=60), refresh_token="r")
    backend = RedisStore(redis_client)._backend
    assert put(backend, "v1:k", token, ttl=None)
    assert redis_client.pttl("freshtoken:v1:k") == -1  # no expiry
    assert put(backend, "v1:k", token, ttl=50)
    assert 0 < redis_client.pttl("freshtoken:v1:k") <= 50_000
