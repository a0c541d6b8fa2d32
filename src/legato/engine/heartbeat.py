"""Heartbeats: how the history tells a running flow run from one whose process died.

One light thread per process, and only while this process runs a flow run: it starts with the
first flow run (a script's, a subflow's, a deployment's), beats every
``LEGATO_FLOW_RUN_HEARTBEAT_SECONDS`` for every flow run the process is running, and stops when
none remains. A beat goes out through each run's client: embedded, an update of the run's
``heartbeat`` column that rides on the history writer's next flush (no connection of its own);
through a server, the heartbeat API call. A run silent for two intervals is marked Crashed (by
the server's crash detection, or by the next Legato process that opens the embedded history:
``legato.core.liveness``). Nothing here is on the per-task path.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..logging import get_logger

log = get_logger("legato.engine.heartbeat")


class Heartbeats:
    """The flow runs this process is running, and the thread beating for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, Any] = {}  # flow run id -> its client
        self._stop: threading.Event | None = None  # the live thread's; None: no thread

    def add(self, run_id: str, client: Any, interval: float) -> None:
        """Beat for ``run_id`` from now on (starting the thread if it is the first)."""
        with self._lock:
            self._runs[run_id] = client
            if self._stop is None:
                self._stop = stop = threading.Event()
                threading.Thread(target=self._beat, args=(stop, max(interval, 0.05)),
                                 name="legato-heartbeat", daemon=True).start()

    def remove(self, run_id: str) -> None:
        """The run ended here: no more beats for it (and no thread when none remains)."""
        with self._lock:
            if self._runs.pop(run_id, None) is not None and not self._runs:
                assert self._stop is not None
                self._stop.set()
                self._stop = None

    def running(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def _beat(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            with self._lock:
                by_client: dict[int, tuple[Any, list[str]]] = {}
                for run_id, client in self._runs.items():
                    by_client.setdefault(id(client), (client, []))[1].append(run_id)
            for client, run_ids in by_client.values():
                try:
                    client.heartbeat_flow_runs(run_ids, interval)
                except Exception as exc:  # noqa: BLE001 - a missed beat is sent next interval
                    log.debug("heartbeat of flow run(s) %s failed: %s", ", ".join(run_ids), exc)

    def _after_fork(self) -> None:
        # a forked child has no thread, and runs none of its parent's flow runs
        self._lock = threading.Lock()
        self._runs = {}
        self._stop = None


heartbeats = Heartbeats()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=heartbeats._after_fork)
