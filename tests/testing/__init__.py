"""Tests of freshtoken.testing: the local authorization server and the pytest plugin."""
