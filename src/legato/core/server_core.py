"""The orchestration core as the server uses it: every decision against the stored state.

The embedded client's :class:`~legato.core.orchestrator.Orchestrator` keeps the runs it drives in
memory, because it is their only driver. A server replica is not: other replicas and clients act
on the same runs. So here each call reads, decides and writes in one database transaction, with
the same rules (:mod:`legato.core.rules`) and the same effects
(:func:`~legato.core.orchestrator.apply_transition`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..exceptions import ConflictError, ObjectNotFound
from ..ids import new_id
from ..states import State, StateType
from ..store import models
from ..store.cleaning import _clean_json, _clean_str
from ..store.database import Database
from ..store.writer import Buffer, HistoryWriter, WritePolicy
from .orchestrator import _insert_for, _Run, apply_transition, run_from_row, transition_in_db
from .rules import Decision

_UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC)


def make_state(type_: StateType, name: str | None, message: str | None,
               timestamp: dt.datetime | None, details: dict[str, Any] | None) -> State:
    """A state from an API call. Its free text is stored as the embedded history stores it: a NUL
    character, a lone surrogate or a NaN (which PostgreSQL refuses) becomes a visible stand-in,
    rather than the call failing on a message that came from user code."""
    if message is not None:
        message = _clean_str(message)
    return State(type_, name, message, timestamp, None, _clean_json(details or {}))


class ServerCore:
    def __init__(self, db: Database, *, slot_wait: float = 0.5) -> None:
        self.db = db
        self.slot_wait = slot_wait
        self._writer = HistoryWriter(db, WritePolicy())  # only its write_buffer() is used

    # -- flows -----------------------------------------------------------------------------------
    def ensure_flow(self, name: str) -> dict[str, Any]:
        with self.db.write() as conn:
            return _ensure_flow(conn, name)

    # -- runs ------------------------------------------------------------------------------------
    def create_flow_run(self, *, flow_id: str | None, name: str, state: State, run_id: str | None,
                        parameters: dict[str, Any], tags: list[str],
                        parent_task_run_id: str | None, version: str | None,
                        flow_name: str | None = None) -> str:
        """A flow run of the flow ``flow_id``, or of the flow named ``flow_name`` (created with
        the run, in its transaction: a refused run leaves no new flow behind)."""
        now = _now()
        run_id = run_id or new_id()
        row = {
            "id": run_id, "flow_id": flow_id, "name": name, "parameters": _clean_json(parameters),
            "tags": tags, "parent_task_run_id": parent_task_run_id, "run_count": 0,
            "expected_start_time": state.timestamp, "total_run_time": 0.0, "version": version,
            "empirical_policy": {}, "created": now, "updated": now,
        }
        with self.db.write() as conn:
            tr = models.task_run
            if parent_task_run_id is not None and conn.execute(
                    sa.select(tr.c.id).where(tr.c.id == parent_task_run_id)).first() is None:
                raise ObjectNotFound(
                    f"No task run with id {parent_task_run_id} (the parent_task_run_id).")
            if flow_id is None:
                if flow_name is None:
                    raise ValueError("Give the flow run's flow: flow_name or flow_id.")
                row["flow_id"] = _ensure_flow(conn, flow_name)["id"]
            elif conn.execute(
                    sa.select(models.flow.c.id).where(models.flow.c.id == flow_id)).first() is None:
                raise ObjectNotFound(f"No flow with id {flow_id}.")
            self._insert_run(conn, "flow_run", run_id, row, state)
        return run_id

    def create_task_run(self, *, flow_run_id: str | None, task_key: str, name: str,
                        dynamic_key: str, state: State, run_id: str | None, tags: list[str],
                        task_inputs: dict[str, Any]) -> str:
        run_id = run_id or new_id()
        now = _now()
        row = {
            "id": run_id, "flow_run_id": flow_run_id, "task_key": task_key, "name": name,
            "dynamic_key": dynamic_key, "task_inputs": _clean_json(task_inputs), "tags": tags,
            "run_count": 0,
            "expected_start_time": state.timestamp, "total_run_time": 0.0,
            "empirical_policy": {}, "created": now, "updated": now,
        }
        with self.db.write() as conn:
            if flow_run_id is not None and conn.execute(
                    sa.select(models.flow_run.c.id).where(models.flow_run.c.id == flow_run_id)
            ).first() is None:
                raise ObjectNotFound(f"No flow run with id {flow_run_id}.")
            self._insert_run(conn, "task_run", run_id, row, state)
        return run_id

    def _insert_run(self, conn: sa.Connection, kind: str, run_id: str, row: dict[str, Any],
                    state: State) -> None:
        table = models.flow_run if kind == "flow_run" else models.task_run
        if conn.execute(sa.select(table.c.id).where(table.c.id == run_id)).first() is not None:
            raise ConflictError(f"A {kind.replace('_', ' ')} with id {run_id} exists already.")
        fields, srow = apply_transition(kind, run_id, _Run(kind), state, state.type, None, None)
        row.update(fields)
        conn.execute(table.insert().values(**row))
        states = models.flow_run_state if kind == "flow_run" else models.task_run_state
        conn.execute(states.insert().values(**srow))

    def set_state(self, kind: str, run_id: str, state: State, *, new_attempt: bool = False,
                  force: bool = False, result: dict[str, Any] | None = None
                  ) -> tuple[Decision, _Run]:
        return transition_in_db(self.db, kind, run_id, state, new_attempt=new_attempt,
                                force=force, result=None if result is None else _clean_json(result),
                                slot_wait=self.slot_wait)

    def read_run_core(self, kind: str, run_id: str) -> _Run:
        table = models.flow_run if kind == "flow_run" else models.task_run
        with self.db.read() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == run_id)).mappings().first()
        if row is None:
            raise ObjectNotFound(f"No {kind.replace('_', ' ')} with id {run_id} in the history.")
        return run_from_row(kind, dict(row))

    def delete_flow_run(self, run_id: str) -> None:
        """A flow run, with its task runs, their states, its logs (and its subflow runs)."""
        fr, tr = models.flow_run, models.task_run
        with self.db.write() as conn:
            if conn.execute(sa.select(fr.c.id).where(fr.c.id == run_id)).first() is None:
                raise ObjectNotFound(f"No flow run with id {run_id} in the history.")
            pending = [run_id]
            doomed: list[str] = []
            while pending:  # the flow run and its subflow runs, however deep
                doomed.extend(pending)
                tasks = sa.select(tr.c.id).where(tr.c.flow_run_id.in_(pending))
                pending = list(conn.execute(
                    sa.select(fr.c.id).where(fr.c.parent_task_run_id.in_(tasks))).scalars())
            for chunk in _chunks(doomed):
                task_ids = sa.select(tr.c.id).where(tr.c.flow_run_id.in_(chunk))
                conn.execute(models.task_run_state.delete().where(
                    models.task_run_state.c.task_run_id.in_(task_ids)))
                conn.execute(models.log.delete().where(models.log.c.flow_run_id.in_(chunk)))
                conn.execute(tr.delete().where(tr.c.flow_run_id.in_(chunk)))
                conn.execute(models.flow_run_state.delete().where(
                    models.flow_run_state.c.flow_run_id.in_(chunk)))
                conn.execute(fr.delete().where(fr.c.id.in_(chunk)))

    def delete_task_run(self, run_id: str) -> None:
        tr = models.task_run
        with self.db.write() as conn:
            if conn.execute(sa.select(tr.c.id).where(tr.c.id == run_id)).first() is None:
                raise ObjectNotFound(f"No task run with id {run_id} in the history.")
            conn.execute(models.task_run_state.delete().where(
                models.task_run_state.c.task_run_id == run_id))
            conn.execute(models.log.delete().where(models.log.c.task_run_id == run_id))
            conn.execute(tr.delete().where(tr.c.id == run_id))

    def delete_flow(self, flow_id: str) -> None:
        f, fr = models.flow, models.flow_run
        with self.db.read() as conn:
            if conn.execute(sa.select(f.c.id).where(f.c.id == flow_id)).first() is None:
                raise ObjectNotFound(f"No flow with id {flow_id}.")
            runs = list(conn.execute(sa.select(fr.c.id).where(fr.c.flow_id == flow_id)).scalars())
        for run_id in runs:
            try:
                self.delete_flow_run(run_id)
            except ObjectNotFound:  # a subflow run deleted with its parent
                pass
        with self.db.write() as conn:
            conn.execute(f.delete().where(f.c.id == flow_id))

    # -- the HTTP client's batches -----------------------------------------------------------------
    def write_batch(self, batch: Any) -> int:
        """Write a client's batch (a validated :class:`~legato.schemas.api.HistoryBatch`) in
        one transaction: all of it, or (on a conflict) none of it."""
        buf = Buffer()
        buf.flows = [r.model_dump() for r in batch.flows]
        buf.flow_run_inserts = {r.id: r.model_dump() for r in batch.flow_run_inserts}
        now = _now()
        for row in buf.flow_run_inserts.values():
            if row["heartbeat"] is not None:  # alive as of now, by this server's clock
                row["heartbeat"] = now
        # an update that sets nothing (no known field) is no row to write (nor an empty UPDATE)
        buf.flow_run_updates = {k: d for k, v in batch.flow_run_updates.items()
                                if (d := v.model_dump(exclude_unset=True))}
        buf.task_run_inserts = {r.id: r.model_dump() for r in batch.task_run_inserts}
        buf.task_run_updates = {k: d for k, v in batch.task_run_updates.items()
                                if (d := v.model_dump(exclude_unset=True))}
        buf.flow_run_states = [r.model_dump() for r in batch.flow_run_states]
        buf.task_run_states = [r.model_dump() for r in batch.task_run_states]
        buf.logs = [r.model_dump() for r in batch.logs]
        # cache keys cleaned now: the writer's clean-and-retry cleans rows, not its dict's keys
        buf.cache = {}
        for r in batch.cache:
            row = r.model_dump()
            row["key"] = _clean_str(row["key"])
            buf.cache[row["key"]] = row
        count = buf.row_count()
        if count:
            try:
                self._writer.write_buffer(buf)
            except ConflictError as exc:
                # a client that timed out waiting for our answer sends the batch again: rows
                # written the first time are skipped, the rest written (still all-or-nothing)
                if not self._drop_written(buf):
                    raise self._explain_conflict(buf, exc) from None
                try:
                    self._writer.write_buffer(buf)
                except ConflictError as again:
                    raise self._explain_conflict(buf, again) from None
        return count

    def _explain_conflict(self, buf: Buffer, exc: ConflictError) -> ConflictError:
        """The database said only "foreign key": name the runs (or flows) the batch points at
        that neither it nor the history holds. Nothing of the batch was written."""
        wanted = (
            ("flow", models.flow, {r["flow_id"] for r in buf.flow_run_inserts.values()},
             {r["id"] for r in buf.flows}),
            ("flow run", models.flow_run,
             {r["flow_run_id"] for r in buf.task_run_inserts.values() if r["flow_run_id"]}
             | {r["flow_run_id"] for r in buf.flow_run_states}, set(buf.flow_run_inserts)),
            ("task run", models.task_run, {r["task_run_id"] for r in buf.task_run_states},
             set(buf.task_run_inserts)),
        )
        problems = []
        with self.db.read() as conn:
            for what, table, refs, own in wanted:
                ids = sorted(refs - own)
                found: set[str] = set()
                for chunk in _chunks(ids):
                    found.update(str(i) for i in conn.execute(
                        sa.select(table.c.id).where(table.c.id.in_(chunk))).scalars())
                missing = [i for i in ids if i not in found]
                if missing:
                    more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
                    problems.append(f"{what} {', '.join(missing[:3])}{more}")
        if not problems:
            return exc
        return ConflictError(
            "Nothing of the batch was written: it refers to what the history does not hold: "
            + "; ".join(problems) + ".")

    def _drop_written(self, buf: Buffer) -> bool:
        """Remove rows already in the store (by id) from ``buf``; True if any were."""
        dropped = False
        with self.db.read() as conn:
            def existing(table: sa.Table, ids: list[str]) -> set[str]:
                found: set[str] = set()
                for chunk in _chunks(ids):
                    found.update(str(i) for i in conn.execute(
                        sa.select(table.c.id).where(table.c.id.in_(chunk))).scalars())
                return found

            for table, inserts in ((models.flow_run, buf.flow_run_inserts),
                                   (models.task_run, buf.task_run_inserts)):
                for run_id in existing(table, list(inserts)):
                    del inserts[run_id]
                    dropped = True
            for table, name in ((models.flow, "flows"), (models.flow_run_state, "flow_run_states"),
                                (models.task_run_state, "task_run_states"), (models.log, "logs")):
                rows = getattr(buf, name)
                seen = existing(table, [r["id"] for r in rows])
                if seen:
                    setattr(buf, name, [r for r in rows if r["id"] not in seen])
                    dropped = True
        return dropped

    # -- cache -----------------------------------------------------------------------------------
    def read_cache(self, key: str) -> dict[str, Any] | None:
        key = _clean_str(key)  # as write_batch stores it
        c = models.cache_entry
        with self.db.read() as conn:
            row = conn.execute(sa.select(c).where(c.c.key == key)).mappings().first()
        if row is None or (row["expiration"] is not None and row["expiration"] <= _now()):
            return None
        return dict(row)

    # -- tag concurrency limits --------------------------------------------------------------------
    def set_concurrency_limit(self, tag: str, limit: int) -> dict[str, Any]:
        cl = models.concurrency_limit
        now = _now()
        with self.db.write() as conn:
            row = conn.execute(sa.select(cl).where(cl.c.tag == tag)).mappings().first()
            if row is None:
                insert = _insert_for(conn.dialect.name)(cl).values(
                    id=new_id(), tag=tag, concurrency_limit=limit, active_slots=[], created=now,
                    updated=now)
                conn.execute(insert.on_conflict_do_update(
                    index_elements=["tag"], set_={"concurrency_limit": limit, "updated": now}))
            else:
                conn.execute(cl.update().where(cl.c.tag == tag).values(
                    concurrency_limit=limit, updated=now))
            return dict(conn.execute(sa.select(cl).where(cl.c.tag == tag)).mappings().one())

    def read_concurrency_limit(self, tag: str) -> dict[str, Any]:
        cl = models.concurrency_limit
        with self.db.read() as conn:
            row = conn.execute(sa.select(cl).where(cl.c.tag == tag)).mappings().first()
        if row is None:
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}.")
        return dict(row)

    def read_concurrency_limits(self, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        cl = models.concurrency_limit
        with self.db.read() as conn:
            rows = conn.execute(sa.select(cl).order_by(cl.c.tag).limit(limit).offset(offset))
            return [dict(r) for r in rows.mappings()]

    def reset_concurrency_limit(self, tag: str) -> dict[str, Any]:
        cl = models.concurrency_limit
        with self.db.write() as conn:
            n = conn.execute(cl.update().where(cl.c.tag == tag).values(
                active_slots=[], updated=_now())).rowcount
        if not n:
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}.")
        return self.read_concurrency_limit(tag)

    def delete_concurrency_limit(self, tag: str) -> None:
        cl = models.concurrency_limit
        with self.db.write() as conn:
            n = conn.execute(cl.delete().where(cl.c.tag == tag)).rowcount
        if not n:
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}.")


def _ensure_flow(conn: sa.Connection, name: str) -> dict[str, Any]:
    f = models.flow
    row = conn.execute(sa.select(f).where(f.c.name == name)).mappings().first()
    if row is None:
        now = _now()
        insert = _insert_for(conn.dialect.name)(f).values(
            id=new_id(), name=name, created=now, updated=now)
        conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
        row = conn.execute(sa.select(f).where(f.c.name == name)).mappings().first()
    return dict(row)


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
