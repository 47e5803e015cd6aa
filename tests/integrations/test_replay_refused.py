"""A replay whose token is refused too: the 401 is returned, and that token is dropped as well."""

from __future__ import annotations

import httpx

import freshtoken as ft
from freshtoken.httpx import TokenAuth
from freshtoken.testing import AuthorizationServer


def test_a_refused_replay_token_is_invalidated_so_the_next_request_fetches() -> None:
    issued: list[str] = []

    def rejected_by_the_api() -> dict[str, object]:
        issued.append(f"not-a-jwt-{len(issued)}")  # the strict resource refuses it
        return {"access_token": issued[-1], "expires_in": 600}

    with AuthorizationServer() as server, ft.TokenManager(rejected_by_the_api) as tokens:
        with httpx.Client(auth=TokenAuth(tokens)) as client:
            first = client.get(server.resource_url)
            assert first.status_code == 401  # one replay, then the 401 as it is
            assert len(issued) == 2
            assert tokens.get().access_token == "not-a-jwt-2"  # the replay's token was dropped
        assert server.unauthorized == {"malformed": 2}
