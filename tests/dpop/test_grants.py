"""DPoP through every HTTP grant, end to end: TokenManager.get()/aget() against a real HTTP
server on 127.0.0.1 that verifies each proof with PyJWT (tests/dpop/server.py), demands nonces,
and checks the resource proofs Token.headers makes."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

import freshtoken as ft
from freshtoken._oauth.dpop import access_token_hash
from tests.grants.conftest import FAST, GETTERS, Getter, run

from .server import DPoPServer, jkt


@pytest.fixture
def server() -> Iterator[DPoPServer]:
    with DPoPServer() as running:
        yield running


@pytest.fixture(scope="module")
def key() -> ft.DPoPKey:
    return ft.DPoPKey.generate()


def grant(server: DPoPServer, dpop: ft.DPoPKey | None, **options: object) -> ft.ClientCredentials:
    return ft.ClientCredentials(
        server.token_url,
        "client",
        "secret",
        dpop=dpop,
        allow_insecure_http=True,
        **options,  # type: ignore[arg-type]
    )


def call_resource(server: DPoPServer, token: ft.Token, url: str | None = None) -> httpx.Response:
    target = url or server.resource_url
    return httpx.get(target, headers=token.headers("GET", target))


@GETTERS
def test_the_nonce_demand_is_answered_once_and_the_token_is_dpop_bound(
    server: DPoPServer, get: Getter
) -> None:
    key = ft.DPoPKey.generate("EdDSA")
    server.behaviour.nonce_required = True
    # max_attempts=1: the nonce retry is not an attempt, or it could not happen at all.
    token = get(grant(server, key, max_attempts=1))
    assert server.seen.token_requests == 2
    assert server.seen.nonce_demands == 1
    first, second = server.seen.proofs
    assert "nonce" not in first and second["nonce"] == server.nonce
    assert first["jti"] != second["jti"]
    assert token.token_type == "DPoP"
    assert token.authorization.startswith("DPoP ")
    cnf = jwt.decode(token.access_token, options={"verify_signature": False})["cnf"]
    assert cnf["jkt"] == key.thumbprint == jkt(key.public_jwk)
    assert key.nonce_for(server.token_url) == server.nonce
    response = call_resource(server, token, server.resource_url + "?page=2")
    assert response.status_code == 200, server.seen.resource_errors
    assert server.seen.resource_ok == 1


def test_no_failure_is_reported_for_a_nonce_demand(server: DPoPServer, key: ft.DPoPKey) -> None:
    server.behaviour.nonce_required = True
    events: list[ft.Event] = []
    with ft.TokenManager(grant(server, key), policy=FAST, on_event=events.append) as tokens:
        tokens.get()
    assert [event.kind for event in events if "fail" in event.kind] == []


def test_a_known_nonce_is_sent_at_once(server: DPoPServer) -> None:
    key = ft.DPoPKey.generate()
    server.behaviour.nonce_required = True
    with ft.TokenManager(grant(server, key), policy=FAST) as tokens:
        first = tokens.get()
        assert server.seen.token_requests == 2
        tokens.invalidate(first)
        tokens.get()
    assert server.seen.token_requests == 3  # the cached nonce: no second demand
    assert server.seen.nonce_demands == 1


def test_a_nonce_given_with_a_success_is_kept(server: DPoPServer) -> None:
    key = ft.DPoPKey.generate()
    server.behaviour.nonce_required = True
    server.behaviour.rotate_on_success = True
    with ft.TokenManager(grant(server, key), policy=FAST) as tokens:
        for _ in range(3):
            tokens.invalidate(tokens.get())
    # One demand at first; after that each success names the nonce the next request needs.
    assert server.seen.nonce_demands == 1
    assert server.seen.token_requests == 4
    assert key.nonce_for(server.token_url) == server.nonce


@GETTERS
def test_a_second_nonce_demand_is_the_servers_error(server: DPoPServer, get: Getter) -> None:
    server.behaviour.nonce_required = True
    server.behaviour.never_accept = True
    with pytest.raises(ft.OAuthError) as caught:
        get(grant(server, ft.DPoPKey.generate()))
    assert caught.value.error == "use_dpop_nonce"
    assert server.seen.token_requests == 2  # retried once, not in a loop


def test_each_retry_after_an_outage_signs_a_new_proof(server: DPoPServer, key: ft.DPoPKey) -> None:
    server.behaviour.unavailable = 2
    server.behaviour.nonce_required = True
    with ft.TokenManager(grant(server, ft.DPoPKey.generate()), policy=FAST) as tokens:
        token = tokens.get()
    # two 503s (real attempts 1 and 2), the nonce demand (free), attempt 3 succeeds
    assert server.seen.token_requests == 4
    assert len({proof["jti"] for proof in server.seen.proofs}) == 4  # the server saw no replay
    assert token.token_type == "DPoP"


@GETTERS
def test_a_bearer_answer_to_a_dpop_request_is_refused(server: DPoPServer, get: Getter) -> None:
    server.behaviour.token_type = "Bearer"
    with pytest.raises(ft.TokenResponseError, match="token_type 'Bearer'") as caught:
        get(grant(server, ft.DPoPKey.generate()))
    assert caught.value.field == "token_type"
    assert "allow_dpop_downgrade=True" in str(caught.value)


def test_allow_dpop_downgrade_accepts_a_bearer_token(server: DPoPServer, key: ft.DPoPKey) -> None:
    server.behaviour.token_type = "Bearer"
    with ft.TokenManager(grant(server, key, allow_dpop_downgrade=True), policy=FAST) as tokens:
        token = tokens.get()
    assert token.token_type == "Bearer"
    assert token.headers("GET", server.resource_url) == {"Authorization": token.authorization}


def test_a_token_bound_to_another_key_is_refused(server: DPoPServer, key: ft.DPoPKey) -> None:
    server.behaviour.wrong_jkt = True
    tokens = ft.TokenManager(grant(server, key), policy=FAST)
    with tokens, pytest.raises(ft.TokenResponseError, match=r"cnf\.jkt") as caught:
        tokens.get()
    assert caught.value.field == "cnf"


def test_resource_nonces_are_kept_per_origin(server: DPoPServer, key: ft.DPoPKey) -> None:
    server.behaviour.resource_nonce_required = True
    with ft.TokenManager(grant(server, key), policy=FAST) as tokens:
        token = tokens.get()
    refused = call_resource(server, token)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'DPoP error="use_dpop_nonce"'
    key.remember_nonce(server.resource_url, refused.headers["DPoP-Nonce"])
    assert call_resource(server, token).status_code == 200
    # The token endpoint shares the origin here, so its nonce cache entry is the resource's too.
    assert key.nonce_for(server.resource_url) == server.resource_nonce


def test_every_http_grant_takes_dpop(server: DPoPServer, key: ft.DPoPKey) -> None:
    options = {"dpop": key, "allow_insecure_http": True}
    grants = [
        ft.ClientCredentials(server.token_url, "c", "s", **options),  # type: ignore[arg-type]
        ft.RefreshTokenGrant(server.token_url, "rt", "c", "s", **options),  # type: ignore[arg-type]
        ft.PasswordGrant(server.token_url, "u", "p", "c", "s", **options),  # type: ignore[arg-type]
        ft.JWTBearerGrant(server.token_url, "assertion", **options),  # type: ignore[arg-type]
        ft.TokenExchange(server.token_url, "subject", "jwt", **options),  # type: ignore[arg-type]
    ]
    for source in grants:
        with ft.TokenManager(source, policy=FAST) as tokens:
            token = tokens.get()
        assert token.token_type == "DPoP"
        # the refresh grant keeps its refresh token with Token.replace: the key goes along
        assert call_resource(server, token).status_code == 200, type(source).__name__
        assert "dpop=DPoPKey(" in repr(source)
    assert server.seen.token_requests == len(grants)
    assert [form["grant_type"] for form in server.seen.forms][:2] == [
        "client_credentials",
        "refresh_token",
    ]


def test_the_refresh_token_grant_keeps_the_key_on_its_copy(server: DPoPServer) -> None:
    key = ft.DPoPKey.generate("ES256")
    source = ft.RefreshTokenGrant(
        server.token_url, "rt", "c", "s", dpop=key, allow_insecure_http=True
    )
    with ft.TokenManager(source, policy=FAST) as tokens:
        token = tokens.get()
    assert token.refresh_token == "rt"  # replaced in by the grant, as RFC 6749 §6 says
    headers = token.headers("get", server.resource_url)
    proof = jwt.decode(headers["DPoP"], options={"verify_signature": False})
    assert proof["ath"] == access_token_hash(token.access_token) and proof["htm"] == "GET"


# -- the store key ------------------------------------------------------------------------------


def test_the_key_thumbprint_is_part_of_the_store_key(server: DPoPServer) -> None:
    one, two = ft.DPoPKey.generate(), ft.DPoPKey.generate()
    assert grant(server, one).key == grant(server, one).key
    assert grant(server, one).key != grant(server, two).key
    assert grant(server, one).key != grant(server, None).key
    custom = grant(server, one, key="billing")
    assert custom.key == f"billing#dpop:{one.thumbprint}"
    assert grant(server, None, key="billing").key == "billing"


@pytest.mark.parametrize("use_async", [False, True], ids=["get", "aget"])
def test_a_stored_token_gets_the_key_back(
    server: DPoPServer, tmp_path: Path, use_async: bool
) -> None:
    key = ft.DPoPKey.generate()
    store = ft.FileStore(tmp_path / "tokens")
    with ft.TokenManager(grant(server, key), store=store, policy=FAST) as first:
        first.get()
    # Another manager (another process would do the same) with the same key: the token comes
    # from the file, without the key in it, and can sign its proofs all the same.
    with ft.TokenManager(grant(server, key), store=ft.FileStore(tmp_path / "tokens")) as second:
        token = run(second.aget) if use_async else second.get()
    assert server.seen.token_requests == 1
    assert call_resource(server, token).status_code == 200
    for path in (tmp_path / "tokens").rglob("*"):
        if path.is_file():
            assert b"BEGIN" not in path.read_bytes() and b'"d"' not in path.read_bytes()


def test_another_key_does_not_share_the_stored_token(server: DPoPServer, tmp_path: Path) -> None:
    for _ in range(2):
        source = grant(server, ft.DPoPKey.generate())
        with ft.TokenManager(source, store=ft.FileStore(tmp_path), policy=FAST) as tokens:
            assert call_resource(server, tokens.get()).status_code == 200
    assert server.seen.token_requests == 2


# -- Token.headers and configuration --------------------------------------------------------------


def test_headers_of_a_bearer_token() -> None:
    token = ft.Token(access_token="abc")
    assert token.headers("GET", "https://api.example/") == {"Authorization": "Bearer abc"}


def test_a_dpop_token_without_its_key_cannot_sign(server: DPoPServer, key: ft.DPoPKey) -> None:
    with pytest.raises(ft.ConfigurationError, match="no DPoP key"):
        ft.Token(access_token="abc", token_type="DPoP").headers("GET", "https://api.example/")
    with ft.TokenManager(grant(server, key), policy=FAST) as tokens:
        token = tokens.get()
    copy = pickle.loads(pickle.dumps(token))  # the key does not travel with the token
    assert copy == token
    with pytest.raises(ft.ConfigurationError, match="no DPoP key"):
        copy.headers("GET", server.resource_url)
    assert "DPoPPresenter" not in repr(token) and key.thumbprint not in repr(token)


def test_a_bad_url_for_headers_is_a_configuration_error(
    server: DPoPServer, key: ft.DPoPKey
) -> None:
    with ft.TokenManager(grant(server, key), policy=FAST) as tokens:
        token = tokens.get()
    with pytest.raises(ft.ConfigurationError, match="request URL"):
        token.headers("GET", "/relative?access_token=x")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dpop": "ES256"}, "dpop must be a DPoPKey"),
        ({"dpop": {"kty": "EC"}}, "dpop must be a DPoPKey"),
        ({"allow_dpop_downgrade": True}, "needs dpop="),
        ({"dpop": None, "allow_dpop_downgrade": "yes"}, "True or False"),
    ],
)
def test_bad_dpop_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ft.ConfigurationError, match=message):
        ft.ClientCredentials("https://as.example/token", "c", "s", **options)  # type: ignore[arg-type]


def test_async_and_sync_share_the_nonce_flow(server: DPoPServer) -> None:
    """The same flow generator answers the demand under aget(): one demand, two requests."""
    server.behaviour.nonce_required = True
    key = ft.DPoPKey.generate()

    async def main() -> ft.Token:
        async with ft.TokenManager(grant(server, key), policy=FAST) as tokens:
            return await tokens.aget()

    token = run(main)
    assert server.seen.token_requests == 2
    assert call_resource(server, token).status_code == 200
