"""Policy presets: the dialling rules as readable TOML files, one per rule set.

`campaigns/presets/` ships three: `client` (the client's rules, the default), `cn_national`
(the Chinese national-standard profile) and `us_fdcpa` (US FDCPA / Regulation F). A campaign
uses one preset plus overrides: `load_preset("client", {"caps.attempts_per_number_per_day": 2})`
or, from the command line, `--set caps.attempts_per_number_per_day=2`.

A preset file names every key in `KEYS` (so that reading one file tells all its rules), or
`extends` another preset and names only what differs. Unknown keys, missing keys and bad
values are `PresetError`s that name the file and the key.
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .enums import CaseStatus, PhoneRole
from .policy import LIFTABLE, REQUESTERS, FollowUpRules, Rules, Slot
from .workdays import WEEKENDS_ONLY, CalendarError, WorkCalendar, load_holidays

PRESETS_DIR = Path(__file__).with_name("presets")
PRESET_NAMES = ("client", "cn_national", "us_fdcpa")
DEFAULT_PRESET = "client"


class PresetError(ValueError):
    """A preset or an override that cannot be used; the message names the file and the key."""


class _Bad(ValueError):
    """A value that does not parse; the loader adds the file and the key."""


@dataclass(frozen=True)
class Key:
    """One setting of a preset: the `Rules` field it sets ('follow_up.x' for `FollowUpRules`),
    how its value is read (`parse(value, preset_dir)`) and what it means."""

    field: str
    parse: Callable[[Any, Path], Any]
    help: str


# ---------------------------------------------------------------- values

def _text(value: Any, folder: Path) -> str:
    if not isinstance(value, str):
        raise _Bad(f"give text in quotes, got {value!r}")
    return value


def _count(least: int) -> Callable[[Any, Path], int]:
    def parse(value: Any, folder: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise _Bad(f"give a whole number of at least {least}, got {value!r}")
        return value
    return parse


def _flag(value: Any, folder: Path) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"give true or false, got {value!r}")
    return value


def _clock(value: Any, folder: Path) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise _Bad(f"give a time of day as \"HH:MM\", got {value!r}") from None


def _clock_or_none(value: Any, folder: Path) -> time | None:
    return None if value == "" else _clock(value, folder)


def _days(value: Any, folder: Path) -> timedelta:
    return timedelta(days=_count(0)(value, folder))


def _minutes(value: Any, folder: Path) -> timedelta:
    return timedelta(minutes=_count(1)(value, folder))


def _zone(value: Any, folder: Path) -> str:
    try:
        ZoneInfo(_text(value, folder))
    except (ZoneInfoNotFoundError, ValueError):
        raise _Bad(f"give an IANA time zone such as \"Asia/Shanghai\", got {value!r}") from None
    return value


def _items(value: Any) -> list[Any]:
    """A TOML list, or (from the command line) comma-separated text."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, list):
        raise _Bad(f"give a list, got {value!r}")
    return value


def _choices(known: Callable[[], list[str]], what: str) -> Callable[[Any, Path], frozenset[str]]:
    def parse(value: Any, folder: Path) -> frozenset[str]:
        items = _items(value)
        wrong = [item for item in items if item not in known()]
        if wrong:
            raise _Bad(f"{wrong[0]!r} is not a {what} (known: {', '.join(known())})")
        return frozenset(items)
    return parse


def _statuses(value: Any, folder: Path) -> frozenset[CaseStatus]:
    return frozenset(map(CaseStatus, _choices(lambda: [s.value for s in CaseStatus], "case status")(value, folder)))


def _roles(value: Any, folder: Path) -> tuple[PhoneRole, ...]:
    items = _items(value)
    known = [role.value for role in PhoneRole if role is not PhoneRole.CONTACT]
    wrong = [item for item in items if item not in known]
    if wrong or not items:
        raise _Bad(f"give the debtor's own number roles in dial order, from {', '.join(known)}; got {value!r}")
    return tuple(map(PhoneRole, items))


def _slots(value: Any, folder: Path) -> tuple[Slot, ...]:
    if not isinstance(value, list) or any(not isinstance(slot, dict) or set(slot) != {"name", "start", "end"}
                                          for slot in value):
        raise _Bad("give a list of { name = \"morning\", start = \"08:00\", end = \"12:00\" } "
                   f"(or [] for no slot rule), got {value!r}")
    return tuple(Slot(_clock(slot["start"], folder), _clock(slot["end"], folder), _text(slot["name"], folder))
                 for slot in value)


