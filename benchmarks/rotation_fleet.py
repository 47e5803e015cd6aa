"""One rotating refresh token shared by a fleet, under faults: is a refresh token ever spent twice?

    .venv/bin/python benchmarks/rotation_fleet.py [--duration 45] [--lifetime 1.5] [--quick]

The local AuthorizationServer issues 1.5 s access tokens with *rotating* refresh tokens and reuse
detection: a refresh token presented after it was rotated revokes its whole family (every worker
is signed out). Each phase starts a fresh server, obtains one refresh token, and starts
``--processes`` worker processes (8), each with ``--threads`` threads (4) calling the server's
strict protected resource through a TokenManager(RefreshTokenGrant(that refresh token), store=...).
Worker 0 also runs 200 asyncio tasks that call ``aget()`` under ``asyncio.wait_for`` with a random
budget of 5-300 ms, so that callers are cancelled at random while refreshes are in flight.

Phases, each ``--duration`` seconds:

* ``file``   FileStore in a temporary directory, no reuse grace window.
* ``redis``  RedisStore on a redis-server started here (AOF, fsync always), no grace window.
* ``grace``  FileStore, a 2 s reuse grace window, and a lost response (the server processes the
             refresh, then drops the connection) on a refresh every few seconds.

Faults injected by this script during the ``file`` and ``redis`` phases, at fixed fractions of
the phase: SIGKILL of the process that last sent a token request (the lease holder: only a holder
sends one; it is replaced by a new worker), SIGSTOP of the next holder for two lifetimes and then
SIGCONT, store writes refused for 0.5 s (Redis: ``min-replicas-to-write 1``; FileStore: its
directory is on a 4 MB tmpfs, filled up: disk full, which needs root), a redis-server
restart (``redis`` phase), and one worker idle for
two and a half lifetimes. Every worker writes its counts to a file twice a second, so a killed
worker's calls up to its last report are counted.

Printed per phase, from the server's own counters: refresh tokens presented twice (must be 0),
families revoked (0), calls failed (0: a failure is an exception from get()/aget() or a non-200
answer, counted in every worker, fault windows included), token requests per lifetime, and calls
made. The exit status is 1 when any of the first three is not 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROCESSES = 8
THREADS = 4
TASKS = 200


@dataclass
class WorkerSpec:
    index: int
    store: str  # "file:<dir>" or "redis:<port>"
    token_url: str
    resource_url: str
    client_id: str
    client_secret: str
    refresh_token: str
    ends_at: float  # wall-clock time (one host: every process reads the same clock), set at "go"
    stats: str
    marker: str
    threads: int = THREADS
    tasks: int = 0
    idle_from: float = 0.0
    idle_until: float = 0.0
    lease_time: float = 10.0


# -- the worker process -----------------------------------------------------------------------


@dataclass
class Counts:
    calls: int = 0
    failed: int = 0
    cancelled: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def fail(self, what: str) -> None:
        self.failed += 1
        self.errors[what] = self.errors.get(what, 0) + 1


def _store(spec: WorkerSpec) -> Any:
    import freshtoken as ft

    kind, _, where = spec.store.partition(":")
    if kind == "file":
        return ft.FileStore(where, lease_time=spec.lease_time)
    import redis

    from freshtoken.redis import RedisStore

    client = redis.Redis(host="127.0.0.1", port=int(where), socket_timeout=1.0)
    return RedisStore(client, lease_time=spec.lease_time)


def _idle(spec: WorkerSpec) -> None:
    """Sleep through this worker's idle window, if it is in it."""
    if spec.idle_from and not spec.idle_until:
        spec.idle_from, spec.idle_until = json.loads(Path(f"{spec.marker}.idle").read_text())
    now = time.time()
    if spec.idle_from <= now < spec.idle_until:
        time.sleep(spec.idle_until - now)


