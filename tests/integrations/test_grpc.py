"""freshtoken.grpc against a real grpcio server on 127.0.0.1.

The server (generic handlers, bytes in and out: no generated code) checks the bearer token the way
the test resource endpoint does: the signature against the AuthorizationServer's JWKS, its issuer,
its audience, ``exp`` with no leeway, and a deny list of revoked tokens. Channels use grpcio's
local credentials: call credentials travel only over secure channels.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest

import freshtoken as ft
from freshtoken.grpc import aio_interceptor, call_credentials, interceptor
from freshtoken.testing import AuthorizationServer

from .conftest import RecordingSource

METHOD = "/freshtoken.test.Echo/Call"
RPC_TIMEOUT = 20.0


class GrpcResource:
    """A gRPC service whose one method answers the request bytes to a valid bearer token."""

    def __init__(self, issuer: AuthorizationServer) -> None:
        self._issuer = issuer
        self._jwks = jwt.PyJWKClient(issuer.jwks_url)
        self._verified: dict[str, dict[str, Any]] = {}
        self._revoked: set[str] = set()
        self._refuse_all = False
        self._lock = threading.Lock()
        self.refusals: collections.Counter[str] = collections.Counter()
        self.tokens_seen: set[str] = set()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=16))
        handler = grpc.method_handlers_generic_handler(
            "freshtoken.test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(self._call)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        credentials = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        self.port = self._server.add_secure_port("127.0.0.1:0", credentials)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def revoke(self, token: str) -> None:
        with self._lock:
            self._revoked.add(token)

    def revoke_all(self) -> None:
        """Refuse every token from now on, those issued later too."""
        self._refuse_all = True

    def _claims(self, token: str) -> dict[str, Any]:
        claims = self._verified.get(token)
        if claims is None:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self._issuer.audience,
                issuer=self._issuer.issuer,
                options={"verify_exp": False},  # checked below on every call, no leeway
            )
            self._verified[token] = claims
        return claims

    def _refuse(self, context: grpc.ServicerContext, reason: str) -> None:
        with self._lock:
            self.refusals[reason] += 1
        context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    @staticmethod
    def _sent_at(context: grpc.ServicerContext) -> float:
        """When the client sent the call: its deadline is RPC_TIMEOUT after that. On a loaded
        machine a call can wait in the server's queue for a while; the client is answerable
        for the token being valid when it sent the call, not for the queue."""
        remaining: float | None = context.time_remaining()
        if remaining is None or remaining > RPC_TIMEOUT:
            return time.time()  # no deadline: the time the call is handled
        return time.time() - (RPC_TIMEOUT - remaining)

    def _call(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        sent = [v for k, v in context.invocation_metadata() if k == "authorization"]
        if len(sent) != 1 or not sent[0].startswith("Bearer "):
            self._refuse(context, "missing")
        token = sent[0].removeprefix("Bearer ")
        try:
            claims = self._claims(token)
        except jwt.InvalidTokenError:
            self._refuse(context, "invalid")
        if self._sent_at(context) >= claims["exp"]:
            self._refuse(context, "expired")
        if self._refuse_all or token in self._revoked:
            self._refuse(context, "revoked")
        with self._lock:
            self.tokens_seen.add(token)
        return request

    def __enter__(self) -> GrpcResource:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait(10)


@pytest.fixture
def resource(server: AuthorizationServer) -> Iterator[GrpcResource]:
    with GrpcResource(server) as running:
        yield running


def local() -> grpc.ChannelCredentials:
    return grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)


def run_async(make: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run a coroutine on a new loop, bounded, so that a regression fails instead of hanging."""

    async def bounded() -> Any:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(bounded())


LIFETIME = 2.0
RUN = 3 * LIFETIME + 0.5  # three lifetimes and a bit
# The resource checks ``exp`` with no leeway when it handles a call, which on a loaded machine can
# be well after the call was sent. Callers stop using a token when 25 % of its lifetime (0.5 s)
# remains, so that a call's time in the queue never outlives the token it carries; it turns stale
# (refreshed in the background) at 35 %, so a token serves about 1.3 s.
UNDER_LOAD = ft.RefreshPolicy(stale_fraction=0.35, hard_fraction=0.25)


def assert_one_token_request_per_lifetime(
    server: AuthorizationServer, resource: GrpcResource
) -> None:
    # No herd: every token requested was used, one per 1.1-1.3 s (stale at 65 % of a lifetime,
    # jitter up to a quarter of the stale margin earlier), about 6 in the run; a herd makes dozens.
    assert server.token_requests == len(resource.tokens_seen)
    assert 3 <= server.token_requests <= 8


