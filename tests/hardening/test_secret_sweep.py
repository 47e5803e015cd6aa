"""The secret-hygiene sweep: every path at DEBUG, every output searched for every secret.

ONE test runs every path freshtoken has (success through each grant and client authentication
method, each error class, retries, 401 replay through each HTTP integration, the decorators,
refresh-token rotation, the stores, the CLI in a subprocess) with the root logger at DEBUG into a
capture. It collects every log record (message, args and the formatted line), the repr and str of
every object it touched and of every exception, every formatted traceback, the CLI's stdout and
stderr, and the stores' contents; then searches all of it for every secret used: zero hits.

The secrets are known two ways: the ones the test configures (client secrets, a password, private
keys, a JWT-bearer assertion), and the ones on the wire, read by recording transports given to the
managers as ``http=`` / ``async_http=``: every token-endpoint request's credentials (Basic header,
``client_secret``, ``client_assertion``, ``assertion``, ``password``, ``refresh_token``) and
every response's ``access_token``, ``refresh_token`` and ``id_token``.

Exclusions, each deliberate: ``freshtoken token`` prints the access token (asked for): that exact
last line of its stdout is excluded, nothing else. Store contents are searched for credentials
(client secrets, passwords, keys, assertions) everywhere, and for tokens only where the store
promises unreadable content (an encrypted RedisStore): a FileStore file and an unencrypted Redis
value hold the token by design (SECURITY.md, "The store").
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
import secrets
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import aiohttp
import httpx
import jwt
import pytest
import requests
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import freshtoken as ft
from freshtoken._oauth.discovery import clear_cache
from freshtoken._stores.codec import TokenCodec
from freshtoken._stores.filestore import FileStore
from freshtoken.aiohttp import token_middleware
from freshtoken.httpx import TokenAuth as HttpxAuth
from freshtoken.requests import TokenAuth as RequestsAuth
from freshtoken.testing import AuthorizationServer, Fault

ROOT = Path(__file__).resolve().parents[2]
CREDENTIAL_FIELDS = (
    "client_secret",
    "client_assertion",
    "assertion",
    "password",
    "refresh_token",
    "subject_token",
)
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")


def distinctive(kind: str) -> str:
    return f"sweep-{kind}-{secrets.token_urlsafe(18)}"


class Wire:
    """Every secret that crossed the wire to or from a token endpoint, recorded by transports."""

    def __init__(self) -> None:
        self.credentials: set[str] = set()
        self.tokens: set[str] = set()

    def request(self, request: httpx.Request, body: bytes) -> None:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            self.credentials.add(authorization[6:])
            self.credentials.add(unquote_plus(decoded.split(":", 1)[1]))  # id:secret
        if request.headers.get("content-type", "").startswith("application/x-www-form"):
            for name, value in parse_qsl(body.decode()):
                if name in CREDENTIAL_FIELDS:
                    self.credentials.add(value)

    def response(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        if isinstance(data, dict):
            self.tokens.update(
                value for name in TOKEN_FIELDS if isinstance(value := data.get(name), str)
            )


class SyncRecorder(httpx.BaseTransport):
    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self._wire.request(request, body)
        response = self._inner.handle_request(request)
        content = response.read()
        response.close()
        self._wire.response(content)
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def close(self) -> None:
        self._inner.close()


class AsyncRecorder(httpx.AsyncBaseTransport):
    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self._wire.request(request, body)
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        await response.aclose()
        self._wire.response(content)
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self._inner.aclose()


class Capture(logging.Handler):
    """Every record of every logger, as message, args and formatted line (traceback included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(str(record.msg))
        self.texts.append(repr(record.args))
        self.texts.append(self.format(record))


class Sweep:
    """What the sweep saw: texts to search, and the secrets to search them for."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []  # (where, text)
        self.store_texts: list[tuple[str, str]] = []
        self.encrypted_store_texts: list[tuple[str, str]] = []
        self.configured: set[str] = set()
        self.issued: set[str] = set()
        self.paths: list[str] = []

    def path(self, name: str) -> None:
        self.paths.append(name)

    def touch(self, where: str, *objects: object) -> None:
        """Record repr and str of objects (and of a token, nothing else is needed)."""
        for item in objects:
            if isinstance(item, ft.Token):
                self.issued.update(
                    v for v in (item.access_token, item.refresh_token, item.id_token) if v
                )
            self.seen.append((where, repr(item)))
            self.seen.append((where, str(item)))

    def error(self, where: str, error: BaseException) -> None:
        self.touch(where, error)
        self.seen.append((where, "".join(traceback.format_exception(error))))
        for name in ("message", "description", "error", "uri", "field"):
            value = getattr(error, name, None)
            if isinstance(value, str):
                self.seen.append((where, value))

    def expect(
        self, where: str, error_type: type[BaseException], call: Callable[[], object]
    ) -> BaseException:
        with pytest.raises(error_type) as caught:
            call()
        self.error(where, caught.value)
        return caught.value


@pytest.fixture
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(token_lifetime=300) as running:
        yield running


@pytest.fixture
def redis_port() -> Iterator[int | None]:
    from tests.stores.stores_redis import REDIS_SERVER, RedisServer, free_port

    if not REDIS_SERVER.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        yield None
        return
    redis_server = RedisServer(free_port())
    redis_server.start()
    try:
        yield redis_server.port
    finally:
        redis_server.stop()


def test_no_secret_reaches_a_log_repr_message_traceback_cli_output_or_store(
    server: AuthorizationServer,
    redis_port: int | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sweep = Sweep()
    wire = Wire()
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    sync_http = httpx.Client(transport=SyncRecorder(wire), timeout=10)
    try:
        run_every_path(sweep, wire, server, sync_http, redis_port, tmp_path, monkeypatch)
    finally:
        sync_http.close()
        root.removeHandler(capture)
        root.setLevel(old_level)
        clear_cache()

    sweep.seen.extend(("log", text) for text in capture.texts)
    secrets_used = {s for s in sweep.configured | wire.credentials if len(s) >= 8}
    tokens = {t for t in wire.tokens | sweep.issued if len(t) >= 8}
    assert len(secrets_used) >= 10 and len(tokens) >= 20, (len(secrets_used), len(tokens))
    # Private keys: the PEM and each of its base64 lines.
    searched = set(secrets_used)
    for secret in secrets_used:
        if "PRIVATE KEY" in secret:
            searched.update(line for line in secret.splitlines() if len(line) >= 40)
    everything = searched | tokens

    hits = find(sweep.seen + sweep.encrypted_store_texts, everything)
    hits += find(sweep.store_texts, searched)
    print(
        f"secret sweep: {len(sweep.paths)} paths, {len(sweep.seen)} texts, "
        f"{len(capture.texts) // 3} log records, {len(searched)} credentials and "
        f"{len(tokens)} tokens searched, {len(hits)} hits"
    )
    assert hits == [], sorted(set(hits))
    assert len(capture.texts) > 50  # DEBUG logging was on and reached the capture


def find(texts: list[tuple[str, str]], secrets_: set[str]) -> list[tuple[str, str]]:
    """(where, the secret's first characters) for every secret found in a text."""
    return [(where, secret[:12]) for where, text in texts for secret in secrets_ if secret in text]


def test_the_sweep_finds_a_planted_secret() -> None:
    """The search can fail: a secret planted in a log line, a repr or a traceback is found."""
    secret = distinctive("planted")
    capture = Capture()
    logger = logging.getLogger("freshtoken.sweep-probe")
    logger.addHandler(capture)
    try:
        logger.warning("token is %s", secret)
    finally:
        logger.removeHandler(capture)
    sweep = Sweep()
    sweep.error("probe", ft.TokenRequestError(f"x {secret}"))
    texts = sweep.seen + [("log", text) for text in capture.texts]
    assert {where for where, _ in find(texts, {secret})} == {"probe", "log"}


def run_every_path(
    sweep: Sweep,
    wire: Wire,
    server: AuthorizationServer,
    sync_http: httpx.Client,
    redis_port: int | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    basic_secret = distinctive("basic")
    post_secret = distinctive("post")
    jwt_secret = distinctive("hmac") + distinctive("hmac")
    password = distinctive("password")
    sweep.configured.update({basic_secret, post_secret, jwt_secret, password})

    basic = server.add_client("sweep-basic", basic_secret, refresh_tokens=True)
    server.add_client("sweep-post", post_secret, auth_methods="client_secret_post")
    server.add_client("sweep-hmac", jwt_secret, auth_methods="client_secret_jwt")
    keyed = server.add_client("sweep-key", auth_methods="private_key_jwt")
    assert keyed.private_key is not None
    sweep.configured.add(keyed.private_key)
    server.add_user("sweep-user", password)
    sweep.touch("server", server, basic, keyed)

    def manager(source: Any, **options: Any) -> ft.TokenManager:
        tokens = ft.TokenManager(source, http=sync_http, **options)
        sweep.touch("manager", source, tokens)
        return tokens

    # -- success through each grant and client authentication ---------------------------------
    sweep.path("client_credentials/basic")
    with manager(ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)) as tokens:
        sweep.touch("token", tokens.get())
    sweep.path("client_credentials/post")
    post = ft.ClientCredentials(
        server.token_url, "sweep-post", post_secret, auth="client_secret_post"
    )
    with manager(post) as tokens:
        sweep.touch("token", tokens.get())
    sweep.path("client_secret_jwt")
    hmac = ft.ClientSecretJWT()
    with manager(ft.ClientCredentials(server.token_url, "sweep-hmac", jwt_secret, auth=hmac)) as t:
        sweep.touch("token", hmac, t.get())
    sweep.path("private_key_jwt")
    pkj = ft.PrivateKeyJWT(keyed.private_key, algorithm="ES256", key_id="k1")
    with manager(ft.ClientCredentials(server.token_url, "sweep-key", auth=pkj)) as tokens:
        sweep.touch("token", pkj, tokens.get())
    sweep.path("issuer discovery")
    clear_cache()
    with manager(
        ft.ClientCredentials(None, "sweep-basic", basic_secret, issuer=server.issuer)
    ) as t:
        sweep.touch("token", t.get())

    sweep.path("password grant, then its rotating refresh token")
    grant = ft.PasswordGrant(server.token_url, "sweep-user", password, "sweep-basic", basic_secret)
    with manager(grant) as tokens:
        first = tokens.get()
        assert first.refresh_token is not None
        tokens.invalidate(first)
        second = tokens.get()  # from the refresh token, rotated
        sweep.touch("token", first, second)
    sweep.path("refresh token grant (rotation)")
    assert second.refresh_token is not None
    refresh = ft.RefreshTokenGrant(
        server.token_url, second.refresh_token, "sweep-basic", basic_secret
    )
    with manager(refresh) as tokens:
        one = tokens.get()
        tokens.invalidate(one)
        latest = tokens.get()
        assert latest.refresh_token not in (None, second.refresh_token)  # rotated
        sweep.touch("token", one, latest)

    sweep.path("jwt-bearer grant")
    idp_key = ec.generate_private_key(ec.SECP256R1())
    server.add_issuer("https://idp.sweep.example", idp_key.public_key())
    assertion = jwt.encode(
        {
            "iss": "https://idp.sweep.example",
            "sub": "svc",
            "aud": server.issuer,
            "exp": int(time.time()) + 300,
        },
        idp_key,
        algorithm="ES256",
    )
    sweep.configured.add(assertion)
    sweep.configured.add(
        idp_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )
    with manager(ft.JWTBearerGrant(server.token_url, lambda: assertion)) as tokens:
        sweep.touch("token", tokens.get())

    sweep.path("token exchange")
    subject = server.issue_token(client_id="sweep-basic")
    sweep.issued.add(subject)
    exchange = ft.TokenExchange(
        server.token_url, subject, "access_token", "sweep-basic", basic_secret
    )
    with manager(exchange) as tokens:
        sweep.touch("token", tokens.get())

    run_workload_paths(sweep, server, manager, tmp_path, monkeypatch)

    sweep.path("ConfigurationError (callable identities that need key=, then key=)")
    bound_subject = functools.partial(str, subject)  # the subject token, bound into a partial
    subject_fn: Callable[[], str] = bound_subject
    needs_key: list[ft.TokenSource] = [
        ft.TokenExchange(server.token_url, subject_fn, "access_token", "sweep-basic", basic_secret),
        ft.FunctionSource(lambda: {"access_token": subject, "expires_in": 60}),
    ]
    for source in needs_key:
        sweep.touch("source", source)
        sweep.expect(
            "ConfigurationError",
            ft.ConfigurationError,
            functools.partial(ft.TokenManager, source, store=ft.MemoryStore()),
        )
    keyed_exchange = ft.TokenExchange(
        server.token_url, subject_fn, "access_token", "sweep-basic", basic_secret, key="obo:sweep"
    )
    with manager(keyed_exchange, store=ft.MemoryStore()) as tokens:
        sweep.touch("token", tokens.get(), keyed_exchange)

    sweep.path("function source")
    function_token = distinctive("fn-token")
    sweep.configured.add(function_token)
    with manager(lambda: {"access_token": function_token, "expires_in": 60}) as tokens:
        sweep.touch("token", tokens.get())

    # -- async, through the user's AsyncClient ---------------------------------------------------
    sweep.path("aget (async)")

    async def async_paths() -> None:
        async with httpx.AsyncClient(transport=AsyncRecorder(wire), timeout=10) as client:
            source = ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)
            async with ft.TokenManager(source, async_http=client) as tokens:
                sweep.touch("token", await tokens.aget())
                server.inject(status=503, times=1)
                tokens.invalidate(await tokens.aget())
                sweep.touch("token", await tokens.aget())  # after one retry

    asyncio.run(async_paths())

    # -- each error class -----------------------------------------------------------------------
    sweep.path("OAuthError (wrong secret)")
    wrong = distinctive("wrong-secret")
    sweep.configured.add(wrong)
    with manager(ft.ClientCredentials(server.token_url, "sweep-basic", wrong)) as tokens:
        sweep.expect("OAuthError", ft.OAuthError, tokens.get)
        sweep.expect("OAuthError again (cool-down)", ft.OAuthError, tokens.get)
    sweep.path("OAuthError (wrong password)")
    bad_password = distinctive("bad-password")
    sweep.configured.add(bad_password)
    grant = ft.PasswordGrant(
        server.token_url, "sweep-user", bad_password, "sweep-basic", basic_secret
    )
    with manager(grant) as tokens:
        sweep.expect("OAuthError password", ft.OAuthError, tokens.get)
    sweep.path("TokenEndpointUnavailable after retries")
    server.inject(status=503, times=3)
    policy = ft.RefreshPolicy(backoff_initial=0.01, backoff_max=0.02)
    source = ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)
    with manager(source, policy=policy) as tokens:
        sweep.expect("TokenEndpointUnavailable", ft.TokenEndpointUnavailable, tokens.get)
    sweep.path("TokenEndpointUnavailable (dropped connection)")
    server.inject(drop=True, times=1)
    source = ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret, max_attempts=1)
    with manager(source) as tokens:
        sweep.expect("dropped", ft.TokenEndpointUnavailable, tokens.get)
    sweep.path("retries then success")
    server.inject(status=429, retry_after=0, times=1)
    server.inject(status=502, times=1)
    with manager(ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)) as tokens:
        sweep.touch("token", tokens.get())
    sweep.path("TokenResponseError (HTML quoting a token)")
    leaked = distinctive("in-html")
    sweep.configured.add(leaked)
    server.inject(
        body=f"<html><body>proxy error for {leaked} and token={leaked}</body></html>",
        content_type="text/html",
        times=1,
    )
    source = ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)
    with manager(source) as tokens:
        sweep.expect("TokenResponseError html", ft.TokenResponseError, tokens.get)
    sweep.path("TokenResponseError (malformed JSON quoting a token)")
    in_json = distinctive("in-json")
    sweep.configured.add(in_json)
    server.inject(
        body='{"access_token": "' + in_json + '", "expires_in": NaN',
        content_type="application/json",
        times=1,
    )
    with manager(ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)) as t:
        sweep.expect("TokenResponseError json", ft.TokenResponseError, t.get)
    # -- begin: server error codes echoing secrets, with control characters (issue 13.7) -----
    sweep.path("OAuthError (error code echoing the client secret)")
    server.inject(
        status=400,
        body=json.dumps({"error": f"bad client_secret {basic_secret}"}),
        content_type="application/json",
        times=1,
    )
    with manager(ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)) as t:
        sweep.expect("OAuthError echoed code", ft.OAuthError, t.get)
    sweep.path("OAuthError (error code forging a log line)")
    forged = distinctive("forged-line")
    sweep.configured.add(forged)  # the invalid code must be shown as invalid, never quoted
    server.inject(
        status=400,
        body=json.dumps({"error": f"invalid_grant\n{forged}", "error_uri": f"x\n{forged}"}),
        content_type="application/json",
        times=1,
    )
    with manager(ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)) as t:
        sweep.expect("OAuthError control code", ft.OAuthError, t.get)
    sweep.path("TokenEndpointUnavailable (503 error code echoing the secret)")
    server.inject(
        status=503,
        body=json.dumps({"error": f"down\r\n{basic_secret}"}),
        content_type="application/json",
        times=3,
    )
    with manager(source, policy=policy) as tokens:
        sweep.expect("503 echoed code", ft.TokenEndpointUnavailable, tokens.get)
    # -- end: server error codes -----------------------------------------------------------------
    sweep.path("TokenResponseError (bad access token from a function)")
    bad_token = distinctive("bad") + " with space"
    sweep.configured.add(bad_token)
    with manager(lambda: bad_token) as tokens:
        sweep.expect("bad function token", ft.TokenResponseError, tokens.get)
    sweep.path("TokenRequestError (a function raising a secret)")
    raised = distinctive("raised")
    sweep.configured.add(raised)

    def leaky() -> str:
        raise RuntimeError(f"upstream said {raised}")

    with manager(leaky) as tokens:
        error = sweep.expect("function raised", ft.TokenRequestError, tokens.get)
        # The cause is chained for the caller (and is the caller's own text); what freshtoken
        # says and logs must not repeat it.
        assert raised not in str(error)
        error.__cause__ = None
        error.__context__ = None
        sweep.error("function raised, own text", error)
    sweep.seen = [(w, t) for w, t in sweep.seen if w != "function raised"]
    sweep.path("ConfigurationError (plain http, missing secret, discovery mismatch)")
    sweep.expect(
        "http remote",
        ft.ConfigurationError,
        lambda: ft.ClientCredentials("http://auth.example.com/t", "c", basic_secret),
    )
    sweep.expect(
        "credentials in URL",
        ft.ConfigurationError,
        lambda: ft.ClientCredentials(f"https://u:{basic_secret}@auth.example.com/t", "c", "x"),
    )
    sweep.expect(
        "missing secret", ft.ConfigurationError, lambda: ft.ClientCredentials(server.token_url, "c")
    )
    clear_cache()
    server.inject(
        Fault(
            target="discovery",
            body=json.dumps({"issuer": "https://evil.example", "token_endpoint": "x"}),
            content_type="application/json",
        )
    )
    source = ft.ClientCredentials(None, "sweep-basic", basic_secret, issuer=server.issuer)
    with manager(source) as tokens:
        sweep.expect("discovery mismatch", ft.ConfigurationError, tokens.get)
    server.clear_faults()
    clear_cache()

    # -- 401 replay through each integration, and the decorators ------------------------------
    source = ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret)
    with manager(source) as tokens:
        sweep.path("httpx sync 401 replay")
        auth = HttpxAuth(tokens)
        with httpx.Client(auth=auth, timeout=10) as api:
            assert api.get(server.resource_url).status_code == 200
            server.revoke_all()
            assert api.get(server.resource_url).status_code == 200
        sweep.touch("integration", auth)
        sweep.path("requests 401 replay")
        requests_auth = RequestsAuth(tokens)
        with requests.Session() as session:
            session.auth = requests_auth
            server.revoke_all()
            assert session.get(server.resource_url, timeout=10).status_code == 200
        sweep.touch("integration", requests_auth)
        sweep.path("httpx async and aiohttp 401 replay")

        async def async_integrations() -> None:
            async_auth = HttpxAuth(tokens)
            async with httpx.AsyncClient(auth=async_auth, timeout=10) as api:
                server.revoke_all()
                assert (await api.get(server.resource_url)).status_code == 200
            sweep.touch("token", await tokens.aget())  # the one the replay fetched
            middleware = token_middleware(tokens)
            async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
                server.revoke_all()
                async with session.get(server.resource_url) as response:
                    assert response.status == 200
            sweep.touch("token", await tokens.aget())
            sweep.touch("integration", async_auth, middleware)

        asyncio.run(async_integrations())
        sweep.path("401 twice propagates")
        server.inject(target="resource", status=401, times=2)
        with httpx.Client(auth=HttpxAuth(tokens), timeout=10) as api:
            response = api.get(server.resource_url)
            assert response.status_code == 401
            sweep.touch("response", response, response.request.headers)
            with pytest.raises(httpx.HTTPStatusError) as status_error:
                response.raise_for_status()
            sweep.seen.append(("httpx error", str(status_error.value)))

        sweep.path("decorators: function and method, 401 then replay")
        attempts: list[ft.Token] = []

        @tokens.authenticated
        def call_api(token: ft.Token, path: str) -> int:
            attempts.append(token)
            if len(attempts) == 1:
                server.revoke(token.access_token)
            response = httpx.get(
                server.resource_url + path,
                headers={"Authorization": token.authorization},
                timeout=10,
            )
            if response.status_code == 401:
                raise ft.Unauthorized(token=token)
            return response.status_code

        assert call_api("") == 200
        assert len(attempts) == 2
        sweep.touch("decorator", call_api, *attempts)

        class Api:
            def __init__(self) -> None:
                self.tokens = tokens

            @ft.authenticated
            def fetch(self, token: ft.Token) -> ft.Token:
                return token

            @ft.authenticated
            async def afetch(self, token: ft.Token) -> ft.Token:
                return token

        api_object = Api()
        sweep.touch("decorator", api_object.fetch(), asyncio.run(api_object.afetch()))
        unauthorized = ft.Unauthorized(token=attempts[0])
        sweep.error("Unauthorized", unauthorized)

    # -- the stores -----------------------------------------------------------------------------
    sweep.path("FileStore")
    directory = tmp_path / "tokens"
    file_store = FileStore(directory)
    rotating = ft.PasswordGrant(
        server.token_url, "sweep-user", password, "sweep-basic", basic_secret
    )
    events: list[ft.Event] = []
    with manager(rotating, store=file_store, on_event=events.append) as tokens:
        token = tokens.get()
        tokens.invalidate(token)  # the next token comes from the refresh token, rotated
        sweep.touch("token", token, tokens.get(), file_store)
    with manager(
        ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret),
        store=file_store,
        on_event=events.append,
    ) as tokens:
        sweep.touch("token", tokens.get())
    sweep.path("FileStore corrupt")
    for path in directory.glob("*.json"):
        path.write_bytes(path.read_bytes()[:40])
    with manager(
        ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret),
        store=file_store,
        on_event=events.append,
    ) as tokens:
        sweep.touch("token", tokens.get())
    for path in sorted(directory.iterdir()):
        if path.is_file():
            sweep.store_texts.append((f"file {path.name}", path.read_bytes().decode("latin-1")))
            sweep.seen.append(("file name", path.name))

    if redis_port is not None:
        import redis

        from freshtoken.redis import RedisStore

        sweep.path("RedisStore, plain and encrypted")
        client = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=2)
        key = Fernet.generate_key()
        try:
            plain = RedisStore(client, prefix="plain:")
            encrypted = RedisStore(client, prefix="enc:", encryption_key=key)
            for store in (plain, encrypted):
                with manager(
                    ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret),
                    store=store,
                    on_event=events.append,
                ) as tokens:
                    token = tokens.get()
                    tokens.invalidate(token)
                    sweep.touch("token", token, tokens.get(), store)
            codec = TokenCodec(key)
            names: list[Any] = client.keys("*")
            for name in names:
                sweep.seen.append(("redis key", name.decode("latin-1")))
                values: list[Any] = (
                    client.hvals(name) if client.type(name) == b"hash" else [client.get(name)]
                )
                for value in values:
                    if value is None:
                        continue
                    text = value.decode("latin-1")
                    if name.startswith(b"enc:"):
                        sweep.encrypted_store_texts.append((f"redis {name!r}", text))
                        if len(value) > 100:
                            codec.decode(value)  # it is a record, readable with the key only
                    else:
                        sweep.store_texts.append((f"redis {name!r}", text))
            sweep.path("RedisStore down")
            down = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.5)
            with manager(
                ft.ClientCredentials(server.token_url, "sweep-basic", basic_secret),
                store=RedisStore(down),
                on_event=events.append,
            ) as tokens:
                sweep.touch("token", tokens.get())
            down.close()
        finally:
            client.close()
    assert any(event.kind == "store_unavailable" for event in events)
    sweep.touch("event", *events)

    # -- the CLI, in a subprocess -----------------------------------------------------------------
    run_cli_paths(sweep, server, basic_secret, tmp_path)


