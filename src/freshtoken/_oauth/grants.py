"""The OAuth 2.0 grants: token sources that ask an authorization server over HTTP.

Each grant is a value: its constructor checks the configuration (and raises
:class:`~freshtoken.ConfigurationError` for anything knowable then), and its fetch is one
sans-I/O generator flow — discovery, the token request, retries with their sleeps, the response
checks — pumped by the thin httpx drivers of ``_oauth/sender.py`` for ``fetch`` (threads) and
``afetch`` (asyncio). The grants differ only in the form fields they send and, for refresh-token
rotation, in what they remember from a response.

============================  ===========================================================
:class:`ClientCredentials`    RFC 6749 §4.4
:class:`RefreshTokenGrant`    RFC 6749 §6, rotating refresh tokens
:class:`PasswordGrant`        RFC 6749 §4.3, then its refresh token
:class:`JWTBearerGrant`       RFC 7523 §2.1
:class:`TokenExchange`        RFC 8693
============================  ===========================================================
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import ClassVar, TypedDict, Unpack
from urllib.parse import urlencode, urlsplit

from freshtoken._core.errors import (
    ConfigurationError,
    FreshTokenError,
    OAuthError,
    TokenRequestError,
    TokenResponseError,
)
from freshtoken._core.events import Event, describe_error
from freshtoken._core.jwt import unverified_claims
from freshtoken._core.token import Token, parse_token_response
from freshtoken._runtime.credential import NamedCredential
from freshtoken._runtime.forksafe import fork_safe_lock
from freshtoken._runtime.source import FetchContext, callable_name, check_key, unidentified_input

from .client_auth import AuthMethod, ClientAuth, resolve_auth
from .discovery import check_url
from .dpop import DPoPKey, DPoPPresenter
from .github_oidc import GitHubActionsOIDC
from .http import HttpRequest, HttpResponse, Reply, Step, safe_url
from .resource import Lookup, token_endpoint
from .response import describe_body, is_json, read_json, server_date
from .retry import DEFAULT_MAX_ATTEMPTS, exchange
from .sender import OwnClients, run_async, run_sync

__all__ = [
    "ClientCredentials",
    "JWTBearerGrant",
    "PasswordGrant",
    "RefreshTokenGrant",
    "TOKEN_TYPES",
    "TokenExchange",
]

Flow = Generator[Step, Reply, Token]
Fields = list[tuple[str, str]]
StringOrCallable = str | Callable[[], str]

#: RFC 8693 §3 token type identifiers, by their short names.
TOKEN_TYPES: Mapping[str, str] = {
    "access_token": "urn:ietf:params:oauth:token-type:access_token",
    "refresh_token": "urn:ietf:params:oauth:token-type:refresh_token",
    "id_token": "urn:ietf:params:oauth:token-type:id_token",
    "saml1": "urn:ietf:params:oauth:token-type:saml1",
    "saml2": "urn:ietf:params:oauth:token-type:saml2",
    "jwt": "urn:ietf:params:oauth:token-type:jwt",
}
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"

#: Form fields a grant sets itself: ``params=`` may not override them.
_RESERVED = frozenset(
    {
        "grant_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "scope",
        "audience",
        "resource",
        "refresh_token",
        "username",
        "password",
        "assertion",
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "requested_token_type",
    }
)

#: Form fields whose values are secrets: never repeated from a server's error description.
_SECRET_FIELDS = frozenset(
    {
        "actor_token",
        "assertion",
        "client_assertion",
        "client_secret",
        "code",
        "code_verifier",
        "password",
        "refresh_token",
        "subject_token",
    }
)


# -- argument checks ------------------------------------------------------------------------


def _scope(value: object) -> str | None:
    """A scope as RFC 6749 §3.3 sends it: space-separated scope-tokens (``%x21 / %x23-5B /
    %x5D-7E``), from a string or an iterable of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        items = value.split()
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = list(value)
        if not all(isinstance(item, str) for item in items):
            raise ConfigurationError("scope must be a string or an iterable of strings")
    else:
        raise ConfigurationError(
            f"scope must be a string or an iterable of strings, not {type(value).__name__}"
        )
    for item in items:
        if not item or not all(0x21 <= ord(ch) <= 0x7E and ch not in '"\\' for ch in item):
            raise ConfigurationError(
                "each scope must be a non-empty word of visible ASCII without quotes or "
                "backslashes (RFC 6749 §3.3)"
            )
    return " ".join(dict.fromkeys(items)) or None