@pytest.mark.token_lifetime(LIFETIME)
def test_32_threads_on_a_sync_channel_over_three_lifetimes_never_fail(
    server: AuthorizationServer, resource: GrpcResource
) -> None:
    manager = ft.TokenManager(RecordingSource(server), policy=UNDER_LOAD)
    credentials = grpc.composite_channel_credentials(local(), call_credentials(manager))
    failures: list[grpc.StatusCode] = []
    calls = [0]
    lock = threading.Lock()
    with grpc.secure_channel(resource.target, credentials) as channel:
        call = channel.unary_unary(METHOD)
        deadline = time.monotonic() + RUN

        def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    assert call(b"ping", timeout=RPC_TIMEOUT) == b"ping"
                except grpc.RpcError as exc:
                    with lock:
                        failures.append(exc.code())
                with lock:
                    calls[0] += 1
                time.sleep(0.01)  # pacing only: the machine is shared

        threads = [threading.Thread(target=worker) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(RUN + 3 * RPC_TIMEOUT)
        assert not any(thread.is_alive() for thread in threads)
    manager.close()

    assert failures == [], resource.refusals
    assert calls[0] > 100
    assert_one_token_request_per_lifetime(server, resource)


@pytest.mark.token_lifetime(LIFETIME)
def test_200_tasks_on_an_aio_channel_over_three_lifetimes_never_fail(
    server: AuthorizationServer, resource: GrpcResource
) -> None:
    failures: list[grpc.StatusCode] = []
    calls = [0]

    async def main() -> None:
        tokens = ft.TokenManager(RecordingSource(server), policy=UNDER_LOAD)
        credentials = grpc.composite_channel_credentials(local(), call_credentials(tokens))
        async with grpc.aio.secure_channel(resource.target, credentials) as channel:
            call = channel.unary_unary(METHOD)
            deadline = time.monotonic() + RUN

            async def task() -> None:
                while time.monotonic() < deadline:
                    try:
                        assert await call(b"ping", timeout=RPC_TIMEOUT) == b"ping"
                    except grpc.RpcError as exc:
                        failures.append(exc.code())
                    calls[0] += 1
                    await asyncio.sleep(0.05)  # pacing only: the machine is shared

            await asyncio.gather(*(task() for _ in range(200)))
        await tokens.aclose()
        tokens.close()

    run_async(main)

    assert failures == [], resource.refusals
    assert calls[0] > 200
    assert_one_token_request_per_lifetime(server, resource)


def test_a_revoked_token_is_replaced_after_one_unauthenticated_on_a_sync_channel(
    server: AuthorizationServer, resource: GrpcResource, manager: ft.TokenManager
) -> None:
    with grpc.secure_channel(resource.target, local()) as secure:
        channel = grpc.intercept_channel(secure, interceptor(manager))
        call = channel.unary_unary(METHOD)
        assert call(b"one", timeout=RPC_TIMEOUT) == b"one"
        resource.revoke(manager.get().access_token)

        assert call(b"two", timeout=RPC_TIMEOUT) == b"two"
        assert call(b"three", timeout=RPC_TIMEOUT) == b"three"

    assert resource.refusals == {"revoked": 1}
    assert server.token_requests == 2


def test_a_revoked_token_is_replaced_after_one_unauthenticated_on_an_aio_channel(
    server: AuthorizationServer, resource: GrpcResource
) -> None:
    async def main() -> list[bytes]:
        tokens = ft.TokenManager(RecordingSource(server))
        answers = []
        async with grpc.aio.secure_channel(
            resource.target, local(), interceptors=[aio_interceptor(tokens)]
        ) as channel:
            call = channel.unary_unary(METHOD)
            answers.append(await call(b"one", timeout=RPC_TIMEOUT))
            resource.revoke((await tokens.aget()).access_token)
            answers.append(await call(b"two", timeout=RPC_TIMEOUT))
            answers.append(await call(b"three", timeout=RPC_TIMEOUT))
        await tokens.aclose()
        tokens.close()
        return answers

    assert run_async(main) == [b"one", b"two", b"three"]
    assert resource.refusals == {"revoked": 1}
    assert server.token_requests == 2


def test_fifty_concurrent_refusals_of_one_token_cause_one_token_request(
    server: AuthorizationServer, resource: GrpcResource, manager: ft.TokenManager
) -> None:
    manager.prefetch()
    resource.revoke(manager.get().access_token)
    with grpc.secure_channel(resource.target, local()) as secure:
        call = grpc.intercept_channel(secure, interceptor(manager)).unary_unary(METHOD)
        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(lambda i: call(b"%d" % i, timeout=RPC_TIMEOUT), range(50)))

    assert answers == [b"%d" % i for i in range(50)]
    assert 1 <= resource.refusals["revoked"] <= 50
    assert server.token_requests == 2


