"""Schedules: cron, interval and RRule times, in time zones, across daylight-saving changes.

The 2024 changes used below:
- America/New_York: 10 March 07:00Z (02:00 EST -> 03:00 EDT), 3 November 06:00Z (02:00 EDT ->
  01:00 EST);
- Europe/Berlin: 31 March 01:00Z (02:00 CET -> 03:00 CEST), 27 October 01:00Z (03:00 CEST ->
  02:00 CET).
"""

from __future__ import annotations

import functools
import itertools
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from legato.exceptions import LegatoError
from legato.schedules import (
    SCHEDULE_TYPES,
    CronSchedule,
    IntervalSchedule,
    InvalidScheduleError,
    RRuleSchedule,
    construct_schedule,
    schedule_from_dict,
)

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def Z(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


def days(month: int, first: int, last: int) -> dict:
    """A window from the start of day ``first`` to the end of day ``last`` (UTC)."""
    return {"start": Z(month, first), "end": Z(month, last, 23, 59)}


def local_hours(dates: list[datetime], zone: str) -> list[int]:
    return [d.astimezone(ZoneInfo(zone)).hour for d in dates]


def hourly_utc(first: datetime, last: datetime, step: timedelta = timedelta(hours=1)) -> list:
    out, t = [], first
    while t <= last:
        out.append(t)
        t += step
    return out


# --- DST: the same wall clock, once ---------------------------------------------------------------

# (schedule, window, the exact UTC times)
WALL_CLOCK_CASES = [
    # 09:00 local on both sides of each change: the UTC time moves by an hour
    (CronSchedule(cron="0 9 * * *", timezone=NY), days(3, 9, 11), [Z(3, 9, 14), Z(3, 10, 13), Z(3, 11, 13)]),
    (CronSchedule(cron="0 9 * * *", timezone=NY), days(11, 2, 4), [Z(11, 2, 13), Z(11, 3, 14), Z(11, 4, 14)]),
    (CronSchedule(cron="0 9 * * *", timezone=BERLIN), {"start": Z(3, 30), "end": Z(4, 1, 23)},
     [Z(3, 30, 8), Z(3, 31, 7), Z(4, 1, 7)]),
    (CronSchedule(cron="0 9 * * *", timezone=BERLIN), days(10, 26, 28), [Z(10, 26, 7), Z(10, 27, 8), Z(10, 28, 8)]),
    # 02:30 does not exist on the spring-forward day: it runs once, at 03:00 local (the jump)
    (CronSchedule(cron="30 2 * * *", timezone=NY), days(3, 9, 11), [Z(3, 9, 7, 30), Z(3, 10, 7), Z(3, 11, 6, 30)]),
    (CronSchedule(cron="30 2 * * *", timezone=BERLIN), {"start": Z(3, 30), "end": Z(4, 1, 23)},
     [Z(3, 30, 1, 30), Z(3, 31, 1), Z(4, 1, 0, 30)]),
    # a time that happens twice on the fall-back day runs once, at its first occurrence
    (CronSchedule(cron="30 1 * * *", timezone=NY), days(11, 2, 4), [Z(11, 2, 5, 30), Z(11, 3, 5, 30), Z(11, 4, 6, 30)]),
    (CronSchedule(cron="30 2 * * *", timezone=BERLIN), days(10, 26, 28),
     [Z(10, 26, 0, 30), Z(10, 27, 0, 30), Z(10, 28, 1, 30)]),
    # 02:00 (missing) and 03:00 both land on 03:00 EDT: one run
    (CronSchedule(cron="0 2,3 * * *", timezone=NY), {"start": Z(3, 10), "end": Z(3, 10, 23)}, [Z(3, 10, 7)]),
    # intervals of whole days keep the anchor's wall-clock time
    (IntervalSchedule(interval=timedelta(days=1), anchor_date=datetime(2024, 1, 1, 9), timezone=NY),
     days(3, 9, 11), [Z(3, 9, 14), Z(3, 10, 13), Z(3, 11, 13)]),
    (IntervalSchedule(interval=86400, anchor_date=datetime(2024, 1, 1, 9), timezone=NY),
     days(11, 2, 4), [Z(11, 2, 13), Z(11, 3, 14), Z(11, 4, 14)]),
    (IntervalSchedule(interval=timedelta(days=1), anchor_date=datetime(2024, 1, 1, 9, tzinfo=ZoneInfo(BERLIN))),
     {"start": Z(3, 30), "end": Z(4, 1, 23)}, [Z(3, 30, 8), Z(3, 31, 7), Z(4, 1, 7)]),
    (IntervalSchedule(interval=timedelta(days=1), anchor_date=datetime(2024, 1, 1, 9, tzinfo=ZoneInfo(BERLIN))),
     days(10, 26, 28), [Z(10, 26, 7), Z(10, 27, 8), Z(10, 28, 8)]),
    (IntervalSchedule(interval=timedelta(weeks=1), anchor_date=datetime(2024, 3, 3, 9), timezone=NY),
     {"start": Z(3, 1), "end": Z(3, 20)}, [Z(3, 3, 14), Z(3, 10, 13), Z(3, 17, 13)]),
    (IntervalSchedule(interval=timedelta(days=1), anchor_date=datetime(2024, 1, 1, 2, 30), timezone=NY),
     days(3, 9, 11), [Z(3, 9, 7, 30), Z(3, 10, 7), Z(3, 11, 6, 30)]),
    (IntervalSchedule(interval=timedelta(days=1), anchor_date=datetime(2024, 1, 1, 1, 30), timezone=NY),
     days(11, 2, 4), [Z(11, 2, 5, 30), Z(11, 3, 5, 30), Z(11, 4, 6, 30)]),
    # RRules are evaluated in local time with the same rules
    (RRuleSchedule(rrule="FREQ=DAILY;BYHOUR=9", timezone=NY), days(3, 9, 11), [Z(3, 9, 14), Z(3, 10, 13), Z(3, 11, 13)]),
    (RRuleSchedule(rrule="FREQ=DAILY;BYHOUR=9", timezone=NY), days(11, 2, 4), [Z(11, 2, 13), Z(11, 3, 14), Z(11, 4, 14)]),
    (RRuleSchedule(rrule="RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30", timezone=BERLIN),
     {"start": Z(3, 30), "end": Z(4, 1, 23)}, [Z(3, 30, 1, 30), Z(3, 31, 1), Z(4, 1, 0, 30)]),
    (RRuleSchedule(rrule="FREQ=DAILY;BYHOUR=2;BYMINUTE=30", timezone=BERLIN), days(10, 26, 28),
     [Z(10, 26, 0, 30), Z(10, 27, 0, 30), Z(10, 28, 1, 30)]),
    (RRuleSchedule(rrule="FREQ=DAILY;BYHOUR=1;BYMINUTE=30", timezone=NY), days(11, 2, 4),
     [Z(11, 2, 5, 30), Z(11, 3, 5, 30), Z(11, 4, 6, 30)]),
]


@pytest.mark.parametrize(("schedule", "window", "expected"), WALL_CLOCK_CASES)
def test_wall_clock_schedules_across_dst(schedule, window, expected) -> None:
    assert schedule.get_dates(**window) == expected
    assert schedule.get_dates(n=len(expected), start=window["start"]) == expected


# (schedule, first UTC hour, last UTC hour, the local hours those real hours show)
HOURLY_CASES = [
    (CronSchedule(cron="0 * * * *", timezone=NY), Z(3, 10, 3), Z(3, 10, 10), [22, 23, 0, 1, 3, 4, 5, 6]),
    (CronSchedule(cron="0 * * * *", timezone=NY), Z(11, 3, 3), Z(11, 3, 10), [23, 0, 1, 1, 2, 3, 4, 5]),
    (CronSchedule(cron="0 * * * *", timezone=BERLIN), Z(3, 30, 22), Z(3, 31, 5), [23, 0, 1, 3, 4, 5, 6, 7]),
    (CronSchedule(cron="0 * * * *", timezone=BERLIN), Z(10, 26, 22), Z(10, 27, 5), [0, 1, 2, 2, 3, 4, 5, 6]),
    (RRuleSchedule(rrule="FREQ=HOURLY", timezone=NY), Z(11, 3, 3), Z(11, 3, 10), [23, 0, 1, 1, 2, 3, 4, 5]),
    (RRuleSchedule(rrule="FREQ=HOURLY", timezone=BERLIN), Z(3, 30, 22), Z(3, 31, 5), [23, 0, 1, 3, 4, 5, 6, 7]),
    # shorter intervals are real elapsed time (anchor 2020-01-01 00:00 local: on the hour)
    (IntervalSchedule(interval=3600, timezone=NY), Z(3, 10, 3), Z(3, 10, 10), [22, 23, 0, 1, 3, 4, 5, 6]),
    (IntervalSchedule(interval=timedelta(hours=1), timezone=BERLIN), Z(10, 26, 22), Z(10, 27, 5),
     [0, 1, 2, 2, 3, 4, 5, 6]),
]


@pytest.mark.parametrize(("schedule", "first", "last", "hours"), HOURLY_CASES)
def test_hourly_schedules_run_every_real_hour_across_dst(schedule, first, last, hours) -> None:
    dates = schedule.get_dates(start=first, end=last)
    assert dates == hourly_utc(first, last)
    assert local_hours(dates, schedule.timezone) == hours


@pytest.mark.parametrize("zone", [NY, BERLIN])
@pytest.mark.parametrize("spec", ["*/20 * * * *", "FREQ=MINUTELY;INTERVAL=20"])
def test_sub_hourly_schedules_follow_real_time(zone: str, spec: str) -> None:
    schedule = construct_schedule(**({"cron": spec} if "*" in spec else {"rrule": spec}), timezone=zone)
    for change in (Z(3, 10, 7), Z(11, 3, 6), Z(3, 31, 1), Z(10, 27, 1)):
        first, last = change - timedelta(hours=3), change + timedelta(hours=3)
        assert schedule.get_dates(start=first, end=last) == hourly_utc(first, last, timedelta(minutes=20))


def test_half_hour_dst_zone() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 (+10:30) -> 02:30 (+11:00) on
    # 6 October 2024, at 15:30Z on the 5th
    zone = "Australia/Lord_Howe"
    daily = CronSchedule(cron="15 2 * * *", timezone=zone)
    assert daily.get_dates(start=Z(10, 4), end=Z(10, 7, 23)) == [
        Z(10, 4, 15, 45), Z(10, 5, 15, 30), Z(10, 6, 15, 15), Z(10, 7, 15, 15)]
    # an hourly cron skips the missing 02:15: 01:15 and 03:15 local are 90 real minutes apart
    hourly = CronSchedule(cron="15 * * * *", timezone=zone)
    assert hourly.get_dates(start=Z(10, 5, 13), end=Z(10, 5, 17)) == [
        Z(10, 5, 13, 45), Z(10, 5, 14, 45), Z(10, 5, 16, 15)]


def test_absolute_intervals_ignore_the_clock_change() -> None:
    schedule = IntervalSchedule(interval=timedelta(minutes=90), anchor_date=Z(10, 26, 23, 30),
                                timezone=BERLIN)
    dates = schedule.get_dates(start=Z(10, 26, 20), end=Z(10, 27, 8))
    assert dates[0] == Z(10, 26, 20, 30)
    assert all(b - a == timedelta(minutes=90) for a, b in itertools.pairwise(dates))
    assert len(dates) == 8


# --- interval anchors ----------------------------------------------------------------------------


def test_interval_anchor_defaults_and_conversions() -> None:
    ny = ZoneInfo(NY)
    default = IntervalSchedule(interval=timedelta(days=1), timezone=NY)
    assert default.anchor_date == datetime(2020, 1, 1, tzinfo=ny)
    assert default.get_dates(start=Z(7, 1)) == [Z(7, 1, 4)]  # midnight EDT
    assert IntervalSchedule(interval=60).anchor_date == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert IntervalSchedule(interval=60).timezone == "UTC"
    # an aware anchor in another zone is converted to the schedule's zone
    moved = IntervalSchedule(interval=timedelta(days=1), anchor_date="2024-01-01T09:00:00-05:00",
                             timezone=BERLIN)
    assert moved.anchor_date == datetime(2024, 1, 1, 15, tzinfo=ZoneInfo(BERLIN))
    assert moved.get_dates(start=Z(7, 1)) == [Z(7, 1, 13)]  # 15:00 CEST
    # a fixed-offset anchor without a timezone is taken as UTC
    fixed = IntervalSchedule(interval=timedelta(days=1), anchor_date="2024-01-01T09:00:00-05:00")
    assert fixed.timezone == "UTC" and fixed.get_dates(start=Z(7, 1)) == [Z(7, 1, 14)]


def test_interval_runs_before_the_anchor_too() -> None:
    schedule = IntervalSchedule(interval=3600, anchor_date=Z(6, 1, 12, 30))
    assert schedule.get_dates(n=2, start=Z(5, 31, 23, 30)) == [Z(5, 31, 23, 30), Z(6, 1, 0, 30)]
    assert schedule.get_dates(n=1, start=Z(5, 31, 23, 31)) == [Z(6, 1, 0, 30)]


# --- RRule specifics -----------------------------------------------------------------------------


def test_rrule_count_until_and_dtstart_zone() -> None:
    counted = RRuleSchedule(rrule="DTSTART;TZID=America/New_York:20241101T090000\n"
                                  "RRULE:FREQ=DAILY;COUNT=4")
    assert counted.timezone == NY
    everything = counted.get_dates(start=Z(1, 1), end=Z(1, 1, year=2030))
    assert everything == [Z(11, 1, 13), Z(11, 2, 13), Z(11, 3, 14), Z(11, 4, 14)]
    assert counted.next_after(Z(11, 4, 14)) is None
    assert counted.get_dates(n=5, start=Z(12, 1)) == []

    until = RRuleSchedule(rrule="DTSTART;TZID=Europe/Berlin:20241025T090000\n"
                                "RRULE:FREQ=DAILY;UNTIL=20241028T080000Z\n"
                                "EXDATE;TZID=Europe/Berlin:20241026T090000")
    assert until.get_dates(n=10, start=Z(1, 1)) == [Z(10, 25, 7), Z(10, 27, 8), Z(10, 28, 8)]

    utc = RRuleSchedule(rrule="DTSTART:20240101T093000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO")
    assert utc.timezone == "UTC"
    assert utc.get_dates(n=2, start=Z(7, 2)) == [Z(7, 8, 9, 30), Z(7, 15, 9, 30)]


def test_rrule_dtstart_in_another_zone_is_converted() -> None:
    # 09:00 Berlin is 03:00 New York in January: the rule runs daily at 03:00 New York time
    moved = RRuleSchedule(rrule="DTSTART;TZID=Europe/Berlin:20240101T090000\nRRULE:FREQ=DAILY",
                          timezone=NY)
    assert moved.get_dates(n=2, start=Z(7, 1)) == [Z(7, 1, 7), Z(7, 2, 7)]
    # as in dateutil, DTSTART (a Monday) is a run only if it matches the rule (Tuesdays)
    tuesdays = RRuleSchedule(rrule="DTSTART:20240101T090000\nRRULE:FREQ=WEEKLY;BYDAY=TU")
    assert tuesdays.get_dates(n=1, start=Z(1, 1)) == [Z(1, 2, 9)]


def test_rrule_without_dtstart_starts_2020_in_local_time() -> None:
    # every other day from 2020-01-01; 2024-01-01 is 1461 days later (odd), so not a run day
    schedule = RRuleSchedule(rrule="FREQ=DAILY;INTERVAL=2;BYHOUR=6", timezone=BERLIN)
    assert schedule.get_dates(n=2, start=Z(1, 1)) == [Z(1, 2, 5), Z(1, 4, 5)]
    assert RRuleSchedule(rrule="FREQ=HOURLY").get_dates(n=1, start=Z(5, 5, 5, 1)) == [Z(5, 5, 6)]


def test_cron_day_or() -> None:
    # 1 January 2024 is a Monday; with day_or=False both the 1st and Monday must hold
    either = CronSchedule(cron="0 9 1 * mon")
    both = CronSchedule(cron="0 9 1 * mon", day_or=False)
    assert either.get_dates(n=3, start=Z(1, 1)) == [Z(1, 1, 9), Z(1, 8, 9), Z(1, 15, 9)]
    assert both.get_dates(n=2, start=Z(1, 1)) == [Z(1, 1, 9), Z(4, 1, 9)]


# --- n / start / end -----------------------------------------------------------------------------


def test_n_start_end_semantics() -> None:
    hourly = CronSchedule(cron="0 * * * *")
    assert hourly.get_dates(start=Z(1, 1, 0, 30)) == [Z(1, 1, 1)]  # n defaults to 1
    assert hourly.get_dates(3, start=Z(1, 1, 0, 30)) == [Z(1, 1, 1), Z(1, 1, 2), Z(1, 1, 3)]
    # both ends are inclusive; with an end and no n every time in the window
    assert hourly.get_dates(start=Z(1, 1, 1), end=Z(1, 1, 4)) == hourly_utc(Z(1, 1, 1), Z(1, 1, 4))
    assert hourly.get_dates(2, start=Z(1, 1, 1), end=Z(1, 1, 4)) == [Z(1, 1, 1), Z(1, 1, 2)]
    assert hourly.get_dates(10, start=Z(1, 1, 1), end=Z(1, 1, 2)) == [Z(1, 1, 1), Z(1, 1, 2)]
    assert hourly.get_dates(start=Z(1, 1, 5), end=Z(1, 1, 4)) == []
    assert hourly.get_dates(0, start=Z(1, 1)) == []
    # naive datetimes are UTC; other zones are converted; results are UTC
    assert hourly.get_dates(start=datetime(2024, 1, 1, 0, 30)) == [Z(1, 1, 1)]
    got = hourly.get_dates(start=datetime(2024, 1, 1, 0, 30, tzinfo=ZoneInfo(NY)))
    assert got == [Z(1, 1, 6)] and got[0].tzinfo is timezone.utc
    # start defaults to now
    before = datetime.now(timezone.utc)
    (upcoming,) = hourly.get_dates()
    assert before <= upcoming <= datetime.now(timezone.utc) + timedelta(hours=1)
    # next_after is strictly after
    assert hourly.next_after(Z(1, 1, 1)) == Z(1, 1, 2)
    assert hourly.next_after(datetime(2024, 1, 1, 1, 59)) == Z(1, 1, 2)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_n_is_refused(bad) -> None:
    with pytest.raises(InvalidScheduleError, match="n must be"):
        CronSchedule(cron="* * * * *").get_dates(bad, start=Z(1, 1))


def test_bad_window_is_refused() -> None:
    with pytest.raises(InvalidScheduleError, match="start must be a datetime"):
        CronSchedule(cron="* * * * *").get_dates(start="2024-01-01")


# --- serialization -------------------------------------------------------------------------------

DUMPS = [
    (CronSchedule(cron="0 9 * * 1-5", timezone=BERLIN),
     {"cron": "0 9 * * 1-5", "timezone": BERLIN, "day_or": True}),
    (CronSchedule(cron="@daily", day_or=False), {"cron": "@daily", "timezone": "UTC", "day_or": False}),
    (IntervalSchedule(interval=timedelta(minutes=90), anchor_date=datetime(2024, 1, 1, 9), timezone=NY),
     {"interval": 5400.0, "anchor_date": "2024-01-01T09:00:00-05:00", "timezone": NY}),
    (IntervalSchedule(interval=0.5), {"interval": 0.5, "anchor_date": "2020-01-01T00:00:00Z", "timezone": "UTC"}),
    (RRuleSchedule(rrule="FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9", timezone=NY),
     {"rrule": "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9", "timezone": NY}),
]


@pytest.mark.parametrize(("schedule", "dump"), DUMPS)
def test_serialization_round_trip(schedule, dump) -> None:
    assert schedule.model_dump(mode="json") == dump
    back = schedule_from_dict(json.loads(json.dumps(dump)))
    assert type(back) is type(schedule) and back == schedule
    assert back.get_dates(5, start=Z(3, 8)) == schedule.get_dates(5, start=Z(3, 8))
    assert type(TypeAdapter(SCHEDULE_TYPES).validate_python(dump)) is type(schedule)
    assert schedule_from_dict(schedule) is schedule


def test_schedules_are_immutable_values() -> None:
    schedule = CronSchedule(cron="0 9 * * *")
    with pytest.raises(Exception, match="frozen"):
        schedule.cron = "0 10 * * *"
    assert len({schedule, CronSchedule(cron="0 9 * * *", timezone="UTC")}) == 1


@pytest.mark.parametrize(("data", "message"), [
    ({}, "found none"),
    ({"cron": "* * * * *", "interval": 60}, "found cron, interval"),
    ({"schedule": "daily"}, "exactly one of the keys 'cron', 'interval' or 'rrule'"),
    ("0 9 * * *", "must be a dict, got str"),
    ({"cron": "* * * * *", "tz": NY}, "'tz' is not a field of CronSchedule"),
])
def test_schedule_from_dict_refuses_unknown_dicts(data, message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        schedule_from_dict(data)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "message"), [
    (lambda: CronSchedule(cron="61 * * * *"), "'61 \\* \\* \\* \\*' is not a valid cron expression"),
    (lambda: CronSchedule(cron="every day"), "not a valid cron expression"),
    (lambda: CronSchedule(cron="0 0 30 2 *"), "never matches a date"),
    (lambda: CronSchedule(cron="0 9 * * *", timezone="Mars/Olympus_Mons"), "unknown time zone 'Mars/Olympus_Mons'"),
    (lambda: IntervalSchedule(interval=0), "interval: must be greater than 0"),
    (lambda: IntervalSchedule(interval=timedelta(seconds=-5)), "greater than 0, got -5 seconds"),
    (lambda: IntervalSchedule(interval="often"), "interval: Input should be a valid timedelta"),
    (lambda: IntervalSchedule(interval=60, timezone="Europe/Atlantis"), "unknown time zone 'Europe/Atlantis'"),
    (lambda: RRuleSchedule(rrule="FREQ=SOMETIMES"), "'FREQ=SOMETIMES' is not a valid RFC 5545 recurrence rule"),
    (lambda: RRuleSchedule(rrule="every monday"), "not a valid RFC 5545 recurrence rule"),
    (lambda: RRuleSchedule(rrule="  "), "the rule is empty"),
    (lambda: RRuleSchedule(rrule="FREQ=DAILY;COUNT=3;UNTIL=20250101T000000"), "both COUNT and UNTIL"),
    (lambda: RRuleSchedule(rrule="DTSTART;TZID=Nowhere/Town:20240101T090000\nRRULE:FREQ=DAILY"),
     "unknown time zone 'Nowhere/Town'"),
    (lambda: RRuleSchedule(rrule="FREQ=DAILY", timezone="EST+5"), "unknown time zone 'EST\\+5'"),
    (lambda: construct_schedule(), "exactly one of cron, interval or rrule"),
    (lambda: construct_schedule(cron="* * * * *", rrule="FREQ=DAILY"), "got cron, rrule"),
    (lambda: construct_schedule(cron="* * * * *", anchor_date=Z(1, 1)), "anchor_date only applies"),
])
def test_bad_input_is_refused_clearly(build, message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message) as caught:
        build()
    assert isinstance(caught.value, LegatoError) and isinstance(caught.value, ValueError)


