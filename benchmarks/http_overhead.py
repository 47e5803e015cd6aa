"""What the HTTP integrations cost per request, and how they ride a token rotation under load.

Part 1, throughput: requests per second through each library (httpx sync, httpx async, requests,
aiohttp) with freshtoken's integration, against the same library with a static ``Authorization``
header, and against the peers' auth for that library (httpx-auth ``OAuth2ClientCredentials``,
Authlib ``OAuth2Client``/``AsyncOAuth2Client``/``OAuth2Session``, requests-oauthlib
``OAuth2Session``). One client sends requests one after another over a keep-alive connection to the
protected resource of ``freshtoken.testing.AuthorizationServer`` (a strict JWT check), which runs
in a subprocess so that it does not share this process's GIL. Tokens live an hour here: this
measures the per-request cost, not refreshing. The variants are interleaved in ``--rounds`` rounds
(shuffled each round) and the median is reported, so drift hits all of them alike.

Part 2, the herd: ``--threads`` threads (sync clients) or ``--tasks`` asyncio tasks (async clients)
call the API for ``--expiries`` token lifetimes of ``--lifetime`` seconds while the token endpoint
answers after ``--token-latency`` seconds (the server's latency fault). Reported: token requests
per lifetime (each variant has its own client id, counted by the server), failed calls, and API
call latency (p50/p99/max) across the rotations. Peers are given a refresh margin equal to
freshtoken's stale margin (20 % of the lifetime); ``--peer-defaults`` keeps their defaults
(httpx-auth: 30 s, Authlib: 60 s, longer than the tokens live).

    .venv/bin/python benchmarks/http_overhead.py                     # about 4-5 minutes
    .venv/bin/python benchmarks/http_overhead.py --rounds 9 --requests 1000 --expiries 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import statistics
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# ruff: noqa: E402 - the two settings below must precede the peers' imports
# requests-oauthlib refuses http:// URLs, even to 127.0.0.1, without this switch.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
warnings.filterwarnings("ignore", message="The httpx module is deprecated")

import aiohttp
import httpx
import requests
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from httpx_auth import OAuth2ClientCredentials
from oauthlib.oauth2 import BackendApplicationClient
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth2Session as OAuthlibSession

import freshtoken as ft
from freshtoken._oauth.grants import ClientCredentials
from freshtoken.aiohttp import token_middleware
from freshtoken.httpx import TokenAuth as HttpxTokenAuth
from freshtoken.requests import TokenAuth as RequestsTokenAuth
from freshtoken.testing import AuthorizationServer, Client

SyncCall = Callable[[], int]
AsyncCall = Callable[[], Awaitable[int]]


@dataclass
class Variant:
    library: str
    name: str
    call: SyncCall | None = None
    acall: AsyncCall | None = None
    closers: list[Callable[[], Any]] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # client CPU µs per request, per round


class Bench:
    def __init__(self, server: AuthorizationServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.url = server.resource_url

    # -- helpers ------------------------------------------------------------------------------

    def client(self, lifetime: float | None = None) -> Client:
        return self.server.add_client(token_lifetime=lifetime)

    def manager(self, client: Client) -> ft.TokenManager:
        assert client.client_secret is not None
        return ft.TokenManager(
            ClientCredentials(self.server.token_url, client.client_id, client.client_secret)
        )

    def run(self, coroutine: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    # -- the variants, per library -----------------------------------------------------------

    def httpx_sync(self, name: str, lifetime: float | None, margin: float | None) -> Variant:
        client = self.client(lifetime)
        secret = client.client_secret or ""
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        variant = Variant("httpx (sync)", name)
        if name == "static header":
            token = self.server.issue_token(client_id=client.client_id, lifetime=3600)
            http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, limits=limits)
        elif name == "freshtoken":
            manager = self.manager(client)
            http = httpx.Client(auth=HttpxTokenAuth(manager), limits=limits)
            variant.closers.append(manager.close)
        elif name == "httpx-auth":
            options: dict[str, Any] = {} if margin is None else {"early_expiry": margin}
            auth = OAuth2ClientCredentials(
                self.server.token_url, client.client_id, secret, **options
            )
            http = httpx.Client(auth=auth, limits=limits)
        elif name == "Authlib":
            options = {} if margin is None else {"leeway": margin}
            http = OAuth2Client(
                client.client_id,
                secret,
                token_endpoint=self.server.token_url,
                grant_type="client_credentials",
                limits=limits,
                **options,
            )
            http.fetch_token()
        else:
            raise ValueError(name)
        variant.call = lambda: http.get(self.url).status_code
        variant.closers.append(http.close)
        return variant

    def httpx_async(self, name: str, lifetime: float | None, margin: float | None) -> Variant:
        client = self.client(lifetime)
        secret = client.client_secret or ""
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        variant = Variant("httpx (async)", name)
        if name == "static header":
            token = self.server.issue_token(client_id=client.client_id, lifetime=3600)
            http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, limits=limits)
        elif name == "freshtoken":
            manager = self.manager(client)
            http = httpx.AsyncClient(auth=HttpxTokenAuth(manager), limits=limits)
            variant.closers.append(lambda: self.run(manager.aclose()))
        elif name == "httpx-auth":
            options: dict[str, Any] = {} if margin is None else {"early_expiry": margin}
            auth = OAuth2ClientCredentials(
                self.server.token_url, client.client_id, secret, **options
            )
            http = httpx.AsyncClient(auth=auth, limits=limits)
        elif name == "Authlib":
            options = {} if margin is None else {"leeway": margin}
            http = AsyncOAuth2Client(
                client.client_id,
                secret,
                token_endpoint=self.server.token_url,
                grant_type="client_credentials",
                limits=limits,
                **options,
            )
            self.run(http.fetch_token())
        else:
            raise ValueError(name)

        async def call() -> int:
            return (await http.get(self.url)).status_code

        variant.acall = call
        variant.closers.append(lambda: self.run(http.aclose()))
        return variant

    def requests_sync(self, name: str, lifetime: float | None, margin: float | None) -> Variant:
        client = self.client(lifetime)
        secret = client.client_secret or ""
        variant = Variant("requests", name)
        session: requests.Session
        if name == "static header":
            token = self.server.issue_token(client_id=client.client_id, lifetime=3600)
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
        elif name == "freshtoken":
            manager = self.manager(client)
            session = requests.Session()
            session.auth = RequestsTokenAuth(manager)
            variant.closers.append(manager.close)
        elif name == "Authlib":
            options: dict[str, Any] = {} if margin is None else {"leeway": margin}
            authlib_session = AuthlibSession(
                client.client_id,
                secret,
                token_endpoint=self.server.token_url,
                grant_type="client_credentials",
                **options,
            )
            authlib_session.fetch_token()
            session = authlib_session
        elif name == "requests-oauthlib":
            oauthlib_session = OAuthlibSession(
                client=BackendApplicationClient(client_id=client.client_id)
            )
            oauthlib_session.fetch_token(
                token_url=self.server.token_url, client_id=client.client_id, client_secret=secret
            )
            session = oauthlib_session
        else:
            raise ValueError(name)
        session.mount("http://", HTTPAdapter(pool_maxsize=64))

        def call() -> int:
            with session.get(self.url) as response:
                return response.status_code

        variant.call = call
        variant.closers.append(session.close)
        return variant

    def aiohttp_async(self, name: str, lifetime: float | None, margin: float | None) -> Variant:
        client = self.client(lifetime)
        variant = Variant("aiohttp", name)
        connector_limit = 300

        async def open_session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=connector_limit)
            if name == "static header":
                token = self.server.issue_token(client_id=client.client_id, lifetime=3600)
                return aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {token}"}, connector=connector
                )
            if name == "static middleware":  # the least any middleware costs
                token = self.server.issue_token(client_id=client.client_id, lifetime=3600)

                async def static(
                    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
                ) -> aiohttp.ClientResponse:
                    request.headers["Authorization"] = f"Bearer {token}"
                    return await handler(request)

                return aiohttp.ClientSession(middlewares=(static,), connector=connector)
            if name == "freshtoken":
                manager = self.manager(client)
                variant.closers.append(lambda: self.run(manager.aclose()))
                return aiohttp.ClientSession(
                    middlewares=(token_middleware(manager),), connector=connector
                )
            raise ValueError(name)

        session: aiohttp.ClientSession = self.run(open_session())

        async def call() -> int:
            async with session.get(self.url) as response:
                await response.read()
                return response.status

        variant.acall = call
        variant.closers.append(lambda: self.run(session.close()))
        return variant


THROUGHPUT = {
    "httpx (sync)": ("static header", "freshtoken", "httpx-auth", "Authlib"),
    "httpx (async)": ("static header", "freshtoken", "httpx-auth", "Authlib"),
    "requests": ("static header", "freshtoken", "Authlib", "requests-oauthlib"),
    "aiohttp": ("static header", "static middleware", "freshtoken"),
}
#: The herd's "static header" rows send one long-lived token and never refresh: the latency
#: the client library itself shows under that load, for the rows after it to be read against.
HERD_THREADS = {
    "httpx (sync)": ("static header", "freshtoken", "httpx-auth"),
    "requests": ("static header", "freshtoken", "Authlib"),
}
HERD_TASKS = {
    "httpx (async)": ("static header", "freshtoken", "Authlib"),
    "aiohttp": ("static header", "freshtoken"),
}


def make(
    bench: Bench, library: str, name: str, lifetime: float | None, margin: float | None
) -> Variant:
    builders = {
        "httpx (sync)": bench.httpx_sync,
        "httpx (async)": bench.httpx_async,
        "requests": bench.requests_sync,
        "aiohttp": bench.aiohttp_async,
    }
    return builders[library](name, lifetime, margin)


def close(variant: Variant) -> None:
    for closer in reversed(variant.closers):
        closer()


# -- part 1: throughput ---------------------------------------------------------------------


def sequential(bench: Bench, variant: Variant, count: int) -> tuple[float, float]:
    """Requests per second of ``count`` sequential requests (every one must succeed), and the
    client's CPU time per request in microseconds.

    The CPU figure is ``time.thread_time()`` of the one thread that sends the requests (the
    event loop's thread for async clients): the server runs in another process, so this counts
    only what the client library and its auth cost, and other load on the machine barely moves
    it. It is the figure that shows a difference of a few percent; wall-clock rates cannot on a
    shared machine.
    """
    if variant.call is not None:
        call = variant.call
        cpu_started, started = time.thread_time(), time.perf_counter()
        for _ in range(count):
            if call() != 200:
                raise RuntimeError(f"{variant.library}/{variant.name}: a call failed")
        elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        return count / elapsed, cpu / count * 1e6
    assert variant.acall is not None
    acall = variant.acall

    async def run() -> tuple[float, float]:
        cpu_started, started = time.thread_time(), time.perf_counter()
        for _ in range(count):
            if await acall() != 200:
                raise RuntimeError(f"{variant.library}/{variant.name}: a call failed")
        elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        return count / elapsed, cpu / count * 1e6

    measured: tuple[float, float] = bench.run(run())
    return measured


def throughput(bench: Bench, rounds: int, count: int) -> None:
    variants = [
        make(bench, library, name, None, None)
        for library, names in THROUGHPUT.items()
        for name in names
    ]
    try:
        for variant in variants:
            sequential(bench, variant, max(20, count // 5))  # warm-up: connect, first token
        shuffler = random.Random(5)
        for _ in range(rounds):
            order = list(variants)
            shuffler.shuffle(order)
            for variant in order:
                rate, cpu = sequential(bench, variant, count)
                variant.rates.append(rate)
                variant.cpu.append(cpu)
    finally:
        for variant in variants:
            close(variant)

    print(
        f"\nThroughput: {count} sequential requests per variant per round, {rounds} rounds in "
        "shuffled order (one keep-alive connection; server in a subprocess). req/s: the median "
        "rate; client CPU: the median CPU time of the client thread per request; 'vs static': "
        "the median over rounds of each round's ratio to the static header of the same library "
        "(rate: + is faster; CPU: + costs more)\n"
    )
    print(
        f"| {'library':<14}| {'auth':<18}| {'req/s':>7} | {'vs static':>9} "
        f"| {'client CPU µs':>13} | {'vs static':>9} |"
    )
    print(f"|{'-' * 15}|{'-' * 19}|{'-' * 9}|{'-' * 11}|{'-' * 15}|{'-' * 11}|")
    for library in THROUGHPUT:
        rows = [variant for variant in variants if variant.library == library]
        static = rows[0]
        for variant in rows:
            rate_ratios = [
                (rate / base - 1) * 100
                for rate, base in zip(variant.rates, static.rates, strict=True)
            ]
            cpu_ratios = [
                (cpu / base - 1) * 100 for cpu, base in zip(variant.cpu, static.cpu, strict=True)
            ]
            print(
                f"| {library:<14}| {variant.name:<18}| {statistics.median(variant.rates):7.0f} "
                f"| {statistics.median(rate_ratios):+8.1f}% "
                f"| {statistics.median(variant.cpu):13.1f} "
                f"| {statistics.median(cpu_ratios):+8.1f}% |"
            )
    auth_step_cost(bench)


def auth_step_cost(bench: Bench, count: int = 20000, repeats: int = 5) -> None:
    """The auth step alone, in this process, no I/O: what each request pays for its token.

    Requests are built beforehand; only the auth step is timed (best of ``repeats``, since
    interference only ever adds time). A stand-in response answers the flow (status 200)."""
    client = bench.client()
    secret = client.client_secret or ""
    token = bench.server.issue_token(client_id=client.client_id, lifetime=3600)
    manager = ft.TokenManager(lambda: token)
    manager.prefetch()
    ok = httpx.Response(200, request=httpx.Request("GET", bench.url))

    def best(run: Callable[[], float]) -> float:
        return min(run() for _ in range(repeats))

    def httpx_cost(auth: httpx.Auth) -> float:
        requests_ = [httpx.Request("GET", bench.url) for _ in range(count)]
        started = time.perf_counter()
        for request in requests_:
            flow = auth.sync_auth_flow(request)
            next(flow)
            with contextlib.suppress(StopIteration):
                flow.send(ok)
        return (time.perf_counter() - started) / count * 1e6

    class StaticHeader(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Any:
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    peer = OAuth2ClientCredentials(bench.server.token_url, client.client_id, secret)
    with httpx.Client(auth=peer) as warm:  # fetch its token once
        warm.get(bench.url)
    costs = {
        "httpx: static header (an httpx.Auth setting it)": best(lambda: httpx_cost(StaticHeader())),
        "httpx: freshtoken TokenAuth": best(lambda: httpx_cost(HttpxTokenAuth(manager))),
        "httpx: httpx-auth OAuth2ClientCredentials": best(lambda: httpx_cost(peer)),
    }

    prepared = requests.Request("GET", bench.url).prepare()
    answer = requests.Response()
    answer.status_code = 200
    answer.request = prepared

    def requests_cost(auth: Callable[[requests.PreparedRequest], Any]) -> float:
        batch = [prepared.copy() for _ in range(count)]
        for request in batch:
            request.hooks = {"response": []}
        started = time.perf_counter()
        for request in batch:
            auth(request)
            for hook in request.hooks["response"]:
                hook(answer)
        return (time.perf_counter() - started) / count * 1e6

    def static_requests(request: requests.PreparedRequest) -> None:
        request.headers["Authorization"] = f"Bearer {token}"

    costs["requests: static header (an auth setting it)"] = best(
        lambda: requests_cost(static_requests)
    )
    costs["requests: freshtoken TokenAuth (auth + hook)"] = best(
        lambda: requests_cost(RequestsTokenAuth(manager))
    )

    class Answer:
        status = 200

    async def handler(request: aiohttp.ClientRequest) -> Any:
        return Answer()

    async def static_middleware(request: aiohttp.ClientRequest, next_: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {token}"
        return await next_(request)

    async def aiohttp_cost(middleware: Any) -> float:
        from yarl import URL

        batch = [
            aiohttp.ClientRequest("GET", URL(bench.url), loop=asyncio.get_running_loop())
            for _ in range(count)
        ]
        started = time.perf_counter()
        for request in batch:
            await middleware(request, handler)
        return (time.perf_counter() - started) / count * 1e6

    costs["aiohttp: static header (a middleware setting it)"] = min(
        bench.run(aiohttp_cost(static_middleware)) for _ in range(repeats)
    )
    costs["aiohttp: freshtoken token_middleware"] = min(
        bench.run(aiohttp_cost(token_middleware(manager))) for _ in range(repeats)
    )
    manager.close()
    print(
        f"\nThe auth step alone (no I/O; best of {repeats} x {count}; microseconds per request)\n"
    )
    print(f"| {'auth step':<50}| {'µs':>6} |")
    print(f"|{'-' * 51}|{'-' * 8}|")
    for name, cost in costs.items():
        print(f"| {name:<50}| {cost:6.1f} |")


# -- part 2: the herd -----------------------------------------------------------------------


@dataclass
class Herd:
    library: str
    name: str
    workers: str
    calls: int = 0
    failed: int = 0
    token_requests: int = 0
    lifetimes: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, outcome: int | BaseException) -> bool:
        """Count a call's outcome (a status code or the exception); True when it succeeded."""
        if outcome == 200:
            return True
        self.errors[
            type(outcome).__name__ if isinstance(outcome, BaseException) else f"HTTP {outcome}"
        ] += 1
        return False

    def row(self) -> str:
        ordered = sorted(self.latencies) or [0.0]
        p50 = ordered[len(ordered) // 2] * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        worst = ordered[-1] * 1000
        per_lifetime = self.token_requests / self.lifetimes
        return (
            f"| {self.library:<14}| {self.name:<13}| {self.workers:<11}| {self.calls:>6} "
            f"| {self.failed:>6} | {self.token_requests:>6} | {per_lifetime:>8.2f} "
            f"| {p50:>7.1f} | {p99:>7.1f} | {worst:>7.1f} |"
        )


def herd_threads(
    bench: Bench, variant: Variant, herd: Herd, threads: int, seconds: float, pace: float
) -> None:
    assert variant.call is not None
    call = variant.call
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        latencies: list[float] = []
        failed = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                outcome: int | BaseException = call()
            except Exception as error:
                outcome = error
            with lock:
                ok = herd.record(outcome)
            latencies.append(time.perf_counter() - started)
            failed += not ok
            time.sleep(pace)
        with lock:
            herd.latencies.extend(latencies)
            herd.failed += failed
            herd.calls += len(latencies)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def herd_tasks(
    bench: Bench, variant: Variant, herd: Herd, tasks: int, seconds: float, pace: float
) -> None:
    assert variant.acall is not None
    acall = variant.acall

    async def worker(deadline: float) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                outcome: int | BaseException = await acall()
            except Exception as error:
                outcome = error
            ok = herd.record(outcome)
            herd.latencies.append(time.perf_counter() - started)
            herd.calls += 1
            herd.failed += not ok
            await asyncio.sleep(pace)

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(worker(deadline) for _ in range(tasks)))

    bench.run(main())


def herds(bench: Bench, args: argparse.Namespace) -> None:
    lifetime: float = args.lifetime
    margin = None if args.peer_defaults else 0.2 * lifetime
    seconds = lifetime * args.expiries
    handle = bench.server.inject(latency=args.token_latency, target="token")
    results: list[Herd] = []
    try:
        plans = [
            (library, name, "threads") for library, names in HERD_THREADS.items() for name in names
        ]
        plans += [
            (library, name, "tasks") for library, names in HERD_TASKS.items() for name in names
        ]
        if args.only:
            plans = [plan for plan in plans if any(word in " ".join(plan) for word in args.only)]
        for library, name, kind in plans:
            variant = make(bench, library, name, lifetime, None if name == "freshtoken" else margin)
            client_id = bench.server.clients[-1].client_id
            count = args.threads if kind == "threads" else args.tasks
            herd = Herd(library, name, f"{count} {kind}", lifetimes=args.expiries)
            before = bench.server.token_requests_by_client.get(client_id, 0)
            try:
                if kind == "threads":
                    herd_threads(bench, variant, herd, count, seconds, args.thread_pace)
                else:
                    herd_tasks(bench, variant, herd, count, seconds, args.task_pace)
            finally:
                close(variant)
            herd.token_requests = bench.server.token_requests_by_client.get(client_id, 0) - before
            results.append(herd)
            print(f"  measured {library} / {name}", flush=True)
    finally:
        handle.cancel()

    margin_text = "their defaults" if margin is None else f"a {margin:.2f} s refresh margin"
    print(
        f"\nThe herd: {args.expiries} lifetimes of {lifetime:g} s, token endpoint latency "
        f"{args.token_latency * 1000:.0f} ms; threads pause {args.thread_pace * 1000:.0f} ms and "
        f"tasks {args.task_pace * 1000:.0f} ms between calls; peers with {margin_text}\n"
    )
    print(
        f"| {'library':<14}| {'auth':<13}| {'workers':<11}| {'calls':>6} | {'failed':>6} "
        f"| {'tokens':>6} | {'/lifetime':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} |"
    )
    print(
        f"|{'-' * 15}|{'-' * 14}|{'-' * 12}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 10}"
        f"|{'-' * 9}|{'-' * 9}|{'-' * 9}|"
    )
    for herd in results:
        print(herd.row())
    failures = [f"{h.library} / {h.name}: {dict(h.errors)}" for h in results if h.errors]
    if failures:
        print("\nfailed calls by cause: " + "; ".join(failures))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="throughput rounds (median)")
    parser.add_argument("--requests", type=int, default=100, help="requests per variant per round")
    parser.add_argument("--lifetime", type=float, default=2.5, help="herd token lifetime (s)")
    parser.add_argument("--expiries", type=int, default=10, help="herd token lifetimes")
    parser.add_argument("--token-latency", type=float, default=0.3, help="token endpoint delay (s)")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--thread-pace", type=float, default=0.08, help="pause between calls (s)")
    parser.add_argument("--task-pace", type=float, default=0.5, help="pause between calls (s)")
    parser.add_argument("--peer-defaults", action="store_true", help="peers keep their margins")
    parser.add_argument(
        "--only", nargs="*", help="herd: only variants whose 'library name kind' contains one"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-herd", action="store_true")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    loop = asyncio.new_event_loop()
    try:
        with AuthorizationServer(token_lifetime=3600, process=True) as server:
            bench = Bench(server, loop)
            started = time.monotonic()
            if not args.skip_throughput:
                throughput(bench, args.rounds, args.requests)
            if not args.skip_herd:
                herds(bench, args)
            print(f"\n(total {time.monotonic() - started:.0f} s)")
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


if __name__ == "__main__":
    main()
