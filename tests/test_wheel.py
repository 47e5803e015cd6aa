"""The release installs from its wheel, not from the source tree.

``python -m build`` makes the sdist and the wheel (the wheel built from the sdist, as an installer
would), ``twine check`` accepts both, and the wheel installed with every extra into a fresh venv
runs the demo and imports each integration from a directory outside the repository. The base
wheel, without extras, imports too. Every step is bounded; pip may fetch the dependencies from
the index. Without ``build`` and ``twine`` (the dev group has them) the test skips, except under
``CI=true``, where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

import freshtoken

ROOT = Path(__file__).resolve().parents[1]
INTEGRATIONS = (
    "import freshtoken.httpx, freshtoken.requests, freshtoken.aiohttp, freshtoken.redis,"
    " freshtoken.otel, freshtoken.testing"
)

pytestmark = pytest.mark.release


def _require_tools() -> None:
    """Skip (fail under CI) when the release tools are not installed."""
    missing = [name for name in ("build", "twine") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (pip install --group dev)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _clean_env() -> dict[str, str]:
    """The environment without this run's source path or coverage hooks, so nothing leaks in."""
    return {
        key: value
        for key, value in os.environ.items()
        if key != "PYTHONPATH" and not key.startswith("COVERAGE")
    }


def _run(args: Sequence[str | Path], cwd: Path, timeout: float, *, isolated: bool = True) -> str:
    """Run a command bounded by ``timeout``; a failure shows its output.

    ``isolated`` (for the fresh venvs) drops this run's PYTHONPATH; the build tools, run by this
    interpreter, keep it.
    """
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=_clean_env() if isolated else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel of this tree, built once."""
    _require_tools()
    out = tmp_path_factory.mktemp("dist")
    build: list[str | Path] = [sys.executable, "-m", "build", "--outdir", out, ROOT]
    _run(build, cwd=ROOT, timeout=300, isolated=False)
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}: {found}"
    return found[0]


def _venv(where: Path, requirement: str) -> Path:
    """A fresh venv at ``where`` with ``requirement`` installed; returns its bin directory."""
    _run([sys.executable, "-m", "venv", where], cwd=where.parent, timeout=120)
    bindir = where / "bin"
    pip: list[str | Path] = [
        bindir / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    _run([*pip, requirement], cwd=where.parent, timeout=600)
    return bindir


def test_twine_accepts_both_archives(dist: Path) -> None:
    twine: list[str | Path] = [sys.executable, "-m", "twine", "check", "--strict", *dist.iterdir()]
    _run(twine, ROOT, timeout=120, isolated=False)


def test_sdist_has_tests_and_docs_and_the_wheel_neither(dist: Path) -> None:
    with tarfile.open(_one(dist, "*.tar.gz")) as sdist:
        top = {name.split("/")[1] for name in sdist.getnames() if name.count("/") >= 1}
    assert {"src", "tests", "docs", "pyproject.toml", "README.md"} <= top
    with zipfile.ZipFile(_one(dist, "*.whl")) as wheel:
        roots = {name.split("/")[0] for name in wheel.namelist()}
    assert roots == {"freshtoken", f"freshtoken-{freshtoken.__version__}.dist-info"}


def test_the_version_is_written_once(dist: Path) -> None:
    assert _one(dist, "*.whl").name == f"freshtoken-{freshtoken.__version__}-py3-none-any.whl"
    assert _one(dist, "*.tar.gz").name == f"freshtoken-{freshtoken.__version__}.tar.gz"


def test_the_wheel_with_every_extra_runs_the_demo_outside_the_repo(
    dist: Path, tmp_path: Path
) -> None:
    bindir = _venv(tmp_path / "venv", f"{_one(dist, '*.whl')}[all]")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run(
        [bindir / "python", "-c", f"{INTEGRATIONS}; print(freshtoken.__file__)"], outside, 120
    )
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where
    _run([bindir / "freshtoken", "demo", "--duration", "3"], outside, timeout=120)


def test_the_base_wheel_imports_without_extras(dist: Path, tmp_path: Path) -> None:
    bindir = _venv(tmp_path / "venv", str(_one(dist, "*.whl")))
    _run([bindir / "python", "-c", "import freshtoken, freshtoken.httpx"], tmp_path, 120)