def test_construct_schedule() -> None:
    assert construct_schedule(cron="0 9 * * *", timezone=NY) == CronSchedule(cron="0 9 * * *", timezone=NY)
    by_seconds = construct_schedule(interval=600, anchor_date=Z(1, 1))
    assert by_seconds == IntervalSchedule(interval=timedelta(minutes=10), anchor_date=Z(1, 1))
    assert construct_schedule(rrule="FREQ=DAILY").get_dates(start=Z(1, 1, 1)) == [Z(1, 2)]


# --- properties: one fixed set of instants, however the window is cut ----------------------------

ZONES = [NY, BERLIN, "UTC", "Australia/Lord_Howe", "Asia/Kolkata"]
CHANGES = [Z(3, 10, 7), Z(11, 3, 6), Z(3, 31, 1), Z(10, 27, 1), Z(4, 6, 15), Z(10, 5, 15, 30)]

minute_fields = st.sampled_from(["*", "*/15", "*/20", "0", "30", "0,45", "10-12", "59"])
hour_fields = st.sampled_from(["*", "2", "1", "*/2", "1,2,3", "0-3", "22", "3"])
dom_fields = st.sampled_from(["*", "*", "*", "1-15"])
dow_fields = st.sampled_from(["*", "*", "mon-fri", "0,6"])


