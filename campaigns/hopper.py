"""The hopper: each campaign's cases in dialling order, with the policy's answer for each kept
in `dial_states` (a cache: `rebuild` makes it anew, `check` compares it with the policy), so
that a dial decision costs a constant number of indexed queries however large the campaign.

How it stays true (campaigns/dial_state.py says what an answer holds):
- a change to a fact the policy reads (an attempt, a disposition, a promise, an appointment, a
  case's status or numbers, the campaign's rules) marks the case's states DUE in the same
  flush (`watch`), so it is asked again before it can be offered;
- time moves states forward without asking the policy (`advance`): WAITING becomes READY at
  `eligible_at`; a READY or WAITING answer that has run out (`valid_until`: the window's end,
  the no-retry hour, an appointment's close) becomes DEFERRED until its `reopen_at`, then DUE;
- `take` (the engine's dial decision) asks the DUE cases that come before the best READY one,
  then asks the best READY case again with the caller's fresh clock and writes the attempt;
  a case the policy now refuses gets its new answer and the next is taken. On PostgreSQL the
  rows are claimed `FOR UPDATE SKIP LOCKED`: two engines never take the same case;
- a question about a moment before the campaign's states were computed (a clock set back)
  marks them all DUE.
"""
from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, event, func, insert, literal, or_, select, union_all, update
from sqlalchemy.orm import Session

from . import case_views
from .dial_state import Verdict, verdict
from .follow_up import Coverage, coverage_deadline
from .ledger import Planned, keep_appointment
from .lifecycle import rules_for
from .models import (
    Appointment,
    CaseStatus,
    Attempt,
    AttemptState,
    Campaign,
    CampaignCase,
    Case,
    DialState,
    Disposition,
    HopperClock,
    HopperPhase,
    Phone,
    PromiseToPay,
)
from .policy import CaseView, Rules

#: The queue's order (policy.priority_key): the largest amount due first, then the most days
#: past due, then the oldest case.
PRIORITY = (DialState.amount_cents.desc(), DialState.days_past_due.desc(), DialState.case_id)
#: DUE cases asked at once.
BATCH = 64
#: How many DUE cases a dial decision asks, at most, before the best READY one when DUE cases
#: come first in the queue (they are asked by the engine's background refresh too).
TAKE_BUDGET = 512
#: A case whose only allowed number is a contact's is left to dials with an agent reserved
#: for this long before it is asked again for a dial ahead of agents.
NEEDS_AGENT_FOR = dt.timedelta(minutes=5)
#: How many contact-only cases a dial ahead of agents skips by name before it marks them.
SKIPPED_MAX = 32
#: A clock this far behind a campaign's clock is a clock set back (see the module's doc).
CLOCK_SLACK = dt.timedelta(seconds=60)
#: The rules' history the follow-up schedules need (the last call, the last tracing day).
FOLLOW_UP_HISTORY = dt.timedelta(days=32)


def history_for(rules: Rules) -> dt.timedelta:
    return max(rules.history_needed, FOLLOW_UP_HISTORY)


def _cents(amount) -> int:
    return int(round(amount * 100))


# ---------------------------------------------------------------- keeping it true

def enroll(session: Session, campaign: Campaign, case_ids: Iterable[int] | None = None) -> None:
    """Put cases (all the campaign's when `case_ids` is None) in the hopper, to be asked (DUE)."""
    query = (select(literal(campaign.id), Case.id, literal(int(HopperPhase.DUE)),
                    func.cast(func.round(Case.amount_due * 100), DialState.amount_cents.type),
                    Case.days_past_due, func.coalesce(Case.timezone, campaign.timezone), Case.created_at,
                    literal(False))
             .join(CampaignCase, CampaignCase.case_id == Case.id).where(CampaignCase.campaign_id == campaign.id)
             .where(~select(DialState.case_id).where(DialState.campaign_id == campaign.id,
                                                     DialState.case_id == Case.id).exists()))
    columns = ["campaign_id", "case_id", "phase", "amount_cents", "days_past_due", "zone", "assigned_at",
               "last_abandoned"]
    if case_ids is None:
        session.execute(insert(DialState).from_select(columns, query))
        return
    for ids in case_views.chunks(case_ids):
        session.execute(insert(DialState).from_select(columns, query.where(Case.id.in_(ids))))


