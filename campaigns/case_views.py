"""Cases as the policy sees them (`policy.CaseView`, `policy.AttemptView`), read from the
database a bounded set at a time: never an IN-list of a whole campaign, and never more rows
in memory than the cases asked for (`CHUNK` ids a statement, under PostgreSQL's limit of
65,535 parameters).

A case's view carries its numbers, open appointments, promises to pay, due date, urgent and
evening flags (the bank's file's `urgent` / `evening` columns), and which answered calls were
conversations (a bridged call, unless its disposition says nobody the number belongs to was
reached). An abandoned call (answered, no agent within 2 s) reached the debtor but was no
conversation.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.orm import Session

from .models import (
    Appointment,
    Attempt,
    AttemptState,
    CampaignCase,
    Case,
    CaseStatus,
    Disposition,
    Phone,
    PhoneRole,
    PromiseToPay,
)
from .policy import AppointmentView, AttemptView, CaseView, PhoneView, PromiseView

#: Case ids per statement.
CHUNK = 500
#: The outcome of a call answered with no agent free within 2 s (predictive dialing).
ABANDONED = "abandoned"
#: Outcomes of attempts that never reached the network: not part of any history.
NOT_DIALLED = frozenset({"cancelled", "not_sent"})
#: The outcome of a call an answering machine took (AMD): not a contact (campaigns/amd.py).
MACHINE = "machine"
#: Result codes that say the agent did not talk with the person the number belongs to.
NO_CONVERSATION_CODES = frozenset({"wrong_party", "no_conversation"})


@dataclass(frozen=True)
class CaseRecord:
    """One case of one campaign: its view, its attempts of the history asked for (oldest
    first), whether a call of it is in progress in the campaign, whether the campaign's last
    finished dial of it was abandoned, and when it was last dialled (within the history)."""

    view: CaseView
    history: tuple[AttemptView, ...]
    busy: bool
    last_abandoned: bool
    last_dialled_at: dt.datetime | None


def flag(extra: dict | None, key: str) -> bool:
    """A yes/no column of the bank's file (kept in `Case.extra`): 1, yes, true, 是, Y."""
    value = str((extra or {}).get(key, "")).strip().lower()
    return value in {"1", "y", "yes", "true", "是", "紧急", "夜间"}


def chunks(ids: Iterable[int], size: int = CHUNK) -> Iterator[list[int]]:
    batch: list[int] = []
    for one in ids:
        batch.append(one)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def records(session: Session, campaign_id: int, case_ids: Iterable[int], now: dt.datetime,
            history: dt.timedelta) -> dict[int, CaseRecord]:
    """The campaign's cases `case_ids` (any number: read `CHUNK` at a time) with `history` of
    attempts before `now`."""
    found: dict[int, CaseRecord] = {}
    for ids in chunks(case_ids):
        found.update(_records(session, campaign_id, ids, now, history))
    return found


def _group(rows) -> dict[int, list]:
    out: dict[int, list] = {}
    for key, value in rows:
        out.setdefault(key, []).append(value)
    return out


_IDS = bindparam("ids", expanding=True)
_CAMPAIGN = bindparam("campaign_id")
_SINCE = bindparam("since")
_cases, _phones, _attempts = Case.__table__.c, Phone.__table__.c, Attempt.__table__.c
_appointments, _promises, _dispositions = (Appointment.__table__.c, PromiseToPay.__table__.c,
                                           Disposition.__table__.c)
#: The statements, built once (a dial decision runs them for one case: their cost is the query).
_CASES = select(_cases.id, _cases.status, _cases.amount_due, _cases.days_past_due, _cases.timezone, _cases.extra,
                _cases.due_date, _cases.created_at).where(_cases.id.in_(_IDS))
_PHONES = select(_phones.case_id, _phones.id, _phones.role, _phones.dial, _phones.valid, _phones.do_not_call) \
    .where(_phones.case_id.in_(_IDS)).order_by(_phones.id)
_APPOINTMENTS = select(_appointments.case_id, _appointments.at, _appointments.requested_by, _appointments.note,
                       _appointments.phone_id).where(_appointments.case_id.in_(_IDS),
                                                     _appointments.status != "cancelled")
_PROMISES = select(_promises.case_id, _promises.due_date, _promises.amount, _promises.status) \
    .where(_promises.case_id.in_(_IDS))
