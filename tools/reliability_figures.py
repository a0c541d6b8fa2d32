"""Run the fault suite (tests/reliability) and print the figures its tests measured, as the
Markdown table of docs/reliability.md.

    .venv/bin/python tools/reliability_figures.py [pytest arguments, e.g. -k outage]
    .venv/bin/python tools/reliability_figures.py --from FILE

``--from`` prints the table of figures an earlier run wrote (``LEGATO_TEST_FIGURES=FILE make
test`` records them during the whole suite). Each figure is the worst (largest) value seen for
that case and figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    if argv[:1] == ["--from"] and len(argv) == 2:
        table(Path(argv[1]).read_text().splitlines())
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.jsonl"
        env = {**os.environ, "LEGATO_TEST_FIGURES": str(out)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2",
                               "tests/reliability", *argv], cwd=ROOT, env=env)
        table(out.read_text().splitlines() if out.exists() else [])
    return done.returncode


def table(lines: list[str]) -> None:
    rows = [json.loads(line) for line in lines if line.strip()]
    worst: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["case"], row["figure"])
        if key not in worst or row["value"] > worst[key]["value"]:
            worst[key] = row
    print("\n| case | figure | measured |\n| --- | --- | --- |")
    for (case, figure), row in sorted(worst.items()):
        unit = f" {row['unit']}" if row["unit"] else ""
        print(f"| {case} | {figure} | {row['value']:g}{unit} |")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
