"""RFC 6749 §5.2 error responses, raised by the endpoint code and rendered in one place."""

from __future__ import annotations

import json
from collections.abc import Sequence

from freshtoken.testing._http import Response

__all__ = ["OAuthError", "json_response", "NO_STORE_HEADERS", "REALM"]

REALM = "freshtoken-testing"
#: RFC 6749 §5.1: token responses (and their errors) must not be cached.
NO_STORE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
)


def json_response(
    status: int, payload: object, headers: Sequence[tuple[str, str]] = NO_STORE_HEADERS
) -> Response:
    """A JSON response (``application/json``, no-store by default)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, [("Content-Type", "application/json"), *headers])


class OAuthError(Exception):
    """An error the token endpoint answers with ``{"error": ..., "error_description": ...}``."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = tuple(headers)

    def response(self) -> Response:
        payload = {"error": self.error, "error_description": self.description}
        return json_response(self.status, payload, (*NO_STORE_HEADERS, *self.headers))


def invalid_client(description: str, *, basic: bool) -> OAuthError:
    """invalid_client is a 401; with a ``WWW-Authenticate`` challenge when Basic was tried."""
    headers = [("WWW-Authenticate", f'Basic realm="{REALM}"')] if basic else []
    return OAuthError("invalid_client", description, status=401, headers=headers)
