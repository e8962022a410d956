"""What a supervisor does to campaigns, agents and dispositions (the CLI calls these).

Each function takes an open session and `now`, changes or reads rows, and returns plain
data; wording for people is left to the CLI.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, insert, literal, select
from sqlalchemy.orm import Session

from .models import (
    Agent,
    Attempt,
    Batch,
    Campaign,
    CampaignCase,
    CampaignStatus,
    Case,
    CaseStatus,
    Client,
    Disposition,
    PromiseToPay,
)
from .amd import amd_setting
from .policy import Rules
from . import hopper
from .lifecycle import CampaignError, campaign_named

#: Result codes an agent may record (the console will offer the same list).
DISPOSITION_CODES = {
    "promise_to_pay": "the debtor promised to pay (amount and date required)",
    "paid": "the debtor says it is paid",
    "callback": "the debtor asked to be called back",
    "refused": "the debtor refused to pay",
    "wrong_party": "not the debtor, and not a contact",
    "third_party": "a third party answered; nothing disclosed",
    "dispute": "the debtor disputes the amount",
    "fraud_claim": "the debtor denies having the card or the debt",
    "complaint": "the debtor intends to complain: stop calling this number",
    "deceased": "the debtor has died",
    "no_conversation": "answered, but no conversation",
}
#: What a disposition does to the case status.
STATUS_AFTER = {
    "promise_to_pay": CaseStatus.PROMISE_TO_PAY, "paid": CaseStatus.PAID, "dispute": CaseStatus.DISPUTE,
    "fraud_claim": CaseStatus.FRAUD_CLAIM, "complaint": CaseStatus.COMPLAINT, "deceased": CaseStatus.DECEASED,
}


MODES = ("progressive", "predictive")


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CampaignError(f"unknown time zone {name!r} (use an IANA name such as Asia/Shanghai)") from None
    return name


def create_campaign(session: Session, name: str, client_code: str, now: dt.datetime, *,
                    batches: tuple[int, ...] = (), timezone: str = "Asia/Shanghai",
                    settings: dict | None = None, mode: str = "progressive", preset: str = "client",
                    overrides: dict[str, str] | None = None) -> tuple[Campaign, int]:
    """A new campaign (status draft) over the client's cases (of `batches`, or all)."""
    amd_setting(settings, f"campaign {name}")  # refused here, naming the setting, not at dial time
    if session.scalar(select(Campaign).where(Campaign.name == name)) is not None:
        raise CampaignError(f"a campaign named {name!r} exists already")
    client = session.scalar(select(Client).where(Client.code == client_code))
    if client is None:
        raise CampaignError(f"no client {client_code!r}: import a batch for it first (dunning import)")
    query = select(Case.id).where(Case.client_id == client.id)
    if batches:
        found = set(session.scalars(select(Batch.id).where(Batch.client_id == client.id, Batch.id.in_(batches))))
        if missing := sorted(set(batches) - found):
            raise CampaignError(f"client {client_code} has no batch {', '.join(map(str, missing))}")
        query = query.where(Case.batch_id.in_(batches))
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    if not count:
        raise CampaignError(f"client {client_code} has no cases to put in a campaign")
    from .presets import PresetError, load_preset
    try:
        load_preset(preset, overrides or None)  # refused here, naming the key, not at dial time
    except PresetError as exc:
        raise CampaignError(str(exc)) from None
    settings = {**(settings or {}), "preset": preset, "overrides": dict(overrides or {})}
    if mode not in MODES:
        raise CampaignError(f"unknown dialing mode {mode!r}: {' or '.join(MODES)}")
    campaign = Campaign(name=name, client_id=client.id, status=CampaignStatus.DRAFT.value, mode=mode,
                        timezone=check_timezone(timezone), settings=settings or {}, created_at=now,
                        status_changed_at=now)
    session.add(campaign)
    session.flush()
    # One statement each, in the database: a campaign of a million cases never passes through here.
    session.execute(insert(CampaignCase).from_select(
        ["campaign_id", "case_id"], select(literal(campaign.id), query.subquery().c.id)))
    hopper.enroll(session, campaign)
    return campaign, count


