"""The blog post's pattern that freshtoken replaces, reimplemented for ``demo --compare-seed``.

Kept on purpose, because they are what the comparison shows:

* the token is fetched once in ``__init__`` and its expiry *assumed*: ``time.time() + 3500`` for
  a token the author knew lived 3600 s, i.e. 3500/3600 of the lifetime (here scaled to the demo's
  short tokens) — the server's ``expires_in`` is never read;
* the decorator calls ``getAccessToken()`` once that time has passed but never stores the new
  token, so from then on every call sends a token request *and* presents the expired token;
* errors are printed and swallowed (``log`` stands for the post's ``print``);
* no lock: concurrent callers all refresh at once.

Only what the post left to the reader is filled in: the token request (client credentials with
``client_secret_post``) and the API call (a GET of the protected resource that raises on 401).
The post's camelCase names are kept so the two can be read side by side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

__all__ = ["SEED_MARGIN", "Decorators", "SeedAPI"]

#: The post refreshed a 3600 s token after 3500 s.
SEED_MARGIN = 3500 / 3600

R = TypeVar("R")


class Decorators:
    @staticmethod
    def refreshToken(decorated: Callable[..., R]) -> Callable[..., R]:
        # the function that is used to check the JWT and refresh if necessary
        def wrapper(api: SeedAPI, *args: Any, **kwargs: Any) -> R:
            if time.time() > api.access_token_expiration:  # type: ignore[operator]
                api.getAccessToken()  # the post's bug: the new token is not stored
            return decorated(api, *args, **kwargs)

        return wrapper


class SeedAPI:
    """``myAPI`` from the post, with the request bodies it left out filled in."""

    host: str | None = None
    key: str | None = None
    secret: str | None = None
    access_token: str | None = None
    access_token_expiration: float | None = None

    def __init__(
        self,
        host: str,
        key: str,
        secret: str,
        *,
        token_url: str,
        lifetime: float,
        log: Callable[[object], None] = print,
    ) -> None:
        self.host = host
        self.key = key
        self.secret = secret
        self._token_url = token_url
        self._log = log
        self._local = threading.local()
        try:
            self.access_token = self.getAccessToken()
            if self.access_token is None:
                raise Exception("Request for access token failed.")
        except Exception as e:
            self._log(e)
        else:
            # The post: time.time() + 3500 for a one-hour token.
            self.access_token_expiration = time.time() + lifetime * SEED_MARGIN

    def getAccessToken(self) -> str | None:
        try:
            token_body = {
                "grant_type": "client_credentials",
                "client_id": self.key,
                "client_secret": self.secret,
            }
            request = requests.post(self._token_url, data=token_body, timeout=10)
            request.raise_for_status()
        except Exception as e:
            self._log(e)
            return None
        else:
            token: str = request.json()["access_token"]
            return token

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    @Decorators.refreshToken
    def someRequest(self) -> None:
        response = self._session().get(
            f"{self.host}/api/resource",
            headers={"Authorization": f"Bearer {self.access_token}"},
            timeout=10,
        )
        response.raise_for_status()

    def close_session(self) -> None:
        """Close this thread's session (the post never closed anything; tests need it)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None