def _reminders(value: Any, folder: Path) -> tuple[int, ...]:
    return tuple(_count(1)(day, folder) for day in _items(value))


def _calendar(value: Any, folder: Path) -> WorkCalendar:
    """A holiday file, relative to the preset's folder; "" for weekends only."""
    if not _text(value, folder):
        return WEEKENDS_ONLY
    try:
        return load_holidays(folder / value)
    except CalendarError as error:
        raise _Bad(str(error)) from None


KEYS: dict[str, Key] = {
    "preset.name": Key("name", _text, "the preset's name, as `why` shows it"),
    "preset.description": Key("description", _text, "what the preset is, in a sentence"),
    "window.start": Key("window_start", _clock, "the calling window opens (debtor's local time)"),
    "window.end": Key("window_end", _clock, "the calling window closes (exclusive)"),
    "window.default_timezone": Key("default_timezone", _zone, "the debtors' zone when neither case nor campaign says"),
    "no_answer.slots": Key("slots", _slots, "one try per number in each part of the day; [] for none"),
    "no_answer.retry_before": Key("retry_before", _clock_or_none,
                                  "a number unanswered today is retried only before this; \"\" for no such rule"),
    "caps.attempts_per_number_per_day": Key("max_attempts_per_number_per_day", _count(1),
                                            "dials of one number per local day"),
    "caps.connected_per_case_per_day": Key("max_connected_per_case_per_day", _count(1),
                                           "effective calls (conversations) per debtor per local day"),
    "caps.calls_per_period": Key("max_calls_per_period", _count(1), "calls per case in any rolling period"),
    "caps.period_days": Key("period", _days, "the rolling period, in days of 24 h; 0 for no rolling cap"),
    "caps.quiet_days_after_conversation": Key("quiet_after_conversation", _days,
                                              "no call for this many days (x 24 h) after a conversation; 0 for none"),
    "numbers.dial_order": Key("dial_roles", _roles, "the debtor's own numbers, in the order they are dialled"),
    "statuses.stop": Key("blocking_statuses", _statuses, "statuses that stop or pause all dialling"),
    "statuses.appointments_only": Key("appointments_only_statuses", _statuses,
                                      "statuses that allow only appointments the debtor asked for"),
    "statuses.tracing": Key("tracing_statuses", _statuses, "statuses traced once every tracing interval"),
    "tracing.interval_working_days": Key("tracing_interval_working_days", _count(1),
                                         "working days between two tracing days"),
    "contacts.dial": Key("dial_contacts", _flag, "whether contacts (third parties) are ever dialled"),
    "contacts.after_failures": Key("contacts_after_failures", _count(1),
                                   "failures in a row to reach the debtor before a contact may be called"),
    "contacts.rest_days": Key("contact_rest", _days, "a contact spoken to is not called again for this many days"),
    "contacts.note": Key("third_party_note", _text, "what the agent is told when the call is to a third party"),
    "amd.message": Key("amd_message", _text, "what is left on an answering machine (campaign setting amd = message): "
                       "no debt, amount, bank or collector named, anyone may hear it"),
    "amd.voice": Key("amd_voice", _text, "the espeak-ng voice the message is spoken in (en, cmn, ...)"),
    "appointments.minutes": Key("appointment_tolerance", _minutes,
                                "an appointment may be kept this many minutes before or after its time"),
    "appointments.requested_by": Key("appointment_requested_by", _choices(lambda: sorted(REQUESTERS), "requester"),
                                     "whose appointments are exceptions (debtor, third_party, agent)"),
    "appointments.lift": Key("appointment_lifts", _choices(lambda: sorted(LIFTABLE), "rule an appointment may lift"),
                             "the rules an appointment sets aside for its one dial"),
    "appointments.counted": Key("appointment_calls_counted", _flag,
                                "whether appointment calls count in the rolling cap"),
    "calendar.holidays": Key("calendar", _calendar, "the holiday file (relative to the preset); \"\" for weekends only"),
}
#: The follow-up schedules' settings (`FollowUpRules`): key follow_up.NAME sets field NAME.
KEYS |= {f"follow_up.{name}": Key(f"follow_up.{name}", parse, help) for name, (parse, help) in {
    "first_call_days": (_count(1), "a new case is first called within this many days"),
    "coverage_working_days": (_count(1), "every case of a queue is called within this many working days"),
    "urgent_within_working_days": (_count(1), "an urgent case is called again within this many working days"),
    "tracing_deadline_working_days": (_count(1), "a lost-contact case is traced at the latest after this many"),
    "broken_promises": (_count(1), "this many broken promises ..."),
    "broken_promise_calls_per_week": (_count(1), "... mean at least this many calls a week"),
    "promise_days_before": (_count(0), "an open promise is followed up this many days before its due date"),
    "reminder_days_before": (_reminders, "reminders this many days before the instalment's due date"),
    "evening_start": (_clock, "the evening follow-up (夜间催收) starts"),
    "active_every_days": (_count(1), "any other collectable case is followed up every this many days"),
}.items()}


