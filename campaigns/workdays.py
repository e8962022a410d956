"""Working days: weekends, public holidays and the make-up working days (调休) that the State
Council moves onto weekends each year.

A `WorkCalendar` is plain data; `load_holidays` reads one from a TOML file the user keeps up
to date (`campaigns/presets/holidays_cn.toml`: one `[[holidays]]` table per holiday, with its
first and last day off and the weekend days worked instead). A year the file says nothing
about counts only weekends as days off: `WorkCalendar.covers(year)` tells which years are
known, so that a caller can warn before trusting a far-off date.

Named `workdays`, not `calendar`, so that it is never mistaken for the standard library's.
"""
from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class CalendarError(ValueError):
    """A holiday file that cannot be read; the message names the file, the entry and the key."""


@dataclass(frozen=True)
class Holiday:
    name: str
    first: date
    last: date
    work: tuple[date, ...] = ()  # make-up working days (调休上班), usually a weekend day nearby

    @property
    def days(self) -> tuple[date, ...]:
        return tuple(self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1))


@dataclass(frozen=True)
class WorkCalendar:
    """Days off: the `weekend` weekdays (0 = Monday) and the holidays; a make-up working day
    is worked even when it falls on a weekend. `source` says where the data came from."""

    holidays: tuple[Holiday, ...] = ()
    weekend: frozenset[int] = frozenset({5, 6})
    source: str = "weekends only"
    days_off: frozenset[date] = field(init=False, repr=False, compare=False)
    worked: frozenset[date] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days_off", frozenset(day for h in self.holidays for day in h.days))
        object.__setattr__(self, "worked", frozenset(day for h in self.holidays for day in h.work))
        clash = sorted(self.days_off & self.worked)
        if clash:
            raise CalendarError(f"{self.source}: {', '.join(map(str, clash))} is both a day off and a make-up working day")

    def covers(self, year: int) -> bool:
        """Whether the calendar lists this year's holidays (else only weekends are known)."""
        return any(year in (h.first.year, h.last.year) for h in self.holidays)

    def holiday_on(self, day: date) -> Holiday | None:
        return next((h for h in self.holidays if day in h.days or day in h.work), None)


WEEKENDS_ONLY = WorkCalendar()


def is_working_day(day: date, calendar: WorkCalendar = WEEKENDS_ONLY) -> bool:
    """A make-up working day is worked; a holiday is not; otherwise weekdays are worked."""
    if day in calendar.worked:
        return True
    return day not in calendar.days_off and day.weekday() not in calendar.weekend


def add_working_days(day: date, count: int, calendar: WorkCalendar = WEEKENDS_ONLY) -> date:
    """The `count`-th working day after `day` (before it, for a negative count), not counting
    `day` itself: add_working_days(Friday, 1) is the next Monday in a plain week. A count of 0
    gives `day` back, working or not."""
    step = 1 if count >= 0 else -1
    for _ in range(abs(count)):
        day += timedelta(days=step)
        while not is_working_day(day, calendar):
            day += timedelta(days=step)
    return day


def working_days_between(first: date, last: date, calendar: WorkCalendar = WEEKENDS_ONLY) -> int:
    """How many working days are in (first, last]: 0 when last <= first."""
    return sum(is_working_day(first + timedelta(days=n), calendar) for n in range(1, (last - first).days + 1))


# ---------------------------------------------------------------- the file

def load_holidays(path: str | Path) -> WorkCalendar:
    """Read a holiday calendar from TOML:

        weekend = ["saturday", "sunday"]
        [[holidays]]
        name = "春节 Spring Festival"
        first = 2026-02-15
        last = 2026-02-23
        work = [2026-02-14, 2026-02-28]
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CalendarError(f"{path}: cannot read the holiday calendar: {error}") from None
    _only(document, {"weekend", "holidays"}, f"{path}")
    weekend = document.get("weekend", ["saturday", "sunday"])
    if not isinstance(weekend, list) or any(day not in WEEKDAYS for day in weekend):
        raise CalendarError(f"{path}: weekend: give a list of weekday names ({', '.join(WEEKDAYS)}), got {weekend!r}")
    entries = document.get("holidays", [])
    if not isinstance(entries, list):
        raise CalendarError(f"{path}: holidays: give [[holidays]] tables, got {entries!r}")
    holidays = tuple(_holiday(entry, f"{path}: holidays[{n}]") for n, entry in enumerate(entries))
    return WorkCalendar(holidays, frozenset(WEEKDAYS.index(day) for day in weekend), str(path))


def _holiday(entry: Any, where: str) -> Holiday:
    if not isinstance(entry, dict):
        raise CalendarError(f"{where}: give a table with name, first, last and work, got {entry!r}")
    _only(entry, {"name", "first", "last", "work"}, where)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise CalendarError(f"{where}: name: give the holiday's name, got {name!r}")
    where = f"{where} ({name})"
    first, last = (_date(entry.get(key), f"{where}: {key}") for key in ("first", "last"))
    work = entry.get("work", [])
    if not isinstance(work, list):
        raise CalendarError(f"{where}: work: give a list of dates, got {work!r}")
    if last < first:
        raise CalendarError(f"{where}: last ({last}) is before first ({first})")
    return Holiday(name, first, last, tuple(_date(day, f"{where}: work") for day in work))


def _date(value: Any, where: str) -> date:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    raise CalendarError(f"{where}: give a date as YYYY-MM-DD (no quotes), got {value!r}")


def _only(table: dict, known: Iterable[str], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise CalendarError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
