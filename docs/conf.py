"""Sphinx configuration for the freshtoken documentation (MyST Markdown, furo)."""

from __future__ import annotations

project = "freshtoken"
author = "freshtoken maintainers"
copyright = "2026, freshtoken maintainers"
release = "0.1.0"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = "freshtoken"
exclude_patterns = ["_build"]
autodoc_typehints = "description"
nitpicky = False
suppress_warnings = ["myst.xref_missing"]
