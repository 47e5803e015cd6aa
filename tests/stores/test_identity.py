"""Store keys that name the principal (issue 13 item 1).

A shared record may only be served to managers that would send the same token request. A token
callable, assertion or subject token whose identity its name does not show (bound method,
partial, closure, lambda, callable object) is refused with a shared store until ``key=`` names
the token; ``key=`` values that differ never share a record; the same grant config does.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import freshtoken as ft
from freshtoken._runtime.clock import FakeClock
from freshtoken._runtime.source import FetchContext
from freshtoken.redis import RedisStore
from freshtoken.testing import AuthorizationServer

TokenFn = Callable[[], dict[str, object]]


def token_of(tenant: str) -> dict[str, object]:
    return {"access_token": f"token-of-{tenant}", "expires_in": 3600}


def plain_module_function() -> dict[str, object]:
    """A module-level function without closure: its name identifies it."""
    return token_of("plain")


class TenantClient:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    def fetch_token(self) -> dict[str, object]:
        return token_of(self.tenant)

    def __call__(self) -> dict[str, object]:
        return token_of(self.tenant)


def closure_for(tenant: str) -> TokenFn:
    def fetch() -> dict[str, object]:
        return token_of(tenant)

    return fetch


def lambda_for(tenant: str) -> TokenFn:
    return lambda: token_of(tenant)


def nested_with_default(tenant: str) -> TokenFn:
    def fetch(tenant: str = tenant) -> dict[str, object]:  # no free variable, state in a default
        return token_of(tenant)

    return fetch


#: Each kind of callable whose name does not identify its token: (kind in the message, factory).
UNDERIVABLE: dict[str, tuple[str, Callable[[str], TokenFn]]] = {
    "bound method": ("a bound method", lambda tenant: TenantClient(tenant).fetch_token),
    "partial": ("a functools.partial", lambda tenant: functools.partial(token_of, tenant)),
    "closure": ("a closure", closure_for),
    "nested function": ("a closure", nested_with_default),
    "lambda": ("a lambda", lambda_for),
    "callable object": ("a callable object", TenantClient),
}


@pytest.fixture(params=["memory", "file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ft.Store:
    """Each shared store: one process, one host (a directory), a fleet (a real redis-server)."""
    if request.param == "memory":
        return ft.MemoryStore()
    if request.param == "file":
        return ft.FileStore(tmp_path / "tokens")
    return RedisStore(request.getfixturevalue("redis_client"))


@pytest.fixture
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer() as running:
        yield running


def sub_of(token: ft.Token) -> str:
    payload = token.access_token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return str(json.loads(base64.urlsafe_b64decode(payload))["sub"])


# -- token callables (f1) --------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(UNDERIVABLE))
def test_an_underivable_token_callable_with_a_shared_store_asks_for_key(
    kind: str, store: ft.Store
) -> None:
    described, make = UNDERIVABLE[kind]
    with pytest.raises(ft.ConfigurationError) as caught:
        ft.TokenManager(make("alice"), store=store, clock=FakeClock())
    message = str(caught.value)
    assert f"the token callable {__name__}." in message
    assert f"is {described}" in message
    assert "key=" in message


@pytest.mark.parametrize("kind", sorted(UNDERIVABLE))
def test_distinct_keys_never_share_a_record(kind: str, store: ft.Store) -> None:
    """f1 repro: before the fix the second manager was served the first one's token."""
    _, make = UNDERIVABLE[kind]
    clock = FakeClock()
    source = ft.FunctionSource(make("alice"), key="alice")
    assert source.unidentified is None
    alice = ft.TokenManager(source, store=store, clock=clock)
    bob = ft.TokenManager(ft.FunctionSource(make("bob"), key="bob"), store=store, clock=clock)
    assert alice.get().access_token == "token-of-alice"
    assert bob.get().access_token == "token-of-bob"


