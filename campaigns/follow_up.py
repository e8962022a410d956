"""Follow-up schedules: when a case should next be called and why, from its status and flags
(the client's operating manual), and by when a new queue must be covered.

`decide` (campaigns/policy.py) says whether a dial *may* happen now; `next_follow_up` says when
one *should*. The engine offers a case when its follow-up is due (`FollowUp.due(now)`) and
the policy allows the dial. Pure like the policy: `now` is a parameter, days are the debtor's
local days, working days come from `rules.calendar`, and moments are aware UTC. A due moment in
the past means overdue (it is kept, not moved, so that a report can say since when).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from functools import cached_property
from zoneinfo import ZoneInfo

from .policy import (
    RULES,
    STATUS_REASONS,
    AttemptView,
    CaseView,
    PromiseView,
    Rules,
    after,
    local_now,
    wall_instant,
)
from .workdays import add_working_days, is_working_day, working_days_between

#: The kinds of follow-up, by stable id.
KINDS = {
    "appointment": "an appointment agreed on a call",
    "reminder": "a reminder before the instalment's due date (3 and 1 days before)",
    "promise": "an open promise to pay: the day before its due date",
    "promise_check": "an open promise whose due date has passed: the day after",
    "broken_promises": "two or more broken promises: at least 3 calls a week",
    "tracing": "lost contact: one tracing day every 6-7 working days",
    "urgent": "urgent: the same day, then within 1-3 working days",
    "evening": "night follow-up: in the evening slot",
    "new_case": "a new case: first call within 2 days",
    "daily": "any other collectable case: once a day",
    "retry": "a follow-up day begun without a conversation: the no-answer schedule tries again",
    "stopped": "a stop or pause status: no call",
    "appointments_only": "hardship: no call but appointments",
}


@dataclass(frozen=True)
class FollowUp:
    """When the case should next be called (aware UTC; None: no call is to be made), why, a
    stable `kind` (`KINDS`) and, when the rule gives one, the latest moment it may happen."""

    due_at: datetime | None
    reason: str
    kind: str
    deadline: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.due_at is not None and self.due_at <= now


@dataclass(frozen=True)
class _Plan:
    case: CaseView
    history: tuple[AttemptView, ...]
    promises: tuple[PromiseView, ...]
    now: datetime
    zone: tzinfo
    rules: Rules

    @cached_property
    def today(self) -> date:
        return local_now(self.now, self.zone).date()

    @cached_property
    def last_day(self) -> date | None:
        """The local day of the case's latest dial, None if it was never dialled."""
        return max((attempt.at.astimezone(self.zone).date() for attempt in self.history), default=None)

    def opening(self, day: date) -> datetime:
        return wall_instant(day, self.rules.window_start, self.zone)

    def closing(self, day: date) -> datetime:
        return wall_instant(day, self.rules.window_end, self.zone)

    def dialled_since(self, moment: datetime) -> bool:
        return any(attempt.at >= moment for attempt in self.history)

    def working(self, day: date, count: int) -> date:
        return add_working_days(day, count, self.rules.calendar)

    def on(self, day: date, reason: str, kind: str) -> FollowUp:
        """A follow-up on a local day: from the window's opening to its close."""
        return FollowUp(self.opening(day), reason, kind, self.closing(day))


def next_follow_up(case: CaseView, history: Iterable[AttemptView], promises: Iterable[PromiseView] | None,
                   now: datetime, rules: Rules = RULES, campaign_tz: str | None = None) -> FollowUp:
    """The case's next follow-up: the earliest of its appointments, its due-date reminders and
    its status schedule (an open promise, two broken promises, lost contact, urgent, evening,
    new; else once a day). `history` is the case's dials (the latest is what counts);
    `promises` its promises to pay (None: `case.promises`)."""
    zone = ZoneInfo(case.timezone or campaign_tz or rules.default_timezone)
    plan = _Plan(case, tuple(history), tuple(case.promises if promises is None else promises), now, zone, rules)
    if case.status in rules.blocking_statuses:
        reason = STATUS_REASONS.get(case.status, "it stops all dialling")
        return FollowUp(None, f"the case status is '{case.status.value}': {reason}; no follow-up call", "stopped")
    always = [found for source in (_appointment, _reminder) if (found := source(plan)) is not None]
    if case.status in rules.appointments_only_statuses:
        plain = FollowUp(None, f"the case status is '{case.status.value}': no call except an appointment the "
                         "debtor asks for", "appointments_only")
        return min(always, key=lambda f: f.due_at, default=plain)
    scheduled = [found for source in _SCHEDULES if (found := source(plan)) is not None] or [_daily(plan)]
    return min([*always, *scheduled], key=lambda f: f.due_at)


