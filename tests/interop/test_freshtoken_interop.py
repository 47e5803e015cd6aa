"""freshtoken against real third-party authorization servers (issue 4, "Must show").

node oidc-provider 8.x: client_credentials with client_secret_basic, client_secret_post and
private_key_jwt (RS256, ES256); JWT access tokens of a few seconds kept fresh across several
expiries; resource indicators; issuer discovery; a rotating refresh token from the
authorization-code flow, and reuse of a rotated-away one surfacing as ``ft.OAuthError`` with
``invalid_grant``. django-oauth-toolkit: client_credentials (basic, post), the password grant with
rotating refresh tokens, and invalid_client / invalid_scope / unauthorized_client as
``ft.OAuthError``.

The peers' behaviour itself is pinned by ``test_peers_*.py``. The grants are imported from their
private modules until ``freshtoken/__init__.py`` exports them.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Literal

import httpx
import pytest

import freshtoken as ft

from .peers import (
    DjangoOAuthToolkitPeer,
    OidcProviderPeer,
    PeerClient,
    basic_authorization,
    unverified_claims,
)

pytestmark = pytest.mark.interop


def _secret(client: PeerClient) -> str:
    assert client.client_secret is not None
    return client.client_secret


def _assert_no_secret_in(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def _keep_fresh_for(tokens: ft.TokenManager, seconds: float) -> tuple[list[ft.Token], int]:
    """Call ``tokens.get()`` every 0.1 s for ``seconds`` (real time: the peers' tokens live a
    few real seconds); check that no token handed out is past its JWT ``exp`` by a second or
    more; return the distinct tokens in order and the number of calls."""
    seen: list[ft.Token] = []
    calls = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        token = tokens.get()
        calls += 1
        # The check runs after get() returned, on a busy machine: allow for that delay here;
        # test_a_jwt_access_token_is_never_served_after_its_exp_claim makes the strict claim.
        assert unverified_claims(token.access_token)["exp"] + 1 > time.time()
        if not seen or seen[-1].access_token != token.access_token:
            seen.append(token)
        time.sleep(0.1)
    return seen, calls


# --------------------------------------------------------------------------------------------
# oidc-provider: client_credentials and client authentication
# --------------------------------------------------------------------------------------------


def test_client_secret_basic_form_encodes_a_secret_with_reserved_characters(
    oidc_provider_peer: OidcProviderPeer, caplog: pytest.LogCaptureFixture
) -> None:
    client = oidc_provider_peer.basic_client
    caplog.set_level(logging.DEBUG)
    grant = ft.ClientCredentials(
        oidc_provider_peer.token_endpoint, client.client_id, _secret(client), scope="api:read"
    )

    with ft.TokenManager(grant) as tokens:
        token = tokens.get()

    claims = unverified_claims(token.access_token)
    assert claims["client_id"] == client.client_id
    assert claims["aud"] == oidc_provider_peer.default_resource
    assert token.scope == "api:read"
    assert token.expires_at is not None
    # expires_in says the TTL; the JWT's exp (iat rounded down to the second) may come earlier,
    # and the earlier one wins.
    ttl = timedelta(seconds=oidc_provider_peer.access_token_ttl)
    assert ttl - timedelta(seconds=1) <= token.expires_at - token.issued_at <= ttl
    assert token.expires_at.timestamp() <= claims["exp"]
    _assert_no_secret_in(
        caplog.text + repr(grant) + repr(token), _secret(client), token.access_token
    )


def test_client_secret_post(oidc_provider_peer: OidcProviderPeer) -> None:
    client = oidc_provider_peer.post_client
    grant = ft.ClientCredentials(
        oidc_provider_peer.token_endpoint,
        client.client_id,
        _secret(client),
        auth="client_secret_post",
    )

    with ft.TokenManager(grant) as tokens:
        token = tokens.get()

    assert unverified_claims(token.access_token)["client_id"] == client.client_id


@pytest.mark.parametrize("which", ["rs256_client", "es256_client"])
def test_private_key_jwt(oidc_provider_peer: OidcProviderPeer, which: str) -> None:
    client: PeerClient = getattr(oidc_provider_peer, which)
    key = client.signing_key
    assert key is not None
    auth = ft.PrivateKeyJWT(key.private_key_pem, key.algorithm, key.key_id)
    grant = ft.ClientCredentials(oidc_provider_peer.token_endpoint, client.client_id, auth=auth)

    with ft.TokenManager(grant) as tokens:
        first = tokens.get()
        tokens.invalidate(first)
        second = tokens.get()  # a second assertion: oidc-provider refuses a replayed jti

    assert first.access_token != second.access_token
    assert unverified_claims(second.access_token)["client_id"] == client.client_id


def test_private_key_jwt_with_a_key_object(oidc_provider_peer: OidcProviderPeer) -> None:
    client = oidc_provider_peer.es256_client
    key = client.signing_key
    assert key is not None
    auth = ft.PrivateKeyJWT(key.private_key, "ES256", key.key_id)
    grant = ft.ClientCredentials(oidc_provider_peer.token_endpoint, client.client_id, auth=auth)

    with ft.TokenManager(grant) as tokens:
        assert tokens.get().access_token


def test_a_wrong_secret_surfaces_as_invalid_client(
    oidc_provider_peer: OidcProviderPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    grant = ft.ClientCredentials(
        oidc_provider_peer.token_endpoint, oidc_provider_peer.post_client.client_id, "wrong-secret"
    )

    with ft.TokenManager(grant) as tokens, pytest.raises(ft.OAuthError) as caught:
        tokens.get()

    assert caught.value.error == "invalid_client"
    assert caught.value.status == 401
    _assert_no_secret_in(caplog.text + str(caught.value) + repr(caught.value), "wrong-secret")


def test_the_token_endpoint_is_discovered_from_the_issuer(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    client = oidc_provider_peer.post_client
    grant = ft.ClientCredentials(
        client_id=client.client_id,
        client_secret=_secret(client),
        issuer=oidc_provider_peer.issuer,
        auth="client_secret_post",
    )

    with ft.TokenManager(grant) as tokens:
        token = tokens.get()

    assert unverified_claims(token.access_token)["iss"] == oidc_provider_peer.issuer


# --------------------------------------------------------------------------------------------
# oidc-provider: short-lived JWTs, resource indicators
# --------------------------------------------------------------------------------------------


def test_jwt_access_tokens_of_a_few_seconds_stay_fresh_across_several_expiries(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    ttl = oidc_provider_peer.access_token_ttl
    client = oidc_provider_peer.basic_client
    events: list[ft.Event] = []
    grant = ft.ClientCredentials(
        oidc_provider_peer.token_endpoint, client.client_id, _secret(client)
    )

    with ft.TokenManager(grant, on_event=events.append) as tokens:
        seen, calls = _keep_fresh_for(tokens, 3.5 * ttl)

    fetches = [event for event in events if event.kind in {"fetched", "refreshed"}]
    assert len(seen) >= 3  # the first token and at least two replacements after expiries
    # Every fetch was served, none wasted; the loop may stop while the last background refresh
    # is in flight, so that one token can land after the last call.
    assert len(seen) <= len(fetches) <= len(seen) + 1
    assert [event.fingerprint for event in fetches[: len(seen)]] == [t.fingerprint for t in seen]
    assert len(fetches) <= calls // 3  # tokens are reused, not fetched per call
    assert not [event for event in events if event.kind == "failed"]
    expiries = [unverified_claims(token.access_token)["exp"] for token in seen]
    assert expiries == sorted(expiries)


def test_a_jwt_access_token_is_never_served_after_its_exp_claim(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    ttl = oidc_provider_peer.access_token_ttl
    client = oidc_provider_peer.basic_client
    grant = ft.ClientCredentials(
        oidc_provider_peer.token_endpoint, client.client_id, _secret(client)
    )

    with ft.TokenManager(grant) as tokens:
        # Ask late in a wall-clock second: the server's iat rounds down by ~0.75 s, so exp comes
        # ~0.75 s before request start + expires_in. Retry if the request crossed a second.
        for _ in range(5):
            time.sleep((0.75 - time.time()) % 1.0)  # until the next x.75 s
            started_wall, started = time.time(), time.monotonic()
            token = tokens.get()
            exp = unverified_claims(token.access_token)["exp"]
            if exp - ttl == int(started_wall):
                break
            tokens.invalidate(token)
        else:
            pytest.skip("could not get a token issued within the second it was requested in")
        time.sleep(max(0.0, exp + 0.05 - time.time()))
        if time.monotonic() - started >= ttl * 0.95:
            pytest.skip("the machine was too slow to check before the hard deadline")
        served = tokens.get()

    assert unverified_claims(served.access_token)["exp"] > time.time()


def test_a_resource_indicator_selects_the_audience_and_its_scopes(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    client = oidc_provider_peer.post_client
    grant = ft.ClientCredentials(
        oidc_provider_peer.token_endpoint,
        client.client_id,
        _secret(client),
        auth="client_secret_post",
        resource=oidc_provider_peer.other_resource,
        scope=["reports:read", "api:write"],
    )

    with ft.TokenManager(grant) as tokens:
        token = tokens.get()

    claims = unverified_claims(token.access_token)
    assert claims["aud"] == oidc_provider_peer.other_resource
    assert claims["scope"] == "reports:read"


def test_an_unknown_resource_surfaces_as_invalid_target(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    client = oidc_provider_peer.post_client
    grant = ft.ClientCredentials(
        oidc_provider_peer.token_endpoint,
        client.client_id,
        _secret(client),
        auth="client_secret_post",
        resource="https://unknown.interop.test",
    )

    with ft.TokenManager(grant) as tokens, pytest.raises(ft.OAuthError) as caught:
        tokens.get()

    assert caught.value.error == "invalid_target"
    assert caught.value.status == 400


# --------------------------------------------------------------------------------------------
# oidc-provider: rotating refresh tokens from the authorization-code flow
# --------------------------------------------------------------------------------------------


def _refresh_grant(
    peer: OidcProviderPeer, client: PeerClient, refresh_token: str
) -> ft.RefreshTokenGrant:
    if client.client_secret is None:
        return ft.RefreshTokenGrant(
            peer.token_endpoint, refresh_token, client.client_id, auth="none"
        )
    return ft.RefreshTokenGrant(
        peer.token_endpoint, refresh_token, client.client_id, client.client_secret
    )


@pytest.mark.parametrize("which", ["code_client", "public_code_client"])
def test_a_rotated_refresh_token_replaces_the_old_one_and_the_old_one_is_invalid_grant(
    oidc_provider_peer: OidcProviderPeer, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client: PeerClient = getattr(oidc_provider_peer, which)
    original = oidc_provider_peer.authorization_code_tokens(client)["refresh_token"]

    with ft.TokenManager(_refresh_grant(oidc_provider_peer, client, original)) as tokens:
        first = tokens.get()
        tokens.invalidate(first)
        second = tokens.get()  # only works with first's refresh token: original is consumed

    assert first.refresh_token not in {None, original}
    assert second.refresh_token not in {None, original, first.refresh_token}
    assert unverified_claims(second.access_token)["sub"] == oidc_provider_peer.user.username

    with (
        ft.TokenManager(_refresh_grant(oidc_provider_peer, client, original)) as replay,
        pytest.raises(ft.OAuthError) as caught,
    ):
        replay.get()

    assert caught.value.error == "invalid_grant"
    assert caught.value.status == 400
    secrets = [original, first.refresh_token, second.refresh_token, first.access_token]
    _assert_no_secret_in(
        caplog.text + str(caught.value) + repr(caught.value) + repr(first) + repr(second),
        *[secret for secret in secrets if secret is not None],
    )


def test_a_rotating_refresh_token_keeps_access_tokens_fresh_across_expiries(
    oidc_provider_peer: OidcProviderPeer,
) -> None:
    client = oidc_provider_peer.code_client
    original = oidc_provider_peer.authorization_code_tokens(client)["refresh_token"]
    events: list[ft.Event] = []

    with ft.TokenManager(
        _refresh_grant(oidc_provider_peer, client, original), on_event=events.append
    ) as tokens:
        seen, _ = _keep_fresh_for(tokens, 2.5 * oidc_provider_peer.access_token_ttl)

    # oidc-provider revokes the grant when a consumed refresh token comes back, so one stale
    # refresh token sent anywhere in the sequence would have failed every later refresh.
    refresh_tokens = [token.refresh_token for token in seen]
    assert len(seen) >= 2
    assert len(set(refresh_tokens)) == len(refresh_tokens)
    assert not [event for event in events if event.kind == "failed"]


# --------------------------------------------------------------------------------------------
# django-oauth-toolkit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["client_secret_basic", "client_secret_post"])
def test_dot_client_credentials(
    dot_peer: DjangoOAuthToolkitPeer, auth: Literal["client_secret_basic", "client_secret_post"]
) -> None:
    # The client's secret holds ':', '+', '%', ' ' and 'é': basic must form-encode it as UTF-8.
    client = dot_peer.client_credentials_client
    grant = ft.ClientCredentials(
        dot_peer.token_endpoint,
        client.client_id,
        _secret(client),
        auth=auth,
        scope="read",
    )

    with ft.TokenManager(grant) as tokens:
        token = tokens.get()

    assert token.scope == "read"
    assert token.expires_at is not None
    assert token.expires_at - token.issued_at == timedelta(seconds=dot_peer.access_token_ttl)
    assert token.refresh_token is None


def test_dot_password_grant_rotates_its_refresh_token(
    dot_peer: DjangoOAuthToolkitPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = dot_peer.password_client
    grant = ft.PasswordGrant(
        dot_peer.token_endpoint,
        dot_peer.user.username,
        dot_peer.user.password,
        client.client_id,
        _secret(client),
    )

    with ft.TokenManager(grant) as tokens:
        first = tokens.get()
        tokens.invalidate(first)
        second = tokens.get()
        tokens.invalidate(second)
        third = tokens.get()

    assert first.refresh_token is not None
    assert second.refresh_token is not None
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    # The second token came from first's refresh token: DOT revoked it on rotation.
    reused = httpx.post(
        dot_peer.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": first.refresh_token},
        headers={"Authorization": basic_authorization(client.client_id, _secret(client))},
    )
    assert reused.json()["error"] == "invalid_grant"
    _assert_no_secret_in(
        caplog.text + repr(grant) + repr(first),
        dot_peer.user.password,
        _secret(client),
        first.refresh_token,
        second.refresh_token,
    )


def test_dot_password_grant_falls_back_to_the_password_when_the_refresh_token_is_revoked(
    dot_peer: DjangoOAuthToolkitPeer,
) -> None:
    client = dot_peer.password_client
    grant = ft.PasswordGrant(
        dot_peer.token_endpoint,
        dot_peer.user.username,
        dot_peer.user.password,
        client.client_id,
        _secret(client),
    )

    with ft.TokenManager(grant) as tokens:
        first = tokens.get()
        assert first.refresh_token is not None
        revoked = httpx.post(
            dot_peer.revocation_endpoint,
            data={"token": first.refresh_token, "token_type_hint": "refresh_token"},
            headers={"Authorization": basic_authorization(client.client_id, _secret(client))},
        )
        assert revoked.status_code == 200, revoked.text
        tokens.invalidate(first)
        second = tokens.get()

    assert second.access_token != first.access_token
    assert second.refresh_token not in {None, first.refresh_token}


def test_dot_wrong_secret_is_invalid_client(dot_peer: DjangoOAuthToolkitPeer) -> None:
    grant = ft.ClientCredentials(
        dot_peer.token_endpoint, dot_peer.client_credentials_client.client_id, "wrong-secret"
    )

    with ft.TokenManager(grant) as tokens, pytest.raises(ft.OAuthError) as caught:
        tokens.get()

    assert caught.value.error == "invalid_client"
    assert caught.value.status == 401
    assert "wrong-secret" not in str(caught.value) + repr(caught.value)


def test_dot_unknown_scope_is_invalid_scope(dot_peer: DjangoOAuthToolkitPeer) -> None:
    client = dot_peer.client_credentials_client
    grant = ft.ClientCredentials(
        dot_peer.token_endpoint, client.client_id, _secret(client), scope=dot_peer.unknown_scope
    )

    with ft.TokenManager(grant) as tokens, pytest.raises(ft.OAuthError) as caught:
        tokens.get()

    assert caught.value.error == "invalid_scope"
    assert caught.value.status == 400


def test_dot_grant_not_allowed_for_the_application_is_unauthorized_client(
    dot_peer: DjangoOAuthToolkitPeer,
) -> None:
    client = dot_peer.code_only_client
    grant = ft.ClientCredentials(dot_peer.token_endpoint, client.client_id, _secret(client))

    with ft.TokenManager(grant) as tokens, pytest.raises(ft.OAuthError) as caught:
        tokens.get()

    assert caught.value.error == "unauthorized_client"
    assert caught.value.status == 400
