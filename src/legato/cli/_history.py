"""What `legato flow-run` and `legato task-run` share: parsing their options, formatting runs.

Tables show times in local time; ``--json`` prints the history's records (times in ISO UTC) and
nothing else on stdout. Run ids may be given in full or as a unique prefix of at least 4
characters, as with git.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from .. import states
from ..exceptions import ObjectNotFound
from ..states import StateType

_STATE_STYLE = {
    StateType.SCHEDULED: "yellow",
    StateType.PENDING: "grey62",
    StateType.RUNNING: "blue",
    StateType.COMPLETED: "green",
    StateType.FAILED: "red",
    StateType.CRASHED: "bright_red",
    StateType.CANCELLING: "grey50",
    StateType.CANCELLED: "grey50",
    StateType.PAUSED: "grey62",
}
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
_RELATIVE = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PAGE = 500
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID_PREFIX = re.compile(r"[0-9a-f-]+")


# -- parsing options ---------------------------------------------------------------------------
def _named_states() -> dict[str, tuple[str, StateType]]:
    """Built-in state names that are not also type names (Cached, Late, ...), by lower-case name."""
    out = {}
    for attr in states.__all__:
        make = getattr(states, attr)
        if callable(make) and not isinstance(make, type):
            state = make()
            if state.name.upper() not in StateType.__members__:
                out[state.name.lower()] = (state.name, state.type)
    return out


def parse_states(values: Sequence[str] | None) -> tuple[set[StateType], set[str]]:
    """--state values as (state types, state names). A word that is a type (COMPLETED) means the
    type, any name of it included; a built-in state name (Cached) means that name only."""
    types: set[StateType] = set()
    names: set[str] = set()
    named = _named_states()
    for value in values or ():
        word = value.strip()
        if word.upper() in StateType.__members__:
            types.add(StateType[word.upper()])
        elif word.lower() in named:
            names.add(named[word.lower()][0])
        else:
            valid = [t.value for t in StateType] + sorted(n for n, _ in named.values())
            raise typer.BadParameter(
                f"Unknown state {value!r}. Use a state type or name: {', '.join(valid)}.",
                param_hint="--state",
            )
    return types, names


def parse_when(value: str | None) -> dt.datetime | None:
    """An ISO datetime (local time if it has no offset) or a time ago: 30s, 30m, 2h, 1d, 1w."""
    if value is None:
        return None
    text = value.strip()
    match = _RELATIVE.fullmatch(text)
    if match:
        ago = dt.timedelta(**{_UNITS[match[2].lower()]: int(match[1])})
        return dt.datetime.now(dt.timezone.utc) - ago
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO datetime (2024-05-01T12:00, 2024-05-01T12:00+02:00) "
            "nor a time ago (30s, 30m, 2h, 1d, 1w)."
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is the user's local time
    return when.astimezone(dt.timezone.utc)


def parse_level(value: str | None) -> int:
    if value is None:
        return 0
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    if text not in _LEVELS:
        raise typer.BadParameter(
            f"Unknown log level {value!r}; use DEBUG, INFO, WARNING, ERROR, CRITICAL or a number.",
            param_hint="--level",
        )
    return _LEVELS[text]


def collect(
    fetch: Callable[[int, int], list[Any]], keep: Callable[[Any], bool], limit: int
) -> list[Any]:
    """Page through ``fetch(offset, count)`` keeping rows that pass ``keep``, up to ``limit``.
    For filters the store cannot express in one query (a state type OR a state name)."""
    out: list[Any] = []
    offset = 0
    while len(out) < limit:
        rows = fetch(offset, _PAGE)
        out.extend(r for r in rows if keep(r))
        if len(rows) < _PAGE:
            break
        offset += _PAGE
    return out[:limit]


def state_filter(values: Sequence[str] | None) -> tuple[list[StateType] | None, Any]:
    """The state types to push down to the store, and a row test (None if the types suffice)."""
    types, names = parse_states(values)
    if not names:
        return (sorted(types) or None), None
    named = {name: stype for name, stype in _named_states().values()}
    pushdown = types | {named[n] for n in names}

    def keep(run: Any) -> bool:
        return run.state_type in types or run.state_name in names

    return sorted(pushdown), keep


# -- formatting --------------------------------------------------------------------------------
def local_time(when: dt.datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def duration(run: Any) -> str:
    total = run.total_run_time or 0.0
    if run.state_type is StateType.RUNNING and run.state_timestamp is not None:
        # the store adds the running stretch when the run leaves RUNNING; show it live
        total += (dt.datetime.now(dt.timezone.utc) - run.state_timestamp).total_seconds()
    if run.start_time is None and not total:
        return "-"
    return format_seconds(max(total, 0.0))


def state_text(state_type: StateType | None, name: str | None) -> Text:
    if state_type is None:
        return Text("-")
    return Text(name or state_type.value, style=_STATE_STYLE.get(state_type, ""))


def runs_table(title: str, columns: list[str]) -> Table:
    table = Table(title=title)
    for name in columns:
        if name == "ID":
            # fold, not truncate: a narrow terminal still shows the whole id, over two lines
            table.add_column(name, style="cyan", overflow="fold", min_width=12)
        elif name == "Duration":
            table.add_column(name, justify="right", no_wrap=True)
        else:
            table.add_column(name)
    return table


def details_grid(rows: Iterable[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value if isinstance(value, Text) else Text(str(value)))
    return grid


def states_table(records: list[Any]) -> Table:
    table = Table(title="States", title_justify="left")
    table.add_column("Time", no_wrap=True)
    table.add_column("Type")
    table.add_column("Name")
    table.add_column("Message")
    for s in records:
        table.add_row(
            local_time(s.timestamp), s.type.value, state_text(s.type, s.name), s.message or ""
        )
    return table


def json_or_dash(value: Any) -> str:
    return json.dumps(value) if value else "-"


def run_id(value: str, what: str) -> str:
    """A full id or a prefix of one, checked for shape first: on PostgreSQL a malformed full id
    would be a database error, and "%" or "_" would match like wildcards in the prefix lookup."""
    text = value.strip().lower()
    if not (_UUID.fullmatch(text) or (len(text) < 36 and _ID_PREFIX.fullmatch(text))):
        raise ObjectNotFound(
            f"{value!r} is not a {what} id. Ids look like 1b4e28ba-2fa1-41d2-883f-0000f2f0eb0c; "
            "a unique prefix of one (at least 4 characters) works too."
        )
    return text


def history_client() -> Any:
    # the client (and with it SQLAlchemy and pydantic) is imported on first use, not when the
    # CLI starts: lazy for CLI start-up time (`legato --help` must stay fast)
    from ..client import get_client

    return get_client()
