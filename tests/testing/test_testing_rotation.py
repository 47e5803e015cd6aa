"""Refresh-token rotation aids: the reuse grace window, reuse counters, and lost responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from freshtoken.testing import AuthorizationServer, Client, FakeClock, Fault
from tests.testing._helpers import token_request


def _first_tokens(server: AuthorizationServer, http: httpx.Client, client: Client) -> str:
    response = token_request(http, server, {"grant_type": "client_credentials"}, client=client)
    assert response.status_code == 200, response.text
    refresh: str = response.json()["refresh_token"]
    return refresh


def _refresh(
    server: AuthorizationServer, http: httpx.Client, client: Client, refresh: str
) -> httpx.Response:
    return token_request(
        http, server, {"grant_type": "refresh_token", "refresh_token": refresh}, client=client
    )


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def test_reuse_outside_grace_is_counted_and_revokes_the_family_once(http: httpx.Client) -> None:
    with AuthorizationServer() as server:
        client = server.add_client(refresh_tokens=True)
        first = _first_tokens(server, http, client)
        assert _refresh(server, http, client, first).status_code == 200
        for _ in range(2):
            again = _refresh(server, http, client, first)
            assert again.status_code == 400
            assert again.json()["error"] == "invalid_grant"
        assert server.refresh_tokens_reused == 2
        assert server.families_revoked == 1
        server.reset_counters()
        assert (server.refresh_tokens_reused, server.families_revoked) == (0, 0)


def test_within_grace_the_same_answer_is_replayed_and_not_counted(http: httpx.Client) -> None:
    clock = FakeClock()
    with AuthorizationServer(refresh_reuse_grace=5.0, clock=clock) as server:
        client = server.add_client(refresh_tokens=True)
        first = _first_tokens(server, http, client)
        answer = _refresh(server, http, client, first).json()
        clock.advance(4.0)
        replay = _refresh(server, http, client, first)
        assert replay.status_code == 200
        assert replay.json() == answer
        assert server.refresh_tokens_reused == 0
        assert server.families_revoked == 0
        assert _refresh(server, http, client, answer["refresh_token"]).status_code == 200


def test_after_grace_reuse_is_detected(http: httpx.Client) -> None:
    clock = FakeClock()
    with AuthorizationServer(refresh_reuse_grace=5.0, clock=clock) as server:
        client = server.add_client(refresh_tokens=True)
        first = _first_tokens(server, http, client)
        answer = _refresh(server, http, client, first).json()
        clock.advance(5.0)
        assert _refresh(server, http, client, first).json()["error"] == "invalid_grant"
        assert (server.refresh_tokens_reused, server.families_revoked) == (1, 1)
        assert _refresh(server, http, client, answer["refresh_token"]).status_code == 400


def test_grace_does_not_outlive_a_revoked_family(http: httpx.Client) -> None:
    with AuthorizationServer(refresh_reuse_grace=60.0) as server:
        client = server.add_client(refresh_tokens=True)
        first = _first_tokens(server, http, client)
        assert _refresh(server, http, client, first).status_code == 200
        assert server.revoke(first)
        assert _refresh(server, http, client, first).status_code == 400


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="refresh_reuse_grace"):
        AuthorizationServer(refresh_reuse_grace=-1.0)


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_lost_response_processes_the_request_then_drops_the_connection(
    http: httpx.Client, process: bool
) -> None:
    with AuthorizationServer(process=process) as server:
        client = server.add_client(refresh_tokens=True)
        first = _first_tokens(server, http, client)
        handle = server.inject(Fault.lost_response(), times=1)
        with pytest.raises(httpx.TransportError):
            _refresh(server, http, client, first)
        assert handle.hits == 1
        assert server.tokens_issued == 2  # the refresh was processed
        assert _refresh(server, http, client, first).json()["error"] == "invalid_grant"
        counters: dict[str, Any] = server.counters.to_dict()
        assert counters["refresh_tokens_reused"] == 1
        assert counters["families_revoked"] == 1


def test_lost_response_with_grace_is_recovered_by_one_retry_in_a_process(
    http: httpx.Client,
) -> None:
    with AuthorizationServer(process=True, refresh_reuse_grace=30.0) as server:
        client = server.add_client(refresh_tokens=True)
        first = _first_tokens(server, http, client)
        server.inject(lose_response=True, times=1)
        with pytest.raises(httpx.TransportError):
            _refresh(server, http, client, first)
        retry = _refresh(server, http, client, first)
        assert retry.status_code == 200
        assert _refresh(server, http, client, retry.json()["refresh_token"]).status_code == 200
        assert (server.refresh_tokens_reused, server.families_revoked) == (0, 0)
