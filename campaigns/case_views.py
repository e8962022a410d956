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
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Text, TypeDecorator, bindparam, cast, exists, func, literal_column, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
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


_IDS = bindparam("ids", expanding=True)
_CAMPAIGN = bindparam("campaign_id")
_SINCE = bindparam("since")
_cases, _phones, _attempts = Case.__table__.c, Phone.__table__.c, Attempt.__table__.c
_appointments, _promises, _dispositions = (Appointment.__table__.c, PromiseToPay.__table__.c,
                                           Disposition.__table__.c)


class _JsonList(TypeDecorator):
    """A JSON array built by the database (`json_list`): a list (None when there are no rows)."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is None:
            return []
        return json.loads(value) if isinstance(value, str | bytes) else value


class json_list(FunctionElement):  # noqa: N801 (an SQL function's name)
    """The rows of a subquery as a JSON array of objects, {name: column}: one value per case,
    so that a case's numbers, appointments, promises and attempts come in one statement."""

    type = _JsonList()
    inherit_cache = True

    def __init__(self, **columns):
        args = []
        for name, column in columns.items():
            args += [literal_column(f"'{name}'"), column]
        super().__init__(*args)


@compiles(json_list, "postgresql")
def _json_list_pg(element, compiler, **kw):
    return f"json_agg(json_build_object({compiler.process(element.clauses, **kw)}))"


@compiles(json_list)
def _json_list_sqlite(element, compiler, **kw):
    return f"json_group_array(json_object({compiler.process(element.clauses, **kw)}))"


#: A promise's amount as its column keeps it (SQLite's CAST drops trailing zeros: 500.00 → 500).
_PROMISE_EXP = Decimal(1).scaleb(-PromiseToPay.__table__.c.amount.type.scale)


def _moment(text: str | None) -> dt.datetime | None:
    """A timestamp inside a JSON array (stored naive UTC, in either database's spelling)."""
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


def _of_case(*where, **columns):
    return select(json_list(**columns)).where(*where)


_CASE_ID = _cases.id
_by_case = _attempts.case_id == _CASE_ID
#: Of this campaign: `+ 0` keeps the campaign's indexes out of a case's correlated queries
#: (SQLite's planner would otherwise walk the campaign's attempts instead of the case's few).
_mine = _attempts.campaign_id + 0 == _CAMPAIGN


def _attempts_of_case(*columns, where=()):
    """A correlated query over the case's attempts."""
    return select(*columns).where(_by_case, *where)


#: The statement (built once; a dial decision runs it for one case, a refresh for `CHUNK`): per
#: case its row, its numbers, open appointments, promises, the attempts of the history asked
#: for with their dispositions, the last conversation's moment (any campaign), the outcome of
#: the campaign's latest finished dial, and whether a call of the campaign is in progress.
_RECORDS = select(
    _cases.id, _cases.status, _cases.amount_due, _cases.days_past_due, _cases.timezone, _cases.extra,
    _cases.due_date, _cases.created_at,
    _of_case(_phones.case_id == _CASE_ID, id=_phones.id, role=_phones.role, dial=_phones.dial,
             valid=_phones.valid, do_not_call=_phones.do_not_call).scalar_subquery().label("phones"),
    _of_case(_appointments.case_id == _CASE_ID, _appointments.status != "cancelled", at=_appointments.at,
             by=_appointments.requested_by, note=_appointments.note, phone_id=_appointments.phone_id)
    .scalar_subquery().label("appointments"),
    _of_case(_promises.case_id == _CASE_ID, due_date=_promises.due_date, amount=cast(_promises.amount, Text),
             status=_promises.status).scalar_subquery().label("promises"),
    _attempts_of_case(json_list(id=_attempts.id, phone_id=_attempts.phone_id, at=_attempts.planned_at,
                                answered=_attempts.answered_at.is_not(None),
                                bridged=_attempts.bridged_at.is_not(None), outcome=_attempts.outcome,
                                code=_dispositions.code), where=[_attempts.planned_at >= _SINCE])
    .select_from(Attempt.__table__.outerjoin(Disposition.__table__, _dispositions.attempt_id == _attempts.id))
    .scalar_subquery().label("recent"),
    _attempts_of_case(func.max(_attempts.bridged_at)).scalar_subquery().label("talked"),
    _attempts_of_case(_attempts.outcome, where=[
        _mine, _attempts.state == AttemptState.ENDED.value, _attempts.dialed_at.is_not(None)])
    .order_by(_attempts.id.desc()).limit(1).scalar_subquery().label("last_outcome"),
    exists(_attempts_of_case(_attempts.id, where=[_mine, _attempts.state != AttemptState.ENDED.value]))
    .label("in_call"),
).where(_cases.id.in_(_IDS))


def _conversation(row: dict) -> bool | None:
    if row["outcome"] == ABANDONED or not row["bridged"]:
        return None
    return row["code"] not in NO_CONVERSATION_CODES


def _history(rows: list[dict]) -> tuple[AttemptView, ...]:
    """The case's attempts (oldest first) as the policy sees them."""
    rows = sorted(((_moment(row["at"]), row["id"], row) for row in rows if row["outcome"] not in NOT_DIALLED),
                  key=lambda item: item[:2])
    return tuple(AttemptView(phone_id=row["phone_id"], at=at,
                             answered=bool(row["answered"]) and row["outcome"] not in (ABANDONED, MACHINE),
                             conversation=_conversation(row)) for at, _id, row in rows)


def _records(session: Session, campaign_id: int, ids: list[int], now: dt.datetime,
             history: dt.timedelta) -> dict[int, CaseRecord]:
    out = {}
    for c in session.execute(_RECORDS, {"ids": ids, "campaign_id": campaign_id, "since": now - history}):
        phones = tuple(PhoneView(id=p["id"], role=PhoneRole(p["role"]), dial=p["dial"], valid=bool(p["valid"]),
                                 do_not_call=bool(p["do_not_call"])) for p in sorted(c.phones, key=lambda p: p["id"]))
        appointments = tuple(AppointmentView(at=_moment(a["at"]), by=a["by"], note=a["note"], phone_id=a["phone_id"])
                             for a in c.appointments)
        promises = tuple(PromiseView(due_date=dt.date.fromisoformat(p["due_date"]),
                                     amount=Decimal(p["amount"]).quantize(_PROMISE_EXP), status=p["status"])
                         for p in c.promises)
        view = CaseView(id=c.id, status=CaseStatus(c.status), amount_due=Decimal(c.amount_due),
                        days_past_due=c.days_past_due, phones=phones, timezone=c.timezone,
                        urgent=flag(c.extra, "urgent"), evening=flag(c.extra, "evening"), due_date=c.due_date,
                        assigned_at=c.created_at, last_conversation_at=c.talked,
                        appointments=appointments, promises=promises)
        mine = _history(c.recent)
        out[c.id] = CaseRecord(view, mine, bool(c.in_call), c.last_outcome == ABANDONED,
                               max((a.at for a in mine), default=None))
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
