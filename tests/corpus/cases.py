"""The bad-input corpus: every case is data (what goes in, what must come out).

Each :class:`Case` names the typed freshtoken error the input must raise (``raises``, with the
``field`` it must name and a ``message`` fragment it must contain), or, when the input is odd but
acceptable, the value it must give (``value``: attributes of the resulting object). Whatever the
outcome, no message, repr or formatted traceback may contain a secret: every secret in the corpus
carries the marker :data:`MARK` (and JWTs are checked by value), so one substring search proves it.

Categories (see docs/hardening.md for the counts table, which test_corpus.py keeps honest):

``token_response``  parse_token_response on decoded JSON values (wrong types for every field, ...)
``jwt``             access tokens that are, or look like, JWTs (their ``exp`` sets the expiry)
``http_body``       bodies served by the real AuthorizationServer's token endpoint (Fault(...))
``http_bytes``      raw bytes no HTTP server of ours can be told to send (invalid UTF-8, ...),
                    fed to the grant's real sans-I/O flow as the token endpoint's response
``discovery``       discovery documents served by the real server (Fault(target="discovery"))
``retry_after``     Retry-After header values (parse_retry_after)
``store_record``    store records (the codec shared by FileStore and RedisStore)
``file_store``      FileStore files corrupted on disk, read through a TokenManager
``redis_store``     RedisStore values corrupted in a real redis-server, read through a TokenManager
``cli``             command lines of ``freshtoken`` (in-process ``main([...])``)
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import freshtoken as ft

#: Every secret in the corpus contains this; no message may.
MARK = "SEKRIT"
#: The wall time the token_response and jwt cases are parsed at.
NOW = 1_800_000_000.0
YEAR = 365 * 24 * 3600

AT = f"at-{MARK}-0123456789abcdef0123"
RT = f"rt-{MARK}-0123456789abcdef0123"
IDT = f"idt-{MARK}-0123456789abcdef0123"


@dataclass(frozen=True)
class Case:
    """One corpus entry. ``raises`` None means "must succeed" and ``value`` is checked."""

    id: str
    category: str
    input: Any
    raises: type[BaseException] | None = None
    field: str | None = None
    message: str | None = None
    value: Mapping[str, object] = dataclasses.field(default_factory=dict)
    #: Extra strings that are secret in this case (besides anything containing MARK).
    secrets: tuple[str, ...] = ()
    #: Per-category options (content type, status, environment...).
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


CASES: list[Case] = []


def case(
    category: str,
    id: str,
    input: Any,
    raises: type[BaseException] | None = None,
    **rest: Any,
) -> None:
    CASES.append(Case(id=id, category=category, input=input, raises=raises, **rest))


def response(**changes: object) -> dict[str, object]:
    """A valid token response with ``changes`` applied (``REMOVE`` deletes a field)."""
    data: dict[str, object] = {"access_token": AT, "token_type": "Bearer", "expires_in": 3600}
    for name, value in changes.items():
        if value is REMOVE:
            data.pop(name, None)
        else:
            data[name] = value
    return data


REMOVE = object()
#: The loop variables of the tables below hold values of any type on purpose.
bad: object
good: object

# -- token_response: decoded JSON values --------------------------------------------------------

TRE = ft.TokenResponseError
TR = "token_response"

case(TR, "valid-control", response(), value={"token_type": "Bearer", "lifetime": 3600.0})
for name, bad in [
    ("list", []),
    ("string", "access_token"),
    ("null", None),
    ("int", 5),
    ("bytes", b"{}"),
]:
    case(TR, f"not-an-object-{name}", bad, TRE, message="must be a JSON object")

case(TR, "access_token-missing", response(access_token=REMOVE), TRE, field="access_token")
for name, bad in [
    ("null", None),
    ("int", 12345),
    ("float", 1.5),
    ("bool", True),
    ("list", [AT]),
    ("object", {"value": AT}),
    ("empty", ""),
]:
    case(TR, f"access_token-{name}", response(access_token=bad), TRE, field="access_token")
case(TR, "access_token-space", response(access_token=f"{AT} x"), TRE, field="access_token")
case(TR, "access_token-newline", response(access_token=f"{AT}\r\nX: y"), TRE, field="access_token")
case(TR, "access_token-nul", response(access_token=f"{AT}\x00"), TRE, field="access_token")
case(TR, "access_token-non-ascii", response(access_token=f"{AT}é"), TRE, field="access_token")
case(
    TR,
    "access_token-over-64KiB",
    response(access_token=MARK + "a" * (64 * 1024)),
    TRE,
    field="access_token",
    message="longer than",
)
case(
    TR,
    "access_token-exactly-64KiB",
    response(access_token=MARK + "a" * (64 * 1024 - len(MARK))),
    value={"token_type": "Bearer"},
)

for name, bad in [("int", 5), ("list", ["Bearer"]), ("bool", False), ("object", {})]:
    case(TR, f"token_type-{name}", response(token_type=bad), TRE, field="token_type")
for bad in ("mac", "Basic", "N_A", "", "Bearer x", "\x00"):
    case(TR, f"token_type-{bad!r}", response(token_type=bad), TRE, field="token_type")
case(
    TR, "token_type-missing-is-bearer", response(token_type=REMOVE), value={"token_type": "Bearer"}
)
case(TR, "token_type-null-is-bearer", response(token_type=None), value={"token_type": "Bearer"})
case(TR, "token_type-lowercase", response(token_type="bearer"), value={"token_type": "Bearer"})
case(TR, "token_type-DPOP", response(token_type="DPOP"), value={"token_type": "DPoP"})

for name, bad in [
    ("word", "soon"),
    ("empty-string", ""),
    ("bool", True),
    ("list", [60]),
    ("object", {"s": 60}),
    ("negative", -1),
    ("nan", float("nan")),
    ("infinity", float("inf")),
    ("minus-infinity", float("-inf")),
    ("huge-int", 10**400),
    ("over-ten-years", 11 * YEAR),
    ("nan-string", "nan"),
    ("infinity-string", "Infinity"),
    ("hex-string", "0x10"),
    ("long-digit-string", "9" * 41),
    ("negative-string", "-5"),
]:
    case(TR, f"expires_in-{name}", response(expires_in=bad), TRE, field="expires_in")
for name, good, lifetime in [
    ("numeric-string", "3600", 3600.0),
    ("padded-string", " 60 ", 60.0),
    ("float", 1.5, 1.5),
    ("exponent-string", "1e3", 1000.0),
    ("zero", 0, 0.0),
    ("ten-years", 10 * YEAR, float(10 * YEAR)),
]:
    case(TR, f"expires_in-{name}", response(expires_in=good), value={"lifetime": lifetime})
case(TR, "expires_in-null", response(expires_in=None), value={"lifetime": None})

for name, bad in [
    ("int", 5),
    ("list-of-int", [1, 2]),
    ("mixed-list", ["read", 1]),
    ("object", {"read": True}),
    ("bytes", b"read"),
]:
    case(TR, f"scope-{name}", response(scope=bad), TRE, field="scope")
case(TR, "scope-list", response(scope=["read", "write"]), value={"scope": "read write"})
case(TR, "scope-empty-string", response(scope=""), value={"scope": ""})

for member in ("refresh_token", "id_token"):
    for name, bad in [("int", 7), ("empty", ""), ("list", [RT]), ("object", {"t": RT})]:
        case(TR, f"{member}-{name}", response(**{member: bad}), TRE, field=member)
case(TR, "refresh_and_id_token", response(refresh_token=RT, id_token=IDT), value={})

case(
    TR,
    "error-member",
    {"error": "invalid_grant", "error_description": "the refresh token was revoked"},
    ft.OAuthError,
    message="invalid_grant",
    value={"error": "invalid_grant", "retryable": False},
)
case(
    TR,
    "error-with-access_token",
    response(error="server_error"),
    ft.OAuthError,
    value={"error": "server_error", "retryable": True},
)
case(TR, "error-int", {"error": 400}, TRE, field="error")
case(TR, "error-empty", {"error": ""}, TRE, field="error")
case(TR, "error-null", {"error": None}, TRE, field="error")
case(
    TR,
    "error-huge-code",
    {"error": "x" * 10_000, "error_description": "y" * 10_000, "error_uri": 5},
    ft.OAuthError,
    value={"error": "x" * 100, "description": "y" * 300 + "…", "uri": None},
)
case(
    TR,
    "extra-members-kept",
    response(issued_token_type="urn:x", nested={"a": [1, 2, {"b": None}]}),
    value={"extra": {"issued_token_type": "urn:x", "nested": {"a": [1, 2, {"b": None}]}}},
)


# -- jwt: access tokens that are JWTs ------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(payload: object, header: object = None, *, raw_payload: str | None = None) -> str:
    head = {"alg": "ES256", "typ": "JWT"} if header is None else header
    body = raw_payload if raw_payload is not None else json.dumps(payload)
    return ".".join(
        [b64(json.dumps(head).encode()), b64(body.encode()), b64(f"sig-{MARK}-abcdef".encode())]
    )


def jwt_case(id: str, token: str, raises: type[BaseException] | None = None, **rest: Any) -> None:
    """A JWT as the only member besides access_token (no expires_in: exp decides)."""
    case("jwt", id, {"access_token": token}, raises, secrets=(token,), **rest)


EXP = NOW + 600
jwt_case("exp-int", jwt({"exp": int(EXP), "iat": int(NOW)}), value={"lifetime": 600.0})
jwt_case("exp-float", jwt({"exp": EXP + 0.5, "iat": NOW}), value={"lifetime": 600.5})
jwt_case("exp-absent-is-opaque", jwt({"sub": "x"}), value={"lifetime": None})
jwt_case("exp-in-the-past", jwt({"exp": NOW - 60}), value={"lifetime": -60.0})
jwt_case(
    "expired-on-a-late-server", jwt({"exp": NOW - 60, "iat": NOW - 120}), value={"lifetime": 60.0}
)
jwt_case("exp-string", jwt({"exp": str(int(EXP))}), TRE, field="exp")
jwt_case("exp-null", jwt({"exp": None}), TRE, field="exp")
jwt_case("exp-bool", jwt({"exp": True}), TRE, field="exp")
jwt_case("exp-list", jwt({"exp": [EXP]}), TRE, field="exp")
jwt_case("exp-negative", jwt({"exp": -1}), TRE, field="exp")
jwt_case("exp-far-future", jwt({"exp": NOW + 20 * YEAR, "iat": NOW}), TRE, field="exp")
jwt_case("exp-huge-int", jwt({}, raw_payload='{"exp": ' + "9" * 400 + "}"), TRE, field="exp")
jwt_case("exp-NaN-literal", jwt({}, raw_payload='{"exp": NaN}'), TRE, field="exp")
jwt_case("exp-Infinity-literal", jwt({}, raw_payload='{"exp": Infinity}'), TRE, field="exp")
jwt_case("exp-1e400", jwt({}, raw_payload='{"exp": 1e400}'), TRE, field="exp")
jwt_case(
    "bad-exp-ignored-when-expires_in-given",
    jwt({"exp": "tomorrow"}),
    value={"lifetime": 120.0},
    options={"expires_in": 120},
)
jwt_case(
    "iat-huge-int",
    jwt({}, raw_payload='{"exp": 1800000600, "iat": -' + "1" * 400 + "}"),
    value={"lifetime": 600.0},
)
jwt_case(
    "iat-huge-int-with-expires_in",
    jwt({}, raw_payload='{"exp": 1800000600, "iat": ' + "1" * 400 + "}"),
    value={"lifetime": 120.0},
    options={"expires_in": 120},
)
jwt_case(
    "iat-skewed-server-clock",
    jwt({"iat": NOW + 3600, "exp": NOW + 3600 + 300}),
    value={"lifetime": 300.0},
)
jwt_case(
    "alg-none-unsigned",
    jwt({"exp": EXP}, {"alg": "none"}).rsplit(".", 1)[0] + ".",
    value={"lifetime": 600.0},
)
good = jwt({"exp": EXP})
head, payload, signature = good.split(".")
jwt_case("payload-bad-base64", f"{head}.{payload[:-2]}*!.{signature}", value={"lifetime": None})
jwt_case("payload-bad-padding", f"{head}.{payload}A.{signature}", value={"lifetime": None})
jwt_case("header-bad-base64", f"{head[:-1]}$.{payload}.{signature}", value={"lifetime": None})
jwt_case("header-not-json", f"{b64(b'{alg')}.{payload}.{signature}", value={"lifetime": None})
jwt_case("payload-not-json", jwt({}, raw_payload="{exp:1}"), value={"lifetime": None})
jwt_case("payload-array", jwt([EXP]), value={"lifetime": None})
BAD_UTF8 = b64(b'{"exp": 1, "x": "\xff"}')
jwt_case("payload-invalid-utf8", f"{head}.{BAD_UTF8}.{signature}", value={"lifetime": None})
jwt_case("header-array", jwt({"exp": EXP}, ["ES256"]), value={"lifetime": None})
jwt_case("header-without-alg", jwt({"exp": EXP}, {"typ": "JWT"}), value={"lifetime": None})
jwt_case("header-alg-int", jwt({"exp": EXP}, {"alg": 256}), value={"lifetime": None})
jwt_case("two-segments", f"{head}.{payload}", value={"lifetime": None})
jwt_case("four-segments", f"{good}.{signature}", value={"lifetime": None})
jwt_case("empty-header-segment", f".{payload}.{signature}", value={"lifetime": None})
jwt_case("only-dots", "..", value={"lifetime": None})
jwt_case(
    "deeply-nested-payload",
    jwt({}, raw_payload='{"exp": 1, "x": ' + "[" * 5000 + "]" * 5000 + "}"),
    value={"lifetime": None},
)

# -- http_body: served by the real AuthorizationServer -----------------------------------------

HB = "http_body"
JSON = "application/json"
VALID = json.dumps(response())


def body_case(
    id: str,
    body: str | None,
    raises: type[BaseException] | None = None,
    *,
    content_type: str | None = JSON,
    status: int | None = None,
    **rest: Any,
) -> None:
    options = {"body": body, "content_type": content_type, "status": status}
    options.update(rest.pop("options", {}))
    case(HB, id, body, raises, options=options, **rest)


body_case("valid-control", VALID, value={"lifetime_positive": True})
body_case("charset-parameter", VALID, content_type="application/json; charset=utf-8", value={})
body_case("plus-json-type", VALID, content_type="application/vnd.oauth+json", value={})
body_case(
    "duplicate-access_token",
    '{"access_token": "a-' + MARK + '-first", "access_token": "' + AT + '"}',
    TRE,
    field="access_token",
    message="repeats the key",
)
body_case("duplicate-expires_in", VALID[:-1] + ', "expires_in": 1}', TRE, field="expires_in")
body_case("NaN-literal", VALID.replace("3600", "NaN"), TRE, message="not valid JSON")
body_case("Infinity-literal", VALID.replace("3600", "Infinity"), TRE, message="not valid JSON")
body_case("minus-Infinity", VALID.replace("3600", "-Infinity"), TRE, message="not valid JSON")
body_case("1e400", VALID.replace("3600", "1e400"), TRE, field="expires_in")
body_case("400-digit-int", VALID.replace("3600", "9" * 400), TRE, field="expires_in")
body_case("5000-digit-int", VALID.replace("3600", "9" * 5000), TRE, message="not valid JSON")
body_case("nested-100000", "[" * 100_000 + "]" * 100_000, TRE, message="nested too deeply")
body_case(
    "nested-member-5000",
    VALID[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}",
    TRE,
    message="nested too deeply",
)
body_case("10MB-body", VALID[:-1] + ', "pad": "' + "x" * 10_000_000 + '"}', TRE, message="size")
body_case("BOM", "\ufeff" + VALID, TRE, message="byte-order mark")
body_case("truncated", VALID[: len(VALID) // 2], TRE, message="not valid JSON")
body_case("empty-json", "", TRE, message="not valid JSON")
body_case("empty-no-type", "", TRE, content_type="", message="not a JSON token response")
body_case("empty-500", "", ft.TokenEndpointUnavailable, status=500, value={"status": 500})
body_case("array", "[]", TRE, message="JSON object")
body_case("string", '"' + AT + '"', TRE, message="JSON object")
body_case("null", "null", TRE, message="JSON object")
body_case(
    "text-plain-valid-json", VALID, TRE, content_type="text/plain", message="not a JSON token"
)
body_case("default-text-plain", VALID, TRE, content_type=None, message="not a JSON token")
body_case("text-json", VALID, TRE, content_type="text/json", message="not a JSON token")
HTML = f"<html><head><title>Bad Gateway</title></head><body><p>upstream said {AT}</p></body></html>"
body_case("html-200", HTML, TRE, content_type="text/html", message="text/html")
body_case("html-400", HTML, TRE, content_type="text/html", status=400, message="text/html")
body_case("html-502", HTML, ft.TokenEndpointUnavailable, content_type="text/html", status=502)
body_case(
    "plain-text-with-password",
    f"login failed for password hunter2-{MARK}",
    TRE,
    content_type="text/plain",
    status=400,
)
body_case(
    "error-200",
    '{"error": "invalid_grant", "error_description": "revoked"}',
    ft.OAuthError,
    value={"error": "invalid_grant", "status": 200},
)
body_case(
    "error-400-invalid_client",
    '{"error": "invalid_client"}',
    ft.OAuthError,
    status=400,
    value={"error": "invalid_client", "status": 400, "retryable": False},
)
body_case(
    "error-401-with-challenge",
    '{"error": "invalid_client"}',
    ft.OAuthError,
    status=401,
    value={"error": "invalid_client"},
)
body_case("400-without-error-code", VALID, TRE, status=400, message="without an OAuth error")
body_case(
    "503-temporarily_unavailable",
    '{"error": "temporarily_unavailable"}',
    ft.TokenEndpointUnavailable,
    status=503,
)
body_case(
    "200-temporarily_unavailable",
    '{"error": "temporarily_unavailable"}',
    ft.TokenEndpointUnavailable,
)
body_case("refresh_in-400-digits", VALID[:-1] + ', "refresh_in": ' + "9" * 400 + "}", value={})
body_case("refresh_in-1e400", VALID[:-1] + ', "refresh_in": 1e400}', value={})
body_case("refresh_in-negative", VALID[:-1] + ', "refresh_in": -5}', value={})
body_case("redirect-302", VALID, TRE, status=302, message="redirect")
body_case(
    "escaped-lone-surrogate",
    '{"access_token": "\\ud800' + MARK + '"}',
    TRE,
    field="access_token",
)
body_case("escaped-nul", '{"access_token": "a\\u0000' + MARK + '"}', TRE, field="access_token")
body_case(
    "429-retry-after-garbage",
    None,
    ft.TokenEndpointUnavailable,
    options={"status": 429, "retry_after": "soon", "body": None},
    value={"status": 429, "retry_after_known": True},
)
body_case(
    "429-retry-after-over-cap",
    None,
    ft.TokenEndpointUnavailable,
    options={"status": 429, "retry_after": 100_000, "body": None},
    value={"retry_after": 100_000.0},
    message="over the",
)
body_case(
    "dropped-connection",
    None,
    ft.TokenEndpointUnavailable,
    options={"drop": True, "body": None},
    message="connection broke",
)

# -- http_bytes: bytes no server of ours sends; fed to the grant's real flow ----------------------

HX = "http_bytes"
case(HX, "invalid-utf8", b'{"access_token": "\xff\xfe' + MARK.encode() + b'"}', TRE)
case(HX, "overlong-utf8", b'{"access_token": "\xc0\xaf' + MARK.encode() + b'"}', TRE)
case(HX, "utf16-body", VALID.encode("utf-16"), TRE, message="not valid UTF-8")
case(HX, "latin1-body", ('{"access_token": "é' + MARK + '"}').encode("latin-1"), TRE)
case(HX, "truncated-multibyte", b'{"access_token": "ab' + MARK.encode() + b'\xe2\x82"}', TRE)
case(HX, "bom-utf8", b"\xef\xbb\xbf" + VALID.encode(), TRE, message="byte-order mark")
case(HX, "nul-bytes", b"\x00" * 64, TRE, message="not valid JSON")
case(HX, "valid-control", VALID.encode(), value={})
case(
    HX,
    "no-content-type-header",
    VALID.encode(),
    TRE,
    message="no content type",
    options={"headers": {}},
)
case(
    HX, "content-type-garbage", VALID.encode(), TRE, options={"headers": {"content-type": ";;\x00"}}
)

# -- discovery: documents served by the real server -----------------------------------------------
# "$ISSUER" and "$TOKEN_URL" are replaced with the running server's values.

DI = "discovery"
CE = ft.ConfigurationError


def doc(**members: object) -> str:
    data: dict[str, object] = {"issuer": "$ISSUER", "token_endpoint": "$TOKEN_URL"}
    for name, value in members.items():
        if value is REMOVE:
            data.pop(name, None)
        else:
            data[name] = value
    return json.dumps(data)


def doc_case(
    id: str, body: str | None, raises: type[BaseException] | None = None, **rest: Any
) -> None:
    options = {"body": body, "content_type": JSON, "status": None}
    options.update(rest.pop("options", {}))
    case(DI, id, body, raises, options=options, **rest)


doc_case("valid-control", doc(), value={})
doc_case("issuer-mismatch", doc(issuer="https://evil.example"), CE, message="names issuer")
doc_case("issuer-trailing-slash", doc(issuer="$ISSUER/"), CE, message="names issuer")
doc_case("issuer-missing", doc(issuer=REMOVE), CE, message="names issuer none")
doc_case("issuer-int", doc(issuer=1), CE, message="names issuer none")
doc_case("token_endpoint-missing", doc(token_endpoint=REMOVE), CE, message="no token_endpoint")
doc_case("token_endpoint-int", doc(token_endpoint=443), CE, message="no token_endpoint")
doc_case("token_endpoint-empty", doc(token_endpoint=""), CE, message="no token_endpoint")
doc_case(
    "token_endpoint-http-remote",
    doc(token_endpoint="http://auth.example.com/token"),
    CE,
    message="plain http://",
)
doc_case(
    "token_endpoint-with-credentials",
    doc(token_endpoint=f"https://user:{MARK}-pw@auth.example.com/token"),
    CE,
    message="credentials",
)
doc_case("token_endpoint-ftp", doc(token_endpoint="ftp://auth.example.com/t"), CE)
doc_case("token_endpoint-relative", doc(token_endpoint="/oauth/token"), CE)
doc_case("token_endpoint-bad-port", doc(token_endpoint="https://auth.example.com:99999/"), CE)
doc_case("document-array", "[]", CE, message="not a JSON object")
doc_case("document-truncated", doc()[:20], CE, message="not valid JSON")
doc_case("document-duplicate-issuer", doc()[:-1] + ', "issuer": "x"}', CE, message="repeats")
doc_case("document-BOM", "\ufeff" + doc(), CE, message="byte-order mark")
doc_case("document-html", "<html>hi</html>", CE, options={"content_type": "text/html"})
doc_case("document-404", '{"error": "not_found"}', CE, options={"status": 404})
doc_case(
    "document-503",
    None,
    ft.TokenEndpointUnavailable,
    options={"status": 503, "body": None},
)

# -- retry_after: header values --------------------------------------------------------------------

RA = "retry_after"
#: parse_retry_after's ``now`` for these cases: Sun, 15 Jan 2027 08:00:00 GMT.
RA_NOW = 1_800_000_000.0
for number, (value, expected) in enumerate(
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("Fri, 15 Jan 2027 08:02:00 GMT", 120.0),
        ("Fri, 15 Jan 2027 07:00:00 GMT", 0.0),
        ("Fri, 15 Jan 2027 08:00:30 +0000", 30.0),
        ("9" * 64, float("9" * 64)),
        ("-1", None),
        ("+5", None),
        ("abc", None),
        ("", None),
        ("   ", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("0x10", None),
        ("1.2.3", None),
        ("٣", None),
        ("\uff11\uff12", None),
        ("9" * 65, None),
        ("Fri, 15 Jan 2027 08:02:00 -0000", None),
        ("Fri, 32 Jan 2027 08:02:00 GMT", None),
        ("Fri, 15 Jan 99999 08:02:00 GMT", None),
        (None, None),
    ]
):
    case(RA, f"{number:02d}-{value!r:.30}", value, value={"seconds": expected})

# -- store_record: the record codec shared by FileStore and RedisStore -----------------------------

SR = "store_record"


def record(**changes: object) -> bytes:
    data: dict[str, object] = {
        "format": 1,
        "access_token": AT,
        "token_type": "Bearer",
        "expires_at": NOW + 600,
        "issued_at": NOW,
        "scope": None,
        "refresh_token": RT,
        "id_token": None,
        "extra": {},
    }
    for name, value in changes.items():
        if value is REMOVE:
            data.pop(name, None)
        else:
            data[name] = value
    return json.dumps(data).encode()


def record_case(id: str, data: bytes, ok: bool = False, **rest: Any) -> None:
    from freshtoken._stores.store import UnreadableRecord

    case(SR, id, data, None if ok else UnreadableRecord, **rest)


record_case("valid-control", record(), ok=True, value={"refresh_token_kept": True})
record_case("empty", b"")
record_case("garbage", b"\x00\xff garbage " + MARK.encode())
record_case("truncated", record()[:40])
record_case("not-utf8", b'{"format": 1, "access_token": "\xff' + MARK.encode() + b'"}')
record_case("array", b"[1, 2]")
record_case("format-missing", record(format=REMOVE))
record_case("format-2", record(format=2))
record_case("format-string", record(format="1"))
record_case("access_token-int", record(access_token=5))
record_case("access_token-empty", record(access_token=""))
record_case("access_token-space", record(access_token=AT + " x"))
record_case("token_type-null", record(token_type=None))
record_case("expires_at-string", record(expires_at="tomorrow"))
record_case("expires_at-huge", record(expires_at=1e300))
record_case("issued_at-400-digits", record()[:-1] + b', "issued_at": ' + b"9" * 400 + b"}")
record_case("expires_at-400-digits", record()[:-1] + b', "expires_at": ' + b"9" * 400 + b"}")
record_case("issued_at-missing", record(issued_at=REMOVE))
record_case("issued_at-bool", record(issued_at=True))
record_case("refresh_token-int", record(refresh_token=5))
record_case("scope-list", record(scope=["a"]))
record_case("extra-list", record(extra=[1]))
record_case("nested-5000", b'{"format": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}")
record_case("NaN-expiry", record()[:-1] + b', "expires_at": NaN}')
record_case("encrypted-under-another-key", b"", options={"encrypt_with_other_key": True})
record_case("plain-where-encrypted", record(), options={"decrypt": True})
record_case("fernet-garbage", b"gAAAAA" + MARK.encode(), options={"decrypt": True})

# -- file_store / redis_store: corrupt stores read through a manager -------------------------------
# The manager must fetch a fresh token from the server and report store_unavailable; nothing raised.

FS = "file_store"
for id, content in [
    ("garbage", b"\x00garbage " + MARK.encode()),
    ("truncated", record()[:30]),
    ("wrong-version", record(format=99)),
    ("wrong-types", record(access_token=5, expires_at="x")),
    ("timestamp-400-digits", record()[:-1] + b', "issued_at": ' + b"9" * 400 + b"}"),
    ("empty", b""),
]:
    case(FS, id, content, value={"fresh_token": True})
case(FS, "group-writable", record(), value={"fresh_token": True}, options={"mode": 0o664})
case(FS, "symlink", record(), value={"fresh_token": True}, options={"symlink": True})
case(FS, "directory-instead-of-file", b"", value={"fresh_token": True}, options={"dir": True})

RS = "redis_store"
for id, content in [
    ("garbage", b"\x00garbage " + MARK.encode()),
    ("truncated", record()[:30]),
    ("wrong-version", record(format=99)),
]:
    case(RS, id, content, value={"fresh_token": True})
case(RS, "string-type-key", record(), value={"fresh_token": True}, options={"type": "string"})
case(RS, "list-type-key", record(), value={"fresh_token": True}, options={"type": "list"})
case(RS, "plain-under-encryption", record(), value={"fresh_token": True}, options={"encrypt": True})

# -- cli: command lines ----------------------------------------------------------------------------
# "$TOKEN_URL" is replaced with the running server's; the env option's values too. ``raises`` is
# unused: ``value["exit"]`` is the exit code; ``MARK`` appears in secrets given in the case.

CL = "cli"
CLI_SECRET = f"cli-{MARK}-secret-0123456789"


def cli_case(id: str, argv: list[str], exit: int, **rest: Any) -> None:
    case(CL, id, argv, value={"exit": exit}, **rest)


cli_case("no-command", [], 2)
cli_case("unknown-command", ["frobnicate"], 2)
cli_case("secret-as-flag", ["token", "--client-secret", CLI_SECRET], 2)
cli_case("secret-as-flag-equals", ["token", f"--client-secret={CLI_SECRET}"], 2)
cli_case("token-no-endpoint", ["token", "--client-id", "c"], 3)
cli_case("token-both-endpoints", ["token", "--token-url", "$TOKEN_URL", "--issuer", "$ISSUER"], 3)
cli_case("token-no-client-id", ["token", "--token-url", "$TOKEN_URL"], 3)
cli_case(
    "token-no-secret",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c"],
    3,
)
cli_case(
    "token-remote-http",
    ["token", "--token-url", "http://auth.example.com/t", "--client-id", "c"],
    3,
    options={"env": {"FRESHTOKEN_CLIENT_SECRET": CLI_SECRET}},
)
cli_case("token-timeout-word", ["token", "--timeout", "soon"], 2)
cli_case(
    "token-timeout-negative",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c", "--timeout", "-1"],
    3,
    options={"env": {"FRESHTOKEN_CLIENT_SECRET": CLI_SECRET}},
)
cli_case(
    "token-timeout-nan",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c", "--timeout", "nan"],
    3,
    options={"env": {"FRESHTOKEN_CLIENT_SECRET": CLI_SECRET}},
)
cli_case(
    "token-env-bool-garbage",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c"],
    3,
    options={"env": {"FRESHTOKEN_ALLOW_INSECURE_HTTP": "maybe"}},
)
cli_case(
    "token-env-timeout-garbage",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c"],
    3,
    options={"env": {"FRESHTOKEN_TIMEOUT": "1O"}},
)
cli_case(
    "token-env-auth-garbage",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c"],
    3,
    options={"env": {"FRESHTOKEN_AUTH": "kerberos"}},
)
cli_case(
    "token-secret-file-missing",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c", "--client-secret-file", "$NOFILE"],
    3,
)
cli_case(
    "token-secret-file-two-lines",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c", "--client-secret-file", "$FILE"],
    3,
    options={"file": f"{CLI_SECRET}\nsecond-{MARK}-line\n"},
)
cli_case(
    "token-secret-file-binary",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c", "--client-secret-file", "$FILE"],
    3,
    options={"file_bytes": b"\xff\xfe" + CLI_SECRET.encode()},
)
cli_case(
    "token-wrong-secret",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "$CLIENT_ID"],
    4,
    options={"env": {"FRESHTOKEN_CLIENT_SECRET": CLI_SECRET}},
)
cli_case(
    "token-unreachable",
    ["token", "--token-url", "$CLOSED_URL", "--client-id", "c", "--timeout", "2"],
    5,
    options={"env": {"FRESHTOKEN_CLIENT_SECRET": CLI_SECRET}},
)
cli_case(
    "token-scope-with-quote",
    ["token", "--token-url", "$TOKEN_URL", "--client-id", "c", "--scope", 'a"b'],
    3,
    options={"env": {"FRESHTOKEN_CLIENT_SECRET": CLI_SECRET}},
)
cli_case("inspect-opaque", ["inspect", AT], 2)
cli_case("inspect-two-segments", ["inspect", "abc.def"], 2)
cli_case("inspect-bad-json", ["inspect", f"{b64(b'{x')}.{b64(b'{y')}.{MARK}"], 2)
cli_case("inspect-empty", ["inspect", " "], 2)
cli_case("inspect-jwks-remote-http", ["inspect", "--jwks", "http://keys.example/j", good], 3)
cli_case("serve-port-word", ["serve", "--port", "eighty"], 2)
cli_case("demo-duration-word", ["demo", "--duration", "long"], 2)


# -- credential_file: what a platform may leave in a token file -----------------------------------
# Bytes written where ``ft.TokenFile`` reads, read as a grant reads it (calling it). A bad file
# is a ConfigurationError naming the path and what was wrong, never quoting the content.

CF = "credential_file"
PLATFORM_TOKEN = f"eyJhbGciOiJFUzI1NiJ9.{MARK}-platform-token.sig"


def file_case(id: str, data: bytes, raises: type[BaseException] | None = None, **rest: Any) -> None:
    case(CF, id, data, raises, **rest)


file_case("empty", b"", ft.ConfigurationError, message="is empty")
file_case("whitespace-only", b" \n\t\r\n ", ft.ConfigurationError, message="is empty")
file_case(
    "not-utf8", b"\xff\xfe" + MARK.encode() + b"\x80", ft.ConfigurationError, message="not UTF-8"
)
file_case(
    "latin1-secret",
    f"caf\u00e9-{MARK}".encode("latin-1"),
    ft.ConfigurationError,
    message="not UTF-8",
)
file_case(
    "oversized",
    (MARK * 12_000).encode(),
    ft.ConfigurationError,
    message="larger than 65536 bytes",
)
file_case("trailing-newline", PLATFORM_TOKEN.encode() + b"\n", value={"text": PLATFORM_TOKEN})
file_case(
    "crlf-and-spaces", b"  " + PLATFORM_TOKEN.encode() + b"\r\n", value={"text": PLATFORM_TOKEN}
)
file_case("utf8-bom", b"\xef\xbb\xbf" + PLATFORM_TOKEN.encode(), value={"text": PLATFORM_TOKEN})
file_case(
    "two-lines",
    PLATFORM_TOKEN.encode() + b"\n" + PLATFORM_TOKEN.encode(),
    ft.ConfigurationError,
    message="more than one line",
)
file_case("nul-byte", PLATFORM_TOKEN.encode() + b"\x00x", ft.ConfigurationError, message="control")
file_case(
    "escape-sequence",
    b"\x1b[2J" + PLATFORM_TOKEN.encode(),
    ft.ConfigurationError,
    message="control",
)
file_case("bom-only", b"\xef\xbb\xbf\n", ft.ConfigurationError, message="is empty")


CATEGORIES: tuple[str, ...] = (
    TR,
    "jwt",
    HB,
    HX,
    DI,
    RA,
    SR,
    FS,
    RS,
    CL,
    "callable_identity",
    CF,
)


def by_category(category: str) -> list[Case]:
    return [c for c in CASES if c.category == category]


def counts() -> dict[str, int]:
    return {category: len(by_category(category)) for category in CATEGORIES}


Check = Callable[[Any], None]


# -- begin: server error codes with secrets and control characters (issue 13 item 7) ----------
# RFC 6749 §5.2: an ``error`` outside %x20-21 / %x23-5B / %x5D-7E is shown as invalid, never
# quoted; one inside it is redacted as error_description is.

INVALID_CODE = "<invalid error code>"
body_case(
    "error-code-echoes-refresh-token",
    json.dumps({"error": f"bad refresh_token {RT}"}),
    ft.OAuthError,
    status=400,
    value={"error": "bad refresh_token <redacted>"},
)
body_case(
    "error-code-with-newline",
    json.dumps({"error": f"invalid_grant\nFAKE {MARK} LOG LINE"}),
    ft.OAuthError,
    status=400,
    value={"error": INVALID_CODE},
)
body_case(
    "error-code-with-escape",
    json.dumps({"error": f"\x1b[2K{MARK}"}),
    ft.OAuthError,
    status=400,
    value={"error": INVALID_CODE},
)
body_case(
    "error-code-with-quote",
    json.dumps({"error": f'"{MARK}"'}),
    ft.OAuthError,
    status=400,
    value={"error": INVALID_CODE},
)
body_case(
    "error-uri-with-newline",
    json.dumps({"error": "invalid_grant", "error_uri": f"https://as.example/\n{MARK}"}),
    ft.OAuthError,
    status=400,
    value={"error": "invalid_grant", "uri": None},
)
body_case(
    "503-error-code-echoes-secret",
    json.dumps({"error": f"down {MARK}\r\nFAKE"}),
    ft.TokenEndpointUnavailable,
    status=503,
    message=INVALID_CODE,
)
# -- end: server error codes ------------------------------------------------------------------


# -- begin: callable identities (issue 13 item 1) ---------------------------------------------
# The input builds a source; a TokenManager over it with a shared store must refuse it with
# ConfigurationError asking for key= (message "key="), or accept it (value: the source's
# ``unidentified`` is None). A secret bound into a callable must never appear in the refusal.
CI = "callable_identity"
URL = "https://as.example.com/token"


def _token_for(tenant: str) -> dict[str, object]:
    return {"access_token": f"token-of-{tenant}", "expires_in": 60}


def _module_token() -> dict[str, object]:
    return _token_for("module")


async def _module_token_async() -> dict[str, object]:
    return _token_for("module-async")


def _module_assertion() -> str:
    return f"assertion-{MARK}"


class _Tenant:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def token(self) -> dict[str, object]:
        return _token_for(self.secret)

    async def atoken(self) -> dict[str, object]:
        return _token_for(self.secret)

    def text(self) -> str:
        return self.secret

    def __call__(self) -> dict[str, object]:
        return _token_for(self.secret)

    @classmethod
    def for_class(cls) -> dict[str, object]:
        return _token_for(cls.__name__)

    @staticmethod
    def static() -> dict[str, object]:
        return _token_for("static")


def _closure(secret: str) -> Callable[[], dict[str, object]]:
    def fetch() -> dict[str, object]:
        return _token_for(secret)

    return fetch


def _wrapped(fn: Callable[[], dict[str, object]]) -> Callable[[], dict[str, object]]:
    @functools.wraps(fn)
    def wrapper() -> dict[str, object]:
        return fn()

    return wrapper


SECRET_BOUND = f"tenant-{MARK}-bound"


def refused(id: str, build: Callable[[], object], kind: str) -> None:
    case(CI, id, build, ft.ConfigurationError, message=f"is {kind}", secrets=(SECRET_BOUND,))


def accepted(id: str, build: Callable[[], object]) -> None:
    case(CI, id, build, value={"unidentified": None}, secrets=(SECRET_BOUND,))


refused("bound-method", lambda: _Tenant(SECRET_BOUND).token, "a bound method")
refused("async-bound-method", lambda: _Tenant(SECRET_BOUND).atoken, "a bound method")
refused("classmethod", lambda: _Tenant.for_class, "a bound method")
refused("partial", lambda: functools.partial(_token_for, SECRET_BOUND), "a functools.partial")
refused(
    "partial-of-partial",
    lambda: functools.partial(functools.partial(_token_for), SECRET_BOUND),
    "a functools.partial",
)
refused("closure", lambda: _closure(SECRET_BOUND), "a closure")
refused("wraps-decorated", lambda: _wrapped(_module_token), "a closure")
refused("lambda", lambda: lambda: _token_for(SECRET_BOUND), "a lambda")
refused("callable-object", lambda: _Tenant(SECRET_BOUND), "a callable object")
refused("builtin", lambda: dict, "a callable object")
refused(
    "assertion-bound-method",
    lambda: ft.JWTBearerGrant(URL, _Tenant(SECRET_BOUND).text),
    "a bound method",
)
refused(
    "subject-token-partial",
    lambda: ft.TokenExchange(URL, functools.partial(str, SECRET_BOUND), "access_token"),
    "a functools.partial",
)
refused(
    "actor-token-lambda",
    lambda: ft.TokenExchange(
        URL, "subject", "access_token", actor_token=lambda: SECRET_BOUND, actor_token_type="jwt"
    ),
    "a lambda",
)
accepted("module-function", lambda: _module_token)
accepted("async-module-function", lambda: _module_token_async)
accepted("staticmethod", lambda: _Tenant.static)
accepted("module-assertion", lambda: ft.JWTBearerGrant(URL, _module_assertion))
accepted("string-subject-token", lambda: ft.TokenExchange(URL, "subject", "access_token"))
accepted(
    "bound-method-with-key",
    lambda: ft.FunctionSource(_Tenant(SECRET_BOUND).token, key="tenant:one"),
)
accepted(
    "subject-partial-with-key",
    lambda: ft.TokenExchange(
        URL, functools.partial(str, SECRET_BOUND), "access_token", key="obo:one"
    ),
)
# -- end: callable identities -----------------------------------------------------------------
