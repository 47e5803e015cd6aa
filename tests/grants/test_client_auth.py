"""Client-authentication values: key loading and checks at construction."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

import freshtoken as ft
from freshtoken._oauth.client_auth import ClientSecretJWT, PrivateKeyJWT, resolve_auth


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_keys_load_from_pem_objects_and_jwks(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwk = RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    for key in (rsa_key, pem, pem.decode(), jwk):
        assert PrivateKeyJWT(key, "PS256").algorithm == "PS256"
    okp = OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate(), as_dict=True)
    assert PrivateKeyJWT(okp, "EdDSA")
    assert PrivateKeyJWT(ed448.Ed448PrivateKey.generate(), "EdDSA")


def test_the_assertion_is_signed_with_the_key_and_names_its_key_id(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    auth = resolve_auth(
        PrivateKeyJWT(rsa_key, key_id="kid-1", audience="https://as.example.com"), "cid", None
    )
    credentials = dict(auth.credentials("https://as.example.com/token", 1_800_000_000.0).form)
    assertion = credentials["client_assertion"]
    assert jwt.get_unverified_header(assertion)["kid"] == "kid-1"
    claims = jwt.decode(
        assertion,
        rsa_key.public_key(),
        algorithms=["RS256"],
        audience="https://as.example.com",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == "cid"
    assert (claims["iat"], claims["exp"]) == (1_800_000_000, 1_800_000_060)
    assert credentials["client_id"] == "cid"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda k: PrivateKeyJWT(k, "HS256"), "must be one of"),  # type: ignore[arg-type]
        (lambda k: PrivateKeyJWT(k, "ES256"), "P-256"),
        (lambda k: PrivateKeyJWT(k, "EdDSA"), "Ed25519"),
        (lambda k: PrivateKeyJWT(ec.generate_private_key(ec.SECP256R1()), "RS256"), "RSA key"),
        (lambda k: PrivateKeyJWT(ec.generate_private_key(ec.SECP384R1()), "ES256"), "P-256"),
        (lambda k: PrivateKeyJWT(rsa.generate_private_key(65537, 1024), "RS256"), "2048"),
        (
            lambda k: PrivateKeyJWT("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"),
            "PEM",
        ),
        (lambda k: PrivateKeyJWT(b"\xff\xfe"), "PEM"),
        (lambda k: PrivateKeyJWT({"kty": "oct", "k": "c2VjcmV0"}), "kty"),
        (lambda k: PrivateKeyJWT({"kty": "EC", "crv": "P-256"}), "JWK"),
        (lambda k: PrivateKeyJWT(k.public_key()), "private key"),
        (lambda k: PrivateKeyJWT(42), "private key"),  # type: ignore[arg-type]
        (lambda k: PrivateKeyJWT(k, key_id=""), "key_id"),
        (lambda k: PrivateKeyJWT(k, audience=""), "audience"),
        (lambda k: ClientSecretJWT(""), "secret"),
        (lambda k: ClientSecretJWT(audience=""), "audience"),
    ],
)
def test_bad_keys_and_options_are_configuration_errors(
    rsa_key: rsa.RSAPrivateKey, make: Any, problem: str
) -> None:
    with pytest.raises(ft.ConfigurationError, match=problem):
        make(rsa_key)


def test_a_public_ec_jwk_is_not_a_private_key() -> None:
    public = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    with pytest.raises(ft.ConfigurationError, match="private key"):
        PrivateKeyJWT(public, "ES256")


def test_client_secret_jwt_may_carry_its_own_secret() -> None:
    auth = resolve_auth(
        ClientSecretJWT("own-secret", audience="https://as.example.com"), "cid", None
    )
    assertion = dict(auth.credentials("https://as.example.com/token", 0.0).form)["client_assertion"]
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["aud"] == "https://as.example.com"


def test_no_client_at_all_for_grants_that_do_not_need_one() -> None:
    auth = resolve_auth(None, None, None, required=False)
    credentials = auth.credentials("https://as.example.com/token", 0.0)
    assert (dict(credentials.headers), credentials.form) == ({}, ())
    assert repr(auth) == "ClientAuth('anonymous')"
    assert resolve_auth(None, "cid", None, required=False).name == "none"
