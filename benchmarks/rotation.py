"""Token rotation, side by side in one run: freshtoken against the peers and the seed pattern.

One local AuthorizationServer (a subprocess, so it does not share our GIL) issues short-lived
tokens. Each contender in turn authorizes API calls against the server's strict protected
resource, one call every ``--interval`` seconds. Two scenarios:

* ``slow endpoint``: the token endpoint takes 300 ms; ``--rotations`` token lifetimes. Reported:
  the time each call spent getting its Authorization header (the latency the token handling
  adds): max, p99, median, and how many calls waited 100 ms or more (i.e. on the token
  endpoint). Target: no call waits, max < 5 ms.
* ``outage``: the token endpoint answers 503 (at once) from 50 % to 90 % of the first token's
  lifetime — a window that starts before expiry and ends inside the token's remaining life —
  over two lifetimes. Reported: failed API calls (an exception while authorizing, or a non-2xx
  answer). Target: 0.

Contenders (each peer with its refresh margin set to 20 % of the lifetime, like ours, so the
comparison is about how they refresh, not about defaults made for 1-hour tokens):

* ``seed``          the pattern of /work/shared/seed: check the expiry before each call and
                    fetch synchronously when it has passed (expiry = expires_in less 1/36, the
                    seed's 3500-of-3600 buffer); a failed fetch leaves no token.
* ``requests-oauthlib``  OAuth2Session + BackendApplicationClient; fetch_token when the token
                    is within the margin of its expires_at (it has no client-credentials
                    auto-refresh of its own).
* ``authlib``       httpx OAuth2Client(grant_type="client_credentials", leeway=margin):
                    ensure_active_token before each call.
* ``httpx-auth``    OAuth2ClientCredentials(early_expiry=margin).
* ``freshtoken``    TokenManager(ClientCredentials(...)), and the same with background=True.

    .venv/bin/python benchmarks/rotation.py [--lifetime 3] [--rotations 10] [--interval 0.02]
        [--plot DIR]

``--plot DIR`` also writes rotation_latency.png (each call's added latency over time),
rotation_tokens.png (new tokens put to use over time) and rotation_outage.png (failed calls over
time, the outage shaded).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

import freshtoken as ft
from freshtoken.testing import AuthorizationServer, Client

logging.getLogger("freshtoken").setLevel(logging.ERROR)  # the outage's warnings are expected
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*deprecated.*")

ENDPOINT_LATENCY = 0.3
Authorize = Callable[[], str]  # returns the Authorization header value


@dataclass
class Result:
    name: str
    added: list[float]
    failed: int
    calls: int
    token_requests: int
    #: one (seconds since start, added latency, ok, distinct tokens used so far) per call
    timeline: list[tuple[float, float, bool, int]]

    def row(self) -> str:
        added = sorted(self.added) or [0.0]
        p99 = added[min(len(added) - 1, int(len(added) * 0.99))]
        waited = sum(1 for value in added if value >= 0.1)
        return (
            f"{self.name:<24} {self.calls:>6} {max(added) * 1e3:>10.1f} {p99 * 1e3:>9.2f} "
            f"{statistics.median(added) * 1e3:>9.3f} {waited:>7} {self.failed:>7} "
            f"{self.token_requests:>9}"
        )


HEADER = (
    f"{'contender':<24} {'calls':>6} {'max ms':>10} {'p99 ms':>9} {'median ms':>9} "
    f"{'waited':>7} {'failed':>7} {'token req':>9}"
)


# -- the contenders: each a context manager yielding authorize() ---------------------------------


@contextlib.contextmanager
def seed(server: AuthorizationServer, client: Client, lifetime: float) -> Iterator[Authorize]:
    http = httpx.Client(timeout=10)
    state: dict[str, object] = {}

    def get_access_token() -> str | None:
        try:
            response = http.post(
                server.token_url,
                data={"grant_type": "client_credentials"},
                auth=(client.client_id, client.client_secret or ""),
            )
            response.raise_for_status()
        except Exception:
            return None
        body = response.json()
        state["expires"] = time.time() + float(body["expires_in"]) * 3500 / 3600
        return str(body["access_token"])

    state["token"] = get_access_token()

    def authorize() -> str:
        if time.time() > float(state.get("expires", 0.0)):  # type: ignore[arg-type]
            state["token"] = get_access_token()
        return f"Bearer {state['token']}"

    try:
        yield authorize
    finally:
        http.close()


@contextlib.contextmanager
def requests_oauthlib(
    server: AuthorizationServer, client: Client, lifetime: float
) -> Iterator[Authorize]:
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session

    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # the local server speaks http on loopback

    session = OAuth2Session(client=BackendApplicationClient(client_id=client.client_id))
    margin = 0.2 * lifetime

    def fetch() -> None:
        session.fetch_token(
            server.token_url, client_id=client.client_id, client_secret=client.client_secret
        )

    fetch()

    def authorize() -> str:
        # a failed fetch_token leaves session.token empty: the old token is gone with it
        if time.time() > float(session.token.get("expires_at", 0)) - margin:
            fetch()
        return f"Bearer {session.access_token}"

    try:
        yield authorize
    finally:
        session.close()


@contextlib.contextmanager
def authlib(server: AuthorizationServer, client: Client, lifetime: float) -> Iterator[Authorize]:
    from authlib.integrations.httpx_client import OAuth2Client

    oauth = OAuth2Client(
        client.client_id,
        client.client_secret,
        token_endpoint=server.token_url,
        grant_type="client_credentials",
        leeway=int(max(1, round(0.2 * lifetime))),
    )
    oauth.fetch_token()

    def authorize() -> str:
        oauth.ensure_active_token(oauth.token)
        return f"Bearer {oauth.token['access_token']}"

    try:
        yield authorize
    finally:
        oauth.close()


@contextlib.contextmanager
def httpx_auth(server: AuthorizationServer, client: Client, lifetime: float) -> Iterator[Authorize]:
    import httpx_auth as peer

    peer.OAuth2.token_cache.clear()
    http = httpx.Client(timeout=10)
    auth = peer.OAuth2ClientCredentials(
        server.token_url,
        client.client_id,
        client.client_secret or "",
        early_expiry=0.2 * lifetime,
        client=http,
    )

    def authorize() -> str:
        request = httpx.Request("GET", server.resource_url)
        flow = auth.sync_auth_flow(request)
        authorized = next(flow)
        flow.close()
        return authorized.headers["Authorization"]

    try:
        authorize()
        yield authorize
    finally:
        http.close()


def freshtoken_contender(
    background: bool,
) -> Callable[..., contextlib.AbstractContextManager[Authorize]]:
    @contextlib.contextmanager
    def run(server: AuthorizationServer, client: Client, lifetime: float) -> Iterator[Authorize]:
        source = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
        with ft.TokenManager(source, background=background) as tokens:
            tokens.prefetch()

            def authorize() -> str:
                return tokens.get().authorization

            yield authorize

    return run


CONTENDERS: dict[str, Callable[..., contextlib.AbstractContextManager[Authorize]]] = {
    "seed": seed,
    "requests-oauthlib": requests_oauthlib,
    "authlib": authlib,
    "httpx-auth": httpx_auth,
    "freshtoken": freshtoken_contender(background=False),
    "freshtoken background": freshtoken_contender(background=True),
}


# -- the workload ---------------------------------------------------------------------------------


def run_one(
    name: str,
    server: AuthorizationServer,
    lifetime: float,
    rotations: int,
    interval: float,
    *,
    latency: float,
    outage: bool,
) -> Result:
    client = server.add_client()
    contender = CONTENDERS[name]
    added: list[float] = []
    failed = 0
    server.clear_faults()
    if latency:
        server.inject(latency=latency, target="token")
    api = httpx.Client(timeout=10)
    before = server.token_requests
    timeline: list[tuple[float, float, bool, int]] = []
    headers: set[str] = set()
    try:
        with contender(server, client, lifetime) as authorize:
            started = time.monotonic()  # the first token was fetched just now
            if outage:
                server.inject(
                    status=503, start=0.5 * lifetime, duration=0.4 * lifetime, target="token"
                )
            end = started + rotations * lifetime
            next_call = started
            while next_call < end:
                pause = next_call - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                next_call += interval
                at = time.monotonic() - started
                t0 = time.perf_counter()
                try:
                    header = authorize()
                except Exception:
                    added.append(time.perf_counter() - t0)
                    failed += 1
                    timeline.append((at, added[-1], False, len(headers)))
                    continue
                added.append(time.perf_counter() - t0)
                headers.add(header)
                ok = False
                with contextlib.suppress(httpx.HTTPError):
                    response = api.get(server.resource_url, headers={"Authorization": header})
                    ok = response.status_code < 300
                failed += not ok
                timeline.append((at, added[-1], ok, len(headers)))
    finally:
        api.close()
        server.clear_faults()
    return Result(name, added, failed, len(added), server.token_requests - before, timeline)


def plot(directory: str, slow: list[Result], outage: list[Result], lifetime: float) -> None:
    """The three figures of a run: latency and tokens across the rotations, the outage."""
    from _plots import figure, save

    fig, axes = figure(
        "Added latency per call across token rotations (token endpoint: 300 ms)",
        "seconds since the first token",
        "time to get the Authorization header (ms, log)",
    )
    for result in slow:
        axes.plot(
            [t for t, *_ in result.timeline],
            [max(1e-3, a * 1e3) for _, a, *_ in result.timeline],
            ".",
            markersize=3,
            label=result.name,
        )
    axes.set_yscale("log")
    axes.legend(fontsize="small", ncols=3, loc="center")
    print("wrote", save(fig, directory, "rotation_latency"))

    fig, axes = figure(
        f"Tokens put to use over time (lifetime {lifetime:g} s)",
        "seconds since the first token",
        "distinct tokens used so far",
    )
    for result in slow:
        axes.step(
            [t for t, *_ in result.timeline],
            [n for *_, n in result.timeline],
            where="post",
            label=result.name,
        )
    axes.legend(fontsize="small")
    print("wrote", save(fig, directory, "rotation_tokens"))

    fig, axes = figure(
        "Outage: token endpoint answers 503 from 50 % to 90 % of the first lifetime",
        "seconds since the first token",
        "",
    )
    axes.axvspan(0.5 * lifetime, 0.9 * lifetime, color="red", alpha=0.15, label="503 window")
    axes.axvline(lifetime, color="grey", linestyle="--", label="first token expires")
    for row, result in enumerate(outage):
        failed_at = [t for t, _, ok, _ in result.timeline if not ok]
        ok_at = [t for t, _, ok, _ in result.timeline if ok]
        axes.plot(ok_at, [row] * len(ok_at), "|", color="tab:green", markersize=8)
        axes.plot(failed_at, [row] * len(failed_at), "|", color="tab:red", markersize=12)
    axes.set_yticks(range(len(outage)), [f"{r.name} ({r.failed} failed)" for r in outage])
    axes.plot([], [], "|", color="tab:green", label="call succeeded")
    axes.plot([], [], "|", color="tab:red", label="call failed")
    axes.legend(fontsize="small", ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    print("wrote", save(fig, directory, "rotation_outage"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lifetime", type=float, default=3.0, help="token lifetime, seconds")
    parser.add_argument("--rotations", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between API calls")
    parser.add_argument("--only", nargs="*", choices=sorted(CONTENDERS), default=None)
    parser.add_argument("--plot", metavar="DIR", help="also write the figures (PNG) into DIR")
    args = parser.parse_args()
    names = args.only or list(CONTENDERS)
    results: dict[bool, list[Result]] = {False: [], True: []}

    with AuthorizationServer(token_lifetime=args.lifetime, process=True) as server:
        for outage in (False, True):
            latency = 0.0 if outage else ENDPOINT_LATENCY
            rotations = 2 if outage else args.rotations
            title = (
                "outage: 503 from 50 % to 90 % of the first token's life"
                if outage
                else f"slow endpoint: every token request takes {latency * 1e3:.0f} ms"
            )
            print(
                f"== {title} (tokens of {args.lifetime:g} s, {rotations} lifetimes, a call every "
                f"{args.interval * 1e3:.0f} ms) =="
            )
            print(HEADER)
            for name in names:
                result = run_one(
                    name,
                    server,
                    args.lifetime,
                    rotations,
                    args.interval,
                    latency=latency,
                    outage=outage,
                )
                results[outage].append(result)
                print(result.row(), flush=True)
    print(
        "added = time to get the Authorization header; waited = calls that spent >= 100 ms on it; "
        "failed = calls that raised or got a non-2xx answer."
    )
    if args.plot:
        plot(args.plot, results[False], results[True], args.lifetime)


if __name__ == "__main__":
    main()
