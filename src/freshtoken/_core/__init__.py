"""The sans-I/O core: errors, tokens, JWT reading, redaction, events, policy and the lifecycle.

Nothing here does I/O, starts a thread or waits: every decision is a function of its inputs
(``now``, random draws, a token) so that it can be tested without a clock or a network.
tests/test_layers.py enforces that this package imports only itself and the standard library.
"""
