"""The dialer's side of the database: what to dial next, and the attempt ledger.

Every function takes an open session (the caller owns the transaction) and, where time
matters, `now`. `plan_next` picks the next case and number the policy allows and writes
the attempt row PLANNED in the same transaction, *before* anything is sent to Asterisk:
a dial can never happen without its row, and the row (an attempt at that number in this
slot) is what stops the next pick from choosing the same number again.
"""
from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from .follow_up import FollowUp, next_follow_up, offered
from .models import (
    Agent,
    Appointment,
    Attempt,
    AttemptState,
    Campaign,
    CampaignCase,
    CampaignStatus,
    Case,
    CaseStatus,
    Disposition,
    Phone,
    PhoneRole,
    PromiseToPay,
    Recording,
    RecordingFile,
)
from .policy import (
    AppointmentView,
    AttemptView,
    CaseView,
    Decision,
    PhoneView,
    PromiseView,
    Rules,
    decide,
    order_cases,
)
from .presets import DEFAULT_PRESET, PresetError, load_preset

#: Q.850 causes that say the number does not exist (unallocated, invalid format): such a
#: phone is marked invalid and is not dialled again.
INVALID_CAUSES = frozenset({1, 28})
#: The outcome of a call answered with no agent free within 2 s (predictive dialing).
ABANDONED = "abandoned"
@functools.lru_cache(maxsize=64)
def _preset(name: str, overrides: tuple[tuple[str, str], ...]) -> Rules:
    return load_preset(name, dict(overrides) or None)


def rules_for(campaign: Campaign) -> Rules:
    """The campaign's rules: its preset (default: the client's rules) and its overrides."""
    settings = campaign.settings or {}
    overrides = tuple(sorted((str(k), str(v)) for k, v in (settings.get("overrides") or {}).items()))
    try:
        return _preset(settings.get("preset", DEFAULT_PRESET), overrides)
    except PresetError as exc:
        raise CampaignError(f"campaign {campaign.name}: {exc}") from None


class NotDialled(str, enum.Enum):
    """Outcomes of attempts that never reached Asterisk, or whose fate was lost."""

    CANCELLED = "cancelled"      # planned, then the calling window closed before the dial
    NOT_SENT = "not_sent"        # Asterisk was not reachable: nothing was sent
    INTERRUPTED = "interrupted"  # the engine stopped mid-call and Asterisk no longer had it


class CampaignError(ValueError):
    """A campaign operation the user asked for cannot be done; the message says why."""


@dataclass(frozen=True)
class Planned:
    attempt_id: int
    call_id: str
    case_id: int
    phone_id: int
    number: str
    timezone: str
    #: Set when the dial keeps an appointment the debtor asked for: the dial may happen until
    #: then even outside the calling window (the window is not re-checked at originate).
    appointment_until: dt.datetime | None = None
    third_party: bool = False  # a contact's number: the agent must not disclose the debt


def campaign_named(session: Session, name: str) -> Campaign:
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        known = ", ".join(session.scalars(select(Campaign.name).order_by(Campaign.name))) or "none yet"
        raise CampaignError(f"no campaign named {name!r} (campaigns: {known})")
    return campaign


#: The campaign state machine: (from, command) -> to.
CAMPAIGN_TRANSITIONS = {
    (CampaignStatus.DRAFT, "start"): CampaignStatus.RUNNING,
    (CampaignStatus.PAUSED, "start"): CampaignStatus.RUNNING,
    (CampaignStatus.RUNNING, "pause"): CampaignStatus.PAUSED,
    (CampaignStatus.RUNNING, "stop"): CampaignStatus.STOPPED,
    (CampaignStatus.PAUSED, "stop"): CampaignStatus.STOPPED,
    (CampaignStatus.DRAFT, "stop"): CampaignStatus.STOPPED,
}


def next_campaign_status(status: CampaignStatus, command: str) -> CampaignStatus:
    try:
        return CAMPAIGN_TRANSITIONS[(status, command)]
    except KeyError:
        raise CampaignError(f"a {status.value} campaign cannot {command}") from None


def change_campaign(session: Session, name: str, command: str, now: dt.datetime) -> Campaign:
    campaign = campaign_named(session, name)
    campaign.status = next_campaign_status(CampaignStatus(campaign.status), command).value
    campaign.status_changed_at = now
    return campaign


