#!/usr/bin/env python3
"""Time Legato and Prefect 3.9.1 side by side and write docs/performance.md.

    python bench/run.py                 # full run (medians of several repetitions)
    python bench/run.py --quick         # fewer repetitions, same workloads
    python bench/run.py --only seq_1000 --only import
    python bench/run.py --no-prefect    # Legato alone (Prefect columns left empty)

Legato runs from the project's `.venv`. Prefect is installed on first use into its own venv,
`bench/.prefect-venv` (`python3 -m venv` + `pip install prefect==3.9.1`); it is never a dependency
of Legato.

Every measurement is one fresh subprocess with a fresh temporary home (LEGATO_HOME or
PREFECT_HOME) and no LEGATO_* / PREFECT_* variables inherited from this shell, so Prefect uses its
default SQLite database under its home and its ephemeral API server (no PREFECT_API_URL).
Legato and Prefect samples are interleaved (L, P, L, P, ...) so both see the same machine noise;
what is reported is the median of each side and the ratio Prefect / Legato.

The server workloads (`--only server_start / server_memory / server_seq_1000 /
server_transitions / server_sdk_transitions`) start `legato server start` / `prefect server
start` in a fresh home on a free port (bench/server.py) and point scripts, an HTTP load generator
or SDK client processes at it.

Results: a table on stdout, docs/performance.md, and bench/results.json (every sample). Rows a run
does not measure (`--only`) are carried over from the previous bench/results.json (or, without
one, from docs/performance.md's table), marked with the date they were measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORKLOADS = BENCH / "workloads"
DOC = ROOT / "docs" / "performance.md"
RESULTS = BENCH / "results.json"

PREFECT_VERSION = "3.9.1"
PREFECT_VENV = BENCH / ".prefect-venv"
# `import prefect` (3.9.1) on the machine budgets.md was measured on; used to say how much
# slower or busier the machine of a given run is.
REFERENCE_PREFECT_IMPORT_S = 0.7


# --------------------------------------------------------------------------------------------
# The two contestants
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Impl:
    name: str  # the importable package, also the argument the workload scripts take
    label: str  # column header
    python: Path
    home_var: str  # LEGATO_HOME / PREFECT_HOME
    db_file: str  # the SQLite history under the home
    timeout: float  # seconds before a single process is given up on

    def env(self, home: Path) -> dict[str, str]:
        """A clean environment: nothing from this shell's LEGATO_* / PREFECT_* settings."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LEGATO_", "PREFECT_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env[self.home_var] = str(home)
        if self.name == "prefect":
            # No telemetry: this machine has no internet, and a DNS failure per run would be
            # a cost a real user does not pay (Legato sends none).
            env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
            env["DO_NOT_TRACK"] = "1"
            # Prefect waits 20 s for its ephemeral server by default; on a slow, busy machine
            # the first start (imports + migrations) can take longer. Waiting longer changes no
            # timing, it only avoids a spurious failure.
            env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"
        return env


def legato_impl() -> Impl:
    venv_py = ROOT / ".venv" / "bin" / "python"
    py = venv_py if venv_py.exists() else Path(sys.executable)
    return Impl("legato", "Legato", py, "LEGATO_HOME", "legato.db", timeout=600)


def prefect_impl() -> Impl:
    return Impl(
        "prefect",
        f"Prefect {PREFECT_VERSION}",
        ensure_prefect(),
        "PREFECT_HOME",
        "prefect.db",
        timeout=1800,  # Prefect's 10,000 mapped tasks take minutes on a small machine
    )


