"""DPoP (RFC 9449) in the test server: proofs checked at the token and resource endpoints.

Proofs are built in the tests with PyJWT and cryptography (tests/testing/_dpop_helpers.py) and
sent over real HTTP, so every check of RFC 9449 §4.3 is exercised through the server's sockets.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.warnings import InsecureKeyLengthWarning

from freshtoken.testing import AuthorizationServer, Client, FakeClock
from tests.testing._dpop_helpers import (
    b64,
    dpop_resource,
    dpop_token_request,
    forged,
    new_key,
    private_jwk,
    proof,
    public_jwk,
    thumbprint,
)
from tests.testing._helpers import bearer, claims_of, get_token

ES_KEY = new_key("ES256")
OTHER_KEY = new_key("ES256")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time=time.time())


@pytest.fixture
def fake_server(clock: FakeClock) -> Iterator[AuthorizationServer]:
    with AuthorizationServer(clock=clock) as server:
        server.add_client()
        yield server


@pytest.fixture
def nonce_server(clock: FakeClock) -> Iterator[AuthorizationServer]:
    with AuthorizationServer(
        clock=clock, dpop_nonce=True, dpop_nonce_lifetime=30.0, dpop_nonce_grace=5.0
    ) as server:
        server.add_client()
        yield server


def refused(response: httpx.Response, error: str = "invalid_dpop_proof") -> str:
    """The error_description of a 400 with ``error``."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == error, body
    description: str = body["error_description"]
    return description


def dpop_token(
    http: httpx.Client, server: AuthorizationServer, client: Client, key: Any = ES_KEY, **kw: Any
) -> str:
    response = dpop_token_request(http, server, client, proof(key, htu=server.token_url, **kw))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    token: str = response.json()["access_token"]
    return token


# -- the token endpoint -----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ES256", "RS256", "PS256", "EdDSA"])
def test_accepted_proof_binds_the_token_to_its_key(
    server: AuthorizationServer, http: httpx.Client, algorithm: str
) -> None:
    client = server.add_client()
    key = new_key(algorithm)
    signed = proof(key, htu=server.token_url, algorithm=algorithm)
    response = dpop_token_request(http, server, client, signed)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": thumbprint(public_jwk(key))}
    assert "dpop-nonce" not in response.headers  # nonce mode is off
    assert server.dpop_proofs_rejected == 0
    assert server.current_dpop_nonce is None


def test_without_a_proof_tokens_stay_bearer(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client()
    response = dpop_token_request(http, server, client, None)
    assert response.json()["token_type"] == "Bearer"
    assert "cnf" not in claims_of(response.json()["access_token"])


def test_discovery_lists_the_proof_algorithms(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    document = http.get(server.discovery_url).json()
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "RS256", "PS256", "EdDSA"]


RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)


def short_rsa_proof(url: str) -> str:
    with warnings.catch_warnings():  # PyJWT warns about signing with a short key, rightly
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return proof(RSA_1024, htu=url, algorithm="RS256")


