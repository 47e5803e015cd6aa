"""Clock skew and wall-clock jumps: deadlines live on the monotonic clock.

A server whose clock is an hour off issues JWTs whose ``iat``/``exp`` are an hour off; the token
still lives its full lifetime here, and ``skew_detected`` says so. Stepping our wall clock (NTP,
suspend/resume) neither expires a good token nor keeps a dead one.
"""

from __future__ import annotations

from collections.abc import Callable

import jwt
import pytest

import freshtoken as ft
from freshtoken._core.token import parse_token_response
from freshtoken.testing import FakeClock

from .conftest import FlakySource, kinds

NO_JITTER = ft.RefreshPolicy(jitter=0)


def signed(claims: dict[str, object]) -> str:
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


class SkewedServer:
    """Issues 60-second JWTs stamped by a server clock ``offset`` seconds off ours."""

    def __init__(self, clock: FakeClock, offset: float, *, with_iat: bool = True) -> None:
        self.clock = clock
        self.offset = offset
        self.with_iat = with_iat
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        server_now = int(self.clock.time() + self.offset)
        claims: dict[str, object] = {"sub": f"call-{self.calls}", "exp": server_now + 60}
        if self.with_iat:
            claims["iat"] = server_now
        return signed(claims)


@pytest.mark.parametrize("offset", [3600.0, -3600.0])
def test_a_skewed_servers_jwt_lives_its_full_lifetime_and_the_skew_is_reported(
    clock: FakeClock,
    events: list[ft.Event],
    make_manager: Callable[..., ft.TokenManager],
    offset: float,
) -> None:
    server = SkewedServer(clock, offset)
    tokens = make_manager(server, policy=NO_JITTER)
    first = tokens.get()
    skews = [event for event in events if event.kind == "skew_detected"]
    assert len(skews) == 1
    assert skews[0].skew == pytest.approx(offset, abs=1)
    assert skews[0].fingerprint == first.fingerprint
    assert first.lifetime == pytest.approx(60)
    clock.advance(47.9)  # fresh for 48 s (stale margin 12 s) ...
    assert tokens.get() is first
    assert server.calls == 1
    clock.advance(9)  # ... served until the hard deadline at 57 s ...
    assert tokens.get() is first
    clock.advance(0.2)  # ... and never after it
    assert tokens.get() is not first
    assert server.calls >= 2


def test_a_server_within_a_few_seconds_of_our_clock_is_not_skew(
    clock: FakeClock, events: list[ft.Event], make_manager: Callable[..., ft.TokenManager]
) -> None:
    tokens = make_manager(SkewedServer(clock, 3.0))
    tokens.get()
    assert "skew_detected" not in kinds(events)


def test_the_date_header_reveals_skew_when_the_jwt_has_no_iat(clock: FakeClock) -> None:
    now = clock.time()
    server_now = now + 3600
    parsed = parse_token_response(
        {"access_token": signed({"exp": int(server_now) + 60})}, now=now, server_date=server_now
    )
    assert parsed.skew == pytest.approx(3600)
    assert parsed.token.lifetime == pytest.approx(60)


def test_expires_in_is_relative_so_a_skewed_date_only_reports_the_skew(clock: FakeClock) -> None:
    now = clock.time()
    parsed = parse_token_response(
        {"access_token": "opaque", "expires_in": 60}, now=now, server_date=now - 3600
    )
    assert parsed.skew == pytest.approx(-3600)
    assert parsed.token.lifetime == 60


@pytest.mark.parametrize("jump", [3600.0, -3600.0, 86400.0 * 365])
def test_a_wall_clock_jump_neither_expires_a_good_token_nor_keeps_a_dead_one(
    clock: FakeClock,
    source: FlakySource,
    make_manager: Callable[..., ft.TokenManager],
    jump: float,
) -> None:
    tokens = make_manager(source, policy=NO_JITTER)
    first = tokens.get()
    clock.jump_wall(jump)
    assert tokens.get() is first
    clock.advance(47.9)
    assert tokens.get() is first
    assert source.calls == 1
    clock.jump_wall(-2 * jump)
    clock.advance(9.2)  # past the hard deadline on the monotonic clock
    assert tokens.get() is not first


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
def test_a_wall_clock_jump_during_the_fetch_does_not_change_the_lifetime(
    clock: FakeClock, make_manager: Callable[..., ft.TokenManager], jump: float
) -> None:
    server = SkewedServer(clock, 0.0)

    def fetch_while_the_clock_steps() -> str:
        token = server()
        clock.jump_wall(jump)  # NTP steps while the response is in flight
        return token

    tokens = make_manager(fetch_while_the_clock_steps, policy=NO_JITTER)
    first = tokens.get()
    clock.advance(56.9)
    assert tokens.get() is first
    clock.advance(0.2)
    assert tokens.get() is not first


def test_a_jwt_without_iat_from_our_own_clock_is_not_skewed(
    clock: FakeClock, events: list[ft.Event], make_manager: Callable[..., ft.TokenManager]
) -> None:
    tokens = make_manager(SkewedServer(clock, 0.0, with_iat=False), policy=NO_JITTER)
    first = tokens.get()
    assert "skew_detected" not in kinds(events)
    clock.advance(56.9)
    assert tokens.get() is first