@st.composite
def windows(draw) -> tuple[datetime, datetime, datetime]:
    """(a, b, c) with a <= b <= c, mostly around a clock change."""
    center = draw(st.sampled_from(CHANGES + [Z(6, 15, 12), Z(12, 31, 23)]))
    a = center + timedelta(seconds=draw(st.integers(-36 * 3600, 12 * 3600)))
    a = a.replace(microsecond=draw(st.sampled_from([0, 0, 1, 999_999])))
    c = a + timedelta(seconds=draw(st.integers(0, 40 * 3600)))
    b = a + (c - a) * draw(st.floats(0, 1))
    return a, b, c


@st.composite
def cron_schedules(draw) -> CronSchedule:
    fields = [draw(minute_fields), draw(hour_fields), draw(dom_fields), "*", draw(dow_fields)]
    return CronSchedule(cron=" ".join(fields), timezone=draw(st.sampled_from(ZONES)),
                        day_or=draw(st.booleans()))


@st.composite
def interval_schedules(draw) -> IntervalSchedule:
    if draw(st.booleans()):
        interval = timedelta(days=draw(st.integers(1, 3)))
    else:
        interval = timedelta(seconds=draw(st.integers(1, 3 * 3600)), microseconds=draw(st.integers(0, 5)))
    anchor = datetime(2024, 1, 1) + timedelta(minutes=draw(st.integers(0, 400 * 24 * 60)))
    return IntervalSchedule(interval=interval, anchor_date=anchor, timezone=draw(st.sampled_from(ZONES)))


