"""Saving and loading blocks: N `Secret(...).save(name)` calls, then N `Secret.load(name).get()`
(default 100 each), in one process on the default local store (Legato: the embedded SQLite
history, encrypted; Prefect: its ephemeral API server over its SQLite database).

A warm-up save and load run first, so the timed calls do not include creating the database or
starting Prefect's ephemeral server.
"""

import importlib
import sys
import time

from _orch import load, report

orch = load()
Secret = importlib.import_module(f"{orch.__name__}.blocks.system").Secret
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100

if __name__ == "__main__":
    Secret(value="warm-up").save("warm-up")
    assert Secret.load("warm-up").get() == "warm-up"
    t0 = time.perf_counter()
    for i in range(N):
        Secret(value=f"secret-{i}").save(f"bench-secret-{i}")
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(N):
        assert Secret.load(f"bench-secret-{i}").get() == f"secret-{i}"
    load_s = time.perf_counter() - t0
    report(n=N, save_s=save_s, load_s=load_s, save_ms=save_s / N * 1e3, load_ms=load_s / N * 1e3)
