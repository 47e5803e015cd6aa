"""Who the server knows: clients (with their auth methods, grants, scopes, keys), users, issuers."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_args

from freshtoken.testing._keys import PublicKey, algorithms_for, load_public_key

__all__ = [
    "AuthMethod",
    "GrantType",
    "Client",
    "Registry",
    "ALL_AUTH_METHODS",
    "ALL_GRANT_TYPES",
    "DEFAULT_AUTH_METHODS",
    "JWT_BEARER",
    "TOKEN_EXCHANGE",
]

AuthMethod: TypeAlias = Literal[
    "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"
]
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GrantType: TypeAlias = Literal[
    "client_credentials",
    "refresh_token",
    "password",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
]
ALL_AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
ALL_GRANT_TYPES: tuple[GrantType, ...] = get_args(GrantType)
DEFAULT_AUTH_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class Client:
    """A registered client, as returned by ``server.add_client()``.

    ``private_key`` is set only when the server generated the client's key pair (a
    ``private_key_jwt`` client registered without ``public_key``): sign assertions with it.
    Secrets and keys are kept out of ``repr()`` so they do not end up in test logs.
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_methods: tuple[AuthMethod, ...] = DEFAULT_AUTH_METHODS
    grant_types: tuple[GrantType, ...] = ALL_GRANT_TYPES
    scopes: tuple[str, ...] | None = None
    token_lifetime: float | None = None
    refresh_tokens: bool = False
    public_key: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    federated_credentials: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "auth_methods": list(self.auth_methods),
            "grant_types": list(self.grant_types),
            "scopes": None if self.scopes is None else list(self.scopes),
            "token_lifetime": self.token_lifetime,
            "refresh_tokens": self.refresh_tokens,
            "public_key": self.public_key,
            "private_key": self.private_key,
            "federated_credentials": [list(pair) for pair in self.federated_credentials],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Client:
        scopes = data.get("scopes")
        return cls(
            client_id=data["client_id"],
            client_secret=data.get("client_secret"),
            auth_methods=tuple(data["auth_methods"]),
            grant_types=tuple(data["grant_types"]),
            scopes=None if scopes is None else tuple(scopes),
            token_lifetime=data.get("token_lifetime"),
            refresh_tokens=bool(data.get("refresh_tokens")),
            public_key=data.get("public_key"),
            private_key=data.get("private_key"),
            federated_credentials=tuple(
                (str(issuer), str(subject))
                for issuer, subject in data.get("federated_credentials") or ()
            ),
        )


def make_client(
    client_id: str | None,
    client_secret: str | None,
    *,
    auth_methods: AuthMethod | Iterable[AuthMethod],
    grant_types: Iterable[GrantType] | None,
    scopes: Iterable[str] | None,
    token_lifetime: float | None,
    refresh_tokens: bool,
    public_key: str | None,
    private_key: str | None,
    federated_credentials: Iterable[tuple[str, str]] = (),
) -> Client:
    """Validate registration arguments and fill in generated credentials."""
    methods: tuple[AuthMethod, ...] = (
        (auth_methods,) if isinstance(auth_methods, str) else tuple(auth_methods)
    )
    for method in methods:
        if method not in ALL_AUTH_METHODS:
            raise ValueError(f"unknown auth method {method!r}; expected one of {ALL_AUTH_METHODS}")
    if not methods:
        raise ValueError("a client needs at least one auth method")
    grants = ALL_GRANT_TYPES if grant_types is None else tuple(grant_types)
    for grant in grants:
        if grant not in ALL_GRANT_TYPES:
            raise ValueError(f"unknown grant type {grant!r}; expected one of {ALL_GRANT_TYPES}")
    needs_secret = any(m.startswith("client_secret") for m in methods)
    if client_secret is None and needs_secret:
        client_secret = secrets.token_urlsafe(24)
    if token_lifetime is not None and token_lifetime <= 0:
        raise ValueError("token_lifetime must be > 0")
    federated = tuple(federated_credentials)
    for pair in federated:
        if not (len(pair) == 2 and all(isinstance(part, str) and part for part in pair)):
            raise ValueError("federated_credentials must be (issuer, subject) pairs of strings")
    if federated and "private_key_jwt" not in methods:
        raise ValueError("federated_credentials need 'private_key_jwt' among the auth methods")
    return Client(
        client_id=client_id or f"client-{secrets.token_hex(6)}",
        client_secret=client_secret,
        auth_methods=methods,
        grant_types=grants,
        scopes=None if scopes is None else tuple(scopes),
        token_lifetime=token_lifetime,
        refresh_tokens=refresh_tokens,
        public_key=public_key,
        private_key=private_key,
        federated_credentials=federated,
    )


@dataclass(frozen=True)
class ClientRecord:
    """A client plus its parsed public key, as the request handlers need it."""

    client: Client
    key: PublicKey | None
    key_algorithms: tuple[str, ...]


@dataclass(frozen=True)
class IssuerRecord:
    """A trusted issuer of RFC 7523 authorization grant assertions."""

    issuer: str
    key: PublicKey
    algorithms: tuple[str, ...]


class Registry:
    """Clients, users and assertion issuers. Thread-safe (written by tests, read by the server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, ClientRecord] = {}
        self._users: dict[str, str] = {}
        self._issuers: dict[str, IssuerRecord] = {}

    def add_client(self, client: Client) -> None:
        key = None if client.public_key is None else load_public_key(client.public_key)
        algorithms = () if key is None else tuple(algorithms_for(key))
        with self._lock:
            if client.client_id in self._clients:
                raise ValueError(f"client {client.client_id!r} is already registered")
            self._clients[client.client_id] = ClientRecord(client, key, algorithms)
            if key is not None:
                # A client's own key also lets it act as an RFC 7523 assertion issuer (iss =
                # client_id), as in "the client asserts itself" deployments.
                self._issuers.setdefault(
                    client.client_id, IssuerRecord(client.client_id, key, algorithms)
                )

    def client(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    def clients(self) -> list[Client]:
        with self._lock:
            return [record.client for record in self._clients.values()]

    def add_user(self, username: str, password: str) -> None:
        with self._lock:
            self._users[username] = password

    def check_user(self, username: str, password: str) -> bool:
        expected = self._users.get(username)
        return expected is not None and secrets.compare_digest(expected.encode(), password.encode())

    def add_issuer(self, issuer: str, public_key: str) -> None:
        key = load_public_key(public_key)
        with self._lock:
            self._issuers[issuer] = IssuerRecord(issuer, key, tuple(algorithms_for(key)))

    def issuer(self, issuer: str) -> IssuerRecord | None:
        return self._issuers.get(issuer)