def test_a_token_refused_twice_is_returned_as_unauthenticated_and_dropped(
    server: AuthorizationServer, resource: GrpcResource, manager: ft.TokenManager
) -> None:
    with grpc.secure_channel(resource.target, local()) as secure:
        call = grpc.intercept_channel(secure, interceptor(manager)).unary_unary(METHOD)
        assert call(b"one", timeout=RPC_TIMEOUT) == b"one"
        resource.revoke_all()  # the token it has and any it is given next
        with pytest.raises(grpc.RpcError) as refused:
            call(b"two", timeout=RPC_TIMEOUT)

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert resource.refusals == {"revoked": 2}
    assert server.token_requests == 2
    assert manager._fresh() is None  # the second refused token was dropped too


def test_a_refused_token_the_source_gives_again_is_not_retried(
    server: AuthorizationServer, resource: GrpcResource
) -> None:
    fixed = server.issue_token()
    resource.revoke(fixed)
    tokens = ft.TokenManager(ft.FunctionSource(lambda: fixed))

    async def on_aio() -> grpc.StatusCode:
        async with grpc.aio.secure_channel(
            resource.target, local(), interceptors=[aio_interceptor(tokens)]
        ) as channel:
            try:
                await channel.unary_unary(METHOD)(b"one", timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        raise AssertionError("the call succeeded")

    with grpc.secure_channel(resource.target, local()) as secure:
        call = grpc.intercept_channel(secure, interceptor(tokens)).unary_unary(METHOD)
        with pytest.raises(grpc.RpcError) as refused:
            call(b"one", timeout=RPC_TIMEOUT)
    aio_code = run_async(on_aio)
    tokens.close()

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert aio_code == grpc.StatusCode.UNAUTHENTICATED
    assert resource.refusals == {"revoked": 2}  # one per call: neither was sent again


def test_a_status_other_than_unauthenticated_is_returned_without_a_retry(
    server: AuthorizationServer, resource: GrpcResource, manager: ft.TokenManager
) -> None:
    with grpc.secure_channel(resource.target, local()) as secure:
        call = grpc.intercept_channel(secure, interceptor(manager)).unary_unary(
            "/freshtoken.test.Echo/Missing"
        )
        with pytest.raises(grpc.RpcError) as failed:
            call(b"one", timeout=RPC_TIMEOUT)

    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert server.token_requests == 1


def test_the_callers_own_authorization_metadata_is_replaced(
    resource: GrpcResource, manager: ft.TokenManager
) -> None:
    with grpc.secure_channel(resource.target, local()) as secure:
        call = grpc.intercept_channel(secure, interceptor(manager)).unary_unary(METHOD)
        answer = call(b"one", timeout=RPC_TIMEOUT, metadata=[("authorization", "Bearer x")])

    assert answer == b"one"
    assert resource.refusals == {}


def test_a_failed_token_request_fails_the_call_without_leaking_the_secret(
    server: AuthorizationServer, resource: GrpcResource, manager: ft.TokenManager
) -> None:
    server.inject(target="token", status=500, times=100)
    credentials = grpc.composite_channel_credentials(local(), call_credentials(manager))
    with (
        grpc.secure_channel(resource.target, credentials) as channel,
        pytest.raises(grpc.RpcError) as failed,
    ):
        channel.unary_unary(METHOD)(b"one", timeout=RPC_TIMEOUT)

    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    secret = server.client.client_secret
    assert secret is not None and secret not in str(failed.value)


@pytest.mark.parametrize("make", [call_credentials, interceptor, aio_interceptor])
def test_anything_but_a_token_manager_is_refused(make: Callable[[Any], object]) -> None:
    with pytest.raises(ft.ConfigurationError, match=r"needs a freshtoken\.TokenManager, got str"):
        make("token")


def test_without_grpcio_the_import_names_the_extra_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import freshtoken.grpc

    monkeypatch.setitem(sys.modules, "grpc", None)  # makes "import grpc" fail
    monkeypatch.delitem(sys.modules, "freshtoken.grpc")
    monkeypatch.delattr(freshtoken, "grpc")

    with pytest.raises(ImportError, match=r"pip install 'freshtoken\[grpc\]'"):
        importlib.import_module("freshtoken.grpc")
