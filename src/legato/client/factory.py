"""Which client the SDK uses: the HTTP client when LEGATO_API_URL is set, else the embedded one."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from ..settings import get_settings

_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()
_server_known_up = False


def server_known_up() -> None:
    """This process was started for a run its server just handed out (a worker's flow run):
    a server that does not answer at once is an outage to wait out, not a wrong URL."""
    global _server_known_up
    _server_known_up = True


def get_client(settings: Any = None) -> Any:
    """The client for the current settings (one per history database and write mode)."""
    s = settings or get_settings()
    if s.api_url:
        key: tuple[Any, ...] = ("http", s.api_url, s.api_key, s.history_write_mode)
    else:
        key = (s.resolved_database_url, s.database_busy_timeout, s.history_write_mode)
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(key)
        if client is None:
            # lazy: the store loads SQLAlchemy (~0.3 s), needed only once a flow runs
            from ..store.writer import policy_for

            policy = policy_for(s.history_write_mode, s.history_flush_interval)
            if s.api_url:
                from .http import HttpClient
                from .transport import Transport

                transport = Transport(s.api_url, s.api_key, timeout=s.api_request_timeout,
                                      retries=s.api_request_retries,
                                      outage_window=s.api_outage_window_seconds,
                                      known_up=_server_known_up)
                client = HttpClient(transport, policy, slot_wait=s.concurrency_slot_wait_seconds,
                                    home=s.home)
            else:
                from ..store.database import get_database
                from .embedded import EmbeddedClient

                db = get_database(s.resolved_database_url, s.database_busy_timeout)
                client = EmbeddedClient(db, policy, heartbeat_seconds=s.flow_run_heartbeat_seconds)
                client.core.slot_wait = s.concurrency_slot_wait_seconds
            _clients[key] = client
            _register_atexit()
        return client


def close_clients() -> None:
    """Flush and close every client (at exit, and between tests)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for c in clients:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - at exit, nothing to report to
            pass
    from ..store.database import dispose_all  # lazy, as in get_client

    dispose_all()


_atexit_registered = False


def _register_atexit() -> None:
    # registered on first use, not at import: importing Legato has no side effects
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(close_clients)
