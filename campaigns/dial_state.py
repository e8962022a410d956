"""The policy's answer for one case, in the form the hopper stores (campaigns/hopper.py).

Pure, like the policy: a case's view, its history, `now` and the rules in; out, a `Verdict`:
may it be dialled now (the follow-up schedule offers it and the policy allows it, as the
engine requires), and if not, the earliest moment it might be (`eligible_at`, a lower bound:
the later of when the policy next allows a dial and when the follow-up is next due); until
when a READY answer holds by itself (`valid_until`: the next moment at which time alone can
take the permission away: the calling window's end, the no-retry hour for a number missed
that day, an appointment's close, and the next local day's start, since the follow-up
schedules count local days and may answer differently on a new one); and from when, once that has passed, the case could be
dialled again at the earliest (`reopen_at`: at once inside the calling window; outside it,
the next window opening or a trusted appointment before it).

Everything else about time only ever *adds* permissions as it passes (a slot ends, a rolling
cap or a quiet period runs out, a follow-up falls due), so an answer computed at one moment
stays true, by these bounds, until a fact about the case changes; the hopper asks again then.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from .follow_up import FollowUp, next_follow_up, offered
from .enums import HopperPhase
from .policy import (
    AttemptView,
    CaseView,
    Decision,
    Rules,
    after,
    decide,
    in_window,
    local_now,
    next_window_open,
    wall_instant,
)

SECOND = timedelta(seconds=1)
#: The pseudo-rule of a case the policy allows but whose follow-up is not due yet.
NOT_DUE = "follow_up_not_due"
#: The pseudo-rule of a case with a call in progress.
IN_CALL = "call_in_progress"


@dataclass(frozen=True)
class Verdict:
    phase: HopperPhase
    eligible_at: datetime | None
    valid_until: datetime | None
    reopen_at: datetime | None
    blocked_rule: str | None
    follow_up: FollowUp | None
    decision: Decision | None


def zone_of(case: CaseView, campaign_tz: str | None, rules: Rules) -> ZoneInfo:
    return ZoneInfo(case.timezone or campaign_tz or rules.default_timezone)


def verdict(case: CaseView, history: tuple[AttemptView, ...], now: datetime, rules: Rules,
            campaign_tz: str | None, *, busy: bool = False) -> Verdict:
    """The case's dial state at `now` (see the module's doc). `busy`: a call of the case is in
    progress (it is not dialled again until that call ends)."""
    if busy:
        return Verdict(HopperPhase.IN_CALL, None, None, None, IN_CALL, None, None)
    scheduled = next_follow_up(case, history, None, now, rules, campaign_tz)
    follow_up = offered(case, history, now, rules, campaign_tz, scheduled)
    decision = decide(case, history, now, campaign_tz, rules)
    shown = follow_up or scheduled
    if decision.allowed and follow_up is not None:
        until = valid_until(case, history, now, now, rules, campaign_tz)
        return Verdict(HopperPhase.READY, now, until, reopen_at(case, until, rules, campaign_tz), None, shown, decision)
    if decision.allowed:
        eligible, rule = scheduled.due_at, NOT_DUE
    else:
        due = shown.due_at
        eligible = None if decision.next_at is None or due is None else max(decision.next_at, due)
        rule = decision.blocks[0].rule if decision.blocks else None
    if eligible is None:
        return Verdict(HopperPhase.NEVER, None, None, None, rule, shown, decision)
    eligible = max(eligible, now + SECOND)
    until = valid_until(case, history, now, eligible, rules, campaign_tz)
    return Verdict(HopperPhase.WAITING, eligible, until, reopen_at(case, until, rules, campaign_tz), rule, shown,
                   decision)


def _closing(moment: datetime, zone: ZoneInfo, rules: Rules) -> datetime:
    """The first end of the calling window after `moment`."""
    day = local_now(moment, zone).date()
    for offset in range(3):
        close = wall_instant(day + timedelta(days=offset), rules.window_end, zone)
        if close > moment:
            return close
    raise ValueError(f"the calling window never closes in {zone} after {moment}")


def _midnight(moment: datetime, zone: ZoneInfo) -> datetime:
    """The start of the next local day after `moment`."""
    return wall_instant(local_now(moment, zone).date() + timedelta(days=1), time(0), zone)


def valid_until(case: CaseView, history: tuple[AttemptView, ...], now: datetime, start: datetime, rules: Rules,
                campaign_tz: str | None) -> datetime:
    """The first moment after `start` (the answer's `eligible_at`, asked at `now`) at which
    time alone may take a permission away: the window's end, the no-retry hour for a number
    missed that day, an appointment's close; and the next day's start after `now` (the
    follow-up schedules count local days: a new day is asked about anew)."""
    zone = zone_of(case, campaign_tz, rules)
    edges = [_closing(start, zone, rules), _midnight(now, zone)]
    day = local_now(start, zone).date()
    if rules.retry_before is not None and any(
            not attempt.answered and attempt.at.astimezone(zone).date() == day for attempt in history):
        retry = wall_instant(day, rules.retry_before, zone)
        if retry > start:
            edges.append(retry)
    margin = rules.appointment_tolerance
    edges += [after(a.at, margin) for a in case.appointments if after(a.at, margin) > start]
    return min(edges)


def reopen_at(case: CaseView, until: datetime, rules: Rules, campaign_tz: str | None) -> datetime:
    """Once `until` has passed, the earliest moment the case could be dialled again: `until`
    itself inside the calling window; outside it, the next window opening, or a trusted
    appointment's opening before it (nothing else lifts the window)."""
    zone = zone_of(case, campaign_tz, rules)
    if in_window(until, zone, rules):
        return until
    opening = next_window_open(until, zone, rules)
    margin = rules.appointment_tolerance
    earlier = [after(a.at, -margin) for a in case.appointments
               if a.by in rules.appointment_requested_by and until < after(a.at, margin) and after(a.at, -margin) < opening]
    return max(until, min([opening, *earlier]))