def _strings(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items: list[object] = (
        [value]
        if isinstance(value, str)
        else list(value)
        if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping)
        else [value]
    )
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"{name} must be a non-empty string or a list of them")
    return tuple(str(item) for item in items)


#: RFC 3986 §3.1: ``scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )``.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _resource_problem(resource: str) -> str | None:
    """Why ``resource`` is not an absolute URI (RFC 3986 §4.3), or ``None`` when it is.

    RFC 8707 §2 asks for an absolute URI: a scheme and no fragment. A URN
    (``urn:example:api``) is one; a network location is not required."""
    scheme, colon, rest = resource.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return "is a relative reference: it needs a scheme such as https: or urn:"
    if not rest:
        return "has a scheme but nothing after it"
    if "#" in rest:
        return "has a fragment (#...), which RFC 8707 §2 forbids"
    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in resource):
        return "contains whitespace or a control character"
    return None


def _resources(value: object) -> tuple[str, ...]:
    resources = _strings(value, "resource")
    for index, resource in enumerate(resources):
        problem = _resource_problem(resource)
        if problem is not None:
            where = "resource" if len(resources) == 1 else f"resource[{index}]"
            raise ConfigurationError(
                f"{where} {problem}; it must be an absolute URI without a fragment "
                "(RFC 8707 §2, RFC 3986 §4.3)"
            )
    return resources


