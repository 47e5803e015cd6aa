"""The hot path, side by side in one run: what a fresh token costs a caller.

    .venv/bin/python benchmarks/hot_path.py [--rounds 7] [--number 200000]

Prints ns per call for:
  reference        a method that only compares time.monotonic() with a stored deadline
  get()            TokenManager.get() on a fresh token
  aget()           await TokenManager.aget() on a fresh token, against `await` of a trivial
                   coroutine (the cost of being a coroutine at all)
  decorated call   a @tokens.authenticated function against the same function undecorated,
                   both given a token (the overhead is the difference)
Each variant runs in interleaved rounds and the median is reported, so drift hits all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import timeit
from collections.abc import Callable

import freshtoken as ft


class Reference:
    """The cheapest possible freshness check: compare the monotonic clock with a deadline."""

    def __init__(self, token: ft.Token) -> None:
        self.token = token
        self.deadline = time.monotonic() + 3600

    def get(self) -> ft.Token:
        if time.monotonic() < self.deadline:
            return self.token
        raise RuntimeError("unreachable in the benchmark")


def measure(fn: Callable[[], object], number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()

    tokens = ft.TokenManager(lambda: {"access_token": "bench-token", "expires_in": 3600})
    token = tokens.get()
    reference = Reference(token)

    def plain(token: ft.Token, x: int) -> int:
        return x

    decorated = tokens.authenticated(plain)

    async def trivial() -> ft.Token:
        return token

    async def run_async(make: Callable[[], object], number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            await make()  # type: ignore[misc]
        return (time.perf_counter() - start) / number * 1e9

    loop = asyncio.new_event_loop()
    results: dict[str, list[float]] = {
        "reference (monotonic < deadline)": [],
        "TokenManager.get()": [],
        "await trivial coroutine": [],
        "await TokenManager.aget()": [],
        "undecorated call": [],
        "@tokens.authenticated call": [],
    }
    for _ in range(args.rounds):
        results["reference (monotonic < deadline)"].append(measure(reference.get, args.number))
        results["TokenManager.get()"].append(measure(tokens.get, args.number))
        results["await trivial coroutine"].append(
            loop.run_until_complete(run_async(trivial, args.number))
        )
        results["await TokenManager.aget()"].append(
            loop.run_until_complete(run_async(tokens.aget, args.number))
        )
        results["undecorated call"].append(measure(lambda: plain(tokens.get(), 1), args.number))
        results["@tokens.authenticated call"].append(measure(lambda: decorated(1), args.number))
    loop.close()
    tokens.close()

    median = {name: statistics.median(values) for name, values in results.items()}
    width = max(map(len, median))
    print(f"{'variant':<{width}}  ns/call (median of {args.rounds} rounds x {args.number})")
    for name, value in median.items():
        print(f"{name:<{width}}  {value:8.1f}")
    ref = median["reference (monotonic < deadline)"]
    get_ratio = median["TokenManager.get()"] / ref
    aget_extra = median["await TokenManager.aget()"] - median["await trivial coroutine"]
    overhead = median["@tokens.authenticated call"] - median["undecorated call"]
    print()
    print(f"get() / reference           : {get_ratio:.2f}x   (target <= 1.5x)")
    print(f"aget() beyond a coroutine   : {aget_extra:.1f} ns")
    print(f"decorator overhead per call : {overhead:.1f} ns   (target < 500 ns)")


if __name__ == "__main__":
    main()
