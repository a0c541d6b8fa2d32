"""Which client the SDK uses: the embedded one unless a server is configured (next issue)."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from ..exceptions import ConfigurationError
from ..settings import get_settings

_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def get_client(settings: Any = None) -> Any:
    """The client for the current settings (one per history database and write mode)."""
    s = settings or get_settings()
    if s.api_url:
        raise ConfigurationError(
            f"LEGATO_API_URL is set ({s.api_url}), but this Legato build has no HTTP client yet; "
            "unset it (`legato config unset LEGATO_API_URL`) to use the embedded history."
        )
    key = (s.resolved_database_url, s.database_busy_timeout, s.history_write_mode)
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(key)
        if client is None:
            # lazy: the store loads SQLAlchemy (~0.3 s), needed only once a flow runs
            from ..store.database import get_database
            from ..store.writer import policy_for
            from .embedded import EmbeddedClient

            db = get_database(s.resolved_database_url, s.database_busy_timeout)
            client = EmbeddedClient(db, policy_for(s.history_write_mode, s.history_flush_interval))
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