def _appointment(plan: _Plan) -> FollowUp | None:
    margin = plan.rules.appointment_tolerance
    coming = sorted((a for a in plan.case.appointments if after(a.at, margin) > plan.now), key=lambda a: a.at)
    if not coming:
        return None
    first = coming[0]
    return FollowUp(first.at, f"appointment asked for by the {first.by.replace('_', ' ')}: {first.note!r}",
                    "appointment", after(first.at, margin))


def _reminder(plan: _Plan) -> FollowUp | None:
    if plan.case.due_date is None:
        return None
    for before in plan.rules.follow_up.reminder_days_before:  # the earliest day first
        day = plan.case.due_date - timedelta(days=before)
        if day > plan.today or (day == plan.today and not plan.dialled_since(plan.opening(day))):
            return plan.on(day, f"reminder {before} day{'s' if before > 1 else ''} before the due date "
                           f"{plan.case.due_date}", "reminder")
    return None


def _promise(plan: _Plan) -> FollowUp | None:
    open_ = sorted((p for p in plan.promises if p.status == "open"), key=lambda p: p.due_date)
    if not open_:
        return None
    promise, before = open_[0], plan.rules.follow_up.promise_days_before
    call_day = promise.due_date - timedelta(days=before)
    what = f"promise to pay {promise.amount} due {promise.due_date}"
    if plan.today <= promise.due_date and not plan.dialled_since(plan.opening(call_day)):
        return plan.on(call_day, f"{what}: call {before} day{'s' if before != 1 else ''} before", "promise")
    check = promise.due_date + timedelta(days=1)
    return plan.on(check, f"{what}, not recorded as kept: check the day after", "promise_check")


def _broken(plan: _Plan) -> FollowUp | None:
    rules = plan.rules.follow_up
    broken = sum(promise.status == "broken" for promise in plan.promises)
    if broken < rules.broken_promises:
        return None
    every = 7 // rules.broken_promise_calls_per_week
    day = plan.today if plan.last_day is None else plan.last_day + timedelta(days=every)
    return plan.on(day, f"{broken} broken promises: at least {rules.broken_promise_calls_per_week} calls a "
                   f"week (every {every} day{'s' if every > 1 else ''})", "broken_promises")


def _tracing(plan: _Plan) -> FollowUp | None:
    if plan.case.status not in plan.rules.tracing_statuses:
        return None
    every, latest = plan.rules.tracing_interval_working_days, plan.rules.follow_up.tracing_deadline_working_days
    if plan.last_day is None:
        return plan.on(plan.today, "lost contact, never traced: trace now", "tracing")
    due, last = plan.working(plan.last_day, every), plan.working(plan.last_day, latest)
    return FollowUp(plan.opening(due), f"lost contact, last traced {plan.last_day}: trace again after {every} to "
                    f"{latest} working days ({due} to {last})", "tracing", plan.closing(last))


def _urgent(plan: _Plan) -> FollowUp | None:
    if not plan.case.urgent:
        return None
    if plan.last_day != plan.today:
        return plan.on(plan.today, "urgent: follow up today", "urgent")
    within = plan.rules.follow_up.urgent_within_working_days
    return FollowUp(plan.opening(plan.working(plan.today, 1)), f"urgent: called today; again within 1 to {within} "
                    "working days", "urgent", plan.closing(plan.working(plan.today, within)))


def _evening(plan: _Plan) -> FollowUp | None:
    if not plan.case.evening:
        return None
    start = plan.rules.follow_up.evening_start
    tonight = wall_instant(plan.today, start, plan.zone)
    day = plan.today + timedelta(days=1) if plan.dialled_since(tonight) else plan.today
    return FollowUp(wall_instant(day, start, plan.zone), f"night follow-up: in the evening, from {start:%H:%M}",
                    "evening", plan.closing(day))


