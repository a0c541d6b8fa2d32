"""Schedules: the times at which a deployment's flow runs are due.

Three kinds, named as Prefect names them (``prefect.client.schemas.schedules``)::

    CronSchedule(cron="0 9 * * 1-5", timezone="America/New_York")
    IntervalSchedule(interval=timedelta(hours=1), anchor_date=datetime(2024, 1, 1, 9, 30))
    RRuleSchedule(rrule="FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9", timezone="Europe/Berlin")

``schedule.get_dates(n=10, start=..., end=...)`` gives the due times in UTC, sorted and unique.
A schedule is a fixed set of instants: every query window sees the same instants, so splitting a
window in two neither loses nor repeats a run. ``model_dump(mode="json")`` gives the plain dict
the database and API store and :func:`schedule_from_dict` reads it back.

Daylight saving time (docs/schedules.md has examples). Cron and RRule schedules, and intervals of
whole days, run on the local wall clock of ``timezone``:

- a wall time that does not exist (clocks jump forward) runs once, at the first instant after the
  jump (02:30 in New York on the spring-forward day runs at 03:00 EDT);
- a wall time that happens twice (clocks go back) runs once, at its first occurrence;
- except schedules whose pattern repeats every hour (cron hour field ``*``, ``FREQ=HOURLY`` ...):
  they follow real time, so they skip the missing hour and run in both passes of a repeated one.

Intervals that are not whole days are absolute: an ``interval`` of 3600 s is every real hour.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from datetime import timezone as _dt_timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from dateutil import rrule as _du
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from .exceptions import LegatoError

__all__ = [
    "SCHEDULE_TYPES",
    "CronSchedule",
    "IntervalSchedule",
    "InvalidScheduleError",
    "RRuleSchedule",
    "construct_schedule",
    "schedule_from_dict",
]

UTC = _dt_timezone.utc
_DAY = timedelta(days=1)
# the anchor of an interval without one, and the DTSTART of a rule without one (local time)
DEFAULT_ANCHOR = datetime(2020, 1, 1)


class InvalidScheduleError(LegatoError, ValueError):
    """A schedule definition, or an argument to ``get_dates``, is unusable; the message says why."""


# --- time zones and wall-clock times -------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', 'America/New_York' "
            "or 'Europe/Berlin'"
        ) from None


def _zone_name(tzinfo: Any) -> str | None:
    """The IANA name of a datetime's tzinfo, where it has one (zoneinfo, pytz, UTC)."""
    name = getattr(tzinfo, "key", None) or getattr(tzinfo, "zone", None)
    if name is None and tzinfo is UTC:
        name = "UTC"
    return name if isinstance(name, str) else None


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (before, after] at which the zone's offset changes (tzdata uses seconds)."""
    target = after.astimezone(zone).utcoffset()
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _instants(wall: datetime, zone: ZoneInfo, hourly: bool) -> tuple[list[datetime], datetime]:
    """When local wall time ``wall`` runs (UTC instants), and a lower bound for every instant of
    this and every later wall time (so a search knows when it may stop)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return [first], first
    if first < second:  # the clocks went back: this wall time happens twice
        return ([first, second] if hourly else [first]), first
    # the clocks jumped forward over this wall time (second < the jump <= first)
    if hourly:
        return [], second
    return [_transition(second, first, zone)], second


def _first_wall(start: datetime, zone: ZoneInfo) -> datetime:
    """A local wall time before which nothing can run at or after ``start``."""
    offsets = [(start + timedelta(days=d)).astimezone(zone).utcoffset() for d in (-2, -1, 0, 1, 2)]
    return start.replace(tzinfo=None) + min(o for o in offsets if o is not None)


def _collect(
    walls: Iterable[datetime],
    resolve: Callable[[datetime], tuple[list[datetime], datetime]],
    start: datetime,
    end: datetime | None,
    n: int | None,
) -> list[datetime]:
    """The instants of increasing wall times within [start, end], at most ``n``, sorted, unique."""
    found: list[datetime] = []
    for wall in walls:
        instants, floor = resolve(wall)
        if end is not None and floor > end:
            break
        if n is not None and len(found) >= n and floor > found[n - 1]:
            break
        for t in instants:
            if t < start or (end is not None and t > end):
                continue
            i = bisect.bisect_left(found, t)
            if i == len(found) or found[i] != t:
                found.insert(i, t)
                if n is not None and len(found) > n:
                    found.pop()
    return found


def _as_utc(value: Any, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidScheduleError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)  # naive datetimes are UTC
    return value.astimezone(UTC)


# --- the base class ------------------------------------------------------------------------------


def _error(cls_name: str, exc: ValidationError) -> InvalidScheduleError:
    errors = exc.errors(include_url=False)
    inner = errors[0].get("ctx", {}).get("error") if len(errors) == 1 else None
    if isinstance(inner, InvalidScheduleError):  # raised by __init__, which validation calls
        return inner
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"{where!r} is not a field of {cls_name}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return InvalidScheduleError(f"invalid {cls_name}: " + "; ".join(parts))


class _Schedule(BaseModel):
    """What every schedule offers: ``get_dates`` and ``next_after``; immutable values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _error(type(self).__name__, exc) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise _error(cls.__name__, exc) from None

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise _error(cls.__name__, exc) from None

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            _zone(value)
        return value

    def _set(self, **values: Any) -> None:
        self.__dict__.update(values)  # normalising during validation; the model is frozen after

    def get_dates(
        self, n: int | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> list[datetime]:
        """The schedule's times in [start, end] (start defaults to now), the first ``n`` of them.

        Without ``end``, ``n`` defaults to 1; with ``end`` and no ``n`` every time in the window is
        returned. Naive ``start``/``end`` are UTC. The result is UTC, strictly increasing.
        """
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise InvalidScheduleError(f"n must be a whole number >= 0 or None, got {n!r}")
        begin = datetime.now(UTC) if start is None else _as_utc(start, "start")
        stop = None if end is None else _as_utc(end, "end")
        if n is None and stop is None:
            n = 1
        if n == 0 or (stop is not None and begin > stop):
            return []
        try:
            return self._dates(begin, stop, n)
        except OverflowError:  # a window at the very end of the datetime range
            return []

    def next_after(self, dt: datetime) -> datetime | None:
        """The first time strictly after ``dt``, or None when the schedule has ended."""
        dates = self.get_dates(n=1, start=_as_utc(dt, "dt") + timedelta(microseconds=1))
        return dates[0] if dates else None

    def _dates(self, start: datetime, end: datetime | None, n: int | None) -> list[datetime]:
        raise NotImplementedError


# --- cron ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _cron_hourly(cron: str) -> bool:
    """Checks the expression; True when it matches every hour of the day (hour field ``*``)."""
    try:
        parsed = croniter(cron, DEFAULT_ANCHOR, ret_type=datetime)
        parsed.get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron {cron!r} never matches a date (such as 30 February)") from None
    except (CroniterError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(
            f"{cron!r} is not a valid cron expression ({exc}); write five fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 9 * * 1-5', or a nickname "
            "such as '@daily'"
        ) from None
    hours = parsed.expanded[1]
    return hours == ["*"] or set(hours) == set(range(24))


def _cron_walls(cron: str, day_or: bool, first: datetime) -> Iterator[datetime]:
    it = croniter(
        cron, first.replace(microsecond=0) - timedelta(seconds=1), ret_type=datetime, day_or=day_or
    )
    while True:
        try:
            yield it.get_next(datetime)
        except (CroniterBadDateError, OverflowError):
            return


class CronSchedule(_Schedule):
    """Runs at the local wall-clock times matching a cron expression in ``timezone`` (UTC when
    not given). ``day_or`` (default True) runs on days matching day-of-month OR day-of-week when
    both are restricted, as classic cron does; False requires both."""

    cron: str
    timezone: str | None = None
    day_or: bool = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        _cron_hourly(value)
        return value

    @model_validator(mode="after")
    def _default_zone(self) -> CronSchedule:
        if self.timezone is None:
            self._set(timezone="UTC")
        return self

    def _dates(self, start: datetime, end: datetime | None, n: int | None) -> list[datetime]:
        zone = _zone(self.timezone or "UTC")
        hourly = _cron_hourly(self.cron)
        walls = _cron_walls(self.cron, self.day_or, _first_wall(start, zone))
        return _collect(walls, lambda w: _instants(w, zone, hourly), start, end, n)


# --- interval ------------------------------------------------------------------------------------


class IntervalSchedule(_Schedule):
    """Runs every ``interval`` (a timedelta, or seconds) from ``anchor_date`` (before and after
    it). A whole number of days keeps the anchor's local wall-clock time in ``timezone`` across
    daylight saving; any other interval is real elapsed time.

    Without ``timezone`` the anchor's own zone is used (UTC for a naive or fixed-offset anchor);
    a naive anchor is local time in ``timezone``; without an anchor it is 2020-01-01 00:00 local.
    """

    interval: timedelta
    anchor_date: datetime | None = None
    timezone: str | None = None

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be greater than 0, got {value.total_seconds():g} seconds")
        return value

    @model_validator(mode="after")
    def _anchor_in_zone(self) -> IntervalSchedule:
        anchor, name = self.anchor_date, self.timezone
        if name is None:
            name = (_zone_name(anchor.tzinfo) if anchor is not None else None) or "UTC"
            _zone(name)
        zone = _zone(name)
        if anchor is None:
            anchor = DEFAULT_ANCHOR.replace(tzinfo=zone)
        elif anchor.tzinfo is None or anchor.utcoffset() is None:
            anchor = anchor.replace(tzinfo=zone)
        else:
            anchor = anchor.astimezone(zone)
        self._set(timezone=name, anchor_date=anchor)
        return self

    @field_serializer("interval", when_used="json")
    def _seconds(self, value: timedelta) -> float:
        return value.total_seconds()

    @property
    def follows_wall_clock(self) -> bool:
        """True when the interval is whole days, so the runs keep their local time of day."""
        return self.interval % _DAY == timedelta(0)

    def _dates(self, start: datetime, end: datetime | None, n: int | None) -> list[datetime]:
        zone = _zone(self.timezone or "UTC")
        anchor = self.anchor_date or DEFAULT_ANCHOR.replace(tzinfo=zone)
        step = self.interval
        if self.follows_wall_clock:
            origin = anchor.replace(tzinfo=None)
            first_k = -((origin - _first_wall(start, zone)) // step)
            resolve: Callable = lambda w: _instants(w, zone, False)  # noqa: E731
        else:  # real time: the first k with anchor + k * step >= start
            origin = anchor.astimezone(UTC)
            first_k = -((origin - start) // step)
            resolve = lambda t: ([t], t)  # noqa: E731
        return _collect(_steps(origin, step, first_k), resolve, start, end, n)


def _steps(origin: datetime, step: timedelta, first_k: int) -> Iterator[datetime]:
    for k in itertools.count(first_k):
        try:
            yield origin + k * step
        except OverflowError:
            return


# --- RRule ---------------------------------------------------------------------------------------

_TZID = re.compile(r"DTSTART;TZID=([^:;\r\n]+)[:;]", re.IGNORECASE)
_UTC_DTSTART = re.compile(r"DTSTART:\s*\d{8}T\d{6}Z", re.IGNORECASE)
_UNITS = {_du.WEEKLY: timedelta(weeks=1), _du.DAILY: _DAY, _du.HOURLY: timedelta(hours=1),
          _du.MINUTELY: timedelta(minutes=1), _du.SECONDLY: timedelta(seconds=1)}


@functools.lru_cache(maxsize=512)
def _parse_rrule(text: str) -> tuple[_du.rruleset, str | None]:
    """Checks an RFC 5545 rule; gives it parsed, and the zone its DTSTART names (if any)."""
    example = "e.g. 'FREQ=DAILY;BYHOUR=9' or 'DTSTART:20240101T090000\\nRRULE:FREQ=WEEKLY'"
    if not text.strip():
        raise ValueError(f"the rule is empty: give an RFC 5545 recurrence rule, {example}")
    for line in text.upper().split():
        if "COUNT=" in line and "UNTIL=" in line:
            raise ValueError(f"{text!r} has both COUNT and UNTIL; RFC 5545 allows only one")
    extra = {} if "DTSTART" in text.upper() else {"dtstart": DEFAULT_ANCHOR}
    try:
        parsed = _du.rrulestr(text, forceset=True, tzids=_zone, **extra)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError(f"{text!r} is not a valid RFC 5545 recurrence rule ({exc}); {example}") \
            from None
    if not parsed._rrule and not parsed._rdate:
        raise ValueError(f"{text!r} has no RRULE or RDATE, so it never runs; {example}")
    match = _TZID.search(text)
    zone = match.group(1).strip() if match else ("UTC" if _UTC_DTSTART.search(text) else None)
    return parsed, zone


def _rule_hourly(rule: _du.rrule) -> bool:
    """True when the rule's wall-clock pattern repeats every hour of the day."""
    freq, step, hours = rule._freq, rule._interval, rule._byhour
    every_hour = (
        freq < _du.HOURLY
        or (freq == _du.HOURLY and step == 1)
        or (freq == _du.MINUTELY and 60 % step == 0)
        or (freq == _du.SECONDLY and 3600 % step == 0)
    )
    all_hours = (hours is None and freq >= _du.HOURLY) or (hours is not None and len(set(hours)) == 24)
    return every_hour and all_hours


@functools.lru_cache(maxsize=512)
def _local_rrule(text: str, zone_name: str) -> tuple[list, list, list, list, bool]:
    """The rule with every date as a naive wall time in ``zone_name``."""
    parsed, _ = _parse_rrule(text)
    zone = _zone(zone_name)

    def local(dt: datetime | None) -> datetime | None:
        if dt is None or dt.tzinfo is None:
            return dt
        return dt.astimezone(zone).replace(tzinfo=None)

    def local_rule(rule: _du.rrule) -> _du.rrule:
        return rule.replace(dtstart=local(rule._dtstart), until=local(rule._until))

    rules = [local_rule(r) for r in parsed._rrule]
    hourly = bool(rules) and all(_rule_hourly(r) for r in rules)
    return (rules, [local_rule(r) for r in parsed._exrule], [local(d) for d in parsed._rdate],
            [local(d) for d in parsed._exdate], hourly)


def _skip_ahead(rule: _du.rrule, first: datetime) -> _du.rrule:
    """The same rule starting near ``first`` (when that cannot change its times), so a rule from
    2020 does not replay every minute since then."""
    unit = _UNITS.get(rule._freq)
    if unit is None or rule._count is not None:
        return rule
    unit = unit * rule._interval
    steps = (first - rule._dtstart) // unit - 1
    return rule if steps <= 0 else rule.replace(dtstart=rule._dtstart + steps * unit)


def _rrule_walls(text: str, zone_name: str, first: datetime) -> Iterator[datetime]:
    rules, exrules, rdates, exdates, _ = _local_rrule(text, zone_name)
    combined = _du.rruleset()
    for rule in rules:
        combined.rrule(_skip_ahead(rule, first))
    for rule in exrules:
        combined.exrule(_skip_ahead(rule, first))
    for day in rdates:
        combined.rdate(day)
    for day in exdates:
        combined.exdate(day)
    return (w for w in combined if w >= first)


class RRuleSchedule(_Schedule):
    """Runs at the times of an RFC 5545 recurrence rule evaluated in local time of ``timezone``.

    The text is a rule (``FREQ=DAILY;BYHOUR=9;BYMINUTE=30``), optionally with ``DTSTART``, RDATE,
    EXDATE and EXRULE lines. Without DTSTART the rule starts 2020-01-01 00:00 local time. Without
    ``timezone``, a ``DTSTART;TZID=...`` names it (``...Z`` means UTC), else UTC.
    """

    rrule: str
    timezone: str | None = None

    @field_validator("rrule", mode="before")
    @classmethod
    def _from_object(cls, value: Any) -> Any:
        return str(value) if isinstance(value, _du.rrule) else value

    @field_validator("rrule")
    @classmethod
    def _valid_rule(cls, value: str) -> str:
        _parse_rrule(value)
        return value

    @model_validator(mode="after")
    def _default_zone(self) -> RRuleSchedule:
        if self.timezone is None:
            name = _parse_rrule(self.rrule)[1] or "UTC"
            _zone(name)
            self._set(timezone=name)
        _local_rrule(self.rrule, self.timezone)
        return self

    def _dates(self, start: datetime, end: datetime | None, n: int | None) -> list[datetime]:
        name = self.timezone or "UTC"
        zone = _zone(name)
        hourly = _local_rrule(self.rrule, name)[4]
        walls = _rrule_walls(self.rrule, name, _first_wall(start, zone))
        return _collect(walls, lambda w: _instants(w, zone, hourly), start, end, n)


# --- building schedules --------------------------------------------------------------------------

SCHEDULE_TYPES = IntervalSchedule | CronSchedule | RRuleSchedule
_KINDS: dict[str, type[_Schedule]] = {
    "cron": CronSchedule, "interval": IntervalSchedule, "rrule": RRuleSchedule,
}


def construct_schedule(
    cron: str | None = None,
    interval: timedelta | float | None = None,
    anchor_date: datetime | None = None,
    rrule: str | None = None,
    timezone: str | None = None,
) -> SCHEDULE_TYPES:
    """One schedule from exactly one of ``cron``, ``interval`` (seconds or timedelta, with an
    optional ``anchor_date``) or ``rrule``, in ``timezone``."""
    given = [k for k, v in (("cron", cron), ("interval", interval), ("rrule", rrule)) if v is not None]
    if len(given) != 1:
        raise InvalidScheduleError(
            "give exactly one of cron, interval or rrule to build a schedule, got "
            + (", ".join(given) if given else "none")
        )
    if anchor_date is not None and interval is None:
        raise InvalidScheduleError("anchor_date only applies to an interval schedule: add interval")
    if cron is not None:
        return CronSchedule(cron=cron, timezone=timezone)
    if interval is not None:
        return IntervalSchedule(interval=interval, anchor_date=anchor_date, timezone=timezone)
    return RRuleSchedule(rrule=rrule, timezone=timezone)


def schedule_from_dict(data: Mapping[str, Any] | SCHEDULE_TYPES) -> SCHEDULE_TYPES:
    """The schedule a stored dict describes (``model_dump(mode="json")``'s output), picked by
    its key: ``cron``, ``interval`` or ``rrule``. A schedule passes through unchanged."""
    if isinstance(data, _Schedule):
        return data  # type: ignore[return-value]
    if not isinstance(data, Mapping):
        raise InvalidScheduleError(f"a schedule must be a dict, got {type(data).__name__}")
    kinds = [k for k in _KINDS if k in data]
    if len(kinds) != 1:
        raise InvalidScheduleError(
            f"cannot tell which schedule {dict(data)!r} is: a schedule dict has exactly one of "
            f"the keys 'cron', 'interval' or 'rrule' (found {', '.join(kinds) or 'none'})"
        )
    return _KINDS[kinds[0]].model_validate(dict(data))
