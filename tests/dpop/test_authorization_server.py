"""End to end against freshtoken.testing.AuthorizationServer's own DPoP checks: nonce mode on,
cnf.jkt-bound tokens, resource proofs with ath, through get() and aget()."""

from __future__ import annotations

import httpx
import jwt
import pytest

import freshtoken as ft
from freshtoken.testing import AuthorizationServer
from tests.grants.conftest import FAST, GETTERS, Getter


@GETTERS
@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_dpop_bound_client_credentials_with_server_nonces(get: Getter, algorithm: str) -> None:
    key = ft.DPoPKey.generate(algorithm)  # type: ignore[arg-type]
    with AuthorizationServer(dpop_nonce=True) as server:
        client = server.add_client()
        source = ft.ClientCredentials(
            server.token_url, client.client_id, client.client_secret, dpop=key, max_attempts=1
        )
        token = get(source)
        assert token.token_type == "DPoP"
        claims = jwt.decode(token.access_token, options={"verify_signature": False})
        assert claims["cnf"]["jkt"] == key.thumbprint
        # first proof refused with use_dpop_nonce, the retry accepted
        assert server.token_requests == 2
        assert server.dpop_nonce_challenges == 1
        # the resource shares the server's origin: the nonce is already known
        url = server.resource_url
        assert httpx.get(url, headers=token.headers("GET", url)).status_code == 200
        assert server.dpop_proofs_rejected == 0


def test_a_rotated_resource_nonce_is_learnt_and_used() -> None:
    key = ft.DPoPKey.generate()
    with AuthorizationServer(dpop_nonce=True, dpop_nonce_grace=0.0) as server:
        client = server.add_client()
        source = ft.ClientCredentials(
            server.token_url, client.client_id, client.client_secret, dpop=key
        )
        with ft.TokenManager(source, policy=FAST) as tokens:
            token = tokens.get()
        server.rotate_dpop_nonce()
        url = server.resource_url
        refused = httpx.get(url, headers=token.headers("GET", url))
        assert refused.status_code == 401
        assert "use_dpop_nonce" in refused.headers["WWW-Authenticate"]
        key.remember_nonce(url, refused.headers["DPoP-Nonce"])
        assert httpx.get(url, headers=token.headers("GET", url)).status_code == 200


def test_a_bearer_token_from_a_dpop_grant_never_happens_silently() -> None:
    """Without dpop= the server issues Bearer; with it, DPoP: the two never mix."""
    with AuthorizationServer() as server:
        client = server.add_client()
        plain = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
        bound = ft.ClientCredentials(
            server.token_url, client.client_id, client.client_secret, dpop=ft.DPoPKey.generate()
        )
        with ft.TokenManager(plain, policy=FAST) as a, ft.TokenManager(bound, policy=FAST) as b:
            assert a.get().token_type == "Bearer"
            assert b.get().token_type == "DPoP"
        assert plain.key != bound.key