# ---------------------------------------------------------------- files

def preset_path(name_or_path: str | Path) -> Path:
    """A shipped preset's file by its name, or the path of a preset file of one's own."""
    if str(name_or_path) in PRESET_NAMES:
        return PRESETS_DIR / f"{name_or_path}.toml"
    path = Path(name_or_path)
    if path.suffix != ".toml" or not path.is_file():
        raise PresetError(f"no preset {str(name_or_path)!r}: give one of {', '.join(PRESET_NAMES)} "
                          "or the path of a .toml preset file")
    return path


def load_preset(name_or_path: str | Path = DEFAULT_PRESET, overrides: Mapping[str, Any] | None = None) -> Rules:
    """The rules of a preset, with `overrides` ({"caps.period_days": 7} or, as the command line
    gives them, {"caps.period_days": "7"}) applied on top."""
    path = preset_path(name_or_path)
    values = _settings(path, ())
    for key, value in (overrides or {}).items():
        where = f"{path}: override {key}={value!r}"
        if key not in KEYS:
            raise PresetError(f"{where}: unknown key (known: {', '.join(KEYS)})")
        values[key] = (_typed(value) if isinstance(value, str) else value, path.parent, where)
    fields: dict[str, Any] = {}
    for key, (value, folder, where) in values.items():
        try:
            fields[KEYS[key].field] = KEYS[key].parse(value, folder)
        except _Bad as error:
            raise PresetError(f"{where}: {error}") from None
    if overrides:
        fields["name"] += " with " + ", ".join(f"{key}={value}" for key, value in overrides.items())
    follow_up = {name.removeprefix("follow_up."): fields.pop(name) for name in list(fields) if name.startswith("follow_up.")}
    try:
        return Rules(**fields, follow_up=FollowUpRules(**follow_up))
    except ValueError as error:
        raise PresetError(f"{path}{' with the overrides' if overrides else ''}: {_in_keys(str(error))}") from None


def _settings(path: Path, seen: tuple[Path, ...]) -> dict[str, tuple[Any, Path, str]]:
    """Every key of a preset file (and of the presets it extends): its value, the folder its
    file is in (holiday files are relative to it) and where it was set, for messages."""
    if path.resolve() in seen:
        raise PresetError(f"{path}: extends itself (through {', '.join(map(str, seen))})")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise PresetError(f"{path}: cannot read the preset: {error}") from None
    base = document.pop("extends", None)
    values = {} if base is None else _settings(preset_path(base), (*seen, path.resolve()))
    for section, table in document.items():
        if not isinstance(table, dict):
            raise PresetError(f"{path}: {section}: unknown key (a preset has only [sections]: "
                              f"{', '.join(sorted({key.split('.')[0] for key in KEYS}))}, and extends)")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in KEYS:
                raise PresetError(f"{path}: {key}: unknown key (known: {', '.join(KEYS)})")
            values[key] = (value, path.parent, f"{path}: {key}")
    missing = [key for key in KEYS if key not in values]
    if missing and not seen:
        raise PresetError(f"{path}: {missing[0]} is missing ({len(missing)} keys are; a preset names every key, "
                          "or extends another preset)")
    return values


def _in_keys(message: str) -> str:
    """A `Rules` message in the preset's words: blocking_statuses -> statuses.stop."""
    for key, setting in KEYS.items():
        message = re.sub(rf"(?<![\w.]){re.escape(setting.field)}\b", key, message)
    return message


def _typed(text: str) -> Any:
    """A command-line value as TOML reads it (7, true, ["debtor"]), else the text itself."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
