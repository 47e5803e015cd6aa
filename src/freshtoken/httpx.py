"""httpx integration: ``TokenAuth``, an ``httpx.Auth`` for both ``Client`` and ``AsyncClient``.

::

    import httpx
    from freshtoken.httpx import TokenAuth

    with httpx.Client(auth=TokenAuth(tokens)) as client:
        client.get("https://api.example.com/users")

Every request gets a fresh token; a 401 for it invalidates that token and replays the request once
with a new one (when its body is in memory). The decisions live in :mod:`freshtoken._authflow`;
this module only drives them, overriding ``sync_auth_flow`` / ``async_auth_flow`` as httpx asks of
auth classes that do I/O, so that ``Client`` obtains tokens with ``manager.get()`` and
``AsyncClient`` with ``await manager.aget()``.

Redirects: httpx follows them inside one step of the auth flow and drops ``Authorization`` when a
redirect leaves the origin (an http→https upgrade of the same host excepted); the flow never adds
it back, and it only replays after a 401 to a request that carried the token.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._authflow import (
    Authenticator,
    Flow,
    Outcome,
    Send,
    authorize,
    origin_of,
    replayable,
    token_async,
    token_sync,
)
from ._token import Token

__all__ = ["TokenAuth"]


class _Outcome:
    """What the flow asks about an httpx response (see ``_authflow.Outcome``)."""

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

    def _flow(self, request: httpx.Request) -> Flow:
        url = request.url
        origin = origin_of(url.scheme, url.host, url.port)
        return authorize(self._manager, self._scope, origin, request.method, str(url))

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self._flow(request)
        step = next(flow)
        while True:
            if isinstance(step, Send):
                if step.headers is not None:
                    for name, value in step.headers.items():  # cheaper than headers.update()
                        request.headers[name] = value
                response = yield request
                reply: Token | Outcome = _Outcome(request, response)
            else:
                reply = token_sync(self._manager)
            try:
                step = flow.send(reply)
            except StopIteration:
                return

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._flow(request)
        step = next(flow)
        while True:
            if isinstance(step, Send):
                if step.headers is not None:
                    for name, value in step.headers.items():  # cheaper than headers.update()
                        request.headers[name] = value
                response = yield request
                reply: Token | Outcome = _Outcome(request, response)
            else:
                reply = await token_async(self._manager)
            try:
                step = flow.send(reply)
            except StopIteration:
                return