@pytest.mark.parametrize("kind", sorted(UNDERIVABLE))
def test_without_a_store_any_callable_is_fine(kind: str) -> None:
    _, make = UNDERIVABLE[kind]
    clock = FakeClock()
    assert ft.TokenManager(make("alice"), clock=clock).get().access_token == "token-of-alice"
    assert ft.TokenManager(make("bob"), clock=clock).get().access_token == "token-of-bob"


def test_a_plain_module_function_is_identified_by_its_name(store: ft.Store) -> None:
    clock = FakeClock()
    source = ft.FunctionSource(plain_module_function)
    assert source.unidentified is None
    assert source.key == f"function:{__name__}.plain_module_function"
    first = ft.TokenManager(source, store=store, clock=clock)
    second = ft.TokenManager(plain_module_function, store=store, clock=clock)
    assert first.get() == second.get()


def test_the_same_key_shares_one_record(store: ft.Store) -> None:
    clock = FakeClock()
    fetched: list[str] = []

    def fetch() -> dict[str, object]:
        fetched.append("x")
        return token_of("shared")

    one = ft.TokenManager(ft.FunctionSource(fetch, key="svc"), store=store, clock=clock)
    two = ft.TokenManager(ft.FunctionSource(fetch, key="svc"), store=store, clock=clock)
    assert one.get() == two.get()
    assert fetched == ["x"]


@pytest.mark.parametrize("key", ["", 3, b"svc"])
def test_key_must_be_a_non_empty_string(key: object) -> None:
    with pytest.raises(ft.ConfigurationError, match="key must be a non-empty string"):
        ft.FunctionSource(plain_module_function, key=key)  # type: ignore[arg-type]
    with pytest.raises(ft.ConfigurationError, match="key must be a non-empty string"):
        ft.ClientCredentials("https://as.example.com/token", "c", "s", key=key)  # type: ignore[arg-type]


class OwnSource:
    """A user's own TokenSource without ``unidentified``: trusted to name its token."""

    key = "own:source"

    def fetch(self, ctx: FetchContext) -> ft.Token:
        expires = datetime.fromtimestamp(ctx.clock.time() + 3600, tz=UTC)
        return ft.Token("own-token", expires_at=expires)

    async def afetch(self, ctx: FetchContext) -> ft.Token:
        return self.fetch(ctx)


def test_a_source_without_unidentified_is_trusted(store: ft.Store) -> None:
    manager = ft.TokenManager(OwnSource(), store=store, clock=FakeClock())
    assert manager.get().access_token == "own-token"


# -- grant inputs (f1b) ----------------------------------------------------------------------


class UserSession:
    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token


def test_token_exchange_with_a_bound_method_subject_token_asks_for_key(
    server: AuthorizationServer, store: ft.Store
) -> None:
    client = server.add_client()
    session = UserSession(server.issue_token(sub="alice"))
    grant = ft.TokenExchange(
        server.token_url,
        session.access_token,
        "access_token",
        client.client_id,
        client.client_secret,
    )
    with pytest.raises(ft.ConfigurationError, match=r"the subject_token callable .* bound method"):
        ft.TokenManager(grant, store=store)
    assert server.token_requests == 0


def test_token_exchange_per_user_keys_get_each_users_token(
    server: AuthorizationServer, store: ft.Store
) -> None:
    """f1b repro: before the fix Bob's on-behalf-of manager got a token for sub=alice."""
    client = server.add_client()
    subs = {}
    for user in ("alice", "bob"):
        session = UserSession(server.issue_token(sub=user))
        grant = ft.TokenExchange(
            server.token_url,
            session.access_token,
            "access_token",
            client.client_id,
            client.client_secret,
            key=f"obo:{user}",
        )
        with ft.TokenManager(grant, store=store) as manager:
            subs[user] = sub_of(manager.get())
    assert subs == {"alice": "alice", "bob": "bob"}
    assert server.token_requests == 2


