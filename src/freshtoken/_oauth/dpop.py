"""DPoP (RFC 9449): a key the client proves it holds, and the proofs that prove it.

A DPoP-bound access token is useless without the private key it was bound to: each request
carries a fresh *proof*, a JWT signed with that key over the request's method and URL (and, for a
resource request, over the access token). A stolen token alone gets nowhere.

:class:`DPoPKey` holds the private key (never shown: its ``repr`` names the algorithm and the
public key's RFC 7638 thumbprint only) and the newest ``DPoP-Nonce`` each server gave (RFC 9449
§8, §9). The claims of a proof are built by pure functions (:func:`proof_claims`, :func:`htu`)
that take the time and the ``jti`` as arguments; PyJWT signs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias
from urllib.parse import quote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from freshtoken._core.errors import ConfigurationError
from freshtoken._runtime.forksafe import fork_safe_lock

from .client_auth import PrivateKey, check_key_algorithm
from .http import HttpResponse
from .response import peek_error_code

__all__ = [
    "ALGORITHMS",
    "DPoPKey",
    "DPoPPresenter",
    "asks_for_nonce",
    "htu",
    "origin",
    "proof_claims",
    "response_nonce",
    "thumbprint",
]

DPoPAlgorithm: TypeAlias = Literal["ES256", "RS256", "PS256", "EdDSA"]
#: The signing algorithms a DPoP key may use (RFC 9449 §4.2 asks for an asymmetric one).
ALGORITHMS: tuple[str, ...] = ("ES256", "RS256", "PS256", "EdDSA")

#: A PEM or JWK larger than this is refused before parsing (an RSA-8192 PEM is under 7 KiB).
_MAX_KEY_INPUT = 64 * 1024
#: RFC 9449 §8.1: ``nonce = 1*NQCHAR``; longer than this is taken for garbage, not a nonce.
_MAX_NONCE = 1024
_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
#: RFC 9110 §5.6.2 ``token``: what an HTTP method may be.
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: The origins whose nonces are kept; past this the least recently seen is forgotten.
_MAX_ORIGINS = 256
#: RFC 7638 §3.2: the members of each key type that the thumbprint is computed over.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _new_jti() -> str:
    return secrets.token_urlsafe(24)


# -- the claims (pure) --------------------------------------------------------------------------


def _normal_path(path: str) -> str:
    """RFC 3986 §6.2.2: percent-encodings in upper case, unreserved characters decoded, dot
    segments removed (§5.2.4); an empty path is ``/`` (§6.2.3)."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    path = re.sub(r"%([0-9A-Fa-f]{2})", fix, path)
    output: list[str] = []
    for segment in path.split("/")[1:] if path.startswith("/") else path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.split("/")[-1] in (".", ".."):
        output.append("")  # "/a/." and "/a/.." end with a slash
    result = "/" + "/".join(output)
    # Characters no URI may hold raw (a space, non-ASCII) are percent-encoded as a client sends
    # them; what is already encoded stays as it is.
    return quote(result, safe="/%!$&'()*+,;=:@-._~")