#: How far back the follow-up schedules look (the last call, the last tracing day).
FOLLOW_UP_HISTORY = dt.timedelta(days=32)
#: Result codes that say the agent did not talk with the person the number belongs to.
NO_CONVERSATION_CODES = frozenset({"wrong_party", "no_conversation"})


def _flag(extra: dict | None, key: str) -> bool:
    """A yes/no column of the bank's file (kept in `Case.extra`): 1, yes, true, 是, Y."""
    value = str((extra or {}).get(key, "")).strip().lower()
    return value in {"1", "y", "yes", "true", "是", "紧急", "夜间"}


def case_views(session: Session, campaign: Campaign, now: dt.datetime,
               history: dt.timedelta = dt.timedelta(days=32)) -> tuple[list[CaseView], list[AttemptView]]:
    """The campaign's cases and their recent attempts, as the policy sees them: with their
    open appointments, promises to pay, due dates, urgent / evening flags (the bank's file's
    `urgent` / `evening` columns), and which answered calls were conversations (a bridged
    call, unless its disposition says nobody the number belongs to was reached)."""
    rows = session.execute(
        select(Case).join(CampaignCase, CampaignCase.case_id == Case.id)
        .where(CampaignCase.campaign_id == campaign.id)).scalars().all()
    ids = [c.id for c in rows]
    phones: dict[int, list[PhoneView]] = {}
    for phone in session.scalars(select(Phone).join(CampaignCase, CampaignCase.case_id == Phone.case_id)
                                 .where(CampaignCase.campaign_id == campaign.id)):
        phones.setdefault(phone.case_id, []).append(PhoneView(
            id=phone.id, role=PhoneRole(phone.role), dial=phone.dial, valid=phone.valid,
            do_not_call=phone.do_not_call))
    appointments: dict[int, list[AppointmentView]] = {}
    for appointment in session.scalars(select(Appointment).where(
            Appointment.case_id.in_(ids), Appointment.status != "cancelled")):
        appointments.setdefault(appointment.case_id, []).append(AppointmentView(
            at=appointment.at, by=appointment.requested_by, note=appointment.note, phone_id=appointment.phone_id))
    promises: dict[int, list[PromiseView]] = {}
    for promise in session.scalars(select(PromiseToPay).where(PromiseToPay.case_id.in_(ids))):
        promises.setdefault(promise.case_id, []).append(PromiseView(
            due_date=promise.due_date, amount=Decimal(promise.amount), status=promise.status))
    codes = dict(session.execute(select(Disposition.attempt_id, Disposition.code).join(
        Attempt, Attempt.id == Disposition.attempt_id).where(Attempt.case_id.in_(ids))).all())

    def conversation(a: Attempt) -> bool | None:
        if a.bridged_at is None:
            return False if a.answered_at is not None and a.outcome == ABANDONED else None
        return codes.get(a.id) not in NO_CONVERSATION_CODES

    last_talk: dict[int, dt.datetime] = {}
    for case_id, at in session.execute(
            select(Attempt.case_id, Attempt.bridged_at).where(Attempt.case_id.in_(ids),
                                                              Attempt.bridged_at.is_not(None))):
        last_talk[case_id] = max(at, last_talk.get(case_id, at))
    cases = [CaseView(id=c.id, status=CaseStatus(c.status), amount_due=Decimal(c.amount_due),
                      days_past_due=c.days_past_due, phones=tuple(phones.get(c.id, ())), timezone=c.timezone,
                      urgent=_flag(c.extra, "urgent"), evening=_flag(c.extra, "evening"), due_date=c.due_date,
                      assigned_at=c.created_at, last_conversation_at=last_talk.get(c.id),
                      appointments=tuple(appointments.get(c.id, ())), promises=tuple(promises.get(c.id, ())))
             for c in rows]
    # An abandoned call (answered, no agent) reached the debtor but was no conversation.
    attempts = [AttemptView(phone_id=a.phone_id, at=a.planned_at,
                            answered=a.answered_at is not None and a.outcome != ABANDONED,
                            conversation=None if a.outcome == ABANDONED else conversation(a))
                for a in session.scalars(select(Attempt).where(
                    Attempt.case_id.in_(ids), Attempt.planned_at >= now - history))
                if a.outcome not in (NotDialled.CANCELLED.value, NotDialled.NOT_SENT.value)]
    return cases, attempts


