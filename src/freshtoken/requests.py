"""requests integration: ``TokenAuth``, a ``requests.auth.AuthBase``.

::

    import requests
    from freshtoken.requests import TokenAuth

    session = requests.Session()
    session.auth = TokenAuth(tokens)
    session.get("https://api.example.com/users")

Every request gets a fresh token; a 401 for it invalidates that token and replays the request once
with a new one (when its body is in memory), through the same connection adapter, the way requests'
own ``HTTPDigestAuth`` answers a challenge: from a response hook, reading and closing the first
response and putting it in the replay's ``history``. The decisions live in
:mod:`freshtoken._http_auth.authflow`.

Redirects: requests applies the auth once per request, not per redirect hop, and its
``rebuild_auth`` strips ``Authorization`` when a redirect changes host, port or scheme (an
http→https upgrade on default ports excepted). Our response hook does run on every hop, but only
acts on a 401 to a request that carried the token.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

try:
    import requests
    from requests.auth import AuthBase
    from requests.cookies import extract_cookies_to_jar
except ImportError as error:
    raise ImportError(
        "freshtoken.requests needs the requests library: pip install 'freshtoken[requests]'"
    ) from error

from ._core.token import Token
from ._http_auth.authflow import (
    Attempt,
    Authenticator,
    Flow,
    Outcome,
    Send,
    authorize,
    fast_path,
    needs_recovery,
    origin_from_url,
    recover,
    replayable,
    token_sync,
)

__all__ = ["TokenAuth"]


class _Outcome:
    """What the flow asks about a requests response (see ``_http_auth.authflow.Outcome``)."""

    __slots__ = ("_response",)

    def __init__(self, response: requests.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    def www_authenticate(self) -> str | None:
        # requests (urllib3) joins repeated headers with ", ".
        return self._response.headers.get("www-authenticate")

    def sent_authorization(self) -> str | None:
        return self._response.request.headers.get("authorization")

    def body_replayable(self) -> bool:
        return replayable(self._response.request.body)

    def discard(self) -> None:
        # Read the rest and release the connection, so the replay can reuse it.
        _ = self._response.content
        self._response.close()


class TokenAuth(Authenticator, AuthBase):
    """Authenticate requests with the tokens of ``manager`` (``session.auth = TokenAuth(...)``).

    ``origins``: the ``scheme://host[:port]`` origins the token may be sent to (default: the
    origin of the first request this auth sees). Requests to other origins go out without a
    token. ``allow_insecure_http``: allow plain ``http://`` origins other than loopback.

    Safe to share between threads (a ``requests.Session`` is not, but this auth is).
    """

    def _next_send(self, flow: Flow, reply: Token | Outcome | None) -> Send:
        """Advance the flow to its next Send, answering token requests on the way."""
        step = next(flow) if reply is None else flow.send(reply)
        while not isinstance(step, Send):
            step = flow.send(token_sync(self._manager))
        return step

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = r.url or ""
        origin = origin_from_url(url)
        method = r.method or "GET"
        fast = fast_path(self._manager, self._scope, origin, method, url)
        if fast is not None:
            for name, value in fast.headers.items():
                r.headers[name] = value
            r.hooks["response"].append(functools.partial(self._on_fast_response, fast))
            return r
        flow = authorize(self._manager, self._scope, origin, method, url)
        step = self._next_send(flow, None)
        if step.headers is None:
            flow.close()
            return r
        for name, value in step.headers.items():
            r.headers[name] = value
        r.hooks["response"].append(functools.partial(self._on_response, flow))
        return r

    def _on_fast_response(
        self, attempt: Attempt, r: requests.Response, **kwargs: Any
    ) -> requests.Response:
        """Response hook after the fast path: nothing to do unless the answer is a 401."""
        if not needs_recovery(r.status_code):
            return r
        return self._replay(recover(self._manager, attempt, _Outcome(r)), None, r, kwargs)

    def _on_response(self, flow: Flow, r: requests.Response, **kwargs: Any) -> requests.Response:
        """Response hook: replay once after a 401 for the token, when the flow says so.

        requests runs it for every redirect hop too; the flow has ended by then and the hop's
        response is returned as it is.
        """
        return self._replay(flow, _Outcome(r), r, kwargs)

    def _replay(
        self, flow: Flow, reply: Outcome | None, r: requests.Response, kwargs: dict[str, Any]
    ) -> requests.Response:
        """Send ``r``'s request again if ``flow`` (answered with ``reply``) asks for it."""
        try:
            step = self._next_send(flow, reply)
        except StopIteration:
            return r
        prep = r.request.copy()
        jar = getattr(prep, "_cookies", None)
        if jar is not None:  # keep cookies the 401 set, as HTTPDigestAuth does
            extract_cookies_to_jar(jar, r.request, r.raw)  # type: ignore[no-untyped-call]
            prep.prepare_cookies(jar)
        assert step.headers is not None  # a replay always carries the new token
        for name, value in step.headers.items():
            prep.headers[name] = value
        replayed: requests.Response = r.connection.send(prep, **kwargs)
        replayed.history.append(r)
        replayed.request = prep
        with contextlib.suppress(StopIteration):  # the flow ends after the replay
            self._next_send(flow, _Outcome(replayed))
        return replayed