@dataclass(frozen=True)
class CampaignFigures:
    """A campaign at a moment, from its hopper: cases, how many the engine may dial now (the
    follow-up is due and the policy allows it), the earliest moment another may be, what
    blocks the others (by rule), today's attempts by outcome, and how many cases wait to be
    asked again (their answer is being refreshed)."""

    name: str
    status: str
    timezone: str
    cases: int
    dialable_now: int
    next_dialable_at: dt.datetime | None
    attempts_today: Counter
    blocked_by: Counter
    unasked: int = 0


def campaign_figures(session: Session, name: str, now: dt.datetime, rules: Rules | None = None) -> CampaignFigures:
    campaign = campaign_named(session, name)
    found = hopper.figures(session, campaign, now, rules)
    zone = ZoneInfo(campaign.timezone)
    midnight = dt.datetime.combine(now.astimezone(zone).date(), dt.time(0), zone)
    today = Counter(dict(session.execute(
        select(func.coalesce(Attempt.outcome, Attempt.state), func.count()).where(
            Attempt.campaign_id == campaign.id, Attempt.planned_at >= midnight)
        .group_by(func.coalesce(Attempt.outcome, Attempt.state))).all()))
    return CampaignFigures(campaign.name, campaign.status, campaign.timezone, found.cases, found.dialable,
                           found.next_at, today, found.blocked_by, found.unasked)


def list_campaigns(session: Session) -> list[tuple[str, str, str, int, int]]:
    """(name, status, time zone, cases, attempts) for every campaign."""
    cases = dict(session.execute(select(CampaignCase.campaign_id, func.count()).group_by(CampaignCase.campaign_id)).all())
    dials = dict(session.execute(select(Attempt.campaign_id, func.count()).group_by(Attempt.campaign_id)).all())
    return [(c.name, c.status, c.timezone, cases.get(c.id, 0), dials.get(c.id, 0))
            for c in session.scalars(select(Campaign).order_by(Campaign.name))]


def add_agent(session: Session, extension: str, name: str, now: dt.datetime) -> Agent:
    agent = session.scalar(select(Agent).where(Agent.extension == extension))
    if agent is not None:
        agent.name, agent.active = name or agent.name, True
        return agent
    agent = Agent(extension=extension, name=name or extension, active=True, created_at=now)
    session.add(agent)
    session.flush()
    return agent


def agents(session: Session) -> list[Agent]:
    return list(session.scalars(select(Agent).order_by(Agent.extension)))


def agent_ids(session: Session, extensions) -> list[int]:
    """The ids of the agents at these extensions (unknown extensions left out)."""
    return list(session.scalars(select(Agent.id).where(Agent.extension.in_(list(extensions)))))