def mark_due(session: Session, case_ids: Iterable[int]) -> None:
    """A fact about these cases changed: every campaign asks the policy about them again."""
    for ids in case_views.chunks(sorted(set(case_ids))):
        session.execute(update(DialState).where(DialState.case_id.in_(ids)).values(phase=int(HopperPhase.DUE)),
                        execution_options={"synchronize_session": False})


def mark_campaign_due(session: Session, campaign_id: int) -> None:
    """Every case of the campaign is to be asked again (its rules changed, a clock was set
    back, or the hopper is rebuilt)."""
    session.execute(update(DialState).where(DialState.campaign_id == campaign_id)
                    .values(phase=int(HopperPhase.DUE)), execution_options={"synchronize_session": False})


def _rules_changed(campaign: Campaign) -> bool:
    from sqlalchemy import inspect
    state = inspect(campaign)
    for name in ("timezone", "settings"):
        history = state.attrs[name].history
        if not history.has_changes():
            continue
        if name == "timezone":
            return True
        old = (history.deleted or [{}])[0] or {}
        new = (history.added or [{}])[0] or {}
        if (old.get("preset"), old.get("overrides")) != (new.get("preset"), new.get("overrides")):
            return True
    return False


_CASE_OF: dict[type, Callable] = {
    Attempt: lambda o: o.case_id, Disposition: lambda o: o.case_id, PromiseToPay: lambda o: o.case_id,
    Appointment: lambda o: o.case_id, Phone: lambda o: o.case_id, Case: lambda o: o.id,
}


#: session.info key: the case whose attempt `take` is writing.
CLAIMED = "hopper_claimed"


def _after_flush(session: Session, _context) -> None:
    changed: set[int] = set()
    campaigns: set[int] = set()
    enrolled: dict[int, list[int]] = {}
    for obj in (*session.new, *session.dirty, *session.deleted):
        kind = type(obj)
        if kind in _CASE_OF:
            if obj in session.dirty and not session.is_modified(obj):
                continue
            if kind is Attempt and obj in session.new and obj.case_id == session.info.get(CLAIMED):
                continue
            case_id = _CASE_OF[kind](obj)
            if case_id is not None:
                changed.add(case_id)
        elif kind is CampaignCase and obj in session.new:
            enrolled.setdefault(obj.campaign_id, []).append(obj.case_id)
        elif kind is Campaign and obj in session.dirty and _rules_changed(obj):
            campaigns.add(obj.id)
    if not (changed or campaigns or enrolled):
        return
    if changed:
        mark_due(session, changed)
    for campaign_id in campaigns:
        mark_campaign_due(session, campaign_id)
    for campaign_id, ids in enrolled.items():
        enroll(session, session.get(Campaign, campaign_id), ids)


