"""``freshtoken demo``: a long workload through one TokenManager, judged by its figures; and the
seed pattern it is compared with, reproduced faithfully (flaws included)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests

from freshtoken import RefreshPolicy
from freshtoken._cli import main
from freshtoken._cli.demo import (
    DemoResult,
    Tally,
    expected_token_requests,
    judge,
    percentile,
    render_summary,
)
from freshtoken._cli.demo_seed import SeedAPI
from freshtoken.testing import AuthorizationServer

from .conftest import closed_port, run_cli


def test_demo_exits_0_and_prints_its_summary() -> None:
    result = run_cli("demo", "--duration", "4")
    assert result.code == 0, result.stdout + result.stderr
    out = result.stdout
    for row in (
        "@ft.authenticated method, 2 threads",
        "httpx.Client + TokenAuth, 2 threads",
        "requests.Session + TokenAuth, 2 threads",
        "httpx.AsyncClient + TokenAuth, 4 tasks",
        "freshtoken, all workers",
    ):
        assert row in out
    assert "token requests    freshtoken " in out
    assert "result            OK: no call failed" in out
    assert "[  4.0/4 s] calls" in result.stderr  # progress, one plain line a second off a TTY
    assert "eyJ" not in result.output  # no token (a JWT starts so) in any output


def test_compare_seed_shows_the_seed_failing_beside_freshtoken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 2-second tokens: the seed's first one runs out after 1.94 s, a second before the end.
    code = main(["demo", "--duration", "3", "--compare-seed"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    seed_row = next(line for line in out.splitlines() if line.startswith("seed pattern"))
    calls, failed = (int(v) for v in seed_row.split()[-4:-2])
    assert failed > 0  # the seed presents its expired token after the first lifetime
    assert calls > failed
    assert "HTTPError (HTTP 401)" in out
    figures = next(line for line in out.splitlines() if line.startswith("token requests")).split()
    freshtoken_requests, seed_requests = int(figures[3]), int(figures[-1])
    assert seed_requests > 2 * freshtoken_requests
    assert "| seed: calls" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "0"], "--duration must be a positive number"),
        (["--lifetime", "nan"], "--lifetime must be a positive number"),
        (["--lifetime", "0.1"], "--lifetime must be at least 0.5 s"),
        (["--pause", "-1"], "--pause must be a non-negative number"),
    ],
)
def test_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *argv]) == 2
    assert message in capsys.readouterr().err


# -- judging and reporting (pure) ---------------------------------------------------------------


def _tally(name: str, calls: int, failures: int = 0) -> Tally:
    tally = Tally(name)
    for index in range(calls):
        tally.record(0.001 * (index + 1), RuntimeError() if index < failures else None)
    return tally


def test_the_summary_explains_freshtoken_errors_with_their_message() -> None:
    from freshtoken import TokenEndpointUnavailable

    tally = _tally("one", 5)
    tally.record(0.2, TokenEndpointUnavailable("the token endpoint timed out"))
    tally.record(0.2, TokenEndpointUnavailable("a later message"))
    text = render_summary(_result(8, tally), False, "2 of 7 calls failed")
    assert "freshtoken errors 2 x TokenEndpointUnavailable: the token endpoint timed out" in text


def _result(token_requests: int, *tallies: Tally) -> DemoResult:
    return DemoResult(
        duration=12,
        lifetime=2,
        tallies=list(tallies),
        token_requests=token_requests,
        expected=expected_token_requests(12, 2, RefreshPolicy()),
        events=Counter({"fetched": 1, "refreshed": 7}),
    )


def test_expected_token_requests_follow_the_policy_and_its_jitter() -> None:
    # 2 s tokens turn stale 0.4 s before expiry, 0.45 s with half the 25 % jitter:
    # one request per 1.55 s, plus the first token, minus half an interval on average.
    assert expected_token_requests(12, 2, RefreshPolicy()) == pytest.approx(12 / 1.55 + 0.5)
    no_jitter = RefreshPolicy(jitter=0)
    assert expected_token_requests(16, 2, no_jitter) == pytest.approx(16 / 1.6 + 0.5)


def test_judge_passes_only_without_failures_and_with_the_expected_requests() -> None:
    assert judge(_result(8, _tally("a", 100)))[0]
    assert judge(_result(9, _tally("a", 100)))[0]
    ok, why = judge(_result(11, _tally("a", 100)))
    assert not ok
    assert "11 token requests, expected 8.2 ± 1" in why
    ok, why = judge(_result(8, _tally("a", 100, failures=2), _tally("b", 10)))
    assert not ok
    assert why == "2 of 110 calls failed"
    assert judge(_result(8, _tally("a", 0))) == (False, "no call completed")


def test_the_summary_lists_workloads_errors_and_the_verdict() -> None:
    result = _result(9, _tally("one", 200, failures=1), _tally("two", 100))
    result.seed = _tally("seed pattern", 50, failures=40)
    result.seed_token_requests = 41
    result.seed_swallowed = Counter({"ConnectionError": 2})
    ok, verdict = judge(result)
    text = render_summary(result, ok, verdict)
    row = next(line for line in text.splitlines() if line.startswith("one "))
    assert row.split() == ["one", "200", "1", "100.0", "198.0"]  # calls, failed, p50, p99 ms
    assert "freshtoken, all workers" in text
    assert "seed pattern 41" in text
    assert "freshtoken errors 1 x RuntimeError" in text
    assert "seed swallowed    2 error(s) printed and ignored" in text
    assert text.endswith("result            FAILED: 1 of 300 calls failed")


def test_the_summary_without_the_seed_and_a_passing_run() -> None:
    result = _result(8, _tally("one", 10))
    ok, verdict = judge(result)
    text = render_summary(result, ok, verdict)
    assert "seed" not in text
    assert "manager events    1 fetched, 7 refreshed, 0 invalidated after a 401, 0 failed" in text
    assert text.endswith(
        "result            OK: no call failed, and 8 token requests for 6.0 token lifetimes"
    )


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    import io

    from freshtoken._cli.demo import _progress

    out = io.StringIO()
    _progress(out, True, 1.0, 4, "calls 10", final=False)
    _progress(out, True, 4.0, 4, "calls 40", final=True)
    assert out.getvalue() == "\r[  1.0/4 s] calls 10\x1b[K\r[  4.0/4 s] calls 40\x1b[K\n"


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


# -- the seed, reproduced ----------------------------------------------------------------------


def test_the_seed_pattern_keeps_presenting_its_expired_token() -> None:
    logged: list[object] = []
    with AuthorizationServer(token_lifetime=2.0) as server:
        client = server.add_client(auth_methods=("client_secret_post",))
        api = SeedAPI(
            server.base_url,
            client.client_id,
            client.client_secret or "",
            token_url=server.token_url,
            lifetime=2.0,
            log=logged.append,
        )
        try:
            api.someRequest()  # fine while the first token lives
            time.sleep(2.05)  # a real 2-second token against the real server
            for _ in range(2):
                with pytest.raises(requests.HTTPError) as caught:
                    api.someRequest()
                assert caught.value.response.status_code == 401
        finally:
            api.close_session()
        # One token in __init__, then one per call, never stored.
        assert server.token_requests == 3
        assert server.unauthorized.get("expired") == 2
    assert logged == []


def test_the_seed_prints_and_swallows_a_failed_first_token_then_breaks() -> None:
    logged: list[object] = []
    url = f"http://127.0.0.1:{closed_port()}/token"
    api = SeedAPI(
        "http://127.0.0.1:1", "id", "secret", token_url=url, lifetime=1, log=logged.append
    )
    assert [type(e).__name__ for e in logged] == ["ConnectionError", "Exception"]
    assert str(logged[1]) == "Request for access token failed."
    with pytest.raises(TypeError):  # time.time() > None: the post never set an expiry
        api.someRequest()
    api.close_session()