def record_disposition(session: Session, attempt_ref: str, code: str, now: dt.datetime, *, note: str | None = None,
                       promise_amount: str | None = None, promise_due: dt.date | None = None,
                       callback_at: dt.datetime | None = None, requested_by: str = "debtor",
                       recorded_by: str | None = None) -> Disposition:
    """Record the result of an answered attempt (by id or call id) and apply it to the case.
    A callback (`callback_at`) is recorded as an appointment, checked against the campaign's
    rules first (`record_appointment`); `note` is then the debtor's words or the agent's note."""
    if code not in DISPOSITION_CODES:
        raise CampaignError(f"unknown result code {code!r}; one of: {', '.join(DISPOSITION_CODES)}")
    attempt = session.scalar(select(Attempt).where(
        (Attempt.call_id == attempt_ref) | (Attempt.id == (int(attempt_ref) if attempt_ref.isdigit() else -1))))
    if attempt is None:
        raise CampaignError(f"no attempt {attempt_ref!r} (give its number or its call id)")
    if attempt.answered_at is None:
        raise CampaignError(f"attempt {attempt.id} was not answered ({attempt.outcome}): nothing to dispose")
    if session.scalar(select(Disposition).where(Disposition.attempt_id == attempt.id)) is not None:
        raise CampaignError(f"attempt {attempt.id} has a disposition already")
    if code == "callback" and callback_at is None:
        raise CampaignError("a callback needs the time the debtor asked for (--at)")
    if code == "promise_to_pay":
        if promise_amount is None or promise_due is None:
            raise CampaignError("a promise to pay needs --amount and --due")
        try:
            amount = Decimal(promise_amount)
        except InvalidOperation:
            raise CampaignError(f"--amount {promise_amount!r} is not an amount") from None
        if amount <= 0:
            raise CampaignError(f"--amount {promise_amount} must be positive")
        if promise_due < now.date():
            raise CampaignError(f"--due {promise_due} is in the past")
    disposition = Disposition(attempt_id=attempt.id, case_id=attempt.case_id, agent_id=attempt.agent_id,
                              code=code, note=note, created_at=now)
    session.add(disposition)
    session.flush()
    if code == "promise_to_pay":
        session.add(PromiseToPay(case_id=attempt.case_id, disposition_id=disposition.id, amount=amount,
                                 due_date=promise_due, status="open", created_at=now))
    case = session.get(Case, attempt.case_id)
    if code in STATUS_AFTER:
        case.status = STATUS_AFTER[code].value
    elif case.status == CaseStatus.NEW.value:
        case.status = CaseStatus.ACTIVE.value
    if code == "complaint":
        from .models import Phone
        phone = session.get(Phone, attempt.phone_id)
        phone.do_not_call, phone.do_not_call_reason = True, f"complaint intent on attempt {attempt.id}"
    if callback_at is not None:
        recorder = recorded_by or (session.get(Agent, attempt.agent_id).extension if attempt.agent_id else "unknown")
        record_appointment(session, str(attempt.id), callback_at, requested_by, note or "", recorder, now)
    return disposition


def find_cases(session: Session, ref: str) -> list[Case]:
    """Cases named by `ref`: a case reference, a case number, or one of its phone numbers
    (as dialled, in E.164, or as written with spaces and dashes)."""
    from .models import Phone
    found = list(session.scalars(select(Case).where(Case.reference == ref)))
    if not found and ref.isdigit():
        found = [c for c in [session.get(Case, int(ref))] if c is not None]
    if not found:
        digits = "".join(ch for ch in ref if ch.isdigit() or ch == "+")
        case_ids = set(session.scalars(select(Phone.case_id).where(
            (Phone.dial == digits) | (Phone.e164 == digits) | (Phone.e164 == "+" + digits.lstrip("+")))))
        found = list(session.scalars(select(Case).where(Case.id.in_(case_ids))))
    if not found:
        raise CampaignError(f"no case or phone number {ref!r}")
    return found


def why(session: Session, ref: str, now: dt.datetime, rules: Rules | None = None) -> list[str]:
    """For each case `ref` names and each campaign it is in: may it be dialled at `now`,
    and if not, which rules block it and when it next may."""
    from .case_views import records
    from .lifecycle import rules_for
    from .models import DialState, HopperPhase
    from .policy import why as explain
    texts = []
    for case in find_cases(session, ref):
        campaign_ids = list(session.scalars(select(DialState.campaign_id).where(DialState.case_id == case.id)
                                            .order_by(DialState.campaign_id)))
        if not campaign_ids:
            texts.append(f"case {case.id} ({case.reference}) is in no campaign: nothing dials it")
            continue
        for campaign_id in campaign_ids:
            campaign = session.get(Campaign, campaign_id)
            in_force = rules or rules_for(campaign)
            record = records(session, campaign.id, [case.id], now, hopper.history_for(in_force))[case.id]
            state = session.get(DialState, (campaign.id, case.id))
            texts.append(f"campaign {campaign.name} ({campaign.status}), case {case.reference}:\n"
                         + explain(record.view, record.history, now, campaign.timezone, in_force)
                         + f"\n  hopper: {HopperPhase(state.phase).name.lower()} (as last asked)"
                         + (f", from {state.eligible_at.isoformat(timespec='seconds')}" if state.eligible_at else "")
                         + (f", follow-up {state.follow_up_kind}" if state.follow_up_kind else ""))
    return texts


