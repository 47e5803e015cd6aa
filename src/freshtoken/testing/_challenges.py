"""What the protected resource may demand beyond a valid token, and its RFC 9728 metadata.

``server.demand(scope=..., acr_values=..., max_age=...)`` makes the resource refuse valid tokens
that lack the scope (``403`` with ``error="insufficient_scope", scope="..."``, RFC 6750 §3.1) or
the authentication (``401`` with ``error="insufficient_user_authentication"``, RFC 9470 §3: an
``acr`` claim outside ``acr_values``, or an ``auth_time`` older than ``max_age`` seconds);
``server.demand()`` lifts every demand. The protected-resource metadata (RFC 9728 §2) names the
server as the authorization server of its resource, whose identifier is the tokens' audience.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from freshtoken.testing._errors import REALM, json_response
from freshtoken.testing._http import Response

__all__ = ["METADATA_PATH", "Demands", "metadata_document", "metadata_path"]

#: RFC 9728 §3: the well-known suffix of protected-resource metadata.
METADATA_PATH = "/.well-known/oauth-protected-resource"


def metadata_path(resource: str, base_url: str) -> str | None:
    """The path at which the metadata of ``resource`` is served (RFC 9728 §3.1: the well-known
    segment inserted between host and path), or ``None`` when ``resource`` is not on this
    server (a configured audience elsewhere: its metadata is then served at the bare well-known
    path, and its ``resource`` does not match, as a misconfigured resource's would not)."""
    if resource == base_url or resource == base_url + "/":
        return METADATA_PATH
    if resource.startswith(base_url + "/"):
        return METADATA_PATH + resource.removeprefix(base_url)
    return None


def metadata_document(resource: str, issuer: str) -> bytes:
    """RFC 9728 §2 metadata for ``resource``, protected by ``issuer``."""
    return json.dumps(
        {
            "resource": resource,
            "authorization_servers": [issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "freshtoken test resource",
        }
    ).encode()


def _challenge(error: str, description: str, **params: str) -> str:
    parts = [f'realm="{REALM}"', f'error="{error}"', f'error_description="{description}"']
    parts.extend(f'{name}="{value}"' for name, value in params.items())
    return "Bearer " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Demands:
    """The resource's demands on a valid token (all ``None``: none)."""

    scope: str | None = None
    acr_values: str | None = None
    max_age: int | None = None

    def refusal(self, claims: dict[str, Any], now: float) -> Response | None:
        """The refusal of a token with ``claims`` at ``now``, or ``None`` if it satisfies all."""
        if self.scope is not None:
            held = set(str(claims.get("scope") or "").split())
            if not set(self.scope.split()) <= held:
                header = _challenge(
                    "insufficient_scope", "the token lacks a required scope", scope=self.scope
                )
                return self._refuse(403, "insufficient_scope", header)
        acr = claims.get("acr")
        acr_ok = self.acr_values is None or acr in self.acr_values.split()
        auth_time = claims.get("auth_time")
        age_ok = self.max_age is None or (
            isinstance(auth_time, int | float) and now - auth_time <= self.max_age
        )
        if acr_ok and age_ok:
            return None
        params: dict[str, str] = {}
        if self.acr_values is not None:
            params["acr_values"] = self.acr_values
        if self.max_age is not None:
            params["max_age"] = str(self.max_age)
        header = _challenge(
            "insufficient_user_authentication",
            "a stronger or more recent authentication is required",
            **params,
        )
        return self._refuse(401, "insufficient_user_authentication", header)

    @staticmethod
    def _refuse(status: int, error: str, header: str) -> Response:
        return json_response(status, {"error": error}, [("WWW-Authenticate", header)])
