"""The integrations' shared decisions (``freshtoken._http_auth.authflow``), without any HTTP.

Origins, the header that presents a token, reading ``WWW-Authenticate``, which bodies can be
replayed, and the flow itself, driven here by hand the way the httpx, requests and aiohttp drivers
drive it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest

import freshtoken as ft
from freshtoken._http_auth.authflow import (
    NEED_TOKEN,
    Challenge,
    OriginScope,
    Send,
    authorize,
    fast_path,
    format_origin,
    is_loopback,
    needs_recovery,
    origin_from_url,
    origin_of,
    parse_challenges,
    parse_origin,
    present,
    replayable,
    token_async,
    token_refused,
    token_sync,
)
from freshtoken._http_auth.authflow import recover as recover_flow

# -- origins ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://API.Example.com/x?y", ("https", "api.example.com", 443)),
        ("https://api.example.com:443/", ("https", "api.example.com", 443)),
        ("http://api.example.com.:80", ("http", "api.example.com", 80)),
        ("HTTP://127.0.0.1:8080/a", ("http", "127.0.0.1", 8080)),
        ("https://[::1]:8443/", ("https", "::1", 8443)),
        ("https://api.example.com?next=/elsewhere", ("https", "api.example.com", 443)),
        ("https://api.example.com#/x", ("https", "api.example.com", 443)),
        ("https://user@api.example.com/a/b", ("https", "api.example.com", 443)),
    ],
)
def test_urls_of_one_origin_normalise_to_one_tuple(url: str, origin: tuple[str, str, int]) -> None:
    assert origin_from_url(url) == origin


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "/relative/path", "https://example.com:99999/", "mailto:x@y"]
)
def test_a_url_without_an_http_origin_has_none(url: str) -> None:
    assert origin_from_url(url) is None


def test_the_origin_cache_is_keyed_by_everything_before_the_path() -> None:
    """Paths share one cached parse; a different host, port or scheme never does."""
    assert origin_from_url("https://a.example.com/1") == origin_from_url("https://a.example.com/2")
    assert origin_from_url("https://a.example.com:8443/1") == ("https", "a.example.com", 8443)
    assert origin_from_url("http://a.example.com/1") == ("http", "a.example.com", 80)
    assert origin_from_url("https://b.example.com/1") == ("https", "b.example.com", 443)


def test_library_url_parts_normalise_like_strings() -> None:
    assert origin_of("HTTPS", "[::1]", None) == ("https", "::1", 443)
    assert origin_of("http", "Example.COM", None) == ("http", "example.com", 80)


def test_origins_print_as_scheme_host_port() -> None:
    assert format_origin(("https", "::1", 443)) == "https://[::1]:443"
    assert format_origin(("http", "localhost", 80)) == "http://localhost:80"


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("https://api.example.com", ("https", "api.example.com", 443)),
        ("https://api.example.com/", ("https", "api.example.com", 443)),
        (" https://api.example.com:8443 ", ("https", "api.example.com", 8443)),
    ],
)
def test_an_origin_is_given_as_scheme_host_and_optional_port(
    text: str, origin: tuple[str, str, int]
) -> None:
    assert parse_origin(text) == origin


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "must be strings"),
        ("https://example.com:http/", "invalid port"),
        ("ftp://example.com", "not of the form"),
        ("example.com", "not of the form"),
        ("https://.", "not of the form"),
        ("https://user:pw@example.com", "credentials"),
        ("https://example.com/api", "path, query or fragment"),
        ("https://example.com?x=1", "path, query or fragment"),
    ],
)
def test_a_malformed_origin_is_a_configuration_error_naming_it(value: object, message: str) -> None:
    with pytest.raises(ft.ConfigurationError, match=message):
        parse_origin(value)  # type: ignore[arg-type]


def test_credentials_in_a_malformed_origin_are_not_repeated() -> None:
    with pytest.raises(ft.ConfigurationError) as caught:
        parse_origin("https://user:hunter2@example.com")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("example.com", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts_are_localhost_127_slash_8_and_ipv6_one(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_first_origin_asked_about_is_learned_and_no_other() -> None:
    scope = OriginScope()
    assert scope.origins is None

    assert scope.admits(("https", "api.example.com", 443))
    assert not scope.admits(("https", "evil.example.com", 443))
    assert not scope.admits(("http", "api.example.com", 80))
    assert scope.admits(("https", "api.example.com", 443))
    assert scope.origins == frozenset({"https://api.example.com:443"})


def test_threads_racing_to_be_first_teach_the_scope_one_origin() -> None:
    scope = OriginScope()
    barrier = threading.Barrier(8)
    answers: list[bool] = []

    def ask(index: int) -> None:
        barrier.wait()
        answers.append(scope.admits(("https", f"host{index}.example", 443)))

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers.count(True) == 1
    assert scope.origins is not None and len(scope.origins) == 1


def test_origins_given_are_the_only_ones_admitted() -> None:
    scope = OriginScope(["https://a.example", "https://b.example:8443"])

    assert scope.admits(("https", "a.example", 443))
    assert scope.admits(("https", "b.example", 8443))
    assert not scope.admits(("https", "b.example", 443))
    assert scope.origins == frozenset({"https://a.example:443", "https://b.example:8443"})


def test_a_single_origin_may_be_given_as_a_string() -> None:
    assert OriginScope("https://a.example").origins == frozenset({"https://a.example:443"})


def test_origins_must_be_a_non_empty_iterable_of_strings() -> None:
    with pytest.raises(ft.ConfigurationError, match="empty"):
        OriginScope([])
    with pytest.raises(ft.ConfigurationError, match="iterable of strings"):
        OriginScope(42)  # type: ignore[arg-type]


def test_plain_http_is_for_loopback_unless_the_user_opts_in() -> None:
    OriginScope(["http://127.0.0.1:8080", "http://localhost"])
    with pytest.raises(ft.ConfigurationError, match="plain http"):
        OriginScope(["http://api.example.com"])
    with pytest.raises(ft.ConfigurationError, match="plain http"):
        OriginScope().admits(("http", "api.example.com", 80))

    trusting = OriginScope(allow_insecure_http=True)
    assert trusting.admits(("http", "api.internal", 80))


# -- presenting ------------------------------------------------------------------------------


def test_a_bearer_token_is_presented_in_the_authorization_header() -> None:
    token = ft.Token(access_token="abc.def", token_type="Bearer")

    assert present(token, "GET", "https://api.example.com/") == {"Authorization": "Bearer abc.def"}


def test_a_token_type_without_a_presentation_is_refused_without_showing_the_token() -> None:
    token = ft.Token(access_token="secret-value", token_type="DPoP")

    with pytest.raises(ft.ConfigurationError, match="DPoP") as caught:
        present(token, "GET", "https://api.example.com/")
    assert "secret-value" not in str(caught.value)


# -- WWW-Authenticate ------------------------------------------------------------------------


def test_challenges_are_read_with_their_parameters() -> None:
    header = (
        'Bearer realm="api", error="invalid_token", error_description="a, \\"quoted\\" text", '
        'Basic realm="x"'
    )

    assert parse_challenges(header) == [
        Challenge(
            "bearer",
            {"realm": "api", "error": "invalid_token", "error_description": 'a, "quoted" text'},
        ),
        Challenge("basic", {"realm": "x"}),
    ]


def test_token68_challenges_and_bare_schemes_are_read() -> None:
    assert parse_challenges("Negotiate abc==, Bearer") == [
        Challenge("negotiate", {"": "abc=="}),
        Challenge("bearer", {}),
    ]
    assert parse_challenges("Bearer error=invalid_token") == [
        Challenge("bearer", {"error": "invalid_token"})
    ]


@pytest.mark.parametrize("header", ["", ",,,", '"unterminated', "=x", 'Bearer realm="open'])
def test_a_malformed_challenge_never_raises(header: str) -> None:
    assert isinstance(parse_challenges(header), list)


@pytest.mark.parametrize(
    ("status", "header", "refused"),
    [
        (401, None, True),
        (401, "", True),
        (401, 'Bearer realm="api"', True),
        (401, 'Bearer error="invalid_token"', True),
        (401, 'Basic realm="x"', True),
        (401, 'Bearer error="insufficient_scope"', False),
        (401, 'Bearer error="invalid_request"', False),
        (403, 'Bearer error="insufficient_scope"', False),
        (403, None, False),
        (400, None, False),
        (500, 'Bearer error="invalid_token"', False),
    ],
)
def test_only_a_401_about_the_token_asks_for_a_new_one(
    status: int, header: str | None, refused: bool
) -> None:
    assert token_refused(status, header) is refused


# -- replay ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "can"),
    [
        (None, True),
        (b"", True),
        (b"data", True),
        (bytearray(b"data"), True),
        ("text", True),
        (iter([b"a"]), False),
        ((chunk for chunk in [b"a"]), False),
        (object(), False),
    ],
)
def test_only_bodies_held_in_memory_are_replayable(body: object, can: bool) -> None:
    assert replayable(body) is can


# -- the flow --------------------------------------------------------------------------------


@dataclass
class Reply:
    """A response as a driver would describe it to the flow."""

    status: int
    challenge: str | None = None
    sent: str | None = None
    can_replay: bool = True
    discarded: bool = False

    def www_authenticate(self) -> str | None:
        return self.challenge

    def sent_authorization(self) -> str | None:
        return self.sent

    def body_replayable(self) -> bool:
        return self.can_replay

    def discard(self) -> None:
        self.discarded = True


class Tokens:
    """A source handing out the given tokens in turn (the last one forever)."""

    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.fetches = 0

    def __call__(self) -> str:
        value = self.values[min(self.fetches, len(self.values) - 1)]
        self.fetches += 1
        return value


API = ("https", "api.example.com", 443)


def run(manager: ft.TokenManager, replies: list[Reply]) -> list[Send]:
    """Drive the flow like a driver does; return what it asked to send."""
    flow = authorize(manager, OriginScope(), API, "GET", "https://api.example.com/x")
    sent: list[Send] = []
    step = next(flow)
    try:
        while True:
            if isinstance(step, Send):
                sent.append(step)
                reply = replies[len(sent) - 1]
                if step.headers is not None and reply.sent is None:
                    reply.sent = step.headers["Authorization"]
                step = flow.send(reply)
            else:
                step = flow.send(manager.get())
    except StopIteration:
        return sent


def test_a_success_is_sent_once_with_the_token() -> None:
    with ft.TokenManager(Tokens("first")) as manager:
        sent = run(manager, [Reply(200)])

    assert sent == [Send({"Authorization": "Bearer first"})]


def test_a_401_for_the_token_invalidates_it_and_replays_once_with_the_next() -> None:
    source = Tokens("first", "second")
    with ft.TokenManager(source) as manager:
        first = Reply(401, 'Bearer error="invalid_token"')
        sent = run(manager, [first, Reply(401)])

    assert sent == [
        Send({"Authorization": "Bearer first"}),
        Send({"Authorization": "Bearer second"}),
    ]
    assert first.discarded
    assert source.fetches == 2


def test_a_401_about_scope_keeps_the_token_and_raises_insufficient_scope() -> None:
    source = Tokens("first", "second")
    with ft.TokenManager(source) as manager:
        refused = Reply(401, 'Bearer error="insufficient_scope"')
        with pytest.raises(ft.InsufficientScope):
            run(manager, [refused])
        assert manager.get().access_token == "first"

    assert refused.discarded
    assert source.fetches == 1


def test_a_401_for_a_request_that_lost_the_token_on_the_way_keeps_it() -> None:
    source = Tokens("first", "second")
    with ft.TokenManager(source) as manager:
        sent = run(manager, [Reply(401, sent="Basic other")])
        assert manager.get().access_token == "first"

    assert len(sent) == 1


def test_a_401_for_a_stream_invalidates_the_token_but_sends_nothing_more() -> None:
    source = Tokens("first", "second")
    with ft.TokenManager(source) as manager:
        sent = run(manager, [Reply(401, can_replay=False)])
        assert source.fetches == 1
        assert manager.get().access_token == "second"

    assert len(sent) == 1


def test_no_replay_when_the_source_gives_the_same_token_again() -> None:
    source = Tokens("static")
    with ft.TokenManager(source) as manager:
        sent = run(manager, [Reply(401)])

    assert len(sent) == 1
    assert source.fetches == 2


def test_a_request_to_another_origin_is_sent_as_it_is() -> None:
    with ft.TokenManager(Tokens("first")) as manager:
        scope = OriginScope("https://api.example.com")
        flow = authorize(
            manager, scope, ("https", "evil.example", 443), "GET", "https://evil.example/"
        )
        assert next(flow) == Send(None)
        with pytest.raises(StopIteration):
            flow.send(Reply(401))

        no_origin = authorize(manager, scope, None, "GET", "relative")
        assert next(no_origin) == Send(None)


def test_requests_made_while_a_token_is_obtained_are_not_authenticated() -> None:
    inner: list[object] = []

    def fetch_through_the_same_client() -> str:
        flow = authorize(manager, OriginScope(), API, "POST", "https://api.example.com/token")
        inner.append(next(flow))
        return "token"

    with ft.TokenManager(fetch_through_the_same_client) as manager:
        assert token_sync(manager).access_token == "token"
        manager.invalidate(manager.get())

        async def main() -> ft.Token:
            return await token_async(manager)

        assert asyncio.run(main()).access_token == "token"

    assert inner == [Send(None), Send(None)]


def test_the_token_request_marker_is_visible_only_while_obtaining() -> None:
    with ft.TokenManager(Tokens("first")) as manager:
        flow = authorize(manager, OriginScope(), API, "GET", "https://api.example.com/")
        assert next(flow) is NEED_TOKEN
        assert repr(NEED_TOKEN) == "NEED_TOKEN"


# -- the fast path -----------------------------------------------------------------------------


def test_the_fast_path_presents_a_fresh_token_without_a_flow() -> None:
    with ft.TokenManager(Tokens("first")) as manager:
        scope = OriginScope()
        assert fast_path(manager, scope, API, "GET", "https://api.example.com/") is None  # none yet
        token = manager.get()
        attempt = fast_path(manager, scope, API, "GET", "https://api.example.com/")
        assert attempt is not None
        assert attempt.token is token
        assert attempt.headers == {"Authorization": "Bearer first"}
        assert "first" not in repr(attempt)
        assert token.fingerprint in repr(attempt)


def test_the_fast_path_leaves_other_origins_and_token_requests_to_the_flow() -> None:
    with ft.TokenManager(Tokens("first")) as manager:
        manager.get()
        scope = OriginScope("https://api.example.com")
        other = ("https", "other.example.com", 443)
        assert fast_path(manager, scope, other, "GET", "https://other.example.com/") is None
        assert fast_path(manager, scope, None, "GET", "relative") is None
        seen: list[object] = []

        def inside_a_token_request() -> str:
            seen.append(fast_path(manager, scope, API, "POST", "https://api.example.com/t"))
            return "second"

        with ft.TokenManager(inside_a_token_request) as outer:
            token_sync(outer)
        assert seen == [None]


@pytest.mark.parametrize(
    ("status", "recover"), [(200, False), (404, False), (403, True), (401, True)]
)
def test_only_a_401_or_403_needs_recovery(status: int, recover: bool) -> None:
    assert needs_recovery(status) is recover


def test_recover_after_the_fast_path_replays_a_401_once_with_the_next_token() -> None:
    with ft.TokenManager(Tokens("first", "second")) as manager:
        manager.get()
        attempt = fast_path(manager, OriginScope(), API, "GET", "https://api.example.com/x")
        assert attempt is not None
        flow = recover_flow(manager, attempt, Reply(401, sent="Bearer first"))
        assert next(flow) is NEED_TOKEN
        assert flow.send(manager.get()) == Send({"Authorization": "Bearer second"})
        with pytest.raises(StopIteration):
            flow.send(Reply(200))


def test_recover_leaves_a_success_alone() -> None:
    with ft.TokenManager(Tokens("first")) as manager:
        manager.get()
        attempt = fast_path(manager, OriginScope(), API, "GET", "https://api.example.com/x")
        assert attempt is not None
        with pytest.raises(StopIteration):
            next(recover_flow(manager, attempt, Reply(200, sent="Bearer first")))
