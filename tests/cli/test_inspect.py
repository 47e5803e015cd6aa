"""``freshtoken inspect``: decode a JWT, show its timing; verify with --jwks; refuse non-JWTs."""

from __future__ import annotations

import base64
import io
import json
import re

import jwt
import pytest

from freshtoken import RefreshPolicy
from freshtoken._cli import main
from freshtoken._cli.inspect import Timing, describe_duration, timeline, timing_of
from freshtoken.testing import AuthorizationServer

from .conftest import closed_port, run_cli


def _b64(data: object) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- the real command -------------------------------------------------------------------------


def test_inspect_reads_stdin_and_shows_header_claims_timing_and_timeline(
    server: AuthorizationServer,
) -> None:
    token = server.issue_token()
    result = run_cli("inspect", "-", stdin=token + "\n")
    assert result.code == 0, result.stderr
    out = result.stdout
    for part in ("header", 'alg: "ES256"', "claims", f'iss: "{server.issuer}"', "timing"):
        assert part in out
    assert "lifetime   2 min 0 s" in out
    assert "80% of its life" in out
    assert "now        fresh" in out
    bar = next(line for line in out.splitlines() if "issued |" in line)
    assert "fresh" in bar
    assert "stale" in bar
    assert bar.rstrip().endswith("| expires")
    assert "^ now" in out
    assert "signature   not verified" in out
    assert token not in result.output  # only the fingerprint is shown


def test_the_console_script_takes_the_token_as_an_argument_with_a_bearer_prefix(
    server: AuthorizationServer,
) -> None:
    token = server.issue_token()
    result = run_cli("inspect", f"Bearer {token}", script=True)
    assert result.code == 0, result.stderr
    assert f'sub: "{server.client.client_id}"' in result.stdout


def test_an_expired_token_can_be_inspected_and_verified(server: AuthorizationServer) -> None:
    token = server.issue_token(clock_offset=-600)
    result = run_cli("inspect", "--jwks", server.jwks_url, stdin=token)
    assert result.code == 0, result.stderr
    assert "remaining  none: expired" in result.stdout
    assert "now        expired" in result.stdout
    assert "^ now (expired)" in result.stdout
    assert f"verified with the JWKS at {server.jwks_url}" in result.stdout


def test_json_output(server: AuthorizationServer) -> None:
    token = server.issue_token()
    result = run_cli("inspect", "--json", "--jwks", server.jwks_url, stdin=token)
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["header"]["alg"] == "ES256"
    assert data["claims"]["iss"] == server.issuer
    assert data["signature_verified"] is True
    assert data["timing"]["lifetime"] == pytest.approx(120)
    assert data["timing"]["expired"] is False
    assert data["timing"]["stale_at"] < data["timing"]["hard_at"] < data["timing"]["expires_at"]


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("opaque-token-value", "it has no '.'"),
        ("a.b", "it has 2 segments"),
        ("a.b.c.d", "it has 4 segments"),
        ("!!!.e30.sig", "its header is not base64url-encoded JSON"),
        (f"{_b64({'alg': 'ES256'})}.{_b64([1, 2])}.sig", "its claims are not"),
    ],
)
def test_a_token_that_is_not_a_jwt_exits_2_without_echoing_it(token: str, detail: str) -> None:
    result = run_cli("inspect", stdin=token)
    assert result.code == 2
    assert "not a JWT" in result.stderr
    assert detail in result.stderr
    assert "check that you copied the whole access token" in result.stderr
    assert token not in result.output
    assert "Traceback" not in result.stderr


def test_a_signature_from_another_server_exits_4(server: AuthorizationServer) -> None:
    with AuthorizationServer() as other:
        other.add_client()
        forged = other.issue_token()
    result = run_cli("inspect", "--jwks", server.jwks_url, stdin=forged)
    assert result.code == 4
    assert "no key in the JWKS" in result.stderr or "does not verify" in result.stderr


def test_an_unreachable_jwks_exits_5() -> None:
    token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")
    header = _b64({"alg": "ES256", "kid": "k1"})
    forged = f"{header}.{token.split('.')[1]}.c2ln"
    result = run_cli("inspect", "--jwks", f"http://127.0.0.1:{closed_port()}/jwks", stdin=forged)
    assert result.code == 5
    assert "could not fetch the JWKS" in result.stderr


