"""Interop tests against real third-party authorization servers (see conftest.py, peers.py)."""