def _rejections(url: str) -> dict[str, tuple[str, str]]:
    """Proofs that each break one rule, with a word the error description must contain."""
    other_path = url.replace("/token", "/other")
    other_port = url.replace(":", "x", 2).replace("x", ":", 1)  # http://127.0.0.1x<port>: bad URL
    return {
        "bad signature": (proof(ES_KEY, htu=url, jwk=public_jwk(OTHER_KEY)), "signature"),
        "wrong htm": (proof(ES_KEY, htu=url, htm="GET"), "htm"),
        "lower-case htm": (proof(ES_KEY, htu=url, htm="post"), "htm"),
        "wrong htu path": (proof(ES_KEY, htu=other_path), "htu"),
        "wrong htu scheme": (proof(ES_KEY, htu=url.replace("http:", "https:")), "htu"),
        "htu not a URL": (proof(ES_KEY, htu=other_port), "htu"),
        "relative htu": (proof(ES_KEY, htu="/token"), "htu"),
        "htu with userinfo": (proof(ES_KEY, htu=url.replace("//", "//user@")), "htu"),
        "stale iat": (proof(ES_KEY, htu=url, iat=int(time.time()) - 600), "too old"),
        "future iat": (proof(ES_KEY, htu=url, iat=int(time.time()) + 600), "future"),
        "string iat": (proof(ES_KEY, htu=url, iat="now"), "iat"),
        "boolean iat": (proof(ES_KEY, htu=url, iat=True), "iat"),
        "no iat": (proof(ES_KEY, htu=url, iat=None), "iat"),
        "no jti": (proof(ES_KEY, htu=url, jti=None), "jti"),
        "empty jti": (proof(ES_KEY, htu=url, jti=""), "jti"),
        "numeric jti": (proof(ES_KEY, htu=url, jti=7), "jti"),
        "long jti": (proof(ES_KEY, htu=url, jti="j" * 257), "jti"),
        "no htm": (proof(ES_KEY, htu=url, claims={"htm": None}), "htm"),
        "no htu": (proof(ES_KEY, htu=url, claims={"htu": 3}), "htu"),
        "private jwk": (proof(ES_KEY, htu=url, jwk=private_jwk(ES_KEY)), "private"),
        "alg none": (proof(None, htu=url, algorithm="none", jwk=public_jwk(ES_KEY)), "alg"),
        "alg HS256": (
            proof(b"k" * 32, htu=url, algorithm="HS256", jwk={"kty": "oct", "k": b64(b"k" * 32)}),
            "alg",
        ),
        "missing typ": (proof(ES_KEY, htu=url, typ=None), "typ"),
        "typ JWT": (proof(ES_KEY, htu=url, typ="JWT"), "typ"),
        "no jwk": (proof(ES_KEY, htu=url, jwk=None), "jwk"),
        "jwk a string": (proof(ES_KEY, htu=url, jwk="key"), "jwk"),
        "oct jwk": (proof(ES_KEY, htu=url, jwk={"kty": "oct", "n": "x"}), "jwk"),
        "jwk of another type": (proof(ES_KEY, htu=url, jwk=public_jwk(new_key("EdDSA"))), "fit"),
        "short RSA key": (short_rsa_proof(url), "2048"),
        "jwk with a bad curve point": (
            proof(ES_KEY, htu=url, jwk={**public_jwk(ES_KEY), "x": b64(b"\0" * 32)}),
            "usable",
        ),
        "jwk with non-string member": (
            proof(ES_KEY, htu=url, jwk={**public_jwk(ES_KEY), "x": 12}),
            "jwk",
        ),
        "not a JWS": ("not-a-jwt", "JWS"),
        "two headers": (f"{proof(ES_KEY, htu=url)}, {proof(ES_KEY, htu=url)}", "more than one"),
        "empty": ("", "empty"),
    }


