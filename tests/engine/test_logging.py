"""Run logs: get_run_logger(), log_prints, what is stored with each line, the console."""

from __future__ import annotations

import logging
import sys

import pytest

from legato import flow, get_run_logger, task
from legato.exceptions import MissingContextError


def test_get_run_logger_lines_are_stored_with_level_and_run_ids(history, h):
    @task
    def t():
        log = get_run_logger()
        log.info("task info %s", 1)
        log.warning("task warning")
        log.debug("task debug is below the default level")

    @flow
    def f():
        get_run_logger().info("flow info")
        t()
        get_run_logger().error("flow error")

    f()
    fr = h.only_flow_run()
    tr = h.task_runs(fr.id)[0]
    logs = h.logs(flow_run_id=fr.id)
    by_msg = {r.message: r for r in logs}
    assert by_msg["flow info"].level == logging.INFO
    assert by_msg["flow info"].task_run_id is None
    assert by_msg["flow info"].flow_run_id == fr.id
    assert by_msg["flow error"].level == logging.ERROR
    assert by_msg["task info 1"].level == logging.INFO
    assert by_msg["task info 1"].task_run_id == tr.id
    assert by_msg["task info 1"].flow_run_id == fr.id
    assert by_msg["task warning"].level == logging.WARNING
    assert "task debug is below the default level" not in by_msg
    for r in logs:
        assert r.timestamp is not None
    # lines come back in order
    msgs = [r.message for r in logs]
    assert msgs.index("flow info") < msgs.index("task info 1") < msgs.index("flow error")
    # reading by task run returns only that task's lines
    assert {r.task_run_id for r in h.logs(task_run_id=tr.id)} == {tr.id}


def test_logging_level_setting(history, h, monkeypatch):
    from legato.settings import reset_settings_cache

    monkeypatch.setenv("LEGATO_LOGGING_LEVEL", "DEBUG")
    reset_settings_cache()

    @flow
    def f():
        get_run_logger().debug("now visible")

    f()
    assert "now visible" in h.log_text(flow_run_id=h.only_flow_run().id)


def test_get_run_logger_outside_a_run_raises():
    with pytest.raises(MissingContextError, match="outside a flow or task run"):
        get_run_logger()


def test_engine_lifecycle_lines_are_logged(history, h):
    @task
    def t():
        return 1

    @flow
    def f():
        t()

    f()
    fr = h.only_flow_run()
    text = h.log_text(flow_run_id=fr.id)
    assert "Beginning flow run" in text
    assert "Finished in state Completed()" in text
    tr = h.task_runs(fr.id)[0]
    assert "Finished in state Completed()" in h.log_text(task_run_id=tr.id)


def test_log_prints_on_a_task(history, h, capsys):
    @task(log_prints=True)
    def noisy():
        print("hello", "world", sep="-")
        print("to stderr", file=sys.stderr)

    @task
    def quiet():
        print("not captured")

    @flow
    def f():
        noisy()
        quiet()
        print("flow print not captured")

    f()
    fr = h.only_flow_run()
    runs = h.task_runs_by_name(fr.id)
    noisy_logs = h.logs(task_run_id=runs["noisy-0"].id)
    assert [r.message for r in noisy_logs if r.message == "hello-world"]
    rec = [r for r in noisy_logs if r.message == "hello-world"][0]
    assert rec.level == logging.INFO and rec.flow_run_id == fr.id
    text = h.log_text(flow_run_id=fr.id)
    assert "to stderr" not in text
    assert "not captured" not in text
    assert "flow print not captured" not in text
    out = capsys.readouterr()
    assert "to stderr" in out.err
    assert "not captured" in out.out
    assert "flow print not captured" in out.out
    assert "hello-world" not in out.out


