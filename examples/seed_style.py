"""The seed's ``myAPI`` class, rewritten with freshtoken.

The blog post this replaces fetched a JWT in ``__init__``, remembered ``time.time() + 3500`` and
re-fetched in a decorator once that time had passed (without storing the new token). Here the
class keeps its shape — ``__init__``, ``get_access_token``, a decorator on each API method — and
freshtoken supplies the lifecycle: the token is fetched once per lifetime whatever the number of
threads, expiry comes from the server, a 401 triggers one refresh and one retry, and errors raise
instead of being printed.

Run it (it starts a local authorization server issuing 2-second tokens)::

    python examples/seed_style.py --duration 6 --threads 8
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import requests

import freshtoken as ft
from freshtoken.testing import AuthorizationServer


class MyAPI:
    """An API client in the seed's shape: host, key and secret in, authenticated calls out."""

    def __init__(self, host: str, key: str, secret: str, token_url: str) -> None:
        self.host = host
        self.key = key
        self.secret = secret
        self.token_url = token_url
        self.session = requests.Session()
        # The seed's getAccessToken is used as it is: a bare callable becomes a FunctionSource.
        self.tokens = ft.TokenManager(self.get_access_token)
        self.tokens.prefetch()  # the seed fetched in __init__; a failure now raises, not prints

    def get_access_token(self) -> dict[str, Any]:
        """Request a token (client_credentials, client_secret_post); errors raise."""
        response = self.session.post(
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self.key,
                "client_secret": self.secret,
            },
            timeout=10,
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body  # expires_in comes from the server: no guessed "3500"

    @ft.authenticated
    def some_request(self, token: ft.Token) -> dict[str, Any]:
        """A call to the protected API; a 401 makes freshtoken refresh and retry once."""
        response = self.session.get(
            f"{self.host}/api/resource", headers={"Authorization": token.authorization}, timeout=10
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        self.tokens.close()
        self.session.close()


def run(duration: float, threads: int, lifetime: float) -> int:
    """Call the API from ``threads`` threads for ``duration`` seconds; print a summary."""
    with AuthorizationServer(token_lifetime=lifetime) as server:
        client = server.add_client(auth_methods=("client_secret_post",))
        api = MyAPI(server.base_url, client.client_id, client.client_secret or "", server.token_url)
        calls = failures = 0
        lock = threading.Lock()
        deadline = time.monotonic() + duration

        def worker() -> None:
            nonlocal calls, failures
            while time.monotonic() < deadline:
                try:
                    api.some_request()
                    ok = True
                except (requests.RequestException, ft.FreshTokenError):
                    ok = False
                with lock:
                    calls += 1
                    failures += 0 if ok else 1

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        api.close()
        token_requests = server.token_requests
    lifetimes = duration / lifetime
    print(f"calls           {calls}")
    print(f"failed calls    {failures}")
    print(f"token requests  {token_requests}  (over {lifetimes:.1f} token lifetimes)")
    # With the default policy a token is replaced at its stale point (80% of its life).
    expected_max = int(lifetimes / (1 - ft.RefreshPolicy().stale_fraction)) + 2
    ok = failures == 0 and token_requests <= expected_max
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The seed's myAPI, with freshtoken.")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds to run (default 6)")
    parser.add_argument("--threads", type=int, default=8, help="calling threads (default 8)")
    parser.add_argument("--lifetime", type=float, default=2.0, help="token lifetime in seconds")
    args = parser.parse_args(argv)
    return run(args.duration, args.threads, args.lifetime)


if __name__ == "__main__":
    sys.exit(main())
