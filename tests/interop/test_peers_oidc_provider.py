"""The node oidc-provider peer behaves as the freshtoken interop tests assume (plain httpx).

These tests pin the peer, not freshtoken: when one fails, the harness is wrong, and the
freshtoken interop tests built on it would prove nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from .peers import (
    OidcProviderPeer,
    PeerClient,
    SigningKey,
    basic_authorization,
    client_assertion,
    unverified_claims,
)

pytestmark = pytest.mark.interop


def _client_credentials(
    peer: OidcProviderPeer,
    client: PeerClient,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    data = {"grant_type": "client_credentials", **(form or {})}
    return httpx.post(peer.token_endpoint, data=data, headers=headers or {}, timeout=10)


def _assert_jwt_access_token(
    peer: OidcProviderPeer, body: dict[str, Any], audience: str
) -> dict[str, Any]:
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == peer.access_token_ttl
    claims = unverified_claims(body["access_token"])
    assert claims["exp"] - claims["iat"] == peer.access_token_ttl
    assert claims["aud"] == audience
    assert claims["iss"] == peer.issuer
    return claims


def test_metadata_advertises_every_client_authentication_the_tests_use(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    metadata = httpx.get(f"{oidc_provider_peer.issuer}/.well-known/openid-configuration").json()

    assert metadata["issuer"] == oidc_provider_peer.issuer
    assert metadata["token_endpoint"] == oidc_provider_peer.token_endpoint
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"} <= set(
        metadata["token_endpoint_auth_methods_supported"]
    )
    assert {"RS256", "ES256"} <= set(metadata["token_endpoint_auth_signing_alg_values_supported"])
    assert {"client_credentials", "refresh_token", "authorization_code"} <= set(
        metadata["grant_types_supported"]
    )


def test_client_secret_basic_form_encoded_gets_a_jwt_for_the_default_resource(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    client = oidc_provider_peer.basic_client
    assert client.client_secret is not None

    response = _client_credentials(
        oidc_provider_peer,
        client,
        form={"scope": "api:read"},
        headers={"Authorization": basic_authorization(client.client_id, client.client_secret)},
    )

    assert response.status_code == 200, response.text
    claims = _assert_jwt_access_token(
        oidc_provider_peer, response.json(), oidc_provider_peer.default_resource
    )
    assert claims["client_id"] == client.client_id
    assert claims["scope"] == "api:read"


def test_client_secret_basic_without_form_encoding_is_refused(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    # The basic client's secret holds ':', '+', '%', ' ': sent raw (as httpx's auth= does), it
    # cannot authenticate. So the peer does check RFC 6749 §2.3.1 encoding.
    client = oidc_provider_peer.basic_client
    assert client.client_secret is not None
    response = httpx.post(
        oidc_provider_peer.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
    )

    assert response.status_code in {400, 401}
    assert response.json()["error"] in {"invalid_client", "invalid_request"}


def test_client_secret_post_gets_a_jwt(oidc_provider_peer: OidcProviderPeer) -> None:
    client = oidc_provider_peer.post_client
    assert client.client_secret is not None

    response = _client_credentials(
        oidc_provider_peer,
        client,
        form={"client_id": client.client_id, "client_secret": client.client_secret},
    )

    assert response.status_code == 200, response.text
    _assert_jwt_access_token(
        oidc_provider_peer, response.json(), oidc_provider_peer.default_resource
    )


def test_a_wrong_secret_is_invalid_client_401(oidc_provider_peer: OidcProviderPeer) -> None:
    client = oidc_provider_peer.post_client

    response = _client_credentials(
        oidc_provider_peer, client, form={"client_id": client.client_id, "client_secret": "wrong"}
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("which", ["rs256_client", "es256_client"])
@pytest.mark.parametrize("audience", ["token_endpoint", "issuer"])
def test_private_key_jwt_gets_a_jwt(
    oidc_provider_peer: OidcProviderPeer, which: str, audience: str
) -> None:
    client: PeerClient = getattr(oidc_provider_peer, which)
    assertion = client_assertion(client, getattr(oidc_provider_peer, audience))

    response = _client_credentials(
        oidc_provider_peer,
        client,
        form={
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )

    assert response.status_code == 200, response.text
    claims = _assert_jwt_access_token(
        oidc_provider_peer, response.json(), oidc_provider_peer.default_resource
    )
    assert claims["client_id"] == client.client_id


def test_private_key_jwt_signed_by_another_key_is_invalid_client(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    client = oidc_provider_peer.rs256_client
    assert client.signing_key is not None
    impostor = PeerClient(
        client.client_id,
        None,
        client.auth_method,
        client.grant_types,
        SigningKey.generate("RS256", client.signing_key.key_id),
    )

    response = _client_credentials(
        oidc_provider_peer,
        impostor,
        form={
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(impostor, oidc_provider_peer.token_endpoint),
        },
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_resource_indicator_sets_the_audience_and_filters_scopes(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    client = oidc_provider_peer.post_client
    assert client.client_secret is not None

    response = _client_credentials(
        oidc_provider_peer,
        client,
        form={
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "resource": oidc_provider_peer.other_resource,
            "scope": "reports:read api:write",
        },
    )

    assert response.status_code == 200, response.text
    claims = _assert_jwt_access_token(
        oidc_provider_peer, response.json(), oidc_provider_peer.other_resource
    )
    assert claims["scope"] == "reports:read"


def test_an_unknown_resource_is_invalid_target(oidc_provider_peer: OidcProviderPeer) -> None:
    client = oidc_provider_peer.post_client
    assert client.client_secret is not None

    response = _client_credentials(
        oidc_provider_peer,
        client,
        form={
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "resource": "https://unknown.interop.test",
        },
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_access_tokens_verify_against_the_published_jwks(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    client = oidc_provider_peer.post_client
    assert client.client_secret is not None
    body = _client_credentials(
        oidc_provider_peer,
        client,
        form={"client_id": client.client_id, "client_secret": client.client_secret},
    ).json()
    jwks = jwt.PyJWKSet.from_dict(httpx.get(oidc_provider_peer.jwks_uri).json())
    kid = jwt.get_unverified_header(body["access_token"])["kid"]

    claims = jwt.decode(
        body["access_token"],
        jwks[kid].key,
        algorithms=["RS256"],
        audience=oidc_provider_peer.default_resource,
        issuer=oidc_provider_peer.issuer,
    )

    assert claims["client_id"] == client.client_id


@pytest.mark.parametrize("which", ["code_client", "public_code_client"])
def test_the_dev_login_yields_a_refresh_token_that_rotates_and_dies_when_reused(
    oidc_provider_peer: OidcProviderPeer, which: str
) -> None:
    client: PeerClient = getattr(oidc_provider_peer, which)
    first = oidc_provider_peer.authorization_code_tokens(client)
    _assert_jwt_access_token(oidc_provider_peer, first, oidc_provider_peer.default_resource)
    assert unverified_claims(first["access_token"])["sub"] == oidc_provider_peer.user.username

    def refresh(refresh_token: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        headers = {}
        if client.client_secret is None:
            form["client_id"] = client.client_id
        else:
            headers["Authorization"] = basic_authorization(client.client_id, client.client_secret)
        return httpx.post(oidc_provider_peer.token_endpoint, data=form, headers=headers)

    second = refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    _assert_jwt_access_token(oidc_provider_peer, rotated, oidc_provider_peer.default_resource)

    reused = refresh(first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # oidc-provider revokes the whole grant on reuse: the newest refresh token is dead too.
    after_reuse = refresh(rotated["refresh_token"])
    assert after_reuse.status_code == 400
    assert after_reuse.json()["error"] == "invalid_grant"


def test_a_resource_requested_at_authorization_is_the_refreshed_tokens_audience(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    tokens = oidc_provider_peer.authorization_code_tokens(
        scope="openid offline_access reports:read", resource=oidc_provider_peer.other_resource
    )

    _assert_jwt_access_token(oidc_provider_peer, tokens, oidc_provider_peer.other_resource)


def test_the_factory_starts_a_peer_with_another_access_token_lifetime(
    start_oidc_provider: Callable[..., OidcProviderPeer],
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    peer = start_oidc_provider(access_token_ttl=7)
    client = peer.post_client
    assert client.client_secret is not None

    response = _client_credentials(
        peer, client, form={"client_id": client.client_id, "client_secret": client.client_secret}
    )

    assert peer.issuer != oidc_provider_peer.issuer
    assert peer.access_token_ttl == 7
    _assert_jwt_access_token(peer, response.json(), peer.default_resource)
    assert start_oidc_provider(access_token_ttl=7) is peer