# (rule, whether its wall-clock pattern repeats every hour)
RULES = {
    "FREQ=HOURLY": True,
    "FREQ=MINUTELY;INTERVAL=20;BYMINUTE=0,20": True,
    "FREQ=HOURLY;INTERVAL=2": False,
    "FREQ=MINUTELY;INTERVAL=45": False,
    "FREQ=DAILY;BYHOUR=1,2,3;BYMINUTE=0,30": False,
    "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2": False,
    "DTSTART:20240101T021500\nRRULE:FREQ=DAILY": False,
}
rrule_schedules = st.builds(
    lambda rule, zone: RRuleSchedule(rrule=rule, timezone=zone),
    st.sampled_from(sorted(RULES)),
    st.sampled_from(ZONES),
)

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_window_properties(schedule, a: datetime, b: datetime, c: datetime) -> list[datetime]:
    full = schedule.get_dates(start=a, end=c)
    assert all(d.tzinfo is timezone.utc for d in full)
    assert all(x < y for x, y in itertools.pairwise(full)), "sorted and unique"
    assert all(a <= d <= c for d in full)
    left = schedule.get_dates(start=a, end=b)
    right = schedule.get_dates(start=b + timedelta(microseconds=1), end=c)
    assert left + right == full, "a split window loses or repeats nothing"
    k = max(1, len(full))
    assert schedule.get_dates(n=k, start=a) == (full if full else schedule.get_dates(n=1, start=a))
    if full:
        assert schedule.next_after(full[0] - timedelta(microseconds=1)) == full[0]
    return full


