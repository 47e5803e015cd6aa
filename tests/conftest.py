"""Session-wide test settings: the hypothesis profiles.

``default`` (local runs: fast), ``ci`` (selected when ``CI=true``: at least 10,000 examples per
property, as issue 9 asks), ``nightly`` (``HYPOTHESIS_PROFILE=nightly``: 200,000 per property).
``HYPOTHESIS_PROFILE`` overrides the choice. Tests that set ``max_examples`` themselves keep it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("default", max_examples=300, deadline=None)
settings.register_profile(
    "ci", max_examples=10_000, deadline=None, suppress_health_check=_QUIET, print_blob=True
)
settings.register_profile(
    "nightly", max_examples=200_000, deadline=None, suppress_health_check=_QUIET, print_blob=True
)


def _profile() -> str:
    chosen = os.environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    return "ci" if os.environ.get("CI", "").lower() == "true" else "default"


settings.load_profile(_profile())
