"""The OAuth layer: grants, client authentication, discovery, retries and the token sender.

The request/response flows are generators that decide; ``sender`` is the one module that
performs them with httpx.
"""
