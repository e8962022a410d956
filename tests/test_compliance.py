"""The compliance policy: presets, every rule of each preset, appointments, contacts,
follow-ups, working days, agent targets.

The rules are written out a second time here, as plain arithmetic over an attempt log
(`breaches`, with the numbers of each preset in `FACTS`), independently of campaigns/policy.py.
Hypothesis compares `decide` with that reading over generated cases, histories, zones and
clocks for each preset; a day-long simulated run per preset (the clock moved a minute at a
time, a fake dialer dialling whatever `decide` allows, outcomes from a seeded random network)
has its dial log checked by it. Moments are written in UTC or as a wall clock in a named zone.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from campaigns.follow_up import coverage_deadline, next_follow_up
from campaigns.models import CaseStatus, PhoneRole
from campaigns.policy import (
    AppointmentView,
    AttemptView,
    CaseView,
    FollowUpRules,
    PhoneView,
    PromiseView,
    Rules,
    decide,
    in_window,
    local_now,
    why,
)
from campaigns.presets import KEYS, PRESET_NAMES, PRESETS_DIR, PresetError, load_preset
from campaigns.targets import queue_size_needed, targets_status
from campaigns.workdays import (
    CalendarError,
    add_working_days,
    is_working_day,
    load_holidays,
    working_days_between,
)

SH, URUMQI, NY, LA = "Asia/Shanghai", "Asia/Urumqi", "America/New_York", "America/Los_Angeles"
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
CONTACT = PhoneRole.CONTACT
PRESETS = {name: load_preset(name) for name in PRESET_NAMES}
CLIENT, NATIONAL, US = (PRESETS[name] for name in ("client", "cn_national", "us_fdcpa"))

# ---------------------------------------------------------------- the rules, written out again

# 2026 in China (国办发明电〔2025〕7号): days off, and weekend days worked instead.
CN_OFF = {date(2026, 1, d) for d in (1, 2, 3)} | {date(2026, 2, d) for d in range(15, 24)} \
    | {date(2026, 4, d) for d in (4, 5, 6)} | {date(2026, 5, d) for d in range(1, 6)} \
    | {date(2026, 6, d) for d in (19, 20, 21)} | {date(2026, 9, d) for d in (25, 26, 27)} \
    | {date(2026, 10, d) for d in range(1, 8)}
CN_WORKED = {date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9), date(2026, 9, 20),
             date(2026, 10, 10)}
STOP = {"client_stop", "complaint", "dispute", "fraud_claim", "deceased", "imprisoned", "paid", "closed"}


@dataclass(frozen=True)
class Facts:
    """One preset's numbers, as the documents give them (hours as seconds of the local day)."""

    start: int
    end: int
    per_number: int
    connected: int
    slots: tuple[tuple[int, int], ...]  # the no-answer schedule's parts of the day, or ()
    retry_before: int | None
    week_cap: int | None                # US: calls in any 7 x 24 h
    quiet: timedelta | None             # US: none within 7 x 24 h after a conversation
    appointment_calls_counted: bool
    lifted: frozenset[str]              # what an appointment the debtor asked for sets aside
    contact_rest: timedelta
    holidays: bool                      # the Chinese calendar (else weekends only)


H = 3600
FACTS = {
    "client": Facts(8 * H, 21 * H, 3, 1, ((8 * H, 12 * H), (12 * H, 17 * H), (17 * H, 21 * H)), 20 * H, None, None,
                    True, frozenset({"window", "slot", "retry", "appointments_only", "tracing"}), 3 * DAY, True),
    "cn_national": Facts(8 * H, 22 * H, 6, 3, (), None, None, None, True,
                         frozenset({"window", "appointments_only", "tracing"}), 3 * DAY, True),
    "us_fdcpa": Facts(8 * H, 21 * H, 7, 1, (), None, 7, 7 * DAY, False,
                      frozenset({"window", "week_cap", "quiet", "connected", "appointments_only", "tracing"}),
                      365 * DAY, False),
}


def working(day: date, chinese: bool) -> bool:
    if chinese and day in CN_WORKED:
        return True
    return day.weekday() < 5 and not (chinese and day in CN_OFF)


def seconds(wall: datetime) -> int:
    return wall.hour * H + wall.minute * 60 + wall.second


def talked(attempt: AttemptView) -> bool:
    return attempt.answered if attempt.conversation is None else attempt.conversation


def open_appointment(case: CaseView, history, at: datetime) -> AppointmentView | None:
    """The first debtor-requested appointment whose five minutes either side hold `at` and in
    which the case has no dial yet."""
    for appointment in sorted(case.appointments, key=lambda a: a.at):
        low, high = appointment.at - 5 * MINUTE, appointment.at + 5 * MINUTE
        if appointment.by == "debtor" and low <= at < high and not any(low <= a.at < high for a in history):
            return appointment
    return None


def breaches(f: Facts, case: CaseView, history, at: datetime, phone: PhoneView, appointment: bool) -> list[str]:
    """Every rule a dial of `phone` at `at` would break, the case and its numbers as they are and
    `history` the dials before it. `appointment`: the dial keeps an appointment."""
    zone = ZoneInfo(case.timezone)
    wall = at.astimezone(zone)
    lifted = f.lifted if appointment else frozenset()
    found: list[str] = []

    def rule(name: str, broken: bool) -> None:
        if broken and name not in lifted:
            found.append(name)

    same_day = [a for a in history if a.at.astimezone(zone).date() == wall.date()]
    mine = [a for a in same_day if a.phone_id == phone.id]
    own = [p for p in case.phones if p.role is not CONTACT]
    talks = [a.at for a in history if a.phone_id in {p.id for p in own} and talked(a)]
    last_talk = max([*talks, *filter(None, [case.last_conversation_at])], default=None)
    if appointment:
        kept = open_appointment(case, history, at)
        rule("no open appointment", kept is None or kept.phone_id not in (None, phone.id))
    rule("window", not f.start <= seconds(wall) < f.end)
    rule("status", case.status.value in STOP)
    rule("appointments_only", case.status.value == "hardship")
    rule("number", not phone.valid or phone.do_not_call)
    rule("per_number", len(mine) >= (1 if case.status.value == "lost_contact" else f.per_number))
    rule("connected", sum(map(talked, same_day)) >= f.connected)

    def part(moment: datetime) -> int | None:
        return next((n for n, (low, high) in enumerate(f.slots) if low <= seconds(moment.astimezone(zone)) < high), None)

    rule("slot", part(at) is not None and any(part(a.at) == part(at) for a in mine))
    rule("retry", f.retry_before is not None and seconds(wall) >= f.retry_before and any(not a.answered for a in mine))
    counted = [a for a in history if at - 7 * DAY < a.at <= at and (f.appointment_calls_counted or not a.appointment)]
    rule("week_cap", f.week_cap is not None and len(counted) >= f.week_cap)
    rule("quiet", f.quiet is not None and last_talk is not None and at < last_talk + f.quiet)
    earlier = [a.at.astimezone(zone).date() for a in history if a.at.astimezone(zone).date() < wall.date()]
    if case.status.value == "lost_contact" and earlier:
        between = [max(earlier) + n * DAY for n in range(1, (wall.date() - max(earlier)).days + 1)]
        rule("tracing", sum(working(day, f.holidays) for day in between) < 6)
    if phone.role is CONTACT:
        failures = [a for a in history if a.phone_id in {p.id for p in own} and (last_talk is None or a.at > last_talk)]
        rule("contact_too_early", len(failures) < 3 and any(p.valid for p in own))
        spoken = [a.at for a in history if a.phone_id == phone.id and talked(a)] + [phone.last_conversation_at]
        rule("contact_rest", any(moment is not None and at < moment + f.contact_rest for moment in spoken))
    return found


