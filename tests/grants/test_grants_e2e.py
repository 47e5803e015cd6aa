"""Every grant and client-authentication method, end to end through TokenManager.get()/aget()
against the real local authorization server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm

import freshtoken as ft
from freshtoken._oauth.client_auth import ClientSecretJWT, PrivateKeyJWT
from freshtoken._oauth.grants import (
    ClientCredentials,
    JWTBearerGrant,
    PasswordGrant,
    RefreshTokenGrant,
    TokenExchange,
)
from freshtoken.testing import AuthorizationServer

from .conftest import FAST, GETTERS, Getter, context, get_sync

JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def claims(token: ft.Token) -> dict[str, Any]:
    return jwt.decode(token.access_token, options={"verify_signature": False})


def accepted_by_resource(server: AuthorizationServer, token: ft.Token) -> bool:
    response = httpx.get(server.resource_url, headers={"Authorization": token.authorization})
    return response.status_code == 200


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


# -- client authentication ------------------------------------------------------------------


@GETTERS
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_with_a_client_secret(
    server: AuthorizationServer, get: Getter, method: Any
) -> None:
    client = server.add_client(auth_methods=method)
    token = get(
        ClientCredentials(server.token_url, client.client_id, client.client_secret, auth=method)
    )
    assert claims(token)["client_id"] == client.client_id
    assert accepted_by_resource(server, token)
    assert server.token_requests == 1


@GETTERS
@pytest.mark.parametrize("secret", ["a:b", "p+l%20us", "ünï cödé:%+", "x" * 200])
def test_client_secret_basic_survives_special_characters_in_the_secret(
    server: AuthorizationServer, get: Getter, secret: str
) -> None:
    client = server.add_client("id:with+odd%chars", secret)
    token = get(ClientCredentials(server.token_url, client.client_id, secret))
    assert claims(token)["client_id"] == "id:with+odd%chars"


@GETTERS
def test_public_client_authenticates_with_none(server: AuthorizationServer, get: Getter) -> None:
    client = server.add_client(auth_methods="none")
    token = get(ClientCredentials(server.token_url, client.client_id, auth="none"))
    assert claims(token)["client_id"] == client.client_id


@GETTERS
def test_client_secret_jwt(server: AuthorizationServer, get: Getter) -> None:
    client = server.add_client(auth_methods="client_secret_jwt")
    grant = ClientCredentials(
        server.token_url, client.client_id, client.client_secret, auth=ClientSecretJWT()
    )
    assert claims(get(grant))["client_id"] == client.client_id


@GETTERS
@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256", "EdDSA"])
def test_private_key_jwt_with_each_algorithm(
    server: AuthorizationServer,
    get: Getter,
    algorithm: Any,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    key: Any = {"RS256": rsa_key, "PS256": rsa_key, "ES256": ec_key}.get(
        algorithm, ed25519.Ed25519PrivateKey.generate()
    )
    client = server.add_client(auth_methods="private_key_jwt", public_key=key.public_key())
    grant = ClientCredentials(
        server.token_url, client.client_id, auth=PrivateKeyJWT(key, algorithm, key_id="k1")
    )
    token = get(grant)
    assert claims(token)["client_id"] == client.client_id
    # A second fetch signs a new assertion (fresh jti): the server refuses replayed ones.
    assert claims(get(grant))["client_id"] == client.client_id
    assert server.tokens_issued == 2


@pytest.mark.parametrize("form", ["pem-str", "pem-bytes", "jwk"])
def test_private_key_jwt_accepts_pem_and_jwk_keys(
    server: AuthorizationServer, form: str, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    key: Any = {
        "pem-str": pem(ec_key),
        "pem-bytes": pem(ec_key).encode(),
        "jwk": ECAlgorithm.to_jwk(ec_key, as_dict=True),
    }[form]
    client = server.add_client(auth_methods="private_key_jwt", public_key=ec_key.public_key())
    token = get_sync(
        ClientCredentials(server.token_url, client.client_id, auth=PrivateKeyJWT(key, "ES256"))
    )
    assert claims(token)["client_id"] == client.client_id


@GETTERS
def test_private_key_jwt_with_the_key_the_server_generated(
    server: AuthorizationServer, get: Getter
) -> None:
    client = server.add_client(auth_methods="private_key_jwt")
    assert client.private_key is not None
    grant = ClientCredentials(
        server.token_url, client.client_id, auth=PrivateKeyJWT(client.private_key, "ES256")
    )
    assert claims(get(grant))["sub"] == client.client_id


# -- client credentials parameters ----------------------------------------------------------


@GETTERS
def test_client_credentials_scope_audience_and_resources(
    server: AuthorizationServer, get: Getter
) -> None:
    client = server.add_client(scopes=["read", "write", "admin"])
    grant = ClientCredentials(
        server.token_url,
        client.client_id,
        client.client_secret,
        scope=["read", "write"],
        audience="https://aud.example.com",
        resource=["https://api-a.example.com/", "https://api-b.example.com/"],
    )
    token = get(grant)
    assert token.scope == "read write"
    assert claims(token)["aud"] == [
        "https://aud.example.com",
        "https://api-a.example.com/",
        "https://api-b.example.com/",
    ]


# -- refresh tokens -------------------------------------------------------------------------


def first_refresh_token(server: AuthorizationServer, client: Any, http: httpx.Client) -> str:
    response = http.post(
        server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
    )
    refresh: str = response.json()["refresh_token"]
    return refresh


@GETTERS
def test_refresh_token_grant_rotates_and_uses_the_newest_refresh_token(
    server: AuthorizationServer, get: Getter, http: httpx.Client
) -> None:
    client = server.add_client(refresh_tokens=True)
    initial = first_refresh_token(server, client, http)
    grant = RefreshTokenGrant(server.token_url, initial, client.client_id, client.client_secret)
    first = get(grant)
    assert first.refresh_token is not None
    assert first.refresh_token != initial
    # The grant kept the rotated token: the old one would trip the server's reuse detection.
    second = get(grant)
    assert second.refresh_token not in (None, initial, first.refresh_token)
    assert accepted_by_resource(server, second)
    assert server.token_requests_by_grant["refresh_token"] == 2


def test_refresh_token_reuse_surfaces_as_invalid_grant(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client(refresh_tokens=True)
    initial = first_refresh_token(server, client, http)
    get_sync(RefreshTokenGrant(server.token_url, initial, client.client_id, client.client_secret))
    stale = RefreshTokenGrant(server.token_url, initial, client.client_id, client.client_secret)
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(stale)
    assert caught.value.error == "invalid_grant"
    assert caught.value.status == 400


def test_refresh_response_without_a_refresh_token_keeps_the_old_one(
    server: AuthorizationServer,
) -> None:
    server.inject(
        body=json.dumps({"access_token": "opaque-token", "expires_in": 60}),
        content_type="application/json",
        times=1,
    )
    grant = RefreshTokenGrant(server.token_url, "rt-kept", "cid", "secret")
    token = get_sync(grant)
    assert token.refresh_token == "rt-kept"


def test_refresh_token_grant_takes_the_refresh_token_of_the_newest_token(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    """The manager (and a shared store) hands the source the newest token; its refresh token wins
    over the one the grant was built with, which another process may have rotated away."""
    client = server.add_client(refresh_tokens=True)
    initial = first_refresh_token(server, client, http)
    rotated = http.post(
        server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": initial},
        auth=(client.client_id, str(client.client_secret)),
    ).json()["refresh_token"]
    grant = RefreshTokenGrant(server.token_url, initial, client.client_id, client.client_secret)
    current = ft.Token(access_token="elsewhere", refresh_token=rotated)
    try:
        token = grant.fetch(context(grant, current=current))
    finally:
        grant.close()
    assert token.refresh_token not in (initial, rotated)


# -- password ---------------------------------------------------------------------------------


@GETTERS
def test_password_grant_then_refresh_then_password_again_when_refused(
    server: AuthorizationServer, get: Getter
) -> None:
    client = server.add_client()
    server.add_user("alice", "pa:ss+wörd")
    grant = PasswordGrant(
        server.token_url, "alice", "pa:ss+wörd", client.client_id, client.client_secret
    )
    first = get(grant)
    assert claims(first)["sub"] == "alice"
    assert first.refresh_token is not None
    second = get(grant)  # a new manager: the grant remembers the refresh token
    assert server.token_requests_by_grant == {"password": 1, "refresh_token": 1}
    assert second.refresh_token is not None
    server.revoke(second.refresh_token)
    third = get(grant)
    assert claims(third)["sub"] == "alice"
    assert server.token_requests_by_grant == {"password": 2, "refresh_token": 2}


def test_password_grant_wrong_password_is_invalid_grant(server: AuthorizationServer) -> None:
    client = server.add_client()
    server.add_user("alice", "right")
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(
            PasswordGrant(
                server.token_url, "alice", "wrong", client.client_id, client.client_secret
            )
        )
    assert caught.value.error == "invalid_grant"
    assert "wrong" not in str(caught.value)


# -- JWT bearer ----------------------------------------------------------------------------


@GETTERS
def test_jwt_bearer_with_an_assertion_callable(
    server: AuthorizationServer, get: Getter, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    server.add_issuer("https://idp.example.com", ec_key.public_key())
    calls: list[int] = []

    def assertion() -> str:
        calls.append(1)
        now = int(__import__("time").time())
        return jwt.encode(
            {
                "iss": "https://idp.example.com",
                "sub": "svc",
                "aud": server.token_url,
                "iat": now,
                "exp": now + 60,
            },
            ec_key,
            algorithm="ES256",
        )

    token = get(JWTBearerGrant(server.token_url, assertion))
    assert claims(token)["sub"] == "svc"
    assert calls == [1]


def test_jwt_bearer_with_a_string_and_client_authentication(
    server: AuthorizationServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = server.add_client()
    server.add_issuer("https://idp.example.com", ec_key.public_key())
    now = int(__import__("time").time())
    assertion = jwt.encode(
        {"iss": "https://idp.example.com", "sub": "svc", "aud": server.issuer, "exp": now + 60},
        ec_key,
        algorithm="ES256",
    )
    grant = JWTBearerGrant(server.token_url, assertion, client.client_id, client.client_secret)
    assert claims(get_sync(grant))["sub"] == "svc"
    assert server.token_requests_by_client == {client.client_id: 1}


def test_jwt_bearer_untrusted_assertion_is_invalid_grant(server: AuthorizationServer) -> None:
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(JWTBearerGrant(server.token_url, "not-a-jwt"))
    assert caught.value.error == "invalid_grant"


# -- token exchange ------------------------------------------------------------------------


@GETTERS
def test_token_exchange_keeps_the_issued_token_type(
    server: AuthorizationServer, get: Getter
) -> None:
    client = server.add_client()
    subject = server.issue_token(sub="user-7")
    grant = TokenExchange(
        server.token_url,
        subject,
        "access_token",
        client.client_id,
        client.client_secret,
        requested_token_type="jwt",
        audience="https://downstream.example.com",
    )
    token = get(grant)
    assert token.extra["issued_token_type"] == JWT_TYPE
    assert claims(token)["sub"] == "user-7"
    assert claims(token)["act"] == {"sub": client.client_id}
    assert claims(token)["aud"] == "https://downstream.example.com"


def test_token_exchange_accepts_the_n_a_token_type(server: AuthorizationServer) -> None:
    server.inject(
        body=json.dumps(
            {
                "access_token": "issued",
                "token_type": "N_A",
                "expires_in": 60,
                "issued_token_type": "urn:ietf:params:oauth:token-type:id_token",
            }
        ),
        content_type="application/json",
        times=1,
    )
    token = get_sync(TokenExchange(server.token_url, "subject", "jwt", "cid", "secret"))
    assert token.token_type == "N_A"
    assert token.extra["issued_token_type"] == "urn:ietf:params:oauth:token-type:id_token"


def test_other_grants_refuse_the_n_a_token_type(server: AuthorizationServer) -> None:
    server.inject(
        body=json.dumps({"access_token": "issued", "token_type": "N_A"}),
        content_type="application/json",
        times=1,
    )
    with pytest.raises(ft.TokenResponseError) as caught:
        get_sync(ClientCredentials(server.token_url, "cid", "secret"))
    assert caught.value.field == "token_type"


# -- the user's clients ------------------------------------------------------------------------


def test_the_users_http_client_is_used_and_never_follows_redirects(
    server: AuthorizationServer,
) -> None:
    """A token request answered with a redirect is an error even through a client configured to
    follow redirects: the credentials must not be replayed to another URL."""
    client = server.add_client()
    seen: list[str] = []
    with httpx.Client(
        follow_redirects=True, event_hooks={"request": [lambda r: seen.append(str(r.url))]}
    ) as user_client:
        grant = ClientCredentials(server.token_url, client.client_id, client.client_secret)
        with ft.TokenManager(grant, http=user_client, policy=FAST) as tokens:
            assert tokens.get()
        assert seen == [server.token_url]
        server.inject(status=307, body="", content_type="text/plain", times=1)
        with (
            ft.TokenManager(grant, http=user_client, policy=FAST) as tokens,
            pytest.raises(ft.TokenResponseError) as caught,
        ):
            tokens.get()
        assert caught.value.status == 307
        assert "redirect" in str(caught.value)
        assert not user_client.is_closed  # the user's client is theirs to close


def test_the_users_async_client_is_used(server: AuthorizationServer) -> None:
    client = server.add_client()
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(str(request.url))

    async def main() -> ft.Token:
        async with httpx.AsyncClient(event_hooks={"request": [hook]}) as user_client:
            grant = ClientCredentials(server.token_url, client.client_id, client.client_secret)
            async with ft.TokenManager(grant, async_http=user_client, policy=FAST) as tokens:
                return await tokens.aget()

    import asyncio

    assert asyncio.run(main())
    assert seen == [server.token_url]


def test_skew_of_the_server_clock_is_reported(server: AuthorizationServer) -> None:
    client = server.add_client()
    server.inject(clock_offset=120.0, times=1)
    events: list[ft.Event] = []
    grant = ClientCredentials(server.token_url, client.client_id, client.client_secret)
    with ft.TokenManager(grant, policy=FAST, on_event=events.append) as tokens:
        token = tokens.get()
    skews = [event for event in events if event.kind == "skew_detected"]
    assert len(skews) == 1
    assert skews[0].skew == pytest.approx(120.0, abs=5.0)
    assert token.lifetime == pytest.approx(3600.0)


def test_password_grant_passes_on_other_refusals_of_the_refresh_token(
    server: AuthorizationServer,
) -> None:
    client = server.add_client()
    server.add_user("alice", "pw")
    grant = PasswordGrant(server.token_url, "alice", "pw", client.client_id, client.client_secret)
    get_sync(grant)
    server.inject(status=401, body='{"error": "invalid_client"}', content_type="application/json")
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(grant)
    assert caught.value.error == "invalid_client"
    assert server.token_requests_by_grant == {"password": 1, "refresh_token": 1}


def test_jwt_bearer_without_a_client_shows_no_client_in_its_repr() -> None:
    grant = JWTBearerGrant("https://as.example.com/token", "a.b.c")
    assert (
        repr(grant) == "JWTBearerGrant(token_url='https://as.example.com/token', auth='anonymous')"
    )
