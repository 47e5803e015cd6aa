"""The httpx drivers: carry out the steps of a token-endpoint flow, synchronously or on a loop.

A flow (``grants.py``) is a generator yielding :class:`~freshtoken._oauth.http.HttpRequest` and
:class:`~freshtoken._oauth.http.Sleep` steps. :func:`run_sync` and :func:`run_async` are the only
code that differs between ``get()`` and ``aget()``: they send each request with httpx (never
following redirects, reading at most :data:`~freshtoken._core.token.MAX_RESPONSE_BYTES`), turn httpx
exceptions into :class:`~freshtoken._oauth.http.TransportFailure` values sent back into the flow,
and sleep.

:class:`OwnClients` holds the clients used when the user gave none: one ``httpx.Client``, and one
``httpx.AsyncClient`` per event loop, because an async client's connections belong to the loop
that opened them and ``aget()`` may run on several loops in several threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Generator
from typing import TypeVar

import httpx

from freshtoken._core.token import MAX_RESPONSE_BYTES
from freshtoken._runtime.forksafe import fork_safe_lock

from .http import HttpRequest, HttpResponse, Reply, Sleep, Step, TransportFailure, safe_url

__all__ = ["DEFAULT_TIMEOUT", "OwnClients", "run_async", "run_sync", "send_async", "send_sync"]

T = TypeVar("T")
Flow = Generator[Step, Reply, T]

logger = logging.getLogger("freshtoken.http")

#: Timeouts of freshtoken's own clients: 5 s to connect, 10 s for each read/write/pool wait.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


_SSL_LOCK = fork_safe_lock()
_SSL_CONTEXT: ssl.SSLContext | None = None

#: Every live :class:`OwnClients`, so a forked child can drop what it inherited.
_ALL_CLIENTS: weakref.WeakSet[OwnClients] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs in a child (test_http_edges)
    """Forget, in a forked child, every client and lock inherited from the parent.

    A kept-alive connection inherited through fork is one TCP socket shared by two processes:
    their token requests would interleave on it and each read the other's answer. A lock held by
    a parent thread at fork time would never be released in the child. So the child starts
    afresh; the inherited clients are abandoned, not closed (closing would shut the parent's
    TLS session too).
    """
    for clients in list(_ALL_CLIENTS):
        clients._forget()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for all of freshtoken's own clients.

    Building one loads the CA bundle, which takes a good part of a second on a busy machine;
    an SSLContext is safe to share between threads and event loops, so it is built once.
    """
    global _SSL_CONTEXT  # noqa: PLW0603 - a process-wide cache
    with _SSL_LOCK:
        if _SSL_CONTEXT is None:
            _SSL_CONTEXT = httpx.create_ssl_context()
        return _SSL_CONTEXT


class OwnClients:
    """The httpx clients a source opens for itself, created on first use, closed by close().

    Async clients are kept per event loop (weakly: a loop that is gone takes its client with it)
    and open no keep-alive connections: token requests are rare (one per token lifetime), and a
    kept-alive connection on a loop that ends without ``aclose()`` could not be closed cleanly.
    """

    def __init__(self) -> None:
        self._forget()
        _ALL_CLIENTS.add(self)

    def _forget(self) -> None:
        """Start with no client and a fresh lock (at creation, and in a forked child)."""
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def sync_client(self) -> httpx.Client:
        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(
                    timeout=DEFAULT_TIMEOUT, follow_redirects=False, verify=_ssl_context()
                )
            return self._sync

    def async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                client = httpx.AsyncClient(
                    timeout=DEFAULT_TIMEOUT,
                    follow_redirects=False,
                    verify=_ssl_context(),
                    limits=httpx.Limits(max_keepalive_connections=0),
                )
                self._async[loop] = client
            return client

    def close(self) -> None:
        """Close the sync client; forget async clients of other loops (they hold no connection).
        The running loop's async client is left for :meth:`aclose`."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            client, self._sync = self._sync, None
            for loop in list(self._async):
                if loop is not running:
                    del self._async[loop]
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close everything, awaiting the running loop's async client."""
        self.close()
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.pop(loop, None)
        if client is not None:
            await client.aclose()


def _timeout(client_timeout: httpx.Timeout, request: HttpRequest) -> httpx.Timeout:
    """The request's timeout (else the client's), no phase longer than the time left."""
    base = client_timeout if request.timeout is None else httpx.Timeout(request.timeout)
    if request.max_time is None:
        return base
    cap = max(request.max_time, 0.001)

    def clamp(value: float | None) -> float:
        return cap if value is None else min(value, cap)

    return httpx.Timeout(
        connect=clamp(base.connect),
        read=clamp(base.read),
        write=clamp(base.write),
        pool=clamp(base.pool),
    )


def _failure(error: Exception) -> TransportFailure:
    """The transport failure an httpx exception stands for (its type named, never its text)."""
    name = type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return TransportFailure("timeout", name)
    if isinstance(error, httpx.ConnectError):
        return TransportFailure("connect", name)
    if isinstance(error, httpx.NetworkError | httpx.RemoteProtocolError):
        return TransportFailure("network", name)
    return TransportFailure("error", name)


