"""A token endpoint outage that outlasts the token, side by side in one run.

2 s tokens; the endpoint answers 503 (at once) from 0.5 s before the first token expires, for
1.5 s, so for about a second nobody has a usable token. One call every ``--interval`` seconds
(get a token, call the strict protected resource). Reported per contender, over ``--runs``
repetitions (median and worst): how long after the endpoint's return the first call succeeded,
the longest call, failed calls, and token requests sent while the endpoint was down.

Contenders: freshtoken (``TokenManager``, with and without background refresh), google-auth with
its non-blocking refresh (a ``Credentials`` subclass doing the client-credentials request, its
refresh threshold set to 20 % of the lifetime like ours), Authlib's httpx ``OAuth2Client``
(leeway 20 %), and the seed pattern.

    .venv/bin/python benchmarks/outage.py [--runs 5] [--lifetime 2] [--interval 0.02]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from rotation import Authorize, authlib, freshtoken_contender, seed

from freshtoken._oauth.client_auth import basic_authorization
from freshtoken.testing import AuthorizationServer, Client

BEFORE_EXPIRY = 0.5  # the outage starts this long before the first token expires
DOWN = 1.5  # and lasts this long


@contextlib.contextmanager
def google_auth(
    server: AuthorizationServer, client: Client, lifetime: float
) -> Iterator[Authorize]:
    """google-auth's non-blocking refresh (``with_non_blocking_refresh``) on a client-credentials
    ``Credentials``: a stale token is refreshed in a background thread; an expired one by every
    caller, blocking."""
    import google.auth._helpers as helpers
    import google.auth.exceptions
    from google.auth import credentials
    from google.auth.transport.requests import Request

    class ClientCredentials(credentials.Credentials):
        def refresh(self, request: Any) -> None:
            response = request(
                url=server.token_url,
                method="POST",
                body=urlencode({"grant_type": "client_credentials"}),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Authorization": basic_authorization(
                        client.client_id, client.client_secret or ""
                    ),
                },
            )
            if response.status != 200:
                raise google.auth.exceptions.RefreshError(f"HTTP {response.status}")  # type: ignore[no-untyped-call]
            body = json.loads(response.data)
            self.token = body["access_token"]
            self.expiry = helpers.utcnow() + datetime.timedelta(seconds=body["expires_in"])  # type: ignore[no-untyped-call]

    saved = helpers.REFRESH_THRESHOLD
    helpers.REFRESH_THRESHOLD = datetime.timedelta(seconds=0.2 * lifetime)
    creds = ClientCredentials()  # type: ignore[no-untyped-call]
    creds.with_non_blocking_refresh()  # type: ignore[no-untyped-call]
    request = Request()

    def authorize() -> str:
        headers: dict[str, str] = {}
        creds.before_request(request, "GET", server.resource_url, headers)  # type: ignore[no-untyped-call]
        return headers["authorization"]

    try:
        authorize()
        yield authorize
    finally:
        helpers.REFRESH_THRESHOLD = saved


CONTENDERS: dict[str, Callable[..., contextlib.AbstractContextManager[Authorize]]] = {
    "freshtoken": freshtoken_contender(background=False),
    "freshtoken background": freshtoken_contender(background=True),
    "google-auth non-blocking": google_auth,
    "authlib": authlib,
    "seed": seed,
}


@dataclass
class Run:
    recovered: float  # seconds from the endpoint's return to the first successful call's end
    longest: float  # the longest call (token and API request), seconds
    failed: int
    down_requests: int  # token requests while the endpoint answered 503


def run_one(name: str, server: AuthorizationServer, lifetime: float, interval: float) -> Run:
    client = server.add_client()
    server.clear_faults()
    api = httpx.Client(timeout=10)
    longest, failed = 0.0, 0
    recovered: float | None = None
    try:
        with CONTENDERS[name](server, client, lifetime) as authorize:
            started = time.monotonic()  # the first token was fetched just now
            down_at = lifetime - BEFORE_EXPIRY
            up_at = down_at + DOWN
            server.inject(status=503, start=down_at, duration=DOWN, target="token")
            before = server.token_requests
            during: int | None = None
            next_call = started
            while next_call < started + up_at + 1.5:
                pause = next_call - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                next_call += interval
                t0 = time.monotonic()
                ok = False
                with contextlib.suppress(Exception):
                    header = authorize()
                    response = api.get(server.resource_url, headers={"Authorization": header})
                    ok = response.status_code < 300
                end = time.monotonic()
                longest = max(longest, end - t0)
                failed += not ok
                if during is None and end - started >= up_at:
                    during = server.token_requests - before
                if ok and recovered is None and end - started >= up_at:
                    recovered = end - started - up_at
    finally:
        api.close()
        server.clear_faults()
    assert during is not None
    return Run(recovered if recovered is not None else float("inf"), longest, failed, during)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lifetime", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--only", nargs="*", choices=sorted(CONTENDERS), default=None)
    args = parser.parse_args()
    names = args.only or list(CONTENDERS)
    print(
        f"{args.lifetime:g} s tokens; 503 from {BEFORE_EXPIRY:g} s before expiry for {DOWN:g} s;"
        f" a call every {args.interval * 1e3:g} ms; {args.runs} runs (median / worst)"
    )
    print(
        f"{'contender':<26} {'first success after return':>27} {'longest call':>16} "
        f"{'failed':>9} {'token req while down':>21}"
    )
    with AuthorizationServer(token_lifetime=args.lifetime, process=True) as server:
        results: dict[str, list[Run]] = {name: [] for name in names}
        for _ in range(args.runs):  # interleaved, so that machine load falls on all alike
            for name in names:
                results[name].append(run_one(name, server, args.lifetime, args.interval))
        for name in names:
            runs = results[name]

            def pair(values: list[float], fmt: str) -> str:
                return f"{format(statistics.median(values), fmt)} / {format(max(values), fmt)}"

            print(
                f"{name:<26} {pair([r.recovered for r in runs], '.2f') + ' s':>27} "
                f"{pair([r.longest for r in runs], '.2f') + ' s':>16} "
                f"{pair([float(r.failed) for r in runs], '.0f'):>9} "
                f"{pair([float(r.down_requests) for r in runs], '.0f'):>21}"
            )


if __name__ == "__main__":
    main()
