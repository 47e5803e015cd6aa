"""Real third-party authorization servers on 127.0.0.1, for the interop tests.

Two peers, each a subprocess on a port the kernel picks:

* node ``oidc-provider`` 8.x (``tests/interop/oidc_provider/server.mjs``), started by
  :func:`running_oidc_provider`;
* ``django-oauth-toolkit`` in a minimal Django project (``tests/interop/django_project``),
  started by :func:`running_django_oauth_toolkit`.

Each yields a frozen description of the running server (:class:`OidcProviderPeer`,
:class:`DjangoOAuthToolkitPeer`) holding its endpoints, its registered clients with their
secrets or private keys, and its users. The pytest fixtures in ``conftest.py`` wrap these for
the session; use the functions directly only for a peer with another configuration (e.g. another
access-token lifetime).

A peer that cannot run on this machine (no ``node``, ``npm ci`` impossible, Django or
django-oauth-toolkit not importable) raises :class:`PeerUnavailable`: the fixtures turn that
into a skip, or into a failure under ``CI=true``. A peer that has what it needs but does not
come up raises :class:`PeerStartupError` with the tail of its log: always a failure.

Secrets (client secrets, passwords, private keys) are kept out of every ``repr()`` here, so a
failing assertion that prints a peer does not print them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, TypeAlias, TypeVar
from urllib.parse import parse_qs, quote_plus, urlencode, urljoin, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

INTEROP_DIR: Final = Path(__file__).resolve().parent
OIDC_PROVIDER_DIR: Final = INTEROP_DIR / "oidc_provider"
DJANGO_PROJECT_DIR: Final = INTEROP_DIR / "django_project"

#: Seconds a peer may take from spawn to answering HTTP; generous because CI machines are shared.
STARTUP_TIMEOUT: Final = float(os.environ.get("FRESHTOKEN_INTEROP_STARTUP_TIMEOUT", "60"))
#: Seconds ``npm ci`` may take when the fixture installs oidc-provider itself.
NPM_CI_TIMEOUT: Final = 300.0
#: The default access-token lifetime of both peers: short, so that tests see several expiries.
DEFAULT_ACCESS_TOKEN_TTL: Final = 3

PeerT = TypeVar("PeerT")
#: The private_key_jwt algorithms the peers' clients use.
Algorithm: TypeAlias = Literal["RS256", "ES256"]


class PeerUnavailable(Exception):
    """The peer cannot run on this machine (a prerequisite is missing); ``str()`` says which."""


class PeerStartupError(Exception):
    """The peer had its prerequisites but did not come up; ``str()`` carries its log tail."""


# --------------------------------------------------------------------------------------------
# What a test gets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A client's key pair for ``private_key_jwt`` (RFC 7523 §2.2), made fresh per session."""

    #: JWS algorithm the peer expects for this client's assertions: ``"RS256"`` or ``"ES256"``.
    algorithm: Algorithm
    #: The ``kid`` of the public key registered with the peer (put it in the assertion header).
    key_id: str
    #: The private key as unencrypted PKCS#8 PEM text (what ``ft.PrivateKeyJWT`` accepts).
    private_key_pem: str = field(repr=False)
    #: The public JWK registered with the peer (``kty``, ``kid``, ``alg``, ``use`` and the key).
    public_jwk: Mapping[str, str] = field(repr=False)

    @property
    def private_key(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        """The private key as a ``cryptography`` object (``ft.PrivateKeyJWT`` takes it too)."""
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return key

    @classmethod
    def generate(cls, algorithm: Algorithm, key_id: str) -> SigningKey:
        """A new RSA-2048 (``RS256``) or P-256 (``ES256``) key pair."""
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
            public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        else:
            raise ValueError(f"no key type for algorithm {algorithm!r}")
        public_jwk.update(kid=key_id, alg=algorithm, use="sig")
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(algorithm=algorithm, key_id=key_id, private_key_pem=pem, public_jwk=public_jwk)


@dataclass(frozen=True)
class PeerClient:
    """One client registered with a peer."""

    client_id: str
    #: The clear client secret (``None`` for public and ``private_key_jwt`` clients). Some hold
    #: ``:``, ``+``, ``%``, spaces (and, at django-oauth-toolkit, non-ASCII) on purpose: they
    #: only work when client_secret_basic form-encodes them as RFC 6749 §2.3.1 says.
    client_secret: str | None = field(repr=False)
    #: How the peer expects this client to authenticate at the token endpoint:
    #: ``"client_secret_basic"``, ``"client_secret_post"``, ``"private_key_jwt"`` or ``"none"``.
    auth_method: str
    #: The grant types the peer allows this client (RFC 6749 ``grant_type`` values).
    grant_types: tuple[str, ...]
    #: The key pair of a ``private_key_jwt`` client, else ``None``.
    signing_key: SigningKey | None = None
    #: The registered redirect URI of an authorization-code client (never dereferenced).
    redirect_uri: str | None = None


@dataclass(frozen=True)
class PeerUser:
    """A resource owner known to a peer (for the password grant and the dev login)."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class OidcProviderPeer:
    """A running node ``oidc-provider`` 8.x on 127.0.0.1.

    Every access token it issues is a JWT (RS256, signed with a key from ``jwks_uri``) with
    ``exp - iat == access_token_ttl`` and ``aud`` = the resource indicator it was issued for
    (``default_resource`` when the request names none). Refresh tokens rotate on every use;
    presenting a rotated-away one gives ``invalid_grant`` *and revokes the whole grant* (so the
    newest refresh token of that grant dies too): get a fresh one per test with
    :meth:`authorization_code_tokens`.
    """

    issuer: str
    token_endpoint: str
    authorization_endpoint: str
    jwks_uri: str
    revocation_endpoint: str
    introspection_endpoint: str
    #: Lifetime in seconds of every access token (``expires_in`` and ``exp - iat``).
    access_token_ttl: int
    #: The resource indicator (RFC 8707) used when a request names none; also the JWT ``aud``.
    default_resource: str
    #: A second resource server; request it with ``resource=`` to get a token with that ``aud``.
    other_resource: str
    #: Scopes each resource server defines (requested scopes outside these are dropped).
    resource_scopes: Mapping[str, str]
    #: client_credentials, ``client_secret_basic``; the secret holds ``:``, ``+``, ``%``, space.
    basic_client: PeerClient
    #: client_credentials, ``client_secret_post``.
    post_client: PeerClient
    #: client_credentials, ``private_key_jwt`` with an RS256 key.
    rs256_client: PeerClient
    #: client_credentials, ``private_key_jwt`` with an ES256 key.
    es256_client: PeerClient
    #: authorization_code + refresh_token, confidential (``client_secret_basic``), PKCE S256.
    code_client: PeerClient
    #: authorization_code + refresh_token, public (``none``), PKCE S256.
    public_code_client: PeerClient
    #: The account the dev login signs in (devInteractions does not check the password).
    user: PeerUser

    def authorization_code_tokens(
        self,
        client: PeerClient | None = None,
        *,
        scope: str = "openid offline_access api:read",
        resource: str | None = None,
    ) -> dict[str, Any]:
        """Run the authorization-code flow (PKCE S256) through the dev login and consent pages
        and return the token endpoint's JSON response: ``access_token``, ``refresh_token``
        (with ``offline_access`` in ``scope``), ``id_token`` (with ``openid``), ``expires_in``.

        ``client`` defaults to :attr:`code_client`; ``resource`` is sent with the authorization
        request (RFC 8707), else the provider grants ``default_resource``.
        """
        client = client or self.code_client
        if client.redirect_uri is None:
            raise ValueError(f"{client.client_id} is not an authorization-code client")
        verifier = secrets.token_urlsafe(48)
        challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
        state = secrets.token_urlsafe(16)
        query: dict[str, str] = {
            "client_id": client.client_id,
            "response_type": "code",
            "redirect_uri": client.redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "prompt": "consent",  # offline_access is granted only with a consent prompt
        }
        if resource is not None:
            query["resource"] = resource
        code = _drive_dev_interactions(
            f"{self.authorization_endpoint}?{urlencode(query)}",
            client.redirect_uri,
            state,
            self.user,
        )
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "code_verifier": verifier,
        }
        headers = {}
        if client.client_secret is None:
            form["client_id"] = client.client_id
        else:
            headers["Authorization"] = basic_authorization(client.client_id, client.client_secret)
        response = httpx.post(self.token_endpoint, data=form, headers=headers, timeout=10)
        if response.status_code != 200:
            raise AssertionError(f"code exchange failed: {response.status_code} {response.text}")
        tokens: dict[str, Any] = response.json()
        return tokens


@dataclass(frozen=True)
class DjangoOAuthToolkitPeer:
    """A running django-oauth-toolkit (DOT) on 127.0.0.1.

    Access tokens are opaque with ``expires_in == access_token_ttl``. Refresh tokens rotate
    (``ROTATE_REFRESH_TOKEN``, no grace period): a used one gives ``invalid_grant`` afterwards.
    DOT accepts client_secret_basic and client_secret_post for every confidential client.
    Errors, as DOT (oauthlib) sends them: a wrong secret ``invalid_client`` (401), a scope
    outside ``scopes`` ``invalid_scope`` (400), a grant the application does not allow
    ``unauthorized_client`` (400).
    """

    base_url: str
    token_endpoint: str
    revocation_endpoint: str
    #: Lifetime in seconds of every access token (``ACCESS_TOKEN_EXPIRE_SECONDS``).
    access_token_ttl: int
    #: The scopes DOT knows (``OAUTH2_PROVIDER["SCOPES"]``); all are granted by default.
    scopes: tuple[str, ...]
    #: A scope DOT does not know: requesting it gives ``invalid_scope``.
    unknown_scope: str
    #: client_credentials, confidential; the secret holds ``:``, ``+``, ``%``, space, non-ASCII.
    client_credentials_client: PeerClient
    #: password + refresh_token, confidential.
    password_client: PeerClient
    #: authorization_code (+ refresh_token) only: client_credentials gives unauthorized_client.
    code_only_client: PeerClient
    #: A user for the password grant.
    user: PeerUser


# --------------------------------------------------------------------------------------------
# Skip or fail, and the session's peers
# --------------------------------------------------------------------------------------------


def peer_unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; under CI (``CI=true``) fail with it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"interop peer unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"interop peer unavailable: {reason}")


class PeerPool:
    """Peers started on demand, one per (kind, lifetime), stopped together at session end.

    Startup errors are remembered, so a peer that cannot run costs one attempt per session,
    not one per test.
    """

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._stack = contextlib.ExitStack()
        self._peers: dict[tuple[str, int], object] = {}
        self._failures: dict[tuple[str, int], Exception] = {}

    def get(
        self,
        kind: str,
        ttl: int,
        start: Callable[[Path, int], contextlib.AbstractContextManager[PeerT]],
    ) -> PeerT:
        key = (kind, ttl)
        if key in self._failures:
            error = self._failures[key]
            if isinstance(error, PeerUnavailable):
                peer_unavailable(str(error))
            raise PeerStartupError(f"{kind} failed to start earlier in this session: {error}")
        if key not in self._peers:
            try:
                self._peers[key] = self._stack.enter_context(
                    start(self._workdir / f"{kind}-ttl{ttl}", ttl)
                )
            except Exception as error:
                self._failures[key] = error
                if not isinstance(error, PeerUnavailable):
                    raise
            if key in self._failures:  # outside the except block: no chained traceback
                peer_unavailable(str(self._failures[key]))
        peer: PeerT = self._peers[key]  # type: ignore[assignment]
        return peer

    def close(self) -> None:
        self._stack.close()


# --------------------------------------------------------------------------------------------
# Helpers a test may use
# --------------------------------------------------------------------------------------------


def basic_authorization(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` header value of client_secret_basic (RFC 6749 §2.3.1): id and
    secret each ``application/x-www-form-urlencoded`` before base64 (httpx's ``auth=(id,
    secret)`` does not do that, and the peers' secrets need it)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def client_assertion(client: PeerClient, audience: str, *, lifetime: int = 60) -> str:
    """A private_key_jwt client assertion (RFC 7523 §2.2) for ``client``, for plain-httpx
    harness tests: ``iss`` = ``sub`` = client id, ``aud`` = ``audience``, fresh ``jti``."""
    if client.signing_key is None:
        raise ValueError(f"{client.client_id} has no signing key")
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": audience,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(
        claims,
        client.signing_key.private_key_pem,
        algorithm=client.signing_key.algorithm,
        headers={"kid": client.signing_key.key_id},
    )


def unverified_claims(access_token: str) -> dict[str, Any]:
    """The claims of a JWT access token, without verifying it."""
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


# --------------------------------------------------------------------------------------------
# oidc-provider
# --------------------------------------------------------------------------------------------


def ensure_oidc_provider_installed() -> str:
    """Return the ``node`` binary, running ``npm ci`` first if ``node_modules`` is missing.

    Raises :class:`PeerUnavailable` when node is absent or the install cannot be done.
    """
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable("node is not installed (oidc-provider needs Node >= 18)")
    if (OIDC_PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return node
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable(
            "tests/interop/oidc_provider/node_modules is missing and npm is not installed "
            "(run scripts/interop-setup.sh)"
        )
    try:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=OIDC_PROVIDER_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(
            f"npm ci in {OIDC_PROVIDER_DIR} took over {NPM_CI_TIMEOUT} s"
        ) from None
    if result.returncode != 0:
        raise PeerUnavailable(
            f"npm ci in {OIDC_PROVIDER_DIR} failed ({result.returncode}): {_tail(result.stderr)}"
        )
    return node


@contextlib.contextmanager
def running_oidc_provider(
    workdir: Path, *, access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL
) -> Iterator[OidcProviderPeer]:
    """Start node oidc-provider in ``workdir`` (config and logs go there) and stop it on exit."""
    node = ensure_oidc_provider_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    default_resource = "https://api.interop.test"
    other_resource = "https://reports.interop.test"
    resource_scopes = {default_resource: "api:read api:write", other_resource: "reports:read"}
    redirect_uri = "https://client.interop.test/callback"
    rs256_key = SigningKey.generate("RS256", "interop-client-rs256")
    es256_key = SigningKey.generate("ES256", "interop-client-es256")
    cc = ("client_credentials",)
    code = ("authorization_code", "refresh_token")
    basic_client = PeerClient(
        "cc-basic", secrets.token_urlsafe(24) + ":+%/ ~", "client_secret_basic", cc
    )
    post_client = PeerClient("cc-post", secrets.token_urlsafe(24), "client_secret_post", cc)
    rs256_client = PeerClient("cc-jwt-rs256", None, "private_key_jwt", cc, rs256_key)
    es256_client = PeerClient("cc-jwt-es256", None, "private_key_jwt", cc, es256_key)
    code_client = PeerClient(
        "code-confidential",
        secrets.token_urlsafe(24),
        "client_secret_basic",
        code,
        redirect_uri=redirect_uri,
    )
    public_code_client = PeerClient("code-public", None, "none", code, redirect_uri=redirect_uri)
    user = PeerUser("alice", secrets.token_urlsafe(12))
    clients = [
        basic_client,
        post_client,
        rs256_client,
        es256_client,
        code_client,
        public_code_client,
    ]
    config = {
        "accessTokenTTL": access_token_ttl,
        "defaultResource": default_resource,
        "resources": {indicator: {"scope": scope} for indicator, scope in resource_scopes.items()},
        "users": {user.username: user.password},
        "clients": [_oidc_client_metadata(client) for client in clients],
    }
    config_path = workdir / "oidc-provider.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)
    with _subprocess(
        [node, "server.mjs", str(config_path)],
        cwd=OIDC_PROVIDER_DIR,
        env=dict(os.environ),
        workdir=workdir,
        name="oidc-provider",
    ) as ready:
        issuer = str(ready["issuer"])
        metadata = _wait_for_json(f"{issuer}/.well-known/openid-configuration", "oidc-provider")
        if metadata.get("issuer") != issuer:
            raise PeerStartupError(
                f"oidc-provider announced {issuer} but its metadata says {metadata.get('issuer')!r}"
            )
        yield OidcProviderPeer(
            issuer=issuer,
            token_endpoint=str(metadata["token_endpoint"]),
            authorization_endpoint=str(metadata["authorization_endpoint"]),
            jwks_uri=str(metadata["jwks_uri"]),
            revocation_endpoint=str(metadata["revocation_endpoint"]),
            introspection_endpoint=str(metadata["introspection_endpoint"]),
            access_token_ttl=access_token_ttl,
            default_resource=default_resource,
            other_resource=other_resource,
            resource_scopes=resource_scopes,
            basic_client=basic_client,
            post_client=post_client,
            rs256_client=rs256_client,
            es256_client=es256_client,
            code_client=code_client,
            public_code_client=public_code_client,
            user=user,
        )


def _oidc_client_metadata(client: PeerClient) -> dict[str, Any]:
    """oidc-provider client metadata (RFC 7591 names) for ``client``."""
    metadata: dict[str, Any] = {
        "client_id": client.client_id,
        "grant_types": list(client.grant_types),
        "token_endpoint_auth_method": client.auth_method,
        "redirect_uris": [client.redirect_uri] if client.redirect_uri else [],
        "response_types": ["code"] if client.redirect_uri else [],
    }
    if client.client_secret is not None:
        metadata["client_secret"] = client.client_secret
    if client.signing_key is not None:
        metadata["jwks"] = {"keys": [dict(client.signing_key.public_jwk)]}
        metadata["token_endpoint_auth_signing_alg"] = client.signing_key.algorithm
    return metadata


def _drive_dev_interactions(url: str, redirect_uri: str, state: str, user: PeerUser) -> str:
    """Follow oidc-provider's devInteractions like a browser: redirects, the login form, the
    consent form, until the redirect to ``redirect_uri``; return the authorization code."""
    login_form = {"prompt": "login", "login": user.username, "password": user.password}
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        response = browser.get(url)
        for _ in range(12):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if location.startswith(redirect_uri):
                    return _code_from_redirect(location, state)
                response = browser.get(location)
                continue
            if response.status_code != 200:
                raise AssertionError(
                    f"dev interaction failed: {response.status_code} {response.text[:500]}"
                )
            action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
            prompt = re.search(r'name="prompt" value="(\w+)"', response.text)
            if action is None or prompt is None:
                raise AssertionError(f"no interaction form in: {response.text[:500]}")
            target = urljoin(str(response.url), html.unescape(action.group(1)))
            form = login_form if prompt.group(1) == "login" else {"prompt": prompt.group(1)}
            response = browser.post(target, data=form)
    raise AssertionError("the dev interactions did not reach the redirect URI")


def _code_from_redirect(location: str, state: str) -> str:
    query = parse_qs(urlsplit(location).query)
    if "error" in query:
        raise AssertionError(f"authorization failed: {query}")
    if query.get("state") != [state]:
        raise AssertionError("authorization response state mismatch")
    return query["code"][0]


# --------------------------------------------------------------------------------------------
# django-oauth-toolkit
# --------------------------------------------------------------------------------------------


def ensure_django_oauth_toolkit_importable() -> None:
    """Raise :class:`PeerUnavailable` unless Django and django-oauth-toolkit import here (the
    server runs with this same interpreter)."""
    result = subprocess.run(
        [sys.executable, "-c", "import django, oauth2_provider"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise PeerUnavailable(
            f"Django / django-oauth-toolkit cannot be imported: {_tail(result.stderr)}"
        )


@contextlib.contextmanager
def running_django_oauth_toolkit(
    workdir: Path, *, access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL
) -> Iterator[DjangoOAuthToolkitPeer]:
    """Create a Django project database in ``workdir`` (sqlite), register the applications and
    the user, serve django-oauth-toolkit, and stop it on exit."""
    ensure_django_oauth_toolkit_importable()
    workdir.mkdir(parents=True, exist_ok=True)
    scopes = ("read", "write")
    client_credentials_client = PeerClient(
        "dot-cc",
        secrets.token_urlsafe(24) + ":+%/ é",
        "client_secret_basic",
        ("client_credentials",),
    )
    password_client = PeerClient(
        "dot-password",
        secrets.token_urlsafe(24),
        "client_secret_basic",
        ("password", "refresh_token"),
    )
    code_only_client = PeerClient(
        "dot-code-only",
        secrets.token_urlsafe(24),
        "client_secret_basic",
        ("authorization_code", "refresh_token"),
        redirect_uri="https://client.interop.test/callback",
    )
    user = PeerUser("alice", secrets.token_urlsafe(12))
    config = {
        "database": str(workdir / "db.sqlite3"),
        "secret_key": secrets.token_urlsafe(32),
        "access_token_ttl": access_token_ttl,
        "scopes": list(scopes),
        "users": [{"username": user.username, "password": user.password}],
        "applications": [
            {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "grant": grant,
                "redirect_uri": client.redirect_uri or "",
            }
            for client, grant in (
                (client_credentials_client, "client-credentials"),
                (password_client, "password"),
                (code_only_client, "authorization-code"),
            )
        ],
    }
    config_path = workdir / "django-oauth-toolkit.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)
    env = dict(os.environ)
    env["FRESHTOKEN_INTEROP_DOT_CONFIG"] = str(config_path)
    env["DJANGO_SETTINGS_MODULE"] = "django_project.settings"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(INTEROP_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    with _subprocess(
        [sys.executable, "-m", "django_project.serve"],
        cwd=INTEROP_DIR,
        env=env,
        workdir=workdir,
        name="django-oauth-toolkit",
    ) as ready:
        base_url = f"http://127.0.0.1:{int(ready['port'])}"
        token_endpoint = f"{base_url}/o/token/"
        _wait_for_http(token_endpoint, "django-oauth-toolkit")
        yield DjangoOAuthToolkitPeer(
            base_url=base_url,
            token_endpoint=token_endpoint,
            revocation_endpoint=f"{base_url}/o/revoke_token/",
            access_token_ttl=access_token_ttl,
            scopes=scopes,
            unknown_scope="admin",
            client_credentials_client=client_credentials_client,
            password_client=password_client,
            code_only_client=code_only_client,
            user=user,
        )


# --------------------------------------------------------------------------------------------
# Process handling
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _subprocess(
    argv: list[str], *, cwd: Path, env: dict[str, str], workdir: Path, name: str
) -> Iterator[dict[str, Any]]:
    """Run ``argv`` with stdout/stderr in files under ``workdir`` (no pipes to drain or leak),
    wait for its ``{"event": "ready", ...}`` line on stdout, yield that line, and on exit
    terminate it, wait, and kill it if it will not stop."""
    stdout_path = workdir / f"{name}.stdout.log"
    stderr_path = workdir / f"{name}.stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(  # the files are the child's now; ours close at once
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
    try:
        ready = _wait_for_ready_line(process, stdout_path, stderr_path, name)
        yield ready
    finally:
        _stop(process)


def _wait_for_ready_line(
    process: subprocess.Popen[bytes], stdout_path: Path, stderr_path: Path, name: str
) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        for line in stdout_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"ready"' in line:
                ready: dict[str, Any] = json.loads(line)
                return ready
        if process.poll() is not None:
            raise PeerStartupError(
                f"{name} exited with {process.returncode} before it was ready: "
                f"{_tail(stderr_path.read_text(errors='replace'))}"
            )
        time.sleep(0.05)
    raise PeerStartupError(
        f"{name} was not ready after {STARTUP_TIMEOUT} s: "
        f"{_tail(stderr_path.read_text(errors='replace'))}"
    )


def _wait_for_json(url: str, name: str) -> dict[str, Any]:
    response = _wait_for_http(url, name)
    document: dict[str, Any] = response.json()
    return document


def _wait_for_http(url: str, name: str) -> httpx.Response:
    """GET ``url`` until the server answers at all (any status), within the startup timeout."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError as error:
            if time.monotonic() >= deadline:
                raise PeerStartupError(f"{name} does not answer at {url}: {error!r}") from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
