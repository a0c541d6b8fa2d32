#!/usr/bin/env python
"""How fast the API's list, filter and read calls stay on a big history (PostgreSQL).

    python bench/scale_api.py                       # 1,000,000 flow runs, ~10,000,000 task runs
    python bench/scale_api.py --flow-runs 10000     # a smoke run (seconds)
    python bench/scale_api.py --drop                # drop the database at the end

1. **Generate.** A database ``legato_scale_bench`` (``--db-name``) is created, Legato creates its
   schema (``get_database(url).ensure_ready()``), then the rows are generated inside PostgreSQL
   with ``INSERT ... SELECT generate_series`` (deterministic hashes, no client round trips): ~2,000
   flows, N flow runs over 90 days (states, tags, subflows), ~10 task runs per flow run, every
   flow run's states, the task run states and logs of the newest flow runs. Legato's secondary
   indexes are dropped for the load and re-created from their own definitions afterwards (the
   schema stays exactly Legato's), then ``VACUUM ANALYZE``. The database is **kept** (``--keep``,
   the default) and re-used by the next run with the same ``--flow-runs`` (its parameters are
   in the database's comment); ``--regenerate`` forces a new one, ``--drop`` drops it at the end.
   An older Legato schema is upgraded by Legato's migrations when the server starts.
2. **Measure.** A real ``legato server start`` runs on the database (free port, services off);
   this process calls it with httpx, one call at a time: per API call a warm-up, then
   ``--calls`` timed requests with random, realistic parameters drawn from the data.
   p50/p95/p99 go to ``docs/performance-scale.md`` (``--out``) with the data set and the machine.

``--patch NAME`` (repeatable) starts the server with a proposed change to ``legato.store.queries``
monkeypatched in (see PATCHES), to measure a change before it is made; ``--pg-setting
NAME=VALUE`` sets a planner setting for the server's sessions; ``--compare LABEL=FILE`` adds the
p99 column of an earlier run; ``--only SUBSTR`` measures only the calls whose label contains SUBSTR.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("LEGATO_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
BUDGET_MS = 300.0
DAYS = 90

# -- vocabularies -----------------------------------------------------------------------------
ADJECTIVES = (
    "amber agile bold brave bright calm clever cosmic crimson daring eager electric fancy "
    "gentle golden happy hidden honest icy jolly keen lively lucky mellow mighty misty noble "
    "olive patient proud quick quiet rapid rustic sage silent silver smart sturdy swift tidy "
    "turquoise vivid warm wise witty zealous"
).split()
ANIMALS = (
    "albatross badger beaver bison bobcat camel cheetah condor coyote crane dingo dolphin "
    "eagle falcon ferret finch fox gazelle gecko heron hyena ibis jackal jaguar kestrel koala "
    "lemur leopard lynx marmot mink moose narwhal ocelot okapi orca otter owl panther parrot "
    "pelican puffin quail raven salamander seal shrew sparrow stork tapir tiger toucan turtle "
    "viper walrus wolf wombat yak zebra"
).split()
TEAMS = "billing growth ml platform data risk ops search".split()
NOUNS = ("orders users events payments invoices sessions metrics features model report logs "
         "inventory").split()
VERBS = ("extract transform load validate fetch clean aggregate train score publish notify "
         "compute merge split upload download").split()
TASK_NAMES = [f"{v}_{n}" for v in VERBS for n in NOUNS]  # 192
FLOW_VERBS = "sync etl refresh backfill train report export ingest".split()
RESOURCE_TAGS = ["db", "s3", "api", "gpu"]

# -- the generator ----------------------------------------------------------------------------
FUNCTIONS = r"""
CREATE FUNCTION pg_temp.u(h bigint) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (h & 2147483647)::float8 / 2147483648.0 $$;
CREATE FUNCTION pg_temp.pick(arr text[], h bigint) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT arr[1 + ((h & 2147483647) % array_length(arr, 1))::int] $$;
-- a UUIDv7 (as legato.ids makes them): 48-bit ms timestamp, version 7, variant 10, hash bits
CREATE FUNCTION pg_temp.v7(ts timestamptz, h1 bigint, h2 bigint) RETURNS uuid LANGUAGE sql
IMMUTABLE PARALLEL SAFE AS $$ SELECT (
    lpad(to_hex(floor(extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7'
    || substr(lpad(to_hex(h1), 16, '0'), 1, 3) || substr('89ab', (h2 & 3)::int + 1, 1)
    || substr(lpad(to_hex(h2), 16, '0'), 2, 15))::uuid $$;
"""

FLOWS = r"""
CREATE TEMP TABLE fmap AS
SELECT idx, pg_temp.v7(created, hashint8extended(idx, 1), hashint8extended(idx, 2)) AS id,
       team || '-' || noun || '-' || verb || '-' || lpad(idx::text, 4, '0') AS name,
       jsonb_build_array(env, 'team-' || team)
         || (CASE WHEN r_sched < 0.3 THEN '["hourly"]' WHEN r_sched < 0.6 THEN '["daily"]'
                  WHEN r_sched < 0.7 THEN '["nightly"]' ELSE '[]' END)::jsonb
         || (CASE WHEN r_crit < 0.05 THEN '["critical"]' ELSE '[]' END)::jsonb AS tags,
       created
FROM (
    SELECT idx, %(t0)s::timestamptz - interval '30 days' + idx * interval '1 minute' AS created,
           pg_temp.pick(%(teams)s, hashint8extended(idx, 3)) AS team,
           pg_temp.pick(%(nouns)s, hashint8extended(idx, 4)) AS noun,
           pg_temp.pick(%(flow_verbs)s, hashint8extended(idx, 5)) AS verb,
           CASE WHEN pg_temp.u(hashint8extended(idx, 6)) < 0.7 THEN 'prod'
                WHEN pg_temp.u(hashint8extended(idx, 6)) < 0.9 THEN 'staging' ELSE 'dev' END AS env,
           pg_temp.u(hashint8extended(idx, 7)) AS r_sched,
           pg_temp.u(hashint8extended(idx, 8)) AS r_crit
    FROM generate_series(0, %(flows)s - 1) idx
) s;
CREATE UNIQUE INDEX ON fmap (idx);
INSERT INTO flow (id, name, created, updated) SELECT id, name, created, created FROM fmap;
"""

# flow runs i = lo..hi, evenly over DAYS days up to `now` (with jitter); flows by a skewed
# popularity (the busiest flow has ~8% of the runs, the quietest ~0.02%)
FLOW_RUNS = r"""
INSERT INTO flow_run (id, flow_id, name, state_type, state_name, state_message, state_timestamp,
                      parameters, tags, parent_task_run_id, run_count, expected_start_time,
                      start_time, end_time, total_run_time, version, empirical_policy,
                      created, updated)
SELECT pg_temp.v7(created, hashint8extended(i, 11), hashint8extended(i, 12)), flow_id,
       pg_temp.pick(%(adj)s, hashint8extended(i, 13)) || '-'
         || pg_temp.pick(%(animals)s, hashint8extended(i, 14)),
       st, sn,
       CASE st WHEN 'FAILED' THEN 'Flow run encountered an exception: ValueError(''bad row '
                                  || (i %% 997) || ''')'
               WHEN 'CRASHED' THEN 'Execution was interrupted by the process exiting.'
               WHEN 'CANCELLED' THEN 'The flow run was cancelled.'
               WHEN 'COMPLETED' THEN 'All states completed.' END,
       coalesce(end_t, start_t, created),
       jsonb_build_object('date', to_char(created, 'YYYY-MM-DD'),
                          'limit', 100 * (1 + (i %% 10)), 'dry_run', i %% 7 = 0),
       ftags || (CASE WHEN r_tag < 0.005 THEN '["backfill"]' WHEN r_tag < 0.035 THEN '["manual"]'
                      WHEN r_tag < 0.036 THEN '["experimental"]' ELSE '[]' END)::jsonb,
       NULL,
       CASE WHEN st IN ('SCHEDULED', 'PENDING') THEN 0 WHEN sn = 'Retrying' THEN 2
            WHEN st = 'FAILED' THEN 1 + (i %% 3) ELSE 1 END,
       expected, start_t, end_t, coalesce(extract(epoch FROM end_t - start_t), 0),
       CASE WHEN i %% 10 < 3 THEN NULL ELSE 'v1.' || (i %% 20) END,
       '{}'::jsonb, created, coalesce(end_t, start_t, created)
FROM (
    SELECT b.*,
           CASE WHEN st = 'SCHEDULED' AND recent THEN created + r2 * interval '48 hours'
                ELSE created END AS expected,
           CASE WHEN st IN ('SCHEDULED', 'PENDING') THEN NULL
                ELSE created + r2 * interval '5 seconds' END AS start_t,
           CASE WHEN st IN ('COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED')
                THEN least(created + r2 * interval '5 seconds' + exp(r_dur * 7) * interval '1 second',
                           %(now)s::timestamptz) END AS end_t,
           CASE st WHEN 'COMPLETED' THEN CASE WHEN r2 < 0.05 THEN 'Cached' ELSE 'Completed' END
                   WHEN 'FAILED' THEN 'Failed' WHEN 'CRASHED' THEN 'Crashed'
                   WHEN 'CANCELLED' THEN 'Cancelled' WHEN 'PENDING' THEN 'Pending'
                   WHEN 'RUNNING' THEN CASE WHEN r2 < 0.1 THEN 'Retrying' ELSE 'Running' END
                   WHEN 'SCHEDULED' THEN CASE WHEN recent THEN 'Scheduled' WHEN r2 < 0.6 THEN 'Late'
                                              WHEN r2 < 0.7 THEN 'AwaitingRetry' ELSE 'Scheduled' END
           END AS sn
    FROM (
        SELECT a.*, f.id AS flow_id, f.tags AS ftags,
               CASE WHEN age < interval '1 hour' THEN
                        CASE WHEN r_state < 0.5 THEN 'RUNNING' WHEN r_state < 0.85 THEN 'COMPLETED'
                             WHEN r_state < 0.9 THEN 'FAILED' ELSE 'PENDING' END
                    WHEN recent AND r_state < 0.03 THEN 'SCHEDULED'
                    WHEN r_state < 0.86 THEN 'COMPLETED' WHEN r_state < 0.93 THEN 'FAILED'
                    WHEN r_state < 0.945 THEN 'CRASHED' WHEN r_state < 0.97 THEN 'CANCELLED'
                    WHEN r_state < 0.98 THEN 'SCHEDULED' WHEN r_state < 0.983 THEN 'RUNNING'
                    WHEN r_state < 0.988 THEN 'PENDING' ELSE 'COMPLETED' END AS st
        FROM (
            SELECT i, created, %(now)s::timestamptz - created AS age,
                   %(now)s::timestamptz - created < interval '1 day' AS recent,
                   pg_temp.u(hashint8extended(i, 2)) AS r_state,
                   pg_temp.u(hashint8extended(i, 3)) AS r_flow,
                   pg_temp.u(hashint8extended(i, 4)) AS r_dur,
                   pg_temp.u(hashint8extended(i, 5)) AS r2,
                   pg_temp.u(hashint8extended(i, 6)) AS r_tag
            FROM (SELECT i, %(t0)s::timestamptz
                            + ((i - 1) + pg_temp.u(hashint8extended(i, 1))) * %(slot)s::interval
                            AS created
                  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i) g
        ) a
        JOIN fmap f ON f.idx = least(floor(%(flows)s * power(a.r_flow, 3))::int, %(flows)s - 1)
    ) b
) c
ORDER BY i
"""

# ~10 task runs per flow run (1..18, and 0.5% of flow runs map a task over 200 items), for the
# flow runs created in [lo, hi); none for SCHEDULED/PENDING flow runs
TASK_RUNS = r"""
INSERT INTO task_run (id, flow_run_id, task_key, name, dynamic_key, cache_key, cache_expiration,
                      state_type, state_name, state_message, state_timestamp, task_inputs, tags,
                      run_count, expected_start_time, start_time, end_time, total_run_time,
                      empirical_policy, created, updated)
SELECT pg_temp.v7(created, uuid_hash_extended(fr_id, k), uuid_hash_extended(fr_id, k + 1000003)),
       fr_id, tname || '-' || substr(md5(tname), 1, 8), tname || '-' || dyn, dyn::text,
       CASE WHEN sn = 'Cached' THEN md5(tname || fr_id::text) END, NULL,
       st, sn,
       CASE st WHEN 'FAILED' THEN 'Task run encountered an exception: KeyError(''id'')'
               WHEN 'CRASHED' THEN 'Execution was interrupted by the process exiting.' END,
       coalesce(end_t, start_t, created), '{}'::jsonb,
       tags || (CASE WHEN r_res < 0.1 THEN jsonb_build_array(res) ELSE '[]' END)::jsonb,
       1, created, start_t, end_t, coalesce(extract(epoch FROM end_t - start_t), 0),
       '{}'::jsonb, created, coalesce(end_t, start_t, created)
FROM (
    SELECT t.*,
           CASE WHEN st = 'RUNNING' THEN NULL
                ELSE start_t + step * 0.9 END AS end_t,
           CASE st WHEN 'COMPLETED' THEN CASE WHEN r_c < 0.05 THEN 'Cached' ELSE 'Completed' END
                   WHEN 'FAILED' THEN 'Failed' WHEN 'CRASHED' THEN 'Crashed'
                   WHEN 'CANCELLED' THEN 'Cancelled' WHEN 'RUNNING' THEN 'Running' END AS sn
    FROM (
        SELECT fr.id AS fr_id, fr.tags, k, p.step,
               fr.start_time + (k - 1) * p.step AS created,
               fr.start_time + (k - 1) * p.step + interval '5 milliseconds' AS start_t,
               CASE WHEN p.mapped THEN p.tbase ELSE pg_temp.pick(%(task_names)s, p.fh + k * 37) END
                   AS tname,
               CASE WHEN p.mapped THEN k - 1 ELSE 0 END AS dyn,
               CASE WHEN k < p.n OR fr.state_type = 'COMPLETED' THEN 'COMPLETED'
                    WHEN fr.state_type IN ('FAILED', 'CRASHED', 'CANCELLED', 'RUNNING')
                        THEN fr.state_type
                    ELSE 'COMPLETED' END AS st,
               pg_temp.u(uuid_hash_extended(fr.id, 100 + k)) AS r_c,
               pg_temp.u(uuid_hash_extended(fr.id, 5000 + k)) AS r_res,
               pg_temp.pick(%(resource_tags)s, p.fh + k) AS res
        FROM flow_run fr
        CROSS JOIN LATERAL (
            SELECT q.*, (coalesce(fr.end_time, least(%(now)s::timestamptz, fr.start_time + interval '2 hours'))
                          - fr.start_time) / q.n AS step
            FROM (
                SELECT CASE WHEN pg_temp.u(uuid_hash_extended(fr.id, 1)) < 0.005 THEN 200
                            ELSE 1 + floor(pg_temp.u(uuid_hash_extended(fr.id, 2)) * 18)::int
                       END AS n,
                       pg_temp.u(uuid_hash_extended(fr.id, 1)) < 0.005 AS mapped,
                       uuid_hash_extended(fr.flow_id, 0) & 65535 AS fh,
                       pg_temp.pick(%(task_names)s, uuid_hash_extended(fr.flow_id, 3)) AS tbase
            ) q
        ) p
        CROSS JOIN LATERAL generate_series(1, p.n) k
        WHERE fr.created >= %(lo)s AND fr.created < %(hi)s
          AND fr.state_type NOT IN ('SCHEDULED', 'PENDING')
    ) t
) x
"""

FLOW_RUN_STATES = r"""
INSERT INTO flow_run_state (id, flow_run_id, type, name, message, timestamp, result, details)
SELECT pg_temp.v7(ts, uuid_hash_extended(fr.id, 200 + j), uuid_hash_extended(fr.id, 300 + j)),
       fr.id, typ, nm, msg, ts, NULL, '{}'::jsonb
FROM flow_run fr
CROSS JOIN LATERAL (VALUES
    (1, CASE WHEN fr.state_type = 'SCHEDULED' THEN 'SCHEDULED' ELSE 'PENDING' END,
        CASE WHEN fr.state_type = 'SCHEDULED' THEN fr.state_name ELSE 'Pending' END,
        NULL, fr.created),
    (2, 'RUNNING', 'Running', NULL, fr.start_time),
    (3, fr.state_type, fr.state_name, fr.state_message, fr.end_time)
) v(j, typ, nm, msg, ts)
WHERE ts IS NOT NULL AND (j < 3 OR fr.state_type <> 'RUNNING')
"""

TASK_RUN_STATES = r"""
INSERT INTO task_run_state (id, task_run_id, type, name, message, timestamp, result, details)
SELECT pg_temp.v7(ts, uuid_hash_extended(t.id, 200 + j), uuid_hash_extended(t.id, 300 + j)),
       t.id, typ, nm, msg, ts, NULL, '{}'::jsonb
FROM task_run t
JOIN (SELECT id FROM flow_run ORDER BY created DESC LIMIT %(newest)s) f ON f.id = t.flow_run_id
CROSS JOIN LATERAL (VALUES
    (1, 'PENDING', 'Pending', NULL, t.created),
    (2, 'RUNNING', 'Running', NULL, t.start_time),
    (3, t.state_type, t.state_name, t.state_message, t.end_time)
) v(j, typ, nm, msg, ts)
WHERE ts IS NOT NULL AND (j < 3 OR t.state_type <> 'RUNNING')
"""

LOGS = r"""
INSERT INTO log (id, flow_run_id, task_run_id, name, level, message, timestamp)
SELECT pg_temp.v7(ts, uuid_hash_extended(fr.id, 400 + j), uuid_hash_extended(fr.id, 500 + j)),
       fr.id, NULL, 'legato.flow_runs', lvl, msg, ts
FROM (SELECT * FROM flow_run ORDER BY created DESC LIMIT %(newest)s) fr
CROSS JOIN LATERAL (VALUES
    (1, 20, 'Beginning flow run ''' || fr.name || '''', fr.start_time),
    (2, CASE WHEN fr.state_type = 'COMPLETED' THEN 20 ELSE 40 END,
        'Finished in state ' || fr.state_name || '()', fr.end_time)
) v(j, lvl, msg, ts)
WHERE ts IS NOT NULL;
INSERT INTO log (id, flow_run_id, task_run_id, name, level, message, timestamp)
SELECT pg_temp.v7(ts, uuid_hash_extended(t.id, 400 + j), uuid_hash_extended(t.id, 500 + j)),
       t.flow_run_id, tid, nm, lvl, msg, ts
FROM task_run t
JOIN (SELECT id FROM flow_run ORDER BY created DESC LIMIT %(newest)s) f ON f.id = t.flow_run_id
CROSS JOIN LATERAL (VALUES
    (1, NULL::uuid, 'legato.flow_runs', 20, 'Created task run ''' || t.name || '''', t.created),
    (2, t.id, 'legato.task_runs', CASE WHEN t.state_type = 'COMPLETED' THEN 20 ELSE 40 END,
        'Finished in state ' || t.state_name || '()', t.end_time)
) v(j, tid, nm, lvl, msg, ts)
WHERE ts IS NOT NULL;
"""

# a subflow run hangs off a task run of a flow run created just before it (5% of flow runs)
SUBFLOWS = r"""
WITH p AS (
    SELECT id, pg_temp.u(uuid_hash_extended(id, 77)) AS r,
           lag(id, 1 + (uuid_hash_extended(id, 78) & 3)::int) OVER w AS parent_id,
           lag(state_type, 1 + (uuid_hash_extended(id, 78) & 3)::int) OVER w AS parent_state
    FROM flow_run WINDOW w AS (ORDER BY created, id)
)
UPDATE flow_run fr
SET parent_task_run_id = (SELECT t.id FROM task_run t WHERE t.flow_run_id = p.parent_id
                          ORDER BY t.created, t.id LIMIT 1)
FROM p
WHERE fr.id = p.id AND p.r < 0.05 AND p.parent_state NOT IN ('SCHEDULED', 'PENDING')
"""


def pg_connect(dsn: str, **kw: Any) -> Any:
    import psycopg

    return psycopg.connect(dsn, **kw)


def db_dsn(name: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


def legato_url(name: str) -> str:
    return db_dsn(name).replace("postgresql://", "postgresql+psycopg://", 1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def existing_params(name: str) -> dict[str, Any] | None:
    with pg_connect(ADMIN_DSN, autocommit=True) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,)).fetchone()
    if row is None:
        return None
    try:
        return json.loads(row[0] or "")
    except ValueError:
        return {}


def drop_database(name: str) -> None:
    with pg_connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def generate(name: str, flow_runs: int, seed_now: dt.datetime) -> dict[str, Any]:
    """Create the database, let Legato make its schema, fill it; returns what was made."""
    import sqlalchemy as sa

    sys.path.insert(0, str(ROOT / "src"))
    from legato.store.database import get_database

    drop_database(name)
    with pg_connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    t_all = time.perf_counter()
    db = get_database(legato_url(name))
    db.ensure_ready()  # the schema, by Legato itself
    with db.engine.connect() as c:
        revision = c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    db.dispose()

    flows = max(20, min(2000, flow_runs // 500))
    newest = max(1000, min(100_000, flow_runs // 10))
    now = seed_now
    t0 = now - dt.timedelta(days=DAYS)
    slot = dt.timedelta(days=DAYS) / flow_runs
    timings: dict[str, float] = {}

    import psycopg

    # client-side binding: parameters in DDL (CREATE TABLE AS) and several statements at once
    with pg_connect(db_dsn(name), autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        conn.execute("SET synchronous_commit = off")
        # the load skips the foreign-key triggers (the rows are consistent by construction)
        conn.execute("SET session_replication_role = replica")
        conn.execute(FUNCTIONS)
        # Legato's secondary indexes: dropped for the load, re-created from their own DDL
        indexes = conn.execute(
            """SELECT i.indexname, i.indexdef FROM pg_indexes i
               WHERE i.schemaname = 'public' AND i.tablename <> 'alembic_version'
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
               ORDER BY i.tablename, i.indexname""").fetchall()
        for ix, _ in indexes:
            conn.execute(f'DROP INDEX "{ix}"')

        def step(label: str, sql: str, params: dict[str, Any] | None = None) -> int:
            t = time.perf_counter()
            cur = conn.execute(sql, params or {})
            n = cur.rowcount
            timings[label] = timings.get(label, 0.0) + time.perf_counter() - t
            log(f"  {label}: {n:,} rows in {time.perf_counter() - t:.1f} s")
            return n

        common = {"now": now, "t0": t0, "slot": slot, "flows": flows, "adj": ADJECTIVES,
                  "animals": ANIMALS, "teams": TEAMS, "nouns": NOUNS, "flow_verbs": FLOW_VERBS,
                  "task_names": TASK_NAMES, "resource_tags": RESOURCE_TAGS, "newest": newest}
        log(f"generating into {name}: {flows:,} flows, {flow_runs:,} flow runs")
        step("flows", FLOWS, common)
        chunk = 250_000
        for lo in range(1, flow_runs + 1, chunk):
            step("flow runs", FLOW_RUNS, {**common, "lo": lo, "hi": min(flow_runs, lo + chunk - 1)})
        parts = max(1, min(20, flow_runs // 50_000))
        edges = [t0 + (now - t0) * j / parts for j in range(parts)] + [now + dt.timedelta(days=1)]
        for j in range(parts):
            step(f"task runs ({parts} parts)", TASK_RUNS,
                 {**common, "lo": edges[j], "hi": edges[j + 1]})
        step("flow run states", FLOW_RUN_STATES)
        step("task run states", TASK_RUN_STATES, common)
        step("logs", LOGS, common)
        conn.execute("SET session_replication_role = origin")
        t = time.perf_counter()
        for ix, ddl in indexes:
            t1 = time.perf_counter()
            conn.execute(ddl)
            log(f"  index {ix}: {time.perf_counter() - t1:.1f} s")
        timings["indexes"] = time.perf_counter() - t
        step("subflow links", SUBFLOWS)
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = time.perf_counter() - t
        log(f"  VACUUM ANALYZE: {timings['vacuum analyze']:.1f} s")
        info = describe_data(conn)
        info.update(flow_runs_param=flow_runs, newest_with_states=newest, generated=now.isoformat(),
                    revision_created=revision,
                    generate_seconds=round(time.perf_counter() - t_all, 1),
                    timings={k: round(v, 1) for k, v in timings.items()})
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS %s".replace("%s", _quote(json.dumps(
            {"flow_runs": flow_runs, "generated": now.isoformat(), "info": info}))))
    log(f"generated in {info['generate_seconds']:.0f} s")
    return info


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def describe_data(conn: Any) -> dict[str, Any]:
    q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
    out: dict[str, Any] = {}
    for t in ("flow", "flow_run", "task_run", "flow_run_state", "task_run_state", "log"):
        out[t] = q(f"SELECT count(*) FROM {t}")[0][0]
    out["sizes"] = {t: q(f"SELECT pg_size_pretty(pg_total_relation_size('{t}'))")[0][0]
                    for t in ("flow_run", "task_run", "flow_run_state", "task_run_state", "log")}
    out["database_size"] = q("SELECT pg_size_pretty(pg_database_size(current_database()))")[0][0]
    out["flow_run_states"] = dict(q(
        "SELECT state_type, count(*) FROM flow_run GROUP BY 1 ORDER BY 2 DESC"))
    out["subflow_runs"] = q("SELECT count(*) FROM flow_run WHERE parent_task_run_id IS NOT NULL")[0][0]
    out["span"] = [str(v) for v in q("SELECT min(created), max(created) FROM flow_run")[0]]
    return out


# -- parameter pools --------------------------------------------------------------------------
class Pools:
    """Realistic parameter values, drawn from the generated data."""

    def __init__(self, dsn: str, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        with pg_connect(dsn) as c:
            q = lambda sql, *a: c.execute(sql, a).fetchall()  # noqa: E731
            n_fr = q("SELECT reltuples::bigint FROM pg_class WHERE relname = 'flow_run'")[0][0]
            n_tr = q("SELECT reltuples::bigint FROM pg_class WHERE relname = 'task_run'")[0][0]
            self.flows = q("SELECT id::text, name FROM flow")
            pct_fr = min(100.0, 100.0 * 5000 / max(n_fr, 1))
            self.runs = q(
                "SELECT fr.id::text, fr.flow_id::text, f.name, fr.name, fr.tags, fr.state_type "
                f"FROM flow_run fr TABLESAMPLE BERNOULLI ({pct_fr}) REPEATABLE (1) "
                "JOIN flow f ON f.id = fr.flow_id")
            self.subflows = q(
                "SELECT fr.id::text, fr.parent_task_run_id::text, t.flow_run_id::text "
                "FROM flow_run fr JOIN task_run t ON t.id = fr.parent_task_run_id "
                "WHERE fr.parent_task_run_id IS NOT NULL ORDER BY md5(fr.id::text) LIMIT 2000")
            newest = q("SELECT id::text FROM flow_run ORDER BY created DESC LIMIT 100000")
            self.newest_runs = [r[0] for r in self.rng.sample(newest, min(2000, len(newest)))]
            self.logged_runs = [r[0] for r in q(
                "SELECT DISTINCT flow_run_id::text FROM log WHERE flow_run_id = ANY(%s::uuid[])",
                self.newest_runs[:2000])]
            pct_tr = min(100.0, 100.0 * 5000 / max(n_tr, 1))
            self.tasks = q(
                "SELECT id::text, flow_run_id::text, name, tags FROM task_run "
                f"TABLESAMPLE BERNOULLI ({pct_tr}) REPEATABLE (2)")
            self.stated_tasks = [r[0] for r in q(
                "SELECT task_run_id::text FROM task_run_state TABLESAMPLE BERNOULLI (1) "
                "REPEATABLE (3) LIMIT 2000")]
            self.logged_tasks = [r[0] for r in q(
                "SELECT task_run_id::text FROM log TABLESAMPLE BERNOULLI (1) REPEATABLE (4) "
                "WHERE task_run_id IS NOT NULL LIMIT 2000")]
            self.state_names = [r[0] for r in q("SELECT DISTINCT state_name FROM flow_run")]
            self.tags = sorted({t for r in self.runs for t in r[4]})
            lo, hi = q("SELECT min(created), max(created) FROM flow_run")[0]
            self.t_lo, self.t_hi = lo, hi
        self.types = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED", "SCHEDULED", "RUNNING",
                      "PENDING"]
        self.rare_tags = [t for t in ("backfill", "experimental", "critical") if t in self.tags]

    def pick(self, seq: Any) -> Any:
        return self.rng.choice(seq)

    def time_in_range(self, margin: dt.timedelta = dt.timedelta(0)) -> dt.datetime:
        span = (self.t_hi - self.t_lo - margin).total_seconds()
        return self.t_lo + dt.timedelta(seconds=self.rng.uniform(0, max(span, 1)))

    def window(self, length: dt.timedelta) -> dict[str, str]:
        a = self.time_in_range(length)
        return {"start_after": a.isoformat(), "start_before": (a + length).isoformat()}

    def run(self) -> tuple:
        return self.pick(self.runs)


def iso(t: dt.datetime) -> str:
    return t.isoformat()


Call = tuple[str, str, Callable[["Pools"], tuple[str, str, Any]]]


def calls() -> list[Call]:
    """(group, label, make) where make(pools) -> (method, path, json body or None)."""
    H, D = dt.timedelta(hours=1), dt.timedelta(days=1)

    def fr(body: Callable[[Pools], dict[str, Any]]) -> Callable[[Pools], tuple]:
        return lambda p: ("POST", "/flow_runs/filter", body(p))

    def frc(body: Callable[[Pools], dict[str, Any]]) -> Callable[[Pools], tuple]:
        return lambda p: ("POST", "/flow_runs/count", body(p))

    def tr(body: Callable[[Pools], dict[str, Any]]) -> Callable[[Pools], tuple]:
        return lambda p: ("POST", "/task_runs/filter", body(p))

    def flow_weighted(p: Pools) -> tuple[str, str]:
        r = p.run()
        return r[1], r[2]

    def word(p: Pools) -> str:
        return p.run()[3].split("-")[p.rng.randrange(2)]

    out: list[Call] = [
        ("flow runs", "filter {} (newest 100)", fr(lambda p: {})),
        ("flow runs", "sort created_asc", fr(lambda p: {"sort": "created_asc"})),
        ("flow runs", "sort start_time_desc", fr(lambda p: {"sort": "start_time_desc"})),
        ("flow runs", "sort name_asc", fr(lambda p: {"sort": "name_asc"})),
        ("flow runs", "offset 10,000", fr(lambda p: {"offset": 10_000})),
        ("flow runs", "flow_name (busy flows: drawn from runs)",
         fr(lambda p: {"flow_name": flow_weighted(p)[1]})),
        ("flow runs", "flow_name (any flow)", fr(lambda p: {"flow_name": p.pick(p.flows)[1]})),
        ("flow runs", "flow_id (drawn from runs)", fr(lambda p: {"flow_id": flow_weighted(p)[0]})),
        ("flow runs", "name_like one word ('tiger')", fr(lambda p: {"name_like": word(p)})),
        ("flow runs", "name_like a run's name ('brave-tiger')",
         fr(lambda p: {"name_like": p.run()[3]})),
        ("flow runs", "name_like no match",
         fr(lambda p: {"name_like": f"zz{p.rng.randrange(10**6)}"})),
        ("flow runs", "ids (20)", fr(lambda p: {"ids": [p.run()[0] for _ in range(20)]})),
        ("flow runs", "state_types one (any of 7)", fr(lambda p: {"state_types": [p.pick(p.types)]})),
        ("flow runs", "state_types two", fr(lambda p: {"state_types": p.rng.sample(p.types, 2)})),
        ("flow runs", "state_names one", fr(lambda p: {"state_names": [p.pick(p.state_names)]})),
        ("flow runs", "tags_all one tag", fr(lambda p: {"tags_all": [p.pick(p.tags)]})),
        ("flow runs", "tags_all a run's tags (2-4)", fr(lambda p: {"tags_all": p.run()[4]})),
        ("flow runs", "tags_all rare tag", fr(lambda p: {"tags_all": [p.pick(p.rare_tags)]})),
        ("flow runs", "tags_all no match (2 tags no run has)",
         fr(lambda p: {"tags_all": ["prod", "dev"]})),
        ("flow runs", "parent_task_run_id (a subflow's)",
         fr(lambda p: {"parent_task_run_id": p.pick(p.subflows)[1]})),
        ("flow runs", "parent_flow_run_id (has subflows)",
         fr(lambda p: {"parent_flow_run_id": p.pick(p.subflows)[2]})),
        ("flow runs", "parent_flow_run_id (any run)",
         fr(lambda p: {"parent_flow_run_id": p.run()[0]})),
        ("flow runs", "start window 1 h", fr(lambda p: p.window(H))),
        ("flow runs", "start window 1 day", fr(lambda p: p.window(D))),
        ("flow runs", "start window 1 day, sort created_asc",
         fr(lambda p: {**p.window(D), "sort": "created_asc"})),
        ("flow runs", "start_after (last 24 h)",
         fr(lambda p: {"start_after": iso(p.t_hi - D)})),
        ("flow runs", "start_after (any time)", fr(lambda p: {"start_after": iso(p.time_in_range())})),
        ("flow runs", "start_before (any time)",
         fr(lambda p: {"start_before": iso(p.time_in_range())})),
        ("flow runs", "flow_name + state_types",
         fr(lambda p: {"flow_name": flow_weighted(p)[1], "state_types": ["FAILED", "CRASHED"]})),
        ("flow runs", "flow_id + start window 7 days",
         fr(lambda p: {"flow_id": flow_weighted(p)[0], **p.window(7 * D)})),
        ("flow runs", "tags_all + state_types",
         fr(lambda p: {"tags_all": [p.pick(p.tags)], "state_types": [p.pick(p.types)]})),
        ("flow runs", "state_types + sort start_time_desc",
         fr(lambda p: {"state_types": [p.pick(p.types)], "sort": "start_time_desc"})),
        ("flow runs", "flow_name + name_like",
         fr(lambda p: {"flow_name": flow_weighted(p)[1], "name_like": word(p)})),
        ("flow runs", "state_types + start window 1 day",
         fr(lambda p: {"state_types": [p.pick(p.types)], **p.window(D)})),
        ("flow runs", "flow_id + sort name_asc",
         fr(lambda p: {"flow_id": flow_weighted(p)[0], "sort": "name_asc"})),
        ("flow run count", "count {} (all)", frc(lambda p: {})),
        ("flow run count", "count state_types one", frc(lambda p: {"state_types": [p.pick(p.types)]})),
        ("flow run count", "count flow_id", frc(lambda p: {"flow_id": flow_weighted(p)[0]})),
        ("flow run count", "count flow_name + state_types",
         frc(lambda p: {"flow_name": flow_weighted(p)[1], "state_types": [p.pick(p.types)]})),
        ("flow run count", "count tags_all one tag", frc(lambda p: {"tags_all": [p.pick(p.tags)]})),
        ("flow run count", "count start window 1 day", frc(lambda p: p.window(D))),
        ("flow run count", "count name_like a run's name", frc(lambda p: {"name_like": p.run()[3]})),
        ("flow run reads", "GET /flow_runs/{id}", lambda p: ("GET", f"/flow_runs/{p.run()[0]}", None)),
        ("flow run reads", "GET /flow_runs/{18-char prefix}",
         lambda p: ("GET", f"/flow_runs/{p.run()[0][:18]}", None)),
        ("flow run reads", "GET /flow_runs/{8-char prefix} (often ambiguous: 404)",
         lambda p: ("GET", f"/flow_runs/{p.run()[0][:8]}", None)),
        ("flow run reads", "GET /flow_runs/{id}/states",
         lambda p: ("GET", f"/flow_runs/{p.run()[0]}/states", None)),
        ("task runs", "filter flow_run_id", tr(lambda p: {"flow_run_id": p.pick(p.tasks)[1]})),
        ("task runs", "filter flow_run_id (18-char prefix)",
         tr(lambda p: {"flow_run_id": p.pick(p.tasks)[1][:18]})),
        ("task runs", "flow_run_id + state_types",
         tr(lambda p: {"flow_run_id": p.pick(p.tasks)[1], "state_types": ["COMPLETED"]})),
        ("task runs", "filter {} (oldest 1000)", tr(lambda p: {})),
        ("task runs", "sort created_desc (newest 1000)", tr(lambda p: {"sort": "created_desc"})),
        ("task runs", "state_types one (any of 7)", tr(lambda p: {"state_types": [p.pick(p.types)]})),
        ("task runs", "state_types one, limit 100",
         tr(lambda p: {"state_types": [p.pick(p.types)], "limit": 100})),
        ("task runs", "tags_all one tag", tr(lambda p: {"tags_all": [p.pick(p.tags + RESOURCE_TAGS)]})),
        ("task runs", "tags_all rare tag", tr(lambda p: {"tags_all": [p.pick(p.rare_tags)]})),
        ("task runs", "name_like a task name ('load_orders')",
         tr(lambda p: {"name_like": p.pick(p.tasks)[2].rsplit("-", 1)[0]})),
        ("task runs", "name_like no match", tr(lambda p: {"name_like": f"zz{p.rng.randrange(10**6)}"})),
        ("task runs", "ids (20)", tr(lambda p: {"ids": [p.pick(p.tasks)[0] for _ in range(20)]})),
        ("task runs", "start window 1 h", tr(lambda p: p.window(H))),
        ("task runs", "start window 1 day", tr(lambda p: p.window(D))),
        ("task runs", "start window 1 day, sort created_desc",
         tr(lambda p: {**p.window(D), "sort": "created_desc"})),
        ("task runs", "start_after (last 24 h), sort created_desc, limit 100",
         tr(lambda p: {"start_after": iso(p.t_hi - D), "sort": "created_desc", "limit": 100})),
        ("task runs", "start_after (last 24 h), limit 100",
         tr(lambda p: {"start_after": iso(p.t_hi - D), "limit": 100})),
        ("task run count", "count flow_run_id",
         lambda p: ("POST", "/task_runs/count", {"flow_run_id": p.pick(p.tasks)[1]})),
        ("task run count", "count {} (all task runs)", lambda p: ("POST", "/task_runs/count", {})),
        ("task run reads", "GET /task_runs/{id}", lambda p: ("GET", f"/task_runs/{p.pick(p.tasks)[0]}", None)),
        ("task run reads", "GET /task_runs/{18-char prefix}",
         lambda p: ("GET", f"/task_runs/{p.pick(p.tasks)[0][:18]}", None)),
        ("task run reads", "GET /task_runs/{id}/states",
         lambda p: ("GET", f"/task_runs/{p.pick(p.stated_tasks)}/states", None)),
        ("logs", "logs/filter flow_run_id",
         lambda p: ("POST", "/logs/filter", {"flow_run_id": p.pick(p.logged_runs)})),
        ("logs", "logs/filter flow_run_id, no task logs",
         lambda p: ("POST", "/logs/filter",
                    {"flow_run_id": p.pick(p.logged_runs), "include_task_logs": False})),
        ("logs", "logs/filter task_run_id",
         lambda p: ("POST", "/logs/filter", {"task_run_id": p.pick(p.logged_tasks)})),
        ("flows", "flows/filter {} (name_asc, 200)", lambda p: ("POST", "/flows/filter", {})),
        ("flows", "flows/filter name_like",
         lambda p: ("POST", "/flows/filter", {"name_like": p.pick(p.flows)[1].split("-")[1]})),
        ("flows", "flows/filter created_desc",
         lambda p: ("POST", "/flows/filter", {"sort": "created_desc"})),
        ("flows", "GET /flows/{id}", lambda p: ("GET", f"/flows/{p.pick(p.flows)[0]}", None)),
        ("flows", "GET /flows/name/{name}", lambda p: ("GET", f"/flows/name/{p.pick(p.flows)[1]}", None)),
    ]
    return out


# -- proposed query changes, measured by monkeypatching the server -----------------------------
# (the id-prefix range, flow_name subquery, window sort and server GC tuning measured here first
# are now in legato itself; what remains has not been adopted)
def _patch_start_before_bound() -> None:
    """_flow_run_query and _task_run_query: with start_before, also `created <= start_before +
    1 hour`. A run starts after it is created, so coalesce(start_time, created) <= T implies
    created <= T (the hour allows for clocks that differ); the bound lets the planner start its
    walk down the created index at T instead of at the newest run."""
    from legato.store import models, queries

    slack = dt.timedelta(hours=1)
    flow_run_query, task_run_query = queries._flow_run_query, queries._task_run_query

    def _flow_run_query(db: Any, flt: Any, q: Any, *, ordered: bool) -> Any:
        q = flow_run_query(db, flt, q, ordered=ordered)
        if flt.start_before is not None:
            q = q.where(models.flow_run.c.created <= flt.start_before + slack)
        return q

    def _task_run_query(conn: Any, db: Any, flt: Any, q: Any) -> Any:
        q = task_run_query(conn, db, flt, q)
        if flt.start_before is not None:
            q = q.where(models.task_run.c.created <= flt.start_before + slack)
        return q

    queries._flow_run_query, queries._task_run_query = _flow_run_query, _task_run_query


PATCHES: dict[str, Callable[[], None]] = {  # applied in this order
    "start_before_bound": _patch_start_before_bound,
}


def serve(port: int, patches: list[str]) -> None:
    """`legato server start`, with the named PATCHES applied first (this runs in the child)."""
    for name in PATCHES:
        if name in patches:
            PATCHES[name]()
    from legato.cli import main

    sys.argv = ["legato", "server", "start", "--port", str(port)]
    main()


def pg_settings(db_name: str, settings: list[str], reset: bool = False) -> None:
    """Per-database planner settings for the server's sessions (new connections)."""
    with pg_connect(ADMIN_DSN, autocommit=True) as admin:
        for item in settings:
            name, _, value = item.partition("=")
            if not name.replace("_", "").isalnum():
                raise SystemExit(f"not a setting: {name!r}")
            if reset:
                admin.execute(f'ALTER DATABASE "{db_name}" RESET {name}')
            else:
                admin.execute(f'ALTER DATABASE "{db_name}" SET {name} = {_quote(value)}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(db_name: str, patches: list[str]) -> Iterator[str]:
    import httpx

    port = free_port()
    home = tempfile.mkdtemp(prefix="legato-scale-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(LEGATO_HOME=home, LEGATO_DATABASE_URL=legato_url(db_name),
               LEGATO_SERVER_SERVICES_ENABLED="false", LEGATO_LOGGING_TO_CONSOLE="false")
    if patches:
        cmd = [sys.executable, __file__, "_serve", str(port), *patches]
    else:
        legato = Path(sys.executable).with_name("legato")
        cmd = [str(legato), "server", "start", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 1800  # an older schema is migrated on start (indexes)
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.5)
        log(f"server up on {base} (pid {proc.pid}){' with ' + ', '.join(patches) if patches else ''}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def measure(base: str, pools: Pools, only: list[str], n_calls: int, warmup: int,
            max_seconds: float) -> list[dict[str, Any]]:
    import httpx

    results = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for group, label, make in calls():
            if only and not any(o.lower() in f"{group} {label}".lower() for o in only):
                continue
            samples: list[float] = []
            statuses: dict[int, int] = {}
            rows: list[int] = []
            started = time.perf_counter()
            for i in range(warmup + n_calls):
                method, path, body = make(pools)
                t = time.perf_counter()
                resp = client.request(method, path, json=body) if body is not None else \
                    client.request(method, path)
                elapsed = (time.perf_counter() - t) * 1000
                if resp.status_code >= 500 or resp.status_code in (400, 422):
                    raise SystemExit(f"{label}: {method} {path} {body} -> {resp.status_code} "
                                     f"{resp.text[:500]}")
                if i >= warmup:
                    samples.append(elapsed)
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                    data = resp.json()
                    rows.append(len(data) if isinstance(data, list) else
                                int(data.get("count", 1)) if isinstance(data, dict) else 1)
                if i >= warmup + 20 and time.perf_counter() - started > max_seconds:
                    break
            r = {"group": group, "label": label, "n": len(samples),
                 "p50": pct(samples, 50), "p95": pct(samples, 95), "p99": pct(samples, 99),
                 "max": max(samples), "rows": statistics.median(rows),
                 "statuses": statuses}
            results.append(r)
            log(f"  {group:15} {label:55} p50 {r['p50']:7.1f}  p95 {r['p95']:7.1f}  "
                f"p99 {r['p99']:7.1f} ms  (n={r['n']}, rows~{r['rows']:g})")
    return results


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GB"
    with pg_connect(ADMIN_DSN) as c:
        pg = c.execute("SHOW server_version").fetchone()[0]
        settings = {k: c.execute(f"SHOW {k}").fetchone()[0]
                    for k in ("shared_buffers", "work_mem", "effective_cache_size",
                              "random_page_cost", "max_parallel_workers_per_gather", "jit")}
    return {"cpu": f"{cpu} x {os.cpu_count()}", "memory": mem, "os": platform.platform(),
            "python": platform.python_version(), "postgres": pg,
            "postgres settings": ", ".join(f"{k}={v}" for k, v in settings.items())}


def load_compare(spec: str) -> tuple[str, dict[tuple[str, str], float]]:
    """LABEL=FILE: the p99 of every call in an earlier run's report (.md) or raw results (.json)."""
    label, _, file = spec.rpartition("=")
    text = Path(file).read_text()
    p99: dict[tuple[str, str], float] = {}
    if file.endswith(".json"):
        for r in json.loads(text)["results"]:
            p99[(r["group"], r["label"])] = r["p99"]
    else:
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 5 and cells[0] not in ("group", "---"):
                with contextlib.suppress(ValueError):
                    p99[(cells[0], cells[1])] = float(cells[4])
    return label, p99


def write_report(path: Path, results: list[dict[str, Any]], info: dict[str, Any],
                 args: argparse.Namespace, mach: dict[str, str]) -> None:
    over = [r for r in results if r["p99"] >= BUDGET_MS]
    lines = [
        "# Performance at scale: the API on a big history",
        "",
        f"Measured by `bench/scale_api.py` on {time.strftime('%Y-%m-%d')} "
        f"(`python bench/scale_api.py{' --flow-runs ' + str(args.flow_runs) if args.flow_runs != 1_000_000 else ''}"
        f"{' --patch ' + ' --patch '.join(args.patch) if args.patch else ''}"
        f"{' --pg-setting ' + ' --pg-setting '.join(args.pg_setting) if args.pg_setting else ''}`). "
        f"Budget: **{BUDGET_MS:.0f} ms at the 99th percentile** for every list, filter and read "
        "call. Latency is measured by the client (httpx, one call at a time, keep-alive) against a "
        "real `legato server start` (services off) on PostgreSQL; each call is warmed up "
        f"({args.warmup} calls), then timed {args.calls} times with random parameters drawn from "
        f"the data (fewer for calls that took more than {args.max_seconds:.0f} s in all; see n).",
        "",
        f"**{len(results) - len(over)} of {len(results)} calls within budget.**"
        + (" Over: " + "; ".join(f"{r['group']}: {r['label']} ({r['p99']:.0f} ms)" for r in over)
           if over else ""),
        "",
        "| group | call | p50 ms | p95 ms | p99 ms | budget | verdict | n | rows (median) |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in results:
        verdict = "ok" if r["p99"] < BUDGET_MS else "**over**"
        lines.append(f"| {r['group']} | {r['label']} | {r['p50']:.1f} | {r['p95']:.1f} | "
                     f"{r['p99']:.1f} | {BUDGET_MS:.0f} | {verdict} | {r['n']} | {r['rows']:,.0f} |")
    if args.compare:
        compared = [load_compare(c) for c in args.compare]
        lines += [
            "",
            "## p99 by configuration",
            "",
            "The same calls measured by earlier runs of this script in other configurations "
            "(ms; `-`: not measured then; their raw numbers stay in `bench/.work/`, which git "
            "ignores). " + " ".join(f"**{label}**: `{c.rpartition('=')[2]}`." for (label, _), c
                                 in zip(compared, args.compare, strict=True)),
            "",
            "| group | call | " + " | ".join(label for label, _ in compared) + " | this run |",
            "| --- | --- | " + " | ".join("---:" for _ in compared) + " | ---: |",
        ]
        for r in results:
            cells = [f"{p99[(r['group'], r['label'])]:.0f}" if (r["group"], r["label"]) in p99
                     else "-" for _, p99 in compared]
            lines.append(f"| {r['group']} | {r['label']} | " + " | ".join(cells)
                         + f" | {r['p99']:.0f} |")
    by_label = {(r["group"], r["label"]): r for r in results}

    def p50(group: str, label: str) -> str:
        r = by_label.get((group, label))
        return f"{r['p50']:.0f} ms" if r else "n/a"

    lines += [
        "",
        "## Reading the results",
        "",
        "- **Counting** reads every matching row (an index-only scan at best): no index makes "
        "the count of millions of rows cheap. Here: all flow runs "
        f"{p50('flow run count', 'count {} (all)')}, all task runs "
        f"{p50('task run count', 'count {} (all task runs)')} (p50). Counts of what a page "
        "shows (a flow run's task runs, a flow's runs, a state, a window) are fast.",
        "- **A page of 1,000 task runs** (the API's default limit for task runs) costs the server "
        f"~{p50('task runs', 'filter {} (oldest 1000)')} (p50) of which the query is a few ms: "
        "the rest is building and serialising 1,000 rows; one request in ten or so also pays a "
        "collection of Python's cyclic garbage collector (the p95).",
        "- **`ORDER BY created` + `LIMIT` with a filter on another column** is PostgreSQL's "
        "weak spot: the planner assumes the matches are spread evenly along `created` and walks "
        "that index, which is slow when they are rare or bunched in time (the task-run time "
        "windows sorted oldest first, rare tags and names). See the calls over budget.",
    ]
    states = ", ".join(f"{k} {v:,}" for k, v in info.get("flow_run_states", {}).items())
    sizes = ", ".join(f"{k} {v}" for k, v in info.get("sizes", {}).items())
    lines += [
        "",
        "Filter calls use the API's default page (flow runs 100, task runs 1,000, logs 1,000, "
        "flows 200) unless the label says otherwise; `rows` is the median number of rows "
        "returned (or the count).",
        "",
        "## The data set",
        "",
        f"Generated inside PostgreSQL by `bench/scale_api.py` (`INSERT ... SELECT generate_series`, "
        f"deterministic hashes) into the schema Legato created (revision "
        f"`{info.get('revision_created', '?')}`), in {info.get('generate_seconds', 0):.0f} s"
        + (f"; Legato migrated it to `{info['revision_measured']}` when the server started"
           if info.get("revision_measured", info.get("revision_created"))
           != info.get("revision_created") else "") + ":",
        "",
        f"- **{info.get('flow', 0):,} flows** (`team-noun-verb-NNNN`), with flow-level tags "
        "(prod/staging/dev, a team, hourly/daily/nightly, sometimes critical).",
        f"- **{info.get('flow_run', 0):,} flow runs** over {DAYS} days ({info.get('span', ['?', '?'])[0]}"
        f" to {info.get('span', ['?', '?'])[1]}), created evenly in time; the flow of a run is "
        "skewed (the busiest flow has ~8% of the runs, the quietest a few hundred). Names are "
        "Legato's `adjective-animal`. States: " + states + ". Runs of the last hour are mostly "
        "RUNNING; some of the last day are SCHEDULED in the future. Tags: the flow's, plus "
        "`manual` (3%), `backfill` (0.5%), `experimental` (0.1%) per run. "
        f"{info.get('subflow_runs', 0):,} are subflow runs (`parent_task_run_id` set to a task "
        "run of a flow run created just before).",
        f"- **{info.get('task_run', 0):,} task runs**: 1-18 per flow run, and 0.5% of flow runs "
        "map one task over 200 items; names `verb_noun-N` from 192 task names; their states follow "
        "the flow run's (the last task of a FAILED run failed, ...); tags are the flow run's, "
        "plus a resource tag (db/s3/api/gpu) on 10%. None for SCHEDULED/PENDING flow runs.",
        f"- **{info.get('flow_run_state', 0):,} flow run states** (every flow run: Pending or "
        f"Scheduled, Running, the final state); **{info.get('task_run_state', 0):,} task run "
        f"states** and **{info.get('log', 0):,} log lines** only for the task runs of the newest "
        f"{info.get('newest_with_states', 0):,} flow runs (all of them would be ~30M states).",
        f"- Sizes with indexes: {sizes}; database {info.get('database_size', '?')}.",
        "- Legato's secondary indexes were dropped for the load and re-created afterwards from "
        "their own definitions; then `VACUUM ANALYZE` (as autovacuum would have done on a live "
        "database). The data is warm in the OS page cache (it fits in memory) but not in "
        "PostgreSQL's shared buffers, which are left at the server's setting.",
        "",
        "## The machine",
        "",
        *[f"- {k}: {v}" for k, v in mach.items()],
        "",
    ]
    if args.patch:
        lines[2] = lines[2] + (" **With proposed changes to `legato.store.queries` monkeypatched "
                               "into the server** (not yet in the code; see Patches below): "
                               + ", ".join(f"`{p}`" for p in args.patch) + ".")
    if args.pg_setting:
        lines[2] = lines[2] + (" PostgreSQL settings for the server's sessions (`ALTER DATABASE "
                               "... SET`): " + ", ".join(f"`{x}`" for x in args.pg_setting) + ".")
    if args.patch:
        lines += ["## Patches", "",
                  "Measured with these proposed changes to `legato.store.queries` monkeypatched "
                  "into the server (not yet in the code):", "",
                  *[f"- `{p}`: {' '.join((PATCHES[p].__doc__ or '').split())}"
                    for p in args.patch], ""]
    path.write_text("\n".join(lines))
    log(f"wrote {path}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(int(sys.argv[2]), sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flow-runs", type=int, default=1_000_000)
    ap.add_argument("--db-name", default="legato_scale_bench")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--keep", dest="drop", action="store_false", default=False,
                   help="keep the database for the next run (default)")
    g.add_argument("--drop", dest="drop", action="store_true", help="drop the database at the end")
    ap.add_argument("--regenerate", action="store_true", help="generate even if the data exists")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per API call")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="stop timing a call after this long (after at least 20 calls)")
    ap.add_argument("--only", action="append", default=[], help="only calls whose label has this")
    ap.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES))
    ap.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="ALTER DATABASE ... SET NAME = VALUE for the measurement (reset after), "
                         "e.g. random_page_cost=1.1")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=FILE",
                    help="add the p99 column of an earlier report (.md) or raw results (.json)")
    ap.add_argument("--raw", type=Path, default=ROOT / "bench" / ".work" / "scale_api.json",
                    help="where every number goes (JSON)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the report (default docs/performance-scale.md; none with --only)")
    args = ap.parse_args()

    existing = existing_params(args.db_name)
    if args.regenerate or existing is None or existing.get("flow_runs") != args.flow_runs:
        info = generate(args.db_name, args.flow_runs,
                        dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    else:
        info = existing.get("info", {})
        log(f"re-using {args.db_name} ({args.flow_runs:,} flow runs, generated "
            f"{existing.get('generated')}); --regenerate for a new one")
    try:
        if args.generate_only:
            return
        pg_settings(args.db_name, args.pg_setting)
        with server(args.db_name, args.patch) as base:
            pools = Pools(db_dsn(args.db_name))
            with pg_connect(db_dsn(args.db_name)) as c:
                info["revision_measured"] = c.execute(
                    "SELECT version_num FROM alembic_version").fetchone()[0]
            load_before = os.getloadavg()
            results = measure(base, pools, args.only, args.calls, args.warmup, args.max_seconds)
            load_after = os.getloadavg()
        raw = args.raw  # first: the report may fail
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps({"results": results, "info": info, "patches": args.patch},
                                  indent=1, default=str))
        out = args.out or (None if args.only else ROOT / "docs" / "performance-scale.md")
        if out is not None:
            mach = machine()
            mach["load average (1/5/15 min) before / after"] = (
                f"{'/'.join(f'{x:.1f}' for x in load_before)} / "
                f"{'/'.join(f'{x:.1f}' for x in load_after)} (a shared machine: other "
                "processes ran too)")
            write_report(out, results, info, args, mach)
    finally:
        pg_settings(args.db_name, args.pg_setting, reset=True)
        if args.drop:
            drop_database(args.db_name)
            log(f"dropped {args.db_name}")


if __name__ == "__main__":
    main()