@PROPERTY
@given(cron_schedules(), windows())
def test_cron_windows_property(schedule: CronSchedule, window) -> None:
    full = check_window_properties(schedule, *window)
    assert full == brute_force_cron(schedule, window[0], window[2])


@PROPERTY
@given(interval_schedules(), windows())
def test_interval_windows_property(schedule: IntervalSchedule, window) -> None:
    full = check_window_properties(schedule, *window)
    zone = ZoneInfo(schedule.timezone)
    if schedule.follows_wall_clock:
        for x, y in itertools.pairwise(full):
            assert (y.astimezone(zone).date() - x.astimezone(zone).date()) == schedule.interval
        clock = schedule.anchor_date.time()
        for d in full:  # the anchor's time of day, or the jump when that time does not exist
            assert d.astimezone(zone).time() == clock or is_jump(d, zone)
    else:
        anchor = schedule.anchor_date
        assert all((d - anchor) % schedule.interval == timedelta(0) for d in full)


@PROPERTY
@given(rrule_schedules, windows())
def test_rrule_windows_property(schedule: RRuleSchedule, window) -> None:
    full = check_window_properties(schedule, *window)
    walls = rule_walls(schedule.rrule)
    expected = brute_force(schedule.timezone, walls.__contains__, RULES[schedule.rrule], *window[::2])
    assert full == expected


