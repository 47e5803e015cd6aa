"""Every corpus case gives its typed error (or its value), and no output of it holds a secret.

The cases are data, in :mod:`tests.corpus.cases`; this module only knows how to feed each
category to the real code: parsers directly, HTTP bodies and discovery documents through the real
:class:`~freshtoken.testing.AuthorizationServer` (``server.inject(...)``) and a real grant and
manager, store files and Redis values through a real FileStore / redis-server, CLI command lines
through ``freshtoken._cli.main``.
"""

# Either outcome is a specification here (a value, or the documented error with its fields), so
# the assertions on the error live in the except block: pytest.raises cannot say "or a value".
# ruff: noqa: PT017

from __future__ import annotations

import json
import os
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

import freshtoken as ft
from freshtoken._core.token import parse_token_response
from freshtoken._oauth.discovery import clear_cache
from freshtoken._oauth.http import HttpRequest, HttpResponse
from freshtoken._oauth.retry import parse_retry_after
from freshtoken._stores.codec import TokenCodec
from freshtoken._stores.filestore import FileStore
from freshtoken._stores.store import storage_key
from freshtoken.testing import AuthorizationServer, Fault

from .cases import MARK, NOW, RA_NOW, Case, by_category, counts

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SECRET = f"cs-{MARK}-corpus-0123456789abcdef"


def ids(category: str) -> pytest.MarkDecorator:
    cases = by_category(category)
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


# -- the two checks every case makes ----------------------------------------------------------


def texts_of(error: BaseException) -> list[str]:
    """What a user sees of an error: str, repr, and the formatted traceback (chain included)."""
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


def assert_no_secret(texts: list[str], case: Case, extra: tuple[str, ...] = ()) -> None:
    secrets = [MARK, CLIENT_SECRET, *case.secrets, *extra]
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked in {text[:300]!r}"
        # A JWT's payload segment is as secret as the JWT.
        for secret in case.secrets:
            for segment in secret.split("."):
                if len(segment) >= 12:
                    assert segment not in text


def check(case: Case, call: Callable[[], Any], *, extra_secrets: tuple[str, ...] = ()) -> Any:
    """Run ``call``; the outcome must be the case's error (with its field/message/attributes)
    or a value. Returns the value (or the error)."""
    try:
        value = call()
    except BaseException as error:
        if case.raises is None:
            raise
        assert type(error) is case.raises, f"{type(error).__name__}: {error}"
        assert isinstance(error, ft.FreshTokenError) or case.category == "store_record"
        if case.field is not None:
            assert getattr(error, "field", None) == case.field, str(error)
        if case.message is not None:
            assert case.message in str(error)
        for name, expected in case.value.items():
            if name == "retry_after_known":
                assert (getattr(error, "retry_after", None) is not None) is expected
            else:
                assert getattr(error, name) == expected, name
        assert_no_secret(texts_of(error), case, extra_secrets)
        return error
    assert case.raises is None, f"expected {case.raises.__name__}, got {value!r}"
    assert_no_secret([repr(value), str(value)], case, extra_secrets)
    return value


def check_token(case: Case, token: ft.Token) -> None:
    for name, expected in case.value.items():
        if name == "lifetime":
            assert (
                token.lifetime == pytest.approx(expected)
                if expected is not None
                else (token.lifetime is None)
            )
        elif name == "lifetime_positive":
            assert token.lifetime is not None and token.lifetime > 0
        else:
            assert getattr(token, name) == expected, name


# -- the server shared by the HTTP categories --------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(token_lifetime=300) as running:
        running.add_client("corpus-client", CLIENT_SECRET)
        yield running


@pytest.fixture
def clean_server(server: AuthorizationServer) -> Iterator[AuthorizationServer]:
    server.clear_faults()
    clear_cache()
    yield server
    server.clear_faults()
    clear_cache()


def grant(server: AuthorizationServer, *, issuer: bool = False) -> ft.ClientCredentials:
    if issuer:
        return ft.ClientCredentials(
            issuer=server.issuer,
            client_id="corpus-client",
            client_secret=CLIENT_SECRET,
            max_attempts=1,
        )
    return ft.ClientCredentials(server.token_url, "corpus-client", CLIENT_SECRET, max_attempts=1)


def get_token(source: ft.ClientCredentials, **manager_options: Any) -> ft.Token:
    with ft.TokenManager(source, **manager_options) as tokens:
        return tokens.get()


# -- token_response and jwt: the parser ----------------------------------------------------------


@ids("token_response")
def test_token_response_case(case: Case) -> None:
    outcome = check(case, lambda: parse_token_response(case.input, now=NOW).token)
    if isinstance(outcome, ft.Token):
        check_token(case, outcome)


@ids("jwt")
def test_jwt_case(case: Case) -> None:
    data = dict(case.input)
    if "expires_in" in case.options:
        data["expires_in"] = case.options["expires_in"]
    outcome = check(case, lambda: parse_token_response(data, now=NOW).token)
    if isinstance(outcome, ft.Token):
        check_token(case, outcome)


