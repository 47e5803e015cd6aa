"""What every HTTP integration promises, checked for httpx (sync and async), requests and aiohttp.

Each test runs once per client (the ``kind`` parameter) against real servers on 127.0.0.1: the
protected API of :class:`~freshtoken.testing.AuthorizationServer` validates JWTs strictly (no
leeway) and counts what it received, so the assertions are on what went over the wire.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

import pytest

import freshtoken as ft
from freshtoken.testing import AuthorizationServer

from .clients import Api, Result
from .conftest import RecordingSource

LOGGERS = ("freshtoken", "httpx", "httpcore", "urllib3", "aiohttp")


def redirect_url(server: AuthorizationServer, to: str, status: int = 302) -> str:
    return f"{server.base_url}/api/redirect?{urlencode({'to': to, 'status': status})}"


def body_length(result: Result) -> int:
    length = json.loads(result.body)["body_length"]
    assert isinstance(length, int)
    return length


@pytest.mark.token_lifetime(1.0)
def test_calls_across_ten_token_lifetimes_never_fail(api: Api, server: AuthorizationServer) -> None:
    statuses: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 10.5  # ten one-second lifetimes and a bit

    def worker() -> None:
        while time.monotonic() < deadline:
            status = api.get(server.resource_url).status
            with lock:
                statuses.append(status)
            time.sleep(0.02)  # pacing only: the machine is shared

    workers = [threading.Thread(target=worker) for _ in range(3)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()

    assert len(statuses) > 100
    assert [status for status in statuses if status != 200] == []
    # About one token per lifetime (refreshed at ~80 % of it), never one per call.
    assert 10 <= server.token_requests <= 20


def test_a_token_revoked_mid_run_is_replaced_after_one_401(
    api: Api, server: AuthorizationServer, manager: ft.TokenManager
) -> None:
    for _ in range(3):
        assert api.get(server.resource_url).status == 200
    server.revoke(manager.get().access_token)

    result = api.get(server.resource_url)

    assert result.status == 200
    if api.records_replay:
        assert result.history == [401]
    assert server.unauthorized == {"revoked": 1}
    assert server.token_requests == 2
    assert api.get(server.resource_url).status == 200
    assert server.unauthorized == {"revoked": 1}


def test_fifty_concurrent_401s_cause_exactly_one_token_request(
    api: Api, server: AuthorizationServer, manager: ft.TokenManager
) -> None:
    manager.prefetch()
    server.revoke(manager.get().access_token)
    # Hold the first 50 API requests for a second, so that all of them are sent with the
    # revoked token before the first 401 comes back.
    server.inject(target="resource", latency=1.0, times=50)
    server.reset_counters()

    results = api.get_many(server.resource_url, 50)

    assert [result.status for result in results] == [200] * 50
    assert server.unauthorized == {"revoked": 50}
    assert server.token_requests == 1


def test_a_body_held_in_memory_is_replayed_unchanged(
    api: Api, server: AuthorizationServer, manager: ft.TokenManager
) -> None:
    payload = {"name": "x" * 100, "items": list(range(20))}
    sent_length = body_length(api.post_json(server.resource_url, payload))
    server.revoke(manager.get().access_token)

    result = api.post_json(server.resource_url, payload)

    assert result.status == 200
    assert body_length(result) == sent_length > 0
    assert server.unauthorized == {"revoked": 1}


def test_a_streamed_body_is_not_replayed_and_the_401_is_returned(
    api: Api, server: AuthorizationServer, manager: ft.TokenManager
) -> None:
    manager.prefetch()
    server.revoke(manager.get().access_token)
    server.reset_counters()

    result = api.post_stream(server.resource_url, [b"a" * 1000, b"b" * 1000])

    assert result.status == 401
    assert result.history == []
    assert server.resource_requests == 1
    assert server.token_requests == 0
    # The refused token was invalidated all the same: the next call brings a new one.
    assert api.get(server.resource_url).status == 200
    assert server.token_requests == 1


def test_a_redirect_to_another_origin_carries_no_token(
    api: Api, server: AuthorizationServer, other_server: AuthorizationServer
) -> None:
    assert api.get(server.resource_url).status == 200  # the token's origin: this server

    result = api.get(redirect_url(server, other_server.resource_url))

    assert result.status == 401
    # The other server got a request without any Authorization header (a token from our server
    # would have been counted as bad_signature or wrong_issuer), and its 401 refreshed nothing.
    assert other_server.unauthorized == {"missing": 1}
    assert other_server.resource_requests == 1
    assert server.token_requests == 1


def test_a_redirect_within_the_origin_keeps_the_token(
    api: Api, server: AuthorizationServer
) -> None:
    result = api.get(redirect_url(server, "/api/resource"))

    assert result.status == 200
    assert server.unauthorized == {}


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_a_status_other_than_401_never_refreshes(
    make: Callable[..., Api],
    manager: ft.TokenManager,
    server: AuthorizationServer,
    status: int,
) -> None:
    api = make(manager)
    manager.prefetch()
    server.reset_counters()

    result = api.get(f"{server.base_url}/api/status/{status}")

    assert result.status == status
    assert server.resource_requests == 1
    assert server.token_requests == 0


def test_a_second_401_is_returned_as_is(api: Api, server: AuthorizationServer) -> None:
    result = api.get(f"{server.base_url}/api/status/401")

    assert result.status == 401
    if api.records_replay:
        assert result.history == [401]
    assert server.resource_requests == 2  # the request and one replay, never more
    assert server.token_requests == 2  # the first token and one replacement


def test_the_token_goes_only_to_the_first_requests_origin(
    api: Api, server: AuthorizationServer, other_server: AuthorizationServer
) -> None:
    assert api.get(server.resource_url).status == 200

    assert api.get(other_server.resource_url).status == 401

    assert other_server.unauthorized == {"missing": 1}


def test_the_token_goes_only_to_the_origins_given(
    make: Callable[..., Api],
    manager: ft.TokenManager,
    server: AuthorizationServer,
    other_server: AuthorizationServer,
) -> None:
    api = make(manager, origins=[other_server.base_url + "/"])

    assert api.get(server.resource_url).status == 401

    assert server.unauthorized == {"missing": 1}
    assert server.token_requests == 0


def test_plain_http_to_a_remote_host_is_refused_before_anything_is_sent(
    make: Callable[..., Api], manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    api = make(manager)

    with pytest.raises(ft.ConfigurationError, match="plain http"):
        api.get("http://api.example.invalid/users")

    assert server.token_requests == 0


def test_plain_http_origins_other_than_loopback_need_an_explicit_opt_in(
    make: Callable[..., Api], manager: ft.TokenManager
) -> None:
    with pytest.raises(ft.ConfigurationError, match="allow_insecure_http"):
        make(manager, origins=["http://api.example.com"])

    make(manager, origins=["http://api.example.com"], allow_insecure_http=True)


def test_a_token_of_a_type_it_cannot_present_is_refused(
    make: Callable[..., Api], server: AuthorizationServer
) -> None:
    def dpop_token() -> ft.Token:
        return ft.Token(access_token="opaque", token_type="DPoP")

    with ft.TokenManager(ft.FunctionSource(dpop_token)) as tokens:
        api = make(tokens)
        with pytest.raises(ft.ConfigurationError, match="DPoP"):
            api.get(server.resource_url)
    assert server.resource_requests == 0


def test_a_token_request_through_the_same_client_passes_through(
    make: Callable[..., Api], kind: str, server: AuthorizationServer
) -> None:
    """A FunctionSource that fetches its token through the very client being authenticated
    must not be authenticated itself: it would wait for the token it is fetching."""
    client = server.client
    assert client.client_secret is not None
    holder: list[Api] = []
    form = {"grant_type": "client_credentials"}
    secret = f"{client.client_id}:{client.client_secret}".encode()
    basic = {"Authorization": "Basic " + base64.b64encode(secret).decode()}

    def fetch_sync() -> dict[str, object]:
        response: dict[str, object] = json.loads(
            holder[0].request("POST", server.token_url, data=form, headers=basic).body
        )
        return response

    async def fetch_async() -> dict[str, object]:
        result = await holder[0].arequest("POST", server.token_url, data=form, headers=basic)
        response: dict[str, object] = json.loads(result.body)
        return response

    source = ft.FunctionSource(
        fetch_async if kind.endswith("async") or kind == "aiohttp" else fetch_sync
    )
    with ft.TokenManager(source) as tokens:
        api = make(tokens)
        holder.append(api)
        outcome: list[Result] = []
        thread = threading.Thread(
            target=lambda: outcome.append(api.get(server.resource_url)), daemon=True
        )
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "the token request waited for itself"
    assert outcome[0].status == 200
    assert server.token_requests == 1


def test_no_token_reaches_a_log_record_even_at_debug(
    api: Api,
    server: AuthorizationServer,
    other_server: AuthorizationServer,
    manager: ft.TokenManager,
    source: RecordingSource,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)

    assert api.get(server.resource_url).status == 200
    server.revoke(manager.get().access_token)
    assert api.get(server.resource_url).status == 200  # a 401 and a replay
    assert api.get(f"{server.base_url}/api/status/401").status == 401  # two 401s
    assert api.get(redirect_url(server, other_server.resource_url)).status == 401
    server.revoke(manager.get().access_token)
    assert api.post_stream(server.resource_url, [b"x"]).status == 401  # not replayed

    assert len(source.issued) >= 3
    replays = [r for r in caplog.records if r.name == "freshtoken.http" and "replaying" in r.msg]
    assert replays, "the integration logs its replays (by fingerprint)"
    for record in caplog.records:
        texts = [record.getMessage(), str(record.msg), repr(record.args), str(record.exc_text)]
        for token in source.issued:
            assert not any(token in text for text in texts), (record.name, record.msg)
