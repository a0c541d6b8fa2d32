"""Final states of flows and tasks, re-raising, tracebacks in the log, terminal is final."""

from __future__ import annotations

import pytest

import legato.states as S
from legato import flow, task
from legato.core.rules import Verdict
from legato.exceptions import UnfinishedRun
from legato.states import State, StateType


class MyError(Exception):
    pass


def test_flow_call_reraises_the_users_exception_type(history, h):
    @flow
    def f():
        raise MyError("boom")

    with pytest.raises(MyError, match="boom"):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED
    assert fr.state_name == "Failed"
    assert "MyError" in fr.state_message and "boom" in fr.state_message
    assert h.flow_states(fr.id) == ["Pending", "Running", "Failed"]


def test_return_state_returns_a_state_whose_result_raises(history):
    @flow
    def bad():
        raise MyError("x")

    @flow
    def good():
        return {"a": 1}

    st = bad(return_state=True)
    assert isinstance(st, State)
    assert st.type is StateType.FAILED and st.is_failed() and st.is_final()
    with pytest.raises(MyError):
        st.result()
    assert isinstance(st.result(raise_on_failure=False), MyError)

    ok = good(return_state=True)
    assert ok.is_completed()
    assert ok.result() == {"a": 1}


def test_a_failing_task_fails_the_flow_and_is_recorded(history, h):
    @task
    def ok():
        return 1

    @task
    def bad():
        raise MyError("task broke")

    @flow
    def f():
        ok()
        bad()
        ok()  # never reached

    with pytest.raises(MyError, match="task broke"):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED
    runs = h.task_runs_by_name(fr.id)
    assert set(runs) == {"ok-0", "bad-0"}
    assert runs["bad-0"].state_type is StateType.FAILED
    assert "task broke" in runs["bad-0"].state_message
    assert runs["ok-0"].state_type is StateType.COMPLETED
    assert h.task_states(runs["bad-0"].id) == ["Pending", "Running", "Failed"]


def test_task_return_state_does_not_raise(history, h):
    @task
    def bad():
        raise MyError("x")

    @flow
    def f():
        st = bad(return_state=True)
        assert st.is_failed()
        return "handled"

    assert f() == "handled"
    assert h.only_flow_run().state_name == "Completed"


def _user_helper():
    raise MyError("deep inside")


def test_logged_traceback_shows_user_frames_not_legato_frames(history, h):
    @task
    def bad():
        _user_helper()

    @flow
    def f():
        bad()

    with pytest.raises(MyError):
        f()
    fr = h.only_flow_run()
    text = h.log_text(flow_run_id=fr.id)
    assert "Traceback (most recent call last)" in text
    assert "_user_helper" in text
    assert "deep inside" in text
    assert __file__ in text
    assert "src/legato" not in text and "legato/engine" not in text
    # the task's own log lines have it too
    tr = h.task_runs(fr.id)[0]
    ttext = h.log_text(task_run_id=tr.id)
    assert "_user_helper" in ttext and "legato/engine" not in ttext


def test_reraised_exception_traceback_has_no_legato_frames(history):
    import traceback

    @task
    def bad():
        _user_helper()

    @flow
    def f():
        bad()

    with pytest.raises(MyError) as info:
        f()
    files = [fs.filename for fs in traceback.extract_tb(info.value.__traceback__)]
    assert __file__ in files
    # the user's frames are all there; of Legato's, only the two the re-raise itself passes
    # through (the flow call and the line that raises) remain - none from inside the engine
    internal = [f for f in files if "/src/legato/" in f]
    assert len(internal) <= 2, internal
    assert not [f for f in internal if "task_engine" in f or "common.py" in f]


def test_debug_mode_shows_legato_frames(history, h, monkeypatch):
    from legato.settings import reset_settings_cache

    monkeypatch.setenv("LEGATO_DEBUG_MODE", "true")
    reset_settings_cache()

    @task
    def bad():
        _user_helper()

    @flow
    def f():
        bad()

    with pytest.raises(MyError):
        f()
    text = h.log_text(flow_run_id=h.only_flow_run().id)
    assert "_user_helper" in text
    assert "legato/engine" in text