def worker(spec: WorkerSpec) -> None:
    import httpx

    import freshtoken as ft

    def mark(request: httpx.Request) -> None:
        """Say which process sends a token request: only the lease holder does."""
        tmp = f"{spec.marker}.{os.getpid()}"
        Path(tmp).write_text(str(os.getpid()))
        os.replace(tmp, spec.marker)

    token_http = httpx.Client(event_hooks={"request": [mark]}, timeout=5.0)
    grant = ft.RefreshTokenGrant(
        spec.token_url, spec.refresh_token, spec.client_id, spec.client_secret
    )
    manager = ft.TokenManager(grant, store=_store(spec), http=token_http)
    counts = Counts()
    lock = threading.Lock()

    def report() -> None:
        with lock:
            data = json.dumps(asdict(counts))
        tmp = f"{spec.stats}.tmp"
        Path(tmp).write_text(data)
        os.replace(tmp, spec.stats)

    def call(api: httpx.Client) -> None:
        _idle(spec)
        try:
            token = manager.get()
            status = api.get(
                spec.resource_url, headers={"Authorization": token.authorization}
            ).status_code
            outcome = None if status == 200 else f"HTTP {status}"
        except ft.FreshTokenError as error:
            outcome = type(error).__name__
        except httpx.HTTPError as error:
            outcome = type(error).__name__
        record(outcome)

    def record(outcome: str | None) -> None:
        with lock:
            counts.calls += 1
            if outcome is not None:
                counts.fail(outcome)

    def thread_main() -> None:
        with httpx.Client(timeout=5.0) as api:
            while time.time() < spec.ends_at:
                call(api)
                time.sleep(0.02)

    async def task_main() -> None:
        while time.time() < spec.ends_at:
            try:
                await asyncio.wait_for(manager.aget(), random.uniform(0.005, 0.3))
                outcome: str | None = None
            except TimeoutError:
                with lock:
                    counts.cancelled += 1
                outcome = None
            except ft.FreshTokenError as error:
                outcome = type(error).__name__
            record(outcome)
            await asyncio.sleep(0.05)

    async def tasks_main() -> None:
        await asyncio.gather(*(task_main() for _ in range(spec.tasks)))
        await manager.aclose()

    report()  # ready: the parent starts the clock once every worker is
    go = Path(f"{spec.marker}.go")
    while not go.exists():
        time.sleep(0.01)
    spec.ends_at = float(go.read_text())
    threads = [threading.Thread(target=thread_main, daemon=True) for _ in range(spec.threads)]
    if spec.tasks:
        threads.append(threading.Thread(target=lambda: asyncio.run(tasks_main()), daemon=True))
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        report()
        time.sleep(0.5)
    report()
    manager.close()
    token_http.close()


# -- the parent: servers, workers, faults -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mount_tmpfs(path: Path) -> bool:
    """A 4 MB tmpfs at ``path`` (root only), so that filling it makes the store's writes fail."""
    command = ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(path)]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


