"""RFC 9728 against the test server: ``ft.discover_resource`` / ``ft.adiscover_resource`` and
``resource_metadata=`` on a grant, with the document's checks (resource identifier, servers,
JSON, size, redirects)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

import freshtoken as ft
from freshtoken._http_auth.challenges import parse_challenges
from freshtoken._oauth.resource import metadata_location
from freshtoken.testing import AuthorizationServer, Fault


def test_the_metadata_names_the_resource_and_its_authorization_server(
    server: AuthorizationServer,
) -> None:
    for url in (server.base_url, server.base_url + "/", server.resource_metadata_url):
        metadata = ft.discover_resource(url)
        assert metadata.resource == server.audience
        assert metadata.authorization_servers == (server.issuer,)


def test_the_async_lookup_gives_the_same(server: AuthorizationServer) -> None:
    metadata = asyncio.run(ft.adiscover_resource(server.base_url))

    assert metadata.resource == server.audience
    assert metadata.authorization_servers == (server.issuer,)


@pytest.mark.parametrize(
    ("url", "location"),
    [
        (
            "https://api.example.com",
            (
                "https://api.example.com/.well-known/oauth-protected-resource",
                "https://api.example.com",
            ),
        ),
        (
            "https://api.example.com/",
            (
                "https://api.example.com/.well-known/oauth-protected-resource",
                "https://api.example.com/",
            ),
        ),
        (
            "https://api.example.com/v1/mcp",
            (
                "https://api.example.com/.well-known/oauth-protected-resource/v1/mcp",
                "https://api.example.com/v1/mcp",
            ),
        ),
        (
            "https://api.example.com/.well-known/oauth-protected-resource/v1",
            (
                "https://api.example.com/.well-known/oauth-protected-resource/v1",
                "https://api.example.com/v1",
            ),
        ),
    ],
)
def test_the_well_known_segment_goes_between_host_and_path(
    url: str, location: tuple[str, str]
) -> None:
    assert metadata_location(url) == location


@pytest.mark.parametrize(
    "url", ["http://api.example.com/", "ftp://x/", "https://u:p@x/", "https://x/#f", "", 3]
)
def test_a_url_that_cannot_be_fetched_safely_is_refused_before_any_request(url: object) -> None:
    with pytest.raises(ft.ConfigurationError):
        ft.discover_resource(url)  # type: ignore[arg-type]


def test_a_document_for_another_resource_is_refused() -> None:
    with (
        AuthorizationServer(audience="https://elsewhere.example/api") as server,
        pytest.raises(ft.ConfigurationError, match="resource") as caught,
    ):
        ft.discover_resource(server.base_url)
    assert "RFC 9728 §3.3" in str(caught.value)


def _serve(server: AuthorizationServer, body: str, **fault: object) -> None:
    server.faults.add(
        Fault(target="discovery", body=body, content_type="application/json", **fault)  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("[]", "not a JSON object"),
        ('{"resource": "x", "authorization_servers": []}', "resource"),
        ("{RESOURCE}", "authorization_servers"),
        ('{RESOURCE, "authorization_servers": []}', "authorization_servers"),
        ('{RESOURCE, "authorization_servers": "https://as.example"}', "authorization_servers"),
        ('{RESOURCE, "authorization_servers": [7]}', r"authorization_servers\[0\]"),
        (
            '{RESOURCE, "authorization_servers": ["http://as.example.com"]}',
            r"authorization_servers\[0\]",
        ),
        ('{RESOURCE, "authorization_servers": ["https://as.example/?a=1"]}', "query"),
        (
            '{RESOURCE, "authorization_servers": ' + json.dumps(["https://a.example"] * 40) + "}",
            "40",
        ),
        ("{not json", "not valid JSON"),
        ('{"resource": 1, "resource": 2}', "repeats the key"),
    ],
)
def test_a_bad_document_raises_a_configuration_error_naming_the_field(
    server: AuthorizationServer, document: str, field: str
) -> None:
    _serve(server, document.replace("RESOURCE", f'"resource": "{server.audience}"'))

    with pytest.raises(ft.ConfigurationError, match=field):
        ft.discover_resource(server.base_url)


def test_an_oversized_document_is_refused(server: AuthorizationServer) -> None:
    _serve(server, '{"pad": "' + "x" * (2 * 1024 * 1024) + '"}')

    with pytest.raises(ft.FreshTokenError, match="size limit"):
        ft.discover_resource(server.base_url)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed(server: AuthorizationServer, status: int) -> None:
    server.faults.add(Fault(target="discovery", status=status, body=""))

    with pytest.raises(ft.ConfigurationError, match="redirect"):
        ft.discover_resource(server.base_url)


@pytest.mark.parametrize(("status", "body"), [(404, "{}"), (200, "<html>")])
def test_no_metadata_is_a_configuration_error(
    server: AuthorizationServer, status: int, body: str
) -> None:
    server.faults.add(Fault(target="discovery", status=status, body=body, content_type="text/html"))

    with pytest.raises(ft.ConfigurationError, match="no protected-resource metadata"):
        ft.discover_resource(server.base_url)


def test_an_unreachable_resource_is_token_endpoint_unavailable() -> None:
    with AuthorizationServer() as gone:
        url = gone.base_url
    with pytest.raises(ft.TokenEndpointUnavailable):
        ft.discover_resource(url, timeout=2)


# -- resource_metadata= on grants ---------------------------------------------------------------


@pytest.fixture
def grant_args(server: AuthorizationServer) -> dict[str, Any]:
    client = server.client
    assert client.client_secret is not None
    return {"client_id": client.client_id, "client_secret": client.client_secret}


def _use(grant: ft.ClientCredentials, server: AuthorizationServer) -> ft.Token:
    with ft.TokenManager(grant) as manager:
        token = manager.get()
    response = httpx.get(server.resource_url, headers={"Authorization": token.authorization})
    assert response.status_code == 200  # the audience is the resource's identifier
    return token


def test_the_issuer_learned_from_a_401_gives_a_token_the_resource_accepts(
    server: AuthorizationServer, grant_args: dict[str, Any]
) -> None:
    """The client knows only the resource's URL: its 401 names the metadata, the metadata the
    authorization server, discovery the token endpoint, and the token carries the resource."""
    refused = httpx.get(server.resource_url)
    assert refused.status_code == 401
    (bearer,) = parse_challenges(refused.headers.get_list("www-authenticate"))
    metadata_url = bearer.params["resource_metadata"]

    grant = ft.ClientCredentials(resource_metadata=metadata_url, **grant_args)
    token = _use(grant, server)

    assert server.token_requests == 1
    assert token.access_token
    assert "resource_metadata=" in repr(grant)


def test_a_listed_issuer_and_its_token_url_are_accepted(
    server: AuthorizationServer, grant_args: dict[str, Any]
) -> None:
    by_issuer = ft.ClientCredentials(
        issuer=server.issuer, resource_metadata=server.resource_metadata_url, **grant_args
    )
    by_url = ft.ClientCredentials(
        server.token_url, resource_metadata=server.resource_metadata_url, **grant_args
    )

    _use(by_issuer, server)
    _use(by_url, server)


def test_an_unlisted_issuer_or_token_url_is_refused_before_any_token_request(
    server: AuthorizationServer, grant_args: dict[str, Any]
) -> None:
    with AuthorizationServer() as other:
        other.add_client(**grant_args)
        by_issuer = ft.ClientCredentials(
            issuer=other.issuer, resource_metadata=server.resource_metadata_url, **grant_args
        )
        by_url = ft.ClientCredentials(
            other.token_url, resource_metadata=server.resource_metadata_url, **grant_args
        )
        for grant in (by_issuer, by_url):
            with (
                ft.TokenManager(grant) as manager,
                pytest.raises(ft.ConfigurationError, match=r"not (among|the token endpoint)"),
            ):
                manager.get()
        assert other.token_requests == 0
    assert server.token_requests == 0


def test_a_resource_given_by_the_caller_is_kept(
    server: AuthorizationServer, grant_args: dict[str, Any]
) -> None:
    grant = ft.ClientCredentials(
        resource_metadata=server.resource_metadata_url, resource=server.audience, **grant_args
    )
    _use(grant, server)


def test_the_key_names_the_metadata_and_stays_as_before_without_it(
    server: AuthorizationServer, grant_args: dict[str, Any]
) -> None:
    plain = ft.ClientCredentials(server.token_url, **grant_args)
    same = ft.ClientCredentials(server.token_url, **grant_args)
    with_metadata = ft.ClientCredentials(
        server.token_url, resource_metadata=server.resource_metadata_url, **grant_args
    )

    assert plain.key == same.key
    assert with_metadata.key != plain.key


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"resource_metadata": "http://api.example.com/.well-known/oauth-protected-resource"},
        {"resource_metadata": "https://x/", "issuer": "https://x", "token_url": "https://x/t"},
    ],
)
def test_grant_configuration_errors(options: dict[str, str]) -> None:
    token_url = options.pop("token_url", None)
    with pytest.raises(ft.ConfigurationError):
        ft.ClientCredentials(token_url, "id", "secret", **options)  # type: ignore[arg-type]


def test_the_metadata_is_fetched_once_per_process(
    server: AuthorizationServer, grant_args: dict[str, Any]
) -> None:
    first = ft.ClientCredentials(resource_metadata=server.resource_metadata_url, **grant_args)
    _use(first, server)
    server.faults.add(Fault(target="discovery", status=500))  # no document can be read now

    for _ in range(3):  # every later grant of the process uses what the first one learned
        grant = ft.ClientCredentials(resource_metadata=server.resource_metadata_url, **grant_args)
        _use(grant, server)
    assert server.token_requests == 4


def test_an_async_fetch_learns_the_same(
    server: AuthorizationServer, grant_args: dict[str, Any]
) -> None:
    grant = ft.ClientCredentials(resource_metadata=server.resource_metadata_url, **grant_args)

    async def main() -> ft.Token:
        async with ft.TokenManager(grant) as manager:
            return await manager.aget()

    token = asyncio.run(main())
    response = httpx.get(server.resource_url, headers={"Authorization": token.authorization})
    assert response.status_code == 200


@pytest.mark.parametrize("options", [{"allow_insecure_http": 1}, {"timeout": 0}, {"timeout": True}])
def test_bad_lookup_options_are_configuration_errors(options: dict[str, object]) -> None:
    with pytest.raises(ft.ConfigurationError):
        ft.discover_resource("https://api.example.com", **options)  # type: ignore[arg-type]


def test_a_resource_with_a_path_has_its_metadata_at_the_inserted_path() -> None:
    with AuthorizationServer() as server:
        server.add_client()
        # the resource at "/": a document naming "/v1" for it is not its document
        body = json.dumps({"resource": server.base_url + "/v1", "authorization_servers": []})
        _serve(server, body)
        with pytest.raises(ft.ConfigurationError, match="names resource"):
            ft.discover_resource(server.base_url + "/")


def test_the_test_server_serves_a_resource_with_a_path_at_the_inserted_path() -> None:
    server = None
    for _ in range(5):  # the port is freed, then bound again: another process may take it first
        with AuthorizationServer() as first:
            port = first.port
        try:
            server = AuthorizationServer(port=port, audience=f"http://127.0.0.1:{port}/api")
            server.start()
            break
        except OSError:
            server = None
    assert server is not None
    try:
        assert server.resource_metadata_url.endswith("/.well-known/oauth-protected-resource/api")
        metadata = ft.discover_resource(server.base_url + "/api")
        assert metadata.resource == server.audience
        with pytest.raises(ft.ConfigurationError, match="no protected-resource metadata"):
            ft.discover_resource(server.base_url + "/api/")  # another path, another document
    finally:
        server.stop()


def test_a_listed_server_without_discovery_is_a_configuration_error(
    server: AuthorizationServer, grant_args: dict[str, Any]
) -> None:
    body = json.dumps({"resource": server.audience, "authorization_servers": [server.issuer]})
    grant = ft.ClientCredentials(resource_metadata=server.resource_metadata_url, **grant_args)
    server.faults.add(  # the metadata, once
        Fault(target="discovery", body=body, content_type="application/json"), times=1
    )
    server.faults.add(Fault(target="discovery", status=404, body="{}"))  # then no AS metadata

    with (
        ft.TokenManager(grant) as manager,
        pytest.raises(ft.ConfigurationError, match="no authorization server metadata"),
    ):
        manager.get()
    assert server.token_requests == 0