def watch() -> None:
    """Keep every session's writes and the hopper in step (idempotent; called on import)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)


watch()


_T = DialState.__table__
#: Storing answers: one statement, many rows (an UPDATE by primary key).
_STORE = update(_T).where(_T.c.campaign_id == bindparam("k_campaign"), _T.c.case_id == bindparam("k_case")).values(
    {name: bindparam(name) for name in (
        "phase", "amount_cents", "days_past_due", "zone", "eligible_at", "valid_until", "reopen_at", "blocked_rule",
        "follow_up_kind", "follow_up_due_at", "assigned_at", "last_dialled_at", "last_abandoned",
        "needs_agent_until", "computed_at")})


def _values(campaign: Campaign, record: case_views.CaseRecord, found: Verdict, now: dt.datetime) -> dict:
    case = record.view
    follow_up = found.follow_up
    return {"k_campaign": campaign.id, "k_case": case.id, "phase": int(found.phase),
            "amount_cents": _cents(case.amount_due), "days_past_due": case.days_past_due,
            "zone": case.timezone or campaign.timezone,
            "eligible_at": found.eligible_at, "valid_until": found.valid_until, "reopen_at": found.reopen_at,
            "blocked_rule": found.blocked_rule, "follow_up_kind": follow_up.kind if follow_up else None,
            "follow_up_due_at": follow_up.due_at if follow_up else None, "assigned_at": case.assigned_at,
            "last_dialled_at": record.last_dialled_at, "last_abandoned": record.last_abandoned,
            "needs_agent_until": None, "computed_at": now}


def _answers(session: Session, campaign: Campaign, rules: Rules, case_ids: list[int],
             now: dt.datetime) -> dict[int, tuple[case_views.CaseRecord, Verdict]]:
    found = case_views.records(session, campaign.id, case_ids, now, history_for(rules))
    return {case_id: (record, verdict(record.view, record.history, now, rules, campaign.timezone, busy=record.busy))
            for case_id, record in found.items()}


def _store(session: Session, campaign: Campaign, answers, now: dt.datetime, but: int | None = None) -> None:
    rows = [_values(campaign, record, answer, now) for case_id, (record, answer) in answers.items() if case_id != but]
    _sooner(session, campaign, [moment for row in rows for moment in (row["eligible_at"], row["valid_until"])])
    for start in range(0, len(rows), case_views.CHUNK):
        session.execute(_STORE, rows[start:start + case_views.CHUNK])


def ask(session: Session, campaign: Campaign, rules: Rules, case_ids: list[int],
        now: dt.datetime) -> dict[int, tuple[case_views.CaseRecord, Verdict]]:
    """Ask the policy about these cases at `now` and store the answers."""
    answers = _answers(session, campaign, rules, case_ids, now)
    _store(session, campaign, answers, now)
    return answers


#: Per process: each campaign's clock as last read or written, and when (the database is
#: read or written at most once a `CLOCK_SLACK`, unless a moment before it comes).
_CLOCKS: dict[int, dt.datetime] = {}


def _clock(session: Session, campaign_id: int, now: dt.datetime) -> None:
    """Note the campaign's clock; a moment before it (by more than `CLOCK_SLACK`) makes every
    state of the campaign DUE."""
    known = _CLOCKS.get(campaign_id)
    if known is not None and known - CLOCK_SLACK <= now <= known + CLOCK_SLACK:
        return
    row = session.get(HopperClock, campaign_id)
    if row is None:
        session.add(HopperClock(campaign_id=campaign_id, clock=now))
        session.flush()
    elif now < row.clock - CLOCK_SLACK:
        mark_campaign_due(session, campaign_id)
        row.clock = now
    elif now > row.clock:
        row.clock = now
    _CLOCKS[campaign_id] = max(now, row.clock) if row is not None and now >= row.clock - CLOCK_SLACK else now


#: PostgreSQL advisory locks of the hopper: its key space, plus the campaign id.
_LOCKS = 0x6468_0000


_NOW = bindparam("now")
_MINE = _T.c.campaign_id == bindparam("k_campaign")
#: Time moves states forward: answers that ran out (READY or WAITING past `valid_until`) wait
#: for their `reopen_at` (DEFERRED); WAITING ones become READY at `eligible_at`, DEFERRED
#: ones DUE. Each statement an index range of (campaign, phase, moment).
_MOVES = (
    (HopperPhase.READY, _T.c.valid_until, {"phase": int(HopperPhase.DEFERRED), "eligible_at": _T.c.reopen_at}),
    (HopperPhase.WAITING, _T.c.valid_until, {"phase": int(HopperPhase.DEFERRED), "eligible_at": _T.c.reopen_at}),
    (HopperPhase.WAITING, _T.c.eligible_at, {"phase": int(HopperPhase.READY)}),
    (HopperPhase.DEFERRED, _T.c.eligible_at, {"phase": int(HopperPhase.DUE)}))
#: At most this many rows a move when a dial decision advances (the earliest first), so that a
#: window's edge moving a whole time zone's cases never stalls one; the engine's background
#: refresh moves them all.
ADVANCE_STEP = 64


def _moves(limit: int | None) -> tuple:
    """The UPDATE of each move, of every row due to move, or of the first `limit` of them."""
    statements = []
    for phase, column, values in _MOVES:
        due = (_MINE, _T.c.phase == int(phase), column <= _NOW)
        if limit is not None:
            due += (_T.c.case_id.in_(select(_T.c.case_id).where(*due).order_by(column).limit(limit)
                                     .scalar_subquery()),)
        statements.append(update(_T).where(*due).values(**values))
    return tuple(statements)


_ADVANCE, _ADVANCE_STEP = _moves(None), _moves(ADVANCE_STEP)
#: The next moment `advance` will have something to move.
_NEXT_CHANGE = select(*[
    select(func.min(column)).where(_MINE, _T.c.phase == int(phase)).scalar_subquery()
    for phase, column in ((HopperPhase.READY, _T.c.valid_until), (HopperPhase.WAITING, _T.c.valid_until),
                          (HopperPhase.WAITING, _T.c.eligible_at), (HopperPhase.DEFERRED, _T.c.eligible_at))])
#: On PostgreSQL, one engine at a time moves a campaign's states (bulk UPDATEs of overlapping
#: rows could deadlock); the others skip it: the work is the same.
_LOCK = select(func.pg_try_advisory_xact_lock(bindparam("lock_key")))
#: Per process, per campaign: the next moment `advance` has work, and until when (monotonic)
#: that is trusted without asking the database (another process may have stored sooner ones).
_NEXT: dict[tuple, tuple[dt.datetime | None, float]] = {}
NEXT_TRUSTED_S = 1.0


def _cache_key(session: Session, campaign: Campaign) -> tuple:
    return (str(session.get_bind().url), campaign.id, campaign.created_at)


def _sooner(session: Session, campaign: Campaign, moments) -> None:
    """This process stored answers that change at these moments: `advance` must not wait longer."""
    key = _cache_key(session, campaign)
    hit = _NEXT.get(key)
    if hit is None:
        return
    soonest = min(filter(None, [hit[0], *moments]), default=None)
    _NEXT[key] = (soonest, hit[1])


def advance(session: Session, campaign: Campaign, now: dt.datetime, *, step: bool = False) -> None:
    """Move the campaign's states with time (see the module's doc); no policy is asked. With
    `step`, at most `ADVANCE_STEP` rows a move (the next call goes on where this one stopped)."""
    key = _cache_key(session, campaign)
    hit = _NEXT.get(key)
    if hit is not None and time.monotonic() < hit[1] and (hit[0] is None or now < hit[0]):
        return
    params = {"k_campaign": campaign.id, "now": now, "lock_key": _LOCKS + campaign.id}
    if session.get_bind().dialect.name == "postgresql" and not session.scalar(_LOCK, params):
        return
    moved = [session.execute(statement, params).rowcount for statement in (_ADVANCE_STEP if step else _ADVANCE)]
    if step and max(moved) >= ADVANCE_STEP:
        _NEXT[key] = (now, 0.0)  # more to move: the next call moves on
        return
    found = [moment for moment in session.execute(_NEXT_CHANGE, params).one() if moment is not None]
    _NEXT[key] = (min(found, default=None), time.monotonic() + NEXT_TRUSTED_S)


def refresh(session: Session, campaign: Campaign, now: dt.datetime, rules: Rules | None = None, *,
            limit: int | None = None, ahead: bool = False, progress: Callable[[int], None] | None = None) -> int:
    """Ask the policy about the campaign's DUE cases (highest priority first; at most `limit`);
    with `ahead`, then about DEFERRED ones too (the earliest first), so that the next window's
    opening finds them answered. Returns how many were asked."""
    rules = rules or rules_for(campaign)
    _clock(session, campaign.id, now)
    advance(session, campaign, now)
    asked = 0
    phases = [(HopperPhase.DUE, PRIORITY)]
    if ahead:
        phases.append((HopperPhase.DEFERRED, (DialState.eligible_at, DialState.case_id)))
    for phase, order in phases:
        while limit is None or asked < limit:
            size = BATCH * 8 if limit is None else min(BATCH * 8, limit - asked)
            ids = list(session.scalars(select(DialState.case_id).where(
                DialState.campaign_id == campaign.id, DialState.phase == int(phase)).order_by(*order)
                .limit(size).with_for_update(skip_locked=True)))
            if not ids:
                break
            ask(session, campaign, rules, ids, now)
            asked += len(ids)
            if progress is not None:
                progress(len(ids))
    return asked


def rebuild(session: Session, campaign: Campaign, now: dt.datetime, rules: Rules | None = None,
            progress: Callable[[int], None] | None = None) -> int:
    """Make the campaign's hopper anew from the cases and the policy (a missing row is added)."""
    enroll(session, campaign)
    mark_campaign_due(session, campaign.id)
    return refresh(session, campaign, now, rules, progress=progress)


