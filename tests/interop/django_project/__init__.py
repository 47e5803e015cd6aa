"""A minimal Django project serving django-oauth-toolkit for freshtoken's interop tests.

``serve.py`` is its entry point (``python -m django_project.serve`` with ``tests/interop`` on
``sys.path``); ``tests/interop/peers.py`` starts it. Configuration comes from the JSON
file named by ``FRESHTOKEN_INTEROP_DOT_CONFIG`` (database path, secret key, access-token
lifetime, scopes, users, applications).
"""
