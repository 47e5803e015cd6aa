"""Token stores: the store protocols, the shared-fetch lease logic, the codec and the backends.

The Redis backend lives in the public module ``freshtoken.redis``, beside its import guard.
"""