# ---------------------------------------------------------------- the dial decision

def _before(amount_cents: int, days: int, case_id: int):
    """Rows that come before this one in the queue's order."""
    return or_(DialState.amount_cents > amount_cents,
               and_(DialState.amount_cents == amount_cents, DialState.days_past_due > days),
               and_(DialState.amount_cents == amount_cents, DialState.days_past_due == days,
                    DialState.case_id < case_id))


#: The best READY row whose answer still holds (one whose `valid_until` has passed waits for
#: `advance`: a dial decision moves only `ADVANCE_STEP` rows, the background the rest).
_BEST = select(_T.c.case_id, _T.c.amount_cents, _T.c.days_past_due).where(
    _MINE, _T.c.phase == int(HopperPhase.READY), or_(_T.c.valid_until.is_(None), _T.c.valid_until > _NOW)) \
    .order_by(*[c.__clause_element__() if hasattr(c, "__clause_element__") else c for c in PRIORITY])
_AHEAD = _BEST.where(_T.c.last_abandoned.is_(False),
                     or_(_T.c.needs_agent_until.is_(None), _T.c.needs_agent_until <= _NOW))
_ABANDONED = _BEST.where(_T.c.last_abandoned.is_(True))
_DUE = select(_T.c.case_id, _T.c.amount_cents, _T.c.days_past_due).where(_MINE, _T.c.phase == int(HopperPhase.DUE))