def _params(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigurationError("params must be a mapping of extra form parameters")
    result: list[tuple[str, str]] = []
    for name, item in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError("params names must be non-empty strings")
        if name in _RESERVED:
            raise ConfigurationError(
                f"params may not set {name!r}: the grant sets it (use its own argument)"
            )
        if not isinstance(item, str):
            raise ConfigurationError(f"params[{name!r}] must be a string")
        result.append((name, item))
    return tuple(result)


def _secret_text(value: object, name: str, *, callable_ok: bool = False) -> None:
    if isinstance(value, str) and value:
        return
    if callable_ok and callable(value):
        return
    kind = "a non-empty string or a callable returning one" if callable_ok else "a non-empty string"
    raise ConfigurationError(f"{name} must be {kind}")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


# -- the base --------------------------------------------------------------------------------


class GrantOptions(TypedDict, total=False):
    """The keyword arguments every grant takes besides its own (their meaning: the docstring of
    :class:`ClientCredentials`). One list, used by each grant's ``**options`` and checked by
    mypy at every call site."""

    issuer: str | None
    resource_metadata: str | None
    scope: str | Iterable[str] | None
    audience: str | Iterable[str] | None
    resource: str | Iterable[str] | None
    params: Mapping[str, str] | None
    auth: AuthMethod | None
    timeout: float | None
    max_attempts: int
    allow_insecure_http: bool
    key: str | None
    dpop: DPoPKey | None
    allow_dpop_downgrade: bool


class _HttpGrant:
    """What every HTTP grant shares: endpoint, client authentication, the request flow."""

    grant_type: ClassVar[str]
    _extra_token_types: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        token_url: str | None,
        client_id: str | None,
        client_secret: str | None,
        *,
        client_required: bool = True,
        **options: Unpack[GrantOptions],
    ) -> None:
        unknown = sorted(options.keys() - GrantOptions.__annotations__.keys())
        if unknown:  # as Python says it, but naming the grant the caller wrote
            raise TypeError(
                f"{type(self).__name__}() got an unexpected keyword argument {unknown[0]!r}"
            )
        issuer = options.get("issuer")
        scope = options.get("scope")
        audience = options.get("audience")
        resource = options.get("resource")
        params = options.get("params")
        auth = options.get("auth")
        timeout = options.get("timeout")
        max_attempts = options.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        allow_insecure_http = options.get("allow_insecure_http", False)
        key = options.get("key")
        dpop = options.get("dpop")
        allow_dpop_downgrade = options.get("allow_dpop_downgrade", False)
        if dpop is not None and not isinstance(dpop, DPoPKey):
            raise ConfigurationError(
                f"dpop must be a DPoPKey (DPoPKey.generate(), .from_pem(), .from_jwk()), not "
                f"{type(dpop).__name__}"
            )
        if not isinstance(allow_dpop_downgrade, bool):
            raise ConfigurationError("allow_dpop_downgrade must be True or False")
        if allow_dpop_downgrade and dpop is None:
            raise ConfigurationError("allow_dpop_downgrade=True needs dpop=DPoPKey(...)")
        if not isinstance(allow_insecure_http, bool):
            raise ConfigurationError("allow_insecure_http must be True or False")
        resource_metadata = options.get("resource_metadata")
        both = token_url is not None and issuer is not None
        if both or (token_url is None and issuer is None and resource_metadata is None):
            raise ConfigurationError(
                f"{type(self).__name__} needs exactly one of token_url and issuer "
                "(or resource_metadata, RFC 9728)"
            )
        if resource_metadata is not None:
            check_url(
                resource_metadata, "resource_metadata", allow_insecure_http=allow_insecure_http
            )
        if token_url is not None:
            check_url(token_url, "token_url", allow_insecure_http=allow_insecure_http)
        if issuer is not None:
            check_url(issuer, "issuer", allow_insecure_http=allow_insecure_http)
            if urlsplit(issuer).query:
                raise ConfigurationError("issuer must not have a query (RFC 8414 §2)")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ConfigurationError("timeout must be a positive number of seconds or None")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError("max_attempts must be an integer >= 1")
        self._token_url = token_url
        self._issuer = issuer
        self._resource_metadata = resource_metadata
        self._learned_resource: tuple[str, ...] = ()  # RFC 9728 ``resource``, once fetched
        self._client_id = client_id
        self._auth: ClientAuth = resolve_auth(
            auth, client_id, client_secret, required=client_required
        )
        self._scope = _scope(scope)
        self._audience = _strings(audience, "audience")
        self._resource = _resources(resource)
        self._params = _params(params)
        self._timeout = None if timeout is None else float(timeout)
        self._max_attempts = max_attempts
        self._allow_insecure_http = allow_insecure_http
        self._custom_key = check_key(key)
        self._dpop = dpop
        self._allow_dpop_downgrade = allow_dpop_downgrade
        self._clients = OwnClients()
        self._random = random.Random()
        self._lock = fork_safe_lock()

    # -- identity --------------------------------------------------------------------------

    def _identity(self) -> dict[str, object]:
        """What tells this token apart from others of the same endpoint (hashed into ``key``)."""
        return {}

    def _inputs(self) -> dict[str, StringOrCallable]:
        """The grant's inputs that may be callables, by parameter name (checked by
        ``unidentified``: a callable's name identifies only a plain module-level function)."""
        return {}

    @property
    def unidentified(self) -> str | None:
        """The first input callable the derived key cannot tell apart, or ``None`` (also when
        ``key=`` was given): see :func:`~freshtoken._runtime.source.require_identity`."""
        if self._custom_key is not None:
            return None
        if self._auth.unidentified is not None:
            return self._auth.unidentified
        for name, value in self._inputs().items():
            if isinstance(value, NamedCredential):
                continue  # named by its path
            problem = unidentified_input(f"{name} callable", value)
            if problem is not None:
                return problem
        return None

    @property
    def key(self) -> str:
        """``v1:<grant>:<hash>`` of every input of the token request (endpoint, grant, client,
        client-authentication method, scope, audience, resource, extra parameters and the
        grant's own inputs): the token's name in a shared store, so a record is shared only by
        managers that would send the same request. Secrets are not part of it in any
        recoverable form.

        With ``dpop=``, the key's thumbprint is part of it, also of a ``key=`` given (appended as
        ``#dpop:<thumbprint>``): a DPoP-bound token is of use only to the holders of its key, so
        processes share it only when they share the key."""
        if self._custom_key is not None:
            if self._dpop is not None:
                return f"{self._custom_key}#dpop:{self._dpop.thumbprint}"
            return self._custom_key
        material = {
            "endpoint": self._token_url or f"issuer:{self._issuer}",
            "grant_type": self.grant_type,
            "client_id": self._client_id,
            "auth": self._auth.name,
            "scope": self._scope,
            "audience": list(self._audience),
            "resource": list(self._resource),
            "params": [list(pair) for pair in self._params],
            **self._identity(),
        }
        if self._auth.identity is not None:
            material["client_assertion"] = self._auth.identity
        if self._dpop is not None:
            material["dpop_jkt"] = self._dpop.thumbprint
        if self._resource_metadata is not None:
            material["resource_metadata"] = self._resource_metadata
        blob = json.dumps(material, sort_keys=True, separators=(",", ":"))
        short = self.grant_type.rsplit(":", 1)[-1]
        return f"v1:{short}:{_digest(blob)[:32]}"

    def _repr_fields(self) -> list[str]:
        return []

    def __repr__(self) -> str:
        where = (
            f"token_url={safe_url(self._token_url)!r}"
            if self._token_url is not None
            else f"issuer={self._issuer!r}"
            if self._issuer is not None
            else f"resource_metadata={safe_url(str(self._resource_metadata))!r}"
        )
        fields = [where]
        if self._client_id is not None:
            fields.append(f"client_id={self._client_id!r}")
        fields.extend(self._repr_fields())
        if self._scope is not None:
            fields.append(f"scope={self._scope!r}")
        fields.append(f"auth={self._auth.name!r}")
        if self._dpop is not None:
            fields.append(f"dpop={self._dpop!r}")
        return f"{type(self).__name__}({', '.join(fields)})"

    # -- the TokenSource protocol ------------------------------------------------------------

    def _sends_refresh_token(self, ctx: FetchContext) -> bool:
        """Whether the next request from ``ctx`` sends a refresh token (rotating grants do)."""
        return False

    def fetch(self, ctx: FetchContext) -> Token:
        """Obtain a token, blocking this thread (through ``ctx.http`` when given)."""
        client = ctx.http if ctx.http is not None else self._clients.sync_client()
        return run_sync(self._flow(ctx), client)

    async def afetch(self, ctx: FetchContext) -> Token:
        """Obtain a token on the running loop (through ``ctx.async_http`` when given)."""
        client = ctx.async_http if ctx.async_http is not None else self._clients.async_client()
        return await run_async(self._flow(ctx), client)

    def close(self) -> None:
        """Close the HTTP clients this grant opened for itself (never the user's)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Like :meth:`close`, also awaiting the running loop's async client."""
        await self._clients.aclose()

    # -- the flow ----------------------------------------------------------------------------

    def _flow(self, ctx: FetchContext) -> Flow:
        token_url = self._token_url
        lookup = Lookup(
            self._allow_insecure_http,
            self._timeout,
            {
                "clock_time": ctx.clock.time,
                "clock_monotonic": ctx.clock.monotonic,
                "deadline": ctx.deadline,
                "policy": ctx.policy,
                "max_attempts": self._max_attempts,
                "draw": self._random.random,
            },
        )
        if self._resource_metadata is not None:
            token_url, resource = yield from token_endpoint(
                self._resource_metadata, lookup, issuer=self._issuer, token_url=token_url
            )
            self._learned_resource = (resource,)
        elif token_url is None:
            assert self._issuer is not None
            token_url = yield from lookup.discover(self._issuer)
        yield from self._prepare_credentials(ctx)
        return (yield from self._obtain(ctx, token_url))

    def _prepare_credentials(self, ctx: FetchContext) -> Generator[Step, Reply, None]:
        """Fetch, as part of this flow, the platform credentials the request will carry that
        come over HTTP (a GitHub Actions ID token), so building the request needs no I/O."""
        for value in (*self._inputs().values(), self._auth.source):
            if isinstance(value, GitHubActionsOIDC):
                yield from value.prepare(ctx)

    def _obtain(self, ctx: FetchContext, token_url: str) -> Flow:
        """The grant's conversation; most grants send one request (with retries)."""
        return (yield from self._request(ctx, token_url, self.grant_type, self._fields))

    def _fields(self) -> Fields:
        """The grant's own form fields for one request (called per request)."""
        raise NotImplementedError

    def _common_fields(self) -> Fields:
        fields: Fields = []
        if self._scope is not None:
            fields.append(("scope", self._scope))
        fields.extend(("audience", value) for value in self._audience)
        fields.extend(("resource", value) for value in self._resource or self._learned_resource)
        fields.extend(self._params)
        return fields

    def _request(
        self,
        ctx: FetchContext,
        token_url: str,
        grant_type: str,
        grant_fields: Callable[[], Fields],
        *,
        spends_credential: bool = False,
    ) -> Flow:
        """One token request, retried while the failure is transient; the parsed token.

        ``spends_credential``: the request uses up what it sends (see :func:`exchange`)."""

        sent: list[str] = []  # the last request's values, scrubbed from error descriptions
        dpop = self._dpop

        def build() -> HttpRequest:
            credentials = self._auth.credentials(token_url, ctx.clock.time())
            form = [("grant_type", grant_type), *grant_fields(), *self._common_fields()]
            form.extend(credentials.form)
            sent[:] = [value for name, value in form if name in _SECRET_FIELDS]
            sent.extend(self._auth.secrets())
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                **credentials.headers,
            }
            if dpop is not None:  # a fresh proof per attempt, with the newest nonce
                headers["DPoP"] = dpop.proof("POST", token_url, now=ctx.clock.time())
            return HttpRequest(
                "POST",
                token_url,
                headers,
                urlencode(form).encode("ascii"),
                timeout=self._timeout,
                max_time=ctx.request_cap,
            )

        done = yield from exchange(
            build,
            clock_time=ctx.clock.time,
            clock_monotonic=ctx.clock.monotonic,
            deadline=ctx.deadline,
            policy=ctx.policy,
            max_attempts=self._max_attempts,
            draw=self._random.random,
            spends_credential=spends_credential,
            urgent=ctx.urgent,
            dpop=dpop,
        )
        return self._bind(ctx, self._parse(ctx, done.response, done.sent_at, sent))

    def _bind(self, ctx: FetchContext, token: Token) -> Token:
        """A token from the endpoint, checked against the DPoP request: a DPoP token gets the
        key that signs its resource proofs; any other token type is refused (RFC 9449 §5: a
        client that asked for a bound token must not be handed a bearer one without knowing),
        unless ``allow_dpop_downgrade``."""
        dpop = self._dpop
        if dpop is None:
            return token
        if token.token_type != "DPoP":
            if self._allow_dpop_downgrade:
                return token
            raise TokenResponseError(
                f"a DPoP-bound token was asked for, but the token endpoint issued token_type "
                f"{token.token_type!r} (it may not support DPoP for this client); pass "
                "allow_dpop_downgrade=True to accept such a token",
                field="token_type",
            )
        claims = unverified_claims(token.access_token)
        cnf = claims.get("cnf") if claims is not None else None
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if jkt is not None and jkt != dpop.thumbprint:
            raise TokenResponseError(
                "the access token's cnf.jkt is not the thumbprint of this grant's DPoP key: the "
                "token is bound to another key and could not be presented",
                field="cnf",
            )
        return token._signed_by(DPoPPresenter(dpop, ctx.clock.time))

    def _adopt(self, token: Token, ctx: FetchContext) -> Token:
        """A token loaded from a shared store, given this grant's DPoP key again (the store holds
        no key; its key includes the thumbprint, so the token was bound to this very key)."""
        if self._dpop is None or token.token_type != "DPoP" or token._signer is not None:
            return token
        return token._signed_by(DPoPPresenter(self._dpop, ctx.clock.time))

    def _parse(
        self, ctx: FetchContext, response: HttpResponse, sent_at: float, sent: list[str]
    ) -> Token:
        status = response.status
        if 300 <= status < 400:
            raise TokenResponseError(
                f"the token endpoint answered HTTP {status} (a redirect); token requests never "
                "follow redirects: configure the final token endpoint URL",
                status=status,
            )
        if not is_json(response):
            raise TokenResponseError(
                f"the token endpoint answered HTTP {status} with {describe_body(response)}, "
                "not a JSON token response (RFC 6749 §5.1)",
                status=status,
            )
        data = read_json(response)
        if not 200 <= status < 300 and not (isinstance(data, dict) and "error" in data):
            raise TokenResponseError(
                f"the token endpoint answered HTTP {status} without an OAuth error code",
                status=status,
            )
        parsed = parse_token_response(
            data,
            now=sent_at,
            status=status,
            server_date=server_date(response),
            extra_token_types=self._extra_token_types,
            sent=sent,
        )
        return ctx.note_skew(parsed)


