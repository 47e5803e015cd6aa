"""gRPC integration: call credentials for any channel, and interceptors that recover from
``UNAUTHENTICATED``.

::

    import grpc
    from freshtoken.grpc import call_credentials, interceptor

    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(), call_credentials(tokens)
    )
    channel = grpc.secure_channel("api.example.com:443", credentials)
    channel = grpc.intercept_channel(channel, interceptor(tokens))  # optional: retry once

:func:`call_credentials` puts ``authorization: Bearer …`` on every call of a sync or ``grpc.aio``
channel. grpcio runs the plugin on a thread of its own, so a fresh token costs one lock-free look
(``manager._fresh()``) and a token request blocks only the calls that have no usable token.

:func:`interceptor` (sync channels) and :func:`aio_interceptor` (``grpc.aio``) present the token
themselves, so that they know which token a refusal was for: on ``UNAUTHENTICATED`` they invalidate
that token (compare-and-invalidate: a hundred refusals of one token cause one token request) and
retry the unary call once with a new one. The decisions are those of the HTTP integrations
(:func:`freshtoken._http_auth.authflow.recover`); gRPC's ``UNAUTHENTICATED`` is HTTP's 401 (the gRPC
status mapping of HTTP/2 responses says so). Use either the credentials or an interceptor on a
channel, not both: both would send the header twice.

grpcio sends call credentials only over secure channels (TLS or ``local_channel_credentials``);
the interceptors cannot see the channel, so put them on a secure channel too.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable
from typing import Any

try:
    import grpc
    import grpc.aio
except ImportError as exc:  # pragma: no branch - which branch runs depends on the install
    raise ImportError("freshtoken.grpc needs grpcio: pip install 'freshtoken[grpc]'") from exc

from ._core.errors import ConfigurationError
from ._core.token import Token
from ._http_auth.authflow import Attempt, Flow, Send, present, recover, token_async, token_sync
from ._runtime.manager import TokenManager

__all__ = ["aio_interceptor", "call_credentials", "interceptor"]

#: Every gRPC call is an HTTP/2 POST; ``present`` takes the method for DPoP proofs to come.
_METHOD = "POST"
_Metadata = tuple[tuple[str, str], ...]


def _need_manager(manager: object, what: str) -> TokenManager:
    if not isinstance(manager, TokenManager):
        raise ConfigurationError(
            f"{what} needs a freshtoken.TokenManager, got {type(manager).__name__}"
        )
    return manager


def _metadata(token: Token, method: str) -> dict[str, str]:
    """The metadata that presents ``token`` (gRPC metadata keys are lower-case)."""
    return {name.lower(): value for name, value in present(token, _METHOD, method).items()}


class _Presented:
    """The metadata of the last token presented, kept so that a fresh token costs no new tuple."""

    __slots__ = ("metadata", "token")

    def __init__(self, token: Token | None, metadata: _Metadata) -> None:
        self.token = token
        self.metadata = metadata


class _Plugin(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    """Answers grpcio's metadata requests with the manager's token."""

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager
        self._fresh = manager._fresh  # bound once: this runs on every call
        self._last = _Presented(None, ())

    def __call__(
        self,
        context: grpc.AuthMetadataContext,
        callback: grpc.AuthMetadataPluginCallback,
    ) -> None:
        last = self._last
        token = self._fresh()
        if token is not None and token is last.token:
            callback(last.metadata, None)
            return
        try:
            token = token or token_sync(self._manager)
            last = _Presented(token, tuple(_metadata(token, context.method_name).items()))
            self._last = last
        except Exception as exc:  # grpcio fails the call with it (status UNAVAILABLE)
            callback(None, exc)
            return
        callback(last.metadata, None)


def call_credentials(manager: TokenManager) -> grpc.CallCredentials:
    """Call credentials presenting ``manager``'s token on every call (sync and aio channels)."""
    plugin = _Plugin(_need_manager(manager, "call_credentials"))
    return grpc.metadata_call_credentials(plugin, name="freshtoken")


# -- interceptors ----------------------------------------------------------------------------


class _Refusal:
    """What :func:`recover` asks about a refused call (see ``_http_auth.authflow.Outcome``)."""

    __slots__ = ("_sent", "status")

    def __init__(self, code: grpc.StatusCode | None, sent: str) -> None:
        self.status = 401 if code == grpc.StatusCode.UNAUTHENTICATED else 200
        self._sent = sent

    def www_authenticate(self) -> str | None:
        return None

    def sent_authorization(self) -> str | None:
        return self._sent

    def body_replayable(self) -> bool:
        return True  # a unary request is a message held in memory

    def discard(self) -> None:
        """A finished unary call holds nothing to release."""