def run_workload_paths(
    sweep: Sweep,
    server: AuthorizationServer,
    manager: Callable[..., ft.TokenManager],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Platform credentials: a token file (as assertion, as client assertion, missing), and the
    GitHub Actions runner's ID token with its request token (as subject token, and refused)."""
    from tests.workload.github_runner import ISSUER, REQUEST_TOKEN, serve_runner
    from tests.workload.test_tokenfile import platform_token

    platform = "https://kubelet.sweep.example"
    kubelet_key = ec.generate_private_key(ec.SECP256R1())
    server.add_issuer(platform, kubelet_key.public_key())
    account = "system:serviceaccount:sweep:api"
    federated = server.add_client(
        "sweep-federated",
        auth_methods="private_key_jwt",
        federated_credentials=[(platform, account)],
    )
    file = tmp_path / "projected-token"

    def project(sub: str) -> str:
        token = platform_token(
            kubelet_key, iss=platform, sub=sub, aud=server.token_url, now=time.time()
        )
        sweep.configured.add(token)
        file.write_text(token + "\n", encoding="utf-8")
        return token

    sweep.path("TokenFile as a JWT-bearer assertion")
    project("workload")
    source = ft.TokenFile(file)
    with manager(ft.JWTBearerGrant(server.token_url, source)) as tokens:
        sweep.touch("token", source, tokens.get())
    sweep.path("TokenFile as a federated client assertion")
    project(account)
    grant = ft.ClientCredentials(
        server.token_url, federated.client_id, auth=ft.ClientAssertion(ft.TokenFile(file))
    )
    with manager(grant) as tokens:
        sweep.touch("token", grant, tokens.get())
    sweep.path("TokenFile refused: wrong subject, then missing and empty files")
    project("system:serviceaccount:sweep:intruder")
    with manager(grant) as tokens:
        sweep.expect("OAuthError", ft.OAuthError, tokens.get)
    file.write_text("  \n", encoding="utf-8")
    sweep.expect("ConfigurationError", ft.ConfigurationError, ft.TokenFile(file))
    sweep.expect("ConfigurationError", ft.ConfigurationError, ft.TokenFile(tmp_path / "absent"))

    sweep.path("GitHubActionsOIDC as a subject token; its request token refused")
    sweep.configured.add(REQUEST_TOKEN)
    runner = serve_runner(monkeypatch)
    state = next(runner)
    try:
        server.add_issuer(ISSUER, state.public_key)
        github = ft.GitHubActionsOIDC(audience=server.token_url)
        exchange = ft.TokenExchange(
            server.token_url, github, "id_token", "sweep-post", None, key="gh:sweep"
        )
        sweep.touch("source", github, exchange)
        id_token = github()
        sweep.configured.add(id_token)
        state.answers.append((401, b'{"message": "Bad credentials"}'))
        sweep.expect("ConfigurationError", ft.ConfigurationError, ft.GitHubActionsOIDC("x"))
        state.answers.append((500, b"{}"))
        state.answers.append((500, b"{}"))
        state.answers.append((500, b"{}"))
        sweep.expect("TokenEndpointUnavailable", ft.FreshTokenError, ft.GitHubActionsOIDC("y"))
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN + " x")
        sweep.expect("ConfigurationError", ft.ConfigurationError, ft.GitHubActionsOIDC("z"))
    finally:
        runner.close()


