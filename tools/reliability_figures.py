"""Run the fault suite (tests/reliability) and print the figures its tests measured, as the
Markdown table of docs/reliability.md.

    .venv/bin/python tools/reliability_figures.py [pytest arguments, e.g. -k outage]

Each figure is the worst (largest) value seen for that case and figure in the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.jsonl"
        env = {**os.environ, "LEGATO_RELIABILITY_FIGURES": str(out)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2",
                               "tests/reliability", *argv], cwd=ROOT, env=env)
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    worst: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["case"], row["figure"])
        if key not in worst or row["value"] > worst[key]["value"]:
            worst[key] = row
    print("\n| case | figure | measured |\n| --- | --- | --- |")
    for (case, figure), row in sorted(worst.items()):
        unit = f" {row['unit']}" if row["unit"] else ""
        print(f"| {case} | {figure} | {row['value']:g}{unit} |")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
