"""The notification service: announces flow runs entering the states the notification policies
name (see :mod:`legato.core.notifications`), every ``LEGATO_NOTIFICATIONS_INTERVAL_SECONDS``.

It runs in one server at a time (see base.py), but does not need to for correctness: a
delivery is unique per (policy, state) in the database and is claimed before it is sent.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from .base import Service

log = logging.getLogger("legato.server.services")


def ui_url_for(settings: Any) -> str:
    """The base of the links in notifications: LEGATO_UI_URL, else the server's own address
    (this machine's name when it listens on every interface)."""
    if settings.ui_url:
        return settings.ui_url.rstrip("/")
    host = settings.server_api_host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: name this machine
        host = socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    return f"http://{host}:{settings.server_api_port}"


class NotificationService(Service):
    """Queues a delivery for each new flow-run state a policy matches, and sends the due ones
    (retrying failed sends with a backoff)."""

    name = "notifications"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.interval = max(settings.notifications_interval_seconds, 0.05)
        self._core: Any = None

    def core(self, db: Any) -> Any:
        if self._core is None or self._core.db is not db:
            # lazy: the block store's cipher is only needed once a service runs
            from ...blocks.core import block_from_document
            from ...core.blocks import BlockCore
            from ...core.notifications import Notifications
            from ...store.encryption import get_cipher

            self._core = Notifications(db, BlockCore(db, get_cipher(self.settings)),
                                       build_block=block_from_document)
        return self._core

    def run_once(self, db: Any) -> None:
        done = self.core(db).process(ui_url_for(self.settings))
        if done["sent"] or done["failed"]:
            log.info("notifications: %d sent, %d to retry, %d failed", done["sent"],
                     done["retrying"], done["failed"])
