"""The examples run as a user would run them, against a real local server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_seed_style_example_runs_across_several_lifetimes_without_a_failed_call() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "seed_style.py"),
            "--duration",
            "5",
            "--lifetime",
            "1.5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed calls    0" in result.stdout
    assert result.stdout.strip().endswith("OK")
