"""Client authentication: every method, and the ways each one fails."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import RSAAlgorithm

from freshtoken.testing import AuthorizationServer, Client
from tests.testing._helpers import ASSERTION_TYPE, assertion, basic, token_request

CC = {"grant_type": "client_credentials"}


def assert_invalid_client(response: httpx.Response, *, basic_challenge: bool = False) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["cache-control"] == "no-store"
    if basic_challenge:
        assert response.headers["www-authenticate"] == 'Basic realm="freshtoken-testing"'
    else:
        assert "www-authenticate" not in response.headers


# -- client_secret_basic ---------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["with:colon", "plus+sign", "100%", "ünïcødé ü", "a b+c%20:d"])
def test_basic_decodes_rfc6749_form_encoding(
    server: AuthorizationServer, http: httpx.Client, secret: str
) -> None:
    client = server.add_client("id with:colon+ü", secret)
    response = token_request(http, server, CC, headers=basic(client.client_id, secret))
    assert response.status_code == 200, response.text


def test_basic_failures(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client()
    assert client.client_secret is not None
    wrong = token_request(http, server, CC, headers=basic(client.client_id, "wrong"))
    assert_invalid_client(wrong, basic_challenge=True)
    unknown = token_request(http, server, CC, headers=basic("nobody", "x"))
    assert_invalid_client(unknown, basic_challenge=True)
    for header in (
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
    ):
        malformed = token_request(http, server, CC, headers={"Authorization": header})
        assert_invalid_client(malformed, basic_challenge=True)
    mismatch = token_request(
        http,
        server,
        {**CC, "client_id": "someone-else"},
        headers=basic(client.client_id, client.client_secret),
    )
    assert mismatch.json()["error"] == "invalid_request"


def test_method_must_be_registered(server: AuthorizationServer, http: httpx.Client) -> None:
    post_only = server.add_client(auth_methods="client_secret_post")
    assert post_only.client_secret is not None
    response = token_request(
        http, server, CC, headers=basic(post_only.client_id, post_only.client_secret)
    )
    assert_invalid_client(response, basic_challenge=True)
    assert "client_secret_basic" in response.json()["error_description"]


def test_two_methods_at_once_is_invalid_request(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client()
    assert client.client_secret is not None
    response = token_request(
        http,
        server,
        {**CC, "client_id": client.client_id, "client_secret": client.client_secret},
        headers=basic(client.client_id, client.client_secret),
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


# -- client_secret_post and none ------------------------------------------------------------


def test_client_secret_post(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client()
    ok = token_request(
        http, server, {**CC, "client_id": client.client_id, "client_secret": client.client_secret}
    )
    assert ok.status_code == 200
    wrong = token_request(http, server, {**CC, "client_id": client.client_id, "client_secret": "x"})
    assert_invalid_client(wrong)
    no_id = token_request(http, server, {**CC, "client_secret": "x"})
    assert_invalid_client(no_id)


def test_public_client_with_none(server: AuthorizationServer, http: httpx.Client) -> None:
    public = server.add_client(auth_methods="none")
    assert public.client_secret is None
    assert token_request(http, server, {**CC, "client_id": public.client_id}).status_code == 200
    confidential = server.add_client()
    assert_invalid_client(token_request(http, server, {**CC, "client_id": confidential.client_id}))
    assert_invalid_client(token_request(http, server, CC))


def test_client_repr_hides_secrets(server: AuthorizationServer) -> None:
    client = server.add_client(client_secret="super-secret-value")
    assert "super-secret-value" not in repr(client)


def test_registration_errors(server: AuthorizationServer) -> None:
    server.add_client("dup")
    with pytest.raises(ValueError, match="already registered"):
        server.add_client("dup")
    with pytest.raises(ValueError, match="unknown auth method"):
        server.add_client(auth_methods=["magic"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        server.add_client(auth_methods=[])
    with pytest.raises(ValueError, match="unknown grant type"):
        server.add_client(grant_types=["implicit"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="token_lifetime"):
        server.add_client(token_lifetime=0)
    with pytest.raises(ValueError, match="token_lifetime"):
        AuthorizationServer(token_lifetime=0)
    with pytest.raises(ValueError, match="JWK key type"):
        server.add_client(public_key={"kty": "oct", "k": "abc"})
    with pytest.raises(ValueError, match="P-256"):
        server.add_client(public_key=ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(ValueError, match="unsupported public key"):
        server.add_client(public_key=object())  # type: ignore[arg-type]


# -- client_secret_jwt and private_key_jwt ----------------------------------------------------


def assertion_form(token: str, **extra: str) -> dict[str, str]:
    return {**CC, "client_assertion_type": ASSERTION_TYPE, "client_assertion": token, **extra}


def test_client_secret_jwt(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client(auth_methods="client_secret_jwt")
    assert client.client_secret is not None
    token = assertion(
        client.client_secret.encode(), "HS256", iss=client.client_id, aud=server.token_url
    )
    assert token_request(http, server, assertion_form(token)).status_code == 200
    replay = token_request(http, server, assertion_form(token))
    assert_invalid_client(replay)
    assert "already used" in replay.json()["error_description"]
    forged = assertion(
        b"not-the-secret-but-long-enough-for-hs256",
        "HS256",
        iss=client.client_id,
        aud=server.token_url,
    )
    assert_invalid_client(token_request(http, server, assertion_form(forged)))


def _keys() -> dict[str, tuple[Any, Any]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "RS256": (rsa_key, RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)),
        "PS256": (rsa_key, rsa_key.public_key()),
        "ES256": (ec_key, pem.decode()),
        "EdDSA": (ed_key, ed_key.public_key()),
    }


def test_private_key_jwt_all_algorithms(server: AuthorizationServer, http: httpx.Client) -> None:
    for algorithm, (private, public) in _keys().items():
        client = server.add_client(auth_methods="private_key_jwt", public_key=public)
        assert client.private_key is None
        for aud in (server.token_url, [server.issuer, "https://other"]):
            token = assertion(private, algorithm, iss=client.client_id, aud=aud)
            response = token_request(http, server, assertion_form(token))
            assert response.status_code == 200, (algorithm, response.text)


def test_private_key_jwt_with_generated_key(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client(auth_methods=["private_key_jwt"])
    assert client.private_key is not None
    assert client.client_secret is None
    token = assertion(client.private_key, "ES256", iss=client.client_id, aud=server.token_url)
    response = token_request(http, server, assertion_form(token, client_id=client.client_id))
    assert response.status_code == 200


def test_private_key_pem_is_accepted_as_public_key(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    client = server.add_client(auth_methods="private_key_jwt", public_key=pem)
    token = assertion(key, "ES256", iss=client.client_id, aud=server.token_url)
    assert token_request(http, server, assertion_form(token)).status_code == 200


@pytest.mark.parametrize(
    "problem",
    [
        "expired",
        "audience",
        "iss_not_sub",
        "no_jti",
        "wrong_key",
        "wrong_type",
        "not_jwt",
        "no_sub",
        "replay",
        "hs256_for_key_client",
    ],
)
def test_private_key_jwt_rejections(
    server: AuthorizationServer, http: httpx.Client, problem: str
) -> None:
    client: Client = server.add_client(auth_methods="private_key_jwt")
    key = client.private_key
    assert key is not None
    cid = client.client_id
    aud = server.token_url
    jti = secrets.token_hex(4)
    forms = {
        "expired": assertion_form(assertion(key, "ES256", iss=cid, aud=aud, lifetime=-5)),
        "audience": assertion_form(assertion(key, "ES256", iss=cid, aud="https://x")),
        "iss_not_sub": assertion_form(assertion(key, "ES256", iss="x", sub=cid, aud=aud)),
        "no_jti": assertion_form(
            jwt.encode({"iss": cid, "sub": cid, "aud": aud, "exp": 4e9}, key, "ES256")
        ),
        "wrong_key": assertion_form(
            assertion(ec.generate_private_key(ec.SECP256R1()), "ES256", iss=cid, aud=aud)
        ),
        "wrong_type": {
            **assertion_form(assertion(key, "ES256", iss=cid, aud=aud)),
            "client_assertion_type": "urn:other",
        },
        "not_jwt": assertion_form("garbage"),
        "no_sub": assertion_form(jwt.encode({"iss": cid, "aud": aud, "exp": 4e9}, key, "ES256")),
        "replay": assertion_form(assertion(key, "ES256", iss=cid, aud=aud, jti=jti)),
        "hs256_for_key_client": assertion_form(
            assertion(b"0123456789abcdef0123456789abcdef", "HS256", iss=cid, aud=aud)
        ),
    }
    if problem == "replay":
        assert token_request(http, server, forms[problem]).status_code == 200
        forms[problem] = assertion_form(assertion(key, "ES256", iss=cid, aud=aud, jti=jti))
    assert_invalid_client(token_request(http, server, forms[problem]))


def test_replay_cache_is_pruned(server: AuthorizationServer) -> None:
    """Past 10,000 remembered jtis, expired ones are forgotten (memory stays bounded)."""
    from freshtoken.testing._app import ServerCore

    core = server._core
    assert isinstance(core, ServerCore)
    seen = core.auth._seen_jtis
    for i in range(10_001):
        seen[("c", f"old{i}")] = 0.0
    core.auth._remember_jti("c", "new", 4e9, now=1.0)
    assert set(core.auth._seen_jtis) == {("c", "new")}
