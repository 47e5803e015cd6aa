"""Create the database, users and applications, then serve django-oauth-toolkit on 127.0.0.1.

Run as ``python -m django_project.serve`` with ``tests/interop`` on ``sys.path`` and
``FRESHTOKEN_INTEROP_DOT_CONFIG`` naming the JSON configuration (see ``__init__.py``). Listens on
a port the kernel picks and prints ``{"event": "ready", "port": N}`` on stdout once it accepts
connections. Stops on SIGTERM/SIGINT, or when the process that started it goes away.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any


def _create_objects(config: dict[str, Any]) -> None:
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    user_model = get_user_model()
    for user in config["users"]:
        user_model.objects.create_user(username=user["username"], password=user["password"])
    application_model = get_application_model()
    for app in config["applications"]:
        # The clear secret goes in; django-oauth-toolkit hashes it on save (hash_client_secret).
        application_model.objects.create(
            name=app["client_id"],
            client_id=app["client_id"],
            client_secret=app["client_secret"],
            client_type=application_model.CLIENT_CONFIDENTIAL,
            authorization_grant_type=app["grant"],
            redirect_uris=app["redirect_uri"],
            algorithm=application_model.NO_ALGORITHM,
        )


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    import django
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    config = json.loads(
        Path(os.environ["FRESHTOKEN_INTEROP_DOT_CONFIG"]).read_text(encoding="utf-8")
    )
    django.setup()
    call_command("migrate", verbosity=0, interactive=False, run_syncdb=True)
    _create_objects(config)

    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()

    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_wsgi_application())
    try:
        port = server.server_address[1]
        sys.stdout.write(json.dumps({"event": "ready", "port": port}) + "\n")
        sys.stdout.flush()
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