def _by_case(cases: list[CaseView], attempts: list[AttemptView]) -> dict[int, tuple[AttemptView, ...]]:
    phone_case = {p.id: c.id for c in cases for p in c.phones}
    found: dict[int, list[AttemptView]] = {}
    for attempt in attempts:
        found.setdefault(phone_case.get(attempt.phone_id, -1), []).append(attempt)
    return {case_id: tuple(history) for case_id, history in found.items()}


def _histories(session: Session, campaign: Campaign, now: dt.datetime,
               history: dt.timedelta) -> Iterator[tuple[CaseView, tuple[AttemptView, ...]]]:
    """The campaign's cases in priority order, each with its attempts of the last `history`."""
    cases, attempts = case_views(session, campaign, now, history)
    histories = _by_case(cases, attempts)
    for case in order_cases(cases):
        yield case, histories.get(case.id, ())


def decisions(session: Session, campaign: Campaign, now: dt.datetime,
              rules: Rules | None = None) -> list[tuple[CaseView, Decision]]:
    """The policy's decision for every case of the campaign, in priority order (under the
    campaign's own rules unless `rules` is given)."""
    rules = rules or rules_for(campaign)
    return [(case, decide(case, history, now, campaign.timezone, rules))
            for case, history in _histories(session, campaign, now, rules.history_needed)]


def offers(session: Session, campaign: Campaign, now: dt.datetime, rules: Rules | None = None, *,
           due_only: bool = True) -> Iterator[tuple[CaseView, Decision, FollowUp | None]]:
    """Every case whose follow-up puts it in the queue now (`follow_up.offered`), in priority
    order, with the policy's decision and that follow-up; with `due_only` False, every case,
    those not due with their next follow-up (due later, or None: no call is to be made).
    A generator: the policy decides each case only when the caller gets to it."""
    rules = rules or rules_for(campaign)
    # The follow-up schedules look further back than the dialling rules (the last call, the
    # last tracing day): a month of history.
    for case, history in _histories(session, campaign, now, max(rules.history_needed, FOLLOW_UP_HISTORY)):
        scheduled = next_follow_up(case, history, None, now, rules, campaign.timezone)
        follow_up = offered(case, history, now, rules, campaign.timezone, scheduled)
        if follow_up is None:
            if due_only:
                continue
            follow_up = scheduled
        yield case, decide(case, history, now, campaign.timezone, rules), follow_up


def abandoned_cases(session: Session, campaign: Campaign) -> set[int]:
    """Cases whose latest finished attempt was abandoned (answered, no agent within 2 s):
    their next call is made only with an agent already reserved."""
    latest: dict[int, str | None] = {}
    for case_id, outcome in session.execute(
            select(Attempt.case_id, Attempt.outcome).where(
                Attempt.campaign_id == campaign.id, Attempt.state == AttemptState.ENDED.value,
                Attempt.dialed_at.is_not(None)).order_by(Attempt.id)):
        latest[case_id] = outcome
    return {case_id for case_id, outcome in latest.items() if outcome == ABANDONED}


def plan_next(session: Session, campaign: Campaign, agent: Agent | None, call_id: str,
              now: dt.datetime, rules: Rules | None = None, *, only_abandoned: bool = False) -> Planned | None:
    """Pick the highest-priority case whose follow-up is due and that has a number the policy
    allows now, and write its attempt row PLANNED; None when nothing may be dialled now. A
    case with a call in progress is never picked (its other numbers may be allowed, its
    debtor is busy). A dial with no agent reserved (`agent` None) never picks a case whose
    last call was abandoned; `only_abandoned` picks among those only. What the agent's screen
    must say about the dial (an appointment, a third party) is kept in the attempt's note."""
    busy = set(session.scalars(select(Attempt.case_id).where(
        Attempt.campaign_id == campaign.id, Attempt.state != AttemptState.ENDED.value)))
    abandoned = abandoned_cases(session, campaign)
    rules = rules or rules_for(campaign)
    for case, decision, follow_up in offers(session, campaign, now, rules):
        if only_abandoned and case.id not in abandoned:
            continue
        if agent is None and (case.id in abandoned or decision.third_party):
            # A contact is dialled only with an agent reserved, whose screen says it is one.
            continue
        if decision.allowed and decision.phone is not None and case.id not in busy:
            why = "; ".join(decision.instructions) or (follow_up.reason if follow_up else None)
            attempt = Attempt(call_id=call_id, campaign_id=campaign.id, case_id=case.id,
                              phone_id=decision.phone.id, agent_id=agent.id if agent else None,
                              number=decision.phone.dial, state=AttemptState.PLANNED.value, planned_at=now,
                              note=why)
            session.add(attempt)
            session.flush()
            until = None
            if decision.appointment is not None:
                until = decision.appointment.at + rules.appointment_tolerance
                _keep_appointment(session, case.id, decision.appointment, attempt.id)
            return Planned(attempt.id, call_id, case.id, decision.phone.id, decision.phone.dial,
                           case.timezone or campaign.timezone, appointment_until=until,
                           third_party=decision.third_party)
    return None