def ensure_prefect() -> Path:
    """bench/.prefect-venv with prefect==PREFECT_VERSION in it; created on first use."""
    py = PREFECT_VENV / "bin" / "python"
    if py.exists():
        probe = subprocess.run(
            [str(py), "-c", "import importlib.metadata as m; print(m.version('prefect'))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == PREFECT_VERSION:
            return py
    log(f"installing prefect=={PREFECT_VERSION} into {PREFECT_VENV.relative_to(ROOT)} (once) ...")
    base = shutil.which("python3") or sys.executable
    if not py.exists():
        subprocess.run([base, "-m", "venv", str(PREFECT_VENV)], check=True)
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"prefect=={PREFECT_VERSION}"],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        sys.exit(f"pip install prefect=={PREFECT_VERSION} failed:\n{pip.stdout}\n{pip.stderr}")
    return py


# --------------------------------------------------------------------------------------------
# One measurement = one fresh process in a fresh home
# --------------------------------------------------------------------------------------------
@dataclass
class Sample:
    wall_s: float  # whole process, as seen from here
    ok: bool
    reported: dict[str, Any] = field(default_factory=dict)  # the script's BENCH_RESULT line
    task_runs: int | None = None  # task_run rows in the history after the process exited
    error: str = ""


def run_once(impl: Impl, argv: list[str], *, count_task_runs: bool = False) -> Sample:
    with tempfile.TemporaryDirectory(prefix=f"bench-{impl.name}-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [str(impl.python), *argv],
                cwd=WORKLOADS,
                env=impl.env(home),
                capture_output=True,
                text=True,
                timeout=impl.timeout,
            )
        except subprocess.TimeoutExpired:
            return Sample(
                time.perf_counter() - t0, False, error=f"timed out after {impl.timeout:.0f} s"
            )
        wall = time.perf_counter() - t0
        reported: dict[str, Any] = {}
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH_RESULT "):
                reported = json.loads(line[len("BENCH_RESULT ") :])
        ok = proc.returncode == 0
        sample = Sample(wall, ok, reported)
        if not ok:
            sample.error = f"exit code {proc.returncode}: " + "\n".join(
                proc.stderr.splitlines()[-15:]
            )
        if count_task_runs:
            sample.task_runs = count_rows(home / impl.db_file, "task_run")
        return sample


def count_rows(db: Path, table: str) -> int | None:
    """Rows in a table of a SQLite history the (exited) process left behind."""
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the results table."""

    workload: str
    unit: str  # "s" or "runs"
    budget: str
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # impl -> summary
    met: bool | None = None
    key: str = ""  # stable name (ROW_ORDER); rows of an earlier run are matched on it
    carried_from: str | None = None  # not measured in this run: when it was
    cells: list[str] | None = None  # carried from docs/performance.md: its cells, as written


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def interleaved(impls: list[Impl], reps: int, argv: list[str], what: str, **kw: Any):
    """Run argv `reps` times per impl, alternating impls; returns {impl name: [Sample, ...]}."""
    samples: dict[str, list[Sample]] = {i.name: [] for i in impls}
    for r in range(reps):
        for impl in impls:
            s = run_once(impl, argv(impl) if callable(argv) else argv, **kw)
            samples[impl.name].append(s)
            detail = f"{s.wall_s:7.3f} s wall"
            if "flow_s" in s.reported:
                detail += f", flow {s.reported['flow_s']:.3f} s"
            if s.task_runs is not None:
                detail += f", {s.task_runs} task runs in history"
            log(
                f"  {what:<12} {impl.label:<14} rep {r + 1}/{reps}: {detail}"
                + ("" if s.ok else f"  FAILED ({s.error.splitlines()[0] if s.error else ''})")
            )
    return samples


def bench_import(impls: list[Impl], reps: int) -> list[Row]:
    row = Row(
        '`python -c "from X import flow, task"` (median; best)', "s", "≤ 0.150 s", key="import"
    )
    # One discarded run first: it compiles .pyc files and warms the OS file cache.
    for impl in impls:
        run_once(impl, ["-c", f"from {impl.name} import flow, task"])
    # `from X import flow, task`, not a bare `import X`: Legato loads its names lazily, so a bare
    # import would measure little more than the interpreter
    samples = interleaved(
        impls, reps, lambda i: ["-c", f"from {i.name} import flow, task"], "import"
    )
    for name, ss in samples.items():
        ok = [s.wall_s for s in ss if s.ok]
        row.values[name] = {
            "median": median(ok),
            "best": min(ok, default=float("nan")),
            "samples": [s.wall_s for s in ss],
            "errors": errors(ss),
        }
    if "legato" in row.values:
        row.met = row.values["legato"]["median"] <= 0.150
    return [row]


def bench_first_flow(impls: list[Impl], reps: int) -> list[Row]:
    row = Row("first flow in a fresh home, whole process", "s", "≤ 0.6 s", key="first_flow")
    samples = interleaved(impls, reps, lambda i: ["first_flow.py", i.name], "first_flow")
    for name, ss in samples.items():
        ok = [s.wall_s for s in ss if s.ok]
        row.values[name] = {
            "median": median(ok),
            "samples": [s.wall_s for s in ss],
            "errors": errors(ss),
        }
    if "legato" in row.values:
        row.met = row.values["legato"]["median"] <= 0.6
    return [row]


def _tasks(
    impls: list[Impl],
    reps: int,
    script: str,
    n: int,
    what: str,
    title: str,
    budget_s: float | None,
    budget: str,
) -> list[Row]:
    key = what.split("_")[0] + {"seq": "_1000", "map": "_10000"}[what.split("_")[0]]
    timing = Row(title, "s", budget, key=key)
    history = Row(
        f"task runs in the history after the {what} script exits (worst run)",
        "runs",
        "100 %",
        key=key + "_history",
    )
    samples = interleaved(
        impls, reps, lambda i: [script, i.name, str(n)], what, count_task_runs=True
    )
    for name, ss in samples.items():
        flow = [s.reported["flow_s"] for s in ss if s.ok and "flow_s" in s.reported]
        timing.values[name] = {
            "median": median(flow),
            "per_task_us": median(flow) / n * 1e6,
            "samples": flow,
            "wall_samples": [s.wall_s for s in ss],
            "errors": errors(ss),
        }
        counts = [s.task_runs or 0 for s in ss if s.ok]
        history.values[name] = {
            "worst": min(counts, default=None),
            "expected": n,
            "samples": counts,
        }
    if "legato" in timing.values:
        if budget_s is not None:
            timing.met = timing.values["legato"]["median"] <= budget_s
        worst = history.values["legato"]["worst"]
        history.met = worst == n and len(history.values["legato"]["samples"]) == reps
    return [timing, history]


def bench_seq(impls: list[Impl], reps: int, n: int) -> list[Row]:
    return _tasks(
        impls,
        reps,
        "seq_tasks.py",
        n,
        f"seq_{n}",
        f"{n:,} sequential tasks in one flow (flow call time; per task)",
        0.1 * n / 1000,
        f"≤ {0.1 * n / 1000:g} s (≤ 100 µs/task)",
    )


def bench_map(impls: list[Impl], reps: int, n: int) -> list[Row]:
    # the budget is for 10,000 tasks; at another size there is no budget to meet
    budget_s = 2.0 if n == 10_000 else None
    return _tasks(
        impls,
        reps,
        "map_tasks.py",
        n,
        f"map_{n}",
        f"{n:,} tasks with `.map()` on the thread runner (flow call time)",
        budget_s,
        "≤ 2 s" if budget_s else "(budget is for 10,000)",
    )


def bench_blocks(impls: list[Impl], reps: int, n: int = 100) -> list[Row]:
    """Saving and loading system Secret blocks on each side's default local store."""
    rows = {
        "save": Row(f"{n} `Secret(value=...).save(name)` calls, default local store (total; a call)",
                    "s", "—", key="blocks_save"),
        "load": Row(f"{n} `Secret.load(name).get()` calls, default local store (total; a call)",
                    "s", "—", key="blocks_load"),
    }
    samples = interleaved(impls, reps, lambda i: ["blocks.py", i.name, str(n)], "blocks")
    for name, ss in samples.items():
        for what, row in rows.items():
            got = [s.reported[f"{what}_s"] for s in ss if s.ok and f"{what}_s" in s.reported]
            row.values[name] = {
                "median": median(got),
                "per_call_ms": median(got) / n * 1e3,
                "samples": got,
                "errors": errors(ss),
            }
    return list(rows.values())


def errors(ss: list[Sample]) -> list[str]:
    return [s.error for s in ss if not s.ok]


def bench_deploy_latency(impls: list[Impl], reps: int) -> list[Row]:
    """From triggering a deployment's run until the flow's first statement runs, with a runner
    polling (bench/deploy_latency.py): one session per side, `reps` triggers each; and the
    requests the idle runner sends its server. Cells carry the p90 and the idle breakdown."""
    import deploy_latency as dl

    latency = Row(
        "`deployment run` → the flow's first statement: the trigger's API calls from a warm "
        "process, runner polling (Legato `agent start`, Prefect `flow.serve`), server on SQLite "
        "(median; p90)",
        "s",
        "median < 1 s",
        key="deploy_latency",
    )
    idle = Row(
        "requests per second the idle runner sends its server (server access log)",
        "per_s",
        "—",
        key="deploy_idle_load",
    )
    for impl in impls:
        o = dl.session(impl, n=reps, log=log)
        lat = o.get("latencies_s", [])
        log(
            f"  {'deploy':<12} {impl.label:<14} median {o.get('median_s', NAN):.3f} s, p90 "
            f"{o.get('p90_s', NAN):.3f} s: {', '.join(f'{x:.2f}' for x in lat)}; picked up "
            f"after {', '.join(f'{x:.2f}' for x in o.get('picked_up_s', []))}; process age "
            f"{', '.join(f'{x or NAN:.2f}' for x in o.get('process_age_s', []))}, CPU "
            f"{', '.join(f'{x:.2f}' for x in o.get('process_cpu_s', []))}"
            + (f"  FAILED ({o['errors'][0].splitlines()[0]})" if o["errors"] else "")
        )
        latency.values[impl.name] = {
            "median": o.get("median_s", NAN),
            "p90": o.get("p90_s", NAN),
            "samples": lat,
            "picked_up_median": median(o.get("picked_up_s", [])),
            "picked_up_s": o.get("picked_up_s", []),
            "process_age_median": median([x for x in o.get("process_age_s", []) if x is not None]),
            "process_age_s": o.get("process_age_s", []),
            "process_cpu_median": median(o.get("process_cpu_s", [])),
            "process_cpu_s": o.get("process_cpu_s", []),
            "server_healthy_s": o.get("healthy_s"),
            "runner_ready_s": o.get("runner_ready_s"),
            "load_average": o["load_average"],
            "errors": o["errors"],
        }
        idle.values[impl.name] = {
            "median": o.get("idle_rps", NAN),
            "requests": o.get("idle_requests"),
            "idle_s": o.get("idle_s"),
            "by_request": o.get("idle_by_request", {}),
        }

    def lat_cell(v: dict[str, Any] | None) -> str:
        if v is None:
            return "skipped"
        return "error" if v["median"] != v["median"] else (
            f"{v['median']:.3f} s (p90 {v['p90']:.3f}; {len(v['samples'])} runs; picked up by "
            f"the runner after {v['picked_up_median']:.3f} s; the flow's process "
            f"{v['process_age_median']:.3f} s old at its first line, "
            f"{v['process_cpu_median']:.2f} CPU-s)"
        )

    def idle_cell(v: dict[str, Any] | None) -> str:
        if v is None:
            return "skipped"
        if v["median"] != v["median"]:
            return "error"
        what = ", ".join(f"{c}× {r}" for r, c in sorted(v["by_request"].items()))
        return f"{v['median']:.2f} / s ({v['requests']} in {v['idle_s']:.0f} s: {what or 'none'})"

    def ratio_cell(row: Row) -> str:
        lv, pv = row.values.get("legato"), row.values.get("prefect")
        if not lv or not pv or not lv["median"] > 0 or not pv["median"] > 0:
            return "—"
        return f"{pv['median'] / lv['median']:,.1f}×"

    lv = latency.values.get("legato")
    if lv and lv["median"] == lv["median"]:
        latency.met = lv["median"] < 1.0
    met = "—" if latency.met is None else ("yes" if latency.met else "**no**")
    latency.cells = [latency.workload, lat_cell(lv), lat_cell(latency.values.get("prefect")),
                     ratio_cell(latency), latency.budget, met]
    idle.cells = [idle.workload, idle_cell(idle.values.get("legato")),
                  idle_cell(idle.values.get("prefect")), ratio_cell(idle), idle.budget, "—"]
    return [latency, idle]


# --------------------------------------------------------------------------------------------
# Server workloads (the machinery is in bench/server.py)
# --------------------------------------------------------------------------------------------
SERVER_NAMES = ("server_start", "server_memory", "server_seq_1000")
NAN = float("nan")


def bench_server(
    impls: list[Impl], reps: dict[str, int], selected: list[str], n: int, quick: bool
) -> list[Row]:
    """Sessions of one server each (fresh home, SQLite), Legato and Prefect alternating.
    Every session times the start; the first max(reps of server_memory, server_seq_1000) also
    measure idle memory, run seq_tasks.py and server_history.py against it, and memory after."""
    import server as srv

    sessions = max(reps[k] for k in SERVER_NAMES if k in selected)
    work = max((reps[k] for k in SERVER_NAMES[1:] if k in selected), default=0)
    hold = 30.0 if quick else 60.0
    for impl in impls:  # one discarded start: .pyc files, the OS file cache
        w = srv.server_session(impl, workloads=False)
        log(
            f"  {'warm-up':<12} {impl.label:<14} start {w.get('healthy_s', NAN):.3f} s"
            + (f"  FAILED ({w['errors'][0].splitlines()[0]})" if w["errors"] else "")
        )
    results: dict[str, list[dict[str, Any]]] = {i.name: [] for i in impls}
    for r in range(sessions):
        for impl in impls:
            o = srv.server_session(impl, workloads=r < work, n=n, hold_max_s=hold, log=log)
            results[impl.name].append(o)
            log(f"  {'server':<12} {impl.label:<14} rep {r + 1}/{sessions}: {session_line(o)}")

    start = Row(
        "`X server start` until GET /api/health answers, fresh home, SQLite (median; best)",
        "s",
        "≤ 2 s",
        key="server_start",
    )
    rows = [start]
    if work:
        idle = Row(
            "server resident memory, healthy + 5 s idle (RSS of its process tree)",
            "MB",
            "≤ 100 MB",
            key="server_memory_idle",
        )
        after = Row(
            f"server resident memory after the {n:,}-task scripts below",
            "MB",
            "—",
            key="server_memory_after",
        )
        seq = Row(
            f"{n:,} sequential tasks against the server (flow call time; per task)",
            "s",
            f"≤ {0.5 * n / 1000:g} s",
            key="server_seq_1000",
        )
        proc = Row(
            f"{n:,} sequential tasks against the server, whole script process",
            "s",
            "—",
            key="server_seq_1000_process",
        )
        hist = Row(
            "task runs readable through the API 1 s after the flow call returned (worst run; "
            "script still running)",
            "runs",
            "100 %",
            key="server_history",
        )
        rows += [idle, after, seq, proc, hist]
    for name, outs in results.items():
        healthy = [o["healthy_s"] for o in outs if "healthy_s" in o]
        start.values[name] = {
            "median": median(healthy),
            "best": min(healthy, default=NAN),
            "samples": healthy,
            "errors": [e for o in outs if "healthy_s" not in o for e in o["errors"]],
        }
        if not work:
            continue
        worked = outs[:work]
        for row, part in ((idle, "memory_idle"), (after, "memory_after")):
            mem = [o[part] for o in worked if part in o]
            row.values[name] = {
                "median": median([m["rss_mb"] for m in mem]),
                "pss_median": median([m["pss_mb"] for m in mem]),
                "processes": max((m["processes"] for m in mem), default=0),
                "samples": [m["rss_mb"] for m in mem],
            }
        seqs = [o["seq"] for o in worked if "seq" in o]
        flow = [s["reported"]["flow_s"] for s in seqs if s["ok"]]
        seq.values[name] = {
            "median": median(flow),
            "per_task_us": median(flow) / n * 1e6,
            "samples": flow,
            "errors": [s["error"] for s in seqs if not s["ok"]]
            + [e for o in worked if "healthy_s" not in o for e in o["errors"]],
        }
        proc.values[name] = {
            "median": median([s["wall_s"] for s in seqs if s["ok"]]),
            "samples": [s["wall_s"] for s in seqs],
        }
        hs = [o["history"] for o in worked if "history" in o]
        good = [h for h in hs if "at_1s" in h]
        worst = min(
            good, key=lambda h: (h["at_1s"]["task_runs"], h["at_1s"]["completed"]), default=None
        )
        hist.values[name] = {
            "worst": worst["at_1s"]["task_runs"] if worst else None,
            "expected": n,
            "samples": [h["at_1s"] for h in good],
            "complete_after_s": [h.get("complete_after_s") for h in good],
            "progress": [h.get("progress") for h in good],
            "extra": history_extra(worst, hold) if worst else "",
            "errors": [h["error"] for h in hs if h.get("error")]
            + [e for o in worked if "server died" in " ".join(o["errors"]) for e in o["errors"]],
        }
    if "legato" in start.values:
        start.met = start.values["legato"]["median"] <= 2.0
        if work:
            idle.met = idle.values["legato"]["median"] <= 100
            seq.met = seq.values["legato"]["median"] <= 0.5 * n / 1000
            h = hist.values["legato"]
            hist.met = len(h["samples"]) == work and all(
                c["task_runs"] == n and c["completed"] == n for c in h["samples"]
            )
    return rows


def session_line(o: dict[str, Any]) -> str:
    parts = [f"load {o['load_average'][0]:.1f}"]
    parts.append(f"healthy {o['healthy_s']:.3f} s" if "healthy_s" in o else "no start")
    if "memory_idle" in o:
        parts.append(f"idle {o['memory_idle']['rss_mb']:.0f} MB")
    s = o.get("seq")
    if s and s["ok"]:
        parts.append(f"seq flow {s['reported']['flow_s']:.3f} s / process {s['wall_s']:.3f} s")
    h = o.get("history")
    if h and "at_1s" in h:
        c = h["at_1s"]
        done = h.get("complete_after_s")
        parts.append(
            f"at +1 s {c['task_runs']}/{h['n']} runs, {c['completed']} completed, "
            f"{c.get('states', '?')} states, {c.get('logs', '?')} logs; "
            + (f"whole after {done:.1f} s" if done is not None else "not whole")
        )
    if "memory_after" in o:
        parts.append(f"after {o['memory_after']['rss_mb']:.0f} MB")
    text = ", ".join(parts)
    if o["errors"]:
        text += f"  FAILED ({o['errors'][0].splitlines()[0] if o['errors'][0] else ''})"
    return text


def history_extra(h: dict[str, Any], hold: float) -> str:
    c = h["at_1s"]
    done = h.get("complete_after_s")
    last = h.get("last") or c
    whole = (
        f"whole after {done:.1f} s"
        if done is not None
        else f"not whole after {hold:.0f} s ({last['task_runs']:,} runs)"
    )
    num = lambda x: f"{x:,}" if isinstance(x, int) else "?"  # noqa: E731
    return (
        f"; {num(c['completed'])} Completed, {num(c.get('states'))} task-run states, "
        f"{num(c.get('logs'))} log lines; {whole}"
    )


def bench_transitions(impls: list[Impl], reps: int, quick: bool) -> list[Row]:
    """A server on a fresh PostgreSQL database per sample, 8 client processes, alternating."""
    import server as srv

    clients, duration = 8, 10.0
    row = Row(
        f"state transitions through the API, PostgreSQL, {clients} client processes "
        "(accepted set_state calls per s)",
        "per_s",
        "≥ 2,000 / s",
        key="server_transitions",
    )
    outs: dict[str, list[dict[str, Any]]] = {i.name: [] for i in impls}
    for r in range(reps):
        for impl in impls:
            o = srv.transitions_session(impl, clients=clients, duration_s=duration, log=log)
            outs[impl.name].append(o)
            detail = (
                f"{o['per_s']:,.0f}/s accepted ({o['flow_runs_created']:,} flow runs; "
                f"{o['per_server_cpu_s']:,.0f} per server CPU-second), set_state "
                f"p50 {o['set_state_p50_ms'] or NAN:.1f} ms p99 {o['set_state_p99_ms'] or NAN:.1f}"
                f" ms; server CPU {o['server_cpu']:.2f}, machine {o['machine_cpu']:.2f} of "
                f"{o['cpus']} CPUs; load average {o['load_average'][0]:.1f}"
                + (f"; not accepted {o['not_accepted']}" if o["not_accepted"] else "")
                if "per_s" in o
                else "no result"
            )
            log(
                f"  {'transitions':<12} {impl.label:<14} rep {r + 1}/{reps}: {detail}"
                + (f"  FAILED ({o['errors'][0].splitlines()[0]})" if o["errors"] else "")
            )
    for name, os_ in outs.items():
        ok = [o for o in os_ if "per_s" in o]
        row.values[name] = {
            "median": median([o["per_s"] for o in ok]),
            "samples": [o["per_s"] for o in ok],
            "p50_ms": median([o["set_state_p50_ms"] for o in ok if o["set_state_p50_ms"]]),
            "p99_ms": median([o["set_state_p99_ms"] for o in ok if o["set_state_p99_ms"]]),
            "server_cpu": median([o["server_cpu"] for o in ok]),
            "per_server_cpu_s": median([o["per_server_cpu_s"] for o in ok]),
            "machine_cpu": median([o["machine_cpu"] for o in ok]),
            "not_accepted": [o["not_accepted"] for o in ok],
            "healthy_s_postgres": [o.get("healthy_s") for o in os_],
            "errors": [e for o in os_ for e in o["errors"] + o.get("client_errors", [])],
        }
    if "legato" in row.values:
        row.met = row.values["legato"]["median"] >= 2000
    return [row]


def bench_sdk_transitions(impls: list[Impl], reps: int, quick: bool) -> list[Row]:
    """A server on a fresh PostgreSQL database per sample, 8 SDK client processes running flows
    of 500 trivial tasks for 10 s; task-run states in the database / wall time; alternating."""
    import server as srv

    clients, n, duration = 8, 500, 10.0
    cap = 60.0 if quick else 120.0
    row = Row(
        f"task-run state transitions through the SDK's own write path, PostgreSQL, {clients} "
        f"client processes running flows of {n} tasks (task-run states recorded per s)",
        "per_s",
        "≥ 2,000 / s",
        key="server_sdk_transitions",
    )
    outs: dict[str, list[dict[str, Any]]] = {i.name: [] for i in impls}
    for r in range(reps):
        for impl in impls:
            o = srv.sdk_transitions_session(
                impl, clients=clients, n=n, duration_s=duration, cap_s=cap, log=log
            )
            outs[impl.name].append(o)
            detail = (
                f"{o['per_s']:,.0f}/s ({o['states']:,} of {o['expected_states']:,} task-run "
                f"states, {o['flows']:,} flows, in {o['wall_s']:.1f} s: flows done at "
                f"{o['flows_s']:.1f} s with {o['states_at_flows_done']:,} states there, then "
                + ("complete" if o["complete"] else "NOT complete at the cap")
                + f" {o['waited_s']:.1f} s later); {o['per_server_cpu_s']:,.0f} per server "
                f"CPU-second; server CPU {o['server_cpu']:.2f}, machine {o['machine_cpu']:.2f} of "
                f"{o['cpus']} CPUs; load average {o['load_average'][0]:.1f}"
                if "per_s" in o
                else "no result"
            )
            log(
                f"  {'sdk-trans':<12} {impl.label:<14} rep {r + 1}/{reps}: {detail}"
                + (f"  FAILED ({o['errors'][0].splitlines()[0]})" if o["errors"] else "")
            )
    for name, os_ in outs.items():
        ok = [o for o in os_ if "per_s" in o]
        mid = sorted(ok, key=lambda o: o["per_s"])[(len(ok) - 1) // 2] if ok else None
        row.values[name] = {
            "median": median([o["per_s"] for o in ok]),
            "samples": [o["per_s"] for o in ok],
            "states": [o["states"] for o in ok],
            "expected_states": [o["expected_states"] for o in ok],
            "complete": [o["complete"] for o in ok],
            "wall_s": [o["wall_s"] for o in ok],
            "flows_s": [o["flows_s"] for o in ok],
            "waited_s": [o["waited_s"] for o in ok],
            "states_at_flows_done": [o["states_at_flows_done"] for o in ok],
            "flows": [o["flows"] for o in ok],
            "flow_s_median": [median(o["flow_s"]) for o in ok],
            "progress": [o["progress"] for o in ok],
            "server_cpu": median([o["server_cpu"] for o in ok]),
            "per_server_cpu_s": median([o["per_server_cpu_s"] for o in ok]),
            "machine_cpu": median([o["machine_cpu"] for o in ok]),
            "cap_s": cap,
            "healthy_s_postgres": [o.get("healthy_s") for o in os_],
            "extra": sdk_transitions_extra(mid) if mid else "",
            "errors": [e for o in os_ for e in o["errors"] + o.get("client_errors", [])],
        }
    if "legato" in row.values:
        row.met = row.values["legato"]["median"] >= 2000
    return [row]


def sdk_transitions_extra(o: dict[str, Any]) -> str:
    """The cell's detail for the median sample."""
    if o["complete"]:
        end = f"all there {o['waited_s']:.1f} s after the last flow returned"
    else:
        end = (
            f"only {o['states']:,} of {o['expected_states']:,} there when the wait was capped "
            f"{o['waited_s']:.0f} s after the last flow returned"
        )
    cpu = o["per_server_cpu_s"]
    return (
        f" ({o['states']:,} states of {o['task_runs']:,} task runs in "
        f"{o['wall_s']:.1f} s; flows done at {o['flows_s']:.1f} s, {end}"
        + (f"; {cpu:,.0f} per server CPU-second)" if cpu == cpu else ")")
    )


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def fmt(row: Row, name: str) -> str:
    if row.cells:
        return row.cells[{"legato": 1, "prefect": 2}[name]]
    v = row.values.get(name)
    if v is None:
        return "skipped"
    if row.unit == "runs":
        if v["worst"] is None:
            return "error"
        return (
            f"{v['worst']:,} / {v['expected']:,} ({100 * v['worst'] / v['expected']:.1f} %)"
            + v.get("extra", "")
        )
    m = v["median"]
    if m != m:  # NaN: every sample failed
        return "error"
    if row.unit == "MB":
        return f"{m:,.0f} MB"
    if row.unit == "per_s":
        text = f"{m:,.0f} / s"
        if v.get("p50_ms") == v.get("p50_ms") and v.get("p50_ms") is not None:
            text += f" (p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.0f} ms a call"
            cpu = v.get("per_server_cpu_s", NAN)
            text += f"; {cpu:,.0f} per server CPU-second)" if cpu == cpu else ")"
        return text + v.get("extra", "")
    text = f"{m:.3f} s"
    if "best" in v:
        text += f" (best {v['best']:.3f})"
    if "per_call_ms" in v:
        text += f" ({v['per_call_ms']:,.1f} ms a call)"
    if "per_task_us" in v:
        us = v["per_task_us"]
        text += f" ({us:,.0f} µs/task)" if us < 1_000 else f" ({us / 1000:,.1f} ms/task)"
    return text


def ratio(row: Row) -> str:
    if row.cells:
        return row.cells[3]
    lv, pv = row.values.get("legato"), row.values.get("prefect")
    if not lv or not pv or row.unit == "runs":
        return "—"
    leg, pre = lv["median"], pv["median"]
    if leg != leg or pre != pre or leg <= 0 or pre <= 0:
        return "—"
    if row.unit == "per_s":  # a rate: higher is better, so Prefect/Legato < 1 favours Legato
        return f"{pre / leg:,.2f}× (Legato {leg / pre:,.1f}× the rate)"
    return f"{pre / leg:,.1f}×"


def table(rows: list[Row]) -> str:
    head = [
        "workload",
        "Legato",
        f"Prefect {PREFECT_VERSION}",
        "ratio Prefect/Legato",
        "Legato budget",
        "met?",
    ]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        if r.cells:
            met = r.cells[5]
        name = r.workload + (f" († measured {r.carried_from})" if r.carried_from else "")
        lines.append(
            "| "
            + " | ".join([name, fmt(r, "legato"), fmt(r, "prefect"), ratio(r), r.budget, met])
            + " |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def write_doc(rows: list[Row], meta: dict[str, Any]) -> None:
    reps = ", ".join(f"{k} ×{v}" for k, v in meta["reps"].items())
    failures = [
        f"- {r.workload}{' †' if r.carried_from else ''}, {impl}: "
        f"{e.splitlines()[0] if e else 'failed'}"
        for r in rows
        for impl, v in r.values.items()
        for e in v.get("errors", [])
    ]
    carried_note = (
        "\n\n† Not measured in this run: carried over from an earlier run (bench/results.json, or"
        " this file's previous table), with that run's machine load and repetitions."
        if any(r.carried_from for r in rows)
        else ""
    )
    text = f"""# Performance: Legato vs Prefect {PREFECT_VERSION}

Written by `python bench/run.py{" --quick" if meta["quick"] else ""}` on {meta["finished"]}
({meta["machine"]["cpus"]} CPUs, Python {meta["machine"]["python"]}, {meta["machine"]["platform"]};
load average at start {", ".join(f"{x:.2f}" for x in meta["machine"]["load_average_at_start"] or [])}).
Repetitions per side: {reps}.
Every number is a median over those runs, each run a fresh process with a fresh home; Legato and
Prefect runs were interleaved so both saw the same machine noise. Compare the ratio column, not
the absolute times: they move with the machine and its load.{speed_note(rows)}

{table(rows)}{carried_note}

How each workload is measured (scripts in `bench/workloads/`, the same script for both packages):
- **import**: wall time of `python -c "from legato import flow, task"` / the same for `prefect`, interpreter start
  included (after one discarded warm-up run).
- **first flow**: wall time of a whole process that defines a flow with one task and runs it in an
  empty home (Legato creates its SQLite history; Prefect creates its database and starts its
  ephemeral API server).
- **sequential / mapped tasks**: time of the flow call alone, measured inside the script after a
  task-less warm-up flow (so database creation and server start are not counted); the task is
  `def inc(x): return x + 1`. Mapped: `inc.map(range(N))` on the default thread-pool runner, then
  every result.
- **task runs in the history**: after the script's process has exited, `SELECT count(*) FROM
  task_run` on the home's SQLite file (`legato.db` / `prefect.db`). The worst run is shown.
- Prefect runs with its defaults, except that telemetry is off (the machine has no internet) and
  the ephemeral server start timeout is raised to 300 s (its 20 s default is too short on a slow
  machine; this changes no timing).

Server workloads (`bench/server.py`; `legato server start` / `prefect server start`, each with its
default settings: one process, SQLite in a fresh home unless said otherwise):
- **server start**: from spawning the command in a fresh home on a free port until
  `GET /api/health` answers 200, polled every 20 ms (one discarded warm-up start per side first).
  Each side creates its database on the way.
- **server memory**: RSS summed over the server process and all its descendants (psutil), after
  the server has been healthy and idle for 5 s, and again after the two scripts below ran against
  it. (PSS is in bench/results.json too.)
- **tasks against the server**: `seq_tasks.py`, the same script as the embedded row, with
  `LEGATO_API_URL` / `PREFECT_API_URL` pointing at the running server and a fresh client home;
  the flow call as timed inside the script, and the whole script process.
- **history 1 s after the flow returned**: `server_history.py` runs the same flow, prints the
  moment the flow call returned and its flow run id, and stays alive (as a long-running program
  would). 1 s after that moment, the task runs of that flow run are counted through the API
  (`POST /api/task_runs/count`, all and Completed) and its task-run states and log lines in the
  server's SQLite file; then every second until the history is whole (or 30 s, 60 s in a full
  run), which gives the "whole after" time.
- **state transitions**: a server on a fresh PostgreSQL 15 database (Legato: psycopg; Prefect:
  asyncpg), a flow created by `POST /api/flows/`, then 8 client processes (httpx, one keep-alive
  connection each) that loop: create a flow run (Pending), `set_state` Running, `set_state`
  Completed. After a 2 s warm-up, accepted `set_state` calls over 10 s are counted; flow-run
  creations are not counted as transitions. The load generator runs on the same machine: on 2
  CPUs the 8 client processes and the server share the cores (with whatever else runs there), so
  this is a floor for what the server does on its own. The cell also gives accepted transitions
  per CPU-second the server process used in the window: roughly what one free core would give.
  This row counts one `set_state` per HTTP request, which is not how either SDK records task runs.
- **task-run state transitions through the SDK**: what the SDKs actually send. A server on a fresh
  PostgreSQL 15 database as above; 8 client processes run `server_sdk_transitions.py` with
  `LEGATO_API_URL` / `PREFECT_API_URL` set: after importing the SDK and a task-less warm-up flow,
  all start together and run a flow of 500 sequential `inc` tasks again and again for 10 s (a flow
  started in time runs to its end), then stay alive. The task-run states in the server's
  database (`SELECT count(*) FROM task_run_state`, read from PostgreSQL directly, the same table
  name in both) are divided by the wall time from the common start until every task run the
  clients ran has its three states (Pending, Running, Completed) there; if that does not happen
  within the cap (60 s after the last client's last flow returned; 120 s in a full run), what was
  there at the cap over the time until then, and the cell says so. This counts transitions
  through each SDK's **batched write path** — Legato's client sends task runs and their states in
  batches (`POST /api/history/batch`, flushed every 0.5 s and before a flow call returns),
  Prefect 3 sends task-run states as events that its server's task-run recorder writes — while
  the row above counts one `set_state` per request. Clients, server and PostgreSQL share the 2
  CPUs, so this too is a floor; the cell gives the states per CPU-second the server used.
- **blocks**: 100 `Secret(value=...).save(name)` calls, then 100 `Secret.load(name).get()`, in
  one process on each side's default local store (Legato: the embedded SQLite history, each
  document encrypted; Prefect: its ephemeral API server), after one warm-up save and load.
- **deployment latency**: one session per side with a fresh server (SQLite, access log on).
  Legato applies the deployment and runs `legato agent start -q default`; Prefect runs
  `flow.serve`. After 20 s of counting the idle runner's requests, one warm process triggers N
  runs: Legato through the two API calls `legato deployment run` makes, Prefect through
  `run_deployment(timeout=0)`; before each trigger it pauses a random 0-10 s, the same on both
  sides. Latency is the time the flow's first statement recorded minus the trigger time. The
  cell also gives the median time until the runner marked the run Pending, and the flow
  process's age and CPU seconds at its first line. It depends on load: the flow's process start
  (~0.3 s of CPU for Legato) slows when other work saturates the 2 cores.

{"Failures:" + chr(10) + chr(10).join(failures) if failures else "No run failed."}

Rerun: `python bench/run.py` (full) or `python bench/run.py --quick`; raw samples in
`bench/results.json`.
"""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def speed_note(rows: list[Row]) -> str:
    """How this machine compares with the one budgets.md was measured on, by Prefect's import."""
    for r in rows:
        pv = r.values.get("prefect")
        if r.workload.startswith("`python -c") and pv and pv["median"] == pv["median"]:
            factor = pv["median"] / REFERENCE_PREFECT_IMPORT_S
            return (
                f"\n\n`import prefect` took {pv['median']:.2f} s here against "
                f"{REFERENCE_PREFECT_IMPORT_S} s on the machine of budgets.md: this run's machine "
                f"was about {factor:.1f}× slower (or busier)."
            )
    return ""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# The table's order; rows of an earlier run not measured now are carried over in their place.
ROW_ORDER = [
    "import",
    "first_flow",
    "seq_1000",
    "map_10000",
    "seq_1000_history",
    "map_10000_history",
    "server_start",
    "server_memory_idle",
    "server_memory_after",
    "server_seq_1000",
    "server_seq_1000_process",
    "server_history",
    "server_transitions",
    "server_sdk_transitions",
    "blocks_save",
    "blocks_load",
    "deploy_latency",
    "deploy_idle_load",
]


def _guess_key(title: str) -> str:
    """The key of a row written before rows had keys."""
    for fragment, key in (
        ("`python -c", "import"),
        ("first flow", "first_flow"),
        ("sequential tasks in one flow", "seq_1000"),
        (".map()", "map_10000"),
        ("after the seq_", "seq_1000_history"),
        ("after the map_", "map_10000_history"),
        ("server start` until", "server_start"),
        ("memory, healthy", "server_memory_idle"),
        ("memory after", "server_memory_after"),
        ("against the server (flow call", "server_seq_1000"),
        ("against the server, whole", "server_seq_1000_process"),
        ("readable through the API", "server_history"),
        ("through the SDK", "server_sdk_transitions"),
        ("state transitions", "server_transitions"),
        ("`Secret(value=", "blocks_save"),
        ("`Secret.load(", "blocks_load"),
        ("`deployment run` →", "deploy_latency"),
        ("the idle runner sends", "deploy_idle_load"),
    ):
        if fragment in title:
            return key
    return title


def doc_rows() -> list[Row]:
    """The rows of docs/performance.md's table as written (cells kept as text), each with the
    date it was measured: the file's own date, or the one a carried row already shows."""
    try:
        text = DOC.read_text()
    except OSError:
        return []
    m = re.search(r"^Written by .* on (.+)$", text, re.M)
    written = m.group(1).strip() if m else "an earlier run"
    rows = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith(("| workload", "| ---")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 6:
            continue
        title, when = cells[0], written
        m = re.search(r" \(† measured (.+)\)$", title)
        if m:
            title, when = title[: m.start()], m.group(1)
        cells[0] = title
        rows.append(Row(title, "", cells[4], key=_guess_key(title), carried_from=when, cells=cells))
    return rows


def with_carried(rows: list[Row]) -> list[Row]:
    """This run's rows plus the previous results.json's rows this run did not measure, in
    ROW_ORDER."""
    measured = {r.key or _guess_key(r.workload) for r in rows}
    out = list(rows)
    try:
        prev = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        prev = {}
    when = prev.get("meta", {}).get("finished", "an earlier run")
    names = set(Row.__dataclass_fields__)
    for d in prev.get("rows", []):
        row = Row(**{k: v for k, v in d.items() if k in names})
        row.key = row.key or _guess_key(row.workload)
        if row.key in measured:
            continue
        row.carried_from = row.carried_from or when
        out.append(row)
        measured.add(row.key)
    for row in doc_rows():
        if row.key not in measured:
            out.append(row)
            measured.add(row.key)
    rank = {k: i for i, k in enumerate(ROW_ORDER)}
    return sorted(out, key=lambda r: rank.get(r.key, len(rank)))


# --------------------------------------------------------------------------------------------
def main() -> int:
    names = [
        "import",
        "first_flow",
        "seq_1000",
        "map_10000",
        *SERVER_NAMES,
        "server_transitions",
        "server_sdk_transitions",
        "blocks",
        "deploy_latency",
    ]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (same workloads)")
    p.add_argument(
        "--only",
        action="append",
        choices=names,
        help="run only this workload (repeatable); history rows come with seq/map; "
        "server_memory also runs the server_seq_1000 scripts (memory after them)",
    )
    p.add_argument("--reps", type=int, help="repetitions per side for every workload")
    p.add_argument("--seq-n", type=int, default=1000, help="tasks in the sequential flow")
    p.add_argument("--map-n", type=int, default=10_000, help="tasks in the mapped flow")
    p.add_argument("--no-prefect", action="store_true", help="measure Legato only")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="write only this run's rows (default: carry the others over from results.json)",
    )
    p.add_argument(
        "--from-results",
        action="store_true",
        help="measure nothing: rewrite docs/performance.md from bench/results.json",
    )
    args = p.parse_args()
    if args.from_results:
        saved = json.loads(RESULTS.read_text())
        names = set(Row.__dataclass_fields__)
        rows = [Row(**{k: v for k, v in d.items() if k in names}) for d in saved["rows"]]
        write_doc(rows, saved["meta"])
        print(table(rows))
        return 0

    reps = (
        {
            "import": 5,
            "first_flow": 2,
            "seq_1000": 2,
            "map_10000": 1,
            "server_start": 3,
            "server_memory": 2,
            "server_seq_1000": 2,
            "server_transitions": 1,
            "server_sdk_transitions": 1,
            "blocks": 2,
            "deploy_latency": 5,
        }
        if args.quick
        else {
            "import": 10,
            "first_flow": 5,
            "seq_1000": 5,
            "map_10000": 3,
            "server_start": 5,
            "server_memory": 3,
            "server_seq_1000": 3,
            "server_transitions": 3,
            "server_sdk_transitions": 3,
            "blocks": 3,
            "deploy_latency": 8,
        }
    )
    if args.reps:
        reps = dict.fromkeys(reps, args.reps)
    selected = args.only or names
    reps = {k: v for k, v in reps.items() if k in selected}

    impls = [legato_impl()]
    if not args.no_prefect:
        impls.append(prefect_impl())
    started = time.time()

    rows: list[Row] = []
    if "import" in selected:
        log("import time ...")
        rows += bench_import(impls, reps["import"])
    if "first_flow" in selected:
        log("first flow in a fresh home ...")
        rows += bench_first_flow(impls, reps["first_flow"])
    history_rows: list[Row] = []
    if "seq_1000" in selected:
        log(f"{args.seq_n:,} sequential tasks ...")
        timing, hist = bench_seq(impls, reps["seq_1000"], args.seq_n)
        rows.append(timing)
        history_rows.append(hist)
    if "map_10000" in selected:
        log(f"{args.map_n:,} mapped tasks (Prefect takes minutes here) ...")
        timing, hist = bench_map(impls, reps["map_10000"], args.map_n)
        rows.append(timing)
        history_rows.append(hist)
    rows += history_rows  # completeness rows last, as in budgets.md
    if any(k in selected for k in SERVER_NAMES):
        log(f"servers: start, memory, {args.seq_n:,} tasks against them (Prefect: minutes) ...")
        rows += bench_server(impls, reps, selected, args.seq_n, args.quick)
    if "server_transitions" in selected:
        log("state transitions on PostgreSQL, 8 clients ...")
        rows += bench_transitions(impls, reps["server_transitions"], args.quick)
    if "server_sdk_transitions" in selected:
        log("task-run state transitions through the SDKs on PostgreSQL, 8 clients ...")
        rows += bench_sdk_transitions(impls, reps["server_sdk_transitions"], args.quick)
    if "blocks" in selected:
        log("saving and loading blocks ...")
        rows += bench_blocks(impls, reps["blocks"])
    if "deploy_latency" in selected:
        log("deployment run to the flow's first statement (Prefect: ~10 s a run) ...")
        rows += bench_deploy_latency(impls, reps["deploy_latency"])
    if not args.fresh:
        rows = with_carried(rows)

    meta = {
        "quick": args.quick,
        "reps": reps,
        "prefect_version": PREFECT_VERSION if not args.no_prefect else None,
        "machine": machine(),
        "started": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.time() - started, 1),
    }
    RESULTS.write_text(
        json.dumps({"meta": meta, "rows": [r.__dict__ for r in rows]}, indent=2, default=str) + "\n"
    )
    write_doc(rows, meta)

    print(table(rows))
    print(
        f"\nwritten: {DOC.relative_to(ROOT)}, {RESULTS.relative_to(ROOT)} "
        f"({meta['duration_s']:.0f} s)"
    )
    now = [r for r in rows if not r.carried_from]
    failed = [e for r in now for v in r.values.values() for e in v.get("errors", [])]
    for e in failed:
        log("\nFAILED RUN:\n" + e)
    return (
        1 if any(v.get("errors") for r in now for k, v in r.values.items() if k == "legato") else 0
    )


if __name__ == "__main__":
    sys.exit(main())
