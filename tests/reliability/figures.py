"""The figures the fault tests measure (time to Crashed, time to cancel, runs lost...).

Each test records what it measured with :func:`record`: the figure is printed (``pytest -s``
shows it) and, when ``LEGATO_TEST_FIGURES`` names a file, appended to it as one JSON
line, so ``python tools/reliability_figures.py`` can run the suite and print the table that
docs/reliability.md shows."""

from __future__ import annotations

import json
import os
import sys


def record(case: str, figure: str, value: float, unit: str = "s") -> None:
    line = {"case": case, "figure": figure, "value": round(float(value), 2), "unit": unit}
    print(f"\n[figure] {case}: {figure} = {line['value']:g} {unit}", file=sys.stderr)
    path = os.environ.get("LEGATO_TEST_FIGURES")
    if path:
        with open(path, "a") as fh:  # one small O_APPEND write: xdist workers never interleave
            fh.write(json.dumps(line) + "\n")