def _call(value: StringOrCallable, name: str) -> str:
    """``value``, or what calling it returns (a non-empty string, else TokenRequestError)."""
    if isinstance(value, str):
        return value
    try:
        result = value()
    except FreshTokenError:
        raise
    except Exception as error:
        raise TokenRequestError(
            f"the {name} callable {callable_name(value)} raised {describe_error(error)}"
        ) from error
    if not isinstance(result, str) or not result:
        raise TokenRequestError(
            f"the {name} callable {callable_name(value)} returned {type(result).__name__}, "
            "not a non-empty string"
        )
    return result


def _identity_of(value: StringOrCallable) -> str:
    if isinstance(value, NamedCredential):
        return value.key
    return f"callable:{callable_name(value)}" if callable(value) else f"sha256:{_digest(value)}"


# -- the grants --------------------------------------------------------------------------------


class ClientCredentials(_HttpGrant):
    """RFC 6749 §4.4: the client asks for a token for itself.

    ``ClientCredentials(token_url, client_id, client_secret=None, *, issuer=None, scope=None,
    audience=None, resource=None, params=None, auth="client_secret_basic", timeout=None,
    max_attempts=3, allow_insecure_http=False, key=None)``

    ``scope``: a space-separated string or an iterable of strings. ``audience`` and ``resource``
    (RFC 8707): a string or a list, each sent as a repeated parameter. ``params``: extra form
    fields. ``timeout``: seconds per connect/read/write (default: the client's; freshtoken's own
    clients use 5 s to connect, 10 s otherwise). ``max_attempts``: requests per fetch when the
    endpoint fails transiently. ``key``: the token's name in a shared store (default: derived).
    """

    grant_type = "client_credentials"

    def __init__(
        self,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        **options: Unpack[GrantOptions],
    ) -> None:
        super().__init__(token_url, client_id, client_secret, **options)

    def _fields(self) -> Fields:
        return []


