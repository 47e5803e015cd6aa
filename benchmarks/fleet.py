"""Token requests per lifetime and failed calls for a fleet of 1-16 processes, side by side.

    .venv/bin/python benchmarks/fleet.py [--lifetime 2] [--lifetimes 3] [--threads 2] [--plot DIR]

``--plot DIR`` also writes fleet_requests.png: token requests per lifetime by process count.

Every worker process runs ``--threads`` threads that call a protected API (the real local
AuthorizationServer's strict resource endpoint, in its own process) every ``--pause`` seconds for
``--lifetimes`` token lifetimes, each with one of:

* ``freshtoken+file``   TokenManager with FileStore (one host, many processes)
* ``freshtoken+redis``  TokenManager with RedisStore (a redis-server started here)
* ``seed``              the seed article's ``myAPI`` + ``Decorators.refreshToken``, reimplemented
                        faithfully with requests (one instance per process, shared by its threads)
* ``httpx-auth``        httpx_auth.OAuth2ClientCredentials with its JsonTokenFileCache shared by
                        all processes (early_expiry set to 20 % of the lifetime, as freshtoken's
                        stale point, so that the comparison is about coordination, not margins)

A failed call is an exception or any status but 200 (the resource answers 401 to an expired
token). "requests/lifetime" is the token endpoint's count divided by the number of lifetimes the
run lasted; freshtoken replaces a token at its stale point (75-80 % of its life), so a fleet that
coordinates perfectly needs the first token and then one per 0.75-0.8 lifetimes (about 1.4 per
lifetime over 5 lifetimes), whatever its size.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTENDERS = ("freshtoken+file", "freshtoken+redis", "seed", "httpx-auth")


@dataclass
class Spec:
    contender: str
    token_url: str
    resource_url: str
    client_id: str
    client_secret: str
    lifetime: float
    duration: float
    threads: int
    pause: float
    directory: str
    redis_port: int


# -- the seed pattern, as the article writes it (requests; a fixed buffer; its bugs kept) ---------


class SeedAPI:
    """The article's ``myAPI``: the token is fetched in ``__init__`` and expires "100 s early"
    on a one-hour token, i.e. at 3500/3600 of its life; ``refreshToken`` calls
    ``getAccessToken()`` when expired but (as in the article) drops its result, so the old token
    stays in use and every later call asks for a new one."""

    def __init__(self, host: str, key: str, secret: str, lifetime: float) -> None:
        self.host = host
        self.key = key
        self.secret = secret
        self.access_token: str | None = None
        self.access_token_expiration: float | None = None
        try:
            self.access_token = self.getAccessToken()
            if self.access_token is None:
                raise Exception("Request for access token failed.")
        except Exception as e:
            print(e)
        else:
            self.access_token_expiration = time.time() + lifetime * 3500 / 3600

    def getAccessToken(self) -> str | None:
        import requests

        try:
            request = requests.post(
                self.host,
                data={"grant_type": "client_credentials"},
                auth=(self.key, self.secret),
                timeout=10,
            )
            request.raise_for_status()
        except Exception as e:
            print(e)
            return None
        else:
            token: str = request.json()["access_token"]
            return token


def refresh_token(decorated: Any) -> Any:
    """The article's ``Decorators.refreshToken``."""

    def wrapper(api: SeedAPI, *args: Any, **kwargs: Any) -> Any:
        if time.time() > (api.access_token_expiration or 0):
            api.getAccessToken()
        return decorated(api, *args, **kwargs)

    return wrapper


# -- workers ----------------------------------------------------------------------------------


