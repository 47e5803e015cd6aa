"""The soak: threads, asyncio tasks and processes calling a protected API through the HTTP
integrations while the authorization server, Redis and the file store misbehave.

Shared by ``tests/hardening/test_soak.py`` (about a minute, in CI) and ``benchmarks/soak.py``
(``--duration 600``). Everything is real: the local AuthorizationServer, a redis-server child
process, a FileStore directory, httpx / requests / aiohttp clients, worker processes.

Who calls:

* manager R (a RedisStore): httpx threads and httpx.AsyncClient tasks;
* manager F (a FileStore): requests threads and aiohttp tasks;
* worker processes, each with its own manager on the same FileStore (requests).

The fault schedule (one event at a time, a quiet gap after each; every kind once per cycle, in
an order drawn from the seed):

* ``latency``: the next token requests answer 0.05 to 0.3 s late;
* ``outage``: the token endpoint answers 503 for a time *shorter than the stale window*, so a
  valid token can always be obtained: the current one is still served while it lasts;
* ``rate_limit``: 429 with ``Retry-After: 1`` (shorter than the stale window) for the next
  token request;
* ``drop``: the next token-endpoint connection is closed without an answer (one, not two: two
  dropped attempts and their backoff, 0.5 + 1 s at most, can fill a 1.5 s stale window);
* ``revoke``: every token issued so far is revoked (the API answers 401: replay with a new one);
* ``redis_restart``: redis-server is stopped for a moment and started again (empty);
* ``corrupt_file``: the FileStore's token file is overwritten with garbage.

Every failed call is kept with its error type and message, and classified; the acceptance rule
is 0 failed calls, because the schedule never makes a valid token impossible.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import requests

import freshtoken as ft
from freshtoken._stores.filestore import FileStore
from freshtoken.aiohttp import token_middleware
from freshtoken.httpx import TokenAuth as HttpxAuth
from freshtoken.requests import TokenAuth as RequestsAuth
from freshtoken.testing import AuthorizationServer

FAULTS = (
    "latency",
    "outage",
    "rate_limit",
    "drop",
    "revoke",
    "redis_restart",
    "corrupt_file",
)


@dataclass
class Failure:
    at: float  # seconds since the start
    who: str
    error: str
    kind: str = "unexplained"


@dataclass
class SoakReport:
    duration: float
    lifetime: float
    calls: int = 0
    failures: list[Failure] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    token_requests: int = 0
    tokens_issued: int = 0
    resource_401: int = 0
    store_unavailable: int = 0
    calls_by_worker: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[float, str]] = field(default_factory=list)

    @property
    def lifetimes(self) -> float:
        return self.duration / self.lifetime

    def lines(self) -> list[str]:
        kinds = Counter(f.kind for f in self.failures)
        return [
            f"duration {self.duration:.0f} s, token lifetime {self.lifetime:g} s "
            f"({self.lifetimes:.1f} lifetimes)",
            f"calls {self.calls} ({dict(sorted(self.calls_by_worker.items()))})",
            f"failed calls {len(self.failures)} {dict(kinds)}",
            f"token requests {self.token_requests} (tokens issued {self.tokens_issued}); "
            f"revocations {self.faults['revoke']}, redis restarts {self.faults['redis_restart']}",
            f"faults injected {dict(sorted(self.faults.items()))}",
            f"API 401s answered (replayed) {self.resource_401}; "
            f"store_unavailable events {self.store_unavailable}",
            "fault timeline " + ", ".join(f"{at:.1f}s {what}" for at, what in self.timeline),
        ] + [f"  failure at {f.at:.2f}s {f.who}: {f.kind}: {f.error}" for f in self.failures[:20]]


class RedisLike:
    """What the soak needs of a restartable redis-server (tests.stores.stores_redis.RedisServer)."""

    port: int

    def start(self) -> None: ...
    def stop(self) -> None: ...


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


class Soak:
    def __init__(
        self,
        *,
        duration: float,
        lifetime: float,
        threads: int,
        tasks: int,
        processes: int,
        directory: Path,
        redis_server: Any | None,
        seed: int = 0,
        pause: float = 0.02,
    ) -> None:
        self.duration = duration
        self.lifetime = lifetime
        self.threads = threads
        self.tasks = tasks
        self.processes = processes
        self.directory = directory
        self.redis_server = redis_server
        self.random = random.Random(seed)
        self.pause = pause
        self.report = SoakReport(duration=duration, lifetime=lifetime)
        self._lock = threading.Lock()
        self._start = 0.0
        self._stop = threading.Event()

    # -- bookkeeping ----------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._start

    def _call_done(self, who: str) -> None:
        with self._lock:
            self.report.calls += 1
            self.report.calls_by_worker[who.split("-", maxsplit=1)[0]] += 1

    def _failed(self, who: str, error: str) -> None:
        with self._lock:
            self.report.calls += 1
            self.report.failures.append(Failure(self._elapsed(), who, error))

    def _event(self, event: ft.Event) -> None:
        if event.kind == "store_unavailable":
            with self._lock:
                self.report.store_unavailable += 1

    # -- callers --------------------------------------------------------------------------

    def _thread_worker(self, who: str, call: Callable[[], int]) -> None:
        while not self._stop.is_set():
            try:
                status = call()
            except Exception as error:
                self._failed(who, _describe(error))
            else:
                if status == 200:
                    self._call_done(who)
                else:
                    self._failed(who, f"HTTP {status}")
            time.sleep(self.pause)

    async def _task_worker(self, who: str, call: Callable[[], Any]) -> None:
        while not self._stop.is_set():
            try:
                status = await call()
            except Exception as error:
                self._failed(who, _describe(error))
            else:
                if status == 200:
                    self._call_done(who)
                else:
                    self._failed(who, f"HTTP {status}")
            await asyncio.sleep(self.pause)

    async def _async_callers(
        self,
        server: AuthorizationServer,
        redis_tokens: ft.TokenManager,
        file_tokens: ft.TokenManager,
    ) -> None:
        url = server.resource_url
        async with (
            httpx.AsyncClient(auth=HttpxAuth(redis_tokens), timeout=30) as client,
            aiohttp.ClientSession(middlewares=(token_middleware(file_tokens),)) as session,
        ):

            async def httpx_call() -> int:
                return (await client.get(url)).status_code

            async def aiohttp_call() -> int:
                async with session.get(url) as response:
                    await response.read()
                    return response.status

            workers = [
                self._task_worker(f"httpx_async-{n}", httpx_call) for n in range(self.tasks // 2)
            ] + [
                self._task_worker(f"aiohttp-{n}", aiohttp_call)
                for n in range(self.tasks - self.tasks // 2)
            ]
            await asyncio.gather(*workers)

    # -- faults -------------------------------------------------------------------------------

    def _stale_window(self) -> float:
        """Seconds between the stale point (latest, without jitter) and the hard deadline."""
        stale, hard = ft.RefreshPolicy().margins(self.lifetime)
        return stale - hard

    def _chaos(self, server: AuthorizationServer, file_source_key: str) -> None:
        faults = [f for f in FAULTS if f != "redis_restart" or self.redis_server is not None]
        self._stop.wait(self.lifetime / 2)  # let everyone get a first token
        cycle: list[str] = []
        while not self._stop.is_set():
            if not cycle:  # every fault once per cycle, in a random order
                cycle = self.random.sample(faults, len(faults))
            fault = cycle.pop()
            # One fault at a time: hits left over from the previous one (a drop or a 429 that no
            # request met yet) must not add up with this one.
            server.clear_faults()
            self.report.faults[fault] += 1
            self.report.timeline.append((self._elapsed(), fault))
            if fault == "latency":
                server.inject(latency=self.random.uniform(0.05, 0.3), times=3)
            elif fault == "outage":
                # Shorter than the stale window: the current token outlives it.
                length = self.random.uniform(0.2, 0.6) * self._stale_window()
                server.inject(status=self.random.choice([500, 502, 503]), duration=length)
            elif fault == "rate_limit":
                # Retry-After (1 s) must be shorter than the stale window (1.5 s for 10-second
                # tokens): the retry then lands before the hard deadline. Longer, and callers get
                # TokenEndpointUnavailable at the hard deadline, as documented.
                server.inject(status=429, retry_after=1, times=1)
            elif fault == "drop":
                server.inject(drop=True, times=1)
            elif fault == "revoke":
                server.revoke_all()
            elif fault == "redis_restart":
                assert self.redis_server is not None
                self.redis_server.stop()
                self._stop.wait(self.random.uniform(0.2, 1.0))
                self.redis_server.start()
            elif fault == "corrupt_file":
                for path in self.directory.glob("*.json"):
                    path.write_bytes(b"\x00garbage" + path.read_bytes()[:20])
            # A quiet gap (3 to 5 s for 10-second tokens): one fault at a time, none inside the
            # stale window of another (an outage right after a revocation, or two outages in a
            # row, could leave no valid token).
            self._stop.wait(self.random.uniform(0.3, 0.5) * self.lifetime)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> SoakReport:
        with AuthorizationServer(token_lifetime=self.lifetime) as server:
            client = server.add_client()
            assert client.client_secret is not None
            secret = client.client_secret

            def source() -> ft.ClientCredentials:
                return ft.ClientCredentials(server.token_url, client.client_id, secret)

            redis_client: Any = None
            redis_store: Any = None
            if self.redis_server is not None:
                import redis

                from freshtoken.redis import RedisStore

                redis_client = redis.Redis(
                    host="127.0.0.1", port=self.redis_server.port, socket_timeout=1
                )
                redis_store = RedisStore(redis_client, prefix="soak:")
            file_source = source()
            redis_tokens = ft.TokenManager(source(), store=redis_store, on_event=self._event)
            file_tokens = ft.TokenManager(
                file_source, store=FileStore(self.directory), on_event=self._event
            )
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            processes = [
                context.Process(
                    target=process_worker,
                    args=(
                        server.token_url,
                        server.resource_url,
                        client.client_id,
                        secret,
                        str(self.directory),
                        self.duration,
                        self.pause,
                        f"process-{n}",
                        results,
                    ),
                )
                for n in range(self.processes)
            ]
            try:
                for process in processes:
                    process.start()
                self._start = time.monotonic()
                wall_start = time.time()
                with (
                    httpx.Client(auth=HttpxAuth(redis_tokens), timeout=30) as httpx_client,
                    requests.Session() as session,
                ):
                    session.auth = RequestsAuth(file_tokens)
                    url = server.resource_url

                    def httpx_call() -> int:
                        return httpx_client.get(url).status_code

                    def requests_call() -> int:
                        with session.get(url, timeout=30) as response:
                            return response.status_code

                    workers = [
                        threading.Thread(
                            target=self._thread_worker,
                            args=(
                                ("httpx" if n % 2 == 0 else "requests") + f"-{n}",
                                httpx_call if n % 2 == 0 else requests_call,
                            ),
                        )
                        for n in range(self.threads)
                    ]
                    workers.append(
                        threading.Thread(
                            target=lambda: asyncio.run(
                                self._async_callers(server, redis_tokens, file_tokens)
                            )
                        )
                    )
                    chaos = threading.Thread(target=self._chaos, args=(server, file_source.key))
                    for worker in [*workers, chaos]:
                        worker.start()
                    self._stop.wait(self.duration)
                    self._stop.set()
                    for worker in [*workers, chaos]:
                        worker.join(60)
                for _ in processes:
                    who, calls, failures = results.get(timeout=120)
                    with self._lock:
                        self.report.calls += calls + len(failures)
                        self.report.calls_by_worker["process"] += calls
                        self.report.failures.extend(
                            Failure(wall - wall_start, who, e) for wall, e in failures
                        )
                for process in processes:
                    process.join(60)
            finally:
                self._stop.set()
                for process in processes:
                    if process.is_alive():
                        process.terminate()
                        process.join(10)
                results.close()
                results.join_thread()
                redis_tokens.close()
                file_tokens.close()
                if redis_client is not None:
                    redis_client.close()
            counters = server.counters
            self.report.token_requests = counters.token_requests
            self.report.tokens_issued = counters.tokens_issued
            self.report.resource_401 = sum(counters.unauthorized.values())
        for failure in self.report.failures:
            failure.kind = classify(failure, self.report.timeline, self.lifetime)
        return self.report


def classify(failure: Failure, timeline: list[tuple[float, str]], lifetime: float) -> str:
    """Name what went wrong, from the error the caller saw and the fault schedule."""
    text = failure.error
    revoked = any(what == "revoke" and 0 <= failure.at - at <= lifetime for at, what in timeline)
    if text.startswith("HTTP 401") and revoked:
        # By design (docs/hardening.md): a request sent with an older token just before a refresh,
        # refused after revoke_all(), is replayed once with the newer token, revoked by the same
        # event; the second 401 is returned (and that token invalidated too).
        return "replayed_token_also_revoked"
    if text.startswith("HTTP 401"):
        return "api_401_after_replay"
    refused = any(
        what in ("rate_limit", "outage") and 0 <= failure.at - at <= lifetime
        for at, what in timeline
    )
    if "TokenEndpointUnavailable" in text and refused:
        # The endpoint refused past the current token's hard deadline (a Retry-After or an
        # outage longer than the stale window): documented behaviour, but the schedule is meant
        # never to cause it.
        return "endpoint_down_past_hard_deadline"
    if "TokenEndpointUnavailable" in text:
        return "token_endpoint_unavailable"
    if "OAuthError" in text or "TokenResponseError" in text:
        return "token_refused"
    return "unexplained"


def process_worker(
    token_url: str,
    resource_url: str,
    client_id: str,
    secret: str,
    directory: str,
    duration: float,
    pause: float,
    who: str,
    results: Any,
) -> None:
    """A separate process sharing the FileStore: calls the API through requests' TokenAuth."""
    start = time.monotonic()
    calls = 0
    failures: list[tuple[float, str]] = []  # (wall-clock time, error): the parent aligns them
    source = ft.ClientCredentials(token_url, client_id, secret)
    with (
        ft.TokenManager(source, store=FileStore(directory)) as tokens,
        requests.Session() as session,
    ):
        session.auth = RequestsAuth(tokens)
        while time.monotonic() - start < duration:
            try:
                with session.get(resource_url, timeout=30) as response:
                    status = response.status_code
            except Exception as error:
                failures.append((time.time(), _describe(error)))
            else:
                if status == 200:
                    calls += 1
                else:
                    failures.append((time.time(), f"HTTP {status}"))
            time.sleep(pause)
    results.put((who, calls, failures))