# -- http_body: served by the real token endpoint ------------------------------------------------


@ids("http_body")
def test_http_body_case(case: Case, clean_server: AuthorizationServer) -> None:
    options = dict(case.options)
    if options.get("body") is not None or options.get("status") is not None or options.get("drop"):
        clean_server.inject(
            Fault(
                body=options.get("body"),
                content_type=options.get("content_type"),
                status=options.get("status"),
                retry_after=options.get("retry_after"),
                drop=bool(options.get("drop")),
            ),
            times=1,
        )
    outcome = check(case, lambda: get_token(grant(clean_server)))
    if isinstance(outcome, ft.Token):
        check_token(case, outcome)


# -- http_bytes: the grant's own flow, fed bytes --------------------------------------------------


@ids("http_bytes")
def test_http_bytes_case(case: Case) -> None:
    source = ft.ClientCredentials("https://auth.example.com/token", "c", CLIENT_SECRET)
    ctx = ft.FetchContext(
        clock=ft.SystemClock(),
        policy=ft.RefreshPolicy(),
        deadline=time.monotonic() + 30,
        current=None,
        emit=lambda event: None,
        key=source.key,
    )

    def run() -> ft.Token:
        flow = source._flow(ctx)
        request = next(flow)
        assert isinstance(request, HttpRequest)
        try:
            headers = case.options.get("headers", {"content-type": "application/json"})
            flow.send(HttpResponse(200, headers, case.input))
        except StopIteration as done:
            token: ft.Token = done.value
            return token
        raise AssertionError("the flow asked for more than one request")

    check(case, run)


# -- discovery: documents served by the real server ---------------------------------------------


@ids("discovery")
def test_discovery_case(case: Case, clean_server: AuthorizationServer) -> None:
    options = dict(case.options)
    body = options["body"]
    if body is not None:
        body = body.replace("$ISSUER", clean_server.issuer).replace(
            "$TOKEN_URL", clean_server.token_url
        )
    if case.id != "valid-control":
        clean_server.inject(
            Fault(
                target="discovery",
                body=body,
                content_type=options["content_type"],
                status=options["status"],
            )
        )
    outcome = check(case, lambda: get_token(grant(clean_server, issuer=True)))
    if isinstance(outcome, ft.Token):
        assert outcome.lifetime is not None and outcome.lifetime > 0


# -- callable_identity: the store-key check at TokenManager construction -----------------------


@ids("callable_identity")
def test_callable_identity_case(case: Case) -> None:
    def construct() -> Any:
        with ft.TokenManager(case.input(), store=ft.MemoryStore()) as tokens:
            return tokens.source

    result = check(case, construct)
    for name, expected in case.value.items():
        assert getattr(result, name) == expected, name
    if case.raises is not None:
        assert "key=" in str(result)


# -- retry_after ---------------------------------------------------------------------------------


@ids("retry_after")
def test_retry_after_case(case: Case) -> None:
    seconds = parse_retry_after(case.input, now=RA_NOW)
    assert seconds == case.value["seconds"]


# -- store_record: the codec ---------------------------------------------------------------------


@ids("store_record")
def test_store_record_case(case: Case) -> None:
    data: bytes = case.input
    codec = TokenCodec()
    if case.options.get("encrypt_with_other_key"):
        other = TokenCodec(Fernet.generate_key())
        data = other.encode(TokenCodec().decode(_valid_record()))
        codec = TokenCodec(Fernet.generate_key())
    elif case.options.get("decrypt"):
        codec = TokenCodec(Fernet.generate_key())
    outcome = check(case, lambda: codec.decode(data))
    if isinstance(outcome, ft.Token):
        assert outcome.refresh_token is not None and MARK in outcome.refresh_token
        assert codec.decode(codec.encode(outcome)) == outcome


def _valid_record() -> bytes:
    (valid,) = [c for c in by_category("store_record") if c.id == "valid-control"]
    data: bytes = valid.input
    return data


# -- file_store / redis_store: corrupt stores through a manager --------------------------------


def _through_store(
    case: Case, server: AuthorizationServer, store: object, read_back: Callable[[], ft.Token]
) -> None:
    events: list[ft.Event] = []
    source = grant(server)
    token = check(case, lambda: get_token(source, store=store, on_event=events.append))
    assert isinstance(token, ft.Token)
    assert MARK not in token.access_token  # fetched from the server, not read from the store
    reported = [event for event in events if event.kind == "store_unavailable"]
    assert reported, [event.kind for event in events]
    for event in events:
        assert_no_secret([event.describe(), repr(event)], case, (token.access_token,))
    if not case.options.get("dir"):
        assert read_back() == token  # the corrupt record was replaced by the fresh token


def _stored(store: FileStore, key: str) -> ft.Token:
    record = store._backend.load(key)
    assert record is not None, "the store holds no record"
    return record.token


