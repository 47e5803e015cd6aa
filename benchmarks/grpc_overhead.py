"""What ``freshtoken.grpc.call_credentials`` costs per call, against a static metadata plugin.

    .venv/bin/python benchmarks/grpc_overhead.py [--rounds 7] [--calls 2000] [--plugin-calls 200000]

Part 1, the plugin alone: grpcio asks a metadata plugin for the call's metadata on every call.
freshtoken's plugin (a lock-free look at the manager's cached token, metadata kept per token) is
called directly, against a plugin that answers a constant ``authorization`` tuple: ns per call.

Part 2, end to end: unary calls one after another on a sync channel (local TCP credentials, as call
credentials need a secure channel) to an echo server running in a subprocess, so that it does not
share this process's GIL, with each of the two plugins: µs per call and the client's CPU µs per
call. The token comes from ``freshtoken.testing.AuthorizationServer`` and lives an hour: this
measures the fresh-token path, not refreshing. The variants alternate in ``--rounds`` rounds and
the median is reported, so drift hits both alike. Printed: each figure and freshtoken's ratio to
the static plugin.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import grpc

import freshtoken as ft
from freshtoken._oauth.grants import ClientCredentials
from freshtoken.grpc import _Plugin
from freshtoken.testing import AuthorizationServer

METHOD = "/bench.Echo/Call"


class Context(NamedTuple):
    """What grpcio hands a metadata plugin."""

    service_url: str
    method_name: str


class StaticPlugin(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    """The baseline: one constant ``authorization`` header, as a hand-written plugin would send."""

    def __init__(self, authorization: str) -> None:
        self._metadata = (("authorization", authorization),)

    def __call__(self, context: Any, callback: Callable[..., None]) -> None:
        callback(self._metadata, None)


def serve(ready: Any, stop: Any) -> None:
    """The echo server (in a subprocess): answers each request with its bytes."""
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(lambda request, _: request)}
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    ready.put(server.add_secure_port("127.0.0.1:0", credentials))
    server.start()
    stop.wait()
    server.stop(grace=None)


def plugin_ns(plugin: Callable[[Any, Any], None], calls: int) -> float:
    context = Context("https://127.0.0.1/bench.Echo", "Call")

    def callback(metadata: Any, error: Any) -> None:
        pass

    started = time.perf_counter()
    for _ in range(calls):
        plugin(context, callback)
    return (time.perf_counter() - started) / calls * 1e9


def calls_us(port: int, plugin: grpc.AuthMetadataPlugin, calls: int) -> tuple[float, float]:
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
        grpc.metadata_call_credentials(plugin),
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(50):  # connect and warm up
            call(b"x", timeout=10)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            call(b"x", timeout=10)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall / calls * 1e6, cpu / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="gRPC calls per variant per round")
    parser.add_argument("--plugin-calls", type=int, default=200_000, help="plugin calls per round")
    args = parser.parse_args()

    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Queue(), spawn.Event()
    echo = spawn.Process(target=serve, args=(ready, stop), daemon=True)
    echo.start()
    port = ready.get(timeout=60)
    with AuthorizationServer(token_lifetime=3600) as server:
        client = server.add_client()
        assert client.client_secret is not None
        grant = ClientCredentials(server.token_url, client.client_id, client.client_secret)
        tokens = ft.TokenManager(grant)
        variants: dict[str, grpc.AuthMetadataPlugin] = {
            "static plugin": StaticPlugin(tokens.get().authorization),
            "call_credentials": _Plugin(tokens),
        }
        plugin: dict[str, list[float]] = {name: [] for name in variants}
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, each in variants.items():
                plugin[name].append(plugin_ns(each, args.plugin_calls))
                call_wall, call_cpu = calls_us(port, each, args.calls)
                wall[name].append(call_wall)
                cpu[name].append(call_cpu)
        tokens.close()
        requests = server.token_requests
    stop.set()
    echo.join(30)

    print(
        f"{args.rounds} rounds; {args.plugin_calls} plugin calls and {args.calls} unary calls "
        f"per variant per round; {requests} token request(s)\n"
    )
    print(f"{'variant':<18} {'plugin ns':>10} {'call µs':>9} {'client CPU µs':>14}")
    for name in variants:
        print(
            f"{name:<18} {statistics.median(plugin[name]):10.0f} "
            f"{statistics.median(wall[name]):9.1f} {statistics.median(cpu[name]):14.1f}"
        )
    base, ours = "static plugin", "call_credentials"
    print(
        f"\nratio call_credentials / static: plugin "
        f"{statistics.median(plugin[ours]) / statistics.median(plugin[base]):.2f}, "
        f"call {statistics.median(wall[ours]) / statistics.median(wall[base]):.3f}, "
        f"client CPU {statistics.median(cpu[ours]) / statistics.median(cpu[base]):.3f}"
    )


if __name__ == "__main__":
    main()