class _RotatingGrant(_HttpGrant):
    """A grant that holds a refresh token and keeps the newest one (rotation, RFC 6749 §6)."""

    _refresh_token: str | None

    def _newest_refresh_token(self, ctx: FetchContext) -> str | None:
        """The manager's latest token carries the newest refresh token (a shared store may hold
        one rotated by another process); else the one this grant last saw."""
        if ctx.current is not None and ctx.current.refresh_token is not None:
            return ctx.current.refresh_token
        with self._lock:
            return self._refresh_token

    def _sends_refresh_token(self, ctx: FetchContext) -> bool:
        return self._newest_refresh_token(ctx) is not None

    def _refresh(self, ctx: FetchContext, token_url: str, refresh_token: str) -> Flow:
        def fields() -> Fields:
            return [("refresh_token", refresh_token)]

        try:
            token = yield from self._request(
                ctx, token_url, "refresh_token", fields, spends_credential=True
            )
        except OAuthError as error:
            if error.error != "invalid_grant":
                raise
            raise self._refresh_refused(ctx, error) from None
        if token.refresh_token is None:
            # RFC 6749 §6: no new refresh token means the old one stays valid; keep it with the
            # token so that the store holds it and the next refresh finds it.
            token = token.replace(refresh_token=refresh_token)
        self._remember(token.refresh_token)
        return token

    def _remember(self, refresh_token: str | None) -> None:
        with self._lock:
            self._refresh_token = refresh_token

    def _refresh_refused(self, ctx: FetchContext, error: OAuthError) -> OAuthError:
        """``invalid_grant`` to a refresh: the refresh token is spent, expired or revoked (a
        family revoked after a reuse), which no retry mends; say so, and report it."""
        refused = OAuthError(
            error.error,
            error.description,
            error.uri,
            error.status,
            hint="the refresh token is spent, expired or revoked, and only a new sign-in can "
            "replace it",
        )
        ctx.emit(Event("refresh_token_refused", ctx.key, error=describe_error(refused)))
        return refused


