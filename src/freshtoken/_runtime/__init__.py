"""The runtime: the token manager, its in-flight fetches, threads, the scheduler and the clock.

This is where the core's decisions meet threads and event loops.
"""