def expected_dial(f: Facts, case: CaseView, history, at: datetime) -> tuple[PhoneView, bool] | None:
    """The dial the rules allow: an appointment first, else the first number that breaks
    nothing, in the order own mobile, home, work (then phone id), then contacts by id."""
    rank = {PhoneRole.OWN_MOBILE: 0, PhoneRole.HOME: 1, PhoneRole.WORK: 2, CONTACT: 3}
    order = sorted(case.phones, key=lambda p: (rank[p.role], p.id))
    for appointment in (True, False):
        for phone in order:
            if not breaches(f, case, history, at, phone, appointment):
                return phone, appointment
    return None


# ---------------------------------------------------------------- helpers

def wall(text: str, tz: str = SH) -> datetime:
    """A wall-clock reading in `tz`, as aware UTC (the first occurrence)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


MOBILE = PhoneView(1, PhoneRole.OWN_MOBILE, "13800138000")
HOME = PhoneView(2, PhoneRole.HOME, "075588888888")
WORK = PhoneView(3, PhoneRole.WORK, "02066666666")
RELATIVE = PhoneView(4, CONTACT, "13900139000")


def case(*phones: PhoneView, status: str = "active", tz: str = SH, **more) -> CaseView:
    return CaseView(17, CaseStatus(status), Decimal("5000.00"), 45, phones or (MOBILE, HOME, RELATIVE), tz, **more)


def dial(phone: PhoneView, text: str, tz: str = SH, answered: bool = False, conversation: bool | None = None,
         appointment: bool = False) -> AttemptView:
    return AttemptView(phone.id, wall(text, tz), answered, conversation, appointment)


def rules_of(decision) -> list[tuple[str, int | None]]:
    return [(block.rule, block.phone_id) for block in decision.blocks]


# ---------------------------------------------------------------- presets

def test_the_presets_say_what_the_documents_say():
    client, national, us = CLIENT, NATIONAL, US
    assert (client.window_start, client.window_end, national.window_end, us.window_end) == (
        time(8), time(21), time(22), time(21))
    assert [slot.name for slot in client.slots] == ["morning", "noon", "evening"] and not national.slots
    assert (client.retry_before, national.retry_before, us.retry_before) == (time(20), None, None)
    assert (client.max_attempts_per_number_per_day, national.max_attempts_per_number_per_day) == (3, 6)
    assert (client.max_connected_per_case_per_day, national.max_connected_per_case_per_day) == (1, 3)
    assert (us.max_calls_per_period, us.period, us.quiet_after_conversation) == (7, 7 * DAY, 7 * DAY)
    assert all(rules.dial_contacts and rules.contacts_after_failures == 3 for rules in PRESETS.values())
    assert "location information only" in us.third_party_note and not us.appointment_calls_counted
    assert client.calendar.covers(2026) and not us.calendar.covers(2026)
    assert {status.value for status in client.blocking_statuses} == STOP
    assert load_preset() == client and client.name == "client"


def test_rules_without_a_preset_are_the_first_version():
    assert not Rules().dial_contacts and not Rules().tracing_statuses and not Rules().appointments_only_statuses
    assert decide(case(RELATIVE), [], wall("2026-11-25 09:00")).blocks[0].rule == "no_dialable_number"


def test_the_views_refuse_what_cannot_be():
    with pytest.raises(ValueError, match="record the debtor's words"):
        AppointmentView(wall("2026-11-25 21:30"), "debtor", " ")
    with pytest.raises(ValueError, match="by must be one of agent, debtor, third_party"):
        AppointmentView(wall("2026-11-25 21:30"), "wife", "明天")
    with pytest.raises(ValueError, match="aware"):
        AppointmentView(datetime(2026, 11, 25, 21, 30), "debtor", "明天")
    with pytest.raises(ValueError, match="a conversation needs an answered call"):
        AttemptView(1, wall("2026-11-25 10:00"), False, True)
    with pytest.raises(ValueError, match="status must be open, kept or broken"):
        PromiseView(date(2026, 3, 1), Decimal(1), "late")


def test_how_much_history_the_engine_must_pass():
    assert Rules().history_needed == timedelta(hours=36)
    assert CLIENT.history_needed == 31 * DAY and US.history_needed == 31 * DAY
    assert load_preset("client", {"contacts.dial": False, "statuses.tracing": []}).history_needed == 36 * HOUR


def test_one_number_the_rules_do_not_dial():
    refused = decide(case(MOBILE, RELATIVE), [], wall("2026-11-25 10:00"), phone_id=RELATIVE.id)
    assert rules_of(refused) == [("no_dialable_number", RELATIVE.id)] and refused.next_at is None
    assert "these rules do not dial contact numbers" in refused.explain()


def test_the_client_preset_names_every_key_and_the_others_extend_it():
    text = (PRESETS_DIR / "client.toml").read_text()
    assert all(f"\n{key.split('.')[1]} =" in text for key in KEYS)
    assert all((PRESETS_DIR / f"{name}.toml").read_text().count('extends = "client"') == 1
               for name in ("cn_national", "us_fdcpa"))


@pytest.mark.parametrize("overrides, rule, value", [
    ({"caps.attempts_per_number_per_day": "2"}, "max_attempts_per_number_per_day", 2),
    ({"window.end": "20:30"}, "window_end", time(20, 30)),
    ({"contacts.dial": "false"}, "dial_contacts", False),
    ({"statuses.appointments_only": "hardship,lost_contact", "statuses.tracing": "[]"},
     "appointments_only_statuses", {CaseStatus.HARDSHIP, CaseStatus.LOST_CONTACT}),
    ({"caps.period_days": 7}, "period", 7 * DAY),
    ({"follow_up.reminder_days_before": "[5, 1]"}, "follow_up", FollowUpRules(reminder_days_before=(5, 1))),
])
def test_overrides_from_the_command_line(overrides, rule, value):
    rules = load_preset("cn_national" if "window.end" in overrides else "client", overrides)
    assert getattr(rules, rule) == value
    assert " with " in rules.name


@pytest.mark.parametrize("text, says", [
    ("[window]\nstrat = \"08:00\"\n", "window.strat: unknown key"),
    ("[window]\nstart = \"8 o'clock\"\n", "window.start: give a time of day as \"HH:MM\", got \"8 o'clock\""),
    ("[caps]\nattempts_per_number_per_day = 0\n", "caps.attempts_per_number_per_day: give a whole number of at least 1"),
    ("[statuses]\nstop = [\"stopped\"]\n", "statuses.stop: 'stopped' is not a case status"),
    ("[appointments]\nlift = [\"case_status\"]\n", "'case_status' is not a rule an appointment may lift"),
    ("[window]\nend = \"07:00\"\n", "the calling window 08:00–07:00 must start before it ends"),
    ("[statuses]\ntracing = [\"dispute\"]\n", "dispute is in both statuses.stop and statuses.tracing"),
    ("[calendar]\nholidays = \"nowhere.toml\"\n", "cannot read the holiday calendar"),
    ("window = 3\n", "window: unknown key"),
])
def test_a_bad_preset_names_the_file_and_the_key(tmp_path, text, says):
    mine = tmp_path / "mine.toml"
    mine.write_text(f"extends = \"client\"\n{text}")
    with pytest.raises(PresetError) as error:
        load_preset(mine)
    assert str(mine) in str(error.value) and says in str(error.value)


def test_a_preset_of_ones_own_must_be_complete_or_extend_one(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text("[window]\nstart = \"09:00\"\n")
    with pytest.raises(PresetError, match="is missing"):
        load_preset(mine)
    mine.write_text("extends = \"us_fdcpa\"\n[window]\nstart = \"09:00\"\n")
    assert load_preset(mine).window_start == time(9) and load_preset(mine).period == 7 * DAY
    with pytest.raises(PresetError, match="no preset 'uk'"):
        load_preset("uk")
    with pytest.raises(PresetError, match="override caps.cap=3: unknown key"):
        load_preset("client", {"caps.cap": 3})


# ---------------------------------------------------------------- working days

CN = load_holidays(PRESETS_DIR / "holidays_cn.toml")


@pytest.mark.parametrize("day, works", [
    ("2026-02-13", True),   # Friday before the Spring Festival
    ("2026-02-14", True),   # Saturday, worked instead (调休)
    ("2026-02-15", False), ("2026-02-17", False),  # 春节, New Year's Day on the 17th
    ("2026-02-23", False),  # Monday, last day off
    ("2026-02-24", True),
    ("2026-02-28", True),   # Saturday, worked instead
    ("2026-03-01", False),  # a plain Sunday
    ("2026-01-04", True), ("2026-05-09", True), ("2026-10-08", True), ("2026-10-10", True),
    ("2026-10-07", False), ("2026-09-25", False),
])
def test_the_2026_calendar_around_the_spring_festival(day, works):
    assert is_working_day(date.fromisoformat(day), CN) is works
    assert working(date.fromisoformat(day), True) is works  # the test's own reading agrees


def test_working_days_across_the_spring_festival():
    assert add_working_days(date(2026, 2, 13), 1, CN) == date(2026, 2, 14)
    assert add_working_days(date(2026, 2, 14), 1, CN) == date(2026, 2, 24)
    assert add_working_days(date(2026, 2, 12), 6, CN) == date(2026, 2, 27)
    assert add_working_days(date(2026, 2, 24), -1, CN) == date(2026, 2, 14)
    assert add_working_days(date(2026, 2, 15), 0, CN) == date(2026, 2, 15)
    assert working_days_between(date(2026, 2, 12), date(2026, 2, 27), CN) == 6
    assert add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 16)  # weekends only
    assert CN.covers(2026) and not CN.covers(2027)
    assert CN.holiday_on(date(2026, 2, 14)).name.startswith("春节")


@given(st.dates(date(2025, 12, 1), date(2027, 1, 31)), st.integers(-15, 15))
def test_add_working_days_property(day, count):
    found = add_working_days(day, count, CN)
    assert count == 0 and found == day or working(found, True)
    low, high = (day, found) if count >= 0 else (found - DAY, day - DAY)  # (day, found] or [found, day)
    assert working_days_between(low, high, CN) == abs(count)
    assert sum(working(low + n * DAY, True) for n in range(1, (high - low).days + 1)) == abs(count)


@pytest.mark.parametrize("text, says", [
    ("[[holidays]]\nname = \"x\"\nfirst = \"2026-01-01\"\nlast = 2026-01-02\n", "first: give a date as YYYY-MM-DD"),
    ("[[holidays]]\nname = \"x\"\nfirst = 2026-01-03\nlast = 2026-01-02\n", "last (2026-01-02) is before first"),
    ("[[holidays]]\nname = \"x\"\nfirst = 2026-01-01\nlast = 2026-01-02\nwork = [2026-01-02]\n",
     "both a day off and a make-up working day"),
    ("weekend = [\"sunday\", \"funday\"]\n", "weekend: give a list of weekday names"),
    ("[[holidays]]\nname = \"x\"\nfirst = 2026-01-01\nlast = 2026-01-01\nwhy = 1\n", "unknown key 'why'"),
])
def test_a_bad_holiday_file_names_the_file_and_the_entry(tmp_path, text, says):
    path = tmp_path / "h.toml"
    path.write_text(text)
    with pytest.raises(CalendarError) as error:
        load_holidays(path)
    assert str(path) in str(error.value) and says in str(error.value)


# ---------------------------------------------------------------- the calling window, to the second

EDGES = [("07:59:59", False, False), ("08:00:00", True, True), ("20:59:59", True, True),
         ("21:00:00", False, True), ("21:59:59", False, True), ("22:00:00", False, False)]


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("tz", [SH, NY])
@pytest.mark.parametrize("clock, client_us, national", EDGES)
def test_window_edges_in_two_zones(name, tz, clock, client_us, national):
    now = wall(f"2026-03-09 {clock}", tz)  # New York's first day of EDT
    assert f"{local_now(now, tz):%H:%M:%S}" == clock
    inside = national if name == "cn_national" else client_us
    assert in_window(now, tz, PRESETS[name]) is inside
    decision = decide(case(MOBILE, tz=tz), [], now, None, PRESETS[name])
    assert decision.allowed is inside
    assert rules_of(decision) == ([] if inside else [("calling_window", None)])


# ---------------------------------------------------------------- US: 7 in 7, and 7 days after a conversation

DEBTOR = PhoneView(1, PhoneRole.OWN_MOBILE, "2125550100")


def test_seven_calls_in_seven_days_to_the_second():
    calls = [dial(DEBTOR, f"2026-04-0{d} 10:00", NY) for d in range(1, 8)]
    one = case(DEBTOR, tz=NY)
    assert decide(one, calls[:6], wall("2026-04-07 18:00", NY), None, US).allowed
    refused = decide(one, calls, wall("2026-04-08 09:59:59", NY), None, US)
    assert rules_of(refused) == [("rolling_cap", None)]
    assert refused.next_at == refused.blocks[0].until == wall("2026-04-08 10:00", NY)
    assert decide(one, calls, wall("2026-04-08 10:00", NY), None, US).allowed


def test_seven_days_are_seven_times_24_hours_across_the_clock_change():
    calls = [dial(DEBTOR, f"2026-03-0{d} 10:00", NY) for d in range(1, 8)]
    refused = decide(case(DEBTOR, tz=NY), calls, wall("2026-03-08 10:30", NY), None, US)
    assert refused.next_at == wall("2026-03-08 11:00", NY)  # 10:00 EST + 168 h is 11:00 EDT
    assert "the count falls below it at 2026-03-08 11:00 EDT" in refused.blocks[0].message


def test_no_call_within_seven_days_after_a_conversation():
    spoke = [dial(DEBTOR, "2026-04-01 10:00", NY, answered=True, conversation=True)]
    refused = decide(case(DEBTOR, tz=NY), spoke, wall("2026-04-08 09:59:59", NY), None, US)
    assert rules_of(refused) == [("after_conversation", None)] and refused.next_at == wall("2026-04-08 10:00", NY)
    assert decide(case(DEBTOR, tz=NY), spoke, wall("2026-04-08 10:00", NY), None, US).allowed
    voicemail = [dial(DEBTOR, "2026-04-01 10:00", NY, answered=True, conversation=False)]
    assert decide(case(DEBTOR, tz=NY), voicemail, wall("2026-04-02 10:00", NY), None, US).allowed
    older = case(DEBTOR, tz=NY, last_conversation_at=wall("2026-04-01 10:00", NY))  # an inbound call
    assert rules_of(decide(older, [], wall("2026-04-02 10:00", NY), None, US)) == [("after_conversation", None)]


def test_a_call_the_consumer_asked_for_is_not_counted_and_may_come_sooner():
    spoke = [dial(DEBTOR, "2026-04-01 10:00", NY, answered=True, conversation=True)]
    asked = AppointmentView(wall("2026-04-03 21:30", NY), "debtor", "call me Friday after 9:30 pm")
    one = case(DEBTOR, tz=NY, appointments=(asked,))
    kept = decide(one, spoke, wall("2026-04-03 21:27", NY), None, US)
    assert kept.allowed and kept.appointment == asked
    calls = [dial(DEBTOR, f"2026-04-0{d} 10:00", NY, appointment=d == 7) for d in range(1, 8)]
    assert decide(case(DEBTOR, tz=NY), calls, wall("2026-04-08 09:00", NY), None, US).allowed


# ---------------------------------------------------------------- appointments

LATE = AppointmentView(wall("2026-11-25 21:30"), "debtor", "晚上九点半以后再打")


@pytest.mark.parametrize("clock, allowed", [("21:24:59", False), ("21:25:00", True), ("21:34:59", True),
                                            ("21:35:00", False)])
def test_an_appointment_the_debtor_asked_for_opens_five_minutes_either_side(clock, allowed):
    decision = decide(case(MOBILE, appointments=(LATE,)), [], wall(f"2026-11-25 {clock}"), None, CLIENT)
    assert decision.allowed is allowed and (decision.appointment == LATE) is allowed
    if allowed:
        assert "record this dial as an appointment call" in decision.explain()


def test_an_appointment_is_kept_once_and_only_when_the_debtor_asked():
    kept = [dial(MOBILE, "2026-11-25 21:26")]
    assert not decide(case(MOBILE, appointments=(LATE,)), kept, wall("2026-11-25 21:31"), None, CLIENT).allowed
    agents = replace(LATE, by="agent")
    refused = decide(case(MOBILE, appointments=(agents,)), [], wall("2026-11-25 21:30"), None, CLIENT)
    assert rules_of(refused) == [("calling_window", None)]
    text = why(case(MOBILE, appointments=(agents,)), [], wall("2026-11-25 21:00"), None, CLIENT)
    assert "the rules lift nothing for it (only for an appointment asked for by the debtor)" in text


def test_an_appointment_never_lifts_a_stop_status_a_do_not_call_number_or_a_kept_cap():
    assert not decide(case(MOBILE, status="dispute", appointments=(LATE,)), [], wall("2026-11-25 21:30"), None,
                      CLIENT).allowed
    silenced = replace(MOBILE, do_not_call=True)
    assert not decide(case(silenced, appointments=(LATE,)), [], wall("2026-11-25 21:30"), None, CLIENT).allowed
    reached = [dial(MOBILE, "2026-11-25 10:00", answered=True)]
    refused = decide(case(MOBILE, appointments=(LATE,)), reached, wall("2026-11-25 21:30"), None, CLIENT)
    assert not refused.allowed and ("connected_today", None) in rules_of(refused)


def test_an_appointment_on_a_named_number_and_late_at_night_under_the_national_profile():
    home_at_2230 = AppointmentView(wall("2026-11-25 22:30"), "debtor", "十点半打家里", HOME.id)
    decision = decide(case(MOBILE, HOME, appointments=(home_at_2230,)), [], wall("2026-11-25 22:28"), None, NATIONAL)
    assert decision.allowed and decision.phone == HOME and decision.appointment == home_at_2230
    before = decide(case(MOBILE, HOME, appointments=(home_at_2230,)), [], wall("2026-11-25 22:00"), None, NATIONAL)
    assert before.next_at == wall("2026-11-25 22:25")


def test_hardship_allows_only_appointments():
    hard = case(MOBILE, status="hardship", appointments=(replace(LATE, at=wall("2026-11-26 15:00")),))
    refused = decide(hard, [], wall("2026-11-25 10:00"), None, CLIENT)
    assert rules_of(refused) == [("appointments_only", None)] and refused.next_at == wall("2026-11-26 14:55")
    assert decide(hard, [], wall("2026-11-26 14:55"), None, CLIENT).appointment is not None
    assert decide(replace(hard, appointments=()), [], wall("2026-11-25 10:00"), None, CLIENT).next_at is None


# ---------------------------------------------------------------- contacts (third parties)

def test_a_contact_only_after_three_failures_in_a_row():
    two = [dial(MOBILE, "2026-11-25 09:00"), dial(HOME, "2026-11-25 09:01")]
    three = [*two, dial(MOBILE, "2026-11-25 12:00")]
    assert not decide(case(), two, wall("2026-11-25 12:05"), None, CLIENT, phone_id=RELATIVE.id).allowed
    at_1205 = decide(case(), three, wall("2026-11-25 12:05"), None, CLIENT)
    assert at_1205.phone == HOME and not at_1205.third_party  # the debtor's numbers first
    spent = [*three, dial(HOME, "2026-11-25 12:06")]
    contact = decide(case(), spent, wall("2026-11-25 12:10"), None, CLIENT)
    assert contact.allowed and contact.phone == RELATIVE and contact.third_party
    assert "never mention the debt" in contact.explain()


def test_a_conversation_with_the_debtor_starts_the_count_again():
    history = [dial(MOBILE, "2026-11-24 09:00"), dial(MOBILE, "2026-11-24 12:00"), dial(MOBILE, "2026-11-24 17:00"),
               dial(HOME, "2026-11-24 18:00", answered=True)]
    refused = decide(case(), history, wall("2026-11-25 09:00"), None, CLIENT, phone_id=RELATIVE.id)
    assert rules_of(refused) == [("contact_not_yet", RELATIVE.id)] and refused.next_at is None


def test_a_contact_when_every_debtor_number_is_invalid_but_not_when_they_are_do_not_call():
    dead = (replace(MOBILE, valid=False), replace(HOME, valid=False), RELATIVE)
    assert decide(case(*dead), [], wall("2026-11-25 09:00"), None, CLIENT).phone == RELATIVE
    silenced = (replace(MOBILE, do_not_call=True), RELATIVE)
    refused = decide(case(*silenced), [], wall("2026-11-25 09:00"), None, CLIENT)
    assert rules_of(refused) == [("no_dialable_number", None)]


def test_a_contact_spoken_to_rests():
    dead = (replace(MOBILE, valid=False), RELATIVE)
    spoken = [dial(RELATIVE, "2026-11-23 10:00", answered=True)]
    refused = decide(case(*dead), spoken, wall("2026-11-25 10:00"), None, CLIENT)
    assert rules_of(refused) == [("invalid_number", 1), ("contact_rest", 4)]
    assert refused.next_at == wall("2026-11-26 10:00")
    long_ago = (replace(MOBILE, valid=False), replace(RELATIVE, last_conversation_at=wall("2026-01-02 10:00", NY)))
    assert not decide(case(*long_ago, tz=NY), [], wall("2026-11-25 10:00", NY), None, US).allowed


# ---------------------------------------------------------------- statuses and tracing

@pytest.mark.parametrize("status, says", [
    ("client_stop", "the client stopped collection (停催)"),
    ("dispute", "paused until the disputed debt is verified"),
    ("fraud_claim", "paused until the fraud claim is verified"),
    ("deceased", "leaves the queue"),
    ("complaint", "supervisor's review"),
])
def test_stop_and_pause_statuses(status, says):
    refused = decide(case(status=status), [], wall("2026-11-25 10:00"), None, CLIENT)
    assert rules_of(refused) == [("case_status", None)] and says in refused.blocks[0].message


def test_lost_contact_is_traced_once_every_six_working_days_each_number_once():
    lost = case(MOBILE, HOME, status="lost_contact")
    traced = [dial(MOBILE, "2026-02-12 10:00"), dial(HOME, "2026-02-12 10:01")]
    refused = decide(lost, traced, wall("2026-02-26 10:00"), None, CLIENT)
    assert rules_of(refused) == [("tracing_interval", None)]
    assert refused.next_at == wall("2026-02-27 08:00")  # six working days, the Spring Festival between
    today = [dial(MOBILE, "2026-02-27 08:00")]
    again = decide(lost, [*traced, *today], wall("2026-02-27 12:00"), None, CLIENT)
    assert again.phone == HOME and rules_of(again) == [("number_daily_cap", MOBILE.id)]


# ---------------------------------------------------------------- why: one example of each kind of block

WHY = [
    ("calling_window", CLIENT, case(MOBILE), [], "2026-11-25 21:00:00",
     "case 17 may not be dialled now (2026-11-25 21:00:00 CST, Asia/Shanghai); next possible at 2026-11-26 08:00 CST"),
    ("case_status", CLIENT, case(MOBILE, status="dispute"), [], "2026-11-25 10:00:00", "nothing will allow a dial"),
    ("appointments_only", CLIENT, case(MOBILE, status="hardship"), [], "2026-11-25 10:00:00", "except at an appointment"),
    ("tracing_interval", CLIENT, case(MOBILE, status="lost_contact"), [dial(MOBILE, "2026-02-12 10:00")],
     "2026-02-13 10:00:00", "next on 2026-02-27 (Friday)"),
    ("connected_today", CLIENT, case(MOBILE, HOME), [dial(MOBILE, "2026-11-25 09:05", answered=True)],
     "2026-11-25 13:00:00", "reached once today (at 09:05) and the limit is 1 a day"),
    ("connected_today", NATIONAL, case(MOBILE, HOME), [dial(MOBILE, f"2026-11-25 {h:02d}:05", answered=True)
                                                       for h in (9, 10, 11)], "2026-11-25 13:00:00", "limit is 3 a day"),
    ("rolling_cap", US, case(DEBTOR, tz=NY), [dial(DEBTOR, f"2026-04-0{d} 10:00", NY) for d in range(1, 8)],
     "2026-04-07 18:00:00", "the limit is 7 in any 7 days"),
    ("after_conversation", US, case(DEBTOR, tz=NY), [dial(DEBTOR, "2026-04-01 10:00", NY, answered=True)],
     "2026-04-03 10:00:00", "no call for 7 days after a conversation"),
    ("no_dialable_number", CLIENT, case(replace(MOBILE, valid=False), replace(HOME, do_not_call=True)), [],
     "2026-11-25 10:00:00", "(phone 1) is marked invalid; home 075588888888 (phone 2) is marked do-not-call"),
    ("number_daily_cap", NATIONAL, case(MOBILE), [dial(MOBILE, f"2026-11-25 {h:02d}:00") for h in range(9, 15)],
     "2026-11-25 15:00:00", "dialled 6 times today"),
    ("slot_used", CLIENT, case(MOBILE), [dial(MOBILE, "2026-11-25 09:00")], "2026-11-25 10:30:00",
     "already dialled in the morning slot 08:00–12:00 (at 09:00)"),
    ("retry_after_20", CLIENT, case(MOBILE), [dial(MOBILE, "2026-11-25 09:00")], "2026-11-25 20:00:00",
     "a retry must start before 20:00"),
    ("contact_not_yet", CLIENT, case(MOBILE, RELATIVE), [dial(MOBILE, "2026-11-25 09:00")], "2026-11-25 10:30:00",
     "contacts are called only after 3 failures in a row to reach the debtor (1 so far)"),
    ("contact_rest", CLIENT, case(replace(MOBILE, valid=False), RELATIVE),
     [dial(RELATIVE, "2026-11-24 10:00", answered=True)], "2026-11-25 10:00:00", "at most once in 3 days"),
]


@pytest.mark.parametrize("rule, rules, the_case, history, clock, says", WHY, ids=[row[0] for row in WHY])
def test_why_names_the_rule_and_when_it_lifts(rule, rules, the_case, history, clock, says):
    text = why(the_case, history, wall(clock, the_case.timezone), None, rules)
    assert f"  - {rule}: " in text and says in text and text.endswith(f"  rules: {rules.name}")
    assert "may not be dialled now" in text.splitlines()[0]


def test_why_for_one_number():
    history = [dial(MOBILE, "2026-11-25 09:00")]
    text = why(case(MOBILE, HOME), history, wall("2026-11-25 10:30"), None, CLIENT, number="+86 138-0013-8000")
    assert text.splitlines()[0] == ("case 17, own mobile 13800138000 (phone 1), may not be dialled now "
                                    "(2026-11-25 10:30:00 CST, Asia/Shanghai); next possible at 2026-11-25 12:00 CST")
    home = why(case(MOBILE, HOME), history, wall("2026-11-25 10:30"), None, CLIENT, number=2)
    assert home.splitlines()[0].startswith("case 17, home 075588888888 (phone 2), may be dialled now")
    with pytest.raises(ValueError, match="case 17 has no number '110'"):
        why(case(MOBILE), [], wall("2026-11-25 10:30"), None, CLIENT, number="110")


# ---------------------------------------------------------------- follow-ups

def follow(the_case, history=(), promises=None, at="2026-03-02 10:00", rules=CLIENT):
    return next_follow_up(the_case, history, promises, wall(at), rules)


def test_follow_up_by_status():
    promise = PromiseView(date(2026, 3, 10), Decimal("1500.00"))
    before = follow(case(status="promise_to_pay", promises=(promise,)), [dial(MOBILE, "2026-03-01 10:00")])
    assert (before.kind, before.due_at, before.deadline) == ("promise", wall("2026-03-09 08:00"), wall("2026-03-09 21:00"))
    after = follow(case(status="promise_to_pay"), [dial(MOBILE, "2026-03-09 10:00")], [promise], "2026-03-09 11:00")
    assert (after.kind, after.due_at) == ("promise_check", wall("2026-03-11 08:00"))
    broken = [PromiseView(date(2026, 2, 1), Decimal(1), "broken")] * 2
    assert follow(case(), [dial(MOBILE, "2026-03-02 09:00")], broken).due_at == wall("2026-03-04 08:00")
    lost = follow(case(status="lost_contact"), [dial(MOBILE, "2026-02-12 10:00")])
    assert (lost.due_at, lost.deadline) == (wall("2026-02-27 08:00"), wall("2026-02-28 21:00"))  # a worked Saturday
    urgent = follow(case(urgent=True), [dial(MOBILE, "2026-03-02 09:00")])
    assert (urgent.due_at, urgent.deadline) == (wall("2026-03-03 08:00"), wall("2026-03-05 21:00"))
    assert follow(case(urgent=True), [dial(MOBILE, "2026-03-01 09:00")]).due_at == wall("2026-03-02 08:00")
    assert follow(case(evening=True), [dial(MOBILE, "2026-03-02 09:00")]).due_at == wall("2026-03-02 17:00")
    assert follow(case(evening=True), [dial(MOBILE, "2026-03-02 17:30")], at="2026-03-02 18:00").due_at == \
        wall("2026-03-03 17:00")
    new = follow(case(status="new", assigned_at=wall("2026-03-02 09:00")))
    assert (new.kind, new.due_at, new.deadline) == ("new_case", wall("2026-03-02 09:00"), wall("2026-03-04 09:00"))
    daily = follow(case(), [dial(MOBILE, "2026-03-02 09:00")])
    assert (daily.kind, daily.due_at) == ("daily", wall("2026-03-03 08:00")) and not daily.due(wall("2026-03-02 10:00"))
    assert follow(case(status="dispute")).due_at is None and follow(case(status="hardship")).kind == "appointments_only"


def test_reminders_three_days_and_one_day_before_the_due_date_and_appointments_first():
    owed = case(due_date=date(2026, 3, 10))
    first = follow(owed, [dial(MOBILE, "2026-03-06 09:00")], at="2026-03-06 10:00")
    assert (first.kind, first.due_at) == ("reminder", wall("2026-03-07 08:00"))
    assert "reminder 3 days before the due date 2026-03-10" in first.reason
    third = follow(owed, [dial(MOBILE, "2026-03-07 09:00")], at="2026-03-07 10:00")
    assert (third.kind, third.due_at) == ("daily", wall("2026-03-08 08:00"))
    assert follow(owed, [dial(MOBILE, "2026-03-08 09:00")], at="2026-03-08 10:00").due_at == wall("2026-03-09 08:00")
    asked = case(appointments=(AppointmentView(wall("2026-03-02 15:30"), "debtor", "下午三点半"),))
    history = [dial(MOBILE, "2026-03-02 09:00")]
    assert follow(asked, history).kind == "appointment" and follow(asked, history).due_at == wall("2026-03-02 15:30")


def test_a_new_queue_is_covered_within_three_working_days():
    friday = wall("2026-02-13 10:00")
    cases = [replace(case(replace(MOBILE, id=10 * n)), id=n, assigned_at=friday) for n in (1, 2, 3)]
    called = [AttemptView(10, friday, False)]  # case 1's number
    coverage = coverage_deadline(cases, friday, called, CLIENT)
    assert coverage.deadline == wall("2026-02-25 21:00")  # the 14th (调休), the 24th, the 25th
    assert coverage.uncovered == (2, 3) and coverage.working_days_left == 4 and coverage.per_working_day == 1
    assert coverage_deadline(cases, friday, [AttemptView(10 * n, friday, False) for n in (1, 2, 3)]).deadline is None


# ---------------------------------------------------------------- agent targets

def test_targets_alert_from_mid_day():
    morning = targets_status(30, 5, time(11), time(9), time(18))
    assert not morning.on_track and morning.expected_by_now == (44, 11) and morning.alert_text == ""
    noon = targets_status(80, 20, time(13, 30), time(9), time(18), agent="agent 6001")
    assert noon.expected_by_now == (100, 25) and noon.behind_by == (20, 5)
    assert noon.alert_text.startswith("agent 6001 is behind at 13:30 (50% of the shift 09:00-18:00)")
    assert "the rest of the day needs 27 dials an hour, 7 effective calls an hour" in noon.alert_text
    assert targets_status(120, 30, time(13, 30), time(9), time(18)).on_track


@given(st.integers(0, 50), st.floats(0.01, 1.0), st.integers(1, 6))
def test_queue_size_makes_the_targets_reachable(agents, rate, tries):
    cases = queue_size_needed(agents, rate, (200, 50), dials_per_case=tries)
    reached = 1 - (1 - rate) ** tries       # effective calls a case yields in a day
    dials = sum((1 - rate) ** n for n in range(tries))  # dials a case takes in a day
    assert cases >= 80 * agents
    assert cases * dials >= 200 * agents - 1e-6 and cases * reached >= 50 * agents - 1e-6
    assert cases == 0 or (cases - 1) * min(dials / 200, reached / 50, 1 / 80) < agents


def test_queue_size_worked_example():
    assert queue_size_needed(10, 0.25) == 865 and queue_size_needed(10, 0.1) == 1846


# ---------------------------------------------------------------- properties, for each preset

ZONES = [SH, URUMQI, NY, LA, "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago"]
EDGE_TIMES = [time(h, m, s) for h, m, s in [(7, 59, 59), (8, 0, 0), (11, 59, 59), (12, 0, 0), (16, 59, 59),
                                              (17, 0, 0), (19, 59, 59), (20, 0, 0), (20, 59, 59), (21, 0, 0),
                                              (21, 59, 59), (22, 0, 0), (0, 0, 0)]]


@st.composite
def situations(draw):
    zone = draw(st.sampled_from(ZONES))
    day = draw(st.dates(date(2026, 1, 10), date(2026, 12, 20)))
    clock = draw(st.sampled_from(EDGE_TIMES) | st.times())
    now = datetime.combine(day, clock).replace(tzinfo=ZoneInfo(zone), fold=draw(st.integers(0, 1))).astimezone(UTC)
    roles = draw(st.lists(st.sampled_from([PhoneRole.OWN_MOBILE] * 3 + [PhoneRole.HOME, PhoneRole.WORK, CONTACT,
                                                                         CONTACT]), min_size=1, max_size=4))
    phones = tuple(PhoneView(n + 1, role, f"1380013800{n}", draw(st.sampled_from([True] * 5 + [False])),
                             draw(st.sampled_from([False] * 6 + [True]))) for n, role in enumerate(roles))
    status = draw(st.sampled_from([CaseStatus.ACTIVE] * 12 + list(CaseStatus)))
    history = []
    for back in draw(st.lists(st.integers(0, 9 * 86400) | st.integers(0, 14 * 3600), max_size=14)):
        answered = draw(st.sampled_from([False] * 3 + [True]))
        history.append(AttemptView(draw(st.sampled_from([p.id for p in phones])), now - timedelta(seconds=back),
                                   answered, draw(st.sampled_from([None, answered, False])),
                                   draw(st.sampled_from([False] * 5 + [True]))))
    appointments = tuple(AppointmentView(now + timedelta(seconds=draw(st.integers(-1200, 1200) | st.integers(-86400, 86400))),
                                         draw(st.sampled_from(["debtor", "debtor", "agent", "third_party"])), "再打",
                                         draw(st.sampled_from([None, None, *[p.id for p in phones]])))
                         for _ in range(draw(st.integers(0, 2))))
    spoke = draw(st.sampled_from([None, None, now - timedelta(days=3), now - timedelta(days=8)]))
    the_case = CaseView(7, status, Decimal("1000.00"), 60, phones, zone, appointments=appointments,
                        last_conversation_at=spoke)
    return the_case, tuple(history), now


PROPERTY = settings(max_examples=250, deadline=None)


@pytest.mark.parametrize("name", PRESET_NAMES)
@PROPERTY
@given(situation=situations())
def test_decide_is_the_rules_read_independently(name, situation):
    """Allowed: exactly the dial `expected_dial` finds (so never outside the window but for an
    appointment, never over a cap, never a blocked status, never a contact too early).
    Refused: every number breaks a rule; `next_at` is the first moment allowed."""
    the_case, history, now = situation
    rules, facts = PRESETS[name], FACTS[name]
    decision = decide(the_case, history, now, None, rules)
    expected = expected_dial(facts, the_case, history, now)
    assert (decision.phone, decision.appointment is not None) == (expected or (None, False))
    if decision.allowed:
        assert not breaches(facts, the_case, history, now, decision.phone, decision.appointment is not None)
        assert decision.third_party is (decision.phone.role is CONTACT)
        return
    assert all(block.message and (block.until is None or block.until > now) for block in decision.blocks)
    if decision.next_at is not None:
        assert decision.next_at > now and decide(the_case, history, decision.next_at, None, rules).allowed
        just_before = decision.next_at - timedelta(seconds=1)
        assert just_before <= now or expected_dial(facts, the_case, history, just_before) is None


@pytest.mark.parametrize("name", PRESET_NAMES)
@settings(max_examples=120, deadline=None)
@given(situation=situations(), share=st.floats(0, 1))
def test_a_block_holds_until_it_says(name, situation, share):
    the_case, history, now = situation
    rules = PRESETS[name]
    decision = decide(the_case, history, now, None, rules)
    for block in decision.blocks:
        if block.until is None or decision.allowed:
            continue
        moment = now + (block.until - now) * share
        assume(moment < block.until)
        later = decide(the_case, history, moment, None, rules, phone_id=block.phone_id)
        assert later.appointment is not None or (block.rule, block.phone_id) in rules_of(later)


# ---------------------------------------------------------------- a simulated day for each preset

@dataclass(frozen=True)
class Dial:
    """One line of the dial log: the case as it stood, the dial, and what the decision said."""

    case: CaseView
    attempt: AttemptView
    third_party: bool


def world(name: str) -> tuple[date, list[CaseView], list[AttemptView]]:
    """A day, a queue of cases in two zones and their earlier dials, chosen so that every rule
    has something to do."""
    day, zones = (date(2026, 3, 8), (NY, LA)) if name == "us_fdcpa" else (date(2026, 2, 24), (SH, URUMQI))
    late = "22:30" if name == "cn_national" else "21:30"

    def at(days_back: int, clock: str, zone: str) -> datetime:
        return wall(f"{day - timedelta(days=days_back)} {clock}", zone)

    def phones(base: int, *specs: tuple[PhoneRole, dict]) -> tuple[PhoneView, ...]:
        return tuple(PhoneView(base + n, role, f"1{base + n:010d}", **flags) for n, (role, flags) in enumerate(specs))

    own, home, work, other = ((role, {}) for role in (PhoneRole.OWN_MOBILE, PhoneRole.HOME, PhoneRole.WORK, CONTACT))
    cases, prior = [], []
    for n in range(14):
        zone = zones[n % 2]
        base = 10 * (n + 1)
        specs = [(own, home, work), (own, other, other), ((PhoneRole.OWN_MOBILE, {"valid": False}), other),
                 (own, home), (own, home), (own, home), (own,), (own,), ((PhoneRole.OWN_MOBILE, {"do_not_call": True}),
                                                                        home, other), (own,), (own, home), (own,),
                 (own, work, other), (own, home)][n]
        status = {3: "hardship", 4: "lost_contact", 5: "lost_contact", 6: "dispute", 7: "client_stop",
                  9: "new"}.get(n, "active")
        numbers = phones(base, *specs)
        appointments = ()
        if n in (3, 10):
            appointments = (AppointmentView(wall(f"{day} {late}", zone), "debtor", "晚上再打 / call me late"),
                            AppointmentView(wall(f"{day} 07:30", zone), "agent", "agent's idea"))
        if n == 9:
            appointments = (AppointmentView(wall(f"{day} 07:45", zone), "debtor", "早上七点四十五", base),)
        cases.append(CaseView(n + 1, CaseStatus(status), Decimal(10000 - 500 * n), 30 + n, numbers, zone,
                              appointments=appointments, assigned_at=at(1, "09:00", zone)))
        if n == 4:
            prior.append(AttemptView(base, at(3, "10:00", zone), False))  # traced 3 days ago
        if n == 5:
            prior.append(AttemptView(base, at(19, "10:00", zone), False))  # before the Spring Festival
        if n == 11:
            prior += [AttemptView(base, at(d, "16:00", zone), False) for d in range(1, 7)]  # 6 calls in 6 days
        if n == 12:
            prior.append(AttemptView(base, at(7, "14:00", zone), True, True))  # a conversation a week ago
    return day, cases, prior


def simulate(name: str, seed: int) -> tuple[list[Dial], list[AttemptView], set[str]]:
    """Every minute of the day in both zones, dial whatever `decide` allows, in queue order; a
    seeded network answers; displeasure marks the number do-not-call, a dispute the case."""
    rules, rng = PRESETS[name], random.Random(seed)
    day, cases, prior = world(name)
    cases = {c.id: c for c in cases}
    history = {c: [a for a in prior if a.phone_id in {p.id for p in cases[c].phones}] for c in cases}
    busy_until: dict[int, datetime] = {}
    log, refusals = [], set()
    start = min(wall(f"{day} 00:00", c.timezone) for c in cases.values())
    end = max(wall(f"{day + DAY} 00:00", c.timezone) for c in cases.values())
    now = start
    while now < end:
        for case_id in sorted(cases):
            the_case = cases[case_id]
            if busy_until.get(case_id, now) > now:
                continue
            decision = decide(the_case, history[case_id], now, None, rules)
            refusals.update(block.rule for block in decision.blocks if not decision.allowed)
            if not decision.allowed:
                continue
            answered = rng.random() < 0.35
            spoke = answered and rng.random() < 0.7
            attempt = AttemptView(decision.phone.id, now, answered, spoke, decision.appointment is not None)
            log.append(Dial(the_case, attempt, decision.third_party))
            history[case_id].append(attempt)
            busy_until[case_id] = now + rng.randint(1, 4) * MINUTE
            phone = decision.phone
            if answered and rng.random() < 0.05:
                phone = replace(phone, do_not_call=True)  # 别再打了
            elif not answered and rng.random() < 0.04:
                phone = replace(phone, valid=False)       # the network says the number does not exist
            status = CaseStatus.DISPUTE if spoke and rng.random() < 0.03 else the_case.status
            numbers = tuple(phone if p.id == phone.id else p for p in the_case.phones)
            cases[case_id] = replace(the_case, phones=numbers, status=status)
        now += MINUTE
    return log, prior, refusals


@pytest.mark.parametrize("name, seed", [("client", 1), ("cn_national", 2), ("us_fdcpa", 3)])
def test_a_simulated_day_keeps_every_rule(name, seed):
    log, prior, refusals = simulate(name, seed)
    facts = FACTS[name]
    for index, line in enumerate(log):
        mine = {p.id for p in line.case.phones}
        before = [a for a in prior if a.phone_id in mine] + [d.attempt for d in log[:index] if d.attempt.phone_id in mine]
        phone = next(p for p in line.case.phones if p.id == line.attempt.phone_id)
        broken = breaches(facts, line.case, before, line.attempt.at, phone, line.attempt.appointment)
        assert not broken, f"dial {index} ({line.attempt}) of case {line.case.id} breaks {broken}"
        assert line.third_party is (phone.role is CONTACT)
    # The day exercised the rules: dials outside the window for appointments only, contacts, caps.
    outside = [d for d in log if not facts.start <= seconds(d.attempt.at.astimezone(ZoneInfo(d.case.timezone))) < facts.end]
    assert outside and all(d.attempt.appointment for d in outside)
    assert any(d.third_party for d in log)
    assert {d.case.id for d in log}.isdisjoint({7, 8})  # dispute, client stop
    expected = {"calling_window", "case_status", "appointments_only", "tracing_interval", "connected_today"}
    expected |= {"rolling_cap", "after_conversation"} if name == "us_fdcpa" else set()
    expected |= {"slot_used"} if name == "client" else set()
    assert expected <= refusals, f"never refused for {expected - refusals}"
    assert len(log) >= 20
