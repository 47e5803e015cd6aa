"""Counters: exact under concurrency, reset, per client and grant."""

from __future__ import annotations

import threading

import httpx
import jwt

from freshtoken.testing import AuthorizationServer
from tests.testing._helpers import bearer, client_auth, token_request


def test_counters_by_client_grant_and_reason(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    first, second = server.add_client(), server.add_client(auth_methods="none")
    server.add_user("u", "p")
    token_request(http, server, {"grant_type": "client_credentials"}, client=first)
    token_request(
        http, server, {"grant_type": "password", "username": "u", "password": "p"}, client=first
    )
    token_request(http, server, {"grant_type": "client_credentials", "client_id": second.client_id})
    token_request(http, server, {"grant_type": "client_credentials"})  # no client: invalid_client
    http.post(server.token_url, json={"x": 1})  # not a form: still a token request
    token_request(http, server, {"grant_type": "client_credentials", "client_assertion": "junk"})
    token = server.issue_token()  # not a request
    http.get(server.resource_url, headers=bearer(token))
    http.get(server.resource_url)
    http.get(server.resource_url, headers=bearer("junk"))
    http.get(server.jwks_url)
    snapshot = server.counters
    assert snapshot.token_requests == server.token_requests == 6
    assert server.token_requests_by_client == {first.client_id: 2, second.client_id: 1}
    assert server.token_requests_by_grant == {"client_credentials": 4, "password": 1}
    assert server.tokens_issued == 3
    assert server.resource_requests == 3
    assert server.unauthorized == {"missing": 1, "malformed": 1}
    server.reset_counters()
    assert server.counters.to_dict() == {
        "token_requests": 0,
        "token_requests_by_client": {},
        "token_requests_by_grant": {},
        "tokens_issued": 0,
        "resource_requests": 0,
        "unauthorized": {},
        "refresh_tokens_reused": 0,
        "families_revoked": 0,
        "dpop_nonce_challenges": 0,
        "dpop_proofs_rejected": 0,
    }


def test_assertion_client_counted_by_sub(server: AuthorizationServer, http: httpx.Client) -> None:
    from tests.testing._helpers import ASSERTION_TYPE, assertion

    client = server.add_client(auth_methods="private_key_jwt")
    signed = assertion(client.private_key, "ES256", iss=client.client_id, aud=server.token_url)
    token_request(
        http,
        server,
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )
    numeric_sub = jwt.encode({"sub": 42}, b"k" * 32, "HS256")
    token_request(
        http, server, {"grant_type": "client_credentials", "client_assertion": numeric_sub}
    )
    assert server.token_requests_by_client == {client.client_id: 1}
    assert server.token_requests == 2


def test_counts_are_exact_under_concurrency(server: AuthorizationServer) -> None:
    client = server.add_client()
    token = server.issue_token()
    threads, per_thread = 8, 20
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            with httpx.Client() as http:
                for _ in range(per_thread):
                    http.post(
                        server.token_url,
                        data={"grant_type": "client_credentials"},
                        headers=client_auth(client),
                    )
                    http.get(server.resource_url, headers=bearer(token))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    snapshot = server.counters
    assert snapshot.token_requests == snapshot.tokens_issued == threads * per_thread
    assert snapshot.resource_requests == threads * per_thread
    assert snapshot.token_requests_by_client == {client.client_id: threads * per_thread}
