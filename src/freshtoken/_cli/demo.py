"""``freshtoken demo``: the library doing its job, on a local server, for several token lifetimes.

The local authorization server runs in a child process (so that it does not compete with the
workload for this interpreter's GIL) and issues short-lived tokens (2 s by default). One
:class:`~freshtoken.TokenManager` — one "service" — is shared by every worker, so the token
request count can be read directly against the number of lifetimes:

* a seed-style API class whose method carries ``@ft.authenticated`` (threads, httpx),
* an ``httpx.Client`` with ``freshtoken.httpx.TokenAuth`` (threads),
* ``requests.Session`` objects with ``freshtoken.requests.TokenAuth`` (threads),
* an ``httpx.AsyncClient`` with ``TokenAuth`` (asyncio tasks on a loop of their own).

A token is replaced at its stale point, ``lifetime - stale margin`` after it is received, the
stale margin being moved earlier by a random part of at most ``jitter`` of itself (on average
``jitter / 2``): one token request per ``interval = lifetime - margin * (1 + jitter / 2)``. Over
``duration`` seconds the manager sends the first token's request and then one per interval that
ends before the calls stop, ``1 + floor(duration / interval)`` — on average ``duration / interval
+ 0.5``, the figure printed as "expected". The demo passes (exit 0) when no call failed and the
count is within one of it.

``--compare-seed`` runs the blog post's pattern (:mod:`freshtoken._cli.demo_seed`) beside it, on
the same server with a client of its own, so its token requests and failed calls appear in the
same table.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from freshtoken._core.errors import ConfigurationError, FreshTokenError

from .common import EXIT_OK, EXIT_UNEXPECTED, UsageError

if TYPE_CHECKING:
    import httpx

    import freshtoken as ft
    from freshtoken.testing import AuthorizationServer

__all__ = ["DemoResult", "Tally", "expected_token_requests", "judge", "render_summary", "run"]

#: Workers per workload.
SYNC_THREADS = 2
ASYNC_TASKS = 4
SEED_THREADS = 4


class Tally:
    """Calls of one workload: count, failures by error type, latencies. Thread-safe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures = 0
        self.errors: Counter[str] = Counter()
        #: The first message of each freshtoken error type (their messages hold no secret).
        self.messages: dict[str, str] = {}

    def record(self, seconds: float, error: BaseException | None) -> None:
        with self._lock:
            self.latencies.append(seconds)
            if error is not None:
                self.failures += 1
                name = _error_name(error)
                self.errors[name] += 1
                if isinstance(error, FreshTokenError):
                    self.messages.setdefault(name, error.message)

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.latencies)

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return len(self.latencies), self.failures


def _error_name(error: BaseException) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    name = type(error).__name__
    return f"{name} (HTTP {status})" if isinstance(status, int) else name


def _swallowed_name(error: object) -> str:
    return _error_name(error) if isinstance(error, BaseException) else str(error)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def expected_token_requests(duration: float, lifetime: float, policy: ft.RefreshPolicy) -> float:
    """Token requests one manager should send, on average, while calls run for ``duration``
    seconds: the first token, then one per mean refresh interval (see the module docstring)."""
    stale_margin, _ = policy.margins(lifetime)
    interval = lifetime - stale_margin * (1 + policy.jitter / 2)
    return duration / interval + 0.5


@dataclass
class DemoResult:
    duration: float
    lifetime: float
    tallies: list[Tally]
    token_requests: int
    expected: float
    events: Counter[str]
    seed: Tally | None = None
    seed_token_requests: int = 0
    seed_swallowed: Counter[str] = field(default_factory=Counter)


