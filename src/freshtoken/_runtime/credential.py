"""Platform credentials: short-lived secrets that name their principal without being read.

A Kubernetes projected token file or a GitHub Actions ID token is an input of a grant (its
assertion or subject token) or of client authentication. Unlike an arbitrary callable, such a
credential knows what it stands for (a path, a runner's audience), so a grant that uses it can
still derive its store key: :class:`NamedCredential` is that promise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["NamedCredential"]


class NamedCredential(ABC):
    """A callable returning the current credential text, with a stable, secret-free ``key``."""

    __slots__ = ()

    @property
    @abstractmethod
    def key(self) -> str:
        """What names the credential's principal in a store key (never the credential)."""

    @abstractmethod
    def __call__(self) -> str:
        """The credential to send now (a non-empty string)."""
