"""Fleets of processes and threads share one token: one token request per lifetime, 0 failed calls.

"One token request per lifetime", precisely: with the default policy a token is replaced at its
stale point (20 % of its lifetime before expiry, moved up to 25 % earlier by jitter), so over a
run of ``D`` seconds with tokens living ``L`` seconds the fleet needs between ``D / (0.8 L)`` and
``D / (0.75 L) + 1`` tokens. The tests check that the fleet asked for no more than that (±1), that
no two fetches ever overlapped anywhere in the fleet, that every request the server counted is a
fetch a worker made, and that every fetched token was used (but possibly the last, fetched as the
run ended) — i.e. no token was fetched twice over.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from tests.stores.stores_fleet import Fleet, FleetSpec, WorkerReport
from tests.stores.stores_redis import RedisServer

from freshtoken.testing import AuthorizationServer

pytestmark = pytest.mark.slow

LIFETIME = 1.5
RUN = 10 * LIFETIME


def assert_one_request_per_lifetime(
    reports: list[WorkerReport], server: AuthorizationServer, *, duration: float, lifetime: float
) -> None:
    failures = [failure for report in reports for failure in report.failures]
    assert failures == []
    assert sum(report.calls for report in reports) > 0
    fetches = sorted(fetch for report in reports for fetch in report.fetches)
    for (_, ended, _), (started, _, _) in itertools.pairwise(fetches):
        assert started >= ended, "two fetches overlapped"
    assert server.token_requests == len(fetches)
    used = set().union(*(report.used for report in reports))
    fetched = [fp for _, _, fp in fetches]
    assert used <= set(fetched)
    unused = set(fetched) - used
    assert unused <= {fetched[-1]}, "a token was fetched that nobody used"
    low = math.floor(duration / (lifetime * (1 - 0.2))) - 1
    high = math.ceil(duration / (lifetime * (1 - 0.2 * 1.25))) + 1
    assert low <= len(fetches) <= high


@pytest.fixture
def token_server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(token_lifetime=LIFETIME) as server:
        server.add_client(refresh_tokens=False)
        yield server


def spec_for(server: AuthorizationServer, **options: object) -> FleetSpec:
    client = server.client
    return FleetSpec(
        token_url=server.token_url,
        client_id=client.client_id,
        client_secret=str(client.client_secret),
        **options,  # type: ignore[arg-type]
    )


def run(fleet: Fleet, expected_reports: int) -> list[WorkerReport]:
    try:
        fleet.start()
        return fleet.reports(expected_reports)
    finally:
        fleet.kill_all()


def test_16_processes_x_8_threads_share_one_redis_token_per_lifetime(
    token_server: AuthorizationServer, redis_server: RedisServer
) -> None:
    spec = spec_for(
        token_server, store="redis", redis_port=redis_server.port, threads=8, duration=RUN
    )
    reports = run(Fleet(spec, 16), 16)
    assert_one_request_per_lifetime(reports, token_server, duration=RUN, lifetime=LIFETIME)


def test_8_processes_x_8_threads_share_one_file_token_per_lifetime(
    token_server: AuthorizationServer, tmp_path: Path
) -> None:
    spec = spec_for(
        token_server, store="file", directory=str(tmp_path / "tokens"), threads=8, duration=RUN
    )
    reports = run(Fleet(spec, 8), 8)
    assert_one_request_per_lifetime(reports, token_server, duration=RUN, lifetime=LIFETIME)


def test_a_lease_holder_killed_mid_fetch_is_replaced_within_the_lease_time(
    token_server: AuthorizationServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    lease_time = 1.0
    hang_flag = tmp_path / "hang"
    spec = spec_for(
        token_server,
        store="redis",
        redis_port=redis_server.port,
        threads=4,
        duration=4 * LIFETIME,
        lease_time=lease_time,
        hang_flag=str(hang_flag),
    )
    fleet = Fleet(spec, 6)
    try:
        fleet.start()
        hang_flag.touch()  # the next fetch, at the first token's stale point, hangs
        holder_file = Path(f"{hang_flag}.holder")
        deadline = time.monotonic() + 3 * LIFETIME
        while not holder_file.exists():
            assert time.monotonic() < deadline, "no fetch started"
            time.sleep(0.005)
        hung_at = holder_file.stat().st_mtime
        hang_flag.unlink()
        os.kill(int(holder_file.read_text()), signal.SIGKILL)
        reports = fleet.reports(5)
    finally:
        fleet.kill_all()
    assert [failure for report in reports for failure in report.failures] == []
    takeovers = sorted(start for report in reports for start, _, _ in report.fetches)
    takeover = next(start for start in takeovers if start > hung_at)
    # Another worker takes over once the lease runs out: within the lease time, plus one poll
    # interval (at most 0.2 s) and scheduling slack on a busy 2-core machine (6 processes).
    assert takeover - hung_at <= lease_time + 2.0, (hung_at, takeovers)


def test_redis_stopped_and_restarted_mid_run_fails_no_call(
    token_server: AuthorizationServer, redis_server: RedisServer
) -> None:
    spec = spec_for(
        token_server, store="redis", redis_port=redis_server.port, threads=4, duration=10.0
    )
    fleet = Fleet(spec, 6)
    try:
        fleet.start()
        time.sleep(1.5)
        redis_server.stop()
        time.sleep(3.0)
        redis_server.start()
        # After the restart (and each worker's backoff) the fleet shares through Redis again.
        shared = None
        with redis_server.client() as client:
            deadline = time.monotonic() + 5.0
            while shared is None and time.monotonic() < deadline:
                for key in client.scan_iter(match="freshtoken:v1:*"):
                    if client.type(key) == b"hash":
                        shared = client.hget(key, "f")
                time.sleep(0.05)
        reports = fleet.reports(6)
    finally:
        fleet.kill_all()
    assert [failure for report in reports for failure in report.failures] == []
    assert sum(report.events.get("store_unavailable", 0) for report in reports) > 0
    assert shared is not None, "no token was stored in Redis after its restart"
    used = set().union(*(report.used for report in reports))
    assert shared.decode() in used


def _every_value(client: redis.Redis) -> list[bytes]:
    values: list[Any] = []
    for key in client.scan_iter(match="*"):
        values.append(key)
        kind = client.type(key)
        if kind == b"hash":
            for name, value in client.hgetall(key).items():
                values += [name, value]
        elif kind == b"string":
            values.append(client.get(key) or b"")
        else:  # pragma: no cover - the store writes no other type
            values.append(client.dump(key) or b"")
    return values


@pytest.mark.parametrize("encrypted", [True, False])
def test_with_encryption_a_scan_of_redis_finds_no_token_in_the_clear(
    encrypted: bool, redis_server: RedisServer, tmp_path: Path
) -> None:
    import freshtoken as ft
    from freshtoken.redis import RedisStore

    with AuthorizationServer(token_lifetime=60) as server:
        client = server.add_client(refresh_tokens=True)
        import httpx

        with httpx.Client() as http, redis_server.client() as redis_client:

            def request() -> dict[str, object]:
                response = http.post(
                    server.token_url,
                    data={"grant_type": "client_credentials"},
                    auth=(client.client_id, str(client.client_secret)),
                )
                data: dict[str, object] = response.json()
                return data

            key = Fernet.generate_key() if encrypted else None
            store = RedisStore(redis_client, encryption_key=key)
            manager = ft.TokenManager(ft.FunctionSource(request, key="scan"), store=store)
            token = manager.get()
            assert token.refresh_token is not None
            values = b"\n".join(_every_value(redis_client))
            found = token.access_token.encode() in values or token.refresh_token.encode() in values
            assert found is not encrypted
            other = ft.TokenManager(ft.FunctionSource(request, key="scan"), store=store)
            assert other.get().access_token == token.access_token  # read back through the key
            assert server.token_requests == 1
