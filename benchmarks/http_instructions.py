"""What the HTTP integrations cost per request, counted in CPU instructions instead of seconds.

    .venv/bin/python benchmarks/http_instructions.py [--requests 200] [--only httpx requests]

The wall-clock table of ``http_overhead.py`` cannot tell 1 % from 5 % on a shared machine: round to
round, the same variant moves by more than that. This script counts instructions, which do not
depend on what else the machine is doing. Each variant of ``http_overhead.py`` (the same library
with a static ``Authorization`` header, with freshtoken, and with the peers' auth) runs in its own
Python process under ``valgrind --tool=callgrind`` with counting switched off; the process starts
the test server (in a subprocess of its own, which valgrind does not follow), sends 30 warm-up
requests over one keep-alive connection (the token is fetched then), switches counting on with
``callgrind_control``, sends ``--requests`` sequential requests, and switches it off. Reported:
instructions per request, and the difference from the static header of the same library.

A client whose CPU is the limit serves requests at a rate inversely proportional to its cost per
request, so "+1.5 % instructions" means "1.5 % fewer requests per second" for a client that is not
waiting on the network. Needs ``valgrind`` (Debian: ``apt-get install valgrind``); about 5-8 min.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARM_UP = 30


def child(library: str, name: str, requests: int) -> None:
    """Run inside valgrind: build one variant, warm it up, count ``requests`` requests."""
    sys.path.insert(0, str(HERE))
    import http_overhead as bench_module

    from freshtoken.testing import AuthorizationServer

    def counting(on: bool) -> None:
        subprocess.run(
            ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
            check=True,
            capture_output=True,
        )

    loop = asyncio.new_event_loop()
    try:
        with AuthorizationServer(token_lifetime=3600, process=True) as server:
            bench = bench_module.Bench(server, loop)
            variant = bench_module.make(bench, library, name, None, None)
            try:
                bench_module.sequential(bench, variant, WARM_UP)
                counting(True)
                bench_module.sequential(bench, variant, requests)
                counting(False)
            finally:
                bench_module.close(variant)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def count(library: str, name: str, requests: int) -> int:
    """Instructions the client executed for ``requests`` requests of one variant."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={folder}/callgrind.out",
            sys.executable,
            "-W",
            "ignore",
            __file__,
            "--child",
            library,
            name,
            "--requests",
            str(requests),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    collected = re.findall(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not collected:
        raise RuntimeError(f"{library} / {name} failed:\n{done.stderr[-2000:]}")
    return int(collected[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="counted requests per variant")
    parser.add_argument("--only", nargs="*", help="only libraries whose name contains one")
    parser.add_argument("--child", nargs=2, metavar=("LIBRARY", "AUTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.requests)
        return

    sys.path.insert(0, str(HERE))
    from http_overhead import THROUGHPUT

    print(
        f"Instructions per request ({args.requests} sequential requests over one keep-alive "
        "connection, counted by callgrind after a warm-up), against the static header of the "
        "same library\n"
    )
    print(f"| {'library':<14}| {'auth':<18}| {'instructions':>12} | {'vs static':>9} |")
    print(f"|{'-' * 15}|{'-' * 19}|{'-' * 14}|{'-' * 11}|")
    for library, names in THROUGHPUT.items():
        if args.only and not any(word in library for word in args.only):
            continue
        static: float | None = None
        for name in names:
            per_request = count(library, name, args.requests) / args.requests
            static = per_request if static is None else static
            print(
                f"| {library:<14}| {name:<18}| {per_request:12,.0f} "
                f"| {(per_request / static - 1) * 100:+8.2f}% |",
                flush=True,
            )


if __name__ == "__main__":
    main()
