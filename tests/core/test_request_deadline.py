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
    # 4 s tokens: stale from 2 s, hard deadline at 3 s. Wide windows, so that a busy machine
    # oversleeping by most of a second still tests the same thing.
    policy = ft.RefreshPolicy(stale_fraction=0.5, hard_fraction=0.25, jitter=0.0)
    with AuthorizationServer(token_lifetime=4.0) as server:
        client = server.add_client()
        grant = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
        with ft.TokenManager(grant, policy=policy, on_event=events.append) as tokens:
            first = tokens.get()
            started = time.monotonic()
            server.inject(latency=1.5)  # longer than the time left before the hard deadline
            time.sleep(max(0.0, 2.2 - (time.monotonic() - started)))  # stale, 0.8 s before hard
            assert tokens.get() is first  # served at once; the refresh runs in the background
            time.sleep(max(0.0, 3.2 - (time.monotonic() - started)))  # past the hard deadline
            second = tokens.get()  # waits for the refresh in flight (due about 3.7 s)
    assert second.access_token != first.access_token
    assert [e.kind for e in events if e.kind == "failed"] == []
    assert server.token_requests == 2
