"""A fleet of worker processes sharing one token through a store, for the multi-process tests.

Each worker (started with the ``spawn`` method: forking a process that runs threads is unsafe)
runs a TokenManager over a FunctionSource that requests tokens from the real local
AuthorizationServer with httpx, and calls ``get()`` from several threads until the run ends. It
reports every call that failed, every token it used, and every fetch its source made (start and
end on the wall clock), so the test can check that fetches never overlapped across the fleet and
that each fetched token was used.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import freshtoken as ft


@dataclass
class FleetSpec:
    token_url: str
    client_id: str
    client_secret: str
    store: str  # "redis" or "file"
    threads: int
    duration: float
    redis_port: int = 0
    directory: str = ""
    encryption_key: str | None = None
    lease_time: float = 10.0
    pause: float = 0.02
    hang_flag: str = ""  # while this file exists, a fetch announces itself and hangs


@dataclass
class WorkerReport:
    pid: int
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    fetches: list[tuple[float, float, str]] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)


def fingerprint(access_token: str) -> str:
    return hashlib.sha256(access_token.encode()).hexdigest()[:8]


def _store(spec: FleetSpec) -> tuple[Any, Any]:
    if spec.store == "redis":
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from freshtoken.redis import RedisStore

        # Fail fast when Redis is down (redis-py otherwise retries for seconds), as docs/stores.md
        # recommends: the manager then fetches locally at once.
        client = redis.Redis(
            host="127.0.0.1",
            port=spec.redis_port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        store = RedisStore(client, encryption_key=spec.encryption_key, lease_time=spec.lease_time)
        return store, client
    from freshtoken._stores.filestore import FileStore

    return FileStore(spec.directory, lease_time=spec.lease_time), None


def worker(spec: FleetSpec, ready: Any, results: Any) -> None:
    report = WorkerReport(pid=os.getpid())
    try:
        _work(spec, ready, results, report)
    except BaseException as error:
        report.failures.append(f"worker crashed: {type(error).__name__}: {error}")
        results.put(report)
        raise


def _work(spec: FleetSpec, ready: Any, results: Any, report: WorkerReport) -> None:
    lock = threading.Lock()
    http = httpx.Client(timeout=10)
    store, client = _store(spec)
    events: Counter[str] = Counter()

    def request_token() -> dict[str, object]:
        started = time.time()
        if spec.hang_flag and os.path.exists(spec.hang_flag):
            # Written whole, then renamed into place: the parent never reads an empty file.
            written = Path(f"{spec.hang_flag}.holder.{os.getpid()}")
            written.write_text(str(os.getpid()))
            os.replace(written, f"{spec.hang_flag}.holder")
            time.sleep(60)  # killed here by the test
        response = http.post(
            spec.token_url,
            data={"grant_type": "client_credentials"},
            auth=(spec.client_id, spec.client_secret),
        )
        response.raise_for_status()
        data: dict[str, object] = response.json()
        with lock:
            report.fetches.append((started, time.time(), fingerprint(str(data["access_token"]))))
        return data

    def on_event(event: ft.Event) -> None:
        with lock:
            events[event.kind] += 1

    manager = ft.TokenManager(
        ft.FunctionSource(request_token, key="fleet-test"), store=store, on_event=on_event
    )
    ready.wait(timeout=180)
    stop_at = time.monotonic() + spec.duration

    def call_loop() -> None:
        while time.monotonic() < stop_at:
            try:
                token = manager.get()
            except Exception as error:
                with lock:
                    report.failures.append(f"{type(error).__name__}: {error}")
            else:
                with lock:
                    report.calls += 1
                    report.used.add(token.fingerprint)
            time.sleep(spec.pause)

    threads = [threading.Thread(target=call_loop) for _ in range(spec.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with lock:
        report.events = dict(events)
        results.put(report)
    manager.close()
    http.close()
    if client is not None:
        client.close()


class Fleet:
    """Starts ``processes`` workers, releases them together, and collects their reports."""

    def __init__(self, spec: FleetSpec, processes: int) -> None:
        self.spec = spec
        context = multiprocessing.get_context("spawn")
        self._ready = context.Barrier(processes + 1)
        self._results = context.Queue()
        self.processes = [
            context.Process(target=worker, args=(spec, self._ready, self._results))
            for _ in range(processes)
        ]
        self.started_at = 0.0

    def start(self) -> None:
        for process in self.processes:
            process.start()
        self._ready.wait(timeout=180)
        self.started_at = time.time()

    def reports(self, expected: int) -> list[WorkerReport]:
        reports = [self._results.get(timeout=self.spec.duration + 60) for _ in range(expected)]
        for process in self.processes:
            process.join(timeout=30)
        self._results.close()
        self._results.join_thread()
        return reports

    def kill_all(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join(timeout=10)
