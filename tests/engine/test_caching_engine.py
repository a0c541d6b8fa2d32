"""Caching and persisted results, as the engine uses them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from legato import flow, task
from legato.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from legato.exceptions import SerializationError
from legato.states import StateType
from legato.tasks import task_input_hash


def counted(fn):
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    return wrapper, calls


def test_cache_hit_skips_the_function_and_returns_the_stored_result(history, h):
    def square(x):
        return {"value": x * x}

    fn, calls = counted(square)
    t = task(cache_key_fn=task_input_hash)(fn)

    @flow
    def f(x: int):
        return t(x)

    assert f(3) == {"value": 9}
    assert f(3) == {"value": 9}
    assert f(4) == {"value": 16}
    assert calls == [(3,), (4,)]
    runs = h.flow_runs()
    assert len(runs) == 3
    first, second, third = (h.task_runs(r.id)[0] for r in runs)
    assert first.state_name == "Completed"
    assert second.state_name == "Cached"
    assert second.state_type is StateType.COMPLETED
    assert third.state_name == "Completed"
    assert first.cache_key and first.cache_key == second.cache_key != third.cache_key
    assert h.task_states(second.id) == ["Pending", "Cached"]
    # a Cached run ends like any other: the flow is Completed
    assert {r.state_name for r in runs} == {"Completed"}


def test_cache_hit_within_one_flow_run(history, h):
    fn, calls = counted(lambda x: [x])
    t = task(cache_key_fn=task_input_hash, name="cached")(fn)

    @flow
    def f():
        return t(1), t(1), t.submit(1).result()

    assert f() == ([1], [1], [1])
    assert len(calls) == 1
    names = sorted(r.state_name for r in h.task_runs(h.only_flow_run().id))
    assert names == ["Cached", "Cached", "Completed"]


def test_failed_runs_are_not_cached(history, h):
    attempts = {"n": 0}

    @task(cache_key_fn=task_input_hash)
    def sometimes(x):
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ValueError("first fails")
        return x

    @flow
    def f():
        return sometimes(1, return_state=True).name, sometimes(1), sometimes(1, return_state=True).name

    assert f() == ("Failed", 1, "Cached")
    assert attempts["n"] == 2


def test_cache_expiration(history, h):
    fn, calls = counted(lambda x: x)
    short = task(cache_key_fn=lambda ctx, args: "short-key",
                 cache_expiration=dt.timedelta(microseconds=1))(fn)
    long_fn, long_calls = counted(lambda x: x)
    long = task(cache_key_fn=lambda ctx, args: "long-key",
                cache_expiration=dt.timedelta(hours=1))(long_fn)

    @flow
    def f():
        return short(1), short(1), long(1), long(1)

    assert f() == (1, 1, 1, 1)
    assert len(calls) == 2  # expired at once: both ran
    assert len(long_calls) == 1
    runs = h.task_runs(h.only_flow_run().id)
    long_runs = [r for r in runs if r.cache_key == "long-key"]
    assert [r.state_name for r in long_runs] == ["Completed", "Cached"]
    assert long_runs[0].cache_expiration is not None
    assert long_runs[0].cache_expiration > dt.datetime.now(dt.timezone.utc)


def test_refresh_cache_runs_again_and_updates_the_entry(history, h):
    state = {"v": 1}

    @task(cache_key_fn=lambda ctx, args: "fixed")
    def read():
        return state["v"]

    refreshing = read.with_options(refresh_cache=True)

    @flow
    def f():
        a = read()
        state["v"] = 2
        b = read()  # cached: still 1
        c = refreshing()  # runs: 2, and writes the cache
        d = read()  # cached: now 2
        return a, b, c, d

    assert f() == (1, 1, 2, 2)


def test_cache_policy_inputs_and_no_cache(history, h):
    fn, calls = counted(lambda x, client=None: x)
    by_inputs = task(cache_policy=INPUTS - "client", name="by_inputs")(fn)
    fn2, calls2 = counted(lambda x: x)
    never = task(cache_policy=NO_CACHE, name="never")(fn2)
    fn3, calls3 = counted(lambda x: x)
    with_source = task(cache_policy=INPUTS + TASK_SOURCE, name="with_source")(fn3)

    @flow
    def f():
        by_inputs(1, client=object())
        by_inputs(1, client=object())  # client excluded: a hit
        never(1)
        never(1)
        with_source(1)
        with_source(1)

    f()
    assert len(calls) == 1
    assert len(calls2) == 2
    assert len(calls3) == 1


def test_cache_key_fn_that_raises_runs_without_cache_and_warns(history, h):
    def broken(ctx, args):
        raise RuntimeError("key fn broke")

    fn, calls = counted(lambda: 1)
    t = task(cache_key_fn=broken)(fn)

    @flow
    def f():
        return t(), t()

    assert f() == (1, 1)
    assert len(calls) == 2
    assert "key fn broke" in h.log_text(flow_run_id=h.only_flow_run().id)
    assert h.only_flow_run().state_name == "Completed"


def test_cache_key_none_means_no_cache(history):
    fn, calls = counted(lambda: 1)
    t = task(cache_key_fn=lambda ctx, args: None)(fn)

    @flow
    def f():
        return t(), t()

    f()
    assert len(calls) == 2


def test_unhashable_input_runs_and_warns_once(history, h, monkeypatch):
    import legato.hashing

    monkeypatch.setattr(legato.hashing, "_warned", set())  # warned once per process and type
    lock = threading.Lock()
    fn, calls = counted(lambda x: 1)
    t = task(cache_key_fn=task_input_hash)(fn)

    @flow
    def f():
        return t(lock), t(lock)

    with pytest.warns(UserWarning) as rec:
        assert f() == (1, 1)
    assert len(calls) == 2
    assert len([w for w in rec if "cannot hash" in str(w.message)]) == 1


def test_cache_hit_across_processes(tmp_path, legato_home):
    script = tmp_path / "cached_flow.py"
    marker = tmp_path / "calls.txt"
    script.write_text(textwrap.dedent(f"""
        from legato import flow, task
        from legato.tasks import task_input_hash
        from pathlib import Path

        @task(cache_key_fn=task_input_hash)
        def ingest(url):
            with open({str(marker)!r}, "a") as fh:
                fh.write("called\\n")
            return {{"rows": [1, 2, 3], "url": url}}

        @flow
        def main(url: str):
            st = ingest(url, return_state=True)
            print(st.name, st.result())

        if __name__ == "__main__":
            main("http://example/data.csv")
    """))
    env = {**os.environ, "LEGATO_HOME": str(legato_home), "LEGATO_LOGGING_TO_CONSOLE": "false"}
    env.pop("LEGATO_DATABASE_URL", None)
    outs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout.strip())
    assert outs[0].startswith("Completed {'rows': [1, 2, 3]")
    assert outs[1].startswith("Cached {'rows': [1, 2, 3]")
    assert marker.read_text().count("called") == 1
    assert list((legato_home / "storage").iterdir())


def test_persist_result_writes_under_legato_home_storage(history, legato_home, h):
    @task(persist_result=True)
    def t():
        return {"a": 1}

    @flow
    def f():
        return t()

    assert f() == {"a": 1}
    files = list((legato_home / "storage").iterdir())
    assert len(files) == 1
    states = h.client.read_task_run_states(h.task_runs(h.only_flow_run().id)[0].id)
    final = states[-1]
    assert final.result and final.result["storage_key"] == files[0].name


def test_no_persistence_by_default(history, legato_home):
    @task
    def t():
        return {"a": 1}

    @flow
    def f():
        return t()

    f()
    storage = legato_home / "storage"
    assert not storage.exists() or not list(storage.iterdir())


def test_json_result_serializer(history, legato_home):
    import json

    @task(persist_result=True, result_serializer="json")
    def t():
        return {"a": [1, 2]}

    @flow
    def f():
        return t()

    assert f() == {"a": [1, 2]}
    (path,) = list((legato_home / "storage").iterdir())
    assert json.loads(path.read_bytes()) == {"a": [1, 2]}


def test_result_storage_folder(history, tmp_path):
    folder = tmp_path / "results"

    @task(result_storage=str(folder))
    def t():
        return 5

    @flow
    def f():
        return t()

    assert f() == 5
    assert len(list(folder.iterdir())) == 1


def test_unpicklable_result_fails_the_task_clearly(history, h):
    @task(persist_result=True)
    def t():
        return threading.Lock()

    @flow
    def f():
        return t(return_state=True).message

    msg = f()
    assert msg
    tr = h.task_runs(h.only_flow_run().id)[0]
    assert tr.state_type is StateType.FAILED
    assert "lock" in tr.state_message.lower() or "serial" in tr.state_message.lower()

    @flow
    def g():
        return t()

    with pytest.raises(SerializationError):
        g()


def test_flow_persist_result(history, legato_home, h):
    @flow(persist_result=True)
    def f():
        return [1, 2, 3]

    assert f() == [1, 2, 3]
    states = h.client.read_flow_run_states(h.only_flow_run().id)
    assert states[-1].name == "Completed" and states[-1].result


def test_cached_task_in_a_retried_flow_is_not_rerun(history, h):
    fn, calls = counted(lambda: "expensive")
    expensive = task(cache_key_fn=lambda ctx, args: f"k-{ctx.task_run.flow_run_id}")(fn)
    attempts = {"n": 0}

    @flow(retries=1)
    def f():
        attempts["n"] += 1
        value = expensive()
        if attempts["n"] == 1:
            raise RuntimeError("after the expensive task")
        return value

    assert f() == "expensive"
    assert len(calls) == 1
    names = [r.state_name for r in h.task_runs(h.only_flow_run().id)]
    assert names == ["Completed", "Cached"]
