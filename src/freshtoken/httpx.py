"""httpx integration: ``TokenAuth``, an ``httpx.Auth`` for both ``Client`` and ``AsyncClient``.

::

    import httpx
    from freshtoken.httpx import TokenAuth

    with httpx.Client(auth=TokenAuth(tokens)) as client:
        client.get("https://api.example.com/users")

Every request gets a fresh token; a 401 for it invalidates that token and replays the request once
with a new one (when its body is in memory). The decisions live in
:mod:`freshtoken._http_auth.authflow`; this module only drives them, overriding ``sync_auth_flow`` /
``async_auth_flow`` as httpx asks of auth classes that do I/O, so that ``Client`` obtains tokens
with ``manager.get()`` and ``AsyncClient`` with ``await manager.aget()``.

Redirects: httpx follows them inside one step of the auth flow and drops ``Authorization`` when a
redirect leaves the origin (an http→https upgrade of the same host excepted); the flow never adds
it back, and it only replays after a 401 to a request that carried the token.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._core.token import Token
from ._http_auth.authflow import (
    NEED_TOKEN,
    Attempt,
    Authenticator,
    Flow,
    Outcome,
    Send,
    _NeedToken,
    authorize,
    fast_path,
    needs_recovery,
    origin_of,
    recover,
    replayable,
    token_async,
    token_sync,
)

__all__ = ["TokenAuth"]

_Exchange = Generator["httpx.Request | _NeedToken", "httpx.Response | Token", None]


class _Outcome:
    """What the flow asks about an httpx response (see ``_http_auth.authflow.Outcome``)."""

    __slots__ = ("_request", "_response")

    def __init__(self, request: httpx.Request, response: httpx.Response) -> None:
        self._request = request  # the request a replay would send again
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    def www_authenticate(self) -> str | None:
        return ", ".join(self._response.headers.get_list("www-authenticate")) or None

    def sent_authorization(self) -> str | None:
        # After redirects, response.request is the last hop: the one that got this answer.
        sent: str | None = self._response.request.headers.get("authorization")
        return sent

    def body_replayable(self) -> bool:
        try:
            content = self._request.content  # set for bytes, str, form and JSON bodies
        except httpx.RequestNotRead:
            return False  # a stream (iterator, generator, file, multipart upload)
        return replayable(content)

    def discard(self) -> None:
        """httpx reads and closes the first response itself before sending the replay."""


class TokenAuth(Authenticator, httpx.Auth):
    """Authenticate httpx requests with the tokens of ``manager``.

    ``origins``: the ``scheme://host[:port]`` origins the token may be sent to (default: the
    origin of the first request this auth sees). Requests to other origins go out without a
    token. ``allow_insecure_http``: allow plain ``http://`` origins other than loopback.

    One instance serves any number of ``httpx.Client`` and ``httpx.AsyncClient`` objects, threads
    and tasks at once.
    """

    def _start(self, request: httpx.Request) -> Attempt | Flow:
        """The fast path's attempt, or the whole flow when the fast path does not apply."""
        url = request.url
        origin = origin_of(url.scheme, url.host, url.port)
        fast = fast_path(self._manager, self._scope, origin, request.method, url)
        if fast is not None:
            return fast
        return authorize(self._manager, self._scope, origin, request.method, url)

    def _exchange(self, request: httpx.Request) -> _Exchange:
        """The request/response conversation for both clients: yields the request to send (with
        its headers set) or ``NEED_TOKEN``; receives the response or the token."""
        start = self._start(request)
        if isinstance(start, Attempt):
            for name, value in start.headers.items():  # cheaper than headers.update()
                request.headers[name] = value
            response = yield request
            assert isinstance(response, httpx.Response)
            if not needs_recovery(response.status_code):
                return
            flow = recover(self._manager, start, _Outcome(request, response))
        else:
            flow = start
        try:
            step = next(flow)
        except StopIteration:
            return
        while True:
            reply: Token | Outcome
            if isinstance(step, Send):
                if step.headers is not None:
                    for name, value in step.headers.items():
                        request.headers[name] = value
                response = yield request
                assert isinstance(response, httpx.Response)
                reply = _Outcome(request, response)
            else:
                token = yield NEED_TOKEN
                assert isinstance(token, Token)
                reply = token
            try:
                step = flow.send(reply)
            except StopIteration:
                return

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        exchange = self._exchange(request)
        step = next(exchange)
        while True:
            reply: httpx.Response | Token
            if isinstance(step, httpx.Request):
                reply = yield step
            else:
                reply = token_sync(self._manager)
            try:
                step = exchange.send(reply)
            except StopIteration:
                return

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        exchange = self._exchange(request)
        step = next(exchange)
        while True:
            reply: httpx.Response | Token
            if isinstance(step, httpx.Request):
                reply = yield step
            else:
                reply = self._manager._fresh() or await token_async(self._manager)
            try:
                step = exchange.send(reply)
            except StopIteration:
                return
