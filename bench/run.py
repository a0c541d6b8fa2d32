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

Results: a table on stdout, docs/performance.md, and bench/results.json (every sample).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
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
    row = Row('`python -c "from X import flow, task"` (median; best)', "s", "≤ 0.150 s")
    # One discarded run first: it compiles .pyc files and warms the OS file cache.
    for impl in impls:
        run_once(impl, ["-c", f"from {impl.name} import flow, task"])
    # `from X import flow, task`, not a bare `import X`: Legato loads its names lazily, so a bare
    # import would measure little more than the interpreter
    samples = interleaved(impls, reps, lambda i: ["-c", f"from {i.name} import flow, task"], "import")
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
    row = Row("first flow in a fresh home, whole process", "s", "≤ 0.6 s")
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
    timing = Row(title, "s", budget)
    history = Row(
        f"task runs in the history after the {what} script exits (worst run)", "runs", "100 %"
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


def errors(ss: list[Sample]) -> list[str]:
    return [s.error for s in ss if not s.ok]


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def fmt(row: Row, name: str) -> str:
    v = row.values.get(name)
    if v is None:
        return "skipped"
    if row.unit == "runs":
        if v["worst"] is None:
            return "error"
        return f"{v['worst']:,} / {v['expected']:,} ({100 * v['worst'] / v['expected']:.1f} %)"
    m = v["median"]
    if m != m:  # NaN: every sample failed
        return "error"
    text = f"{m:.3f} s"
    if "best" in v:
        text += f" (best {v['best']:.3f})"
    if "per_task_us" in v:
        us = v["per_task_us"]
        text += f" ({us:,.0f} µs/task)" if us < 10_000 else f" ({us / 1000:,.1f} ms/task)"
    return text


def ratio(row: Row) -> str:
    lv, pv = row.values.get("legato"), row.values.get("prefect")
    if not lv or not pv or row.unit == "runs":
        return "—"
    leg, pre = lv["median"], pv["median"]
    if leg != leg or pre != pre or leg <= 0:
        return "—"
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
        lines.append(
            "| "
            + " | ".join([r.workload, fmt(r, "legato"), fmt(r, "prefect"), ratio(r), r.budget, met])
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
        f"- {r.workload}, {impl}: {e.splitlines()[0] if e else 'failed'}"
        for r in rows
        for impl, v in r.values.items()
        for e in v.get("errors", [])
    ]
    text = f"""# Performance: Legato vs Prefect {PREFECT_VERSION}

Written by `python bench/run.py{" --quick" if meta["quick"] else ""}` on {meta["finished"]}
({meta["machine"]["cpus"]} CPUs, Python {meta["machine"]["python"]}, {meta["machine"]["platform"]};
load average at start {", ".join(f"{x:.2f}" for x in meta["machine"]["load_average_at_start"] or [])}).
Repetitions per side: {reps}.
Every number is a median over those runs, each run a fresh process with a fresh home; Legato and
Prefect runs were interleaved so both saw the same machine noise. Compare the ratio column, not
the absolute times: they move with the machine and its load.{speed_note(rows)}

{table(rows)}

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


# --------------------------------------------------------------------------------------------
def main() -> int:
    names = ["import", "first_flow", "seq_1000", "map_10000"]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (same workloads)")
    p.add_argument(
        "--only",
        action="append",
        choices=names,
        help="run only this workload (repeatable); history rows come with seq/map",
    )
    p.add_argument("--reps", type=int, help="repetitions per side for every workload")
    p.add_argument("--seq-n", type=int, default=1000, help="tasks in the sequential flow")
    p.add_argument("--map-n", type=int, default=10_000, help="tasks in the mapped flow")
    p.add_argument("--no-prefect", action="store_true", help="measure Legato only")
    args = p.parse_args()

    reps = (
        {"import": 5, "first_flow": 2, "seq_1000": 2, "map_10000": 1}
        if args.quick
        else {"import": 10, "first_flow": 5, "seq_1000": 5, "map_10000": 3}
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
    failed = [e for r in rows for v in r.values.values() for e in v.get("errors", [])]
    for e in failed:
        log("\nFAILED RUN:\n" + e)
    return (
        1 if any(v.get("errors") for r in rows for k, v in r.values.items() if k == "legato") else 0
    )


if __name__ == "__main__":
    sys.exit(main())
