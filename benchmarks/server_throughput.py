"""Throughput of the freshtoken.testing server: token endpoint and protected resource.

The server runs in a subprocess (``AuthorizationServer(process=True)``) so that it has its own GIL;
this process is the load generator: 32 keep-alive connections on one asyncio loop, each sending one
request at a time (no pipelining) and reading the whole response. The default ``raw`` generator
writes pre-built request bytes, so that it is cheap enough to saturate the server; ``aiohttp`` and
``httpx`` (``httpx.AsyncClient``) show what real client libraries achieve from one process. (httpx's
async pool degrades with many concurrent connections, encode/httpx#3215: its figure measures httpx.)

    .venv/bin/python benchmarks/server_throughput.py [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from dataclasses import dataclass
from urllib.parse import quote_plus

import aiohttp
import httpx

from freshtoken.testing import AuthorizationServer


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    def report(self) -> str:
        ordered = sorted(self.latencies) or [0.0]

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        return (
            f"{self.name:<28} {self.requests / self.seconds:>9.0f} req/s   "
            f"p50 {pct(0.50):6.2f} ms  p99 {pct(0.99):6.2f} ms   "
            f"({self.requests} requests, {self.errors} errors, {self.seconds:.1f} s)"
        )


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _raw_worker(
    port: int, request: bytes, deadline: float, warmup_end: float, result: Result
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (now := time.perf_counter()) < deadline:
            writer.write(request)
            status = await _read_response(reader)
            if now >= warmup_end:
                result.latencies.append(time.perf_counter() - now)
                result.requests += 1
                result.errors += status != 200
    finally:
        writer.close()
        await writer.wait_closed()


async def _httpx_worker(
    client: httpx.AsyncClient,
    build: tuple[str, str, dict[str, str], bytes],
    deadline: float,
    warmup_end: float,
    result: Result,
) -> None:
    method, url, headers, body = build
    while (now := time.perf_counter()) < deadline:
        response = await client.request(method, url, headers=headers, content=body)
        if now >= warmup_end:
            result.latencies.append(time.perf_counter() - now)
            result.requests += 1
            result.errors += response.status_code != 200


async def _aiohttp_worker(
    session: aiohttp.ClientSession,
    build: tuple[str, str, dict[str, str], bytes],
    deadline: float,
    warmup_end: float,
    result: Result,
) -> None:
    method, url, headers, body = build
    while (now := time.perf_counter()) < deadline:
        async with session.request(method, url, headers=headers, data=body) as response:
            await response.read()
        if now >= warmup_end:
            result.latencies.append(time.perf_counter() - now)
            result.requests += 1
            result.errors += response.status != 200


async def run(
    name: str,
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    connections: int,
    seconds: float,
    client: str,
) -> Result:
    warmup = 0.5
    result = Result(name, 0, 0, seconds, [])
    start = time.perf_counter()
    warmup_end, deadline = start + warmup, start + warmup + seconds
    if client == "raw":
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        await asyncio.gather(
            *(_raw_worker(port, request, deadline, warmup_end, result) for _ in range(connections))
        )
    elif client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            build = (method, f"http://127.0.0.1:{port}{path}", headers, body)
            await asyncio.gather(
                *(
                    _aiohttp_worker(session, build, deadline, warmup_end, result)
                    for _ in range(connections)
                )
            )
    else:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits) as http:
            build = (method, f"http://127.0.0.1:{port}{path}", headers, body)
            await asyncio.gather(
                *(
                    _httpx_worker(http, build, deadline, warmup_end, result)
                    for _ in range(connections)
                )
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--client", choices=["raw", "httpx", "aiohttp", "all"], default="all")
    args = parser.parse_args()

    with AuthorizationServer(process=True) as server:
        client = server.add_client()
        assert client.client_secret is not None
        token = server.issue_token(client_id=client.client_id)
        credentials = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
        basic = "Basic " + base64.b64encode(credentials.encode()).decode()
        scenarios = [
            (
                "token (client_credentials)",
                "POST",
                "/token",
                {
                    "Authorization": basic,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                b"grant_type=client_credentials",
            ),
            (
                "resource (bearer, cached)",
                "GET",
                "/api/resource",
                {"Authorization": f"Bearer {token}"},
                b"",
            ),
        ]
        clients = ["raw", "aiohttp", "httpx"] if args.client == "all" else [args.client]
        print(
            f"server: subprocess pid {server._remote.process.pid} on port {server.port}; "
            f"{args.connections} connections, {args.seconds:.0f} s per scenario"
        )
        for kind in clients:
            print(f"-- load generator: {kind}")
            for name, method, path, headers, body in scenarios:
                result = asyncio.run(
                    run(
                        name,
                        server.port,
                        method,
                        path,
                        headers,
                        body,
                        connections=args.connections,
                        seconds=args.seconds,
                        client=kind,
                    )
                )
                print(result.report())
        counters = server.counters
        print(
            f"server counters: {counters.token_requests} token requests, "
            f"{counters.tokens_issued} tokens issued, "
            f"{counters.resource_requests} resource requests"
        )


if __name__ == "__main__":
    main()
