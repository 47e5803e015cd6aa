"""Property tests of every parser and of the core state machine: only documented errors come out.

Each property feeds a parser hostile input and accepts exactly two outcomes: a well-formed value,
or the freshtoken error that parser documents. Anything else (KeyError, TypeError, ValueError,
RecursionError, OverflowError, UnicodeError...) fails the property.

The inputs come from :class:`Hostile`, a grammar fuzzer seeded by hypothesis: hypothesis draws one
seed per example (and replays failing seeds from its database), the fuzzer turns it into a token
response, a JWT, a body, a discovery document, a store record... built from the shapes that break
parsers (wrong types, huge integers, NaN, duplicate keys, deep nesting, invalid UTF-8, BOMs,
truncation, byte flips). One draw per example keeps 10,000 examples of a property within seconds;
a failing example prints its seed and the input (``note``).

How many examples: the hypothesis profile (tests/conftest.py): ``default`` 300, ``ci`` (CI=true)
10,000, ``nightly`` (HYPOTHESIS_PROFILE=nightly) 200,000 per property; the state machine runs a
twentieth of that as runs of 20 transitions.
"""

# Either outcome is a specification here (a value, or the documented error with its fields), so
# the assertions on the error live in the except block: pytest.raises cannot say "or a value".
# ruff: noqa: PT017

from __future__ import annotations

import base64
import json
import math
import random
import string
import time
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any, TypeVar

from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import freshtoken as ft
from freshtoken._core.jwt import unverified_claims, unverified_header
from freshtoken._core.lifecycle import Action, Lifecycle
from freshtoken._core.token import parse_token_response
from freshtoken._http_auth.authflow import Challenge, parse_challenges, parse_origin, token_refused
from freshtoken._oauth.discovery import check_url, clear_cache, discover
from freshtoken._oauth.http import FailureKind, HttpRequest, HttpResponse, Sleep, TransportFailure
from freshtoken._oauth.response import read_json
from freshtoken._oauth.retry import parse_retry_after
from freshtoken._stores.codec import TokenCodec
from freshtoken._stores.store import UnreadableRecord

NOW = 1_800_000_000.0
ISSUER = "https://auth.example.com"
TOKEN_URL = "https://auth.example.com/oauth/token"
SECRET = "fuzz-client-secret-0123456789"

T = TypeVar("T")
seeds = st.integers(min_value=0, max_value=2**64 - 1)

#: Values that break naive number handling: huge ints, float edges, negative zero.
EDGES: list[object] = [
    10**400,
    -(10**400),
    2**63,
    2**1024,
    1e308,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    -1,
    0,
    1,
    5e-324,
]
NUMERIC_STRINGS = [
    "3600",
    " 60 ",
    "1.5",
    "1e3",
    "-5",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1e999",
    "",
    " ",
    "0x10",
    "\uff11\uff12",
    "9" * 41,
    "1_000",
    "٣",
    "+7",
    "7.",
    ".5",
    "1e-999",
    "\t9\n",
]
TOKEN_CHARS = string.ascii_letters + string.digits + "-._~+/="
ODD_CHARS = '\x00\x7f é漢\ud800\udfff\ufeff\u2028"\\\r\n\t{}[],:'
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/jwt+json",
    "APPLICATION/JSON",
    "text/html",
    "text/plain",
    "",
    ";;",
    "application/",
]
TOKEN_TYPES = ["Bearer", "bearer", "DPoP", "dpop", "N_A", "mac", "", "Bearer x", "\x00"]
URLS = [
    TOKEN_URL,
    "http://auth.example.com/token",
    "http://127.0.0.1:1/token",
    "http://localhost/token",
    "https://u:p@auth.example.com/t",
    "https://auth.example.com:99999/t",
    "https://auth.example.com:-1/t",
    "https://auth.example.com/t#f",
    "/relative",
    "ftp://x/y",
    "https://[::1/",
    "https://[::1]:8443/t",
    "https://./t",
    "https://exa mple.com/",
    "https:///t",
    "",
]
HEADER_SCHEMES = ["Bearer", "Basic", "DPoP", "Negotiate", "bearer", ""]


