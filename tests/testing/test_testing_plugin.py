"""The pytest plugin, used exactly as a user would: fixtures and marker, no imports."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
addopts = --strict-markers --strict-config -p no:cacheprovider
filterwarnings = error
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester


def test_oauth_server_fixture(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx

        def test_token_and_resource(oauth_server):
            client = oauth_server.client
            with httpx.Client() as http:
                response = http.post(
                    oauth_server.token_url,
                    data={"grant_type": "client_credentials",
                          "client_id": client.client_id, "client_secret": client.client_secret},
                )
                token = response.json()["access_token"]
                assert response.json()["expires_in"] == 3600
                ok = http.get(oauth_server.resource_url,
                              headers={"Authorization": "Bearer " + token})
            assert ok.json()["client_id"] == client.client_id
            assert oauth_server.token_requests == 1

        def test_fresh_server_per_test(oauth_server):
            assert oauth_server.token_requests == 0
            assert len(oauth_server.clients) == 1
        """
    )
    project.runpytest("-q").assert_outcomes(passed=2)


def test_marker_configures_server_and_client(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx
        import pytest

        pytestmark = pytest.mark.oauth_server(token_lifetime=60)

        @pytest.mark.oauth_server(
            token_lifetime=1.5,
            client={"scopes": ["read"], "auth_methods": "client_secret_post"},
        )
        def test_marked(oauth_server):
            client = oauth_server.client
            assert client.scopes == ("read",)
            with httpx.Client() as http:
                body = http.post(oauth_server.token_url, data={
                    "grant_type": "client_credentials",
                    "client_id": client.client_id, "client_secret": client.client_secret,
                }).json()
            assert body["expires_in"] == 1.5
            assert body["scope"] == "read"

        def test_module_marker(oauth_server):
            token = oauth_server.issue_token()
            import jwt
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["exp"] - claims["iat"] == 60
        """
    )
    project.runpytest("-q").assert_outcomes(passed=2)


def test_fake_clock_fixture_and_fake_clock_server(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx
        import pytest

        def test_fake_clock(fake_clock):
            before = fake_clock.monotonic()
            fake_clock.advance(5)
            assert fake_clock.monotonic() == before + 5

        @pytest.mark.oauth_server(fake_clock=True, token_lifetime=10)
        def test_expiry_without_sleeping(oauth_server, fake_clock):
            token = oauth_server.issue_token()
            headers = {"Authorization": "Bearer " + token}
            with httpx.Client() as http:
                assert http.get(oauth_server.resource_url, headers=headers).status_code == 200
                fake_clock.advance(10)
                response = http.get(oauth_server.resource_url, headers=headers)
            assert response.status_code == 401
            assert oauth_server.unauthorized == {"expired": 1}
        """
    )
    project.runpytest("-q").assert_outcomes(passed=2)


def test_session_server_and_marker_errors(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        def test_session_one(oauth_server_session):
            assert oauth_server_session.client.client_id

        def test_session_two(oauth_server_session):
            assert oauth_server_session.running

        @pytest.mark.oauth_server(1.0)
        def test_positional(oauth_server):
            pass

        @pytest.mark.oauth_server(client={"auth_methods": "magic"})
        def test_bad_client(oauth_server):
            pass
        """
    )
    result = project.runpytest("-q")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*keyword arguments only*", "*unknown auth method*"])


def test_marker_is_registered(project: pytest.Pytester) -> None:
    result = project.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.oauth_server(**options)*"])
