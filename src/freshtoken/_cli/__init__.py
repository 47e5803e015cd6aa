"""The ``freshtoken`` command: the parser, its subcommands and the demo.

``main`` is re-exported here because the console script's entry point is ``freshtoken._cli:main``.
"""

from .parser import main as main

__all__ = ["main"]
