"""First flow in a fresh home: import, create the history, run one flow with one task, exit.

run.py times the whole process (that is what a user waits for on `python my_flow.py`), so this
script measures nothing itself; it only reports the flow's result as a sanity check.
"""

from _orch import load, report

orch = load()


@orch.task
def inc(x: int) -> int:
    return x + 1


@orch.flow(name="bench-first-flow")
def first_flow() -> int:
    return inc(1)


if __name__ == "__main__":
    result = first_flow()
    assert result == 2, result
    report(result=result)
