"""DPoPKey and its proofs, without a network: constructors, claims, htu, nonces, secrecy."""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
import traceback
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

import freshtoken as ft
from freshtoken._oauth.dpop import (
    DPoPPresenter,
    access_token_hash,
    asks_for_nonce,
    htu,
    origin,
    proof_claims,
    response_nonce,
    thumbprint,
)
from freshtoken._oauth.http import HttpResponse
from freshtoken._oauth.retry import nonce_retry

from .server import b64url, jkt

ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"]


@pytest.fixture(scope="module")
def keys() -> dict[str, ft.DPoPKey]:
    return {algorithm: ft.DPoPKey.generate(algorithm) for algorithm in ALGORITHMS}  # type: ignore[arg-type]


def verified(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a proof, its signature checked with the JWK it carries."""
    header = jwt.get_unverified_header(proof)
    key = jwt.PyJWK(header["jwk"], algorithm=header["alg"])
    return header, jwt.decode(proof, key.key, algorithms=[header["alg"]])


# -- proofs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_proof_verifies_with_its_public_jwk(keys: dict[str, ft.DPoPKey], algorithm: str) -> None:
    key = keys[algorithm]
    proof = key.proof("POST", "https://as.example/token", now=1_700_000_000.5)
    header, claims = verified(proof)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == algorithm == key.algorithm
    assert header["jwk"] == key.public_jwk
    assert "d" not in header["jwk"] and "p" not in header["jwk"]
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://as.example/token"
    assert claims["iat"] == 1_700_000_000
    assert "ath" not in claims and "nonce" not in claims
    assert jkt(header["jwk"]) == key.thumbprint


def test_each_proof_has_a_fresh_jti(keys: dict[str, ft.DPoPKey]) -> None:
    key = keys["ES256"]
    jtis = {verified(key.proof("GET", "https://r.example/", now=0))[1]["jti"] for _ in range(50)}
    assert len(jtis) == 50
    assert all(len(jti) >= 22 for jti in jtis)  # at least 128 bits


def test_the_jti_generator_is_injectable() -> None:
    counter = iter(range(100))
    key = ft.DPoPKey(ec.generate_private_key(ec.SECP256R1()), jti=lambda: f"jti-{next(counter)}")
    assert verified(key.proof("GET", "https://r.example/", now=0))[1]["jti"] == "jti-0"
    assert verified(key.proof("GET", "https://r.example/", now=0))[1]["jti"] == "jti-1"


def test_ath_is_base64url_sha256_of_the_access_token(keys: dict[str, ft.DPoPKey]) -> None:
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    # RFC 9449 §7.1's example pair.
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    _, claims = verified(
        keys["EdDSA"].proof("GET", "https://r.example/", now=0, access_token=token)
    )
    assert claims["ath"] == b64url(hashlib.sha256(token.encode()).digest())


def test_claims_are_pure_and_take_their_time_and_jti() -> None:
    claims = proof_claims(
        "get", "HTTPS://R.Example:443/a?q=1#x", now=12.9, jti="j", nonce="n", access_token="t"
    )
    assert claims == {
        "jti": "j",
        "htm": "GET",
        "htu": "https://r.example/a",
        "iat": 12,
        "nonce": "n",
        "ath": access_token_hash("t"),
    }


@pytest.mark.parametrize("method", ["", "GE T", "GET\r\n", "Ü", 7])
def test_a_bad_method_is_refused(method: Any) -> None:
    with pytest.raises(ft.ConfigurationError, match="HTTP method"):
        proof_claims(method, "https://r.example/", now=0, jti="j")


HTU = [
    ("https://server.example.com/token", "https://server.example.com/token"),
    ("HTTPS://Server.Example.COM/token", "https://server.example.com/token"),
    ("https://server.example.com:443/token", "https://server.example.com/token"),
    ("http://server.example.com:80/token", "http://server.example.com/token"),
    ("https://server.example.com:8443/token", "https://server.example.com:8443/token"),
    ("http://server.example.com:443/x", "http://server.example.com:443/x"),
    ("https://server.example.com/token?x=1&y=2", "https://server.example.com/token"),
    ("https://server.example.com/token#frag", "https://server.example.com/token"),
    ("https://server.example.com/token?q#f", "https://server.example.com/token"),
    ("https://server.example.com", "https://server.example.com/"),
    ("https://server.example.com?x", "https://server.example.com/"),
    ("https://user:pw@server.example.com/t", "https://server.example.com/t"),
    ("https://server.example.com/a/./b/../c", "https://server.example.com/a/c"),
    ("https://server.example.com/a/..", "https://server.example.com/"),
    ("https://server.example.com/a/b/.", "https://server.example.com/a/b/"),
    ("https://server.example.com/../a", "https://server.example.com/a"),
    ("https://server.example.com/%7euser/%2fx%3a", "https://server.example.com/~user/%2Fx%3A"),
    ("https://server.example.com/%41bc", "https://server.example.com/Abc"),
    ("https://server.example.com/Path/CASE", "https://server.example.com/Path/CASE"),
    ("https://server.example.com/a b", "https://server.example.com/a%20b"),
    ("https://[::1]:8443/t", "https://[::1]:8443/t"),
    ("https://[::1]:443/t", "https://[::1]/t"),
    ("http://127.0.0.1:8080/t", "http://127.0.0.1:8080/t"),
    ("https://bücher.example/t", "https://xn--bcher-kva.example/t"),
    ("https://server.example.com./t", "https://server.example.com./t"),
]


@pytest.mark.parametrize(("url", "expected"), HTU, ids=[url for url, _ in HTU])
def test_htu_normalisation(url: str, expected: str) -> None:
    assert htu(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "/token",
        "server.example.com/token",
        "ftp://server.example.com/t",
        "https:///t",
        "https://server.example.com:99999/t",
        "https://server.example.com:x/t",
        "https://server.example.com/t\n",
        "https://server.example.com/t\x7f",
        "https://server .example.com/t",
        "https://" + "ü" * 70 + ".example/t",  # an IDNA label over 63 characters
        None,
        b"https://server.example.com/",
    ],
)
def test_htu_refuses_what_is_not_an_absolute_http_url(url: Any) -> None:
    with pytest.raises(ft.ConfigurationError, match="request URL"):
        htu(url)


def test_origin_drops_the_default_port_and_the_path() -> None:
    assert origin("HTTPS://A.example:443/x?y") == "https://a.example"
    assert origin("http://a.example:8080/") == "http://a.example:8080"


# -- nonces -------------------------------------------------------------------------------------


def response(status: int, body: dict[str, Any] | None, **headers: str) -> HttpResponse:
    lowered = {name.lower().replace("_", "-"): value for name, value in headers.items()}
    if body is not None:
        lowered["content-type"] = "application/json"
    return HttpResponse(status, lowered, json.dumps(body).encode() if body is not None else b"")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (response(400, {"error": "use_dpop_nonce"}, DPoP_Nonce="abc"), True),
        (response(400, {"error": "use_dpop_nonce"}), False),  # no nonce: nothing to retry with
        (response(400, {"error": "use_dpop_nonce"}, DPoP_Nonce="a b"), False),
        (response(400, {"error": "use_dpop_nonce"}, DPoP_Nonce='a"b'), False),
        (response(400, {"error": "use_dpop_nonce"}, DPoP_Nonce="x" * 2000), False),
        (response(400, {"error": "invalid_dpop_proof"}, DPoP_Nonce="abc"), False),
        (response(401, {"error": "use_dpop_nonce"}, DPoP_Nonce="abc"), False),
        (response(200, {"access_token": "x"}, DPoP_Nonce="abc"), False),
        (response(400, None, DPoP_Nonce="abc"), False),
    ],
)
def test_what_counts_as_a_nonce_demand(reply: HttpResponse, expected: bool) -> None:
    assert asks_for_nonce(reply) is expected
    assert nonce_retry(reply, retried=False) is expected
    assert nonce_retry(reply, retried=True) is False  # once per request


def test_nonce_retry_ignores_transport_failures() -> None:
    from freshtoken._oauth.http import TransportFailure

    assert nonce_retry(TransportFailure("network"), retried=False) is False
    assert nonce_retry(None, retried=False) is False


def test_response_nonce_trims_and_validates() -> None:
    assert response_nonce(response(200, None, DPoP_Nonce=" eyJ7S_zG.9WDZ ")) == "eyJ7S_zG.9WDZ"
    assert response_nonce(response(200, None)) is None
    assert response_nonce(response(200, None, DPoP_Nonce="")) is None


def test_nonces_are_kept_per_origin_and_go_into_proofs() -> None:
    key = ft.DPoPKey.generate()
    key.remember_nonce("https://as.example/token", "n1")
    key.remember_nonce("https://api.example:443/v1/x?y", "n2")
    key.remember_nonce("https://api.example/bad", "not a nonce")  # ignored
    assert key.nonce_for("https://as.example/other") == "n1"
    assert key.nonce_for("https://api.example/") == "n2"
    assert key.nonce_for("https://api.example:8443/") is None
    assert verified(key.proof("POST", "https://as.example/token", now=0))[1]["nonce"] == "n1"
    assert verified(key.proof("GET", "https://api.example/z", now=0))[1]["nonce"] == "n2"
    assert "nonce" not in verified(key.proof("GET", "https://other.example/", now=0))[1]
    explicit = key.proof("GET", "https://api.example/z", now=0, nonce="given")
    assert verified(explicit)[1]["nonce"] == "given"
    key.remember_nonce("https://as.example/token", "n3")  # the newest wins
    assert key.nonce_for("https://as.example/token") == "n3"


def test_the_nonce_cache_is_bounded() -> None:
    key = ft.DPoPKey.generate()
    for index in range(300):
        key.remember_nonce(f"https://h{index}.example/", f"n{index}")
    assert key.nonce_for("https://h0.example/") is None
    assert key.nonce_for("https://h299.example/") == "n299"


def test_the_nonce_cache_is_shared_by_threads() -> None:
    key = ft.DPoPKey.generate()
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for round in range(200):
                key.remember_nonce(f"https://h{index % 4}.example/", f"n{index}-{round}")
                assert key.nonce_for(f"https://h{index % 4}.example/") is not None
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors


def test_a_presenter_signs_with_the_managers_clock() -> None:
    key = ft.DPoPKey.generate("EdDSA")
    presenter = DPoPPresenter(key, lambda: 1_234_567.0)
    assert presenter.key is key
    _, claims = verified(presenter("get", "https://api.example/x?y=1", "tok"))
    assert claims["iat"] == 1_234_567
    assert claims["htm"] == "GET" and claims["htu"] == "https://api.example/x"
    assert claims["ath"] == access_token_hash("tok")
    assert repr(presenter) == f"DPoPPresenter({key!r})"


# -- keys ---------------------------------------------------------------------------------------

# RFC 7638 §3.1's example key and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t"
        "Soc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-6"
        "5YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNL"
        "yrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJz"
        "KnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_thumbprint_matches_rfc_7638() -> None:
    assert thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pem_and_jwk_round_trips_keep_the_thumbprint(
    keys: dict[str, ft.DPoPKey], algorithm: str
) -> None:
    key = keys[algorithm]
    pem = key._private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    again = ft.DPoPKey.from_pem(pem, password="pw", algorithm=key.algorithm)  # type: ignore[arg-type]
    assert again.thumbprint == key.thumbprint and again.algorithm == algorithm
    kind: Any = {"ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}.get(algorithm, RSAAlgorithm)
    as_jwk = json.loads(kind.to_jwk(key._private))
    from_jwk = ft.DPoPKey.from_jwk({**as_jwk, "alg": algorithm})
    assert from_jwk.thumbprint == key.thumbprint and from_jwk.algorithm == algorithm
    from_text = ft.DPoPKey.from_jwk(json.dumps(as_jwk), algorithm=algorithm)  # type: ignore[arg-type]
    assert from_text.thumbprint == key.thumbprint


def test_default_algorithms_follow_the_key_type() -> None:
    assert (
        ft.DPoPKey(rsa.generate_private_key(public_exponent=65537, key_size=2048)).algorithm
        == "RS256"
    )
    assert ft.DPoPKey(ed448.Ed448PrivateKey.generate()).algorithm == "EdDSA"
    assert ft.DPoPKey.generate().algorithm == "ES256"
    assert ft.DPoPKey(ed25519.Ed25519PrivateKey.generate()).public_jwk["crv"] == "Ed25519"


def test_public_jwk_is_a_copy() -> None:
    key = ft.DPoPKey.generate()
    jwk = key.public_jwk
    jwk["kty"] = "oops"
    assert key.public_jwk["kty"] == "EC"
    assert set(key.public_jwk) == {"kty", "crv", "x", "y"}


# -- hostile input: every bad key is a ConfigurationError that names the problem ---------------

SECRET_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)
_PEM_BODY = SECRET_PEM.splitlines()[1]
ENCRYPTED_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right"),
    )
    .decode()
)
_EC_JWK = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
_SECRET_D = _EC_JWK["d"]


def _public_pem() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _pem_of(key: Any) -> str:
    pem: str = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem


PEM_CASES: list[tuple[str, Any, Any, str]] = [
    ("empty", "", None, "not PEM"),
    ("not pem", "hello", None, "not PEM"),
    ("int", 42, None, "str or bytes"),
    ("dict", {"kty": "EC"}, None, "str or bytes"),
    ("huge", "-----BEGIN " + "A" * 70_000, None, "64 KiB"),
    ("public key", _public_pem(), None, "public key"),
    ("truncated", SECRET_PEM[: len(SECRET_PEM) // 2], None, "not a PEM private key"),
    ("garbled body", SECRET_PEM.replace(_PEM_BODY, _PEM_BODY[::-1]), None, "not a PEM private"),
    ("encrypted, no password", ENCRYPTED_PEM, None, "needs password="),
    ("wrong password", ENCRYPTED_PEM, "wrong", "password does not decrypt"),
    ("password for a plain key", SECRET_PEM, "pw", "not encrypted"),
    ("password of a bad type", SECRET_PEM, 5, "password must be"),
    ("unsupported curve", _pem_of(ec.generate_private_key(ec.SECP384R1())), None, "P-256"),
    ("x25519", _pem_of(x25519.X25519PrivateKey.generate()), None, "got X25519PrivateKey"),
    ("dsa", _pem_of(dsa.generate_private_key(2048)), None, "got DSAPrivateKey"),
    (
        "small rsa",
        _pem_of(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        None,
        "2048 bits",
    ),
    ("surrogates", "-----BEGIN PRIVATE KEY-----\ud800\n", None, "not a PEM private key"),
]


@pytest.mark.parametrize(
    ("data", "password", "message"),
    [case[1:] for case in PEM_CASES],
    ids=[case[0] for case in PEM_CASES],
)
def test_hostile_pem(data: Any, password: Any, message: str) -> None:
    with pytest.raises(ft.ConfigurationError, match=message) as caught:
        ft.DPoPKey.from_pem(data, password)
    assert_no_key_material(caught.value)


JWK_CASES: list[tuple[str, Any, str]] = [
    ("not a mapping", ["EC"], "JWK mapping"),
    ("not json", "{nope", "not JSON"),
    ("json list", "[1]", "JWK mapping"),
    ("huge text", "[" * 70_000, "64 KiB"),
    ("deep json", "[" * 60_000 + "]" * 60_000, "64 KiB"),
    ("no kty", {"d": "x"}, "kty RSA, EC or OKP"),
    ("kty oct", {"kty": "oct", "k": "c2VjcmV0"}, "kty RSA, EC or OKP"),
    ("kty not a string", {"kty": ["EC"], "d": "x"}, "kty RSA, EC or OKP"),
    ("public only", {k: v for k, v in _EC_JWK.items() if k != "d"}, "no private member d"),
    ("bad d", {**_EC_JWK, "d": "!!!"}, "could not be loaded"),
    ("d of a wrong type", {**_EC_JWK, "d": 12}, "could not be loaded"),
    ("missing x", {k: v for k, v in _EC_JWK.items() if k != "x"}, "could not be loaded"),
    ("wrong curve", {**_EC_JWK, "crv": "P-384"}, "could not be loaded"),
    ("unknown curve", {**_EC_JWK, "crv": "P-999"}, "could not be loaded"),
    ("alg HS256", {**_EC_JWK, "alg": "HS256"}, "alg is not one of"),
    ("alg none", {**_EC_JWK, "alg": "none"}, "alg is not one of"),
    ("alg of a wrong type", {**_EC_JWK, "alg": 1}, "alg is not one of"),
    ("alg RS256 on EC", {**_EC_JWK, "alg": "RS256"}, "needs an RSA key"),
    ("rsa without primes", {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}, "could not be"),
    ("okp bad crv", {"kty": "OKP", "crv": "X25519", "x": "AA", "d": "AA"}, "could not be loaded"),
]


@pytest.mark.parametrize(
    ("jwk", "message"), [case[1:] for case in JWK_CASES], ids=[case[0] for case in JWK_CASES]
)
def test_hostile_jwk(jwk: Any, message: str) -> None:
    with pytest.raises(ft.ConfigurationError, match=message) as caught:
        ft.DPoPKey.from_jwk(jwk)
    assert_no_key_material(caught.value)


def test_jwk_alg_and_algorithm_must_agree() -> None:
    with pytest.raises(ft.ConfigurationError, match="disagrees"):
        ft.DPoPKey.from_jwk({**_EC_JWK, "alg": "ES256"}, algorithm="EdDSA")


@pytest.mark.parametrize("algorithm", ["HS256", "none", "ES384", "", None, 3, "x" * 100])
def test_unsupported_algorithms(algorithm: Any) -> None:
    with pytest.raises(ft.ConfigurationError, match="not supported"):
        ft.DPoPKey.generate(algorithm)


@pytest.mark.parametrize(
    ("key", "algorithm", "message"),
    [
        ("not a key", None, "got str"),
        (ec.generate_private_key(ec.SECP256R1()).public_key(), None, r"got \w*PublicKey"),
        (ec.generate_private_key(ec.SECP256R1()), "RS256", "needs an RSA key"),
        (ec.generate_private_key(ec.SECP256R1()), "EdDSA", "Ed25519 or Ed448"),
        (ed25519.Ed25519PrivateKey.generate(), "ES256", "P-256"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "ES256", "P-256"),
    ],
)
def test_a_key_of_the_wrong_kind(key: Any, algorithm: Any, message: str) -> None:
    with pytest.raises(ft.ConfigurationError, match=message):
        ft.DPoPKey(key, algorithm)


def assert_no_key_material(error: BaseException) -> None:
    text = "".join(traceback.format_exception(error)) + repr(error) + str(error)
    for secret in (_PEM_BODY, _SECRET_D, "right", "wrong"):
        assert secret not in text
    assert error.__cause__ is None  # nothing chained that might quote the input


def test_the_private_key_never_shows() -> None:
    key = ft.DPoPKey.from_jwk(_EC_JWK)
    for text in (
        repr(key),
        str(key),
        f"{key}",
        repr(ft.ClientCredentials("https://as.example/token", "id", "secret", dpop=key)),
    ):
        assert _SECRET_D not in text
        assert key.thumbprint in text
    assert repr(key) == f"DPoPKey(algorithm='ES256', thumbprint={key.thumbprint!r})"
    proof = key.proof("GET", "https://r.example/", now=0)
    assert _SECRET_D not in json.dumps(jwt.get_unverified_header(proof))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    assert not hasattr(key, "__dict__")  # slots only: no vars() dump
