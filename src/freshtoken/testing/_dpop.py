"""DPoP (RFC 9449) on the server side: proof verification, rotating nonces, the replay cache.

A DPoP proof is a JWT the client signs with its own key for one HTTP request. The server checks it
the way RFC 9449 §4.3 lists (one ``DPoP`` header, ``typ: dpop+jwt``, an asymmetric ``alg``, a public
``jwk`` whose signature verifies, ``jti``, ``htm``, ``htu``, ``iat`` within a window, ``nonce`` when
it asks for one, ``ath`` at the resource) and binds the token it issues to the key's RFC 7638
thumbprint (``cnf.jkt``). Every check is strict and every failure names its reason, because the
point of this server is to show a client's mistake, not to forgive it.

Keys and signatures go through PyJWT and ``cryptography`` (the same loaders the server uses for
client keys); nothing here parses JOSE by hand. Times come from the server's clock, so a
``FakeClock`` moves the ``iat`` window and the nonce rotation.
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from freshtoken._runtime.clock import Clock
from freshtoken.testing._keys import (
    algorithms_for,
    jwk_thumbprint,
    load_public_key,
    verify_signature,
)

__all__ = [
    "DPOP_ALGORITHMS",
    "DPoPVerifier",
    "Proof",
    "ProofError",
    "access_token_hash",
    "normalize_htu",
    "request_url",
]

#: The proof algorithms accepted: asymmetric only (RFC 9449 §4.3 item 5 forbids ``none`` and MACs).
DPOP_ALGORITHMS: tuple[str, ...] = ("ES256", "RS256", "PS256", "EdDSA")
#: Longer than any honest proof (an RS256 proof with a 4096-bit key is under 2 KiB).
MAX_PROOF_LENGTH = 8192
MAX_JTI_LENGTH = 256
_MIN_RSA_BITS = 2048
#: JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_REQUIRED_MEMBERS = {"EC": ("crv", "x", "y"), "RSA": ("e", "n"), "OKP": ("crv", "x")}
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: RFC 3986 §2.3: characters whose percent-encoding is equivalent to the character itself.
_UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
_DPOP_ERRORS = ("invalid_dpop_proof", "use_dpop_nonce")


class ProofError(Exception):
    """A proof the server refuses: ``error`` is ``invalid_dpop_proof`` or ``use_dpop_nonce``.

    The description names the failed check and never quotes the proof, its key or the token.
    """

    def __init__(self, error: str, description: str) -> None:
        assert error in _DPOP_ERRORS
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def _invalid(description: str) -> ProofError:
    return ProofError("invalid_dpop_proof", description)


@dataclass(frozen=True)
class Proof:
    """An accepted proof: what the token endpoint binds and the resource compares."""

    jkt: str
    jti: str


def access_token_hash(access_token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url, unpadded, of SHA-256 over the token's ASCII bytes."""
    digest = hashlib.sha256(access_token.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _normalize_path(path: str) -> str:
    """RFC 3986 §6.2.2: percent-encodings in upper case, unreserved characters decoded."""
    if "%" not in path:
        return path or "/"
    pieces = path.split("%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        code, rest = piece[:2], piece[2:]
        if len(code) == 2 and all(c in "0123456789abcdefABCDEF" for c in code):
            char = unquote("%" + code)
            out.append((char if char in _UNRESERVED else quote(char, safe="")) + rest)
        else:
            out.append("%" + piece)
    return "".join(out) or "/"


def normalize_htu(url: str) -> str | None:
    """The comparable form of an ``htu`` or request URL (RFC 9449 §4.3 item 9, RFC 3986 §6).

    Query and fragment are dropped; scheme and host compare case-insensitively; a default port is
    the same as none; an empty path is ``/``. ``None`` for what is not an absolute http(s) URL
    (or carries user information, which no request URL has).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{_normalize_path(parts.path)}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Nonces:
    """Server nonces (RFC 9449 §8): one current, the one before it accepted for ``grace`` more.

    Rotation is lazy, computed from the clock whenever a nonce is asked for, so a ``FakeClock``
    rotates nonces exactly when it crosses a ``lifetime`` boundary. Not locked: the verifier
    holds its lock around every call.
    """

    def __init__(self, now: float, lifetime: float, grace: float) -> None:
        self.lifetime = lifetime
        self.grace = grace
        self.current = secrets.token_urlsafe(16)
        self.since = now
        self.previous: str | None = None
        self.previous_until = now

    def tick(self, now: float) -> None:
        elapsed = now - self.since
        if elapsed < self.lifetime:
            return
        # The current nonce was due for replacement at since + lifetime; its grace runs from
        # then, however late we notice (the nonces in between were never handed out).
        due = self.since + self.lifetime
        self.previous, self.previous_until = self.current, due + self.grace
        self.current = secrets.token_urlsafe(16)
        self.since = self.since + self.lifetime * math.floor(elapsed / self.lifetime)

    def rotate(self, now: float) -> str:
        self.previous, self.previous_until = self.current, now + self.grace
        self.current = secrets.token_urlsafe(16)
        self.since = now
        return self.current

    def accepts(self, nonce: str, now: float) -> bool:
        if secrets.compare_digest(nonce.encode(), self.current.encode()):
            return True
        return (
            self.previous is not None
            and now < self.previous_until
            and secrets.compare_digest(nonce.encode(), self.previous.encode())
        )


class DPoPVerifier:
    """Checks proofs for the token and resource endpoints of one server. Thread-safe.

    ``iat_window`` (seconds) is how far a proof's ``iat`` may be from the server's clock, in the
    past or the future; a ``jti`` is remembered for as long as its proof could be accepted, in a
    cache of at most ``replay_limit`` entries. With ``nonce`` on, every proof must carry a current
    server nonce: nonces rotate every ``nonce_lifetime`` seconds and the one before stays accepted
    for ``nonce_grace`` seconds after it is replaced.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        iat_window: float = 60.0,
        nonce: bool = False,
        nonce_lifetime: float = 60.0,
        nonce_grace: float = 10.0,
        replay_limit: int = 100_000,
    ) -> None:
        if not iat_window > 0:
            raise ValueError("dpop_iat_window must be > 0")
        if not nonce_lifetime > 0:
            raise ValueError("dpop_nonce_lifetime must be > 0")
        if not nonce_grace >= 0:
            raise ValueError("dpop_nonce_grace must be >= 0")
        if replay_limit < 1:
            raise ValueError("replay_limit must be >= 1")
        self._clock = clock
        self.iat_window = iat_window
        self._replay_limit = replay_limit
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}
        self._nonces = _Nonces(clock.time(), nonce_lifetime, nonce_grace) if nonce else None

    # -- nonces ---------------------------------------------------------------------------

    def current_nonce(self) -> str | None:
        """The nonce the server hands out now (``None`` when nonce mode is off)."""
        if self._nonces is None:
            return None
        with self._lock:
            self._nonces.tick(self._clock.time())
            return self._nonces.current

    def rotate_nonce(self) -> str:
        """Replace the current nonce now; the replaced one keeps its grace period."""
        if self._nonces is None:
            raise RuntimeError("DPoP nonces are off; start the server with dpop_nonce=True")
        with self._lock:
            return self._nonces.rotate(self._clock.time())

    # -- proofs ---------------------------------------------------------------------------

    def verify(
        self,
        value: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        clock_offset: float = 0.0,
    ) -> Proof:
        """Check the ``DPoP`` header ``value`` of a ``method`` request to ``url``.

        ``access_token`` is given at the resource, where the proof must carry its ``ath``.
        Raises :class:`ProofError`; the ``jti`` is remembered only once everything passed, so a
        proof refused for a missing nonce does not burn the ``jti`` of a corrected retry.
        """
        if len(value) > MAX_PROOF_LENGTH:
            raise _invalid(f"the DPoP proof is longer than {MAX_PROOF_LENGTH} characters")
        if "," in value:  # the HTTP layer joins repeated headers with ", "
            raise _invalid("more than one DPoP header")
        if not value.strip():
            raise _invalid("the DPoP header is empty")
        jkt, claims = self._verify_jws(value.strip())
        jti = self._check_claims(claims, method=method, url=url, access_token=access_token)
        now = self._clock.time() + clock_offset
        iat = float(claims["iat"])
        if iat < now - self.iat_window:
            raise _invalid("the DPoP proof's iat is too old")
        if iat > now + self.iat_window:
            raise _invalid("the DPoP proof's iat is in the future")
        with self._lock:
            if self._nonces is not None:
                wall = self._clock.time()
                self._nonces.tick(wall)
                nonce = claims.get("nonce")
                if not isinstance(nonce, str) or not self._nonces.accepts(nonce, wall):
                    problem = "missing" if nonce is None else "not a current server nonce"
                    raise ProofError("use_dpop_nonce", f"the DPoP proof's nonce is {problem}")
            self._remember(jkt, jti, iat, now)
        return Proof(jkt=jkt, jti=jti)

    def _verify_jws(self, value: str) -> tuple[str, dict[str, Any]]:
        """Header, key and signature: the key's thumbprint and the (unchecked) claims."""
        try:
            header = jwt.get_unverified_header(value)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _invalid("the DPoP proof is not a JWS") from None
        if header.get("typ") != "dpop+jwt":
            raise _invalid("the DPoP proof's typ must be dpop+jwt")
        algorithm = header.get("alg")
        if algorithm not in DPOP_ALGORITHMS:
            allowed = ", ".join(DPOP_ALGORITHMS)
            raise _invalid(f"the DPoP proof's alg must be one of {allowed}")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise _invalid("the DPoP proof's header has no jwk")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise _invalid("the DPoP proof's jwk holds private key members")
        kty = jwk.get("kty")
        required = _REQUIRED_MEMBERS.get(kty) if isinstance(kty, str) else None
        if required is None or not all(isinstance(jwk.get(name), str) for name in required):
            raise _invalid("the DPoP proof's jwk is not an EC, RSA or OKP public key")
        try:
            key = load_public_key(jwk)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise _invalid("the DPoP proof's jwk is not a usable public key") from None
        if algorithm not in algorithms_for(key):
            raise _invalid(f"the DPoP proof's jwk does not fit alg {algorithm}")
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
            raise _invalid(f"the DPoP proof's RSA key is shorter than {_MIN_RSA_BITS} bits")
        try:
            claims = verify_signature(value, key, [algorithm])
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise _invalid("the DPoP proof's signature does not verify") from None
        except jwt.PyJWTError:
            raise _invalid("the DPoP proof's payload is not a JSON object") from None
        return jwk_thumbprint(jwk), claims

    @staticmethod
    def _check_claims(
        claims: dict[str, Any], *, method: str, url: str, access_token: str | None
    ) -> str:
        """``jti``, ``htm``, ``htu``, ``ath`` and the type of ``iat``; return the ``jti``."""
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _invalid("the DPoP proof needs a jti")
        if len(jti) > MAX_JTI_LENGTH:
            raise _invalid(f"the DPoP proof's jti is longer than {MAX_JTI_LENGTH} characters")
        if not _is_number(claims.get("iat")):
            raise _invalid("the DPoP proof needs a numeric iat")
        htm = claims.get("htm")
        if not isinstance(htm, str):
            raise _invalid("the DPoP proof needs an htm")
        if htm != method:
            raise _invalid(f"the DPoP proof's htm is not the request method {method}")
        htu = claims.get("htu")
        if not isinstance(htu, str):
            raise _invalid("the DPoP proof needs an htu")
        expected = normalize_htu(url)
        if expected is None or normalize_htu(htu) != expected:
            raise _invalid(f"the DPoP proof's htu is not the request URL {expected}")
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str):
                raise _invalid("the DPoP proof needs an ath for the access token")
            if not secrets.compare_digest(ath.encode(), access_token_hash(access_token).encode()):
                raise _invalid("the DPoP proof's ath is not the hash of this access token")
        return jti

    def _remember(self, jkt: str, jti: str, iat: float, now: float) -> None:
        """RFC 9449 §11.1: each proof once. Called with the lock held.

        A ``jti`` is kept until its ``iat`` leaves the window (after that the proof is refused
        as too old anyway); at the limit expired entries go first, then the oldest.
        """
        key = (jkt, jti)
        if key in self._seen:
            raise _invalid("the DPoP proof's jti was already used")
        if len(self._seen) >= self._replay_limit:
            self._seen = {k: until for k, until in self._seen.items() if until >= now}
            while len(self._seen) >= self._replay_limit:
                del self._seen[next(iter(self._seen))]
        self._seen[key] = iat + self.iat_window


def request_url(origin: str, host: str | None, target: str) -> str:
    """The URL a request was sent to: its ``Host`` (or the server's ``origin`` when it has none)
    with the origin's scheme, plus its target; an absolute-form target as it is."""
    if target.startswith(("http://", "https://")):
        return target
    if host:
        origin = f"{urlsplit(origin).scheme or 'http'}://{host}"
    return origin + target
