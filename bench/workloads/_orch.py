"""Pick the orchestrator a workload runs on, and report its numbers to bench/run.py.

Every workload script is written once and runs unchanged on Legato or Prefect:

    python bench/workloads/seq_tasks.py legato 1000
    python bench/workloads/seq_tasks.py prefect 1000

The first argument (or the BENCH_IMPL environment variable) names the package; `orch` is then
`legato` or `prefect`, both of which export `flow` and `task` with the same meaning.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

IMPLS = ("legato", "prefect")


def load(argv: list[str] | None = None):
    """Import and return the orchestrator module named on the command line (or BENCH_IMPL)."""
    argv = sys.argv if argv is None else argv
    name = argv[1] if len(argv) > 1 else os.environ.get("BENCH_IMPL", "")
    if name not in IMPLS:
        sys.exit(f"usage: {argv[0]} {{legato|prefect}} [args...]  (got {name!r})")
    return importlib.import_module(name)


def report(**numbers) -> None:
    """Print the workload's own measurements as the last stdout line; run.py parses it."""
    sys.stdout.flush()
    print("BENCH_RESULT " + json.dumps(numbers), flush=True)