def test_log_prints_on_a_flow_is_inherited_by_its_tasks(history, h, capsys):
    @task
    def t():
        print("from task")

    @task(log_prints=False)
    def opted_out():
        print("task opted out")

    @flow(log_prints=True)
    def f():
        print("from flow")
        t()
        t.submit().wait()
        opted_out()

    f()
    fr = h.only_flow_run()
    logs = h.logs(flow_run_id=fr.id)
    flow_lines = [r for r in logs if r.message == "from flow"]
    assert len(flow_lines) == 1 and flow_lines[0].task_run_id is None
    task_lines = [r for r in logs if r.message == "from task"]
    assert len(task_lines) == 2
    assert all(r.task_run_id is not None for r in task_lines)
    assert "task opted out" not in [r.message for r in logs]
    assert "task opted out" in capsys.readouterr().out


def test_log_prints_setting(history, h, monkeypatch):
    from legato.settings import reset_settings_cache

    monkeypatch.setenv("LEGATO_LOGGING_LOG_PRINTS", "true")
    reset_settings_cache()

    @flow
    def f():
        print("by setting")

    f()
    assert "by setting" in [r.message for r in h.logs(flow_run_id=h.only_flow_run().id)]


def test_print_outside_runs_is_untouched_after_log_prints(history, capsys):
    @flow(log_prints=True)
    def f():
        print("in flow")

    f()
    print("after the flow", end="!")
    print("a", "b", sep="+", file=sys.stdout)
    out = capsys.readouterr().out
    assert "after the flow!" in out
    assert "a+b" in out
    assert "in flow" not in out


def test_log_prints_inside_subflow_of_log_prints_flow(history, h):
    @flow
    def child():
        print("child print")

    @flow(log_prints=True)
    def parent():
        child()

    parent()
    child_run = h.only_flow_run("child")
    assert "child print" in [r.message for r in h.logs(flow_run_id=child_run.id)]


def test_console_output_in_prefect_format(history, monkeypatch, capsys):
    from legato.settings import reset_settings_cache

    monkeypatch.setenv("LEGATO_LOGGING_TO_CONSOLE", "true")
    reset_settings_cache()

    @task
    def t():
        get_run_logger().info("rows: 5")

    @flow
    def f():
        t()

    try:
        f()
    finally:
        monkeypatch.setenv("LEGATO_LOGGING_TO_CONSOLE", "false")
        reset_settings_cache()
        from legato.logging import setup_logging
        from legato.settings import get_settings

        setup_logging(get_settings())
    err = capsys.readouterr().err
    assert "| INFO    | Task run 't-0' - rows: 5" in err
    assert "| INFO    | Flow run '" in err
    assert "Finished in state Completed()" in err


def test_logger_in_submitted_and_async_tasks(history, h):
    import asyncio

    @task
    async def at():
        get_run_logger().info("async line")

    @task
    def st(i):
        get_run_logger().info("thread line %d", i)

    @flow
    async def f():
        await at()
        for fut in [st.submit(i) for i in range(3)]:
            fut.wait()

    asyncio.run(f())
    fr = h.only_flow_run()
    runs = h.task_runs_by_name(fr.id)
    assert "async line" in h.log_text(task_run_id=runs["at-0"].id)
    for i in range(3):
        # each submitted run's line is attributed to that run
        texts = [h.log_text(task_run_id=runs[f"st-{j}"].id) for j in range(3)]
        assert sum(f"thread line {i}" in t for t in texts) == 1


def test_exception_logged_by_user_keeps_traceback(history, h):
    @flow
    def f():
        try:
            {}["k"]
        except KeyError:
            get_run_logger().exception("lookup failed")

    f()
    text = h.log_text(flow_run_id=h.only_flow_run().id)
    assert "lookup failed" in text and "KeyError" in text and "Traceback" in text


def test_flow_failure_traceback_is_in_the_flow_log(history, h):
    @task
    def bad():
        raise ValueError("bad value 17")

    @flow
    def f():
        bad()

    with pytest.raises(ValueError):
        f()
    fr = h.only_flow_run()
    flow_only = [r for r in h.logs(flow_run_id=fr.id) if r.task_run_id is None]
    errors = [r for r in flow_only if r.level == logging.ERROR and "Traceback" in r.message]
    assert errors, [r.message for r in flow_only]
    assert "bad value 17" in errors[0].message
    assert "in bad" in errors[0].message