def test_terminal_states_are_final(history, h):
    from legato.client import get_client

    @task
    def t():
        return 1

    @flow
    def f():
        t()

    f()
    fr = h.only_flow_run()
    tr = h.task_runs(fr.id)[0]
    before = h.task_states(tr.id)
    client = get_client()
    decision = client.set_task_run_state(tr.id, S.Running())
    assert decision.verdict is Verdict.REJECT
    assert decision.reason
    decision = client.set_flow_run_state(fr.id, S.Failed("late"))
    assert decision.verdict is Verdict.REJECT
    assert h.task_states(tr.id) == before
    assert h.task_runs(fr.id)[0].state_name == "Completed"
    assert h.flow_run(fr.id).state_name == "Completed"


def test_terminal_state_rejected_on_a_run_the_core_has_forgotten(history, h):
    """A fresh client (another process) must also refuse, reading the state from the store."""
    from legato.client.factory import close_clients, get_client

    @task
    def t():
        return 1

    @flow
    def f():
        t()

    f()
    fr = h.only_flow_run()
    tr_id = h.task_runs(fr.id)[0].id
    close_clients()
    decision = get_client().set_task_run_state(tr_id, S.Running())
    assert decision.verdict is Verdict.REJECT
    assert h.task_states(tr_id) == ["Pending", "Running", "Completed"]


def test_state_objects():
    st = S.Completed(data=5)
    assert st.result() == 5 and st.is_completed() and st.is_final()
    assert S.Cached().type is StateType.COMPLETED and S.Cached().name == "Cached"
    assert S.TimedOut().type is StateType.FAILED
    assert S.AwaitingRetry().type is StateType.SCHEDULED
    assert S.Retrying().type is StateType.RUNNING
    assert S.Late().type is StateType.SCHEDULED
    assert S.Crashed().is_crashed() and S.Cancelled().is_cancelled()
    assert S.Paused().is_paused() and S.Cancelling().is_cancelling()
    assert S.Scheduled().is_scheduled() and S.Pending().is_pending()
    assert not S.Running().is_final()
    assert S.Running().timestamp.tzinfo is not None
    with pytest.raises(UnfinishedRun):
        S.Running().result()
    f = S.Failed("went wrong")
    with pytest.raises(Exception, match="went wrong"):
        f.result()
    from legato.exceptions import CancelledRun

    with pytest.raises(CancelledRun):
        S.Cancelled("stop").result()
    c = f.copy(message="other")
    assert c.message == "other" and f.message == "went wrong"


def test_flow_returning_a_failed_state_fails(history, h):
    @flow
    def f():
        return S.Failed("chosen")

    st = f(return_state=True)
    assert st.is_failed()
    assert h.only_flow_run().state_type is StateType.FAILED
    assert h.only_flow_run().state_message == "chosen"


def test_task_returning_a_completed_state(history, h):
    @task
    def t():
        return S.Completed(message="done early", data=7)

    @flow
    def f():
        return t()

    assert f() == 7


def test_unobserved_failed_future_fails_the_flow(history, h):
    @task
    def bad():
        raise MyError("ignored?")

    @flow
    def f():
        bad.submit()
        return "returned"

    st = f(return_state=True)
    assert st.is_failed()
    assert "bad" in st.message
    with pytest.raises(MyError):
        st.result()
    assert h.only_flow_run().state_type is StateType.FAILED


def test_observed_failed_future_does_not_fail_the_flow(history, h):
    @task
    def bad():
        raise MyError("handled")

    @flow
    def f():
        fut = bad.submit()
        fut.wait()
        return fut.state.name

    assert f() == "Failed"
    assert h.only_flow_run().state_name == "Completed"