def test_each_broken_proof_is_refused_with_its_reason(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client()
    cases = _rejections(server.token_url)
    for name, (signed, word) in cases.items():
        description = refused(dpop_token_request(http, server, client, signed))
        assert word in description, (name, description)
        assert signed[:40] not in description or not signed  # never echoes the proof
    assert server.tokens_issued == 0
    assert server.dpop_proofs_rejected == len(cases)
    assert server.dpop_nonce_challenges == 0


def test_htu_normalisation(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client()
    url = server.token_url
    host = f"127.0.0.1:{server.port}"
    for htu in (
        url + "?query=1",  # query and fragment are not part of the comparison
        url + "#fragment",
        url.replace("http://", "HTTP://"),
        f"http://127.0.0.1:{server.port}/%74oken",  # %74 is "t", an unreserved character
    ):
        response = dpop_token_request(http, server, client, proof(ES_KEY, htu=htu))
        assert response.status_code == 200, (htu, response.text)
    # The request URL is the one the client used: its Host header, not the server's own name.
    response = http.post(
        f"http://localhost:{server.port}/token?x=1",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret or ""),
        headers={"DPoP": proof(ES_KEY, htu=f"http://LOCALHOST:{server.port}/token")},
    )
    assert response.status_code == 200, response.text
    assert host  # the default-port and IPv6 forms are covered by the unit tests


def test_replayed_proof_is_refused(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client()
    signed = proof(ES_KEY, htu=server.token_url)
    assert dpop_token_request(http, server, client, signed).status_code == 200
    assert "already used" in refused(dpop_token_request(http, server, client, signed))
    # The same jti from another key is another proof.
    again = proof(
        OTHER_KEY,
        htu=server.token_url,
        jti=jwt.decode(signed, options={"verify_signature": False})["jti"],
    )
    assert dpop_token_request(http, server, client, again).status_code == 200


def test_iat_window_follows_the_server_clock(clock: FakeClock, http: httpx.Client) -> None:
    with AuthorizationServer(clock=clock, dpop_iat_window=5.0) as server:
        client = server.add_client()
        now = clock.time()
        for iat, ok in ((now - 5, True), (now + 5, True), (now - 6, False), (now + 6, False)):
            response = dpop_token_request(
                http, server, client, proof(ES_KEY, htu=server.token_url, iat=iat)
            )
            assert (response.status_code == 200) is ok, (iat - now, response.text)
        signed = proof(ES_KEY, htu=server.token_url, iat=now)
        clock.advance(10)  # the proof has aged out of the window
        assert "too old" in refused(dpop_token_request(http, server, client, signed))


def test_clock_fault_shifts_the_window(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client()
    server.inject(clock_offset=-3600, times=1)  # the server believes it is an hour earlier
    signed = proof(ES_KEY, htu=server.token_url)
    assert "future" in refused(dpop_token_request(http, server, client, signed))


def test_bad_settings_fail_in_the_constructor() -> None:
    bad: list[dict[str, Any]] = [
        {"dpop_iat_window": 0},
        {"dpop_nonce_lifetime": 0},
        {"dpop_nonce_grace": -1},
    ]
    for settings in bad:
        with pytest.raises(ValueError, match="dpop_"):
            AuthorizationServer(**settings)


# -- nonces -------------------------------------------------------------------------------


def test_nonce_challenge_then_retry(
    nonce_server: AuthorizationServer, http: httpx.Client, clock: FakeClock
) -> None:
    client = nonce_server.client
    url = nonce_server.token_url
    first = dpop_token_request(http, nonce_server, client, proof(ES_KEY, htu=url, now=clock.time()))
    assert "nonce" in refused(first, "use_dpop_nonce")
    nonce = first.headers["DPoP-Nonce"]
    assert nonce == nonce_server.current_dpop_nonce
    retry = dpop_token_request(
        http, nonce_server, client, proof(ES_KEY, htu=url, nonce=nonce, now=clock.time())
    )
    assert retry.status_code == 200, retry.text
    assert retry.headers["DPoP-Nonce"] == nonce  # every response carries the nonce
    assert retry.json()["token_type"] == "DPoP"
    wrong = dpop_token_request(
        http, nonce_server, client, proof(ES_KEY, htu=url, nonce="guess", now=clock.time())
    )
    assert "not a current" in refused(wrong, "use_dpop_nonce")
    assert nonce_server.dpop_nonce_challenges == 2
    assert nonce_server.dpop_proofs_rejected == 0
    assert nonce_server.tokens_issued == 1
    # A bearer request to a nonce server is unaffected, and still told the nonce.
    bearer_response = dpop_token_request(http, nonce_server, client, None)
    assert bearer_response.status_code == 200
    assert bearer_response.headers["DPoP-Nonce"] == nonce


def test_nonce_challenge_does_not_burn_the_jti(
    nonce_server: AuthorizationServer, http: httpx.Client, clock: FakeClock
) -> None:
    url, client = nonce_server.token_url, nonce_server.client
    jti = "same-jti"
    first = dpop_token_request(
        http, nonce_server, client, proof(ES_KEY, htu=url, jti=jti, now=clock.time())
    )
    nonce = first.headers["DPoP-Nonce"]
    signed = proof(ES_KEY, htu=url, jti=jti, nonce=nonce, now=clock.time())
    assert dpop_token_request(http, nonce_server, client, signed).status_code == 200


def test_nonces_rotate_with_grace(
    nonce_server: AuthorizationServer, http: httpx.Client, clock: FakeClock
) -> None:
    client, url = nonce_server.client, nonce_server.token_url

    def status(nonce: str) -> int:
        signed = proof(ES_KEY, htu=url, nonce=nonce, now=clock.time())
        return dpop_token_request(http, nonce_server, client, signed).status_code

    first = nonce_server.current_dpop_nonce
    assert first is not None
    clock.advance(29.9)
    assert nonce_server.current_dpop_nonce == first
    clock.advance(0.1)  # lifetime 30 s: replaced
    second = nonce_server.current_dpop_nonce
    assert second is not None and second != first
    clock.advance(4.9)  # grace 5 s: the old one still works
    assert status(first) == 200
    clock.advance(0.1)
    assert status(first) == 400
    assert status(second) == 200
    # A manual rotation keeps the replaced nonce for the grace period too.
    third = nonce_server.rotate_dpop_nonce()
    assert third not in (first, second)
    assert nonce_server.current_dpop_nonce == third
    assert status(second) == 200
    clock.advance(5)
    assert status(second) == 400
    assert status(third) == 200


def test_a_long_pause_expires_the_previous_nonce(
    nonce_server: AuthorizationServer, http: httpx.Client, clock: FakeClock
) -> None:
    old = nonce_server.current_dpop_nonce
    assert old is not None
    clock.advance(1000)  # many lifetimes pass without a request
    signed = proof(ES_KEY, htu=nonce_server.token_url, nonce=old, now=clock.time())
    response = dpop_token_request(http, nonce_server, nonce_server.client, signed)
    refused(response, "use_dpop_nonce")
    fresh = response.headers["DPoP-Nonce"]
    assert fresh != old
    clock.advance(29)  # the new nonce's lifetime counts from its due time, not from now
    assert nonce_server.current_dpop_nonce != fresh


def test_rotate_without_nonce_mode_is_an_error(server: AuthorizationServer) -> None:
    with pytest.raises(RuntimeError, match="dpop_nonce=True"):
        server.rotate_dpop_nonce()


# -- the resource endpoint --------------------------------------------------------------------


def test_resource_accepts_a_bound_token_with_its_proof(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client()
    token = dpop_token(http, server, client)
    for method in ("GET", "POST", "DELETE"):
        url = server.resource_url + "?page=2"
        signed = proof(ES_KEY, htm=method, htu=server.resource_url, access_token=token)
        response = dpop_resource(http, url, token, signed, method)
        assert response.status_code == 200, response.text
        assert response.json()["client_id"] == client.client_id
    # Bearer tokens keep working beside DPoP ones.
    assert (
        http.get(server.resource_url, headers=bearer(get_token(http, server, client))).status_code
        == 200
    )
    assert server.unauthorized == {}


def resource_refusal(response: httpx.Response, error: str, reason: str) -> str:
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'DPoP error="{error}"'), challenge
    assert 'algs="ES256 RS256 PS256 EdDSA"' in challenge
    body = response.json()
    assert body["error"] == error and body["reason"] == reason, body
    description: str = body["error_description"]
    return description


def test_resource_refusals(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client()
    token = dpop_token(http, server, client)
    other = dpop_token(http, server, client)
    url = server.resource_url
    cases: list[tuple[str | None, str, str, str]] = [
        (None, "invalid_dpop_proof", "dpop_proof", "needs a DPoP proof"),
        (proof(ES_KEY, htm="GET", htu=url), "invalid_dpop_proof", "dpop_proof", "ath"),
        (
            proof(ES_KEY, htm="GET", htu=url, access_token=other),
            "invalid_dpop_proof",
            "dpop_proof",
            "ath",
        ),
        (
            proof(ES_KEY, htm="POST", htu=url, access_token=token),
            "invalid_dpop_proof",
            "dpop_proof",
            "htm",
        ),
        (
            proof(ES_KEY, htm="GET", htu=server.token_url, access_token=token),
            "invalid_dpop_proof",
            "dpop_proof",
            "htu",
        ),
        (
            proof(OTHER_KEY, htm="GET", htu=url, access_token=token),
            "invalid_dpop_proof",
            "dpop_binding",
            "another key",
        ),
    ]
    for signed, error, reason, word in cases:
        description = resource_refusal(dpop_resource(http, url, token, signed), error, reason)
        assert word in description, description
        assert token not in description
    assert server.dpop_proofs_rejected == len(cases)
    assert server.unauthorized == {"dpop_proof": 5, "dpop_binding": 1}


def test_bound_token_as_bearer_is_refused(server: AuthorizationServer, http: httpx.Client) -> None:
    token = dpop_token(http, server, server.add_client())
    response = http.get(server.resource_url, headers=bearer(token))
    assert "DPoP-bound" in resource_refusal(response, "invalid_token", "dpop_as_bearer")
    assert server.unauthorized == {"dpop_as_bearer": 1}


def test_unbound_token_with_the_dpop_scheme_is_refused(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    token = get_token(http, server, server.add_client())
    signed = proof(ES_KEY, htm="GET", htu=server.resource_url, access_token=token)
    response = dpop_resource(http, server.resource_url, token, signed)
    assert "not DPoP-bound" in resource_refusal(response, "invalid_token", "dpop_binding")


def test_token_problems_get_a_dpop_challenge(
    fake_server: AuthorizationServer, http: httpx.Client, clock: FakeClock
) -> None:
    token = dpop_token(http, fake_server, fake_server.client, now=clock.time())
    clock.advance(3601)
    signed = proof(
        ES_KEY, htm="GET", htu=fake_server.resource_url, access_token=token, now=clock.time()
    )
    response = dpop_resource(http, fake_server.resource_url, token, signed)
    assert "expired" in resource_refusal(response, "invalid_token", "expired")
    malformed = dpop_resource(http, fake_server.resource_url, "a b", None)
    resource_refusal(malformed, "invalid_token", "malformed")


def test_issue_token_can_mint_a_bound_token(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    server.add_client()
    jkt = thumbprint(public_jwk(ES_KEY))
    token = server.issue_token(claims={"cnf": {"jkt": jkt}})
    signed = proof(ES_KEY, htm="GET", htu=server.resource_url, access_token=token)
    assert dpop_resource(http, server.resource_url, token, signed).status_code == 200
    assert http.get(server.resource_url, headers=bearer(token)).status_code == 401
    odd = server.issue_token(claims={"cnf": {"jkt": "\u00e9t\u00e9"}})  # any string: no crash
    signed = proof(ES_KEY, htm="GET", htu=server.resource_url, access_token=odd)
    response = dpop_resource(http, server.resource_url, odd, signed)
    resource_refusal(response, "invalid_dpop_proof", "dpop_binding")


def test_resource_replay_is_refused(server: AuthorizationServer, http: httpx.Client) -> None:
    token = dpop_token(http, server, server.add_client())
    signed = proof(ES_KEY, htm="GET", htu=server.resource_url, access_token=token)
    assert dpop_resource(http, server.resource_url, token, signed).status_code == 200
    response = dpop_resource(http, server.resource_url, token, signed)
    assert "already used" in resource_refusal(response, "invalid_dpop_proof", "dpop_proof")


def test_resource_nonce_challenge(
    nonce_server: AuthorizationServer, http: httpx.Client, clock: FakeClock
) -> None:
    nonce = nonce_server.current_dpop_nonce
    assert nonce is not None
    token = dpop_token(http, nonce_server, nonce_server.client, nonce=nonce, now=clock.time())
    url = nonce_server.resource_url
    first = dpop_resource(
        http, url, token, proof(ES_KEY, htm="GET", htu=url, access_token=token, now=clock.time())
    )
    resource_refusal(first, "use_dpop_nonce", "use_dpop_nonce")
    assert first.headers["DPoP-Nonce"] == nonce
    retry = dpop_resource(
        http,
        url,
        token,
        proof(ES_KEY, htm="GET", htu=url, access_token=token, nonce=nonce, now=clock.time()),
    )
    assert retry.status_code == 200, retry.text
    assert retry.headers["DPoP-Nonce"] == nonce
    assert nonce_server.dpop_nonce_challenges == 1
    assert nonce_server.unauthorized == {}  # the handshake is not a failure


# -- refresh tokens -----------------------------------------------------------------------


def _public_login(
    http: httpx.Client, server: AuthorizationServer, key: Any
) -> tuple[Client, dict[str, Any]]:
    public = server.add_client(auth_methods="none")
    server.add_user("ada", "pw")
    form = {
        "grant_type": "password",
        "username": "ada",
        "password": "pw",
        "client_id": public.client_id,
    }
    response = dpop_token_request(http, server, public, proof(key, htu=server.token_url), form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return public, body


def test_public_clients_refresh_token_is_bound_to_its_key(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    public, body = _public_login(http, server, ES_KEY)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": body["refresh_token"],
        "client_id": public.client_id,
    }
    url = server.token_url
    assert "no DPoP proof" in refused(dpop_token_request(http, server, public, None, form))
    wrong = dpop_token_request(http, server, public, proof(OTHER_KEY, htu=url), form)
    assert "another key" in refused(wrong)
    # The refused attempts did not consume the token: its owner can still refresh.
    right = dpop_token_request(http, server, public, proof(ES_KEY, htu=url), form)
    assert right.status_code == 200, right.text
    assert right.json()["token_type"] == "DPoP"
    assert claims_of(right.json()["access_token"])["cnf"]["jkt"] == thumbprint(public_jwk(ES_KEY))
    assert server.refresh_tokens_reused == 0
    # The rotated refresh token is bound too.
    form["refresh_token"] = right.json()["refresh_token"]
    assert "another key" in refused(
        dpop_token_request(http, server, public, proof(OTHER_KEY, htu=url), form)
    )
    assert server.dpop_proofs_rejected == 3


def test_confidential_clients_refresh_token_is_not_bound(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client(refresh_tokens=True)
    first = dpop_token_request(http, server, client, proof(ES_KEY, htu=server.token_url))
    form = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}
    response = dpop_token_request(http, server, client, None, form)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


# -- hostile input ------------------------------------------------------------------------


def test_garbage_proofs_are_400s_never_500s(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client()
    valid = proof(ES_KEY, htu=server.token_url)
    jwk = public_jwk(ES_KEY)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
    garbage: list[str | bytes] = [
        "x" * 9000,  # longer than any honest proof
        "a.b.c",
        "...",
        "\u00e9\u00e9.\u00e9.\u00e9".encode("latin-1"),
        forged([1, 2], {}),
        forged("not json", {}),
        forged(header, [1]),
        forged(header, "not json"),
        forged(header, {"htm": "POST"}),  # valid structure, signature garbage
        forged({**header, "jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "alg": "RS256"}, {}),
        forged({**header, "jwk": {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}}, {}),
        forged(
            {**header, "jwk": {"kty": "OKP", "crv": "X25519", "x": b64(b"0" * 32)}, "alg": "EdDSA"},
            {},
        ),
        forged({**header, "jwk": {"kty": "EC", "crv": "P-256", "x": "!!", "y": "??"}}, {}),
        forged({**header, "jwk": {"kty": ["EC"]}}, {}),
        forged({**header, "alg": ["ES256"]}, {}),
        forged({**header, "typ": ["dpop+jwt"]}, {}),
    ]
    rng = random.Random(9449)
    for _ in range(150):  # random mutations of a valid proof
        chars = list(valid)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice("AZaz09-_.=+/")
        garbage.append("".join(chars))
    for value in garbage:
        if value == valid:  # pragma: no cover - a mutation that changed nothing
            continue
        response = dpop_token_request(http, server, client, value)
        assert response.status_code in (400, 200), (value[:80], response.status_code)
        if response.status_code == 200:  # only a mutation in an ignored base64 padding bit
            continue
        assert response.json()["error"] == "invalid_dpop_proof"
    # Far beyond the HTTP layer's head limit: refused before any parsing, and the server lives.
    huge = http.post(
        server.token_url, headers={"DPoP": "x" * 70_000}, data={"grant_type": "client_credentials"}
    )
    assert huge.status_code == 431
    assert (
        dpop_token_request(http, server, client, proof(ES_KEY, htu=server.token_url)).status_code
        == 200
    )


def test_garbage_at_the_resource(server: AuthorizationServer, http: httpx.Client) -> None:
    token = dpop_token(http, server, server.add_client())
    for value in ("x" * 9000, "a.b.c", forged([1], {}), ""):
        response = dpop_resource(http, server.resource_url, token, value)
        resource_refusal(response, "invalid_dpop_proof", "dpop_proof")


# -- process mode ---------------------------------------------------------------------------


def test_process_mode_nonces(http: httpx.Client) -> None:
    with AuthorizationServer(process=True, dpop_nonce=True) as server:
        client = server.add_client()
        first = dpop_token_request(http, server, client, proof(ES_KEY, htu=server.token_url))
        refused(first, "use_dpop_nonce")
        assert first.headers["DPoP-Nonce"] == server.current_dpop_nonce
        rotated = server.rotate_dpop_nonce()
        assert server.current_dpop_nonce == rotated
        signed = proof(ES_KEY, htu=server.token_url, nonce=rotated)
        assert dpop_token_request(http, server, client, signed).status_code == 200
        assert server.dpop_nonce_challenges == 1


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_proofs_across_a_rotation() -> None:
    """16 threads, each with its own connection, while the nonce is rotated under them: every
    proof with a current or grace-period nonce is accepted, exactly once, and nothing is a 500."""
    from concurrent.futures import ThreadPoolExecutor

    with AuthorizationServer(dpop_nonce=True, dpop_nonce_grace=30.0) as server:
        client = server.add_client()
        first = server.current_dpop_nonce
        assert first is not None

        def worker(index: int) -> list[int]:
            statuses = []
            with httpx.Client(timeout=10) as own:
                for step in range(10):
                    if index == 0 and step == 5:
                        server.rotate_dpop_nonce()
                    signed = proof(ES_KEY, htu=server.token_url, nonce=first)
                    statuses.append(dpop_token_request(own, server, client, signed).status_code)
            return statuses

        with ThreadPoolExecutor(16) as pool:
            results = [s for batch in pool.map(worker, range(16)) for s in batch]
        assert results == [200] * 160
        assert server.tokens_issued == 160
        assert server.current_dpop_nonce != first
