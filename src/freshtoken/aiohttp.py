"""aiohttp integration: ``token_middleware``, a client middleware (aiohttp >= 3.12).

::

    import aiohttp
    from freshtoken.aiohttp import token_middleware

    async with aiohttp.ClientSession(middlewares=(token_middleware(tokens),)) as session:
        async with session.get("https://api.example.com/users") as response: ...

Every request gets a fresh token; a 401 for it invalidates that token and replays the request once
with a new one (when its body is in memory). The decisions live in
:mod:`freshtoken._http_auth.authflow`.

Redirects: aiohttp runs the middleware for every redirect hop, and drops ``Authorization`` when a
hop leaves the origin; the middleware decides again for each hop, so a hop to another origin
gets no token.

Token requests made through the same session (a :class:`~freshtoken.FunctionSource` that posts to
the token endpoint with it) pass through untouched: while the middleware obtains a token, requests
made in the same task (or in tasks it starts) are not authenticated, so they never wait for the
token they are fetching. freshtoken's own grants use httpx and never meet this middleware.
"""

from __future__ import annotations

from collections.abc import Iterable

try:
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
    from aiohttp.payload import BytesPayload
except ImportError as error:
    raise ImportError(
        "freshtoken.aiohttp needs the aiohttp library (>= 3.12): pip install 'freshtoken[aiohttp]'"
    ) from error

from ._core.token import Token
from ._http_auth.authflow import (
    Authenticator,
    Flow,
    Outcome,
    Send,
    authorize,
    fast_path,
    needs_recovery,
    origin_of,
    recover,
    replayable,
    token_async,
)
from ._runtime.manager import TokenManager

__all__ = ["TokenMiddleware", "token_middleware"]


class _Outcome:
    """What the flow asks about an aiohttp response (see ``_http_auth.authflow.Outcome``)."""

    __slots__ = ("_request", "_response")

    def __init__(self, request: ClientRequest, response: ClientResponse) -> None:
        self._request = request
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    def www_authenticate(self) -> str | None:
        return ", ".join(self._response.headers.getall("WWW-Authenticate", ())) or None

    def sent_authorization(self) -> str | None:
        return self._request.headers.get("Authorization")

    def body_replayable(self) -> bool:
        body = self._request.body
        # A BytesPayload holds bytes, str, form and JSON bodies in memory; every other payload
        # (a file, an async generator, a stream) is a stream.
        return replayable(b"" if isinstance(body, BytesPayload) else body)

    def discard(self) -> None:
        # Give the connection back (or close it, when the body was not read yet).
        self._response.release()


class TokenMiddleware(Authenticator):
    """The middleware :func:`token_middleware` makes (a callable, like aiohttp's own)."""

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        url = request.url
        origin = origin_of(url.scheme, url.host or "", url.port)
        method = request.method
        fast = fast_path(self._manager, self._scope, origin, method, url)
        if fast is None:
            flow = authorize(self._manager, self._scope, origin, method, url)
            return await self._run(flow, request, handler, None)
        for name, value in fast.headers.items():  # cheaper than headers.update()
            request.headers[name] = value
        response = await handler(request)
        if not needs_recovery(response.status):
            return response
        flow = recover(self._manager, fast, _Outcome(request, response))
        return await self._run(flow, request, handler, response)

    async def _run(
        self,
        flow: Flow,
        request: ClientRequest,
        handler: ClientHandlerType,
        response: ClientResponse | None,
    ) -> ClientResponse:
        """Drive ``flow`` to its end; the last response (``response`` if it sends nothing)."""
        try:
            step = next(flow)
        except StopIteration:
            assert response is not None  # only recover() can end before its first step
            return response
        while True:
            if isinstance(step, Send):
                if step.headers is not None:
                    for name, value in step.headers.items():
                        request.headers[name] = value
                response = await handler(request)
                reply: Token | Outcome = _Outcome(request, response)
            else:
                reply = self._manager._fresh() or await token_async(self._manager)
            try:
                step = flow.send(reply)
            except StopIteration:
                assert response is not None
                return response


def token_middleware(
    manager: TokenManager,
    *,
    origins: Iterable[str] | str | None = None,
    allow_insecure_http: bool = False,
) -> TokenMiddleware:
    """An aiohttp client middleware that authenticates requests with the tokens of ``manager``.

    ``origins``: the ``scheme://host[:port]`` origins the token may be sent to (default: the
    origin of the first request the middleware sees). Requests to other origins go out without a
    token. ``allow_insecure_http``: allow plain ``http://`` origins other than loopback.

    Pass it to ``aiohttp.ClientSession(middlewares=(...,))`` or to one request's
    ``middlewares=``. One middleware may serve several sessions.
    """
    return TokenMiddleware(manager, origins=origins, allow_insecure_http=allow_insecure_http)
