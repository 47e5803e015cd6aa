"""A cheap password hasher for the test server.

Django's default PBKDF2 runs 1,000,000 iterations per check; django-oauth-toolkit checks a hashed
client secret on every token request, which would make each request cost most of a second on a
shared CI machine. Same algorithm and storage format, fewer iterations: behaviour is unchanged.
"""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):  # type: ignore[misc]
    iterations = 1_000