def judge(result: DemoResult) -> tuple[bool, str]:
    """Whether the run shows freshtoken working, and why (the seed's figures do not count)."""
    failures = sum(t.failures for t in result.tallies)
    calls = sum(t.calls for t in result.tallies)
    if calls == 0:
        return False, "no call completed"
    if failures:
        return False, f"{failures} of {calls} calls failed"
    if abs(result.token_requests - result.expected) > 1:
        return False, (
            f"{result.token_requests} token requests, expected {result.expected:.1f} ± 1"
        )
    lifetimes = result.duration / result.lifetime
    return True, (
        f"no call failed, and {result.token_requests} token requests for "
        f"{lifetimes:.1f} token lifetimes"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _row(name: str, calls: int, failed: int, latencies: list[float]) -> str:
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    return f"{name:<42}{calls:>8}{failed:>8}{_ms(p50):>9}{_ms(p99):>9}"


def render_summary(result: DemoResult, ok: bool, verdict: str) -> str:
    lifetimes = result.duration / result.lifetime
    lines = [
        f"freshtoken demo: {result.duration:g} s of calls with tokens that live "
        f"{result.lifetime:g} s ({lifetimes:.1f} lifetimes); one TokenManager shared by all "
        "freshtoken workers",
        "",
        f"{'workload':<42}{'calls':>8}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    everything: list[float] = []
    for tally in result.tallies:
        lines.append(_row(tally.name, tally.calls, tally.failures, tally.latencies))
        everything += tally.latencies
    lines.append(
        _row(
            "freshtoken, all workers",
            sum(t.calls for t in result.tallies),
            sum(t.failures for t in result.tallies),
            everything,
        )
    )
    if result.seed is not None:
        seed = result.seed
        lines.append(_row(seed.name, seed.calls, seed.failures, seed.latencies))
    lines.append("")
    lines.append(
        f"token requests    freshtoken {result.token_requests} (expected "
        f"{result.expected:.1f} ± 1)"
        + (f"    seed pattern {result.seed_token_requests}" if result.seed is not None else "")
    )
    lines.append(
        f"manager events    {result.events.get('fetched', 0)} fetched, "
        f"{result.events.get('refreshed', 0)} refreshed, "
        f"{result.events.get('invalidated', 0)} invalidated after a 401, "
        f"{result.events.get('failed', 0)} failed"
    )
    errors = Counter[str]()
    messages: dict[str, str] = {}
    for tally in result.tallies:
        errors.update(tally.errors)
        messages = tally.messages | messages
    for name, count in errors.items():
        why = f": {messages[name]}" if name in messages else ""
        lines.append(f"freshtoken errors {count} x {name}{why}")
    if result.seed is not None:
        seed_errors = ", ".join(f"{n} x {e}" for e, n in result.seed.errors.items()) or "none"
        lines.append(f"seed errors       {seed_errors}")
        swallowed = sum(result.seed_swallowed.values())
        lines.append(f"seed swallowed    {swallowed} error(s) printed and ignored")
    lines.append(f"result            {'OK' if ok else 'FAILED'}: {verdict}")
    return "\n".join(lines)


class _Workload:
    """Runs the workers and keeps their tallies."""

    def __init__(self, stop: threading.Event, pause: float) -> None:
        self.stop = stop
        self.pause = pause
        self.threads: list[threading.Thread] = []

    def _loop(self, tally: Tally, call: Callable[[], None], cleanup: Callable[[], None]) -> None:
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                error: BaseException | None = None
                try:
                    call()
                except Exception as exc:
                    error = exc
                tally.record(time.perf_counter() - started, error)
                if self.pause:
                    self.stop.wait(self.pause)
        finally:
            cleanup()

    def threads_of(
        self,
        tally: Tally,
        count: int,
        call: Callable[[], None],
        cleanup: Callable[[], None] = lambda: None,
    ) -> None:
        for index in range(count):
            thread = threading.Thread(
                target=self._loop,
                args=(tally, call, cleanup),
                name=f"demo-{tally.name.split()[0]}-{index}",
                daemon=True,
            )
            self.threads.append(thread)

    def tasks_of(
        self,
        tally: Tally,
        count: int,
        make: Callable[[], tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]],
    ) -> None:
        async def worker(call: Callable[[], Awaitable[None]]) -> None:
            while not self.stop.is_set():
                started = time.perf_counter()
                error: BaseException | None = None
                try:
                    await call()
                except Exception as exc:
                    error = exc
                tally.record(time.perf_counter() - started, error)
                await asyncio.sleep(self.pause)

        async def main() -> None:
            call, close = make()
            try:
                await asyncio.gather(*(worker(call) for _ in range(count)))
            finally:
                await close()

        self.threads.append(
            threading.Thread(target=asyncio.run, args=(main(),), name="demo-async", daemon=True)
        )

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)