def test_token_exchange_with_an_underivable_actor_token_asks_for_key(
    server: AuthorizationServer, store: ft.Store
) -> None:
    actor = UserSession(server.issue_token(sub="actor"))
    grant = ft.TokenExchange(
        server.token_url,
        "subject-string",
        "access_token",
        actor_token=actor.access_token,
        actor_token_type="access_token",
    )
    assert grant.unidentified is not None
    assert "the actor_token callable" in grant.unidentified
    with pytest.raises(ft.ConfigurationError, match="actor_token"):
        ft.TokenManager(grant, store=store)


class Assertions:
    """Signs a JWT bearer assertion for one subject (a bound method per user)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, audience: str, sub: str) -> None:
        self._key, self._audience, self._sub = key, audience, sub

    def assertion(self) -> str:
        now = int(time.time())
        claims = {"iss": "https://idp.example.com", "sub": self._sub, "aud": self._audience}
        return jwt.encode({**claims, "iat": now, "exp": now + 60}, self._key, algorithm="ES256")


def test_jwt_bearer_with_per_user_assertions(server: AuthorizationServer, store: ft.Store) -> None:
    signing = ec.generate_private_key(ec.SECP256R1())
    server.add_issuer("https://idp.example.com", signing.public_key())
    users = {user: Assertions(signing, server.token_url, user) for user in ("alice", "bob")}
    with pytest.raises(ft.ConfigurationError, match=r"the assertion callable .* bound method"):
        ft.TokenManager(ft.JWTBearerGrant(server.token_url, users["alice"].assertion), store=store)
    subs = {}
    for user, assertions in users.items():
        grant = ft.JWTBearerGrant(server.token_url, assertions.assertion, key=f"jwt:{user}")
        with ft.TokenManager(grant, store=store) as manager:
            subs[user] = sub_of(manager.get())
    assert subs == {"alice": "alice", "bob": "bob"}


def test_the_same_grant_config_shares_one_record(
    server: AuthorizationServer, store: ft.Store
) -> None:
    client = server.add_client()

    def grant() -> ft.ClientCredentials:
        return ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)

    with ft.TokenManager(grant(), store=store) as one, ft.TokenManager(grant(), store=store) as two:
        assert one.get() == two.get()
    assert server.token_requests == 1


def test_the_derived_key_covers_every_input_of_the_request() -> None:
    url = "https://as.example.com/token"
    base = ft.ClientCredentials(url, "c", "s").key
    variants = [
        ft.ClientCredentials(issuer="https://as.example.com", client_id="c", client_secret="s"),
        ft.ClientCredentials(url + "2", "c", "s"),
        ft.ClientCredentials(url, "d", "s"),
        ft.ClientCredentials(url, "c", "s", auth="client_secret_post"),
        ft.ClientCredentials(url, "c", "s", scope="read"),
        ft.ClientCredentials(url, "c", "s", audience="api"),
        ft.ClientCredentials(url, "c", "s", resource="https://api.example.com"),
        ft.ClientCredentials(url, "c", "s", params={"tenant": "t1"}),
        ft.ClientCredentials(url, "c", "s", params={"tenant": "t2"}),
        ft.PasswordGrant(url, "alice", "pw", "c", "s"),
        ft.PasswordGrant(url, "bob", "pw", "c", "s"),
        ft.TokenExchange(url, "subject-a", "access_token", "c", "s"),
        ft.TokenExchange(url, "subject-b", "access_token", "c", "s"),
        ft.TokenExchange(url, "subject-a", "jwt", "c", "s"),
    ]
    keys = [base, *(grant.key for grant in variants)]
    assert len(set(keys)) == len(keys)
    assert ft.ClientCredentials(url, "c", "other-secret").key == base  # the same client
    assert all("subject-a" not in key and "pw" not in key for key in keys)
    assert all(grant.unidentified is None for grant in variants)
    assert ft.ClientCredentials(url, "c", "s", key="mine").key == "mine"
