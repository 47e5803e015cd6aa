"""``AuthorizationServer``: the public face of the test server, in a thread or a subprocess.

In thread mode (the default) the server's event loop runs in a daemon thread of the test process and
control calls (``add_client``, ``inject``, ``revoke``...) go straight to it. In process mode
(``process=True``) it runs in a child Python process, so that a benchmark's client and server do not
share a GIL, and the same calls travel over its ``/_admin/`` endpoints. Tests cannot tell the
difference except through speed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Literal, Protocol

from freshtoken._runtime.clock import SYSTEM_CLOCK, Clock
from freshtoken.testing._app import (
    JWKS_PATH,
    RESOURCE_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    ServerCore,
)
from freshtoken.testing._challenges import METADATA_PATH, metadata_path
from freshtoken.testing._counters import CounterSnapshot
from freshtoken.testing._faults import Fault, FaultHandle, FaultState, TargetSpec
from freshtoken.testing._http import HttpServer
from freshtoken.testing._keys import (
    PublicKeyInput,
    SigningAlgorithm,
    generate_client_key,
    load_public_key,
    public_key_pem,
)
from freshtoken.testing._registry import (
    DEFAULT_AUTH_METHODS,
    AuthMethod,
    Client,
    GrantType,
    make_client,
)

__all__ = ["AuthorizationServer", "FaultInjector"]


class _Backend(Protocol):
    """The control operations, implemented by ``ServerCore`` and by the subprocess proxy."""

    def add_client(self, client: Client) -> Client: ...
    def add_user(self, username: str, password: str) -> None: ...
    def add_issuer(self, issuer: str, public_key: str) -> None: ...
    def add_fault(
        self, fault: Fault, times: int | None, start: float, duration: float | None
    ) -> int: ...
    def fault_state(self, fault_id: int) -> FaultState: ...
    def cancel_fault(self, fault_id: int) -> bool: ...
    def clear_faults(self) -> None: ...
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
    ) -> str: ...
    def demand(
        self, scope: str | None = None, acr_values: str | None = None, max_age: int | None = None
    ) -> None: ...
    def revoke(self, token: str) -> bool: ...
    def revoke_client(self, client_id: str) -> None: ...
    def revoke_all(self) -> None: ...
    def counter_snapshot(self) -> CounterSnapshot: ...
    def reset_counters(self) -> None: ...
    def dpop_nonce(self) -> str | None: ...
    def rotate_dpop_nonce(self) -> str: ...


class FaultInjector:
    """``server.faults``: schedule, inspect and clear faults (see :class:`Fault`)."""

    def __init__(self, server: AuthorizationServer) -> None:
        self._server = server

    def add(
        self,
        fault: Fault,
        *,
        times: int | None = None,
        start: float = 0.0,
        duration: float | None = None,
    ) -> FaultHandle:
        """Apply ``fault`` to the next ``times`` matching requests (``None``: all of them), from
        ``start`` seconds from now, for ``duration`` seconds (``None``: until cleared)."""
        backend = self._server._backend()
        fault_id = backend.add_fault(fault, times, start, duration)
        return FaultHandle(fault_id, fault, backend)

    def clear(self) -> None:
        """Remove every scheduled fault."""
        self._server._backend().clear_faults()


class AuthorizationServer:
    """A real OAuth 2.0 authorization server and protected resource on ``127.0.0.1``.

    Use it as a context manager (or call :meth:`start` / :meth:`stop`)::

        with AuthorizationServer(token_lifetime=2.0) as server:
            client = server.add_client()
            ...  # point the code under test at server.token_url / server.resource_url

    ``token_lifetime`` (seconds, floats allowed) is announced as ``expires_in`` and encoded in
    ``exp``; ``clock`` (e.g. a :class:`~freshtoken.testing.FakeClock`) is the server's notion of
    wall time for ``iat``/``exp``/``Date`` and for bearer validation, so advancing a fake clock
    expires tokens without sleeping. ``refresh_reuse_grace`` (seconds) keeps a just-rotated refresh
    token usable for that long: presenting it again answers with the same new token pair its first
    use got, as Okta's and Auth0's grace windows do; after it, reuse revokes the family.
    ``process=True`` runs the server in a subprocess (no fake clock
    there).

    DPoP (RFC 9449) is always on: a token request with a valid ``DPoP`` proof gets a
    ``token_type: DPoP`` token bound to the proof's key (``cnf.jkt``), which the resource then
    accepts only as ``Authorization: DPoP`` with a proof from that key. ``dpop_nonce=True``
    requires server nonces in proofs (``use_dpop_nonce`` until the client sends the one in
    ``DPoP-Nonce``); a nonce is replaced every ``dpop_nonce_lifetime`` seconds of ``clock`` and
    stays accepted ``dpop_nonce_grace`` seconds more. ``dpop_iat_window``: how far (seconds,
    either way) a proof's ``iat`` may be from the server's clock.
    """

    def __init__(
        self,
        *,
        token_lifetime: float = 3600.0,
        port: int = 0,
        host: str = "127.0.0.1",
        signing_algorithm: SigningAlgorithm = "ES256",
        audience: str | None = None,
        integer_timestamps: bool = False,
        refresh_token_lifetime: float | None = None,
        refresh_reuse_grace: float = 0.0,
        dpop_nonce: bool = False,
        dpop_nonce_lifetime: float = 60.0,
        dpop_nonce_grace: float = 10.0,
        dpop_iat_window: float = 60.0,
        clock: Clock | None = None,
        process: bool = False,
        admin_key: str | None = None,
    ) -> None:
        if process and clock is not None:
            raise ValueError("a server subprocess cannot share a clock object; use process=False")
        self._config: dict[str, Any] = {
            "token_lifetime": token_lifetime,
            "signing_algorithm": signing_algorithm,
            "audience": audience,
            "integer_timestamps": integer_timestamps,
            "refresh_token_lifetime": refresh_token_lifetime,
            "refresh_reuse_grace": refresh_reuse_grace,
            "dpop_nonce": dpop_nonce,
            "dpop_nonce_lifetime": dpop_nonce_lifetime,
            "dpop_nonce_grace": dpop_nonce_grace,
            "dpop_iat_window": dpop_iat_window,
        }
        self._host = host
        self._requested_port = port
        self._process = process
        self._clock = clock or SYSTEM_CLOCK
        self._admin_key = admin_key
        self._lock = threading.Lock()
        self._clients: list[Client] = []
        self._core: ServerCore | None = None
        self._http: HttpServer | None = None
        self._remote: Any = None  # a _process.ServerProcess while running in process mode
        self._port = 0
        self.faults = FaultInjector(self)
        if not process:
            # Build the core eagerly so that bad settings fail in the constructor.
            self._core = ServerCore(clock=self._clock, admin_key=admin_key, **self._config)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> AuthorizationServer:
        """Start serving (returns ``self``); the port is known when this returns."""
        if self.running:
            raise RuntimeError("server already running")
        if self._process:
            from freshtoken.testing._process import ServerProcess

            remote = ServerProcess.spawn(
                host=self._host, port=self._requested_port, config=self._config
            )
            self._remote, self._port = remote, remote.port
            return self
        assert self._core is not None
        http = HttpServer(self._core.handle, host=self._host, port=self._requested_port)
        http.start()
        self._http, self._port = http, http.port
        self._core.bind(self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving: close every socket and join the server thread (or end the process)."""
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._remote is not None:
            self._remote.close()
            self._remote = None

    @property
    def running(self) -> bool:
        return self._http is not None or self._remote is not None

    def __enter__(self) -> AuthorizationServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        mode = "process" if self._process else "thread"
        return f"<AuthorizationServer {where} ({mode})>"

    def _backend(self) -> _Backend:
        if self._remote is not None:
            backend: _Backend = self._remote
            return backend
        if self._process:
            raise RuntimeError("the server process is not running; use start() or `with`")
        assert self._core is not None
        return self._core

    # -- addresses ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self.running:
            raise RuntimeError("the server is not running; use start() or `with`")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def issuer(self) -> str:
        """The ``iss`` of every token, and the discovery documents' ``issuer``."""
        return self.base_url

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def jwks_url(self) -> str:
        return self.base_url + JWKS_PATH

    @property
    def revocation_url(self) -> str:
        return self.base_url + REVOCATION_PATH

    @property
    def discovery_url(self) -> str:
        """RFC 8414 metadata (``/.well-known/openid-configuration`` is served too)."""
        return self.base_url + "/.well-known/oauth-authorization-server"

    @property
    def resource_url(self) -> str:
        """The protected resource (any method; any path under ``/api/`` behaves the same)."""
        return self.base_url + RESOURCE_PATH

    @property
    def audience(self) -> str:
        """The default ``aud`` of tokens, required by the resource endpoint."""
        configured: str | None = self._config["audience"]
        return configured or self.base_url

    # -- registration -------------------------------------------------------------------

    def add_client(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        auth_methods: AuthMethod | Iterable[AuthMethod] = DEFAULT_AUTH_METHODS,
        grant_types: Iterable[GrantType] | None = None,
        scopes: Iterable[str] | None = None,
        token_lifetime: float | None = None,
        refresh_tokens: bool = False,
        public_key: PublicKeyInput | None = None,
        federated_credentials: Iterable[tuple[str, str]] = (),
    ) -> Client:
        """Register a client and return it with its (generated unless given) credentials.

        ``auth_methods``: what the client may authenticate with (``client_secret_basic``,
        ``client_secret_post``, ``client_secret_jwt``, ``private_key_jwt``, ``none``).
        ``grant_types``: allowed grants (default: all). ``scopes``: allowed scopes (default: any;
        requests without ``scope`` get all of them). ``token_lifetime`` overrides the server's.
        ``refresh_tokens``: also issue refresh tokens for ``client_credentials``. ``public_key``
        (object, PEM or JWK) verifies ``private_key_jwt`` assertions and RFC 7523 grant assertions
        with ``iss`` = client id; when a ``private_key_jwt`` client has none, a P-256 key pair is
        generated and its private half returned as ``client.private_key``.
        ``federated_credentials``: ``(issuer, subject)`` pairs (Entra's federated identity
        credentials): a ``client_assertion`` whose ``iss`` is such an issuer (trusted with
        :meth:`add_issuer`) and whose ``sub`` is the paired subject authenticates the client, as
        a Kubernetes projected token does for Entra workload identity; it may be presented more
        than once until it expires.
        """
        methods = (auth_methods,) if isinstance(auth_methods, str) else tuple(auth_methods)
        private_pem: str | None = None
        public_pem: str | None = None
        if public_key is not None:
            public_pem = public_key_pem(load_public_key(public_key))
        elif "private_key_jwt" in methods:
            private_pem = generate_client_key()
            public_pem = public_key_pem(load_public_key(private_pem))
        client = make_client(
            client_id,
            client_secret,
            auth_methods=methods,
            grant_types=grant_types,
            scopes=scopes,
            token_lifetime=token_lifetime,
            refresh_tokens=refresh_tokens,
            public_key=public_pem,
            private_key=private_pem,
            federated_credentials=federated_credentials,
        )
        self._backend().add_client(client)
        with self._lock:
            self._clients.append(client)
        return client

    @property
    def clients(self) -> list[Client]:
        """The clients registered through this object, in order."""
        with self._lock:
            return list(self._clients)

    @property
    def client(self) -> Client:
        """The first registered client: the one the ``oauth_server`` pytest fixture adds."""
        with self._lock:
            if not self._clients:
                raise LookupError("no client registered yet; call add_client()")
            return self._clients[0]

    def add_user(self, username: str, password: str) -> None:
        """Register a resource owner for the ``password`` grant (``sub`` = username)."""
        self._backend().add_user(username, password)

    def add_issuer(self, issuer: str, public_key: PublicKeyInput) -> None:
        """Trust ``issuer`` to sign RFC 7523 ``jwt-bearer`` grant assertions with ``public_key``."""
        self._backend().add_issuer(issuer, public_key_pem(load_public_key(public_key)))

    # -- faults -------------------------------------------------------------------------

    def inject(
        self,
        fault: Fault | None = None,
        *,
        times: int | None = None,
        start: float = 0.0,
        duration: float | None = None,
        target: TargetSpec = "token",
        latency: float = 0.0,
        drip: float = 0.0,
        status: int | None = None,
        retry_after: float | str | None = None,
        retry_after_format: Literal["seconds", "http-date"] = "seconds",
        drop: bool = False,
        lose_response: bool = False,
        body: str | None = None,
        content_type: str | None = None,
        clock_offset: float = 0.0,
    ) -> FaultHandle:
        """Schedule a fault, given as a :class:`Fault` or by its fields.

        ``server.inject(status=503, times=3)``: the next three token requests get a 503.
        ``server.inject(latency=0.3)``: every later token request is 0.3 s late, until cleared.
        ``server.inject(status=503, start=1.0, duration=2.0, target="both")``: an outage of the
        token and resource endpoints from 1 s to 3 s from now (real time).
        """
        if fault is None:
            fault = Fault(
                target=target,
                latency=latency,
                drip=drip,
                status=status,
                retry_after=retry_after,
                retry_after_format=retry_after_format,
                drop=drop,
                lose_response=lose_response,
                body=body,
                content_type=content_type,
                clock_offset=clock_offset,
            )
        return self.faults.add(fault, times=times, start=start, duration=duration)

    def clear_faults(self) -> None:
        """Remove every scheduled fault."""
        self.faults.clear()

    # -- tokens -------------------------------------------------------------------------

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
        """Mint an access token directly (no HTTP, not counted as a token request).

        Defaults: the first client, ``sub`` = client id, the client's or server's lifetime, the
        client's scopes, the server's audience. ``clock_offset`` shifts ``iat``/``exp`` (a
        negative offset larger than the lifetime gives an already expired token); ``claims``
        adds or overrides claims.
        """
        return self._backend().issue_token(
            client_id=client_id,
            sub=sub,
            lifetime=lifetime,
            scope=scope,
            audience=audience,
            clock_offset=clock_offset,
            claims=claims,
        )

    def demand(
        self,
        *,
        scope: str | None = None,
        acr_values: str | None = None,
        max_age: int | None = None,
    ) -> None:
        """Make the resource refuse valid tokens that lack ``scope`` (403 ``insufficient_scope``
        naming it), or an ``acr`` claim among ``acr_values`` / an ``auth_time`` at most
        ``max_age`` seconds old (401 ``insufficient_user_authentication``, RFC 9470). Called
        without arguments, lifts every demand."""
        self._backend().demand(scope, acr_values, max_age)

    @property
    def resource_metadata_url(self) -> str:
        """The resource's RFC 9728 metadata (its identifier is :attr:`audience`)."""
        return self.base_url + (metadata_path(self.audience, self.base_url) or METADATA_PATH)

    def revoke(self, token: str) -> bool:
        """Revoke an access token, or a refresh token with its whole family; ``False`` if the
        token is not one of ours."""
        return self._backend().revoke(token)

    def revoke_client(self, client_id: str) -> None:
        """Revoke every token issued to ``client_id`` so far (later ones are valid)."""
        self._backend().revoke_client(client_id)

    def revoke_all(self) -> None:
        """Revoke every token issued so far (later ones are valid)."""
        self._backend().revoke_all()

    # -- counters -----------------------------------------------------------------------

    @property
    def counters(self) -> CounterSnapshot:
        """All counters at once, consistently."""
        return self._backend().counter_snapshot()

    @property
    def token_requests(self) -> int:
        """Requests that reached the token endpoint (injected faults and errors included)."""
        return self.counters.token_requests

    @property
    def token_requests_by_client(self) -> dict[str, int]:
        """Token requests per client id, as the request claimed it."""
        return self.counters.token_requests_by_client

    @property
    def token_requests_by_grant(self) -> dict[str, int]:
        return self.counters.token_requests_by_grant

    @property
    def tokens_issued(self) -> int:
        """Successful token responses."""
        return self.counters.tokens_issued

    @property
    def resource_requests(self) -> int:
        """Requests that reached ``/api/`` (faults included)."""
        return self.counters.resource_requests

    @property
    def unauthorized(self) -> dict[str, int]:
        """401s of the resource endpoint by reason: ``missing``, ``malformed``,
        ``bad_signature``, ``wrong_issuer``, ``wrong_audience``, ``expired``, ``revoked``, and
        for DPoP ``dpop_proof``, ``dpop_binding``, ``dpop_as_bearer``."""
        return self.counters.unauthorized

    @property
    def refresh_tokens_reused(self) -> int:
        """Refresh tokens presented again after they were rotated, outside the reuse grace
        window: each one is what reuse detection treats as theft."""
        return self.counters.refresh_tokens_reused

    @property
    def families_revoked(self) -> int:
        """Refresh-token families revoked by reuse detection (each family counted once)."""
        return self.counters.families_revoked

    @property
    def dpop_nonce_challenges(self) -> int:
        """DPoP proofs answered ``use_dpop_nonce`` (no nonce, or not a current one), at the
        token and resource endpoints: the first request of a client that learns nonces."""
        return self.counters.dpop_nonce_challenges

    @property
    def dpop_proofs_rejected(self) -> int:
        """DPoP proofs refused as ``invalid_dpop_proof`` at the token and resource endpoints
        (a DPoP-bound refresh token without a proof from its key included)."""
        return self.counters.dpop_proofs_rejected

    def reset_counters(self) -> None:
        self._backend().reset_counters()

    # -- DPoP ---------------------------------------------------------------------------

    @property
    def current_dpop_nonce(self) -> str | None:
        """The DPoP nonce the server hands out now; ``None`` unless ``dpop_nonce=True``."""
        return self._backend().dpop_nonce()

    def rotate_dpop_nonce(self) -> str:
        """Replace the DPoP nonce now and return the new one; the old one stays accepted for
        ``dpop_nonce_grace`` seconds (for testing a client that meets a rotation mid-flight)."""
        if not self._config["dpop_nonce"]:
            raise RuntimeError("DPoP nonces are off; start the server with dpop_nonce=True")
        return self._backend().rotate_dpop_nonce()