def is_jump(instant: datetime, zone: ZoneInfo) -> bool:
    before = (instant - timedelta(microseconds=1)).astimezone(zone).utcoffset()
    return instant.astimezone(zone).utcoffset() > before


@functools.lru_cache
def rule_walls(rule: str) -> frozenset[datetime]:
    """Every local wall time of the rule around 2024, replayed by dateutil from its start."""
    parsed = rrulestr(rule, dtstart=datetime(2020, 1, 1))
    return frozenset(parsed.between(datetime(2023, 12, 1), datetime(2025, 2, 1), inc=True))


def brute_force_cron(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    every_hour = schedule.cron.split()[1] == "*"

    def matches(wall: datetime) -> bool:
        return croniter.match(schedule.cron, wall, day_or=schedule.day_or)

    return brute_force(schedule.timezone, matches, every_hour, start, end)


def brute_force(zone_name: str, matches, every_hour: bool, start: datetime, end: datetime) -> list:
    """The documented rules, checked minute by minute in real time: a matching local wall time
    runs at its first occurrence (at both, for an every-hour pattern); wall times skipped by a
    jump forward run once at the jump (not at all, for an every-hour pattern)."""
    zone = ZoneInfo(zone_name)
    out = []
    t = start.replace(second=0, microsecond=0)
    if t < start:
        t += timedelta(minutes=1)
    while t <= end:
        local = t.astimezone(zone)
        if matches(local.replace(tzinfo=None)) and (every_hour or local.fold == 0):
            out.append(t)
        elif not every_hour and is_jump(t, zone):
            skipped_from = (t - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
            wall = skipped_from + timedelta(minutes=1)
            while wall < local.replace(tzinfo=None):
                if matches(wall):
                    out.append(t)
                    break
                wall += timedelta(minutes=1)
        t += timedelta(minutes=1)
    return out
