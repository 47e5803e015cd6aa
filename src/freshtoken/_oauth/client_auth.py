"""How a client proves who it is at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2).

``auth=`` of every grant is one of the strings ``"client_secret_basic"`` (the default),
``"client_secret_post"``, ``"none"``, or a :class:`ClientSecretJWT` / :class:`PrivateKeyJWT` value.
:func:`resolve_auth` checks the choice against the credentials once, at construction, and returns
a :class:`ClientAuth` that adds the credentials to each request: headers and form fields, pure
values, a fresh assertion (new ``jti``, ``iat``, short ``exp``) every time.

Keys and secrets live in slots that no ``repr`` shows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import quote_plus

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from freshtoken._core.errors import ConfigurationError, FreshTokenError, TokenRequestError
from freshtoken._core.events import describe_error
from freshtoken._runtime.credential import NamedCredential
from freshtoken._runtime.source import callable_name, unidentified_input

__all__ = [
    "ASSERTION_TYPE",
    "AuthMethod",
    "ClientAssertion",
    "ClientAuth",
    "ClientSecretJWT",
    "PrivateKeyJWT",
    "basic_authorization",
    "check_key_algorithm",
    "resolve_auth",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Lifetime of a client assertion: long enough for one request and its clock skew, no more.
ASSERTION_LIFETIME = 60.0

PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
KeyInput: TypeAlias = str | bytes | PrivateKey | Mapping[str, Any]
SigningAlgorithm: TypeAlias = Literal["RS256", "PS256", "ES256", "EdDSA"]

_SIGNING_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")


def basic_authorization(client_id: str, client_secret: str) -> str:
    """``Basic base64(form(id):form(secret))``: RFC 6749 §2.3.1 form-encodes both *before*
    base64, so a secret with ``:``, ``+``, ``%`` or non-ASCII characters survives the trip."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


class ClientSecretJWT:
    """``client_secret_jwt``: an HS256 assertion signed with the client secret (RFC 7523 §2.2).

    ``secret`` defaults to the grant's ``client_secret``; ``audience`` to the token endpoint URL.
    """

    __slots__ = ("_secret", "audience")

    def __init__(self, secret: str | None = None, *, audience: str | None = None) -> None:
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ConfigurationError("ClientSecretJWT secret must be a non-empty string")
        if audience is not None and (not isinstance(audience, str) or not audience):
            raise ConfigurationError("ClientSecretJWT audience must be a non-empty string")
        self._secret = secret
        self.audience = audience

    def __repr__(self) -> str:
        return f"ClientSecretJWT(audience={self.audience!r})"