_CallDetails = collections.namedtuple(
    "_CallDetails",
    ["method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"],
)


class _SyncDetails(_CallDetails, grpc.ClientCallDetails):  # type: ignore[misc]
    """``grpc.ClientCallDetails`` is an abstract class with no constructor of its own."""


def _with_token(metadata: Any, headers: dict[str, str]) -> list[tuple[str, str | bytes]]:
    """The call's metadata without any ``authorization`` of its own, plus ``headers``."""
    names = {name.lower() for name in headers}
    kept = [(k, v) for k, v in (metadata or ()) if k.lower() not in names]
    return kept + [(name.lower(), value) for name, value in headers.items()]


def _attempt(method: str | bytes, token: Token) -> Attempt:
    """The call about to go out (``grpc.aio`` names its method in bytes). ``Attempt`` wants an
    origin for its log lines; a gRPC call names its method instead (``grpc:///pkg.Svc/M:0``)."""
    if isinstance(method, bytes):
        method = method.decode("ascii", "replace")
    return Attempt(("grpc", method, 0), _METHOD, method, token, present(token, _METHOD, method))


def _replay_headers(flow: Flow, token: Token) -> dict[str, str] | None:
    """Feed ``token`` to the flow waiting for one: the metadata to retry with, or ``None``."""
    try:
        step = flow.send(token)
    except StopIteration:
        return None
    assert isinstance(step, Send)
    assert step.headers is not None
    return step.headers


def _refusal_flow(manager: TokenManager, attempt: Attempt, code: grpc.StatusCode) -> Flow:
    """The recovery flow for a call refused with ``code``, started: it has invalidated the
    refused token and waits for a new one (a refusal of a unary call, whose request is held in
    memory, always gets that far)."""
    flow = recover(manager, attempt, _Refusal(code, attempt.headers["Authorization"]))
    next(flow)
    return flow


class _Interceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Presents the token on unary calls of a sync channel; retries once after a refusal."""

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        manager = self._manager
        attempt = _attempt(details.method, token_sync(manager))
        call = continuation(self._details(details, attempt.headers), request)
        code = call.code()
        if code != grpc.StatusCode.UNAUTHENTICATED:
            return call
        flow = _refusal_flow(manager, attempt, code)
        headers = _replay_headers(flow, token_sync(manager))
        if headers is None:
            return call
        retry = continuation(self._details(details, headers), request)
        with contextlib.suppress(StopIteration):
            flow.send(_Refusal(retry.code(), headers["Authorization"]))
        return retry

    @staticmethod
    def _details(details: Any, headers: dict[str, str]) -> _SyncDetails:
        return _SyncDetails(
            details.method,
            details.timeout,
            _with_token(details.metadata, headers),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )


class _AioInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """The same as :class:`_Interceptor`, for ``grpc.aio`` channels."""

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager

    async def _token(self) -> Token:
        return self._manager._fresh() or await token_async(self._manager)

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        manager = self._manager
        attempt = _attempt(details.method, await self._token())
        call = await continuation(self._details(details, attempt.headers), request)
        code = await call.code()
        if code != grpc.StatusCode.UNAUTHENTICATED:
            return call
        flow = _refusal_flow(manager, attempt, code)
        headers = _replay_headers(flow, await self._token())
        if headers is None:
            return call
        retry = await continuation(self._details(details, headers), request)
        with contextlib.suppress(StopIteration):
            flow.send(_Refusal(await retry.code(), headers["Authorization"]))
        return retry

    @staticmethod
    def _details(details: Any, headers: dict[str, str]) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            grpc.aio.Metadata(*_with_token(details.metadata, headers)),
            details.credentials,
            details.wait_for_ready,
        )


def interceptor(manager: TokenManager) -> grpc.UnaryUnaryClientInterceptor:
    """A unary-unary client interceptor for sync channels (``grpc.intercept_channel``)."""
    return _Interceptor(_need_manager(manager, "interceptor"))


def aio_interceptor(manager: TokenManager) -> grpc.aio.UnaryUnaryClientInterceptor:
    """The same for ``grpc.aio`` channels (``grpc.aio.secure_channel(..., interceptors=[...])``)."""
    return _AioInterceptor(_need_manager(manager, "aio_interceptor"))
