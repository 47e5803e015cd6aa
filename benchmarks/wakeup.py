"""Waiters of a RedisStore rotation: polling vs push wake-ups, in one run on loopback.

    PYTHONPATH=src .venv/bin/python benchmarks/wakeup.py [--rotations 15] [--waiters 1,8,32]

Starts its own redis-server on a free port. Each rotation: a holder takes the lease (as another
host's fetcher would), N waiters (threads, each with its own TokenManager, as N processes would
be) ask for the token and wait, the holder "fetches" for ``--fetch`` seconds, then saves and
releases. Printed per mode and N: the time from just before the holder's save to each waiter
holding the new token (p50, p99, max over all waiters of all rotations), and the Redis commands
per rotation (INFO commandstats delta, the benchmark's own INFO and DEL left out; the scripts'
PUBLISH counted).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import redis

import freshtoken as ft
from freshtoken._stores.store import storage_key
from freshtoken.redis import RedisStore

KEY = "benchmark-wakeup"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def never() -> str:
    raise RuntimeError("a waiter fetched")


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_del")
    )


def rotation(client: redis.Redis, store: RedisStore, waiters: int, fetch: float) -> list[float]:
    key = storage_key(KEY)
    client.delete(store.prefix + key)
    backend = store._backend
    owner = backend.acquire(key, 30.0)
    assert owner is not None
    done: list[float] = []
    lock = threading.Lock()

    def wait() -> None:
        ft.TokenManager(ft.FunctionSource(never, key=KEY), store=store).get()
        with lock:
            done.append(time.monotonic())

    threads = [threading.Thread(target=wait) for _ in range(waiters)]
    for thread in threads:
        thread.start()
    time.sleep(fetch)  # the holder's token request
    issued = datetime.now(UTC)
    token = ft.Token(
        access_token="benchmark", issued_at=issued, expires_at=issued + timedelta(hours=1)
    )
    saved = time.monotonic()
    assert backend.save(key, token, ttl=60.0, owner=owner, generation=0)
    backend.release(key, owner)
    for thread in threads:
        thread.join(30)
    assert len(done) == waiters, "a waiter did not get the token"
    return [(end - saved) * 1000 for end in done]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rotations", type=int, default=15)
    parser.add_argument("--waiters", default="1,8,32")
    parser.add_argument("--fetch", type=float, default=0.25)
    options = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        print(
            f"{options.rotations} rotations per row, holder's fetch {options.fetch * 1000:.0f} ms,"
            " redis-server on loopback"
        )
        print("| mode | waiters | p50 ms | p99 ms | max ms | Redis commands per rotation |")
        print("|---|---|---|---|---|---|")
        for waiters in (int(n) for n in options.waiters.split(",")):
            for mode, pubsub in (("polling", False), ("push", True)):
                store = RedisStore(client, pubsub=pubsub, prefix=f"bench-{mode}-{waiters}:")
                rotation(client, store, waiters, options.fetch)  # warm-up (subscribes once)
                latencies: list[float] = []
                before = commands(client)
                for _ in range(options.rotations):
                    latencies += rotation(client, store, waiters, options.fetch)
                per_rotation = (commands(client) - before) / options.rotations
                latencies.sort()
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                print(
                    f"| {mode} | {waiters} | {statistics.median(latencies):.1f} | {p99:.1f} |"
                    f" {latencies[-1]:.1f} | {per_rotation:.1f} |"
                )
        client.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
