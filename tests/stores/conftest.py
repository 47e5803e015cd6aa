"""Fixtures for the store tests: a real redis-server on a free port, restartable mid-test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

# The helpers are imported as ``tests.stores.*`` (as tests/testing does), also by the worker
# processes the fleet tests spawn (they inherit sys.path): make the repository root importable.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.stores.stores_cluster import (  # noqa: E402
    RedisClusterServers,
    cluster_tools_missing,
)
from tests.stores.stores_redis import REDIS_SERVER, RedisServer, free_port  # noqa: E402


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server (skipped outside CI when not installed; a failure under CI)."""
    if not REDIS_SERVER.exists():
        reason = f"redis-server is not installed at {REDIS_SERVER} (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A running 3-primary Redis Cluster (skipped, with the reason, when redis-server or
    redis-cli is missing; a failure under CI). Shared by a module's tests: each uses its own
    keys."""
    reason = cluster_tools_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
