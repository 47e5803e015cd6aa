"""A real 3-primary Redis Cluster of redis-server child processes, for the store tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import redis
import redis.cluster
from tests.stores.stores_redis import REDIS_SERVER, free_port, start_server


def cluster_tools_missing() -> str | None:
    """Why a cluster cannot be started here, or ``None``."""
    if not REDIS_SERVER.exists():
        return f"redis-server is not installed at {REDIS_SERVER} (apt-get install redis-server)"
    if shutil.which("redis-cli") is None:
        return "redis-cli is not installed (apt-get install redis-tools): no cluster to create"
    return None


class RedisClusterServers:
    """Three redis-server processes in cluster mode on free ports (each with its cluster bus on
    another free port), joined by ``redis-cli --cluster create`` with all 16384 slots assigned."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports = [free_port() for _ in range(3)]
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for port in self.ports:
            node_dir = self.directory / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            self._processes.append(
                start_server(
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--dir",
                    str(node_dir),
                )
            )
        for port in self.ports:
            self._until(lambda port=port: self._node(port).ping(), f"node {port} to start")
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{port}" for port in self.ports]
            + ["--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        for port in self.ports:
            self._until(
                lambda port=port: self._node(port).cluster("info")["cluster_state"] == "ok",
                f"node {port} to see the cluster",
            )

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)

    @staticmethod
    def _until(check: object, what: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(redis.exceptions.RedisError):
                if check():  # type: ignore[operator]
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (for commands that go to one node: PUBSUB NUMSUB)."""
        return self._node(port)

    def client(self, **options: object) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster(
            host="127.0.0.1",
            port=self.ports[0],
            socket_timeout=1,
            **options,  # type: ignore[arg-type]
        )

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.wait(timeout=10)
        self._processes = []
