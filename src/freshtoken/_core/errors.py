"""One tree of errors, each saying whose fault it is.

::

    FreshTokenError
    ├── ConfigurationError          the caller configured something that cannot work
    ├── TokenRequestError           getting a token failed
    │   ├── OAuthError              the authorization server refused (RFC 6749 §5.2)
    │   ├── TokenEndpointUnavailable the token endpoint could not be reached / was down
    │   └── TokenResponseError      the answer was not a usable token response
    └── Unauthorized                an API answered 401 for a token (raise it to trigger a retry)
        ├── InsufficientScope       the token lacks a scope the API needs (never retried)
        └── StepUpRequired          the API needs a stronger user authentication (never retried)

No message, repr or traceback of these errors holds a secret: they are built from field names,
status codes, error codes and fingerprints, never from token or credential values. Every error is
copyable (``copy.copy``) so that a single failed fetch can be re-raised to many waiters, each with a
traceback of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .token import Token

__all__ = [
    "ConfigurationError",
    "FreshTokenError",
    "InsufficientScope",
    "OAuthError",
    "StepUpRequired",
    "TokenEndpointUnavailable",
    "TokenRequestError",
    "TokenResponseError",
    "Unauthorized",
]

#: RFC 6749 §5.2 / RFC 8628 error codes that will not go away by sending the same request again.
NON_RETRYABLE_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "access_denied",
        "unsupported_response_type",
    }
)


class FreshTokenError(Exception):
    """Base of every error freshtoken raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Keep copy/pickle working for subclasses whose __init__ takes other arguments.
        return (_rebuild, (type(self), self.__dict__.copy()))

    @property
    def retryable(self) -> bool:
        """Whether sending the same token request again later may succeed."""
        return True


def _rebuild(cls: type[FreshTokenError], state: dict[str, object]) -> FreshTokenError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class ConfigurationError(FreshTokenError):
    """The library was configured in a way that cannot work (the caller's fault).

    Raised at construction when knowable then (an ``http://`` token URL to a non-loopback host, a
    missing secret for ``client_secret_basic``), otherwise at the first ``get()`` (discovery).
    """

    @property
    def retryable(self) -> bool:
        return False


class TokenRequestError(FreshTokenError):
    """Getting a token failed.

    Also raised, with the original exception chained as ``__cause__``, when a user-supplied token
    callable raises something that is not a freshtoken error.
    """


class OAuthError(TokenRequestError):
    """The authorization server answered with an RFC 6749 §5.2 error.

    ``error`` is the error code (``invalid_client``, ``invalid_grant``, ...), ``description`` and
    ``uri`` the optional ``error_description`` / ``error_uri``, ``status`` the HTTP status.
    ``hint``, freshtoken's own advice on what the refusal means, ends the message.
    """

    def __init__(
        self,
        error: str,
        description: str | None = None,
        uri: str | None = None,
        status: int | None = None,
        *,
        hint: str | None = None,
    ) -> None:
        text = f"the authorization server refused the token request: {error}"
        if status is not None:
            text += f" (HTTP {status})"
        if description:
            text += f": {description}"
        if hint:
            text += f"; {hint}"
        super().__init__(text)
        self.error = error
        self.description = description
        self.uri = uri
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.error not in NON_RETRYABLE_OAUTH_ERRORS


class TokenEndpointUnavailable(TokenRequestError):
    """The token endpoint could not be reached, timed out, or kept answering 5xx / 429.

    ``retry_after`` is the number of seconds after which trying again makes sense, when known
    (from a ``Retry-After`` header or the backoff schedule).
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class TokenResponseError(TokenRequestError):
    """The token response (or a value returned by a token callable) is not a usable token.

    ``field`` names the offending field when there is one; ``status`` is the HTTP status when the
    value came over HTTP. The message names what was wrong, never the value when it may be secret.
    """

    def __init__(
        self, message: str, *, field: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class Unauthorized(FreshTokenError):
    """An API rejected a token with HTTP 401.

    Raise it from a function decorated with ``authenticated`` to have the token invalidated and the
    function run once more with a fresh one. ``token`` is the token that was rejected, when known.
    ``resource_metadata`` is the URL of the API's protected-resource metadata (RFC 9728 §5.1), when
    its challenge named one: :func:`freshtoken.discover_resource` reads it.
    """

    def __init__(
        self,
        message: str = "",
        *,
        token: Token | None = None,
        resource_metadata: str | None = None,
    ) -> None:
        super().__init__(message or "the API answered 401 Unauthorized")
        self.token = token
        self.resource_metadata = resource_metadata

    def __repr__(self) -> str:
        fingerprint = self.token.fingerprint if self.token is not None else None
        return f"{type(self).__name__}({self.message!r}, token_fingerprint={fingerprint!r})"


class _ChallengeError(Unauthorized):
    """A refusal no new token of the same grant would cure: never answered with a token request
    or a retry. ``status`` is the HTTP status of the refusal."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        token: Token | None,
        resource_metadata: str | None,
    ) -> None:
        super().__init__(message, token=token, resource_metadata=resource_metadata)
        self.status = status

    @property
    def retryable(self) -> bool:
        return False


class InsufficientScope(_ChallengeError):
    """The API refused the token for a scope it lacks (RFC 6750 §3.1 ``insufficient_scope``).

    A new token from the same grant carries the same scope, so this is never answered with a
    token request or a retry: the caller must ask for ``scope`` (the scope the API named, or
    ``None`` when it named none). ``status`` is the HTTP status (403, or 401).
    """

    def __init__(
        self,
        message: str = "",
        *,
        scope: str | None = None,
        status: int | None = None,
        token: Token | None = None,
        resource_metadata: str | None = None,
    ) -> None:
        super().__init__(
            message or "the API needs a scope the token lacks",
            status=status,
            token=token,
            resource_metadata=resource_metadata,
        )
        self.scope = scope


class StepUpRequired(_ChallengeError):
    """The API needs a stronger or more recent user authentication (RFC 9470 step-up,
    ``insufficient_user_authentication``).

    No refresh satisfies it: the user must authenticate again, asking the authorization server
    for ``acr_values`` (space-separated authentication context classes) and/or an authentication
    no older than ``max_age`` seconds, as the API named them (``None``: not named).
    """

    def __init__(
        self,
        message: str = "",
        *,
        acr_values: str | None = None,
        max_age: int | None = None,
        status: int | None = None,
        token: Token | None = None,
        resource_metadata: str | None = None,
    ) -> None:
        super().__init__(
            message or "the API needs a stronger user authentication",
            status=status,
            token=token,
            resource_metadata=resource_metadata,
        )
        self.acr_values = acr_values
        self.max_age = max_age
