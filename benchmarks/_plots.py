"""The benchmarks' figures: matplotlib on its Agg backend, written as PNG next to the tables.

Imported only when a benchmark is given ``--plot DIR``, so the tables need no matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    """A new figure with one axes, titled and labelled; Agg so that no display is needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    return fig, axes


def save(fig: Any, directory: str, name: str) -> Path:
    """Write the figure as ``DIR/name.png`` and close it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(directory) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