def _candidates(session: Session, best_query, with_due: bool, params: dict):
    """The best READY row of `best_query` (or None) and, `with_due`, the first `BATCH` DUE rows
    in the queue's order: one statement (each part locked, skipping rows another engine holds),
    so that a dial decision costs few round trips to the database."""
    best = best_query.limit(1).with_for_update(skip_locked=True).cte("best")
    parts = [select(literal(True).label("is_best"), *best.c)]
    if with_due:
        due = _DUE.order_by(*PRIORITY).limit(BATCH).with_for_update(skip_locked=True).cte("due")
        parts.append(select(literal(False), *due.c))
    rows = session.execute(union_all(*parts) if with_due else parts[0], params).all()
    return next((row for row in rows if row.is_best), None), [row for row in rows if not row.is_best]


def take(session: Session, campaign: Campaign, agent_id: int | None, call_id: str, now: dt.datetime,
         rules: Rules | None = None, *, only_abandoned: bool = False, server: str | None = None) -> Planned | None:
    """The highest-priority case the policy allows now, its attempt row written PLANNED; None
    when nothing may be dialled now. With no agent reserved (`agent_id` None: a dial ahead of
    agents) a case whose last call was abandoned, or whose allowed number is a contact's, is
    not taken; `only_abandoned` takes among the abandoned only. The case is asked again at
    `now` before it is taken, together with the DUE cases that come before it in the queue.
    `server`: the Asterisk server the engine dials it on (written on the attempt)."""
    rules = rules or rules_for(campaign)
    _clock(session, campaign.id, now)
    advance(session, campaign, now, step=True)
    best_query = _ABANDONED if only_abandoned else _AHEAD if agent_id is None else _BEST
    params = {"k_campaign": campaign.id, "now": now}
    skipped: list[int] = []  # READY cases whose allowed number is a contact's (no agent reserved)
    asked = 0
    while True:
        # The DUE cases first (there are few: a change was just made), then the best READY one.
        query = best_query.where(_T.c.case_id.not_in(skipped)) if skipped else best_query
        best, due = _candidates(session, query, asked < TAKE_BUDGET, params)
        if best is not None:
            key = (-best.amount_cents, -best.days_past_due, best.case_id)
            due = [row for row in due if (-row.amount_cents, -row.days_past_due, row.case_id) < key]
        if best is None and not due:
            return None
        ids = [row.case_id for row in due] + ([best.case_id] if best is not None else [])
        answers = _answers(session, campaign, rules, ids, now)
        asked += len(answers)
        chosen = None
        for record, answer in sorted(answers.values(), key=lambda pair: _key(pair[0].view)):
            if answer.phase is not HopperPhase.READY or (only_abandoned and not record.last_abandoned) or \
                    (agent_id is None and record.last_abandoned):
                continue
            if agent_id is None and answer.decision.third_party:
                # A contact is dialled only with an agent reserved, whose screen says it is one.
                skipped.append(record.view.id)
                if len(skipped) > SKIPPED_MAX:
                    session.execute(update(_T).where(_MINE, _T.c.case_id == record.view.id)
                                    .values(needs_agent_until=now + NEEDS_AGENT_FOR), params)
                continue
            if best is not None and record.view.id == best.case_id and len(due) == BATCH and asked < TAKE_BUDGET:
                break  # more DUE cases may come before it: ask them first
            chosen = (record, answer)
            break
        _store(session, campaign, answers, now, but=chosen[0].view.id if chosen else None)
        if chosen is not None:
            return _plan(session, campaign, chosen[0].view, chosen[1], agent_id, call_id, now, rules, server)


