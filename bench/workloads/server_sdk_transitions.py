"""One client of the `server_sdk_transitions` workload: flows of N sequential trivial tasks,
repeated for a while, through the real SDK against a server (LEGATO_API_URL / PREFECT_API_URL
set by bench/server.py, which starts 8 of these at once).

    python server_sdk_transitions.py {legato|prefect} 500 10

Protocol with bench/server.py (stdin / stdout lines):
1. import, run a task-less warm-up flow (connection, flow registration), print `BENCH_READY`;
2. read a line from stdin: the start time (time.time() epoch, the same for every client); wait
   until then;
3. run the `bench-sdk-transitions` flow (N calls of `inc`) again and again, starting a new flow
   while now < start + DURATION (a flow started in time runs to its end);
4. print `BENCH_DONE {"flows": .., "tasks": .., "finished_at": ..}` and stay alive, as a
   long-running program would (background writers keep sending), until stdin gets a line or is
   closed; then report and exit. What the process exit flushes is not what is measured.

The task-run states these flows produce are written the way each SDK writes them: Legato's client
batches task runs and their states (`POST /api/history/batch`, flushed every 0.5 s and before a
flow call returns); Prefect 3 sends them as events, which its server's task-run recorder writes.
"""

import json
import sys
import time

from _orch import load, report

orch = load()
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500
DURATION = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0


@orch.task
def inc(x: int) -> int:
    return x + 1


@orch.flow(name="bench-warmup")
def warmup() -> int:
    return 0


@orch.flow(name="bench-sdk-transitions")
def sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total += inc(i)
    return total


if __name__ == "__main__":
    warmup()
    print("BENCH_READY", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        sys.exit("no start time on stdin")
    start = float(line)
    time.sleep(max(0.0, start - time.time()))
    end = start + DURATION
    flows = 0
    flow_s = []
    while time.time() < end:
        t0 = time.perf_counter()
        total = sequential(N)
        flow_s.append(time.perf_counter() - t0)
        assert total == sum(range(1, N + 1)), total
        flows += 1
    finished_at = time.time()
    print(
        "BENCH_DONE "
        + json.dumps(
            {"flows": flows, "tasks": flows * N, "finished_at": finished_at, "flow_s": flow_s}
        ),
        flush=True,
    )
    sys.stdin.readline()  # the parent has counted (or gave up waiting)
    report(n=N, flows=flows, tasks=flows * N, flow_s=flow_s, held_s=time.time() - finished_at)
