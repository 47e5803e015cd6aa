"""A slow refresh that outlives the hard deadline is awaited, not cut off.

Retries and sleeps stop at the current token's hard deadline, but a request already in flight may
finish: the callers that arrive after the hard deadline wait for exactly that answer.
"""

from __future__ import annotations

import time

import freshtoken as ft
from freshtoken.testing import AuthorizationServer


def test_a_refresh_slower_than_the_stale_window_still_delivers_the_next_token() -> None:
    events: list[ft.Event] = []
    with AuthorizationServer(token_lifetime=2.0) as server:
        client = server.add_client()
        grant = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
        with ft.TokenManager(grant, on_event=events.append) as tokens:
            first = tokens.get()
            started = time.monotonic()
            server.inject(latency=0.6)  # longer than the time left before the hard deadline
            time.sleep(max(0.0, 1.55 - (time.monotonic() - started)))  # stale (0.4-0.5 s left)
            assert tokens.get() is first  # served at once; the refresh runs in the background
            time.sleep(max(0.0, 1.95 - (time.monotonic() - started)))  # past the hard deadline
            second = tokens.get()  # waits for the refresh in flight
    assert second.access_token != first.access_token
    assert [e.kind for e in events if e.kind == "failed"] == []
    assert server.token_requests == 2
