"""The server's brain: routing, fault application, discovery/JWKS, and the control operations.

:class:`ServerCore` is what runs inside the HTTP server, in a thread of the test process or in a
subprocess. Its control methods (``add_client``, ``add_fault``, ``revoke``...) are called directly
by :class:`~freshtoken.testing.AuthorizationServer` in thread mode, and through the ``/_admin/``
endpoints (see :mod:`freshtoken.testing._process`) in process mode; both go through the same code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import jwt

from freshtoken._runtime.clock import SYSTEM_CLOCK, Clock
from freshtoken.testing._challenges import (
    METADATA_PATH,
    Demands,
    metadata_document,
    metadata_path,
)
from freshtoken.testing._clientauth import ClientAuthenticator, Form, claimed_client_id
from freshtoken.testing._counters import Counters, CounterSnapshot
from freshtoken.testing._dpop import DPOP_ALGORITHMS, DPoPVerifier
from freshtoken.testing._errors import NO_STORE_HEADERS, OAuthError, json_response
from freshtoken.testing._faults import Effect, Endpoint, Fault, FaultSchedule, FaultState
from freshtoken.testing._grants import TokenEndpoint, parse_form
from freshtoken.testing._http import Request, Response
from freshtoken.testing._keys import SigningAlgorithm, SigningKey, unverified_claims
from freshtoken.testing._registry import (
    ALL_AUTH_METHODS,
    ALL_GRANT_TYPES,
    Client,
    Registry,
)
from freshtoken.testing._resource import ResourceEndpoint
from freshtoken.testing._tokens import TokenStore, number

__all__ = ["ServerCore", "TOKEN_PATH", "JWKS_PATH", "RESOURCE_PATH", "REVOCATION_PATH"]

_log = logging.getLogger("freshtoken.testing")

TOKEN_PATH = "/token"
JWKS_PATH = "/jwks.json"
RESOURCE_PATH = "/api/resource"
REVOCATION_PATH = "/revoke"
_DISCOVERY_PATHS = frozenset(
    {"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"}
)
_ASSERTION_ALGORITHMS = ["HS256", "RS256", "PS256", "ES256", "EdDSA"]


class ServerCore:
    """Everything but the sockets."""

    def __init__(
        self,
        *,
        token_lifetime: float = 3600.0,
        signing_algorithm: SigningAlgorithm = "ES256",
        audience: str | None = None,
        integer_timestamps: bool = False,
        refresh_token_lifetime: float | None = None,
        refresh_reuse_grace: float = 0.0,
        dpop_nonce: bool = False,
        dpop_nonce_lifetime: float = 60.0,
        dpop_nonce_grace: float = 10.0,
        dpop_iat_window: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
        admin_key: str | None = None,
    ) -> None:
        if token_lifetime <= 0:
            raise ValueError("token_lifetime must be > 0")
        self.clock = clock
        self.dpop = DPoPVerifier(
            clock,
            iat_window=dpop_iat_window,
            nonce=dpop_nonce,
            nonce_lifetime=dpop_nonce_lifetime,
            nonce_grace=dpop_nonce_grace,
        )
        self.admin_key = admin_key
        self._configured_audience = audience
        self.registry = Registry()
        self.counters = Counters()
        self.faults = FaultSchedule()
        self.store = TokenStore(
            SigningKey(signing_algorithm),
            clock,
            integer_timestamps=integer_timestamps,
            refresh_token_lifetime=refresh_token_lifetime,
            refresh_reuse_grace=refresh_reuse_grace,
        )
        self.auth = ClientAuthenticator(self.registry, clock, self._assertion_audiences)
        self.tokens = TokenEndpoint(
            registry=self.registry,
            store=self.store,
            authenticator=self.auth,
            counters=self.counters,
            audiences=self._assertion_audiences,
            token_lifetime=token_lifetime,
            dpop=self.dpop,
            origin=lambda: self.issuer,
        )
        self.resource = ResourceEndpoint(self.store, self.counters, self.dpop)
        self.issuer = ""
        self._discovery = b""
        self._jwks = b""
        self._resource_metadata_path = ""
        self._resource_metadata = b""

    def bind(self, base_url: str) -> None:
        """Learn our own URL (known once the socket is bound): issuer, audience, documents."""
        self.issuer = base_url
        self.store.issuer = base_url
        self.store.audience = self._configured_audience or base_url
        methods = list(ALL_AUTH_METHODS)
        self._discovery = json.dumps(
            {
                "issuer": base_url,
                "token_endpoint": base_url + TOKEN_PATH,
                "jwks_uri": base_url + JWKS_PATH,
                "revocation_endpoint": base_url + REVOCATION_PATH,
                "grant_types_supported": list(ALL_GRANT_TYPES),
                "token_endpoint_auth_methods_supported": methods,
                "token_endpoint_auth_signing_alg_values_supported": _ASSERTION_ALGORITHMS,
                "revocation_endpoint_auth_methods_supported": methods,
                "response_types_supported": [],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [self.store.key.algorithm],
                "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
            }
        ).encode()
        self._jwks = json.dumps({"keys": [self.store.key.jwk]}).encode()
        # RFC 9728: the resource's identifier is the tokens' audience.
        path = metadata_path(self.store.audience, base_url) or METADATA_PATH
        self._resource_metadata_path = path
        self._resource_metadata = metadata_document(self.store.audience, base_url)
        self.resource.metadata_url = base_url + path

    def _assertion_audiences(self) -> tuple[str, ...]:
        return (self.issuer + TOKEN_PATH, self.issuer)

    # -- HTTP ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response | None:
        """Route one request, applying whatever faults are live for its endpoint."""
        path = request.path
        endpoint: Endpoint
        form: Form | None = None
        if path == TOKEN_PATH:
            endpoint = "token"
            form = self._count_token_request(request)
        elif path == "/api" or path.startswith("/api/"):
            endpoint = "resource"
            self.counters.resource_request()
        elif path == JWKS_PATH:
            endpoint = "jwks"
        elif path in _DISCOVERY_PATHS or path == self._resource_metadata_path:
            endpoint = "discovery"
        elif path == REVOCATION_PATH:
            endpoint = "revocation"
        elif path.startswith("/_admin/") and self.admin_key is not None:
            return self._admin(request)
        else:
            return self._dated(json_response(404, {"error": "not_found"}, []), 0.0)

        effect = self.faults.take(endpoint)
        if effect is None:
            return self._dated(self._dispatch(endpoint, request, form, 0.0), 0.0)
        if effect.latency > 0:
            await asyncio.sleep(effect.latency)
        fault = effect.response
        if fault is not None and fault.drop:
            return None
        if fault is not None and fault.lose_response:
            self._dispatch(endpoint, request, form, effect.clock_offset)
            return None
        if fault is not None:
            response = self._fault_response(fault, endpoint, effect)
        else:
            response = self._dispatch(endpoint, request, form, effect.clock_offset)
            if effect.content_type is not None:
                response.set_header("Content-Type", effect.content_type)
        response = self._dated(response, effect.clock_offset)
        response.drip = effect.drip
        return response

    def _count_token_request(self, request: Request) -> Form | None:
        try:
            form: Form | None = parse_form(request)
        except OAuthError:
            form = None
        grant = (form or {}).get("grant_type", [None])[0]
        self.counters.token_request(claimed_client_id(request, form or {}), grant)
        return form

    def _dispatch(
        self, endpoint: Endpoint, request: Request, form: Form | None, clock_offset: float
    ) -> Response:
        try:
            if endpoint == "token":
                return self.tokens.handle(request, form, clock_offset=clock_offset)
            if endpoint == "resource":
                return self.resource.handle(request)
            if endpoint == "revocation":
                return self._revocation(request)
            body = self._jwks if endpoint == "jwks" else self._discovery
            if request.path == self._resource_metadata_path:
                body = self._resource_metadata
            return Response(200, body, [("Content-Type", "application/json")])
        except Exception:  # a bug must surface as a 500, not a hung client
            _log.exception("freshtoken.testing server error on %s %s", request.method, request.path)
            return json_response(500, {"error": "server_error"})

    def _dated(self, response: Response, clock_offset: float) -> Response:
        response.headers.append(("Date", formatdate(self.clock.time() + clock_offset, usegmt=True)))
        return response

    def _fault_response(self, fault: Fault, endpoint: Endpoint, effect: Effect) -> Response:
        status = 200 if fault.status is None else fault.status
        headers: list[tuple[str, str]] = list(NO_STORE_HEADERS)
        if fault.body is not None:
            body = fault.body.encode()
            content_type = effect.content_type or "text/plain; charset=utf-8"
        else:
            error = _fault_error(status, endpoint)
            payload = (
                {}
                if error is None
                else {"error": error, "error_description": f"injected fault: HTTP {status}"}
            )
            body = json.dumps(payload).encode()
            content_type = effect.content_type or "application/json"
            if status == 401 and endpoint == "resource":
                headers.append(("WWW-Authenticate", 'Bearer error="invalid_token"'))
        headers.append(("Content-Type", content_type))
        if fault.retry_after is not None:
            headers.append(("Retry-After", self._retry_after(fault, effect.clock_offset)))
        return Response(status, body, headers)

    def _retry_after(self, fault: Fault, clock_offset: float) -> str:
        value = fault.retry_after
        if isinstance(value, str):
            return value
        assert value is not None
        if fault.retry_after_format == "http-date":
            return formatdate(self.clock.time() + clock_offset + value, usegmt=True)
        return str(number(value))

    def _revocation(self, request: Request) -> Response:
        """RFC 7009: revoke a token the authenticated client holds; 200 whatever the token."""
        try:
            if request.method != "POST":
                raise OAuthError(
                    "invalid_request", "POST only", status=405, headers=[("Allow", "POST")]
                )
            form = parse_form(request)
            client = self.auth.authenticate(request, form, required=True)
            assert client is not None
            token = (form.get("token") or [""])[0]
            if not token:
                raise OAuthError("invalid_request", "missing parameter token")
        except OAuthError as error:
            return error.response()
        if self._owner(token) == client.record.client.client_id:
            self.revoke(token)
        return Response(200, b"", list(NO_STORE_HEADERS))

    def _owner(self, token: str) -> str | None:
        refresh = self.store.refresh_owner(token)
        if refresh is not None:
            return refresh
        try:
            owner = unverified_claims(token).get("client_id")
        except jwt.InvalidTokenError:
            return None
        return owner if isinstance(owner, str) else None

    # -- control operations (direct in thread mode, via /_admin/ in process mode) ----------

    def add_client(self, client: Client) -> Client:
        self.registry.add_client(client)
        return client

    def clients(self) -> list[Client]:
        return self.registry.clients()

    def add_user(self, username: str, password: str) -> None:
        self.registry.add_user(username, password)

    def add_issuer(self, issuer: str, public_key: str) -> None:
        self.registry.add_issuer(issuer, public_key)

    def add_fault(
        self, fault: Fault, times: int | None, start: float, duration: float | None
    ) -> int:
        return self.faults.add(fault, times=times, start=start, duration=duration)

    def fault_state(self, fault_id: int) -> FaultState:
        return self.faults.state(fault_id)

    def cancel_fault(self, fault_id: int) -> bool:
        return self.faults.cancel(fault_id)

    def clear_faults(self) -> None:
        self.faults.clear()

    def issue_token(
        self,
        *,
        client_id: str | None = None,
        sub: str | None = None,
        lifetime: float | None = None,
        scope: str | None = None,
        audience: str | list[str] | None = None,
        clock_offset: float = 0.0,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """Mint an access token without HTTP (not counted as a token request)."""
        if client_id is None:
            known = self.registry.clients()
            client_id = known[0].client_id if known else "test-client"
        record = self.registry.client(client_id)
        if lifetime is None:
            lifetime = (
                record.client.token_lifetime
                if record is not None and record.client.token_lifetime is not None
                else self.tokens.token_lifetime
            )
        if scope is None and record is not None and record.client.scopes:
            scope = " ".join(record.client.scopes)
        token, _ = self.store.mint(
            client_id=client_id,
            sub=sub or client_id,
            lifetime=lifetime,
            scope=scope,
            audience=[audience] if isinstance(audience, str) else audience,
            clock_offset=clock_offset,
            extra=claims,
        )
        return token

    def demand(
        self, scope: str | None = None, acr_values: str | None = None, max_age: int | None = None
    ) -> None:
        """What the resource demands beyond a valid token (see ``testing._challenges``)."""
        self.resource.demands = Demands(scope, acr_values, max_age)

    def revoke(self, token: str) -> bool:
        """Revoke one access token (by its ``jti``) or one refresh token (and its family)."""
        if self.store.revoke_refresh(token):
            return True
        try:
            jti = unverified_claims(token).get("jti")
        except jwt.InvalidTokenError:
            return False
        return isinstance(jti, str) and self.store.revoke_access(jti)

    def revoke_client(self, client_id: str) -> None:
        self.store.revoke_client(client_id)

    def revoke_all(self) -> None:
        self.store.revoke_all()

    def counter_snapshot(self) -> CounterSnapshot:
        return self.counters.snapshot()

    def dpop_nonce(self) -> str | None:
        return self.dpop.current_nonce()

    def rotate_dpop_nonce(self) -> str:
        return self.dpop.rotate_nonce()

    def reset_counters(self) -> None:
        self.counters.reset()

    # -- admin endpoint (process mode) --------------------------------------------------

    def _admin(self, request: Request) -> Response:
        key = request.header("x-freshtoken-admin") or ""
        assert self.admin_key is not None
        if request.method != "POST" or not secrets.compare_digest(key, self.admin_key):
            return json_response(403, {"error": "forbidden"}, [])
        operation = request.path.removeprefix("/_admin/")
        try:
            arguments = json.loads(request.body or b"{}")
            result = self.control(operation, arguments)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response(400, {"error": type(exc).__name__, "message": str(exc)}, [])
        return json_response(200, {"result": result}, [])

    def control(self, operation: str, args: dict[str, Any]) -> Any:
        """Run control ``operation`` with JSON ``args``; return a JSON-ready result."""
        if operation == "add_client":
            return self.add_client(Client.from_dict(args["client"])).to_dict()
        if operation == "clients":
            return [client.to_dict() for client in self.clients()]
        if operation == "add_fault":
            fault = Fault(**args["fault"])
            return self.add_fault(
                fault, args.get("times"), args.get("start", 0.0), args.get("duration")
            )
        if operation == "fault_state":
            state = self.fault_state(int(args["id"]))
            return {
                "hits": state.hits,
                "remaining": state.remaining,
                "active": state.active,
                "finished": state.finished,
            }
        if operation == "counters":
            return self.counter_snapshot().to_dict()
        simple: dict[str, Callable[..., Any]] = {
            "add_user": self.add_user,
            "add_issuer": self.add_issuer,
            "cancel_fault": self.cancel_fault,
            "clear_faults": self.clear_faults,
            "demand": self.demand,
            "issue_token": self.issue_token,
            "revoke": self.revoke,
            "revoke_client": self.revoke_client,
            "revoke_all": self.revoke_all,
            "reset_counters": self.reset_counters,
            "dpop_nonce": self.dpop_nonce,
            "rotate_dpop_nonce": self.rotate_dpop_nonce,
        }
        function = simple.get(operation)
        if function is None:
            raise KeyError(f"unknown admin operation {operation!r}")
        return function(**args)


def _fault_error(status: int, endpoint: Endpoint) -> str | None:
    """The OAuth error code an injected status answers with (``None`` for a 2xx/3xx)."""
    if status in (429, 503):
        return "temporarily_unavailable"
    if status >= 500:
        return "server_error"
    if status == 401:
        return "invalid_token" if endpoint == "resource" else "invalid_client"
    if status == 403:
        return "insufficient_scope" if endpoint == "resource" else "access_denied"
    if status >= 400:
        return "invalid_request"
    return None