def test_keyboard_interrupt_crashes_task_and_flow_and_propagates(history, h):
    @task
    def t():
        raise KeyboardInterrupt

    @task
    def fine():
        return 1

    @flow
    def f():
        fine()
        t()

    with pytest.raises(KeyboardInterrupt):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.CRASHED
    runs = h.task_runs_by_name(fr.id)
    assert runs["t-0"].state_type is StateType.CRASHED
    assert "KeyboardInterrupt" in runs["t-0"].state_message
    assert runs["fine-0"].state_type is StateType.COMPLETED


def test_keyboard_interrupt_in_flow_body(history, h):
    @flow
    def f():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        f()
    assert h.only_flow_run().state_type is StateType.CRASHED


def test_system_exit_in_a_submitted_task_crashes_it(history, h):
    @task
    def t():
        raise SystemExit(3)

    @flow
    def f():
        fut = t.submit()
        fut.wait()
        return fut.state

    with pytest.raises(SystemExit):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.CRASHED
    assert h.task_runs(fr.id)[0].state_type is StateType.CRASHED


def test_keyboard_interrupt_in_flow_does_not_wait_for_submitted_tasks(history, h):
    import threading
    import time

    release = threading.Event()
    started = threading.Event()

    @task
    def blocked():
        started.set()
        release.wait(30)

    @flow
    def f():
        blocked.submit()
        started.wait(5)
        raise KeyboardInterrupt

    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            f()
        assert time.monotonic() - t0 < 10
        fr = h.only_flow_run()
        assert fr.state_type is StateType.CRASHED
        (tr,) = h.task_runs(fr.id)
        assert tr.state_type is StateType.CRASHED
        assert "KeyboardInterrupt" in tr.state_message
    finally:
        release.set()


def test_task_run_ended_by_someone_else_does_not_start(history, h):
    """If the history refuses Running (the run was already ended), the code is not run."""
    from legato.client import get_client
    from legato.context import flow_run_ctx
    from legato.engine.task_engine import TaskRunEngine

    ran = []

    @task
    def t():
        ran.append(1)

    @flow
    def f():
        eng = TaskRunEngine(t, flow_run_ctx.get(), {})
        get_client().set_task_run_state(eng.info.id, S.Cancelled("cancelled from outside"))
        return [eng.run_sync()]

    (st,) = f()
    assert ran == []
    assert st.type is StateType.CRASHED and "not started" in st.message
    tr = h.task_runs(h.only_flow_run().id)[0]
    assert tr.state_name == "Cancelled"
    assert h.task_states(tr.id) == ["Pending", "Cancelled"]


def test_keyboard_interrupt_propagates_even_with_return_state(history, h):
    @flow
    def child():
        raise KeyboardInterrupt

    @flow
    def parent():
        child(return_state=True)
        return "parent went on"

    with pytest.raises(KeyboardInterrupt):
        parent(return_state=True)
    assert h.only_flow_run("child").state_type is StateType.CRASHED
    assert h.only_flow_run("parent").state_type is StateType.CRASHED


def test_unobserved_system_exit_in_a_submitted_task_still_ends_the_flow_run(history, h):
    @task
    def t():
        raise SystemExit(2)

    @flow
    def f():
        t.submit()
        return 1

    with pytest.raises(SystemExit):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.CRASHED
    assert fr.end_time is not None


def test_interrupt_during_a_retry_delay_ends_runs_crashed(history, h, monkeypatch):
    import legato.engine.drivers as drivers

    def interrupted_sleep(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(drivers.time, "sleep", interrupted_sleep)

    @task(retries=2, retry_delay_seconds=10)
    def t():
        raise ValueError("fails")

    @flow
    def f():
        t()

    with pytest.raises(KeyboardInterrupt):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.CRASHED
    (tr,) = h.task_runs(fr.id)
    assert tr.state_type is StateType.CRASHED
    assert h.task_states(tr.id)[-2:] == ["AwaitingRetry", "Crashed"]

    @flow(retries=1, retry_delay_seconds=10)
    def g():
        raise ValueError("flow fails")

    with pytest.raises(KeyboardInterrupt):
        g()
    gr = h.only_flow_run("g")
    assert gr.state_type is StateType.CRASHED
    assert h.flow_states(gr.id)[-2:] == ["AwaitingRetry", "Crashed"]