def _check_options(args: argparse.Namespace) -> None:
    for flag, value in (("--duration", args.duration), ("--lifetime", args.lifetime)):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{flag} must be a positive number of seconds")
    if not (math.isfinite(args.pause) and args.pause >= 0):
        raise UsageError("--pause must be a non-negative number of seconds")
    if args.lifetime < 0.5:
        raise UsageError("--lifetime must be at least 0.5 s (the demo's calls take milliseconds)")


def _progress(
    out: IO[str], tty: bool, elapsed: float, duration: float, figures: str, *, final: bool
) -> None:
    line = f"[{elapsed:5.1f}/{duration:g} s] {figures}"
    if tty:
        out.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
    else:
        out.write(line + "\n")
    out.flush()


def _add_freshtoken_workloads(
    work: _Workload,
    server: AuthorizationServer,
    tokens: ft.TokenManager,
    closers: list[Callable[[], None]],
) -> list[Tally]:
    import httpx

    import freshtoken as ft
    from freshtoken.httpx import TokenAuth

    url = server.resource_url

    class DemoAPI:
        """The seed's shape — a class with an authenticated method — done with freshtoken."""

        def __init__(self, manager: ft.TokenManager, http: httpx.Client) -> None:
            self.tokens = manager
            self.http = http

        @ft.authenticated
        def some_request(self, token: ft.Token) -> None:
            response = self.http.get(url, headers={"Authorization": token.authorization})
            response.raise_for_status()  # a 401 makes @ft.authenticated refresh and retry once

    plain = httpx.Client(timeout=10)
    closers.append(plain.close)
    api = DemoAPI(tokens, plain)
    decorated = Tally(f"@ft.authenticated method, {SYNC_THREADS} threads")
    work.threads_of(decorated, SYNC_THREADS, api.some_request)

    client = httpx.Client(auth=TokenAuth(tokens), timeout=10)
    closers.append(client.close)

    def httpx_call() -> None:
        client.get(url).raise_for_status()

    sync = Tally(f"httpx.Client + TokenAuth, {SYNC_THREADS} threads")
    work.threads_of(sync, SYNC_THREADS, httpx_call)
    tallies = [decorated, sync]

    try:
        import requests

        from freshtoken.requests import TokenAuth as RequestsTokenAuth
    except ImportError:  # pragma: no cover - the demo runs with the [all] extra
        requests = None  # type: ignore[assignment]
    if requests is not None:
        local = threading.local()
        sessions: list[requests.Session] = []

        def requests_call() -> None:
            session: requests.Session | None = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
                session.auth = RequestsTokenAuth(tokens)
                sessions.append(session)
            session.get(url, timeout=10).raise_for_status()

        def close_sessions() -> None:
            for session in sessions:
                session.close()

        closers.append(close_sessions)
        session_tally = Tally(f"requests.Session + TokenAuth, {SYNC_THREADS} threads")
        work.threads_of(session_tally, SYNC_THREADS, requests_call)
        tallies.append(session_tally)

    def make_async() -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
        aclient = httpx.AsyncClient(auth=TokenAuth(tokens), timeout=10)

        async def call() -> None:
            (await aclient.get(url)).raise_for_status()

        return call, aclient.aclose

    async_tally = Tally(f"httpx.AsyncClient + TokenAuth, {ASYNC_TASKS} tasks")
    work.tasks_of(async_tally, ASYNC_TASKS, make_async)
    tallies.append(async_tally)
    return tallies


