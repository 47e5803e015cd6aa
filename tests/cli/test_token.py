"""``freshtoken token``: a token from flags or FRESHTOKEN_* variables, every error with its code.

Subprocess runs prove the real command (exit codes, what reaches stdout and stderr); in-process
``main([...])`` runs cover the parsing and error paths for coverage.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import jwt
import pytest

from freshtoken._cli import main
from freshtoken._cli.common import REDACTED, SECRETS
from freshtoken.testing import AuthorizationServer

from .conftest import closed_port, run_cli

_BASE = ["token", "--token-url", "https://a.example/t", "--client-id", "c"]


def _env(server: AuthorizationServer, secret: str | None = None) -> dict[str, str]:
    client = server.client
    env = {"FRESHTOKEN_TOKEN_URL": server.token_url, "FRESHTOKEN_CLIENT_ID": client.client_id}
    env["FRESHTOKEN_CLIENT_SECRET"] = secret if secret is not None else client.client_secret or ""
    return env


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


# -- the real command -------------------------------------------------------------------------


def test_token_prints_the_access_token_alone_on_the_last_line(
    server: AuthorizationServer,
) -> None:
    result = run_cli("token", env=_env(server))
    assert result.code == 0, result.stderr
    token = result.stdout.splitlines()[-1]
    assert _claims(token)["iss"] == server.issuer
    assert result.stderr == ""
    # The token works against the protected resource.
    response = httpx.get(server.resource_url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_the_console_script_takes_flags_and_the_secret_from_stdin(
    server: AuthorizationServer,
) -> None:
    client = server.client
    result = run_cli(
        "token",
        "--token-url",
        server.token_url,
        "--client-id",
        client.client_id,
        "--client-secret-stdin",
        stdin=f"{client.client_secret}\n",
        script=True,
    )
    assert result.code == 0, result.stderr
    assert _claims(result.stdout.strip())["client_id"] == client.client_id
    assert (client.client_secret or "?") not in result.output


def test_json_shows_the_response_with_refresh_token_redacted_unless_asked() -> None:
    with AuthorizationServer(token_lifetime=60) as server:
        client = server.add_client(refresh_tokens=True)
        env = _env(server)
        result = run_cli("token", "--json", "--scope", "", env=env)
        assert result.code == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["refresh_token"] == REDACTED
        assert data["expires_in"] == 60
        assert data["token_type"] == "Bearer"
        assert _claims(data["access_token"])["client_id"] == client.client_id
        assert data["fingerprint"] and len(data["fingerprint"]) == 8

        shown = run_cli("token", "--json", "--show-secrets", env=env)
        assert shown.code == 0, shown.stderr
        refresh = json.loads(shown.stdout)["refresh_token"]
        assert refresh != REDACTED
        assert refresh not in result.output  # the redacted run did not leak it anywhere


def test_issuer_discovers_the_token_endpoint(server: AuthorizationServer) -> None:
    env = _env(server)
    del env["FRESHTOKEN_TOKEN_URL"]
    result = run_cli("token", "--issuer", server.issuer, env=env)
    assert result.code == 0, result.stderr
    assert _claims(result.stdout.strip())["iss"] == server.issuer


def test_bad_credentials_exit_4_naming_the_oauth_error_code(server: AuthorizationServer) -> None:
    wrong = "not-the-secret-0123456789"
    result = run_cli("token", env=_env(server, secret=wrong))
    assert result.code == 4
    assert "invalid_client" in result.stderr
    assert "to fix: check --client-id and the client secret" in result.stderr
    assert result.stdout == ""
    assert wrong not in result.output
    assert "Traceback" not in result.stderr


def test_an_unreachable_token_endpoint_exits_5(server: AuthorizationServer) -> None:
    env = _env(server)
    env["FRESHTOKEN_TOKEN_URL"] = f"http://127.0.0.1:{closed_port()}/token"
    result = run_cli("token", env=env)
    assert result.code == 5
    assert "unavailable" in result.stderr
    assert "could not connect" in result.stderr
    assert "to fix: check --token-url / --issuer" in result.stderr
    assert env["FRESHTOKEN_CLIENT_SECRET"] not in result.output
    assert "Traceback" not in result.stderr


def test_an_unreachable_issuer_exits_5(server: AuthorizationServer) -> None:
    env = _env(server)
    del env["FRESHTOKEN_TOKEN_URL"]
    result = run_cli("token", "--issuer", f"http://127.0.0.1:{closed_port()}", env=env)
    assert result.code == 5
    assert "Traceback" not in result.stderr


def test_a_missing_secret_exits_3_naming_the_three_ways_to_give_it(
    server: AuthorizationServer,
) -> None:
    env = _env(server)
    del env["FRESHTOKEN_CLIENT_SECRET"]
    result = run_cli("token", env=env)
    assert result.code == 3
    for way in ("FRESHTOKEN_CLIENT_SECRET", "--client-secret-file", "--client-secret-stdin"):
        assert way in result.stderr
    assert result.stdout == ""


def test_a_secret_flag_does_not_exist_so_it_cannot_reach_shell_history(
    server: AuthorizationServer,
) -> None:
    result = run_cli("token", "--client-secret", "s3cr3t-value", env=_env(server))
    assert result.code == 2
    assert "there is no --client-secret flag" in result.stderr
    assert "s3cr3t-value" not in result.output


# -- in process: parsing and error paths ------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
class TestInProcess:
    def test_secret_file_is_read_and_never_printed(
        self, server: AuthorizationServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        client = server.client
        path = tmp_path / "secret"
        path.write_text(f"{client.client_secret}\n")
        code = main(
            [
                "token",
                "--token-url",
                server.token_url,
                "--client-id",
                client.client_id,
                "--client-secret-file",
                str(path),
                "--auth",
                "client_secret_post",
            ]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert _claims(out.strip())["client_id"] == client.client_id
        assert (client.client_secret or "?") not in out + err

    def test_secret_file_from_the_environment(
        self,
        server: AuthorizationServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        path = tmp_path / "secret"
        path.write_text(server.client.client_secret or "")
        monkeypatch.setenv("FRESHTOKEN_TOKEN_URL", server.token_url)
        monkeypatch.setenv("FRESHTOKEN_CLIENT_ID", server.client.client_id)
        monkeypatch.setenv("FRESHTOKEN_CLIENT_SECRET_FILE", str(path))
        monkeypatch.setenv("FRESHTOKEN_TIMEOUT", "5")
        monkeypatch.setenv("FRESHTOKEN_AUDIENCE", server.audience)
        assert main(["token"]) == 0, capsys.readouterr().err

    def test_stdin_secret(
        self,
        server: AuthorizationServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        client = server.client
        monkeypatch.setattr("sys.stdin", io.StringIO(f"{client.client_secret}\r\n"))
        args = ["token", "--token-url", server.token_url, "--client-id", client.client_id]
        assert main([*args, "--client-secret-stdin", "--timeout", "5"]) == 0
        assert capsys.readouterr().out.strip().count(".") == 2

    def test_client_secret_jwt_and_public_clients(self, capsys: pytest.CaptureFixture[str]) -> None:
        with AuthorizationServer(token_lifetime=60) as server:
            signed = server.add_client(auth_methods="client_secret_jwt")
            public = server.add_client(auth_methods="none")
            base = ["token", "--token-url", server.token_url]
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("FRESHTOKEN_CLIENT_SECRET", signed.client_secret or "")
                code = main([*base, "--client-id", signed.client_id, "--auth", "client_secret_jwt"])
                assert code == 0, capsys.readouterr().err
                # A public client needs no secret; one in the environment is ignored.
                code = main([*base, "--client-id", public.client_id, "--auth", "none"])
                assert code == 0, capsys.readouterr().err
            assert server.token_requests_by_client == {signed.client_id: 1, public.client_id: 1}

    @pytest.mark.parametrize(
        ("argv", "env", "message"),
        [
            (["token", "--client-id", "c"], {}, "no token endpoint: give --token-url"),
            (
                ["token", "--token-url", "https://a.example/t", "--issuer", "https://a.example"],
                {},
                "both a token URL and an issuer",
            ),
            (["token", "--token-url", "https://a.example/t"], {}, "no client id"),
            (
                ["token", "--token-url", "https://a.example/t", "--client-id", "c"],
                {"FRESHTOKEN_AUTH": "magic"},
                "FRESHTOKEN_AUTH must be one of",
            ),
            (
                ["token", "--token-url", "https://a.example/t", "--client-id", "c"],
                {"FRESHTOKEN_TIMEOUT": "soon"},
                "FRESHTOKEN_TIMEOUT must be a number",
            ),
            (
                ["token", "--token-url", "https://a.example/t", "--client-id", "c"],
                {"FRESHTOKEN_ALLOW_INSECURE_HTTP": "maybe"},
                "FRESHTOKEN_ALLOW_INSECURE_HTTP must be",
            ),
            (
                ["token", "--token-url", "https://a.example/t", "--client-id", "c"],
                {"FRESHTOKEN_TIMEOUT": "0"},
                "--timeout must be a positive number",
            ),
            (
                ["token", "--token-url", "http://auth.example/t", "--client-id", "c"],
                {"FRESHTOKEN_CLIENT_SECRET": "abcdefgh"},
                "http://",
            ),
            (
                ["token", "--token-url", "https://a.example/t", "--client-id", "c"],
                {},
                "no client secret",
            ),
            (
                [*_BASE, "--auth", "none", "--client-secret-stdin"],
                {},
                "--auth none sends no client secret",
            ),
            (
                [*_BASE, "--client-secret-file", "/nonexistent/secret"],
                {},
                "cannot read --client-secret-file '/nonexistent/secret'",
            ),
        ],
    )
    def test_configuration_errors_exit_3_saying_what_to_fix(
        self,
        argv: list[str],
        env: dict[str, str],
        message: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert main(argv) == 3
        out, err = capsys.readouterr()
        assert out == ""
        assert message in err
        assert err.startswith("freshtoken token: error: ")
        assert "abcdefgh" not in err

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("\n", "is empty"),
            ("line-one\nline-two\n", "spans several lines"),
            (b"\xff\xfe", "is not UTF-8"),
        ],
    )
    def test_unusable_secret_files_exit_3(
        self,
        content: str | bytes,
        message: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        path = tmp_path / "secret"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        argv = ["token", "--token-url", "https://a.example/t", "--client-id", "c"]
        assert main([*argv, "--client-secret-file", str(path)]) == 3
        err = capsys.readouterr().err
        assert message in err
        assert "line-one" not in err

    def test_refusal_and_unreachable_endpoint_in_process(
        self,
        server: AuthorizationServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("FRESHTOKEN_CLIENT_SECRET", "wrong-secret-value")
        monkeypatch.setenv("FRESHTOKEN_CLIENT_ID", server.client.client_id)
        assert main(["token", "--token-url", server.token_url]) == 4
        assert "invalid_client" in capsys.readouterr().err
        closed = f"http://127.0.0.1:{closed_port()}/token"
        assert main(["token", "--token-url", closed]) == 5
        err = capsys.readouterr().err
        assert "could not connect" in err
        assert "wrong-secret-value" not in err

    def test_json_in_process_redacts_and_shows_on_request(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with AuthorizationServer(token_lifetime=1.5) as server:
            client = server.add_client(refresh_tokens=True, scopes=["read", "write"])
            monkeypatch.setenv("FRESHTOKEN_CLIENT_SECRET", client.client_secret or "")
            monkeypatch.setenv("FRESHTOKEN_ALLOW_INSECURE_HTTP", "yes")
            argv = ["token", "--token-url", server.token_url, "--client-id", client.client_id]
            assert main([*argv, "--json", "--scope", "read"]) == 0
            data = json.loads(capsys.readouterr().out)
            assert data["refresh_token"] == REDACTED
            assert data["scope"] == "read"
            assert data["expires_in"] == 1.5
            assert main([*argv, "--json", "--show-secrets"]) == 0
            assert json.loads(capsys.readouterr().out)["refresh_token"] != REDACTED

    def test_a_response_that_is_not_a_token_exits_4(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with AuthorizationServer(token_lifetime=60) as server:
            client = server.add_client()
            server.inject(body="<html>maintenance</html>", content_type="text/html")
            monkeypatch.setenv("FRESHTOKEN_CLIENT_SECRET", client.client_secret or "")
            code = main(["token", "--token-url", server.token_url, "--client-id", client.client_id])
        err = capsys.readouterr().err
        assert code == 4
        assert "not a JSON token response" in err
        assert "did not answer like an OAuth token endpoint" in err

    def test_an_endpoint_that_keeps_failing_exits_5_with_its_retry_after(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with AuthorizationServer(token_lifetime=60) as server:
            client = server.add_client()
            server.inject(status=503, retry_after=1000)
            monkeypatch.setenv("FRESHTOKEN_CLIENT_SECRET", client.client_secret or "")
            code = main(["token", "--token-url", server.token_url, "--client-id", client.client_id])
        err = capsys.readouterr().err
        assert code == 5
        assert "try again in" in err

    def test_an_unexpected_error_exits_1_with_a_traceback_scrubbed_of_secrets(
        self,
        server: AuthorizationServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        secret = server.client.client_secret or ""

        def broken_send(*args: object, **kwargs: object) -> httpx.Response:
            # A third-party failure whose message quotes what it was given.
            raise RuntimeError(f"transport exploded while sending {secret}")

        monkeypatch.setattr(httpx.Client, "send", broken_send)
        monkeypatch.setenv("FRESHTOKEN_CLIENT_SECRET", secret)
        code = main(
            ["token", "--token-url", server.token_url, "--client-id", server.client.client_id]
        )
        out, err = capsys.readouterr()
        assert code == 1
        assert "Traceback" in err
        assert "this is a bug" in err
        assert secret not in out + err
        assert REDACTED in err
        assert SECRETS.scrub(secret) == secret  # forgotten after the command


def test_verbose_logs_events_with_fingerprints_never_the_token(
    server: AuthorizationServer,
) -> None:
    result = run_cli("-v", "token", env=_env(server))
    assert result.code == 0, result.stderr
    token = result.stdout.strip()
    assert "fetched" in result.stderr
    assert token not in result.stderr
    assert (server.client.client_secret or "?") not in result.output


def test_render_json_redacts_secret_looking_extra_fields() -> None:
    from datetime import UTC, datetime, timedelta

    from freshtoken import Token
    from freshtoken._cli.token import render_json

    issued = datetime(2030, 1, 1, tzinfo=UTC)
    token = Token(
        access_token="at-value",
        issued_at=issued,
        expires_at=issued + timedelta(seconds=3600),
        id_token="id-value",
        extra={"device_token": "d-value", "session_secret": "s-value", "ext_expires_in": 7200},
    )
    data = json.loads(render_json(token, show_secrets=False))
    assert data["id_token"] == REDACTED
    assert data["device_token"] == REDACTED  # its name says token: redacted to be safe
    assert data["session_secret"] == REDACTED
    assert data["ext_expires_in"] == 7200
    assert data["expires_in"] == 3600
    assert "id-value" not in json.dumps(data)
    shown = json.loads(render_json(token, show_secrets=True))
    assert shown["session_secret"] == "s-value"