@ids("file_store")
def test_file_store_case(case: Case, clean_server: AuthorizationServer, tmp_path: Path) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o700)
    key = storage_key(grant(clean_server).key)
    path = directory / (key.replace(":", "-") + ".json")
    if case.options.get("dir"):
        path.mkdir()
    elif case.options.get("symlink"):
        target = tmp_path / "elsewhere.json"
        target.write_bytes(case.input)
        target.chmod(0o600)
        path.symlink_to(target)
    else:
        path.write_bytes(case.input)
        path.chmod(case.options.get("mode", 0o600))
    store = FileStore(directory)
    _through_store(case, clean_server, store, lambda: _stored(store, key))
    if not case.options.get("dir"):
        assert not path.is_symlink()
        assert path.stat().st_mode & 0o777 == 0o600


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    from tests.stores.stores_redis import REDIS_SERVER, RedisServer, free_port

    if not REDIS_SERVER.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    redis_server = RedisServer(free_port())
    redis_server.start()
    try:
        yield redis_server.port
    finally:
        redis_server.stop()


@ids("redis_store")
def test_redis_store_case(case: Case, clean_server: AuthorizationServer, redis_port: int) -> None:
    import redis

    from freshtoken.redis import RedisStore

    client = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=2)
    try:
        client.flushall()
        key = "freshtoken:" + storage_key(grant(clean_server).key)
        kind = case.options.get("type", "hash")
        if kind == "string":
            client.set(key, case.input)
        elif kind == "list":
            client.rpush(key, case.input)
        else:
            client.hset(key, mapping={"v": 1, "f": "00000000", "d": case.input})
        encryption = Fernet.generate_key() if case.options.get("encrypt") else None
        codec = TokenCodec(encryption)

        def read_back() -> ft.Token:
            data = client.hget(key, "d")
            assert isinstance(data, bytes)
            return codec.decode(data)

        _through_store(case, clean_server, RedisStore(client, encryption_key=encryption), read_back)
        for name in client.keys("*"):
            if client.type(name) == b"hash":
                for value in client.hvals(name):
                    assert MARK.encode() not in value or name == key.encode()
    finally:
        client.close()


# -- cli ----------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@ids("cli")
def test_cli_case(
    case: Case,
    clean_server: AuthorizationServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from freshtoken._cli import main

    for name in list(os.environ):
        if name.startswith("FRESHTOKEN_"):
            monkeypatch.delenv(name)
    for name, value in case.options.get("env", {}).items():
        monkeypatch.setenv(name, value)
    secret_file = tmp_path / "secret"
    if "file" in case.options:
        secret_file.write_text(case.options["file"])
    if "file_bytes" in case.options:
        secret_file.write_bytes(case.options["file_bytes"])
    replacements = {
        "$TOKEN_URL": clean_server.token_url,
        "$ISSUER": clean_server.issuer,
        "$CLIENT_ID": "corpus-client",
        "$CLOSED_URL": f"http://127.0.0.1:{_closed_port()}/token",
        "$FILE": str(secret_file),
        "$NOFILE": str(tmp_path / "missing"),
    }
    argv = [replacements.get(arg, arg) for arg in case.input]
    code = main(argv)
    output = capsys.readouterr()
    assert code == case.value["exit"], output.err
    assert_no_secret([output.out, output.err], case)


def test_the_secret_check_catches_a_leak() -> None:
    """The corpus' secret check can fail: an error quoting a secret is caught."""
    (case,) = [c for c in by_category("http_body") if c.id == "html-200"]
    leaking = ft.TokenResponseError(f"the body was {case.input}")
    with pytest.raises(AssertionError, match="a secret leaked"):
        assert_no_secret(texts_of(leaking), case)
    chained = ft.TokenRequestError("wrapped")
    chained.__cause__ = ValueError(CLIENT_SECRET)
    with pytest.raises(AssertionError, match="a secret leaked"):
        assert_no_secret(texts_of(chained), case)


# -- credential_file: TokenFile on bytes the platform left ----------------------------------------


@ids("credential_file")
def test_credential_file_case(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(case.input)
    source = ft.TokenFile(path)
    outcome = check(case, lambda: len(source()))  # the text itself is the secret: not checked
    if not isinstance(outcome, BaseException):
        assert source() == case.value["text"]


# -- the docs table stays in step with the corpus ------------------------------------------------


def test_the_corpus_has_at_least_80_cases_and_docs_table_matches() -> None:
    table = counts()
    assert sum(table.values()) >= 80
    text = (ROOT / "docs" / "hardening.md").read_text()
    for category, count in table.items():
        assert re.search(rf"\|\s*`{category}`\s*\|\s*{count}\s*\|", text), category
    assert re.search(rf"\|\s*\*\*total\*\*\s*\|\s*\*\*{sum(table.values())}\*\*\s*\|", text)


def test_every_case_names_an_error_from_the_documented_tree_or_a_value() -> None:
    from freshtoken._stores.store import UnreadableRecord

    for case in by_category("token_response") + by_category("http_body"):
        assert case.raises is None or issubclass(case.raises, ft.FreshTokenError)
    for case in by_category("store_record"):
        assert case.raises in (None, UnreadableRecord)
    assert json.loads(json.dumps(counts()))  # plain data
