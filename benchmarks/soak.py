"""The long soak: calls through every integration while the server, Redis and the file store fail.

    .venv/bin/python benchmarks/soak.py --duration 600 [--lifetime 10] [--threads 4] [--tasks 4]
                                        [--processes 2] [--seed 1]

Runs :class:`tests.hardening.soak.Soak` (the same code as the CI test, longer) against a local
AuthorizationServer and a redis-server child process, and prints the report: calls, failed calls
(each with its type, message and class), token requests versus token lifetimes, and the faults
injected. Exit status 0 when no call failed. It needs /usr/bin/redis-server; without it the
RedisStore manager runs without a store and Redis restarts are left out of the schedule.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.hardening.soak import Soak  # noqa: E402
from tests.stores.stores_redis import REDIS_SERVER, RedisServer, free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--lifetime", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.02)
    args = parser.parse_args()
    redis_server = RedisServer(free_port()) if REDIS_SERVER.exists() else None
    if redis_server is not None:
        redis_server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = Soak(
                duration=args.duration,
                lifetime=args.lifetime,
                threads=args.threads,
                tasks=args.tasks,
                processes=args.processes,
                directory=Path(tmp) / "tokens",
                redis_server=redis_server,
                seed=args.seed,
                pause=args.pause,
            ).run()
    finally:
        if redis_server is not None:
            redis_server.stop()
    print("\n".join(report.lines()))
    return 0 if not report.failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