class RefreshTokenGrant(_RotatingGrant):
    """RFC 6749 §6: tokens from a refresh token, which the server may rotate.

    ``RefreshTokenGrant(token_url, refresh_token, client_id, client_secret=None, ...)``, other
    arguments as :class:`ClientCredentials` (``auth="none"`` for public clients). A rotated
    refresh token replaces the old one; a response without one keeps the old one. The token handed
    out carries the refresh token that is valid now, so a shared store saves it with the token.
    """

    grant_type = "refresh_token"

    def __init__(
        self,
        token_url: str | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        **options: Unpack[GrantOptions],
    ) -> None:
        _secret_text(refresh_token, "refresh_token")
        assert refresh_token is not None
        self._initial_refresh_token = refresh_token
        self._refresh_token = refresh_token
        super().__init__(token_url, client_id, client_secret, **options)

    def _identity(self) -> dict[str, object]:
        return {"refresh_token": _identity_of(self._initial_refresh_token)}

    def _obtain(self, ctx: FetchContext, token_url: str) -> Flow:
        refresh_token = self._newest_refresh_token(ctx)
        assert refresh_token is not None
        return (yield from self._refresh(ctx, token_url, refresh_token))


class PasswordGrant(_RotatingGrant):
    """RFC 6749 §4.3 (legacy; for APIs that still need it): tokens from a username and password.

    ``PasswordGrant(token_url, username, password, client_id, client_secret=None, ...)``, other
    arguments as :class:`ClientCredentials`. When a response carries a refresh token, later tokens
    come from it (rotation as :class:`RefreshTokenGrant`), and from the password again only when
    the server refuses the refresh token (``invalid_grant``).
    """

    grant_type = "password"

    def __init__(
        self,
        token_url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        **options: Unpack[GrantOptions],
    ) -> None:
        _secret_text(username, "username")
        _secret_text(password, "password")
        assert username is not None
        assert password is not None
        self.username = username
        self._password = password
        self._refresh_token = None
        super().__init__(token_url, client_id, client_secret, **options)

    def _identity(self) -> dict[str, object]:
        return {"username": self.username}

    def _repr_fields(self) -> list[str]:
        return [f"username={self.username!r}"]

    def _fields(self) -> Fields:
        return [("username", self.username), ("password", self._password)]

    def _obtain(self, ctx: FetchContext, token_url: str) -> Flow:
        refresh_token = self._newest_refresh_token(ctx)
        if refresh_token is not None:
            try:
                return (yield from self._refresh(ctx, token_url, refresh_token))
            except OAuthError as error:
                if error.error != "invalid_grant":
                    raise
            self._remember(None)  # refused: back to the password, once
        token = yield from self._request(ctx, token_url, self.grant_type, self._fields)
        self._remember(token.refresh_token)
        return token


