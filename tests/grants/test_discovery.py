"""issuer= : the token endpoint from RFC 8414 metadata, else OpenID discovery; fetched once."""

from __future__ import annotations

import json

import pytest

import freshtoken as ft
from freshtoken._oauth.discovery import discovery_urls
from freshtoken._oauth.grants import ClientCredentials
from freshtoken.testing import AuthorizationServer

from .conftest import FAST, GETTERS, Getter, get_sync


def by_issuer(server: AuthorizationServer, issuer: str | None = None) -> ClientCredentials:
    client = server.add_client()
    return ClientCredentials(
        issuer=issuer or server.issuer,
        client_id=client.client_id,
        client_secret=client.client_secret,
    )


@GETTERS
def test_the_token_endpoint_comes_from_rfc_8414_metadata(
    server: AuthorizationServer, get: Getter
) -> None:
    discovery = server.inject(target="discovery")  # no effect: counts discovery requests
    assert get(by_issuer(server))
    assert discovery.hits == 1
    assert server.token_requests == 1


def test_openid_configuration_is_the_fallback(server: AuthorizationServer) -> None:
    server.inject(target="discovery", status=404, body="", content_type="text/plain", times=1)
    discovery = server.inject(target="discovery")
    with ft.TokenManager(by_issuer(server), policy=FAST) as tokens:
        assert tokens.get()
    assert discovery.hits == 2


def test_discovery_is_fetched_once_per_issuer_for_all_sources(server: AuthorizationServer) -> None:
    discovery = server.inject(target="discovery")
    for _ in range(3):
        with ft.TokenManager(by_issuer(server), policy=FAST) as tokens:
            assert tokens.get()
    assert discovery.hits == 1
    assert server.token_requests == 3


def test_an_issuer_mismatch_is_a_configuration_error_at_the_first_get(
    server: AuthorizationServer,
) -> None:
    # The same server under another name: its metadata says 127.0.0.1, we asked for localhost.
    issuer = f"http://localhost:{server.port}"
    grant = by_issuer(server, issuer)  # construction does no I/O
    with pytest.raises(ft.ConfigurationError) as caught:
        get_sync(grant)
    assert "names issuer" in str(caught.value)
    assert server.token_requests == 0


def test_metadata_without_a_token_endpoint_is_a_configuration_error(
    server: AuthorizationServer,
) -> None:
    server.inject(
        target="discovery",
        body=json.dumps({"issuer": server.issuer}),
        content_type="application/json",
    )
    with pytest.raises(ft.ConfigurationError, match="no token_endpoint"):
        get_sync(by_issuer(server))


def test_an_insecure_discovered_token_endpoint_is_refused(server: AuthorizationServer) -> None:
    server.inject(
        target="discovery",
        body=json.dumps({"issuer": server.issuer, "token_endpoint": "http://tokens.example.com/t"}),
        content_type="application/json",
    )
    with pytest.raises(ft.ConfigurationError, match="plain http"):
        get_sync(by_issuer(server))


def test_no_metadata_at_all_is_a_configuration_error_naming_what_was_tried(
    server: AuthorizationServer,
) -> None:
    server.inject(target="discovery", status=404, body="", content_type="text/plain")
    with pytest.raises(ft.ConfigurationError) as caught:
        get_sync(by_issuer(server))
    assert "oauth-authorization-server (HTTP 404)" in str(caught.value)


def test_broken_metadata_json_is_a_configuration_error(server: AuthorizationServer) -> None:
    server.inject(target="discovery", body="{", content_type="application/json")
    with pytest.raises(ft.ConfigurationError, match="not valid JSON"):
        get_sync(by_issuer(server))


def test_metadata_that_is_not_an_object_is_a_configuration_error(
    server: AuthorizationServer,
) -> None:
    server.inject(target="discovery", body="[]", content_type="application/json")
    with pytest.raises(ft.ConfigurationError, match="not a JSON object"):
        get_sync(by_issuer(server))


def test_a_discovery_outage_is_retried_then_endpoint_unavailable(
    server: AuthorizationServer,
) -> None:
    server.inject(target="discovery", status=503, times=2)
    with ft.TokenManager(by_issuer(server), policy=FAST) as tokens:
        assert tokens.get()
    server.inject(target="discovery", status=503)
    from freshtoken._oauth.discovery import clear_cache

    clear_cache()
    with pytest.raises(ft.TokenEndpointUnavailable, match="discovery endpoint"):
        get_sync(by_issuer(server))


def test_discovery_urls_follow_rfc_8414_and_openid_for_issuers_with_a_path() -> None:
    assert discovery_urls("https://as.example.com/tenant/1") == (
        "https://as.example.com/.well-known/oauth-authorization-server/tenant/1",
        "https://as.example.com/tenant/1/.well-known/openid-configuration",
    )
    assert discovery_urls("https://as.example.com") == (
        "https://as.example.com/.well-known/oauth-authorization-server",
        "https://as.example.com/.well-known/openid-configuration",
    )
