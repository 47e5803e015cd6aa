"""What starting a refresh thread costs the caller that starts it, side by side in one run.

    .venv/bin/python benchmarks/thread_start.py [--starts 60] [--work-ms 10]

The caller that finds a token stale starts the refresh in a thread of its own and goes on with
the still-valid token. ``threading.Thread.start()`` returns only once the new thread has begun
to run, and a new thread with work to do keeps the GIL for up to the interpreter's switch
interval (5 ms by default) before the caller gets it back. freshtoken's ``_runtime.launch.launch()``
hands ``start()`` to a short-lived low-level thread instead. Each start here launches a thread
that spins for ``--work-ms`` milliseconds (a refresh building and sending its request); the
time the *caller* spends in the start call is reported (median and max), the two ways
interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from freshtoken._runtime.launch import launch, wait_for_launches


def busy(seconds: float) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=60, help="starts per way")
    parser.add_argument("--work-ms", type=float, default=10.0, help="work of each new thread")
    args = parser.parse_args()
    work = args.work_ms / 1000
    waits: dict[str, list[float]] = {"Thread.start()": [], "launch()": []}
    for _ in range(args.starts):
        for way, times in waits.items():
            thread = threading.Thread(target=busy, args=(work,), daemon=True)
            started = time.perf_counter()
            if way == "launch()":
                launch(thread, lambda error: None)
            else:
                thread.start()
            times.append(time.perf_counter() - started)
            wait_for_launches()
            thread.join()
    print(
        f"switch interval {sys.getswitchinterval() * 1000:.1f} ms; {args.starts} starts each; "
        f"each new thread works {args.work_ms:g} ms\n"
    )
    print(f"{'way':<16} {'median ms':>10} {'max ms':>8}")
    for way, times in waits.items():
        print(f"{way:<16} {statistics.median(times) * 1000:10.2f} {max(times) * 1000:8.2f}")


if __name__ == "__main__":
    main()