def _new_case(plan: _Plan) -> FollowUp | None:
    if plan.history:
        return None
    assigned = plan.case.assigned_at or plan.now
    days = plan.rules.follow_up.first_call_days
    return FollowUp(assigned, f"new case, never called: first call within {days} days of its assignment",
                    "new_case", after(assigned, timedelta(days=days)))


def _daily(plan: _Plan) -> FollowUp:
    every = plan.rules.follow_up.active_every_days
    day = plan.today if plan.last_day is None else plan.last_day + timedelta(days=every)
    return plan.on(day, f"follow-up every {every} day{'s' if every > 1 else ''}", "daily")


_SCHEDULES: tuple[Callable[[_Plan], FollowUp | None], ...] = (
    _new_case, _urgent, _evening, _tracing, _broken, _promise)


# ---------------------------------------------------------------- a new queue

@dataclass(frozen=True)
class Coverage:
    """By when every case of a queue must have been called once (the earliest deadline among
    the cases never called; None when all have been), which those are, how many working days
    are left (today included while its window is open), and how many cases a working day that
    makes."""

    deadline: datetime | None
    uncovered: tuple[int, ...]
    working_days_left: int
    per_working_day: int


def coverage_deadline(cases: Iterable[CaseView], now: datetime, attempts: Iterable[AttemptView] = (),
                      rules: Rules = RULES, campaign_tz: str | None = None) -> Coverage:
    """100 % of the queue called within `follow_up.coverage_working_days` working days, not
    counting the day a case was assigned (`assigned_at`, else `now`): a case's deadline is the
    close of the calling window on that last working day. Cases with a stop status are left
    out; `attempts` (of any of the cases) tell which were called."""
    cases = list(cases)
    owner = {phone.id: case.id for case in cases for phone in case.phones}
    called = {owner.get(attempt.phone_id) for attempt in attempts}
    waiting = [case for case in cases if case.id not in called and case.status not in rules.blocking_statuses]
    if not waiting:
        return Coverage(None, (), 0, 0)

    def due(case: CaseView) -> tuple[datetime, date, ZoneInfo]:
        zone = ZoneInfo(case.timezone or campaign_tz or rules.default_timezone)
        assigned = local_now(case.assigned_at or now, zone).date()
        last = add_working_days(assigned, rules.follow_up.coverage_working_days, rules.calendar)
        return wall_instant(last, rules.window_end, zone), last, zone

    deadline, last, zone = min(map(due, waiting), key=lambda found: found[0])
    today = local_now(now, zone).date()
    open_today = is_working_day(today, rules.calendar) and now < wall_instant(today, rules.window_end, zone)
    left = working_days_between(today, last, rules.calendar) + open_today
    return Coverage(deadline, tuple(case.id for case in waiting), left,
                    math.ceil(len(waiting) / left) if left else len(waiting))


# ---------------------------------------------------------------- what the engine offers

def offered(case: CaseView, history: Iterable[AttemptView], now: datetime, rules: Rules = RULES,
            campaign_tz: str | None = None, follow_up: FollowUp | None = None) -> FollowUp | None:
    """The follow-up that puts `case` in the dialling queue at `now`, None when it is not due.
    `follow_up`: the case's `next_follow_up`, when the caller has it already.

    A case is offered when its next follow-up is due; and, once a follow-up day has begun (the
    case was dialled today and nobody talked), for the rest of that day, so that the no-answer
    schedule (morning, noon, evening) can try again: `decide` still says whether each dial
    may happen."""
    history = tuple(history)
    follow_up = follow_up or next_follow_up(case, history, None, now, rules, campaign_tz)
    if follow_up.due(now):
        return follow_up
    if follow_up.kind in ("stopped", "appointments_only"):
        return None
    zone = ZoneInfo(case.timezone or campaign_tz or rules.default_timezone)
    today = local_now(now, zone).date()
    dialled_today = [a for a in history if a.at.astimezone(zone).date() == today]
    if dialled_today and not any(a.talked for a in dialled_today):
        return FollowUp(dialled_today[0].at, "a follow-up day begun without a conversation: the no-answer "
                        "schedule tries again", "retry", follow_up.deadline)
    return None