class _CappedBody:
    """Collects a response body, stopping once it passes the size cap (the one piece of
    response handling both drivers need; they differ only in how they iterate)."""

    __slots__ = ("body", "over", "response")

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.body = bytearray()
        length = response.headers.get("content-length", "")
        self.over = length.isdigit() and int(length) > MAX_RESPONSE_BYTES

    def feed(self, chunk: bytes) -> bool:
        """Add ``chunk``; False once the body is over the cap (stop reading)."""
        self.body += chunk
        self.over = len(self.body) > MAX_RESPONSE_BYTES
        return not self.over

    def reply(self) -> Reply:
        status = self.response.status_code
        if self.over:
            return TransportFailure("too_large", status=status)
        headers = {name.lower(): value for name, value in self.response.headers.items()}
        return HttpResponse(status, headers, bytes(self.body))


def _log(request: HttpRequest, reply: Reply, started: float) -> None:
    if not logger.isEnabledFor(logging.DEBUG):
        return
    if isinstance(reply, HttpResponse):
        outcome = f"HTTP {reply.status}"
    else:
        assert isinstance(reply, TransportFailure)
        outcome = f"{reply.kind} {reply.detail}".strip()
    logger.debug(
        "%s %s -> %s in %.3fs",
        request.method,
        safe_url(request.url),
        outcome,
        time.perf_counter() - started,
    )


class _DeadlinePassed(Exception):
    """The request's overall time (``HttpRequest.max_time``) ran out between two reads."""


def _build(client: httpx.Client | httpx.AsyncClient, request: HttpRequest) -> httpx.Request:
    """The httpx request carrying exactly the flow's headers and body.

    Built directly rather than with ``client.build_request``, which would merge in the client's
    default headers and cookies: a user's ``http=`` client lends its transport (proxies, TLS,
    limits, timeouts), never its API credentials, to a token request.
    """
    timeout = _timeout(client.timeout, request)
    return httpx.Request(
        request.method,
        request.url,
        headers=dict(request.headers),
        content=request.body,
        extensions={"timeout": timeout.as_dict()},
    )


#: Passed as ``auth=`` so that a client's default auth never replaces the grant's own.
_NO_AUTH = httpx.Auth()


def _ends_at(request: HttpRequest) -> float | None:
    """The monotonic time at which the whole request must be over, if it has a limit."""
    return None if request.max_time is None else time.monotonic() + max(request.max_time, 0.0)


def _check(ends_at: float | None) -> None:
    if ends_at is not None and time.monotonic() >= ends_at:
        raise _DeadlinePassed


def send_sync(client: httpx.Client, request: HttpRequest) -> Reply:
    """Send one request through ``client``: the response or the transport failure.

    No phase may take longer than the time left, and the time left is checked after every
    chunk, so a body dripped slowly is cut off once ``max_time`` has passed."""
    started = time.perf_counter()
    ends_at = _ends_at(request)
    reply: Reply
    try:
        response = client.send(
            _build(client, request), stream=True, auth=_NO_AUTH, follow_redirects=False
        )
        try:
            collected = _CappedBody(response)
            if not collected.over:
                for chunk in response.iter_bytes():
                    _check(ends_at)
                    if not collected.feed(chunk):
                        break
            reply = collected.reply()
        finally:
            response.close()
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        reply = _failure(error)
    except _DeadlinePassed:
        reply = TransportFailure("timeout", "deadline")
    _log(request, reply, started)
    return reply


async def _send_async(client: httpx.AsyncClient, request: HttpRequest) -> Reply:
    response = await client.send(
        _build(client, request), stream=True, auth=_NO_AUTH, follow_redirects=False
    )
    try:
        collected = _CappedBody(response)
        if not collected.over:
            async for chunk in response.aiter_bytes():
                if not collected.feed(chunk):
                    break
        return collected.reply()
    finally:
        await response.aclose()


async def send_async(client: httpx.AsyncClient, request: HttpRequest) -> Reply:
    """Like :func:`send_sync`, on the running event loop; here ``max_time`` bounds the whole
    request (connect, send, every read) as one timeout."""
    started = time.perf_counter()
    limit = None if request.max_time is None else max(request.max_time, 0.001)
    reply: Reply
    try:
        async with asyncio.timeout(limit):
            reply = await _send_async(client, request)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        reply = _failure(error)
    except TimeoutError:
        reply = TransportFailure("timeout", "deadline")
    _log(request, reply, started)
    return reply


def run_sync(flow: Flow[T], client: httpx.Client) -> T:
    """Pump ``flow`` to its result in this thread."""
    reply: Reply = None
    try:
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if isinstance(step, Sleep):
                time.sleep(max(0.0, step.seconds))
                reply = None
            else:
                reply = send_sync(client, step)
    finally:
        flow.close()


async def run_async(flow: Flow[T], client: httpx.AsyncClient) -> T:
    """Pump ``flow`` to its result on the running event loop."""
    reply: Reply = None
    try:
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if isinstance(step, Sleep):
                await asyncio.sleep(max(0.0, step.seconds))
                reply = None
            else:
                reply = await send_async(client, step)
    finally:
        flow.close()