# ── Appointments (与客户约定): written by the console's disposition form ──

class AppointmentRefused(CampaignError):
    """An appointment the policy does not allow; `reason` is a stable code (outside_window,
    in_past, no_note, unknown_requester, naive_time) and `window`, `timezone`, `exception`
    say what the console needs to explain it."""

    def __init__(self, reason: str, message: str, *, window: str = "", timezone: str = "",
                 exception: bool = False) -> None:
        super().__init__(message)
        self.reason, self.window, self.timezone, self.exception = reason, window, timezone, exception


def appointment_allowed(at: dt.datetime, requested_by: str, timezone: str, rules: Rules) -> tuple[bool, bool]:
    """(allowed, outside the window) for an appointment at `at` asked for by `requested_by`:
    inside the calling window (policy.in_window, the debtor's clock) anyone may set one; outside
    it only someone the rules trust (the debtor, by default), and only when the rules let an
    appointment lift the calling window."""
    from .policy import in_window
    outside = not in_window(at, timezone, rules)
    exception = requested_by in rules.appointment_requested_by and "calling_window" in rules.appointment_lifts
    return (not outside or exception), outside


def record_appointment(session: Session, attempt_ref: str, at: dt.datetime, requested_by: str, note: str,
                       recorded_by: str, now: dt.datetime, *, rules: Rules | None = None):
    """Record a call-back agreed on an attempt (by id or call id), checked against the case's
    campaign's rules: refused (AppointmentRefused) when it is in the past, has no note, or falls
    outside the calling window without being an exception the rules allow."""
    from .models import Appointment
    from .policy import REQUESTERS
    from .queue import rules_for
    attempt = session.scalar(select(Attempt).where(
        (Attempt.call_id == attempt_ref) | (Attempt.id == (int(attempt_ref) if attempt_ref.isdigit() else -1))))
    if attempt is None:
        raise CampaignError(f"no attempt {attempt_ref!r} (give its number or its call id)")
    campaign = session.get(Campaign, attempt.campaign_id)
    case = session.get(Case, attempt.case_id)
    rules = rules or rules_for(campaign)
    zone = case.timezone or campaign.timezone
    window = f"{rules.window_start:%H:%M}–{rules.window_end:%H:%M}"
    if at.tzinfo is None or at.utcoffset() is None:
        raise AppointmentRefused("naive_time", f"appointment time {at} has no time zone")
    if requested_by not in REQUESTERS:
        raise AppointmentRefused("unknown_requester", f"requested_by must be one of {', '.join(sorted(REQUESTERS))}")
    if not note.strip():
        raise AppointmentRefused("no_note", "an appointment needs the debtor's words or the agent's note")
    if at <= now:
        raise AppointmentRefused("in_past", f"the appointment time {at.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} has passed")
    allowed, outside = appointment_allowed(at, requested_by, zone, rules)
    exception_possible = "calling_window" in rules.appointment_lifts and bool(rules.appointment_requested_by)
    if not allowed:
        raise AppointmentRefused(
            "outside_window",
            f"{at.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} is outside the calling window {window} for the debtor "
            f"({zone}); only an appointment the debtor asked for may be outside it"
            + ("" if exception_possible else ", and this campaign's rules allow no such exception"),
            window=window, timezone=zone, exception=exception_possible)
    appointment = Appointment(case_id=attempt.case_id, phone_id=attempt.phone_id, at=at, requested_by=requested_by,
                              note=note.strip(), recorded_by=recorded_by, recorded_at=now, attempt_id=attempt.id,
                              status="open")
    session.add(appointment)
    session.flush()
    return appointment