class JWTBearerGrant(_HttpGrant):
    """RFC 7523 §2.1: a signed JWT assertion (from an identity provider, or self-signed) as the
    authorization grant.

    ``JWTBearerGrant(token_url, assertion, client_id=None, client_secret=None, ...)``:
    ``assertion`` is a string or a callable returning one, called for each request (assertions
    are short-lived and often single-use). Client authentication is optional (RFC 7523 §3.1):
    without ``client_id`` none is sent.
    """

    grant_type = JWT_BEARER

    def __init__(
        self,
        token_url: str | None = None,
        assertion: StringOrCallable | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        **options: Unpack[GrantOptions],
    ) -> None:
        _secret_text(assertion, "assertion", callable_ok=True)
        assert assertion is not None
        self._assertion = assertion
        super().__init__(token_url, client_id, client_secret, client_required=False, **options)

    def _identity(self) -> dict[str, object]:
        return {"assertion": _identity_of(self._assertion)}

    def _inputs(self) -> dict[str, StringOrCallable]:
        return {"assertion": self._assertion}

    def _fields(self) -> Fields:
        return [("assertion", _call(self._assertion, "assertion"))]


class TokenExchange(_HttpGrant):
    """RFC 8693: exchange a token (``subject_token``) for another one.

    ``TokenExchange(token_url, subject_token, subject_token_type, client_id=None,
    client_secret=None, *, actor_token=None, actor_token_type=None, requested_token_type=None,
    audience=None, resource=None, scope=None, ...)``. Tokens may be strings or callables (called
    per request); token types are RFC 8693 URNs or their short names (``"access_token"``,
    ``"jwt"``, ``"id_token"``, ``"refresh_token"``, ``"saml1"``, ``"saml2"``). The response's
    ``issued_token_type`` is kept in ``token.extra``; ``token_type`` ``N_A`` is accepted (the
    issued token is not an access token; it is then presented as ``N_A``).
    """

    grant_type = TOKEN_EXCHANGE
    _extra_token_types = frozenset({"N_A"})

    def __init__(
        self,
        token_url: str | None = None,
        subject_token: StringOrCallable | None = None,
        subject_token_type: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        actor_token: StringOrCallable | None = None,
        actor_token_type: str | None = None,
        requested_token_type: str | None = None,
        **options: Unpack[GrantOptions],
    ) -> None:
        _secret_text(subject_token, "subject_token", callable_ok=True)
        assert subject_token is not None
        self._subject_token = subject_token
        self._subject_token_type = _token_type(subject_token_type, "subject_token_type")
        if actor_token is not None:
            _secret_text(actor_token, "actor_token", callable_ok=True)
            self._actor_token_type: str | None = _token_type(actor_token_type, "actor_token_type")
        elif actor_token_type is not None:
            raise ConfigurationError("actor_token_type without actor_token")
        else:
            self._actor_token_type = None
        self._actor_token = actor_token
        self._requested_token_type = (
            None
            if requested_token_type is None
            else _token_type(requested_token_type, "requested_token_type")
        )
        super().__init__(token_url, client_id, client_secret, client_required=False, **options)

    def _identity(self) -> dict[str, object]:
        return {
            "subject_token": _identity_of(self._subject_token),
            "subject_token_type": self._subject_token_type,
            "actor_token": None if self._actor_token is None else _identity_of(self._actor_token),
            "requested_token_type": self._requested_token_type,
        }

    def _inputs(self) -> dict[str, StringOrCallable]:
        inputs = {"subject_token": self._subject_token}
        if self._actor_token is not None:
            inputs["actor_token"] = self._actor_token
        return inputs

    def _fields(self) -> Fields:
        fields: Fields = [
            ("subject_token", _call(self._subject_token, "subject_token")),
            ("subject_token_type", self._subject_token_type),
        ]
        if self._actor_token is not None:
            assert self._actor_token_type is not None
            fields.append(("actor_token", _call(self._actor_token, "actor_token")))
            fields.append(("actor_token_type", self._actor_token_type))
        if self._requested_token_type is not None:
            fields.append(("requested_token_type", self._requested_token_type))
        return fields


def _token_type(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a token type URN or short name")
    full = TOKEN_TYPES.get(value, value)
    if ":" not in full:
        raise ConfigurationError(
            f"{name} must be a URN such as urn:ietf:params:oauth:token-type:access_token, or one "
            f"of {', '.join(TOKEN_TYPES)}"
        )
    return full