def _caller(spec: Spec) -> tuple[Any, list[Any]]:
    """A function making one API call (True when it succeeded), and what to close afterwards."""
    import httpx

    if spec.contender == "seed":
        import requests

        api = SeedAPI(spec.token_url, spec.client_id, spec.client_secret, spec.lifetime)
        session = requests.Session()

        @refresh_token
        def seed_call(api: SeedAPI) -> bool:
            response = session.get(
                spec.resource_url, headers={"Authorization": f"Bearer {api.access_token}"}
            )
            return response.status_code == 200

        return (lambda: seed_call(api)), [session]
    if spec.contender == "httpx-auth":
        import httpx_auth

        httpx_auth.OAuth2.token_cache = httpx_auth.JsonTokenFileCache(
            os.path.join(spec.directory, "httpx-auth-tokens.json")
        )
        auth = httpx_auth.OAuth2ClientCredentials(
            spec.token_url,
            spec.client_id,
            spec.client_secret,
            early_expiry=spec.lifetime * 0.2,
        )
        client = httpx.Client(auth=auth, timeout=10)
        return (lambda: client.get(spec.resource_url).status_code == 200), [client]

    import freshtoken as ft

    http = httpx.Client(timeout=10)
    closers: list[Any] = [http]
    if spec.contender == "freshtoken+redis":
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from freshtoken.redis import RedisStore

        redis_client = redis.Redis(
            port=spec.redis_port, socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        closers.append(redis_client)
        store: Any = RedisStore(redis_client)
    else:
        from freshtoken._stores.filestore import FileStore

        store = FileStore(os.path.join(spec.directory, "freshtoken"))

    def request_token() -> Any:
        response = http.post(
            spec.token_url,
            data={"grant_type": "client_credentials"},
            auth=(spec.client_id, spec.client_secret),
        )
        response.raise_for_status()
        return response.json()

    manager = ft.TokenManager(ft.FunctionSource(request_token, key="bench"), store=store)
    closers.append(manager)

    def call() -> bool:
        token = manager.get()
        response = http.get(spec.resource_url, headers={"Authorization": token.authorization})
        return response.status_code == 200

    return call, closers


def worker(spec: Spec, ready: Any, results: Any) -> None:
    call, closers = _caller(spec)
    counts = {"calls": 0, "failed": 0}
    lock = threading.Lock()
    ready.wait(timeout=300)
    stop_at = time.monotonic() + spec.duration

    def loop() -> None:
        while time.monotonic() < stop_at:
            try:
                ok = call()
            except Exception:
                ok = False
            with lock:
                counts["calls"] += 1
                counts["failed"] += 0 if ok else 1
            time.sleep(spec.pause)

    threads = [threading.Thread(target=loop) for _ in range(spec.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(counts)
    for closer in closers:
        closer.close()


def run_fleet(spec: Spec, processes: int) -> dict[str, int]:
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [
        context.Process(target=worker, args=(spec, ready, results)) for _ in range(processes)
    ]
    for process in workers:
        process.start()
    ready.wait(timeout=300)
    totals = {"calls": 0, "failed": 0}
    for _ in workers:
        counts = results.get(timeout=spec.duration + 120)
        for name in totals:
            totals[name] += counts[name]
    for process in workers:
        process.join(timeout=30)
    return totals


def start_redis() -> tuple[subprocess.Popen[bytes], int]:
    import socket

    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            with redis.Redis(port=port) as client:
                client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.02)
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifetime", type=float, default=2.0, help="token lifetime, seconds")
    parser.add_argument("--lifetimes", type=float, default=3.0, help="run length in lifetimes")
    parser.add_argument("--threads", type=int, default=2, help="threads per process")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between calls")
    parser.add_argument("--processes", default="1,2,4,8,16")
    parser.add_argument("--plot", metavar="DIR", help="also write the figure (PNG) into DIR")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from freshtoken.testing import AuthorizationServer

    fleet_sizes = [int(n) for n in args.processes.split(",")]
    duration = args.lifetime * args.lifetimes
    redis_process, redis_port = start_redis()
    rows: list[tuple[str, int, float, int, int]] = []
    try:
        with AuthorizationServer(token_lifetime=args.lifetime, process=True) as server:
            client = server.add_client()
            for processes in fleet_sizes:
                for contender in CONTENDERS:
                    with tempfile.TemporaryDirectory() as directory:
                        spec = Spec(
                            contender=contender,
                            token_url=server.token_url,
                            resource_url=server.resource_url,
                            client_id=client.client_id,
                            client_secret=str(client.client_secret),
                            lifetime=args.lifetime,
                            duration=duration,
                            threads=args.threads,
                            pause=args.pause,
                            directory=directory,
                            redis_port=redis_port,
                        )
                        before = server.token_requests
                        totals = run_fleet(spec, processes)
                        requests = server.token_requests - before
                    rows.append(
                        (
                            contender,
                            processes,
                            requests / args.lifetimes,
                            totals["failed"],
                            totals["calls"],
                        )
                    )
                    print(
                        f"  {contender:<17} {processes:>2} processes: {requests} token requests, "
                        f"{totals['failed']}/{totals['calls']} calls failed",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        redis_process.terminate()
        redis_process.wait()
    print(
        f"\nlifetime {args.lifetime:g} s, {args.lifetimes:g} lifetimes, {args.threads} threads "
        f"per process, one call per thread every {args.pause:g} s\n"
    )
    header = "| processes | " + " | ".join(CONTENDERS) + " |"
    print("token requests per lifetime (failed calls / calls)\n")
    print(header)
    print("|" + "---|" * (len(CONTENDERS) + 1))
    for processes in fleet_sizes:
        cells = []
        for contender in CONTENDERS:
            _, _, per_lifetime, failed, calls = next(
                row for row in rows if row[0] == contender and row[1] == processes
            )
            cells.append(f"{per_lifetime:.1f} ({failed}/{calls})")
        print(f"| {processes} | " + " | ".join(cells) + " |")
    if args.plot:
        plot(args.plot, rows, fleet_sizes, args.lifetime)


def plot(
    directory: str, rows: list[tuple[str, int, float, int, int]], sizes: list[int], lifetime: float
) -> None:
    """Token requests per lifetime against the fleet's size, one line per contender."""
    from _plots import figure, save

    fig, axes = figure(
        f"Token requests per lifetime by fleet size (lifetime {lifetime:g} s)",
        "worker processes",
        "token requests per lifetime (log)",
    )
    for contender in CONTENDERS:
        points = sorted((row[1], row[2]) for row in rows if row[0] == contender)
        axes.plot([p for p, _ in points], [max(0.1, r) for _, r in points], "o-", label=contender)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes, [str(n) for n in sizes])
    axes.set_yscale("log")
    axes.legend(fontsize="small")
    print("wrote", save(fig, directory, "fleet_requests"))


if __name__ == "__main__":
    main()
