"""The protected resource: strict bearer validation, 401 reasons, helper routes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from freshtoken.testing import AuthorizationServer, FakeClock
from tests.testing._helpers import bearer, claims_of, get_token


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time=time.time())


@pytest.fixture
def fake_server(clock: FakeClock) -> Iterator[AuthorizationServer]:
    with AuthorizationServer(clock=clock, token_lifetime=2.0) as server:
        server.add_client()
        yield server


def reason(response: httpx.Response) -> str:
    assert response.status_code == 401
    value: str = response.json()["reason"]
    return value


def test_valid_token_any_method_and_subpath(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    client = server.add_client(scopes=["read"])
    token = get_token(http, server, client)
    response = http.get(server.resource_url, headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "client_id": client.client_id,
        "sub": client.client_id,
        "scope": "read",
        "method": "GET",
        "path": "/api/resource",
        "body_length": 0,
    }
    put = http.put(server.base_url + "/api/things/42", headers=bearer(token), content=b"x" * 10)
    assert (put.json()["method"], put.json()["path"], put.json()["body_length"]) == (
        "PUT",
        "/api/things/42",
        10,
    )
    assert http.delete(server.base_url + "/api", headers=bearer(token)).status_code == 200


def test_missing_token_gets_a_bare_challenge_naming_the_resource_metadata(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    response = http.get(server.resource_url)
    assert reason(response) == "missing"
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="freshtoken-testing", resource_metadata="{server.resource_metadata_url}"'
    )
    basic = http.get(server.resource_url, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert reason(basic) == "missing"


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not-a-jwt", "Bearer a.b.c"])
def test_malformed_tokens(server: AuthorizationServer, http: httpx.Client, header: str) -> None:
    response = http.get(server.resource_url, headers={"Authorization": header})
    assert reason(response) == "malformed"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="freshtoken-testing", error="invalid_token"')
    assert "error_description=" in challenge


def test_token_lacking_claims_is_malformed(server: AuthorizationServer, http: httpx.Client) -> None:
    token = server.issue_token(claims={"exp": "tomorrow"})
    assert reason(http.get(server.resource_url, headers=bearer(token))) == "malformed"


def test_foreign_or_tampered_signature(server: AuthorizationServer, http: httpx.Client) -> None:
    with AuthorizationServer() as other:
        foreign = other.issue_token()
    assert reason(http.get(server.resource_url, headers=bearer(foreign))) == "bad_signature"
    mine = server.issue_token()
    header, payload, signature = mine.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    assert reason(http.get(server.resource_url, headers=bearer(tampered))) == "bad_signature"


def test_wrong_audience_and_issuer(server: AuthorizationServer, http: httpx.Client) -> None:
    other_aud = server.issue_token(audience="https://elsewhere")
    assert reason(http.get(server.resource_url, headers=bearer(other_aud))) == "wrong_audience"
    listed = server.issue_token(audience=["https://elsewhere", server.audience])
    assert http.get(server.resource_url, headers=bearer(listed)).status_code == 200
    other_iss = server.issue_token(claims={"iss": "https://impostor"})
    assert reason(http.get(server.resource_url, headers=bearer(other_iss))) == "wrong_issuer"


def test_configured_audience(http: httpx.Client) -> None:
    with AuthorizationServer(audience="https://api.example") as server:
        client = server.add_client()
        token = get_token(http, server, client)
        assert claims_of(token)["aud"] == "https://api.example" == server.audience
        assert http.get(server.resource_url, headers=bearer(token)).status_code == 200


def test_exp_has_no_leeway(
    fake_server: AuthorizationServer, clock: FakeClock, http: httpx.Client
) -> None:
    token = get_token(http, fake_server, fake_server.client)
    claims = claims_of(token)
    assert claims["iat"] == pytest.approx(clock.time(), abs=0.001)
    clock.advance(claims["exp"] - clock.time() - 0.01)
    assert http.get(fake_server.resource_url, headers=bearer(token)).status_code == 200
    clock.advance(0.01)
    response = http.get(fake_server.resource_url, headers=bearer(token))
    assert reason(response) == "expired"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_real_short_lifetime_expires(http: httpx.Client) -> None:
    """The one real-time test: a 1 s token dies at its ``exp``, 1 s after it was issued."""
    with AuthorizationServer(token_lifetime=1.0) as server:
        token = get_token(http, server, server.add_client())
        claims = claims_of(token)
        assert claims["exp"] - claims["iat"] == pytest.approx(1.0)
        assert http.get(server.resource_url, headers=bearer(token)).status_code == 200
        time.sleep(max(0.0, claims["exp"] - time.time() + 0.05))
        assert reason(http.get(server.resource_url, headers=bearer(token))) == "expired"


def test_revocation_kinds(fake_server: AuthorizationServer, http: httpx.Client) -> None:
    server = fake_server
    other = server.add_client()
    one, two, theirs = (
        server.issue_token(),
        server.issue_token(),
        server.issue_token(client_id=other.client_id),
    )
    assert server.revoke(one) is True
    assert server.revoke("not-a-token") is False
    assert server.revoke(server.issue_token(claims={"jti": 7})) is False
    assert reason(http.get(server.resource_url, headers=bearer(one))) == "revoked"
    assert http.get(server.resource_url, headers=bearer(two)).status_code == 200
    server.revoke_client(server.client.client_id)
    assert reason(http.get(server.resource_url, headers=bearer(two))) == "revoked"
    assert http.get(server.resource_url, headers=bearer(theirs)).status_code == 200
    later = server.issue_token()
    assert http.get(server.resource_url, headers=bearer(later)).status_code == 200
    server.revoke_all()
    for token in (later, theirs):
        assert reason(http.get(server.resource_url, headers=bearer(token))) == "revoked"
    assert http.get(server.resource_url, headers=bearer(server.issue_token())).status_code == 200
    assert server.unauthorized == {"revoked": 4}


def test_unknown_jti_counts_as_revoked(server: AuthorizationServer, http: httpx.Client) -> None:
    from freshtoken.testing._app import ServerCore

    token = server.issue_token()
    core = server._core
    assert isinstance(core, ServerCore)
    core.store._access.clear()
    assert reason(http.get(server.resource_url, headers=bearer(token))) == "revoked"


def test_redirect_route(server: AuthorizationServer, http: httpx.Client) -> None:
    response = http.get(
        server.base_url + "/api/redirect",
        params={"to": "http://example.invalid/x", "status": "307"},
    )
    assert (response.status_code, response.headers["location"]) == (307, "http://example.invalid/x")
    default = http.get(server.base_url + "/api/redirect", params={"to": "/api/resource"})
    assert default.status_code == 302
    for params in (
        {"to": "x", "status": "200"},
        {},
        {"to": "x", "status": "abc"},
        {"to": "mailto:x"},
    ):
        assert http.get(server.base_url + "/api/redirect", params=params).status_code == 400


def test_status_route(server: AuthorizationServer, http: httpx.Client) -> None:
    forbidden = http.get(server.base_url + "/api/status/403")
    assert forbidden.status_code == 403
    assert (
        forbidden.headers["www-authenticate"]
        == 'Bearer realm="freshtoken-testing", error="insufficient_scope"'
    )
    unauthorized = http.get(server.base_url + "/api/status/401")
    assert 'error="invalid_token"' in unauthorized.headers["www-authenticate"]
    limited = http.get(server.base_url + "/api/status/429", params={"retry_after": "3"})
    assert (limited.status_code, limited.headers["retry-after"], limited.json()) == (
        429,
        "3",
        {"status": 429},
    )
    assert http.get(server.base_url + "/api/status/204/").status_code == 204
    assert http.get(server.base_url + "/api/status/999").status_code == 400
    assert http.get(server.base_url + "/api/status/abc").status_code == 400


def test_cache_is_bounded(
    server: AuthorizationServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import freshtoken.testing._resource as resource

    monkeypatch.setattr(resource, "_CACHE_LIMIT", 2)
    tokens = [server.issue_token() for _ in range(3)]
    for token in tokens:
        assert http.get(server.resource_url, headers=bearer(token)).status_code == 200
    from freshtoken.testing._app import ServerCore

    assert isinstance(server._core, ServerCore)
    assert len(server._core.resource._cache) == 1