def run_cli_paths(sweep: Sweep, server: AuthorizationServer, secret: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    env["FRESHTOKEN_CLIENT_SECRET"] = secret

    def cli(
        *args: str, stdin: str = "", extra: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        completed = subprocess.run(
            [sys.executable, "-m", "freshtoken", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**env, **(extra or {})},
            timeout=60,
            check=False,
        )
        return completed.returncode, completed.stdout, completed.stderr

    sweep.path("cli token (prints the access token: that line excluded)")
    code, out, err = cli(
        "-v", "token", "--token-url", server.token_url, "--client-id", "sweep-basic"
    )
    assert code == 0, err
    *rest, printed = out.rstrip("\n").split("\n")
    sweep.issued.add(printed)
    sweep.seen.extend(
        [("cli token stdout (without the token line)", "\n".join(rest)), ("cli token stderr", err)]
    )
    sweep.path("cli token --json (the access token member excluded)")
    code, out, err = cli(
        "token", "--json", "--token-url", server.token_url, "--client-id", "sweep-basic"
    )
    assert code == 0, err
    data = json.loads(out)
    sweep.issued.add(data.pop("access_token"))
    sweep.seen.extend([("cli json", json.dumps(data)), ("cli json stderr", err)])
    sweep.path("cli token, secret from a file and from stdin")
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    code, out, err = cli(
        "token",
        "--token-url",
        server.token_url,
        "--client-id",
        "sweep-basic",
        "--client-secret-file",
        str(secret_file),
        extra={"FRESHTOKEN_CLIENT_SECRET": ""},
    )
    assert code == 0, err
    sweep.issued.add(out.strip().splitlines()[-1])
    sweep.seen.append(("cli file stderr", err))
    code, out, err = cli(
        "token",
        "--token-url",
        server.token_url,
        "--client-id",
        "sweep-basic",
        "--client-secret-stdin",
        stdin=secret + "\n",
        extra={"FRESHTOKEN_CLIENT_SECRET": ""},
    )
    assert code == 0, err
    sweep.issued.add(out.strip().splitlines()[-1])
    sweep.seen.append(("cli stdin stderr", err))
    sweep.path("cli errors: refused, unreachable, secret as a flag")
    wrong = distinctive("cli-wrong")
    sweep.configured.add(wrong)
    code, out, err = cli(
        "-v",
        "token",
        "--token-url",
        server.token_url,
        "--client-id",
        "sweep-basic",
        extra={"FRESHTOKEN_CLIENT_SECRET": wrong},
    )
    assert code == 4
    sweep.seen.extend([("cli refused", out + err)])
    code, out, err = cli(
        "token", "--token-url", "http://127.0.0.1:1/t", "--client-id", "x", "--timeout", "1"
    )
    assert code == 5
    sweep.seen.append(("cli unreachable", out + err))
    code, out, err = cli("token", "--client-secret", wrong)
    assert code == 2
    sweep.seen.append(("cli secret flag", out + err))
    sweep.path("cli inspect (a token on stdin: fingerprint only)")
    token = server.issue_token(client_id="sweep-basic")
    sweep.issued.add(token)
    code, out, err = cli("inspect", "-", stdin=token)
    assert code == 0, err
    sweep.seen.append(("cli inspect", out + err))
