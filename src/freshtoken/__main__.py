"""``python -m freshtoken``: the same command line as the ``freshtoken`` script."""

from __future__ import annotations

import sys

from freshtoken._cli import main

if __name__ == "__main__":
    sys.exit(main())
