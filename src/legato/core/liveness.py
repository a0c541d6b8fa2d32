"""The embedded history's crash detection: flow runs whose process died.

With no server watching heartbeats, a run whose process was killed (SIGKILL, out of memory, a
machine gone) would stay Running for ever. So each Legato process that opens an embedded history
(its first flow run, or a CLI command that reads the history) looks, in one indexed query, at
the runs still Running or Cancelling, and ends Crashed:

* at once, a run of a process of this host that is gone (its recorded pid is dead here);
* a run silent for two heartbeat intervals (``LEGATO_FLOW_RUN_HEARTBEAT_SECONDS``): one of
  another host, or one whose pid is alive here but is not beating (the pid was reused, or the
  process hangs).

Its task runs end with it, and a deployment's run is retried as its deployment asks, as the
server's crash detection does (``legato.core.run_control``).
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from ..processes import host, pid_alive
from ..states import State, StateType
from ..store import models
from ..store.database import Database
from .orchestrator import transition_in_conn
from .rules import Verdict

log = logging.getLogger("legato.core.liveness")
_UTC = dt.timezone.utc
_LIVE = ("RUNNING", "CANCELLING")


def end_dead_runs(db: Database, *, heartbeat_seconds: float,
                  now: dt.datetime | None = None) -> list[str]:
    """End Crashed the Running (Cancelling) flow runs whose process is gone; their ids."""
    now = now or dt.datetime.now(_UTC)
    timeout = 2 * heartbeat_seconds
    cutoff = now - dt.timedelta(seconds=timeout)
    here = host()
    fr = models.flow_run
    with db.read() as conn:  # (the state_type index)
        rows = conn.execute(sa.select(fr.c.id, fr.c.host, fr.c.pid, fr.c.heartbeat,
                                      fr.c.state_timestamp)
                            .where(fr.c.state_type.in_(_LIVE))).all()
    dead: list[tuple[str, dt.datetime | None, str]] = []
    for run_id, run_host, pid, beat, since in rows:
        last = beat or since
        if run_host == here and pid is not None and not pid_alive(pid):
            dead.append((run_id, beat, f"Its process ({pid} on {run_host}) is gone: killed, out "
                         "of memory, or ended without recording the flow run's end."))
        elif last is None or last < cutoff:
            dead.append((run_id, beat, f"No heartbeat for {timeout:g} s: the flow run's process "
                         "died (killed, out of memory, or its machine is gone) or hangs."))
    if not dead:
        return []
    # lazy: the run control (deployments' use cases) loads only when a dead run is found
    from .run_control import _after_end, _refuse

    ended = []
    for run_id, beat, message in dead:
        def guard(row: dict, beat: dt.datetime | None = beat) -> object:
            # still live and still silent: it did not beat (nor end) since it was read
            return None if row["state_type"] in _LIVE and row["heartbeat"] == beat else _refuse()

        with db.write() as conn:
            decision, run = transition_in_conn(conn, db, "flow_run", run_id,
                                               State(StateType.CRASHED, message=message),
                                               guard=guard)
            if decision.verdict is not Verdict.ACCEPT:
                continue
            _after_end(conn, db, run, now)
        ended.append(run_id)
        log.warning("flow run %s crashed: %s", run_id, message)
    return ended


def check_on_open(db: Database, heartbeat_seconds: float) -> None:
    """:func:`end_dead_runs` as a process opens the history: a failure here (a history locked
    for long) is not the caller's: its own work meets it, or goes on."""
    try:
        end_dead_runs(db, heartbeat_seconds=heartbeat_seconds)
    except Exception as exc:  # noqa: BLE001 - see above
        log.debug("could not check the history %s for dead flow runs: %s", db.display, exc)
