"""Which state changes a run may make. Written once; the embedded client and the server both ask.

The table below is the whole policy for ordinary transitions. Two rules sit on top of it:

* a terminal state (Completed, Failed, Crashed, Cancelled) is final: the only way out is a new
  attempt (a retry or an explicit re-run), which the caller must declare;
* proposing the state a run is already in (same type and name) is an idempotent no-op, except that
  a second Running is refused: one run never has two Running states.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from ..states import TERMINAL_TYPES, StateType

S = StateType

#: from-type (None: the run's first state) -> the types it may move to.
ALLOWED: dict[StateType | None, frozenset[StateType]] = {
    None: frozenset(StateType),
    S.SCHEDULED: frozenset(
        {S.SCHEDULED, S.PENDING, S.RUNNING, S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLING,
         S.CANCELLED, S.PAUSED}
    ),
    S.PENDING: frozenset(
        {S.SCHEDULED, S.RUNNING, S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLING, S.CANCELLED,
         S.PAUSED}
    ),
    S.RUNNING: frozenset(
        {S.SCHEDULED, S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLING, S.CANCELLED, S.PAUSED}
    ),
    S.PAUSED: frozenset(
        {S.SCHEDULED, S.PENDING, S.RUNNING, S.FAILED, S.CRASHED, S.CANCELLING, S.CANCELLED}
    ),
    S.CANCELLING: frozenset({S.CANCELLED, S.CRASHED, S.FAILED, S.COMPLETED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CRASHED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: what a new attempt (retry / re-run) may move a terminal run to
NEW_ATTEMPT_TARGETS = frozenset({S.SCHEDULED, S.PENDING, S.RUNNING})


class Verdict(str, enum.Enum):
    ACCEPT = "ACCEPT"  # record the new state
    REJECT = "REJECT"  # refuse it; the run keeps its current state
    NOOP = "NOOP"  # the run is already in that state; nothing to record
    WAIT = "WAIT"  # not now (a full tag concurrency limit): ask again after ``retry_after`` s


class Decision(NamedTuple):
    verdict: Verdict
    reason: str | None = None
    retry_after: float | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPT


ACCEPTED = Decision(Verdict.ACCEPT)


def decide(
    current_type: StateType | None,
    current_name: str | None,
    proposed_type: StateType,
    proposed_name: str,
    *,
    new_attempt: bool = False,
) -> Decision:
    """May a run in ``current_*`` move to ``proposed_*``?"""
    if current_type is not None and current_type is proposed_type and current_name == proposed_name:
        if proposed_type is S.RUNNING:
            return Decision(
                Verdict.REJECT,
                f"The run is already {current_name}; a run cannot be Running twice at once.",
            )
        return Decision(Verdict.NOOP, f"The run is already in state {current_name}.")
    if proposed_type in ALLOWED[current_type]:
        return ACCEPTED
    if current_type in TERMINAL_TYPES:
        if new_attempt and proposed_type in NEW_ATTEMPT_TARGETS:
            return ACCEPTED
        return Decision(
            Verdict.REJECT,
            f"The run already ended in state {current_name} ({current_type.value}); a finished "
            "run only leaves its final state through a new attempt (a retry or a re-run).",
        )
    return Decision(
        Verdict.REJECT,
        f"A run in state {current_name} ({current_type.value if current_type else 'none'}) "
        f"cannot move to {proposed_name} ({proposed_type.value}).",
    )