def _key(case: CaseView) -> tuple[int, int, int]:
    """The queue's order of a case (`PRIORITY`, `policy.priority_key`) in stored units."""
    return (-_cents(case.amount_due), -case.days_past_due, case.id)


def _plan(session: Session, campaign: Campaign, case: CaseView, answer: Verdict, agent_id: int | None,
          call_id: str, now: dt.datetime, rules: Rules, server: str | None) -> Planned:
    decision = answer.decision
    follow_up = answer.follow_up
    why = "; ".join(decision.instructions) or (follow_up.reason if follow_up else None)
    attempt = Attempt(call_id=call_id, campaign_id=campaign.id, case_id=case.id, phone_id=decision.phone.id,
                      agent_id=agent_id, number=decision.phone.dial, state=AttemptState.PLANNED.value,
                      planned_at=now, note=why, server=server)
    session.add(attempt)
    session.info[CLAIMED] = case.id  # its state is written next: the flush need not mark it
    try:
        session.flush()
    finally:
        session.info.pop(CLAIMED, None)
    session.execute(update(DialState).where(DialState.campaign_id == campaign.id, DialState.case_id == case.id)
                    .values(phase=int(HopperPhase.IN_CALL), eligible_at=None, valid_until=None,
                            blocked_rule="call_in_progress", last_dialled_at=now),
                    execution_options={"synchronize_session": False})
    until = None
    if decision.appointment is not None:
        until = decision.appointment.at + rules.appointment_tolerance
        keep_appointment(session, case.id, decision.appointment, attempt.id)
    return Planned(attempt.id, call_id, case.id, decision.phone.id, decision.phone.dial,
                   case.timezone or campaign.timezone, appointment_until=until, third_party=decision.third_party)


# ---------------------------------------------------------------- readers

@dataclass(frozen=True)
class HopperFigures:
    """What the stored states say at a moment: cases, how many may be dialled, the earliest
    moment one of the others may, what blocks them (by rule), and how many wait to be asked."""

    cases: int
    dialable: int
    next_at: dt.datetime | None
    blocked_by: Counter
    unasked: int


def figures(session: Session, campaign: Campaign, at: dt.datetime, rules: Rules | None = None, *,
            ask_limit: int | None = 1_000) -> HopperFigures:
    """The campaign's figures at `at`, from its states (DUE ones asked first, up to `ask_limit`)."""
    refresh(session, campaign, at, rules, limit=ask_limit)
    mine = DialState.campaign_id == campaign.id
    rows = session.execute(select(DialState.phase, DialState.blocked_rule, func.count(), func.min(DialState.eligible_at))
                           .where(mine).group_by(DialState.phase, DialState.blocked_rule)).all()
    blocked: Counter = Counter()
    cases = dialable = unasked = 0
    upcoming = []
    for phase, rule, count, eligible in rows:
        cases += count
        phase = HopperPhase(phase)
        if phase is HopperPhase.READY:
            dialable += count
        elif phase in (HopperPhase.DUE, HopperPhase.DEFERRED):
            unasked += count
            blocked["not yet asked again" if phase is HopperPhase.DUE else "calling_window"] += count
            if eligible is not None and eligible > at:
                upcoming.append(eligible)
        else:
            blocked[rule or "unknown"] += count
            if phase is HopperPhase.WAITING and eligible is not None:
                upcoming.append(eligible)
    return HopperFigures(cases, dialable, min(upcoming, default=None), blocked, unasked)


