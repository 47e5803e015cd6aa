"""The DPoP verifier's pure parts: URL normalisation, hashes, thumbprints, replay cache, nonces."""

from __future__ import annotations

import jwt
import pytest

from freshtoken.testing import FakeClock
from freshtoken.testing._dpop import (
    DPoPVerifier,
    ProofError,
    access_token_hash,
    normalize_htu,
    request_url,
)
from freshtoken.testing._keys import jwk_thumbprint
from tests.testing._dpop_helpers import new_key, proof, public_jwk, thumbprint

URL = "https://server.example.com/token"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://server.example.com/token", URL),
        ("HTTPS://Server.Example.COM/token", URL),
        ("https://server.example.com:443/token", URL),
        ("https://server.example.com/token?a=1#frag", URL),
        ("http://server.example.com:80/token", "http://server.example.com/token"),
        ("http://server.example.com:8080/token", "http://server.example.com:8080/token"),
        ("https://server.example.com:80/token", "https://server.example.com:80/token"),
        ("http://server.example.com", "http://server.example.com/"),
        ("http://[::1]:8080/api", "http://[::1]:8080/api"),
        ("http://h/%7e%41%2f", "http://h/~A%2F"),  # unreserved decoded, others upper-cased
        ("http://h/%zz%4", "http://h/%zz%4"),  # not escapes: left alone
        ("http://h/a%20b", "http://h/a%20B".replace("B", "b")),
        ("ftp://server.example.com/token", None),
        ("server.example.com/token", None),
        ("http:///token", None),
        ("http://user@h/token", None),
        ("http://h:99999/token", None),
        ("http://[::1/token", None),
    ],
)
def test_normalize_htu(url: str, normal: str | None) -> None:
    assert normalize_htu(url) == normal


def test_request_url() -> None:
    assert request_url("http://127.0.0.1:1", "localhost:1", "/t?q") == "http://localhost:1/t?q"
    assert request_url("https://127.0.0.1:1", "h", "/t") == "https://h/t"
    assert request_url("http://127.0.0.1:1", None, "/t") == "http://127.0.0.1:1/t"
    assert request_url("http://127.0.0.1:1", "h", "http://other/t") == "http://other/t"


def test_rfc_examples() -> None:
    # RFC 7638 §3.1
    rsa_jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
        "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQ"
        "R0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTW"
        "hAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(rsa_jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert thumbprint(rsa_jwk) == jwk_thumbprint(rsa_jwk)
    for algorithm in ("ES256", "EdDSA"):
        jwk = public_jwk(new_key(algorithm))
        assert jwk_thumbprint(jwk) == thumbprint(jwk)
    # RFC 9449 §7.1
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_settings_are_checked() -> None:
    clock = FakeClock()
    for settings, name in (
        ({"iat_window": 0}, "dpop_iat_window"),
        ({"nonce_lifetime": -1}, "dpop_nonce_lifetime"),
        ({"nonce_grace": -0.5}, "dpop_nonce_grace"),
        ({"replay_limit": 0}, "replay_limit"),
    ):
        with pytest.raises(ValueError, match=name):
            DPoPVerifier(clock, **settings)


def test_nonces_off() -> None:
    verifier = DPoPVerifier(FakeClock())
    assert verifier.current_nonce() is None
    with pytest.raises(RuntimeError, match="dpop_nonce=True"):
        verifier.rotate_nonce()


def test_replay_cache_is_bounded() -> None:
    clock = FakeClock()
    verifier = DPoPVerifier(clock, iat_window=10, replay_limit=2)
    key = new_key()

    def signed(jti: str) -> str:
        return proof(key, htu=URL, jti=jti, now=clock.time())

    def check(value: str) -> None:
        verifier.verify(value, method="POST", url=URL)

    first, second, third = signed("1"), signed("2"), signed("3")
    check(first)
    check(second)
    check(third)  # full and nothing expired: the oldest entry makes room
    with pytest.raises(ProofError, match="already used"):
        check(third)
    with pytest.raises(ProofError, match="already used"):
        check(second)
    check(first)  # forgotten: the price of a bounded cache
    clock.advance(11)  # every entry has left the window and is pruned at the next insert
    fourth, fifth = signed("4"), signed("5")
    check(fourth)
    check(fifth)
    with pytest.raises(ProofError, match="already used"):
        check(fourth)


def test_signed_payload_that_is_not_an_object() -> None:
    key = new_key()
    headers = {"typ": "dpop+jwt", "jwk": public_jwk(key)}
    value = jwt.PyJWS().encode(b"[1, 2]", key, algorithm="ES256", headers=headers)
    with pytest.raises(ProofError, match="JSON object") as caught:
        DPoPVerifier(FakeClock()).verify(value, method="POST", url=URL)
    assert caught.value.error == "invalid_dpop_proof"
    assert value not in str(caught.value)
