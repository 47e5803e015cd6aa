"""``freshtoken serve``: the local test authorization server, for development by hand.

It prints its endpoints and the client credentials it generated: this is a development server on
127.0.0.1 whose credentials are throwaway test values, and printing them is the point. Ctrl-C
(SIGINT) and SIGTERM stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from freshtoken._core.errors import ConfigurationError

from .common import EXIT_OK, UsageError

if TYPE_CHECKING:
    from freshtoken.testing._faults import Fault
    from freshtoken.testing._registry import Client
    from freshtoken.testing._server import AuthorizationServer

__all__ = ["build_faults", "run", "serve"]


def _check_seconds(value: float | None, flag: str, *, positive: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise UsageError(f"{flag} must be a {kind} number of seconds")


def build_faults(args: argparse.Namespace) -> list[tuple[Fault, dict[str, Any], str]]:
    """The faults the flags ask for: (fault, schedule keywords, description)."""
    from freshtoken.testing._faults import Fault

    for flag, value in (
        ("--latency", args.latency),
        ("--retry-after", args.retry_after),
        ("--start", args.start),
        ("--duration", args.duration),
    ):
        _check_seconds(value, flag)
    if args.times is not None and args.times < 1:
        raise UsageError("--times must be at least 1")
    if args.retry_after is not None and args.status is None:
        raise UsageError("--retry-after goes with --status (e.g. --status 429 --retry-after 5)")
    target = args.fault_target
    faults: list[tuple[Fault, dict[str, Any], str]] = []
    if args.latency:
        faults.append(
            (Fault(target=target, latency=args.latency), {}, f"+{args.latency:g} s latency")
        )
    replaces = args.status is not None or args.drop or args.clock_offset
    scheduled = args.times is not None or args.start or args.duration is not None
    if not replaces:
        if scheduled:
            raise UsageError(
                "--times/--start/--duration schedule a fault: add --status, --drop or "
                "--clock-offset"
            )
        return faults
    try:
        fault = Fault(
            target=target,
            status=args.status,
            retry_after=args.retry_after,
            drop=args.drop,
            clock_offset=args.clock_offset,
        )
    except ValueError as error:
        raise UsageError(f"bad fault: {error}") from None
    what = []
    if args.status is not None:
        what.append(f"HTTP {args.status}")
        if args.retry_after is not None:
            what.append(f"Retry-After {args.retry_after:g} s")
    if args.drop:
        what.append("dropped connections")
    if args.clock_offset:
        what.append(f"clock {args.clock_offset:+g} s")
    when = []
    if args.times is not None:
        when.append(f"for {args.times} request(s)")
    if args.start:
        when.append(f"from {args.start:g} s")
    if args.duration is not None:
        when.append(f"for {args.duration:g} s")
    schedule = {"times": args.times, "start": args.start, "duration": args.duration}
    faults.append((fault, schedule, ", ".join(what + when)))
    return faults


def _describe(
    server: AuthorizationServer,
    clients: list[Client],
    lifetime: float,
    faults: list[str],
    target: str,
) -> str:
    rows = [
        "freshtoken development authorization server (127.0.0.1 only).",
        "The client credentials below are generated test values, printed on purpose.",
        "",
        f"issuer        {server.issuer}",
        f"token URL     {server.token_url}",
        f"JWKS URL      {server.jwks_url}",
        f"discovery     {server.discovery_url}",
        f"resource URL  {server.resource_url}  (needs a token from this server)",
        f"token life    {lifetime:g} s",
    ]
    for client in clients:
        rows.append(f"client        id={client.client_id}  secret={client.client_secret}")
    shown = f"{'; '.join(faults)} (on the {target} endpoint(s))" if faults else "none"
    rows.append(f"faults        {shown}")
    first = clients[0]
    rows += [
        "",
        "Get a token:",
        f"  FRESHTOKEN_CLIENT_SECRET={first.client_secret} freshtoken token "
        f"--token-url {server.token_url} --client-id {first.client_id}",
        "Stop with Ctrl-C.",
    ]
    return "\n".join(rows)


def _as_json(server: AuthorizationServer, clients: list[Client], lifetime: float) -> str:
    return json.dumps(
        {
            "issuer": server.issuer,
            "token_url": server.token_url,
            "jwks_url": server.jwks_url,
            "discovery_url": server.discovery_url,
            "resource_url": server.resource_url,
            "token_lifetime": lifetime,
            "clients": [
                {"client_id": c.client_id, "client_secret": c.client_secret} for c in clients
            ],
        }
    )


def serve(
    args: argparse.Namespace,
    stop: threading.Event,
    on_ready: Callable[[AuthorizationServer], None] | None = None,
) -> int:
    """Run the server until ``stop`` is set (the signal handlers of :func:`run` set it)."""
    from freshtoken.testing._server import AuthorizationServer

    _check_seconds(args.lifetime, "--lifetime", positive=True)
    if args.clients < 1:
        raise UsageError("--clients must be at least 1")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    if args.client_secret and not args.client_id:
        raise UsageError("--client-secret goes with --client-id")
    faults = build_faults(args)
    server = AuthorizationServer(
        token_lifetime=args.lifetime, port=args.port, signing_algorithm=args.signing_algorithm
    )
    try:
        server.start()
    except OSError as error:
        raise ConfigurationError(
            f"cannot listen on 127.0.0.1:{args.port} ({error.strerror or error}); choose another "
            "--port, or 0 for a free one"
        ) from None
    try:
        clients = [
            server.add_client(
                args.client_id if index == 0 else None,
                args.client_secret if index == 0 else None,
                refresh_tokens=args.refresh_tokens,
            )
            for index in range(args.clients)
        ]
        for fault, schedule, _ in faults:
            server.faults.add(fault, **schedule)
        if args.json:
            print(_as_json(server, clients, args.lifetime), flush=True)
        else:
            descriptions = [text for _, _, text in faults]
            print(
                _describe(server, clients, args.lifetime, descriptions, args.fault_target),
                flush=True,
            )
        if on_ready is not None:
            on_ready(server)
        while not stop.wait(0.2):
            pass
        counters = server.counters
    finally:
        server.stop()
    print(
        f"stopped after {counters.token_requests} token request(s), "
        f"{counters.resource_requests} resource request(s)",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return serve(args, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
