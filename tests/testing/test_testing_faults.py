"""Fault injection: each kind of fault, targets, budgets, windows and combinations."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime

import httpx
import pytest

from freshtoken.testing import AuthorizationServer, FakeClock, Fault
from freshtoken.testing._faults import FaultSchedule
from tests.testing._helpers import bearer, claims_of, client_auth, token_request

CC = {"grant_type": "client_credentials"}


@pytest.fixture
def srv(server: AuthorizationServer) -> AuthorizationServer:
    server.add_client()
    return server


def ask(http: httpx.Client, server: AuthorizationServer) -> httpx.Response:
    return token_request(http, server, CC, client=server.client)


def test_status_for_the_next_n_requests(srv: AuthorizationServer, http: httpx.Client) -> None:
    handle = srv.inject(status=503, times=2)
    assert (handle.active, handle.remaining, handle.hits) == (True, 2, 0)
    first = ask(http, srv)
    assert first.status_code == 503
    assert first.json()["error"] == "temporarily_unavailable"
    assert first.headers["cache-control"] == "no-store"
    assert ask(http, srv).status_code == 503
    assert ask(http, srv).status_code == 200
    assert (handle.hits, handle.remaining, handle.active, handle.state.finished) == (
        2,
        0,
        False,
        True,
    )
    assert handle.cancel() is True
    assert handle.cancel() is False
    assert handle.state.finished


def test_rate_limited_with_retry_after_seconds_and_date(
    srv: AuthorizationServer, http: httpx.Client
) -> None:
    srv.faults.add(Fault.rate_limited(2), times=1)
    seconds = ask(http, srv)
    assert (seconds.status_code, seconds.headers["retry-after"]) == (429, "2")
    srv.faults.add(Fault.rate_limited(30, http_date=True), times=1)
    dated = ask(http, srv)
    retry_at = parsedate_to_datetime(dated.headers["retry-after"])
    sent_at = parsedate_to_datetime(dated.headers["date"])
    assert (retry_at - sent_at).total_seconds() == pytest.approx(30, abs=1)
    srv.inject(status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", times=1)
    assert ask(http, srv).headers["retry-after"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    srv.inject(status=503, retry_after=1.5, times=1)
    assert ask(http, srv).headers["retry-after"] == "1.5"


def test_dropped_connection(srv: AuthorizationServer, http: httpx.Client) -> None:
    srv.faults.add(Fault.dropped(), times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        ask(http, srv)
    assert ask(http, srv).status_code == 200
    assert srv.token_requests == 2


def test_malformed_json_and_html(srv: AuthorizationServer, http: httpx.Client) -> None:
    srv.faults.add(Fault.malformed_json(), times=1)
    broken = ask(http, srv)
    assert (broken.status_code, broken.headers["content-type"]) == (200, "application/json")
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    srv.faults.add(Fault.html(), times=1)
    page = ask(http, srv)
    assert page.status_code == 502
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<html>")
    srv.inject(body="plain", times=1)
    plain = ask(http, srv)
    assert (plain.status_code, plain.headers["content-type"], plain.text) == (
        200,
        "text/plain; charset=utf-8",
        "plain",
    )


def test_success_with_a_non_json_content_type(srv: AuthorizationServer, http: httpx.Client) -> None:
    srv.faults.add(Fault.wrong_content_type("text/plain"), times=1)
    response = ask(http, srv)
    assert (response.status_code, response.headers["content-type"]) == (200, "text/plain")
    assert "access_token" in response.json()


def test_latency_then_normal_answer(srv: AuthorizationServer, http: httpx.Client) -> None:
    handle = srv.faults.add(Fault.slow(0.05), times=1)
    assert ask(http, srv).status_code == 200
    assert handle.hits == 1


def test_clock_offset_shifts_tokens_and_date(srv: AuthorizationServer, http: httpx.Client) -> None:
    honest = ask(http, srv)
    srv.faults.add(Fault.clock_skew(-7200), times=1)
    skewed = ask(http, srv)
    real_iat = claims_of(honest.json()["access_token"])["iat"]
    claims = claims_of(skewed.json()["access_token"])
    assert claims["iat"] == pytest.approx(real_iat - 7200, abs=5)
    assert skewed.json()["expires_in"] == 3600
    shift = parsedate_to_datetime(skewed.headers["date"]) - parsedate_to_datetime(
        honest.headers["date"]
    )
    assert shift.total_seconds() == pytest.approx(-7200, abs=5)
    response = http.get(srv.resource_url, headers=bearer(skewed.json()["access_token"]))
    assert response.json()["reason"] == "expired"


def test_targets(srv: AuthorizationServer, http: httpx.Client) -> None:
    token = srv.issue_token()
    srv.inject(status=500, target="resource", times=1)
    assert ask(http, srv).status_code == 200
    failed = http.get(srv.resource_url, headers=bearer(token))
    assert (failed.status_code, failed.json()["error"]) == (500, "server_error")
    srv.inject(status=503, target="both", times=2)
    assert ask(http, srv).status_code == 503
    assert http.get(srv.resource_url, headers=bearer(token)).status_code == 503
    srv.inject(status=502, target="all")
    assert http.get(srv.jwks_url).status_code == 502
    assert http.get(srv.discovery_url).status_code == 502
    assert http.post(srv.revocation_url).status_code == 502
    srv.clear_faults()
    assert len(srv._core.faults) == 0  # type: ignore[union-attr]
    srv.inject(status=503, target=["jwks", "discovery"], times=1)
    assert http.get(srv.jwks_url).status_code == 503
    assert http.get(srv.discovery_url).status_code == 200


@pytest.mark.parametrize(
    ("status", "target", "error"),
    [
        (401, "resource", "invalid_token"),
        (401, "token", "invalid_client"),
        (403, "resource", "insufficient_scope"),
        (403, "token", "access_denied"),
        (400, "token", "invalid_request"),
    ],
)
def test_fault_error_bodies(
    srv: AuthorizationServer, http: httpx.Client, status: int, target: str, error: str
) -> None:
    srv.inject(status=status, target=target, times=1)  # type: ignore[arg-type]
    response = ask(http, srv) if target == "token" else http.get(srv.resource_url)
    assert (response.status_code, response.json()["error"]) == (status, error)
    if (status, target) == (401, "resource"):
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_success_status_without_body_is_an_empty_object(
    srv: AuthorizationServer, http: httpx.Client
) -> None:
    srv.inject(status=200, times=1)
    assert ask(http, srv).json() == {}


def test_faults_combine(srv: AuthorizationServer, http: httpx.Client) -> None:
    slow = srv.inject(latency=0.01)
    first = srv.inject(status=503, times=1)
    second = srv.inject(status=500, times=1)
    srv.inject(content_type="text/x-weird", times=1)
    response = ask(http, srv)
    assert (response.status_code, response.headers["content-type"]) == (503, "text/x-weird")
    assert (slow.hits, first.hits, second.hits) == (1, 1, 1)
    assert ask(http, srv).status_code == 200
    srv.inject(status=503, body="down", content_type="text/plain", times=1)
    srv.inject(content_type="text/ignored", times=1)
    down = ask(http, srv)
    assert (down.text, down.headers["content-type"]) == ("down", "text/plain")
    srv.inject(clock_offset=10, times=1)
    srv.inject(clock_offset=5, times=1)
    shifted = ask(http, srv).json()["access_token"]
    assert claims_of(shifted)["exp"] - claims_of(ask(http, srv).json()["access_token"])[
        "exp"
    ] == pytest.approx(15, abs=2)


def test_windows_are_relative_to_now(srv: AuthorizationServer, http: httpx.Client) -> None:
    later = srv.inject(status=503, start=3600)
    assert not later.active
    assert ask(http, srv).status_code == 200
    now = srv.inject(status=503, duration=3600, times=1)
    assert now.active
    assert ask(http, srv).status_code == 503
    assert later.hits == 0


def test_windows_on_the_schedule_clock() -> None:
    clock = FakeClock()
    schedule = FaultSchedule(clock.monotonic)
    fault_id = schedule.add(Fault(status=503), start=1.0, duration=2.0)
    assert schedule.take("token") is None
    clock.advance(1.0)
    effect = schedule.take("token")
    assert effect is not None
    assert effect.response is not None
    assert schedule.take("resource") is None
    clock.advance(2.0)
    assert schedule.take("token") is None
    assert schedule.state(fault_id).finished
    assert len(schedule) == 0


def test_fault_validation(srv: AuthorizationServer) -> None:
    with pytest.raises(ValueError, match="unknown fault target"):
        Fault(target="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        Fault(target=[])
    with pytest.raises(ValueError, match="latency"):
        Fault(latency=-1)
    with pytest.raises(ValueError, match="HTTP status"):
        Fault(status=42)
    with pytest.raises(ValueError, match="retry_after_format"):
        Fault(retry_after=1, retry_after_format="minutes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        srv.inject(status=503, times=0)
    with pytest.raises(ValueError, match="start"):
        srv.inject(status=503, start=-1)
    with pytest.raises(ValueError, match="duration"):
        srv.inject(status=503, duration=0)
    assert Fault(target="all").target == ("token", "resource", "jwks", "discovery", "revocation")
    assert Fault.outage(target="resource").to_dict()["target"] == ["resource"]


def test_auth_headers_survive_faults(srv: AuthorizationServer, http: httpx.Client) -> None:
    """Faults do not break the request bookkeeping: the client is still counted."""
    srv.inject(status=503, times=1)
    http.post(srv.token_url, data=CC, headers=client_auth(srv.client))
    assert srv.token_requests_by_client == {srv.client.client_id: 1}