def _parts(url: object, what: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port or None, path) of an absolute http(s) URL; ConfigurationError
    naming ``what`` otherwise. The URL itself is not quoted in the message: it may carry a
    query with secrets in it."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{what} must be an absolute http:// or https:// URL")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ConfigurationError(f"{what} contains a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"{what} has an invalid host or port") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigurationError(f"{what} must be an absolute http:// or https:// URL")
    host = parts.hostname.lower()  # urlsplit lower-cases too; said here for the reader
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ConfigurationError(f"{what} has a host name that is not valid IDNA") from None
    if any(ch.isspace() or ch in '<>"{}|\\^`' for ch in host):
        raise ConfigurationError(f"{what} has an invalid host")
    if ":" in host:
        host = f"[{host}]"
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    return scheme, host, port, parts.path


def htu(url: str) -> str:
    """The ``htu`` claim for ``url`` (RFC 9449 §4.2, §4.3): scheme, authority and path, without
    query and fragment, normalised as RFC 3986 §6.2.2 and §6.2.3 say (scheme and host in lower
    case, the default port dropped, percent-encodings normalised, dot segments removed), so that
    the server, which compares the same normal form, agrees."""
    scheme, host, port, path = _parts(url, "the request URL")
    authority = host if port is None else f"{host}:{port}"
    return f"{scheme}://{authority}{_normal_path(path)}"


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (default port dropped): the key of the nonce cache,
    since a nonce is a server's (RFC 9449 §8: each server its own)."""
    scheme, host, port, _ = _parts(url, "the request URL")
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


def access_token_hash(access_token: str) -> str:
    """The ``ath`` claim (RFC 9449 §4.2): base64url SHA-256 of the ASCII access token."""
    return _b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def proof_claims(
    method: str,
    url: str,
    *,
    now: float,
    jti: str,
    nonce: str | None = None,
    access_token: str | None = None,
) -> dict[str, object]:
    """The claims of one DPoP proof (RFC 9449 §4.2). Pure: ``now`` (wall-clock seconds) and
    ``jti`` come from the caller. ``access_token`` given: a resource request, so ``ath`` binds
    the proof to that token."""
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise ConfigurationError("the HTTP method must be a token such as GET or POST")
    claims: dict[str, object] = {
        "jti": jti,
        "htm": method.upper(),
        "htu": htu(url),
        "iat": int(now),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    return claims


def thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 JWK thumbprint: base64url SHA-256 of the required public members, in
    lexicographic order, as compact JSON."""
    members = _THUMBPRINT_MEMBERS[str(jwk["kty"])]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


# -- nonces -------------------------------------------------------------------------------------


def response_nonce(response: HttpResponse) -> str | None:
    """The response's ``DPoP-Nonce`` when it is a well-formed nonce (RFC 9449 §8.1), else
    ``None``: a malformed one is ignored rather than echoed to the server in a proof."""
    return _valid_nonce(response.header("dpop-nonce"))


def _valid_nonce(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > _MAX_NONCE or not _NONCE.fullmatch(value):
        return None
    return value


def asks_for_nonce(response: HttpResponse) -> bool:
    """Whether ``response`` is an authorization server's demand for a nonce (RFC 9449 §8):
    ``400`` with ``error=use_dpop_nonce`` and a usable ``DPoP-Nonce`` header. Such an answer is
    sent again at once with the nonce; it is neither a failure nor a backoff step."""
    return (
        response.status == 400
        and peek_error_code(response) == "use_dpop_nonce"
        and response_nonce(response) is not None
    )


class _Nonces:
    """The newest nonce per origin, shared by the threads using one key; bounded."""

    __slots__ = ("_lock", "_nonces")

    def __init__(self) -> None:
        self._lock = fork_safe_lock()
        self._nonces: OrderedDict[str, str] = OrderedDict()

    def get(self, origin: str) -> str | None:
        with self._lock:
            return self._nonces.get(origin)

    def put(self, origin: str, nonce: str) -> None:
        with self._lock:
            self._nonces[origin] = nonce
            self._nonces.move_to_end(origin)
            while len(self._nonces) > _MAX_ORIGINS:
                self._nonces.popitem(last=False)


# -- the key ------------------------------------------------------------------------------------


def _default_algorithm(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES256"
    return "EdDSA"


def _check_algorithm(algorithm: object) -> None:
    if algorithm not in ALGORITHMS:
        shown = repr(algorithm) if isinstance(algorithm, str) and len(algorithm) <= 10 else "it"
        raise ConfigurationError(
            f"DPoPKey algorithm {shown} is not supported: use one of {', '.join(ALGORITHMS)}"
        )


def _check(key: object, algorithm: object) -> tuple[PrivateKey, str]:
    """The key and its algorithm, checked against each other; ConfigurationError otherwise."""
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ConfigurationError(
            f"DPoPKey needs an RSA, EC P-256 or Ed25519/Ed448 private key, got {type(key).__name__}"
        )
    if algorithm is None:
        algorithm = _default_algorithm(key)
    _check_algorithm(algorithm)
    assert isinstance(algorithm, str)
    check_key_algorithm(key, algorithm, "DPoPKey")
    return key, algorithm


def _public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK of ``key`` with its required members only (RFC 7638 §3.2)."""
    public = key.public_key()
    kind: Any
    if isinstance(public, rsa.RSAPublicKey):
        kind, kty = RSAAlgorithm, "RSA"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        kind, kty = ECAlgorithm, "EC"
    else:
        kind, kty = OKPAlgorithm, "OKP"
    full = kind.to_jwk(public, as_dict=True)
    return {name: str(full[name]) for name in _THUMBPRINT_MEMBERS[kty]}


class DPoPKey:
    """A DPoP key pair (RFC 9449): what a DPoP-bound token is bound to.

    Build one with :meth:`generate`, :meth:`from_pem` or :meth:`from_jwk` (or from a
    ``cryptography`` private key: ``DPoPKey(private_key, algorithm=None)``). ``algorithm`` is
    ``ES256`` (the default for EC keys and for :meth:`generate`), ``RS256`` (the default for RSA
    keys), ``PS256`` or ``EdDSA``.

    ``thumbprint`` is the RFC 7638 SHA-256 thumbprint of the public key (what a server puts in a
    bound token's ``cnf.jkt``); ``public_jwk`` the public key as a JWK. The private key never
    appears in a ``repr``, a message or a log. The key also remembers the newest ``DPoP-Nonce``
    each server sent (:meth:`remember_nonce`), so every proof it signs carries it.
    """

    __slots__ = ("_jti", "_nonces", "_private", "_public", "algorithm", "thumbprint")

    algorithm: str
    thumbprint: str

    def __init__(
        self,
        private_key: PrivateKey,
        algorithm: DPoPAlgorithm | None = None,
        *,
        jti: Callable[[], str] | None = None,
    ) -> None:
        self._private, self.algorithm = _check(private_key, algorithm)
        self._public = _public_jwk(self._private)
        self.thumbprint = thumbprint(self._public)
        self._nonces = _Nonces()
        self._jti: Callable[[], str] = _new_jti if jti is None else jti

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def generate(cls, algorithm: DPoPAlgorithm = "ES256") -> DPoPKey:
        """A new key for ``algorithm`` (P-256 for ES256, RSA-2048 for RS256/PS256, Ed25519 for
        EdDSA). It lives in this process only: keep it (:meth:`from_pem`) to share tokens."""
        _check_algorithm(algorithm)
        key: PrivateKey
        if algorithm == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif algorithm in ("RS256", "PS256"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        return cls(key, algorithm)

    @classmethod
    def from_pem(
        cls,
        data: str | bytes,
        password: str | bytes | None = None,
        *,
        algorithm: DPoPAlgorithm | None = None,
    ) -> DPoPKey:
        """The key in a PEM private key (PKCS#8 or traditional; encrypted ones need
        ``password``). ``algorithm`` defaults to the key's (RSA: RS256)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        if not isinstance(data, bytes):
            raise ConfigurationError(
                f"DPoPKey.from_pem needs PEM text as str or bytes, not {type(data).__name__}"
            )
        if len(data) > _MAX_KEY_INPUT:
            raise ConfigurationError("DPoPKey.from_pem: the PEM is larger than 64 KiB")
        if isinstance(password, str):
            password = password.encode("utf-8")
        if password is not None and not isinstance(password, bytes):
            raise ConfigurationError("DPoPKey.from_pem password must be a str, bytes or None")
        if b"-----BEGIN" not in data:
            raise ConfigurationError("DPoPKey.from_pem: the data is not PEM (no BEGIN line)")
        if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
            raise ConfigurationError(
                "DPoPKey.from_pem: this is a public key; proofs need the private key"
            )
        try:
            loaded = serialization.load_pem_private_key(data, password=password)
        except TypeError:
            # Raised both for "encrypted, no password given" and "password given, not encrypted".
            raise ConfigurationError(
                "DPoPKey.from_pem: the key is encrypted and needs password="
                if password is None
                else "DPoPKey.from_pem: the key is not encrypted; drop password="
            ) from None
        except Exception:  # ValueError, UnsupportedAlgorithm, ...: never quote what was given
            raise ConfigurationError(
                "DPoPKey.from_pem: not a PEM private key, or the password does not decrypt it"
            ) from None
        return cls(loaded, algorithm)  # type: ignore[arg-type]  # checked by _check

    @classmethod
    def from_jwk(
        cls, jwk: Mapping[str, object] | str, *, algorithm: DPoPAlgorithm | None = None
    ) -> DPoPKey:
        """The key in a private JWK (a mapping, or its JSON text): ``kty`` RSA, EC (P-256) or
        OKP (Ed25519/Ed448) with the private members. The JWK's ``alg``, when present, is the
        algorithm (``algorithm=`` must then agree)."""
        if isinstance(jwk, str):
            if len(jwk) > _MAX_KEY_INPUT:
                raise ConfigurationError("DPoPKey.from_jwk: the JWK is larger than 64 KiB")
            try:
                jwk = json.loads(jwk)
            except (ValueError, RecursionError):
                raise ConfigurationError("DPoPKey.from_jwk: the text is not JSON") from None
        if not isinstance(jwk, Mapping):
            raise ConfigurationError(
                f"DPoPKey.from_jwk needs a JWK mapping or its JSON, not {type(jwk).__name__}"
            )
        data = dict(jwk)
        kty = data.get("kty")
        kind: Any = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}.get(
            kty if isinstance(kty, str) else ""
        )
        if kind is None:
            raise ConfigurationError("DPoPKey.from_jwk: the JWK needs kty RSA, EC or OKP")
        if "d" not in data:
            raise ConfigurationError(
                "DPoPKey.from_jwk: the JWK has no private member d; proofs need the private key"
            )
        alg = data.get("alg")
        if alg is not None:
            if not isinstance(alg, str) or alg not in ALGORITHMS:
                raise ConfigurationError(
                    f"DPoPKey.from_jwk: the JWK's alg is not one of {', '.join(ALGORITHMS)}"
                )
            if algorithm is not None and algorithm != alg:
                raise ConfigurationError(
                    f"DPoPKey.from_jwk: algorithm={algorithm} disagrees with the JWK's alg {alg}"
                )
            algorithm = alg  # type: ignore[assignment]
        try:
            loaded = kind.from_jwk(data)
        except Exception:  # InvalidKeyError, ValueError, KeyError, ...: never quote the JWK
            raise ConfigurationError(
                f"DPoPKey.from_jwk: the {kty} JWK could not be loaded (a member is missing or "
                "malformed)"
            ) from None
        return cls(loaded, algorithm)

    # -- what it shows ------------------------------------------------------------------------

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (required members only; a fresh dict each time)."""
        return dict(self._public)

    def __repr__(self) -> str:
        return f"DPoPKey(algorithm={self.algorithm!r}, thumbprint={self.thumbprint!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # A private key must not travel by accident (pickled into a cache, a queue, a log).
        raise TypeError("a DPoPKey cannot be pickled: share it as a PEM (DPoPKey.from_pem)")

    # -- nonces -------------------------------------------------------------------------------

    def remember_nonce(self, url: str, nonce: str) -> None:
        """Keep ``nonce`` (a server's ``DPoP-Nonce`` header) for the origin of ``url``: later
        proofs to that origin carry it. A malformed nonce is ignored. freshtoken calls this for
        the token endpoint's responses; call it for a resource's ``DPoP-Nonce`` headers when you
        send requests yourself with :meth:`~freshtoken.Token.headers`."""
        valid = _valid_nonce(nonce)
        if valid is not None:
            self._nonces.put(origin(url), valid)

    def nonce_for(self, url: str) -> str | None:
        """The newest nonce the origin of ``url`` gave, or ``None``."""
        return self._nonces.get(origin(url))

    def _observe(self, url: str, response: HttpResponse) -> None:
        """Keep the nonce of any response from ``url`` (a success may rotate it too)."""
        nonce = response_nonce(response)
        if nonce is not None:
            self._nonces.put(origin(url), nonce)

    # -- proofs -------------------------------------------------------------------------------

    def proof(
        self,
        method: str,
        url: str,
        *,
        now: float,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A signed DPoP proof for one request (RFC 9449 §4.2), with a fresh ``jti``; the nonce
        is ``nonce``, else the one remembered for ``url``'s origin. ``now``: wall-clock seconds."""
        claims = proof_claims(
            method,
            url,
            now=now,
            jti=self._jti(),
            nonce=nonce if nonce is not None else self.nonce_for(url),
            access_token=access_token,
        )
        headers = {"typ": "dpop+jwt", "jwk": self._public}
        return jwt.encode(claims, self._private, algorithm=self.algorithm, headers=headers)


class DPoPPresenter:
    """What a DPoP-bound :class:`~freshtoken.Token` signs its resource proofs with: the key and
    the clock of the manager that obtained it (``Token.headers`` calls it)."""

    __slots__ = ("_key", "_time")

    def __init__(self, key: DPoPKey, time: Callable[[], float]) -> None:
        self._key = key
        self._time = time

    @property
    def key(self) -> DPoPKey:
        return self._key

    def __call__(self, method: str, url: str, access_token: str) -> str:
        return self._key.proof(method, url, now=self._time(), access_token=access_token)

    def __repr__(self) -> str:
        return f"DPoPPresenter({self._key!r})"
