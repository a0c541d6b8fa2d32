"""The transition rules, exhaustively: every (from, to) pair of state types."""

from __future__ import annotations

import itertools

import pytest

from legato import states as S
from legato.core.rules import ALLOWED, NEW_ATTEMPT_TARGETS, Decision, Verdict, decide
from legato.states import TERMINAL_TYPES, StateType

TYPES = list(StateType)
FROM = [None, *TYPES]


def _name(t: StateType | None) -> str | None:
    return None if t is None else t.value.capitalize()


def _id(v: object) -> str:
    return "none" if v is None else str(getattr(v, "value", v))


def test_the_table_covers_every_state_type_and_nothing_else() -> None:
    assert set(ALLOWED) == {None, *TYPES}
    for targets in ALLOWED.values():
        assert targets <= set(TYPES)


def test_terminal_types_are_exactly_the_four_final_ones() -> None:
    assert TERMINAL_TYPES == {
        StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED
    }


@pytest.mark.parametrize("terminal", sorted(TERMINAL_TYPES, key=lambda t: t.value), ids=_id)
def test_terminal_states_have_no_ordinary_way_out(terminal: StateType) -> None:
    assert ALLOWED[terminal] == frozenset()


def test_a_new_run_may_start_in_any_state() -> None:
    assert ALLOWED[None] == frozenset(TYPES)
    for to in TYPES:
        assert decide(None, None, to, _name(to)).verdict is Verdict.ACCEPT


@pytest.mark.parametrize("new_attempt", [False, True], ids=["plain", "new_attempt"])
@pytest.mark.parametrize(
    "frm,to", list(itertools.product(FROM, TYPES)), ids=lambda v: _id(v)
)
def test_every_pair_follows_the_table(
    frm: StateType | None, to: StateType, new_attempt: bool
) -> None:
    """Same type and name: NOOP (Running twice: REJECT). Otherwise the table decides; a
    terminal state is left only by a declared new attempt, and only to Scheduled, Pending or
    Running."""
    d = decide(frm, _name(frm), to, _name(to), new_attempt=new_attempt)
    assert isinstance(d, Decision)
    if frm is not None and frm is to:
        if to is StateType.RUNNING:
            assert d.verdict is Verdict.REJECT
            assert "Running twice" in d.reason
        else:
            assert d.verdict is Verdict.NOOP
            assert d.reason and _name(frm) in d.reason
        assert not d.accepted
        return
    if to in ALLOWED[frm]:
        expected = Verdict.ACCEPT
    elif frm in TERMINAL_TYPES and new_attempt and to in NEW_ATTEMPT_TARGETS:
        expected = Verdict.ACCEPT
    else:
        expected = Verdict.REJECT
    assert d.verdict is expected, (frm, to, new_attempt, d)
    assert d.accepted is (expected is Verdict.ACCEPT)
    if expected is Verdict.REJECT:
        # the refusal says where the run is and (unless it is final) where it wanted to go
        assert d.reason and _name(frm) in d.reason
        if frm in TERMINAL_TYPES:
            assert "new attempt" in d.reason
        else:
            assert _name(to) in d.reason
    else:
        assert d.reason is None


@pytest.mark.parametrize(
    "frm,to", list(itertools.product(sorted(TERMINAL_TYPES, key=lambda t: t.value), TYPES)),
    ids=lambda v: _id(v),
)
def test_terminal_states_are_left_only_with_new_attempt(frm: StateType, to: StateType) -> None:
    plain = decide(frm, _name(frm), to, _name(to))
    attempt = decide(frm, _name(frm), to, _name(to), new_attempt=True)
    if frm is to:
        assert plain.verdict is attempt.verdict is Verdict.NOOP
        return
    assert plain.verdict is Verdict.REJECT
    if to in {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING}:
        assert attempt.verdict is Verdict.ACCEPT
    else:
        # a new attempt starts over; it cannot jump straight to another final state
        assert attempt.verdict is Verdict.REJECT


@pytest.mark.parametrize("frm", [t for t in TYPES if t not in TERMINAL_TYPES], ids=_id)
@pytest.mark.parametrize("to", TYPES, ids=_id)
def test_new_attempt_changes_nothing_for_a_run_that_has_not_ended(
    frm: StateType, to: StateType
) -> None:
    assert (
        decide(frm, _name(frm), to, _name(to)).verdict
        is decide(frm, _name(frm), to, _name(to), new_attempt=True).verdict
    )


@pytest.mark.parametrize(
    "frm,to,verdict",
    [
        # the engine's ordinary paths
        (S.Pending(), S.Running(), Verdict.ACCEPT),
        (S.Running(), S.Completed(), Verdict.ACCEPT),
        (S.Pending(), S.Cached(), Verdict.ACCEPT),
        (S.Running(), S.AwaitingRetry(), Verdict.ACCEPT),
        (S.AwaitingRetry(), S.Retrying(), Verdict.ACCEPT),
        (S.Running(), S.TimedOut(), Verdict.ACCEPT),
        (S.Scheduled(), S.Late(), Verdict.ACCEPT),  # same type, another name
        (S.Running(), S.Crashed(), Verdict.ACCEPT),
        (S.Cancelling(), S.Cancelled(), Verdict.ACCEPT),
        # refusals
        (S.Running(), S.Pending(), Verdict.REJECT),
        (S.Running(), S.Retrying(), Verdict.REJECT),  # a second Running, under another name
        (S.Cancelling(), S.Running(), Verdict.REJECT),
        (S.Completed(), S.Cached(), Verdict.REJECT),
        (S.Completed(), S.Failed(), Verdict.REJECT),
        (S.Crashed(), S.Completed(), Verdict.REJECT),
        (S.Failed(), S.Running(), Verdict.REJECT),  # only with new_attempt
        # idempotent repeats
        (S.Completed(), S.Completed(), Verdict.NOOP),
        (S.Pending(), S.Pending(), Verdict.NOOP),
        (S.Running(), S.Running(), Verdict.REJECT),
        (S.Retrying(), S.Retrying(), Verdict.REJECT),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else str(v),
)
def test_named_states(frm: S.State, to: S.State, verdict: Verdict) -> None:
    assert decide(frm.type, frm.name, to.type, to.name).verdict is verdict