_RECENT = select(_attempts.id, _attempts.case_id, _attempts.phone_id, _attempts.planned_at, _attempts.answered_at,
                 _attempts.bridged_at, _attempts.outcome, _dispositions.code).outerjoin(
    Disposition.__table__, _dispositions.attempt_id == _attempts.id).where(
    _attempts.case_id.in_(_IDS), _attempts.planned_at >= _SINCE).order_by(_attempts.planned_at, _attempts.id)
_mine = and_(_attempts.campaign_id == _CAMPAIGN)
_summary = select(
    _attempts.case_id.label("case_id"), func.max(_attempts.bridged_at).label("talked"),
    func.max(case((and_(_mine, _attempts.state == AttemptState.ENDED.value, _attempts.dialed_at.is_not(None)),
                   _attempts.id))).label("last_id"),
    func.max(case((and_(_mine, _attempts.state != AttemptState.ENDED.value), 1), else_=0)).label("in_call")) \
    .where(_attempts.case_id.in_(_IDS)).group_by(_attempts.case_id) \
    .with_hint(Attempt.__table__, "INDEXED BY ix_attempts_case_planned", "sqlite").subquery()
_last = Attempt.__table__.alias("last_attempt")
#: Per case, over all its attempts: the last conversation's moment, the outcome of the
#: campaign's latest finished dial, and whether a call of the campaign is in progress.
_SUMMARY = select(_summary.c.case_id, _summary.c.talked, _last.c.outcome, _summary.c.in_call).outerjoin(
    _last, _last.c.id == _summary.c.last_id)


def _records(session: Session, campaign_id: int, ids: list[int], now: dt.datetime,
             history: dt.timedelta) -> dict[int, CaseRecord]:
    run = session.execute
    by_ids = {"ids": ids}
    cases = run(_CASES, by_ids).all()
    phones = _group((row.case_id, PhoneView(id=row.id, role=PhoneRole(row.role), dial=row.dial, valid=row.valid,
                                            do_not_call=row.do_not_call)) for row in run(_PHONES, by_ids))
    appointments = _group((row.case_id, AppointmentView(at=row.at, by=row.requested_by, note=row.note,
                                                        phone_id=row.phone_id)) for row in run(_APPOINTMENTS, by_ids))
    promises = _group((row.case_id, PromiseView(due_date=row.due_date, amount=Decimal(row.amount), status=row.status))
                      for row in run(_PROMISES, by_ids))
    recent = run(_RECENT, {"ids": ids, "since": now - history}).all()
    last_talk, abandoned, busy = {}, set(), set()
    for case_id, talked, last_outcome, in_call in run(_SUMMARY, {"ids": ids, "campaign_id": campaign_id}):
        if talked is not None:
            last_talk[case_id] = talked
        if last_outcome == ABANDONED:
            abandoned.add(case_id)
        if in_call:
            busy.add(case_id)

    def conversation(row) -> bool | None:
        if row.outcome == ABANDONED or row.bridged_at is None:
            return None
        return row.code not in NO_CONVERSATION_CODES

    attempts: dict[int, list[AttemptView]] = {}
    for row in recent:
        if row.outcome in NOT_DIALLED:
            continue
        attempts.setdefault(row.case_id, []).append(AttemptView(
            phone_id=row.phone_id, at=row.planned_at,
            answered=row.answered_at is not None and row.outcome not in (ABANDONED, MACHINE),
            conversation=conversation(row)))
    out = {}
    for c in cases:
        view = CaseView(id=c.id, status=CaseStatus(c.status), amount_due=Decimal(c.amount_due),
                        days_past_due=c.days_past_due, phones=tuple(phones.get(c.id, ())), timezone=c.timezone,
                        urgent=flag(c.extra, "urgent"), evening=flag(c.extra, "evening"), due_date=c.due_date,
                        assigned_at=c.created_at, last_conversation_at=last_talk.get(c.id),
                        appointments=tuple(appointments.get(c.id, ())), promises=tuple(promises.get(c.id, ())))
        mine = tuple(attempts.get(c.id, ()))
        out[c.id] = CaseRecord(view, mine, c.id in busy, c.id in abandoned, max((a.at for a in mine), default=None))
    return out


def campaign_case_ids(session: Session, campaign_id: int) -> Iterator[list[int]]:
    """The campaign's case ids, `CHUNK` at a time, in id order (keyset pagination: memory
    does not grow with the campaign)."""
    last = 0
    while True:
        ids = list(session.scalars(select(CampaignCase.case_id).where(
            CampaignCase.campaign_id == campaign_id, CampaignCase.case_id > last)
            .order_by(CampaignCase.case_id).limit(CHUNK)))
        if not ids:
            return
        yield ids
        last = ids[-1]
