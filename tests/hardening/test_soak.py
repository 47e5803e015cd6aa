"""The soak in CI: about a minute of calls through every integration while faults are injected.

``benchmarks/soak.py --duration 600`` runs the same thing for longer and prints the report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .soak import FAULTS, Soak

#: Seconds of calls in CI; the setup (server, redis-server, worker processes) adds a few.
CI_DURATION = float(os.environ.get("FRESHTOKEN_SOAK_SECONDS", "45"))
LIFETIME = 10.0


@pytest.fixture
def redis_server() -> Iterator[Any]:
    from tests.stores.stores_redis import REDIS_SERVER, RedisServer, free_port

    if not REDIS_SERVER.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_no_call_fails_while_a_valid_token_can_be_obtained_under_faults(
    redis_server: Any, tmp_path: Path
) -> None:
    soak = Soak(
        duration=CI_DURATION,
        lifetime=LIFETIME,
        threads=4,
        tasks=4,
        processes=2,
        directory=tmp_path / "tokens",
        redis_server=redis_server,
        seed=9,
    )
    report = soak.run()
    print("\n".join(report.lines()))
    assert report.calls > 1000
    if CI_DURATION >= 40:  # the schedule injected every kind of fault
        assert set(report.faults) == set(FAULTS), report.faults
        assert report.resource_401 >= report.faults["revoke"]  # revocations were felt
    # Every fault is shorter than the stale window and none overlaps another: a valid token was
    # always obtainable, so the target is 0 failed calls. One class is tolerated, bounded and
    # named (docs/hardening.md): right after revoke_all(), a request sent with an older token may
    # be replayed once with a newer one the same event revoked. At most one such call per worker
    # per revocation; nothing else may fail.
    other = [f for f in report.failures if f.kind != "replayed_token_also_revoked"]
    assert other == []
    workers = 4 + 4 + 2
    assert len(report.failures) <= workers * report.faults["revoke"]
    # Token requests stay proportional to lifetimes: per lifetime, two managers in this process
    # and one per worker process at most each fetch once (they share stores, so usually fewer),
    # plus one per revocation and per store outage or corruption, plus the faulted requests.
    managers = 2 + 2
    faulted = sum(report.faults.values()) * 3
    assert report.tokens_issued <= managers * (report.lifetimes + 2) + faulted


def test_a_replay_after_revoke_all_does_not_use_a_revoked_token_from_the_store(
    tmp_path: Path,
) -> None:
    """Deterministic form of the soak's only failure: two managers on one FileStore hold
    different tokens; the server revokes both; the one holding the older token must not replay
    with the store's newer (revoked) one."""
    import requests

    import freshtoken as ft
    from freshtoken._stores.filestore import FileStore
    from freshtoken.requests import TokenAuth
    from freshtoken.testing import AuthorizationServer

    with AuthorizationServer(token_lifetime=300) as server:
        client = server.add_client()
        assert client.client_secret is not None

        def manager() -> ft.TokenManager:
            source = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
            return ft.TokenManager(source, store=FileStore(tmp_path))

        with manager() as first, manager() as second, requests.Session() as session:
            older = first.get()
            assert second.get() == older  # adopted from the store
            first.invalidate(older)
            newer = first.get()  # the store now holds a newer token; `second` keeps the older
            assert newer != older and second.get() == older
            server.revoke_all()
            session.auth = TokenAuth(second)
            response = session.get(server.resource_url, timeout=10)
            assert response.status_code == 200