def run_demo(args: argparse.Namespace, progress: IO[str], tty: bool) -> DemoResult:
    import freshtoken as ft
    from freshtoken._oauth.grants import ClientCredentials
    from freshtoken.testing import AuthorizationServer

    _check_options(args)
    events: Counter[str] = Counter()
    events_lock = threading.Lock()

    def on_event(event: ft.Event) -> None:
        with events_lock:
            events[event.kind] += 1

    stop = threading.Event()
    closers: list[Callable[[], None]] = []
    server = AuthorizationServer(token_lifetime=args.lifetime, process=True)
    with server:
        client = server.add_client()
        tokens = ft.TokenManager(
            ClientCredentials(server.token_url, client.client_id, client.client_secret),
            on_event=on_event,
        )
        closers.append(tokens.close)
        work = _Workload(stop, args.pause)
        seed_tally: Tally | None = None
        seed_swallowed: Counter[str] = Counter()
        seed_id: str | None = None
        try:
            tallies = _add_freshtoken_workloads(work, server, tokens, closers)
            tokens.prefetch()  # like the seed's __init__, but a failure raises
            if args.compare_seed:
                try:
                    from .demo_seed import SeedAPI
                except ImportError:  # pragma: no cover - the demo runs with the [all] extra
                    raise ConfigurationError(
                        "--compare-seed needs requests: pip install 'freshtoken[requests]'"
                    ) from None

                seed_client = server.add_client(auth_methods=("client_secret_post",))
                seed_id = seed_client.client_id
                seed = SeedAPI(
                    server.base_url,
                    seed_client.client_id,
                    seed_client.client_secret or "",
                    token_url=server.token_url,
                    lifetime=args.lifetime,
                    log=lambda error: seed_swallowed.update([_swallowed_name(error)]),
                )
                seed_tally = Tally(f"seed pattern (blog post), {SEED_THREADS} threads")
                work.threads_of(
                    seed_tally, SEED_THREADS, seed.someRequest, cleanup=seed.close_session
                )
            started = time.monotonic()
            deadline = started + args.duration
            work.start()
            while not stop.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
                now = time.monotonic()
                by_client = server.token_requests_by_client
                calls = sum(t.snapshot()[0] for t in tallies)
                failures = sum(t.snapshot()[1] for t in tallies)
                figures = (
                    f"calls {calls}  token requests {by_client.get(client.client_id, 0)}  "
                    f"refreshes {events.get('refreshed', 0)}  failures {failures}"
                )
                if seed_tally is not None and seed_id is not None:
                    seed_calls, seed_failures = seed_tally.snapshot()
                    figures += (
                        f"  | seed: calls {seed_calls}  token requests "
                        f"{by_client.get(seed_id, 0)}  failures {seed_failures}"
                    )
                done = now >= deadline
                _progress(
                    progress,
                    tty,
                    min(now - started, args.duration),
                    args.duration,
                    figures,
                    final=done,
                )
                if done:
                    stop.set()
        finally:
            stop.set()
            work.join()
            for close in reversed(closers):
                close()
        by_client = server.token_requests_by_client
    return DemoResult(
        duration=args.duration,
        lifetime=args.lifetime,
        tallies=tallies,
        token_requests=by_client.get(client.client_id, 0),
        expected=expected_token_requests(args.duration, args.lifetime, ft.RefreshPolicy()),
        events=events,
        seed=seed_tally,
        seed_token_requests=by_client.get(seed_id, 0) if seed_id is not None else 0,
        seed_swallowed=seed_swallowed,
    )


def run(args: argparse.Namespace) -> int:
    progress = sys.stderr
    result = run_demo(args, progress, tty=progress.isatty())
    ok, verdict = judge(result)
    print(render_summary(result, ok, verdict))
    return EXIT_OK if ok else EXIT_UNEXPECTED