def _keep_appointment(session: Session, case_id: int, kept: AppointmentView, attempt_id: int) -> None:
    row = session.scalar(select(Appointment).where(
        Appointment.case_id == case_id, Appointment.at == kept.at, Appointment.status == "open"))
    if row is not None:
        row.status, row.kept_attempt_id = "kept", attempt_id


def next_dialable_at(session: Session, campaign: Campaign, now: dt.datetime,
                     rules: Rules | None = None) -> dt.datetime | None:
    """When the policy will next allow a dial in this campaign (None: not by itself): the
    earliest moment a case is both due for follow-up and allowed by the rules."""
    times = []
    for _, decision, follow_up in offers(session, campaign, now, rules, due_only=False):
        due = follow_up.due_at if follow_up is not None else None
        if due is None:
            continue
        if decision.allowed:
            times.append(max(due, now))
        elif decision.next_at is not None:
            times.append(max(decision.next_at, due))
    return min(times, default=None)


def set_agent(session: Session, attempt_id: int, extension: str) -> None:
    """Name the agent of an attempt dialled with none reserved (predictive), once known."""
    attempt = session.get(Attempt, attempt_id)
    if attempt.agent_id is None:
        attempt.agent_id = session.scalar(select(Agent.id).where(Agent.extension == extension))


def mark_dialing(session: Session, attempt_id: int, at: dt.datetime) -> None:
    attempt = session.get(Attempt, attempt_id)
    attempt.state, attempt.dialed_at = AttemptState.DIALING.value, at


def finish(session: Session, attempt_id: int, outcome: str, *, answered_at: dt.datetime | None = None,
           bridged_at: dt.datetime | None = None, ended_at: dt.datetime, hangup_cause: int | None = None,
           note: str | None = None, agent_extension: str | None = None) -> None:
    attempt = session.get(Attempt, attempt_id)
    if agent_extension is not None:
        set_agent(session, attempt_id, agent_extension)
    attempt.state, attempt.outcome, attempt.ended_at = AttemptState.ENDED.value, outcome, ended_at
    attempt.answered_at, attempt.bridged_at = answered_at, bridged_at
    attempt.hangup_cause = hangup_cause
    if note:
        attempt.note = f"{attempt.note}; {note}" if attempt.note else note
    if hangup_cause in INVALID_CAUSES:
        phone = session.get(Phone, attempt.phone_id)
        phone.valid = False
        phone.do_not_call_reason = f"the network says invalid (attempt {attempt.id}, cause {hangup_cause})"


def attach_recording(session: Session, attempt_id: int, recorded_at: dt.datetime, files) -> Recording:
    """Link the stored files of an attempt's recording (idempotent)."""
    existing = session.scalar(select(Recording).where(Recording.attempt_id == attempt_id))
    if existing is not None:
        return existing
    mix = next(f for f in files if f.leg == "mix")
    recording = Recording(attempt_id=attempt_id, recorded_at=recorded_at, seconds=Decimal(f"{mix.seconds:.2f}"))
    session.add(recording)
    session.flush()
    for f in files:
        session.add(RecordingFile(recording_id=recording.id, leg=f.leg, path=f.relative_path, sha256=f.sha256,
                                  bytes=f.bytes, seconds=Decimal(f"{f.seconds:.2f}")))
    return recording


def in_flight(session: Session, campaign: Campaign) -> list[Attempt]:
    """Attempts an earlier run planned or dialled and never finished (after a crash)."""
    return list(session.scalars(select(Attempt).where(
        Attempt.campaign_id == campaign.id, Attempt.state != AttemptState.ENDED.value).order_by(Attempt.id)))