class Redis:
    """A redis-server with an append-only file synced on every write, so a restart keeps data."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception), self.client() as client:
                client.ping()
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0)


@dataclass
class Phase:
    name: str
    store: str  # "file" or "redis"
    grace: float
    faults: bool
    lost_responses: bool


PHASES = (
    Phase("file", "file", 0.0, faults=True, lost_responses=False),
    Phase("redis", "redis", 0.0, faults=True, lost_responses=False),
    Phase("grace", "file", 2.0, faults=False, lost_responses=True),
)


class Fleet:
    def __init__(self, base: WorkerSpec, directory: Path) -> None:
        self.base = base
        self.directory = directory
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.spawned = 0
        self.log: list[str] = []
        self.tmpfs = False

    def spawn(self, index: int, **changes: Any) -> None:
        spec = WorkerSpec(**{**asdict(self.base), **changes, "index": index})
        spec.stats = str(self.directory / f"stats-{self.spawned}.json")
        self.spawned += 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.processes[index] = subprocess.Popen(
            [sys.executable, __file__, "--worker", self.write_spec(spec)], env=env
        )

    def write_spec(self, spec: WorkerSpec) -> str:
        """The worker's spec in a file only this user can read, its path for the command line:
        the client secret and the refresh token stay out of every process listing."""
        path = self.directory / f"spec-{self.spawned}.json"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(asdict(spec), out)
        return str(path)

    def wait_ready(self, count: int, within: float) -> None:
        deadline = time.monotonic() + within
        while len(list(self.directory.glob("stats-*.json"))) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
            time.sleep(0.05)

    def holder(self) -> subprocess.Popen[bytes] | None:
        """The worker that sent the last token request (the lease holder), if it still runs."""
        try:
            pid = int(Path(self.base.marker).read_text())
        except (OSError, ValueError):
            return None
        for process in self.processes.values():
            if process.pid == pid and process.poll() is None:
                return process
        return None

    def wait_for_holder(self, within: float) -> subprocess.Popen[bytes] | None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.base.marker)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            process = self.holder()
            if process is not None:
                return process
            time.sleep(0.01)
        return None

    def totals(self) -> Counts:
        total = Counts()
        for path in self.directory.glob("stats-*.json"):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                total.calls += data["calls"]
                total.failed += data["failed"]
                total.cancelled += data["cancelled"]
                for what, n in data["errors"].items():
                    total.errors[what] = total.errors.get(what, 0) + n
        return total


def refuse_writes(fleet: Fleet, redis_server: Redis | None, seconds: float) -> str:
    """Make every write to the store fail for ``seconds``; say how, or why it was not done."""
    if redis_server is not None:
        with redis_server.client() as client:
            client.config_set("min-replicas-to-write", 1)  # writes: NOREPLICAS; reads work
            time.sleep(seconds)
            client.config_set("min-replicas-to-write", 0)
        return f"store writes refused {seconds:g} s (min-replicas-to-write)"
    if not fleet.tmpfs:
        return "store writes not refused (FileStore needs root for its small tmpfs)"
    filler = Path(fleet.base.store.partition(":")[2]).parent / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:  # until the tmpfs is full: every write (token file, lease) gets ENOSPC
            out.write(b"\0" * 65536)
    time.sleep(seconds)
    filler.unlink()
    return f"store writes refused {seconds:g} s (disk full)"


FAULTS = ("kill", "stop", "writes", "restart", "idle")


def run_phase(
    phase: Phase,
    duration: float,
    lifetime: float,
    processes: int,
    faults: set[str],
    lease_time: float,
) -> dict[str, Any]:
    import httpx

    from freshtoken.testing import AuthorizationServer, Fault

    directory = Path(tempfile.mkdtemp(prefix=f"rotation-fleet-{phase.name}-"))
    redis_server: Redis | None = None
    try:
        with AuthorizationServer(
            token_lifetime=lifetime, refresh_reuse_grace=phase.grace
        ) as server:
            client = server.add_client(refresh_tokens=True)
            first = httpx.post(
                server.token_url,
                data={"grant_type": "client_credentials"},
                auth=(client.client_id, str(client.client_secret)),
                timeout=10,
            ).json()["refresh_token"]
            tmpfs = False
            if phase.store == "redis":
                redis_server = Redis(directory)
                redis_server.start()
                store = f"redis:{redis_server.port}"
            else:
                volume = directory / "volume"
                volume.mkdir()
                tmpfs = os.geteuid() == 0 and mount_tmpfs(volume)
                store = f"file:{volume / 'tokens'}"
            base = WorkerSpec(
                index=0, store=store, token_url=server.token_url,
                resource_url=server.resource_url, client_id=client.client_id,
                client_secret=str(client.client_secret), refresh_token=first, ends_at=0.0,
                stats="", marker=str(directory / "holder"), lease_time=lease_time,
            )  # fmt: skip
            fleet = Fleet(base, directory)
            fleet.tmpfs = tmpfs
            # Python and the libraries take seconds to start on a busy machine: the clock starts
            # once every worker is ready, so each phase runs its full duration.
            warmup = 60.0
            for index in range(processes):
                changes: dict[str, Any] = {}
                if index == 0:
                    changes["tasks"] = TASKS
                if index == processes - 1 and phase.faults and "idle" in faults:
                    changes["idle_from"] = time.time() + warmup  # moved below, once started
                fleet.spawn(index, **changes)
            fleet.wait_ready(processes, warmup)
            started = time.time()
            ends_at = started + duration
            if phase.faults and "idle" in faults:
                idle_from = started + 0.6 * duration
                window = [idle_from, idle_from + 2.5 * lifetime]
                Path(f"{base.marker}.idle").write_text(json.dumps(window))
            # Whole or not at all: a worker that read a half-written file would die at once.
            Path(f"{base.marker}.go.tmp").write_text(repr(ends_at))
            os.replace(f"{base.marker}.go.tmp", f"{base.marker}.go")

            def at(fraction: float) -> None:
                time.sleep(max(0.0, started + fraction * duration - time.time()))

            if phase.faults and "kill" in faults:
                at(0.2)
                victim = fleet.wait_for_holder(3 * lifetime)
                if victim is not None:
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    index = next(i for i, p in fleet.processes.items() if p is victim)
                    fleet.spawn(index)
                    fleet.log.append("SIGKILL holder, replaced")
            if phase.faults and "stop" in faults:
                at(0.35)
                frozen = fleet.wait_for_holder(3 * lifetime)
                if frozen is not None:
                    frozen.send_signal(signal.SIGSTOP)
                    time.sleep(2 * lifetime)
                    frozen.send_signal(signal.SIGCONT)
                    fleet.log.append(f"SIGSTOP holder {2 * lifetime:g} s, SIGCONT")
            if phase.faults and "writes" in faults:
                at(0.5)
                fleet.log.append(refuse_writes(fleet, redis_server, 0.5))
            if phase.faults and "restart" in faults and redis_server is not None:
                at(0.75)
                redis_server.stop()
                redis_server.start()
                fleet.log.append("redis-server restarted")
            if phase.faults and "idle" in faults:
                fleet.log.append(f"one worker idle {2.5 * lifetime:g} s")
            if phase.lost_responses:
                lost = 0
                while time.time() < ends_at - 2 * lifetime:
                    server.inject(Fault.lost_response(), times=1)
                    lost += 1
                    time.sleep(4 * lifetime)
                fleet.log.append(f"{lost} lost responses")
            for process in fleet.processes.values():
                try:
                    process.wait(max(1.0, ends_at - time.time() + 30))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            elapsed = time.time() - started
            totals = fleet.totals()
            return {
                "phase": phase.name,
                "reused": server.refresh_tokens_reused,
                "revoked": server.families_revoked,
                "failed": totals.failed,
                "errors": totals.errors,
                "calls": totals.calls,
                "cancelled": totals.cancelled,
                "requests": server.token_requests,
                "per_lifetime": server.token_requests / (elapsed / lifetime),
                "faults": fleet.log,
                "seconds": elapsed,
            }
    finally:
        if redis_server is not None:
            redis_server.stop()
        subprocess.run(["umount", str(directory / "volume")], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=45.0, help="seconds per phase")
    parser.add_argument("--lifetime", type=float, default=1.5, help="access-token lifetime")
    parser.add_argument("--processes", type=int, default=PROCESSES)
    parser.add_argument(
        "--lease-time", type=float, default=10.0, help="the stores' lease_time (their default)"
    )
    parser.add_argument("--quick", action="store_true", help="8 s phases, 3 processes (smoke)")
    parser.add_argument("--phases", default=",".join(p.name for p in PHASES))
    parser.add_argument("--faults", default=",".join(FAULTS), help="which faults to inject")
    args = parser.parse_args()
    if args.worker:
        worker(WorkerSpec(**json.loads(Path(args.worker).read_text())))
        return 0
    duration, processes = args.duration, args.processes
    if args.quick:
        duration, processes = 8.0, 3
    faults = set(args.faults.split(",")) - {""}
    names = set(args.phases.split(","))
    rows = [
        run_phase(phase, duration, args.lifetime, processes, faults, args.lease_time)
        for phase in PHASES
        if phase.name in names
    ]
    print(
        f"{processes} processes x {THREADS} threads (+{TASKS} cancelled-at-random tasks), "
        f"{args.lifetime:g} s tokens, {duration:g} s per phase, lease_time {args.lease_time:g} s"
    )
    header = "phase  | reused | revoked | failed | calls  | cancelled | requests/lifetime"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['phase']:<6} | {row['reused']:>6} | {row['revoked']:>7} | {row['failed']:>6} "
            f"| {row['calls']:>6} | {row['cancelled']:>9} | {row['per_lifetime']:.2f}"
        )
    for row in rows:
        print(f"{row['phase']}: faults: {'; '.join(row['faults']) or 'none'}")
        if row["errors"]:
            print(f"{row['phase']}: failures by kind: {row['errors']}")
    bad = any(row["reused"] or row["revoked"] or row["failed"] for row in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
