"""Token endpoint: every grant type, scopes, audiences, and RFC 6749 §5.2 errors."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from freshtoken.testing import AuthorizationServer, FakeClock
from tests.testing._helpers import (
    ACCESS_TOKEN_TYPE,
    JWT_BEARER,
    TOKEN_EXCHANGE,
    assertion,
    bearer,
    claims_of,
    client_auth,
    get_token,
    token_request,
)


def error_of(response: httpx.Response) -> str:
    error: str = response.json()["error"]
    return error


# -- client_credentials ----------------------------------------------------------------------


def test_client_credentials_issues_a_signed_jwt(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client()
    response = token_request(http, server, {"grant_type": "client_credentials"}, client=client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert "date" in response.headers
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert "refresh_token" not in body
    jwks = http.get(server.jwks_url).json()
    key = jwt.PyJWK(jwks["keys"][0])
    header = jwt.get_unverified_header(body["access_token"])
    assert header["kid"] == key.key_id
    assert header["alg"] == "ES256"
    claims = jwt.decode(
        body["access_token"],
        key,
        algorithms=["ES256"],
        audience=server.audience,
        issuer=server.issuer,
    )
    assert claims["sub"] == claims["client_id"] == client.client_id
    assert claims["exp"] - claims["iat"] == pytest.approx(3600)
    assert set(claims) >= {"iss", "sub", "aud", "iat", "exp", "jti", "client_id"}


def test_rs256_and_float_lifetime(http: httpx.Client) -> None:
    with AuthorizationServer(signing_algorithm="RS256", token_lifetime=1.5) as server:
        client = server.add_client()
        body = token_request(
            http, server, {"grant_type": "client_credentials"}, client=client
        ).json()
        assert body["expires_in"] == 1.5
        key = jwt.PyJWK(http.get(server.jwks_url).json()["keys"][0])
        claims = jwt.decode(
            body["access_token"], key, algorithms=["RS256"], audience=server.audience, leeway=60
        )
        assert claims["exp"] - claims["iat"] == pytest.approx(1.5, abs=0.002)


def test_integer_timestamps_never_outlive_expires_in(http: httpx.Client) -> None:
    with AuthorizationServer(token_lifetime=1.5, integer_timestamps=True) as server:
        client = server.add_client()
        claims = claims_of(get_token(http, server, client))
        assert isinstance(claims["iat"], int)
        assert isinstance(claims["exp"], int)
        assert claims["exp"] - claims["iat"] in (1, 2)


def test_unknown_signing_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported signing algorithm"):
        AuthorizationServer(signing_algorithm="HS256")  # type: ignore[arg-type]


def test_scopes_default_requested_and_refused(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client(scopes=["read", "write"])
    default = token_request(http, server, {"grant_type": "client_credentials"}, client=client)
    assert default.json()["scope"] == "read write"
    narrow = token_request(
        http, server, {"grant_type": "client_credentials", "scope": "read"}, client=client
    )
    assert narrow.json()["scope"] == "read"
    assert claims_of(narrow.json()["access_token"])["scope"] == "read"
    refused = token_request(
        http, server, {"grant_type": "client_credentials", "scope": "read admin"}, client=client
    )
    assert refused.status_code == 400
    assert error_of(refused) == "invalid_scope"


def test_any_scope_when_client_has_no_scope_list(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client()
    response = token_request(
        http, server, {"grant_type": "client_credentials", "scope": "x y x"}, client=client
    )
    assert response.json()["scope"] == "x y"
    no_scope = token_request(http, server, {"grant_type": "client_credentials"}, client=client)
    assert "scope" not in no_scope.json()


def test_audience_and_repeated_resource_become_aud(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client()
    token = get_token(http, server, client, audience="api://one")
    assert claims_of(token)["aud"] == "api://one"
    response = token_request(
        http,
        server,
        {
            "grant_type": "client_credentials",
            "resource": ["https://a.example/", "https://b.example/"],
        },
        client=client,
    )
    assert claims_of(response.json()["access_token"])["aud"] == [
        "https://a.example/",
        "https://b.example/",
    ]
    bad = token_request(
        http,
        server,
        {"grant_type": "client_credentials", "resource": "relative/path"},
        client=client,
    )
    assert error_of(bad) == "invalid_target"


def test_client_credentials_refresh_tokens_on_request(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client(refresh_tokens=True, token_lifetime=5)
    body = token_request(http, server, {"grant_type": "client_credentials"}, client=client).json()
    assert body["expires_in"] == 5
    assert body["refresh_token"]


# -- password ---------------------------------------------------------------------------------


def test_password_grant(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client()
    server.add_user("alice", "s3cret")
    ok = token_request(
        http,
        server,
        {"grant_type": "password", "username": "alice", "password": "s3cret"},
        client=client,
    )
    assert ok.status_code == 200
    assert claims_of(ok.json()["access_token"])["sub"] == "alice"
    assert ok.json()["refresh_token"]
    wrong = token_request(
        http,
        server,
        {"grant_type": "password", "username": "alice", "password": "nope"},
        client=client,
    )
    assert (wrong.status_code, error_of(wrong)) == (400, "invalid_grant")
    missing = token_request(
        http, server, {"grant_type": "password", "username": "alice"}, client=client
    )
    assert error_of(missing) == "invalid_request"


# -- refresh_token ----------------------------------------------------------------------------


def _password_tokens(server: AuthorizationServer, http: httpx.Client) -> tuple[str, str]:
    server.add_user("bob", "pw")
    body = token_request(
        http,
        server,
        {"grant_type": "password", "username": "bob", "password": "pw", "scope": "a b"},
        client=server.client,
    ).json()
    return body["access_token"], body["refresh_token"]


def test_refresh_rotates(server: AuthorizationServer, http: httpx.Client) -> None:
    server.add_client()
    _, refresh = _password_tokens(server, http)
    first = token_request(
        http,
        server,
        {"grant_type": "refresh_token", "refresh_token": refresh},
        client=server.client,
    )
    assert first.status_code == 200
    body = first.json()
    assert body["refresh_token"] != refresh
    assert body["scope"] == "a b"
    assert claims_of(body["access_token"])["sub"] == "bob"
    narrowed = token_request(
        http,
        server,
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "scope": "a"},
        client=server.client,
    )
    assert narrowed.json()["scope"] == "a"
    widened = token_request(
        http,
        server,
        {
            "grant_type": "refresh_token",
            "refresh_token": narrowed.json()["refresh_token"],
            "scope": "a c",
        },
        client=server.client,
    )
    assert error_of(widened) == "invalid_scope"


def test_refresh_reuse_revokes_the_whole_family(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    server.add_client()
    access, refresh = _password_tokens(server, http)
    rotated = token_request(
        http,
        server,
        {"grant_type": "refresh_token", "refresh_token": refresh},
        client=server.client,
    ).json()
    assert http.get(server.resource_url, headers=bearer(rotated["access_token"])).status_code == 200
    reuse = token_request(
        http,
        server,
        {"grant_type": "refresh_token", "refresh_token": refresh},
        client=server.client,
    )
    assert (reuse.status_code, error_of(reuse)) == (400, "invalid_grant")
    assert "reuse" in reuse.json()["error_description"]
    for token in (access, rotated["access_token"]):
        response = http.get(server.resource_url, headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["reason"] == "revoked"
    newest = token_request(
        http,
        server,
        {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]},
        client=server.client,
    )
    assert error_of(newest) == "invalid_grant"


def test_refresh_token_belongs_to_its_client(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    server.add_client()
    other = server.add_client()
    _, refresh = _password_tokens(server, http)
    stolen = token_request(
        http, server, {"grant_type": "refresh_token", "refresh_token": refresh}, client=other
    )
    assert error_of(stolen) == "invalid_grant"
    unknown = token_request(
        http, server, {"grant_type": "refresh_token", "refresh_token": "nope"}, client=other
    )
    assert error_of(unknown) == "invalid_grant"
    missing = token_request(http, server, {"grant_type": "refresh_token"}, client=other)
    assert error_of(missing) == "invalid_request"


def test_refresh_token_lifetime_and_audience_kept(http: httpx.Client) -> None:
    clock = FakeClock(time=time.time())
    with AuthorizationServer(clock=clock, refresh_token_lifetime=60) as server:
        client = server.add_client(refresh_tokens=True)
        body = token_request(
            http, server, {"grant_type": "client_credentials", "audience": "api://x"}, client=client
        ).json()
        again = token_request(
            http,
            server,
            {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            client=client,
        ).json()
        assert claims_of(again["access_token"])["aud"] == "api://x"
        clock.advance(60)
        expired = token_request(
            http,
            server,
            {"grant_type": "refresh_token", "refresh_token": again["refresh_token"]},
            client=client,
        )
        assert error_of(expired) == "invalid_grant"


def test_revoked_client_refresh_token_is_refused(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    server.add_client()
    _, refresh = _password_tokens(server, http)
    server.revoke_client(server.client.client_id)
    response = token_request(
        http,
        server,
        {"grant_type": "refresh_token", "refresh_token": refresh},
        client=server.client,
    )
    assert error_of(response) == "invalid_grant"


# -- jwt-bearer (RFC 7523 §2.1) ---------------------------------------------------------------


def test_jwt_bearer_with_registered_issuer(server: AuthorizationServer, http: httpx.Client) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    server.add_issuer("https://idp.example", key.public_key())
    grant = assertion(key, "EdDSA", iss="https://idp.example", sub="carol", aud=server.token_url)
    response = token_request(http, server, {"grant_type": JWT_BEARER, "assertion": grant})
    assert response.status_code == 200, response.text
    claims = claims_of(response.json()["access_token"])
    assert claims["sub"] == "carol"
    assert claims["client_id"] == "https://idp.example"
    assert (
        http.get(server.resource_url, headers=bearer(response.json()["access_token"])).status_code
        == 200
    )


def test_jwt_bearer_with_client_key_and_client_auth(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client(auth_methods=["client_secret_basic", "private_key_jwt"])
    assert client.private_key is not None
    grant = assertion(
        client.private_key, "ES256", iss=client.client_id, sub="dave", aud=server.issuer
    )
    response = token_request(
        http, server, {"grant_type": JWT_BEARER, "assertion": grant}, client=client
    )
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["client_id"] == client.client_id


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("untrusted", "not trusted"),
        ("signature", "signature"),
        ("audience", "aud"),
        ("expired", "expired"),
        ("not_jwt", "not a JWT"),
        ("no_sub", "iss and sub"),
        ("not_yet", "not valid yet"),
        ("no_exp", "numeric exp"),
    ],
)
def test_jwt_bearer_rejections(
    server: AuthorizationServer, http: httpx.Client, problem: str, expected: str
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    other = ed25519.Ed25519PrivateKey.generate()
    server.add_issuer("idp", key.public_key())
    grants = {
        "untrusted": assertion(key, "EdDSA", iss="stranger", aud=server.token_url),
        "signature": assertion(other, "EdDSA", iss="idp", aud=server.token_url),
        "audience": assertion(key, "EdDSA", iss="idp", aud="https://elsewhere"),
        "expired": assertion(key, "EdDSA", iss="idp", aud=server.token_url, lifetime=-1),
        "not_jwt": "not.a.jwt",
        "no_sub": jwt.encode({"iss": "idp", "aud": server.token_url, "exp": 4e9}, key, "EdDSA"),
        "not_yet": assertion(key, "EdDSA", iss="idp", aud=server.token_url, nbf=4e9),
        "no_exp": jwt.encode({"iss": "idp", "sub": "x", "aud": server.token_url}, key, "EdDSA"),
    }
    response = token_request(http, server, {"grant_type": JWT_BEARER, "assertion": grants[problem]})
    assert (response.status_code, error_of(response)) == (400, "invalid_grant")
    assert expected in response.json()["error_description"]


def test_jwt_bearer_needs_assertion(server: AuthorizationServer, http: httpx.Client) -> None:
    response = token_request(http, server, {"grant_type": JWT_BEARER})
    assert error_of(response) == "invalid_request"


# -- token exchange (RFC 8693) ----------------------------------------------------------------


def _exchange(
    server: AuthorizationServer, http: httpx.Client, subject: str, **extra: str
) -> httpx.Response:
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        **extra,
    }
    return token_request(http, server, data, client=server.client)


def test_token_exchange(server: AuthorizationServer, http: httpx.Client) -> None:
    server.add_client(client_id="gateway")
    subject = server.issue_token(client_id="frontend", sub="erin", scope="read write")
    response = _exchange(server, http, subject, audience="https://backend", scope="read")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["scope"] == "read"
    claims = claims_of(body["access_token"])
    assert (claims["sub"], claims["aud"], claims["act"]) == (
        "erin",
        "https://backend",
        {"sub": "gateway"},
    )
    no_scope_subject = server.issue_token(client_id="frontend", sub="erin")
    assert _exchange(server, http, no_scope_subject).status_code == 200
    jwt_type = _exchange(
        server, http, subject, requested_token_type="urn:ietf:params:oauth:token-type:jwt"
    )
    assert jwt_type.json()["issued_token_type"] == "urn:ietf:params:oauth:token-type:jwt"


def test_token_exchange_rejections(server: AuthorizationServer, http: httpx.Client) -> None:
    server.add_client()
    good = server.issue_token()
    expired = server.issue_token(lifetime=1, clock_offset=-10)
    revoked = server.issue_token()
    server.revoke(revoked)
    with AuthorizationServer() as other:
        foreign = other.issue_token()
    assert error_of(_exchange(server, http, expired)) == "invalid_grant"
    assert error_of(_exchange(server, http, revoked)) == "invalid_grant"
    assert error_of(_exchange(server, http, foreign)) == "invalid_grant"
    assert error_of(_exchange(server, http, "garbage")) == "invalid_grant"
    wrong_type = token_request(
        http,
        server,
        {"grant_type": TOKEN_EXCHANGE, "subject_token": good, "subject_token_type": "saml"},
        client=server.client,
    )
    assert error_of(wrong_type) == "invalid_request"
    wrong_requested = _exchange(server, http, good, requested_token_type="urn:x:refresh")
    assert error_of(wrong_requested) == "invalid_request"
    missing = token_request(http, server, {"grant_type": TOKEN_EXCHANGE}, client=server.client)
    assert error_of(missing) == "invalid_request"


# -- request errors ---------------------------------------------------------------------------


def test_request_errors(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client(grant_types=["client_credentials"])
    auth = client_auth(client)
    get = http.get(server.token_url, headers=auth)
    assert (get.status_code, error_of(get), get.headers["allow"]) == (
        405,
        "invalid_request",
        "POST",
    )
    as_json = http.post(server.token_url, json={"grant_type": "client_credentials"}, headers=auth)
    assert error_of(as_json) == "invalid_request"
    not_utf8 = http.post(
        server.token_url,
        content=b"grant_type=\xff",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert error_of(not_utf8) == "invalid_request"
    missing = token_request(http, server, {}, client=client)
    assert error_of(missing) == "invalid_request"
    unsupported = token_request(http, server, {"grant_type": "authorization_code"}, client=client)
    assert error_of(unsupported) == "unsupported_grant_type"
    repeated = token_request(
        http, server, {"grant_type": "client_credentials", "scope": ["a", "b"]}, client=client
    )
    assert error_of(repeated) == "invalid_request"
    server.add_user("u", "p")
    unauthorized = token_request(
        http, server, {"grant_type": "password", "username": "u", "password": "p"}, client=client
    )
    assert (unauthorized.status_code, error_of(unauthorized)) == (400, "unauthorized_client")
    for response in (get, missing, unsupported, unauthorized):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "application/json"