class Hostile:
    """Hostile inputs of every shape freshtoken parses, from one seed."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    # -- basics --------------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def pick(self, options: Sequence[T]) -> T:
        return options[self.r.randrange(len(options))]

    def text(self, size: int = 12) -> str:
        pool = self.pick([TOKEN_CHARS, string.printable, ODD_CHARS, TOKEN_CHARS + ODD_CHARS])
        return "".join(self.pick(pool) for _ in range(self.r.randint(0, size)))

    def token_text(self) -> str:
        return "".join(self.pick(TOKEN_CHARS) for _ in range(self.r.randint(1, 24)))

    def scalar(self) -> object:
        kind = self.r.randrange(7)
        if kind == 0:
            return None
        if kind == 1:
            return self.chance(0.5)
        if kind == 2:
            return self.r.randint(-(2**70), 2**70) if self.chance(0.3) else self.r.randint(-9, 99)
        if kind == 3:
            return self.pick(EDGES)
        if kind == 4:
            return self.r.uniform(-1e12, 1e12)
        return self.text()

    def json_value(self, depth: int = 0) -> object:
        if depth >= 3 or self.chance(0.6):
            return self.scalar()
        if self.chance(0.5):
            return [self.json_value(depth + 1) for _ in range(self.r.randint(0, 3))]
        return {self.text(5): self.json_value(depth + 1) for _ in range(self.r.randint(0, 3))}

    def number_like(self) -> object:
        kind = self.r.randrange(5)
        if kind == 0:
            return self.r.randint(-(10**12), 10**12)
        if kind == 1:
            return self.r.uniform(-1e6, 1e6)
        if kind == 2:
            return self.pick(EDGES)
        if kind == 3:
            return repr(self.r.uniform(-1e6, 1e6))
        return self.pick(NUMERIC_STRINGS)

    def maybe(self, make: Callable[[], object], present: float = 0.6) -> object:
        """``make()``, or another type entirely now and then."""
        return make() if self.chance(0.8) else self.json_value()

    # -- damage ----------------------------------------------------------------------------

    def damage(self, data: bytes) -> bytes:
        """Truncate, flip, insert or delete bytes (or leave ``data`` alone)."""
        for _ in range(self.r.randint(0, 3)):
            if not data:
                break
            where = self.r.randrange(len(data) + 1)
            kind = self.r.randrange(5)
            if kind == 0:
                data = data[:where]
            elif kind == 1 and where < len(data):
                data = data[:where] + bytes([self.r.randrange(256)]) + data[where + 1 :]
            elif kind == 2:
                insert = self.pick([b"\xef\xbb\xbf", b"\xff", b"NaN", b"\x00", b'"', b",", b"{"])
                data = data[:where] + insert + data[where:]
            elif kind == 3:
                data = data[:where] + data[where + self.r.randint(1, 4) :]
            else:
                data = data + data[where:]
        return data

    # -- shapes ------------------------------------------------------------------------------

    def jwt(self) -> str:
        header = (
            self.pick(
                [{"alg": "ES256", "typ": "JWT"}, {"alg": "none"}, {"alg": 256}, {"typ": "JWT"}]
            )
            if self.chance(0.9)
            else self.json_value()
        )
        claims: object
        if self.chance(0.85):
            timing: dict[str, object] = {}
            claims = timing
            if self.chance(0.8):
                timing["exp"] = (
                    NOW + self.r.uniform(-1e9, 1e9) if self.chance(0.5) else self.number_like()
                )
            if self.chance(0.5):
                timing["iat"] = (
                    NOW + self.r.uniform(-1e5, 1e5) if self.chance(0.5) else self.number_like()
                )
        else:
            claims = self.json_value()
        payload = json.dumps(claims).encode()
        if self.chance(0.1):
            payload = self.damage(payload)
        segments = [b64(json.dumps(header).encode()), b64(payload), self.token_text()]
        kind = self.r.randrange(8)
        if kind == 0:
            segments.pop(self.r.randrange(3))
        elif kind == 1:
            segments.append("sig")
        elif kind == 2:
            index = self.r.randrange(3)
            segments[index] += self.pick(["*", "=", "==", "$", "A", "é", " "])
        elif kind == 3:
            index = self.r.randrange(3)
            segments[index] = segments[index][: self.r.randint(0, len(segments[index]))]
        return ".".join(segments)

    def token_response(self) -> dict[str, object]:
        makers: dict[str, Callable[[], object]] = {
            "access_token": lambda: self.jwt() if self.chance(0.4) else self.token_text(),
            "token_type": lambda: self.pick(TOKEN_TYPES),
            "expires_in": self.number_like,
            "scope": lambda: self.text() if self.chance(0.5) else [self.text(5), self.text(5)],
            "refresh_token": self.token_text,
            "id_token": self.jwt,
            "refresh_in": self.number_like,
        }
        data: dict[str, object] = {}
        for name, make in makers.items():
            if self.chance(0.95 if name == "access_token" else 0.5):
                data[name] = self.maybe(make)
        if self.chance(0.1):
            data["error"] = self.maybe(lambda: self.pick(["invalid_grant", "server_error", ""]))
            data["error_description"] = self.scalar()
        for _ in range(self.r.randint(0, 2)):
            data[self.text(6)] = self.json_value()
        return data

    def body(self) -> bytes:
        kind = self.r.randrange(6)
        if kind == 0:
            return json.dumps(self.json_value()).encode()
        if kind == 1:
            return json.dumps(self.token_response()).encode()
        if kind == 2:
            return self.r.randbytes(self.r.randint(0, 64))
        if kind == 3:
            depth = self.r.randint(1, 3000)
            return b"[" * depth + b"]" * self.r.randint(0, depth)
        if kind == 4:
            return b'{"access_token": "a", "access_token": "b", "expires_in": 1}'
        return self.damage(json.dumps(self.token_response()).encode())

    def retry_after(self) -> str | None:
        kind = self.r.randrange(6)
        if kind == 0:
            return self.text(16)
        if kind == 1:
            return str(self.r.randint(0, 10 ** self.r.randint(1, 70)))
        if kind == 2:
            return repr(self.r.uniform(0, 1e6))
        if kind == 3:
            return formatdate(NOW + self.r.uniform(-NOW, 2.5e11 - NOW), usegmt=self.chance(0.5))
        if kind == 4:
            return self.pick(
                [
                    "Fri, 15 Jan 99999 08:00:00 GMT",
                    "Mon, 31 Feb 2027 00:00:00 GMT",
                    "Fri, 15 Jan 2027 08:00:00",
                    " 7 ",
                    "1.2.3",
                    "-1",
                    "+5",
                    "\uff11\uff12",
                ]
            )
        return None

    def response(self) -> HttpResponse | TransportFailure:
        if self.chance(0.1):
            kinds: list[FailureKind] = ["connect", "timeout", "network", "too_large", "error"]
            kind = self.pick(kinds)
            return TransportFailure(kind, "X", status=self.pick([None, 200, 502]))
        status = self.pick([200, 200, 200, 201, 302, 400, 401, 404, 408, 429, 500, 503])
        headers = {"content-type": self.pick(CONTENT_TYPES)}
        if self.chance(0.3):
            headers["retry-after"] = self.retry_after() or ""
        if self.chance(0.3):
            headers["date"] = self.retry_after() or ""
        return HttpResponse(status, headers, self.body())

    def discovery_response(self) -> HttpResponse | TransportFailure:
        if self.chance(0.3):
            return self.response()
        document: object
        if self.chance(0.85):
            members: dict[str, object] = {}
            document = members
            if self.chance(0.9):
                members["issuer"] = self.maybe(
                    lambda: self.pick([ISSUER, ISSUER, ISSUER + "/", "https://evil.example"])
                )
            if self.chance(0.9):
                members["token_endpoint"] = self.maybe(lambda: self.pick(URLS))
        else:
            document = self.json_value()
        body = json.dumps(document).encode()
        if self.chance(0.1):
            body = self.damage(body)
        status = self.pick([200, 200, 200, 301, 404, 500])
        return HttpResponse(status, {"content-type": self.pick(CONTENT_TYPES)}, body)

    def record(self) -> bytes:
        makers: dict[str, Callable[[], object]] = {
            "format": lambda: 1,
            "access_token": self.token_text,
            "token_type": lambda: "Bearer",
            "expires_at": lambda: NOW + self.r.uniform(-1e12, 1e12),
            "issued_at": lambda: NOW + self.r.uniform(-1e9, 1e9),
            "scope": self.text,
            "refresh_token": self.token_text,
            "id_token": self.jwt,
            "extra": lambda: {self.text(4): self.json_value()},
        }
        data = {name: self.maybe(make) for name, make in makers.items() if self.chance(0.9)}
        raw = json.dumps(data).encode()
        return self.damage(raw) if self.chance(0.2) else raw

    def url(self) -> str:
        if self.chance(0.5):
            return self.pick(URLS)
        return self.pick(["https://", "http://", ""]) + self.text(30)

    def www_authenticate(self) -> str:
        if self.chance(0.3):
            return self.text(60)
        parts = []
        for _ in range(self.r.randint(1, 3)):
            scheme = self.pick(HEADER_SCHEMES)
            params = [
                f"{self.pick(['realm', 'error', 'scope', 'x'])}="
                + self.pick(['"', "", '"a\\"b"', '"invalid_token"', "insufficient_scope", "=="])
                + self.text(6)
                for _ in range(self.r.randint(0, 3))
            ]
            parts.append(f"{scheme} {', '.join(params)}".strip())
        return self.pick([", ", ",", " , "]).join(parts)

    def origin(self) -> str:
        if self.chance(0.5):
            return self.pick(["https://", "http://", "HTTPS://", "ftp://", ""]) + self.pick(
                ["a.example", ".", "..", "[::1]", "[::1", "a:1", "a:99999", "u:p@a", "a/x", "a?q"]
            )
        return self.url()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pump(flow: Generator[Any, Any, Any], replies: list[HttpResponse | TransportFailure]) -> Any:
    """Drive a sans-I/O flow with ``replies`` (the last one repeats); sleeps take no time."""
    reply: Any = None
    index = 0
    while True:
        try:
            step = flow.send(reply)
        except StopIteration as done:
            return done.value
        if isinstance(step, Sleep):
            assert step.seconds >= 0 and math.isfinite(step.seconds)
            reply = None
        else:
            assert isinstance(step, HttpRequest)
            reply = replies[min(index, len(replies) - 1)]
            index += 1


def context(key: str) -> ft.FetchContext:
    return ft.FetchContext(
        clock=ft.SystemClock(),
        policy=ft.RefreshPolicy(backoff_initial=0.0, backoff_max=0.0),
        deadline=time.monotonic() + 3600,
        current=None,
        emit=lambda event: None,
        key=key,
    )


def assert_token(token: ft.Token) -> None:
    assert len(token.fingerprint) == 8
    assert len(token.access_token) < 12 or token.access_token not in repr(token)
    assert token.authorization.endswith(token.access_token)
    assert token.lifetime is None or math.isfinite(token.lifetime)


# -- the properties --------------------------------------------------------------------------------

_PLAIN = TokenCodec()
_ENCRYPTED = TokenCodec(b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")


@given(seed=seeds)
def test_parse_token_response_raises_only_its_documented_errors(seed: int) -> None:
    fuzz = Hostile(seed)
    data = fuzz.token_response() if fuzz.chance(0.9) else fuzz.json_value()
    server_date = NOW + fuzz.r.uniform(-1e6, 1e6) if fuzz.chance(0.3) else None
    note(repr(data))
    try:
        parsed = parse_token_response(data, now=NOW, status=200, server_date=server_date)
    except (ft.TokenResponseError, ft.OAuthError):
        return
    assert_token(parsed.token)
    assert parsed.skew is None or math.isfinite(parsed.skew)
    # Every token that parses survives the store's record format (FileStore, RedisStore).
    # (Strings with lone surrogates, which no JSON text decodes to, may merge into pairs once.)
    token = parsed.token
    again = _PLAIN.decode(_PLAIN.encode(token))
    assert again.access_token == token.access_token and again.token_type == token.token_type
    assert again.expires_at == token.expires_at or (
        again.expires_at is not None
        and token.expires_at is not None
        and abs(again.expires_at - token.expires_at) < timedelta(milliseconds=1)
    )
    assert len(again.extra) <= len(token.extra)  # members that are not JSON are dropped
    assert _PLAIN.decode(_PLAIN.encode(again)) == again


@given(seed=seeds)
def test_unverified_jwt_decoding_never_raises(seed: int) -> None:
    fuzz = Hostile(seed)
    token = fuzz.jwt() if fuzz.chance(0.8) else fuzz.text(80)
    note(repr(token))
    claims = unverified_claims(token)
    header = unverified_header(token)
    assert claims is None or isinstance(claims, dict)
    assert header is None or (isinstance(header, dict) and isinstance(header["alg"], str))
    assert claims is None or header is not None


@given(seed=seeds)
def test_the_json_body_reader_raises_only_token_response_error(seed: int) -> None:
    body = Hostile(seed).body()
    note(repr(body))
    try:
        value = read_json(HttpResponse(200, {"content-type": "application/json"}, body))
    except ft.TokenResponseError as error:
        assert error.status == 200
        return
    assert json.dumps(value, allow_nan=True) == json.dumps(json.loads(body), allow_nan=True)


@given(seed=seeds)
def test_header_parsing_retry_after_and_www_authenticate_never_raises(seed: int) -> None:
    fuzz = Hostile(seed)
    value = fuzz.retry_after()
    header = fuzz.www_authenticate()
    note(repr((value, header)))
    seconds = parse_retry_after(value, now=NOW + fuzz.r.uniform(-NOW, NOW))
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    challenges = parse_challenges(header)
    assert all(isinstance(c, Challenge) and c.scheme == c.scheme.lower() for c in challenges)
    assert token_refused(401, header) in (True, False)
    assert token_refused(403, header) is False


@given(seed=seeds)
def test_discovery_validation_raises_only_documented_errors(seed: int) -> None:
    fuzz = Hostile(seed)
    replies = [fuzz.discovery_response() for _ in range(fuzz.r.randint(1, 4))]
    note(repr(replies))
    clear_cache()
    flow = discover(
        ISSUER,
        allow_insecure_http=False,
        timeout=None,
        clock_time=time.time,
        clock_monotonic=time.monotonic,
        deadline=time.monotonic() + 3600,
        policy=ft.RefreshPolicy(backoff_initial=0.0, backoff_max=0.0),
        max_attempts=fuzz.r.randint(1, 3),
        draw=lambda: 0.5,
    )
    try:
        endpoint = pump(flow, replies)
    except (ft.ConfigurationError, ft.TokenEndpointUnavailable, ft.TokenResponseError):
        return
    finally:
        clear_cache()
    assert check_url(endpoint, "endpoint", allow_insecure_http=False) == endpoint


_GRANT = ft.ClientCredentials(TOKEN_URL, "client", SECRET, max_attempts=3)


@given(seed=seeds)
def test_the_token_endpoint_flow_raises_only_token_request_errors(seed: int) -> None:
    fuzz = Hostile(seed)
    replies = [fuzz.response() for _ in range(fuzz.r.randint(1, 4))]
    note(repr(replies))
    flow = _GRANT._flow(context(_GRANT.key))
    try:
        token = pump(flow, replies)
    except (ft.TokenResponseError, ft.OAuthError, ft.TokenEndpointUnavailable) as error:
        assert SECRET not in str(error)
        return
    assert isinstance(token, ft.Token)
    assert_token(token)


@given(seed=seeds)
def test_the_store_codec_reads_a_token_or_reports_an_unreadable_record(seed: int) -> None:
    fuzz = Hostile(seed)
    record = fuzz.record() if fuzz.chance(0.8) else fuzz.body()
    note(repr(record))
    if fuzz.chance(0.3):  # the same record encrypted, damaged now and then
        try:
            record = _ENCRYPTED.encode(_PLAIN.decode(record))
        except UnreadableRecord:
            record = _ENCRYPTED._fernet.encrypt(record)
        codec = _ENCRYPTED
        if fuzz.chance(0.3):
            record = fuzz.damage(record)
    else:
        codec = _PLAIN
    try:
        token = codec.decode(record)
    except UnreadableRecord:
        return
    assert_token(token)
    again = codec.decode(codec.encode(token))
    assert again.replace(extra={}) == token.replace(extra={})


@given(seed=seeds)
def test_url_and_origin_checking_raise_only_configuration_error(seed: int) -> None:
    fuzz = Hostile(seed)
    url = fuzz.url()
    text = fuzz.origin()
    note(repr((url, text)))
    try:
        assert check_url(url, "token_url", allow_insecure_http=False) == url
    except ft.ConfigurationError as error:
        assert "u:p@" not in str(error)  # user-info may hold a password: never quoted
    try:
        scheme, host, port = parse_origin(text)
    except ft.ConfigurationError as error:
        assert "u:p@" not in str(error)
        return
    assert scheme in ("http", "https") and host and port >= 0


# -- the core state machine with hostile inputs ---------------------------------------------------


class HostileLifecycle(RuleBasedStateMachine):
    """Lifecycle fed tokens of any lifetime (negative, zero, ten years, unknown), hostile
    ``refresh_in`` values, foreign and freshtoken errors with any ``retry_after``, wall-clock
    jumps, and time running at any pace. Only the documented error ever comes out, and no token
    is handed out at or past its hard deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.life = Lifecycle(ft.RefreshPolicy())
        self.now = 1000.0
        self.wall = NOW
        self.serial = 0

    @rule(dt=st.floats(0, 1e6) | st.floats(0, 5), wall_jump=st.floats(-1e8, 1e8) | st.just(0.0))
    def time_passes(self, dt: float, wall_jump: float) -> None:
        self.now += dt
        self.wall += dt + wall_jump

    @rule()
    def a_caller_arrives(self) -> None:
        decision = self.life.next_action(self.now)
        if decision.action in (Action.USE, Action.USE_AND_REFRESH):
            entry = self.life.entry
            assert entry is not None and self.now < entry.hard_at
        if decision.action is Action.FAIL:
            assert decision.error is not None

    @precondition(lambda self: self.life.fetching)
    @rule(
        lifetime=st.none() | st.floats(-1e6, 10 * 365 * 86400),
        skew=st.floats(-1e6, 1e6),
        refresh_in=st.integers()
        | st.floats()
        | st.sampled_from(EDGES)
        | st.text(max_size=5)
        | st.none(),
        draw=st.floats(0, 1) | st.floats(-10, 10),
    )
    def the_fetch_succeeds(
        self, lifetime: float | None, skew: float, refresh_in: object, draw: float
    ) -> None:
        self.serial += 1
        issued = datetime.fromtimestamp(self.wall + skew, UTC)
        expires = None if lifetime is None else issued + timedelta(seconds=lifetime)
        token = ft.Token(
            access_token=f"t{self.serial}",
            issued_at=issued,
            expires_at=expires,
            extra={"refresh_in": refresh_in},
        )
        try:
            entry = self.life.fetch_succeeded(token, now=self.now, wall=self.wall, jitter_draw=draw)
        except ft.TokenResponseError:
            assert not self.life.fetching
            return
        assert entry.usable(self.now)

    @precondition(lambda self: self.life.fetching)
    @rule(
        error=st.builds(
            ft.TokenEndpointUnavailable, st.just("down"), retry_after=st.none() | st.floats()
        )
        | st.builds(ft.OAuthError, st.sampled_from(["invalid_client", "server_error"]))
        | st.builds(ValueError, st.just("foreign"))
        | st.builds(ft.ConfigurationError, st.just("bad")),
        draw=st.floats(0, 1) | st.floats(-10, 10),
    )
    def the_fetch_fails(self, error: BaseException, draw: float) -> None:
        failure = self.life.fetch_failed(error, now=self.now, draw=draw)
        assert failure.not_before >= self.now
        assert not math.isnan(failure.not_before)

    @precondition(lambda self: self.life.fetching)
    @rule()
    def the_fetch_is_abandoned(self) -> None:
        self.life.fetch_abandoned()

    @precondition(lambda self: self.life.entry is not None)
    @rule()
    def an_api_answers_401(self) -> None:
        entry = self.life.entry
        assert entry is not None
        assert self.life.invalidate(entry.token) is True
        assert self.life.invalidate(entry.token) is False

    @invariant()
    def the_schedule_is_ordered(self) -> None:
        entry = self.life.entry
        if entry is not None:
            assert entry.stale_at <= entry.hard_at <= entry.expires_at


# A run of the machine is 20 transitions; a twentieth of the profile's examples as runs keeps the
# CI budget (500 runs = 10,000 transitions) and scales with the nightly profile.
HostileLifecycle.TestCase.settings = settings(
    max_examples=max(30, settings().max_examples // 20), stateful_step_count=20
)
test_the_core_state_machine_with_hostile_inputs = HostileLifecycle.TestCase
