"""freshtoken: keep OAuth2 and JWT access tokens fresh.

One token request per token lifetime, whatever the concurrency; no caller waits while a usable
token exists; token-endpoint outages ridden out on the current token; a safe 401 path; tokens that
never reach a log.

    import freshtoken as ft

    tokens = ft.TokenManager(ft.ClientCredentials(token_url, client_id, client_secret))

    @tokens.authenticated
    def list_users(token: ft.Token, page: int) -> dict: ...
"""

from ._core.errors import (
    ConfigurationError,
    FreshTokenError,
    InsufficientScope,
    OAuthError,
    StepUpRequired,
    TokenEndpointUnavailable,
    TokenRequestError,
    TokenResponseError,
    Unauthorized,
)
from ._core.events import Event, LoggingEvents
from ._core.policy import RefreshPolicy
from ._core.token import Token
from ._oauth.client_auth import ClientAssertion, ClientSecretJWT, PrivateKeyJWT
from ._oauth.dpop import DPoPKey
from ._oauth.github_oidc import GitHubActionsOIDC
from ._oauth.grants import (
    ClientCredentials,
    JWTBearerGrant,
    PasswordGrant,
    RefreshTokenGrant,
    TokenExchange,
)
from ._oauth.resource import adiscover_resource, discover_resource
from ._runtime.clock import Clock, SystemClock
from ._runtime.decorators import authenticated
from ._runtime.manager import TokenManager
from ._runtime.source import FetchContext, FunctionSource, TokenSource
from ._runtime.tokenfile import TokenFile
from ._stores.filestore import FileStore
from ._stores.memorystore import MemoryStore
from ._stores.store import SharedFetcher, Store

__version__ = "0.1.0"

__all__ = [
    "ClientAssertion",
    "ClientCredentials",
    "ClientSecretJWT",
    "Clock",
    "ConfigurationError",
    "DPoPKey",
    "Event",
    "FetchContext",
    "FileStore",
    "FreshTokenError",
    "FunctionSource",
    "GitHubActionsOIDC",
    "InsufficientScope",
    "JWTBearerGrant",
    "LoggingEvents",
    "MemoryStore",
    "OAuthError",
    "PasswordGrant",
    "PrivateKeyJWT",
    "RefreshPolicy",
    "RefreshTokenGrant",
    "SharedFetcher",
    "StepUpRequired",
    "Store",
    "SystemClock",
    "Token",
    "TokenEndpointUnavailable",
    "TokenExchange",
    "TokenFile",
    "TokenManager",
    "TokenRequestError",
    "TokenResponseError",
    "TokenSource",
    "Unauthorized",
    "adiscover_resource",
    "authenticated",
    "discover_resource",
]