# -- in process -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("!!!.e30.sig", "its header is not base64url-encoded JSON"),
        (f"{_b64({'alg': 'ES256'})}.{_b64('text')}.sig", "its claims are not"),
    ],
)
def test_malformed_tokens_in_process(
    token: str, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", token]) == 2
    assert detail in capsys.readouterr().err


def test_verified_json_in_process(
    server: AuthorizationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--json", "--jwks", server.jwks_url, server.issue_token()]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["signature_verified"] is True
    assert data["timing"]["expired"] is False


def test_unreachable_jwks_in_process(
    server: AuthorizationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/jwks"
    assert main(["inspect", "--jwks", url, server.issue_token()]) == 5
    assert "could not fetch the JWKS" in capsys.readouterr().err


def test_a_signature_that_is_not_base64_does_not_verify(
    server: AuthorizationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    header, claims, _ = server.issue_token().split(".")
    assert main(["inspect", "--jwks", server.jwks_url, f"{header}.{claims}.%%%"]) == 4
    assert "freshtoken inspect: error: the token does not verify" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("age", "phase"),
    [(85, "stale (freshtoken serves it and refreshes it now)"), (97, "must be replaced")],
)
def test_the_current_phase_is_named(
    age: float, phase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    now = time.time()
    token = f"{_b64({'alg': 'none'})}.{_b64({'iat': now - age, 'exp': now - age + 100})}."
    assert main(["inspect", token]) == 0
    assert f"now        {phase}" in capsys.readouterr().out


def test_a_tampered_token_does_not_verify(
    server: AuthorizationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    header, _, signature = server.issue_token().split(".")
    tampered = f"{header}.{_b64({'sub': 'admin', 'exp': 1})}.{signature}"
    assert main(["inspect", "--jwks", server.jwks_url, tampered]) == 4
    assert "the signature does not verify" in capsys.readouterr().err


def test_an_hmac_token_cannot_be_verified_against_a_jwks(
    server: AuthorizationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")
    assert main(["inspect", "--jwks", server.jwks_url, token]) == 4
    assert "'HS256', which a JWKS of public keys cannot verify" in capsys.readouterr().err


def test_a_header_without_kid_cannot_pick_a_key(
    server: AuthorizationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    token = f"{_b64({'alg': 'ES256'})}.{_b64({'sub': 'x'})}.c2ln"
    assert main(["inspect", "--jwks", server.jwks_url, token]) == 4
    assert "freshtoken inspect: error:" in capsys.readouterr().err


def test_a_remote_http_jwks_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    token = f"{_b64({'alg': 'ES256'})}.{_b64({'sub': 'x'})}.c2ln"
    assert main(["inspect", "--jwks", "http://keys.example/jwks", token]) == 3
    assert "--jwks" in capsys.readouterr().err


def test_a_terminal_on_stdin_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal())
    assert main(["inspect"]) == 2
    assert "no token: pipe it in" in capsys.readouterr().err


def test_an_empty_token_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Bearer  \n"))
    assert main(["inspect", "-"]) == 2
    assert "the token is empty" in capsys.readouterr().err


def test_tokens_without_usable_times_are_shown_without_a_timeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    header = _b64({"alg": "none"})
    no_exp = f"{header}.{_b64({'sub': 'x', 'iat': 'yesterday'})}."
    assert main(["inspect", no_exp]) == 0
    out = capsys.readouterr().out
    assert "expires    never said" in out
    assert "issued |" not in out
    no_iat = f"{header}.{_b64({'exp': 4102444800, 'nbf': 4102444000})}."
    assert main(["inspect", no_iat]) == 0
    out = capsys.readouterr().out
    assert "2100-01-01 00:00:00 UTC" in out
    assert "the lifetime and refresh points are unknown" in out
    assert "not valid before" in out


def test_inspect_shows_local_time_beside_utc(
    server: AuthorizationServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert main(["inspect", server.issue_token()]) == 0
    finally:
        monkeypatch.undo()
        time.tzset()
    out = capsys.readouterr().out
    assert "JST / " in out
    assert " UTC" in out


# -- the pure parts ---------------------------------------------------------------------------


def _timing(now: float, issued: float = 1000.0, lifetime: float = 100.0) -> Timing:
    return timing_of({"iat": issued, "exp": issued + lifetime}, now, RefreshPolicy())


def test_the_timeline_marks_fresh_stale_and_hard_phases_in_proportion() -> None:
    bar, points, marker = timeline(_timing(now=1010.0), width=48)
    fresh = "=" * 16 + "fresh" + "=" * 17  # 80 % of 48 columns
    assert bar == f"issued |{fresh}|=stale=|===| expires"
    assert marker.index("^") == len("issued |") + 5  # 10 % of the 50 columns between the bars
    assert points.index("^ stale") == bar.index("|=stale")
    assert points.index("^ hard deadline") == bar.index("|===|")


def test_the_timeline_reads_the_same_without_colour() -> None:
    timing = _timing(now=1090.0)
    painted = timeline(timing, colour=True)
    assert "\x1b[33m" in painted[0]  # the stale phase in yellow
    assert [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in painted] == timeline(timing)


def test_close_stale_and_hard_points_get_a_line_each() -> None:
    lines = timeline(_timing(now=1000.0, lifetime=86400.0), width=20)
    assert lines[1].strip() == "^ stale"
    assert lines[2].strip() == "^ hard deadline"


def test_piped_output_has_no_colour(server: AuthorizationServer) -> None:
    result = run_cli("inspect", "-", stdin=server.issue_token())
    assert result.code == 0, result.stderr
    assert "\x1b[" not in result.stdout
    assert "^ stale" in result.stdout
    assert "^ hard deadline" in result.stdout


def test_the_timeline_marker_before_issue_and_after_expiry() -> None:
    assert "before issue" in timeline(_timing(now=900.0))[-1]
    assert timeline(_timing(now=2000.0))[-1].endswith("^ now (expired)")


def test_every_phase_keeps_at_least_one_character_for_long_tokens() -> None:
    bar, *_ = timeline(_timing(now=1000.0, lifetime=86400.0), width=20)
    assert "||" not in bar
    assert bar.count("|") == 4


def test_stale_and_hard_points_follow_the_default_policy() -> None:
    timing = _timing(now=1050.0)
    assert timing.stale_at == pytest.approx(1080.0)
    assert timing.hard_at == pytest.approx(1095.0)
    assert timing.remaining == pytest.approx(50.0)
    day = _timing(now=1000.0, lifetime=86400.0)
    assert day.expires_at is not None
    assert day.stale_at == pytest.approx(day.expires_at - 300)  # capped at 5 minutes


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "0.25 s"),
        (3, "3 s"),
        (42.4, "42 s"),
        (303, "5 min 3 s"),
        (7200, "2 h 0 min"),
        (3 * 86400 + 4 * 3600, "3 d 4 h"),
        (-5, "5 s"),
    ],
)
def test_describe_duration(seconds: float, text: str) -> None:
    assert describe_duration(seconds) == text