def next_dialable_at(session: Session, campaign: Campaign, now: dt.datetime, rules: Rules | None = None):
    return figures(session, campaign, now, rules).next_at


def overdue_follow_ups(session: Session, campaign: Campaign, now: dt.datetime, limit: int = 10):
    """(count, the first `limit` as (case id, kind, due)) of follow-ups overdue by more than a
    day, other than the daily ones and retries."""
    where = (DialState.campaign_id == campaign.id, DialState.follow_up_due_at < now - dt.timedelta(days=1),
             DialState.follow_up_kind.not_in(("daily", "retry", "stopped", "appointments_only")),
             DialState.phase.not_in((int(HopperPhase.IN_CALL),)))
    count = session.scalar(select(func.count()).select_from(DialState).where(*where))
    first = session.execute(select(DialState.case_id, DialState.follow_up_kind, DialState.follow_up_due_at)
                            .where(*where).order_by(DialState.follow_up_due_at).limit(limit)).all()
    return count, first


def coverage(session: Session, campaign: Campaign, now: dt.datetime, rules: Rules):
    """The new-queue coverage (follow_up.coverage_deadline) from the stored states: the cases
    not dialled within the follow-up history and not stopped, by time zone."""
    since = now - FOLLOW_UP_HISTORY
    groups = session.execute(select(DialState.zone, func.min(DialState.assigned_at), func.count()).where(
        DialState.campaign_id == campaign.id, or_(DialState.last_dialled_at.is_(None), DialState.last_dialled_at < since),
        or_(DialState.blocked_rule.is_(None), DialState.blocked_rule != "case_status")).group_by(DialState.zone)).all()
    if not groups:
        return Coverage(None, (), 0, 0), 0
    views = [CaseView(id=index, status=CaseStatus.ACTIVE, amount_due=Decimal(0), days_past_due=0, phones=(),
                      timezone=zone, assigned_at=assigned) for index, (zone, assigned, _) in enumerate(groups)]
    found = coverage_deadline(views, now, (), rules, campaign.timezone)
    waiting = sum(count for _, _, count in groups)
    per_day = -(-waiting // found.working_days_left) if found.working_days_left else waiting
    return Coverage(found.deadline, (), found.working_days_left, per_day), waiting


def check(session: Session, campaign: Campaign, now: dt.datetime, rules: Rules | None = None,
          progress: Callable[[int], None] | None = None) -> list[str]:
    """Compare every stored state with the policy's answer at `now` (read-only): a case the
    policy allows now that the hopper would not offer is a mismatch (the reverse is not: a
    case is asked again before it is dialled). Streams the campaign `CHUNK` cases at a time."""
    rules = rules or rules_for(campaign)
    wrong = []
    for ids in case_views.campaign_case_ids(session, campaign.id):
        stored = {row.case_id: row for row in session.scalars(select(DialState).where(
            DialState.campaign_id == campaign.id, DialState.case_id.in_(ids)))}
        for case_id, record in case_views.records(session, campaign.id, ids, now, history_for(rules)).items():
            answer = verdict(record.view, record.history, now, rules, campaign.timezone, busy=record.busy)
            row = stored.get(case_id)
            if row is None:
                wrong.append(f"case {case_id}: not in the hopper")
                continue
            if answer.phase is HopperPhase.READY and _offered(row, now) is False:
                wrong.append(f"case {case_id}: the policy allows a dial now; the hopper says "
                             f"{HopperPhase(row.phase).name.lower()} (eligible {row.eligible_at}, "
                             f"answer valid until {row.valid_until})")
        if progress is not None:
            progress(len(ids))
    return wrong


def _offered(row: DialState, now: dt.datetime) -> bool | None:
    """Whether the stored state lets the case be offered at `now` (None: it must be asked)."""
    phase = HopperPhase(row.phase)
    if phase in (HopperPhase.DUE,):
        return None
    if phase in (HopperPhase.NEVER, HopperPhase.IN_CALL):
        return False
    if row.valid_until is not None and row.valid_until <= now:
        return None if row.reopen_at is None or row.reopen_at <= now else False
    if phase is HopperPhase.DEFERRED:
        return None if row.eligible_at is None or row.eligible_at <= now else False
    return row.eligible_at is not None and row.eligible_at <= now