def _load_key(key: KeyInput) -> PrivateKey:
    loaded: object
    if isinstance(key, Mapping):
        jwk = dict(key)
        kind: Any = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}.get(
            str(jwk.get("kty"))
        )
        if kind is None:
            raise ConfigurationError(
                "PrivateKeyJWT key: a JWK needs kty RSA, EC or OKP with its private members"
            )
        try:
            loaded = kind.from_jwk(jwk)
        except (jwt.InvalidKeyError, ValueError, KeyError, TypeError):
            raise ConfigurationError("PrivateKeyJWT key: the JWK could not be loaded") from None
    elif isinstance(key, str | bytes):
        data = key.encode("utf-8") if isinstance(key, str) else key
        try:
            loaded = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnicodeError):
            raise ConfigurationError(
                "PrivateKeyJWT key: not an unencrypted PEM private key"
            ) from None
    else:
        loaded = key
    if not isinstance(
        loaded,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ConfigurationError(
            "PrivateKeyJWT key must be a private key (PEM, cryptography key or JWK), "
            f"got {type(loaded).__name__}"
        )
    return loaded


def check_key_algorithm(key: PrivateKey, algorithm: str, owner: str = "PrivateKeyJWT") -> None:
    """Refuse a key that cannot sign with ``algorithm`` (``owner`` names the caller's class)."""
    if algorithm in ("RS256", "PS256"):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError(f"{owner} algorithm {algorithm} needs an RSA key")
        if key.key_size < 2048:
            raise ConfigurationError(f"{owner} RSA keys must have at least 2048 bits")
    elif algorithm == "ES256":
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise ConfigurationError(f"{owner} algorithm ES256 needs a P-256 EC key")
    elif not isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        raise ConfigurationError(f"{owner} algorithm EdDSA needs an Ed25519 or Ed448 key")


class PrivateKeyJWT:
    """``private_key_jwt``: an assertion signed with the client's private key (RFC 7523 §2.2).

    ``key``: a PEM string or bytes (unencrypted), a ``cryptography`` private key, or a JWK dict.
    ``algorithm``: ``RS256`` (default), ``PS256``, ``ES256`` or ``EdDSA``; checked against the key.
    ``key_id`` goes in the JOSE header as ``kid``; ``audience`` defaults to the token endpoint.
    """

    __slots__ = ("_key", "algorithm", "audience", "key_id")

    def __init__(
        self,
        key: KeyInput,
        algorithm: SigningAlgorithm = "RS256",
        key_id: str | None = None,
        *,
        audience: str | None = None,
    ) -> None:
        if algorithm not in _SIGNING_ALGORITHMS:
            raise ConfigurationError(
                f"PrivateKeyJWT algorithm must be one of {', '.join(_SIGNING_ALGORITHMS)}"
            )
        if key_id is not None and (not isinstance(key_id, str) or not key_id):
            raise ConfigurationError("PrivateKeyJWT key_id must be a non-empty string")
        if audience is not None and (not isinstance(audience, str) or not audience):
            raise ConfigurationError("PrivateKeyJWT audience must be a non-empty string")
        loaded = _load_key(key)
        check_key_algorithm(loaded, algorithm)
        self._key = loaded
        self.algorithm: str = algorithm
        self.key_id = key_id
        self.audience = audience

    def __repr__(self) -> str:
        return f"PrivateKeyJWT(algorithm={self.algorithm!r}, key_id={self.key_id!r})"


AssertionSource: TypeAlias = str | Callable[[], str]


class ClientAssertion:
    """RFC 7523 §2.2 client authentication with an assertion the client did not sign itself.

    ``ClientAssertion(source)``: each token request carries
    ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and
    ``client_assertion=<the source's current value>``, plus ``client_id`` when the grant has one:
    the shape of Entra ID workload identity, where the assertion is the platform's token (a
    Kubernetes projected service-account token). ``source`` is a :class:`~freshtoken.TokenFile`,
    a string, or a callable returning one (called per request; a callable other than a plain
    module-level function needs the grant's ``key=`` for a shared store).
    """

    __slots__ = ("_source",)

    def __init__(self, source: AssertionSource) -> None:
        if not (isinstance(source, str) and source) and not callable(source):
            raise ConfigurationError(
                "ClientAssertion needs a TokenFile, a non-empty string or a callable returning one"
            )
        self._source = source

    def __repr__(self) -> str:
        shown = repr(self._source) if isinstance(self._source, NamedCredential) else "..."
        return f"ClientAssertion({shown})"

    @property
    def source(self) -> AssertionSource:
        """Where the assertion comes from (as given)."""
        return self._source

    @property
    def identity(self) -> str:
        """What names the assertion's principal in a store key (never the assertion itself)."""
        source = self._source
        if isinstance(source, NamedCredential):
            return source.key
        if isinstance(source, str):
            return "sha256:" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        return f"callable:{callable_name(source)}"

    @property
    def unidentified(self) -> str | None:
        """What of the source a derived key cannot tell apart (see ``require_identity``)."""
        if isinstance(self._source, NamedCredential | str):
            return None
        return unidentified_input("client assertion callable", self._source)

    def value(self) -> str:
        """The assertion to send now (TokenRequestError when the callable fails)."""
        source = self._source
        if isinstance(source, str):
            return source
        try:
            result = source()
        except FreshTokenError:
            raise
        except Exception as error:
            raise TokenRequestError(
                f"the client assertion callable {callable_name(source)} raised "
                f"{describe_error(error)}"
            ) from error
        if not isinstance(result, str) or not result:
            raise TokenRequestError(
                f"the client assertion callable {callable_name(source)} returned "
                f"{type(result).__name__}, not a non-empty string"
            )
        return result


AuthMethod: TypeAlias = (
    Literal["client_secret_basic", "client_secret_post", "none"]
    | ClientSecretJWT
    | PrivateKeyJWT
    | ClientAssertion
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request carries to authenticate the client."""

    headers: Mapping[str, str]
    form: tuple[tuple[str, str], ...]


class ClientAuth:
    """A resolved authentication method, bound to one client id and secret."""

    __slots__ = ("_client_id", "_jwt_audience", "_method", "_secret", "name")

    def __init__(
        self,
        name: str,
        client_id: str | None,
        secret: str | None,
        method: ClientSecretJWT | PrivateKeyJWT | ClientAssertion | None,
    ) -> None:
        self.name = name
        self._client_id = client_id
        self._secret = secret
        self._method = method
        self._jwt_audience = (
            None if method is None or isinstance(method, ClientAssertion) else method.audience
        )

    def __repr__(self) -> str:
        return f"ClientAuth({self.name!r})"

    @property
    def identity(self) -> str | None:
        """The assertion source's identity for ``ClientAssertion``, else ``None``."""
        return self._method.identity if isinstance(self._method, ClientAssertion) else None

    @property
    def unidentified(self) -> str | None:
        """For ``ClientAssertion``: what its source's name cannot tell apart, else ``None``."""
        return self._method.unidentified if isinstance(self._method, ClientAssertion) else None

    @property
    def source(self) -> object:
        """The ``ClientAssertion``'s source (a credential the grant may prepare), else ``None``."""
        return self._method.source if isinstance(self._method, ClientAssertion) else None

    def secrets(self) -> tuple[str, ...]:
        """The secret this method holds, if any: never sent in the clear by
        ``client_secret_basic`` or ``client_secret_jwt``, but a server may still echo it."""
        return () if self._secret is None else (self._secret,)

    def credentials(self, token_url: str, now: float) -> Credentials:
        """Headers and form fields for one request to ``token_url`` at wall time ``now``."""
        client_id = self._client_id
        if self.name == "client_secret_basic":
            assert client_id is not None
            assert self._secret is not None
            return Credentials({"Authorization": basic_authorization(client_id, self._secret)}, ())
        if self.name == "client_secret_post":
            assert client_id is not None
            assert self._secret is not None
            return Credentials({}, (("client_id", client_id), ("client_secret", self._secret)))
        if self.name == "none":
            return Credentials({}, () if client_id is None else (("client_id", client_id),))
        if self.name == "anonymous":
            return Credentials({}, ())
        if isinstance(self._method, ClientAssertion):
            fields = () if client_id is None else (("client_id", client_id),)
            return Credentials(
                {},
                (
                    *fields,
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", self._method.value()),
                ),
            )
        assert client_id is not None
        assertion = self._assertion(client_id, self._jwt_audience or token_url, now)
        return Credentials(
            {},
            (
                ("client_id", client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion),
            ),
        )

    def _assertion(self, client_id: str, audience: str, now: float) -> str:
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(24),
            "iat": int(now),
            "exp": int(now + ASSERTION_LIFETIME),
        }
        method = self._method
        if isinstance(method, PrivateKeyJWT):
            headers = None if method.key_id is None else {"kid": method.key_id}
            return jwt.encode(claims, method._key, algorithm=method.algorithm, headers=headers)
        assert self._secret is not None
        return _hs256(claims, self._secret.encode("utf-8"))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hs256(claims: Mapping[str, object], key: bytes) -> str:
    """A compact HS256 JWS. Signed here rather than by PyJWT, which warns (an error under
    ``-W error``) about secrets shorter than 32 bytes: the client does not choose its secret, the
    server that issued it does, so the warning would only break the caller."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def resolve_auth(
    auth: object, client_id: str | None, client_secret: str | None, *, required: bool = True
) -> ClientAuth:
    """Check ``auth`` against the credentials and bind them (ConfigurationError if they clash).

    ``required=False`` (JWT bearer grant) allows no client at all: with no ``client_id`` the
    request carries no client authentication.
    """
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise ConfigurationError("client_id must be a non-empty string")
    if client_secret is not None and (not isinstance(client_secret, str) or not client_secret):
        raise ConfigurationError("client_secret must be a non-empty string")
    if isinstance(auth, ClientAssertion):
        if client_secret is not None:
            raise ConfigurationError("ClientAssertion sends no secret; drop client_secret")
        return ClientAuth("client_assertion", client_id, None, auth)
    if client_id is None:
        if required:
            raise ConfigurationError("client_id is required")
        if client_secret is not None or not (auth is None or auth == "none"):
            raise ConfigurationError("client authentication needs a client_id")
        return ClientAuth("anonymous", None, None, None)
    if auth is None:
        auth = "client_secret_basic" if client_secret is not None or required else "none"
    if auth in ("client_secret_basic", "client_secret_post"):
        if client_secret is None:
            raise ConfigurationError(f"auth={auth!r} needs a client_secret")
        return ClientAuth(str(auth), client_id, client_secret, None)
    if auth == "none":
        if client_secret is not None:
            raise ConfigurationError("auth='none' sends no secret; drop client_secret")
        return ClientAuth("none", client_id, None, None)
    if isinstance(auth, ClientSecretJWT):
        secret = auth._secret if auth._secret is not None else client_secret
        if secret is None:
            raise ConfigurationError("ClientSecretJWT needs a client_secret")
        return ClientAuth("client_secret_jwt", client_id, secret, auth)
    if isinstance(auth, PrivateKeyJWT):
        return ClientAuth("private_key_jwt", client_id, None, auth)
    # Show a string only when it looks like a method name: a secret passed here by mistake
    # must not end up in the message.
    named = isinstance(auth, str) and len(auth) <= 40 and auth.replace("_", "").isalpha()
    shown = repr(auth) if named else type(auth).__name__
    raise ConfigurationError(
        f"auth={shown} is not a client authentication method; use 'client_secret_basic', "
        "'client_secret_post', 'none', ClientSecretJWT(...), PrivateKeyJWT(...) or "
        "ClientAssertion(...)"
    )
