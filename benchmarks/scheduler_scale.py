"""How background refresh scales: 10,000 managers with ``background=True`` in one process.

Prints, in one run:

* the threads the process has (one scheduler thread, whatever the number of managers);
* memory per manager (tracemalloc), with and without ``background=True``, and the scheduler's
  own share (its heap entry, weak reference and registry slot);
* the CPU the scheduler thread uses while idle (nothing due for 45 minutes) over a few seconds,
  read from /proc/self/task/<tid>/stat, and the whole process's CPU over the same time;
* the same under load: 10,000 managers with 10-second tokens refreshing all the time (about
  1,250 refreshes a second), over two token lifetimes: refreshes done, tokens that became
  unusable before their refresh ("fetched" again: the scheduler fell behind), CPU of the
  scheduler thread and of the workers.

    .venv/bin/python benchmarks/scheduler_scale.py [--managers 10000] [--seconds 5]

Token sources are in-process callables (no HTTP), so the figures are the library's own cost.
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import freshtoken as ft
from freshtoken._runtime.scheduler import SCHEDULER

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu(names_prefix: str) -> float | None:
    """CPU seconds (user + system) used so far by this process's threads named ``prefix*``."""
    total = 0.0
    found = False
    for thread in threading.enumerate():
        if not thread.name.startswith(names_prefix) or thread.native_id is None:
            continue
        stat = Path(f"/proc/self/task/{thread.native_id}/stat")
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found = True
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)
    return total if found else None


def token_callable(lifetime: float) -> ft.FunctionSource:
    counter = iter(range(1, 1 << 62))

    def fetch() -> dict[str, object]:
        return {"access_token": f"t{next(counter)}", "expires_in": lifetime}

    return ft.FunctionSource(fetch, key="bench")


def memory_per_manager(count: int, background: bool) -> tuple[float, float, list[ft.TokenManager]]:
    """(bytes per manager in total, bytes per manager allocated by the scheduler, managers)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    managers = [ft.TokenManager(token_callable(3600), background=background) for _ in range(count)]
    for manager in managers:
        manager.prefetch()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "filename")
    total = sum(stat.size_diff for stat in stats)
    scheduler = sum(
        stat.size_diff
        for stat in stats
        if stat.traceback[0].filename.endswith(os.path.join("_runtime", "scheduler.py"))
    )
    return total / count, scheduler / count, managers


def idle_cpu(seconds: float) -> tuple[float | None, float]:
    start_thread = thread_cpu("freshtoken-scheduler")
    start_process = time.process_time()
    threading.Event().wait(seconds)
    end_thread = thread_cpu("freshtoken-scheduler")
    used_process = time.process_time() - start_process
    if start_thread is None or end_thread is None:
        return None, used_process
    return end_thread - start_thread, used_process


def under_load(count: int, seconds: float, lifetime: float) -> None:
    kinds: Counter[str] = Counter()
    lock = threading.Lock()

    def on_event(event: ft.Event) -> None:
        with lock:
            kinds[event.kind] += 1

    managers = [
        ft.TokenManager(token_callable(lifetime), background=True, on_event=on_event)
        for _ in range(count)
    ]
    for manager in managers:
        manager.prefetch()
    first_fetches = kinds["fetched"]
    with lock:
        kinds.clear()
    # measure over two lifetimes from now: every manager refreshes at least once (its token
    # turns stale after 75 to 80 % of its life), most twice
    window = max(seconds, 2 * lifetime)
    sched0 = thread_cpu("freshtoken-scheduler") or 0.0
    workers0 = thread_cpu("freshtoken-refresh-worker") or 0.0
    process0 = time.process_time()
    threading.Event().wait(window)
    sched = (thread_cpu("freshtoken-scheduler") or 0.0) - sched0
    workers = (thread_cpu("freshtoken-refresh-worker") or 0.0) - workers0
    process = time.process_time() - process0
    with lock:
        seen = dict(kinds)
    for manager in managers:
        manager.close()
    seconds = window
    print(f"  managers: {count}, token lifetime {lifetime:.0f} s, measured over {seconds:.1f} s")
    print(f"  initial fetches: {first_fetches}")
    print(
        f"  refreshes done: {seen.get('refreshed', 0)} ({seen.get('refreshed', 0) / seconds:.0f}/s)"
    )
    print(f"  tokens that expired before their refresh (fetched again): {seen.get('fetched', 0)}")
    print(f"  failed: {seen.get('failed', 0)}, served_stale: {seen.get('served_stale', 0)}")
    print(
        f"  scheduler thread CPU: {sched:.2f} s; worker threads CPU: {workers:.2f} s; "
        f"process CPU: {process:.2f} s (of {seconds:.1f} s wall)"
    )
    print(f"  worker threads alive: {SCHEDULER.worker_threads} (limit 4)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--managers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--load-lifetime", type=float, default=10.0)
    args = parser.parse_args()
    count = args.managers

    threads_before = threading.active_count()
    plain, _, plain_managers = memory_per_manager(count, background=False)
    for manager in plain_managers:
        manager.close()
    del plain_managers
    per_manager, scheduler_share, managers = memory_per_manager(count, background=True)
    names = Counter(
        "freshtoken-refresh-worker" if t.name.startswith("freshtoken-refresh-worker") else t.name
        for t in threading.enumerate()
    )
    print(f"== {count} managers with background=True, 1-hour tokens, idle ==")
    print(
        f"  threads: {threading.active_count()} (before the managers: {threads_before}); "
        f"by name: {dict(names)}"
    )
    print(f"  scheduled wake-ups: {len(SCHEDULER)}")
    print(f"  memory per manager, background=True : {per_manager:,.0f} B")
    print(f"  memory per manager, background=False: {plain:,.0f} B")
    print(
        f"  of which the scheduler's own (heap entry, weakref, registry): {scheduler_share:,.0f} B"
    )
    thread_seconds, process_seconds = idle_cpu(args.seconds)
    if thread_seconds is None:
        print("  scheduler thread CPU while idle: unavailable (needs /proc)")
    else:
        print(
            f"  scheduler thread CPU while idle over {args.seconds:.1f} s: {thread_seconds:.3f} s "
            f"(clock tick {1 / TICKS:.3f} s)"
        )
    print(f"  process CPU over the same {args.seconds:.1f} s: {process_seconds:.3f} s")
    for manager in managers:
        manager.close()
    del managers
    gc.collect()

    print(f"== {count} managers with background=True under load ==")
    under_load(count, args.seconds, args.load_lifetime)


if __name__ == "__main__":
    main()
