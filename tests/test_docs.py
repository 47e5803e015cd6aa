"""The documentation's code examples run as tests.

Every fenced block opened with exactly ```python in docs/*.md and README.md is executed (in a
fresh namespace, in order per file). Illustrative blocks that need a real provider use
```{code-block} python instead and are not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def runnable_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for number, match in enumerate(FENCE.finditer(text), 1):
            blocks.append((path.name, number, match.group(1)))
    return blocks


@pytest.mark.parametrize(
    ("document", "number", "code"),
    runnable_blocks(),
    ids=[f"{doc}#{n}" for doc, n, _ in runnable_blocks()],
)
def test_documentation_example_runs(document: str, number: int, code: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{document}_{number}"}
    exec(compile(code, f"{document}#{number}", "exec"), namespace)
