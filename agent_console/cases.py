"""What an agent sees and records: the case card, who may see it, the disposition, presence,
and the agent's own counters.

Who sees what (`visible_campaigns`): an agent, the cases of their team's campaigns that they
are on or have just dispositioned; a supervisor or a QA reviewer, the cases (and recordings,
transcripts, findings) of their team's campaigns, nothing without a team; an administrator,
everything. Phone numbers are shown whole only to agents (they dial them); everyone else sees
them masked (138****8000) unless they give a reason, which is audited (`open_case(unmask=)`).

Plain functions of an open session and `now`; the HTTP layer (app.py) and the live task
(live.py) call them in a worker thread. The card is plain JSON-ready data: the browser draws it.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ami_bridge.supervision import SPY_MODES
from campaigns import admin
from campaigns.models import (
    Agent,
    AgentPresence,
    Appointment,
    Attempt,
    Campaign,
    CampaignCase,
    Case,
    Client,
    Disposition,
    Phone,
    PromiseToPay,
)
from campaigns.queue import CampaignError, rules_for
from campaigns.report import DIALS_TARGET, EFFECTIVE_TARGET, daily

from .accounts import audit, team_campaign_ids
from .schema import Account, AuditEntry
from .settings import Settings

#: Pause reason codes (agent_presence.requested_reason); the catalogue words them.
PAUSE_REASONS = ("break", "meal", "training", "meeting", "case_work", "technical")
#: What the console may ask the engine for (agent_presence.requested).
REQUESTS = ("ready", "paused", "logged_out")


class Refused(Exception):
    """A request the console refuses; `key` names the catalogue message, `values` fill it."""

    def __init__(self, key: str, status: int = 409, **values) -> None:
        super().__init__(key)
        self.key, self.status, self.values = key, status, values


def mask_id(number: str | None) -> str | None:
    """An ID number with only its first 4 and last 4 characters shown: 4403**********1234."""
    if not number:
        return number
    if len(number) <= 8:
        return "*" * (len(number) - 2) + number[-2:]
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_phone(number: str | None) -> str | None:
    """A phone number with its middle hidden, as the wallboard shows it: 138****8000."""
    if not number:
        return number
    digits = number.split(" ext ")[0]
    if len(digits) <= 7:
        return "*" * (len(digits) - 2) + digits[-2:]
    return digits[:3] + "****" + digits[-4:]


#: Roles that dial: they see the numbers whole. The others see them masked unless they give
#: one of UNMASK_REASONS (audited).
DIALLING_ROLES = ("agent",)
UNMASK_REASONS = ("complaint", "dispute", "qa_review", "data_request")


def _stamp(moment: dt.datetime | None, zone: ZoneInfo) -> str | None:
    return None if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def case_card(session: Session, attempt: Attempt, now: dt.datetime, mask_phones: bool = False) -> dict:
    """The case as the agent's screen shows it for `attempt`: the debtor, amounts, phones with
    the dialled one marked, the history of attempts and dispositions, promises, appointments.
    The ID number is masked, and with `mask_phones` every phone number too; times are in the
    debtor's time zone."""
    shown = mask_phone if mask_phones else (lambda number: number)
    case = session.get(Case, attempt.case_id)
    campaign = session.get(Campaign, attempt.campaign_id)
    client = session.get(Client, case.client_id)
    zone_name = case.timezone or campaign.timezone
    zone = ZoneInfo(zone_name)
    rules = rules_for(campaign)
    dialled = session.get(Phone, attempt.phone_id)
    phones = [{"id": p.id, "role": p.role, "number": shown(p.dial + (f" ext {p.extension}" if p.extension else "")),
               "contact_name": p.contact_name, "relation": p.relation, "valid": p.valid,
               "do_not_call": p.do_not_call, "dialled": p.id == attempt.phone_id}
              for p in session.scalars(select(Phone).where(Phone.case_id == case.id).order_by(Phone.id))]
    agents = {a.id: a.extension for a in session.scalars(select(Agent))}
    dispositions = {d.attempt_id: d for d in session.scalars(select(Disposition).where(Disposition.case_id == case.id))}
    supervised = supervision_by_call(session, f"case {case.id}")
    history = [{"call_id": a.call_id, "at": _stamp(a.dialed_at or a.planned_at, zone), "number": shown(a.number),
                "outcome": a.outcome or a.state, "agent": agents.get(a.agent_id),
                "disposition": dispositions[a.id].code if a.id in dispositions else None,
                "note": dispositions[a.id].note if a.id in dispositions else None,
                "current": a.id == attempt.id,
                "supervision": [{"mode": s["mode"], "by": s["by"], "at": _stamp(s["at"], zone)}
                                for s in supervised.get(a.call_id, [])]}
               for a in session.scalars(select(Attempt).where(Attempt.case_id == case.id)
                                        .order_by(Attempt.planned_at.desc(), Attempt.id.desc()).limit(50))]
    promises = [{"amount": str(p.amount), "due": p.due_date.isoformat(), "status": p.status,
                 "made": _stamp(p.created_at, zone)}
                for p in session.scalars(select(PromiseToPay).where(PromiseToPay.case_id == case.id)
                                         .order_by(PromiseToPay.created_at.desc()))]
    appointments = [{"at": _stamp(a.at, zone), "requested_by": a.requested_by, "note": a.note, "status": a.status}
                    for a in session.scalars(select(Appointment).where(Appointment.case_id == case.id)
                                             .order_by(Appointment.at.desc()).limit(10))]
    return {
        "call_id": attempt.call_id, "attempt_id": attempt.id, "case_id": case.id, "reference": case.reference,
        "client": client.name if client else "", "campaign": campaign.name, "debtor_name": case.debtor_name,
        "id_number": mask_id(case.id_number), "amount_due": f"{case.amount_due:,.2f}", "currency": case.currency,
        "days_past_due": case.days_past_due, "due_date": case.due_date.isoformat() if case.due_date else None,
        "status": case.status, "timezone": zone_name, "local_time": now.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "window": f"{rules.window_start:%H:%M}–{rules.window_end:%H:%M}",
        "third_party": dialled is not None and dialled.role == "contact",
        "third_party_note": rules.third_party_note, "phones": phones, "history": history,
        "promises": promises, "appointments": appointments,
        "bridged_at": _stamp(attempt.bridged_at, zone), "disposed": attempt.id in dispositions,
        "phones_masked": mask_phones,
    }


# ---------------------------------------------------------------- who may see a case

def pending_attempt(session: Session, agent_id: int) -> Attempt | None:
    """The agent's most recent call that was bridged to them and has no disposition yet."""
    return session.scalar(
        select(Attempt).outerjoin(Disposition, Disposition.attempt_id == Attempt.id)
        .where(Attempt.agent_id == agent_id, Attempt.bridged_at.is_not(None), Disposition.id.is_(None))
        .order_by(Attempt.bridged_at.desc()).limit(1))


def live_call(session: Session, agent_id: int) -> Attempt | None:
    """The call the agent is talking on now: the engine marks the agent on_call with the call's
    id the moment it bridges it (the attempt's bridged_at is written when the call ends)."""
    presence = session.get(AgentPresence, agent_id)
    if presence is None or presence.state != "on_call" or not presence.call_id:
        return None
    attempt = session.scalar(select(Attempt).where(Attempt.call_id == presence.call_id))
    return attempt if attempt is not None and attempt.ended_at is None else None


def current_attempt(session: Session, agent_id: int) -> Attempt | None:
    """The call the agent is on (bridged, not dispositioned), else the one the engine has
    reserved them for."""
    pending = pending_attempt(session, agent_id)
    if pending is not None:
        return pending
    presence = session.get(AgentPresence, agent_id)
    if presence is not None and presence.call_id and presence.state in ("reserved", "on_call"):
        return session.scalar(select(Attempt).where(Attempt.call_id == presence.call_id))
    return None


def visible_campaigns(session: Session, account: Account) -> set[int] | None:
    """The campaigns whose cases, recordings, transcripts and findings the account may see:
    None for every campaign (administrators); for anyone else their team's campaigns (none
    without a team: deny by default)."""
    if account.role == "administrator":
        return None
    if account.role not in ("supervisor", "qa", "agent"):
        return set()
    return team_campaign_ids(session, account.team_id)


def may_see_campaign(session: Session, account: Account, campaign_id: int | None) -> bool:
    allowed = visible_campaigns(session, account)
    return allowed is None or (campaign_id is not None and campaign_id in allowed)


def may_view_case(session: Session, account: Account, case_id: int, now: dt.datetime, settings: Settings) -> bool:
    """Administrators see every case; supervisors and QA the cases of their team's campaigns.
    An agent sees a case only when it is in a campaign assigned to their team and it is the
    case they are on (reserved, on the call, or not yet dispositioned) or dispositioned within
    `settings.case_recent`."""
    campaigns = visible_campaigns(session, account)
    if campaigns is None:
        return True
    if not campaigns:
        return False
    in_team = session.scalar(select(CampaignCase.case_id).where(
        CampaignCase.case_id == case_id, CampaignCase.campaign_id.in_(campaigns)).limit(1))
    if in_team is None:
        return False
    if account.role in ("supervisor", "qa"):
        return True
    if account.role != "agent" or account.agent_id is None:
        return False
    current = current_attempt(session, account.agent_id)
    if current is not None and current.case_id == case_id and current.campaign_id in campaigns:
        return True
    recent = session.scalar(select(Disposition.id).join(Attempt, Attempt.id == Disposition.attempt_id).where(
        Disposition.case_id == case_id, Disposition.agent_id == account.agent_id,
        Disposition.created_at >= now - settings.case_recent, Attempt.campaign_id.in_(campaigns)).limit(1))
    return recent is not None


def open_case(session: Session, account: Account, case_id: int, now: dt.datetime, settings: Settings,
              remote: str | None = None, unmask: str | None = None) -> dict | Refused:
    """The case card (for its latest attempt in a campaign the account may see), when the
    account may see the case; every view is audited. Phone numbers are masked for roles that
    do not dial, unless `unmask` gives one of UNMASK_REASONS (audited as such). A refusal is
    returned, not raised, so that its audit entry is committed."""
    if not may_view_case(session, account, case_id, now, settings):
        audit(session, now, "case_view", "refused", account=account, subject=f"case {case_id}", remote=remote,
              detail=f"unmask: {unmask}" if unmask else None)
        return Refused("forbidden.case", 403)
    dials = account.role in DIALLING_ROLES
    if unmask is not None and (dials or unmask not in UNMASK_REASONS):
        return Refused("case.unmask_reason", 400)
    query = select(Attempt).where(Attempt.case_id == case_id)
    if account.role == "agent":
        query = query.where(Attempt.agent_id == account.agent_id)
    campaigns = visible_campaigns(session, account)
    if campaigns is not None:
        query = query.where(Attempt.campaign_id.in_(campaigns))
    attempt = session.scalar(query.order_by(Attempt.planned_at.desc()).limit(1))
    if attempt is None:
        audit(session, now, "case_view", "not_found", account=account, subject=f"case {case_id}", remote=remote)
        return Refused("not_found", 404)
    if unmask is not None:
        audit(session, now, "case_unmask", "ok", account=account, subject=f"case {case_id}",
              detail=f"{attempt.call_id}; reason: {unmask}", remote=remote)
    else:
        audit(session, now, "case_view", "ok", account=account, subject=f"case {case_id}", detail=attempt.call_id,
              remote=remote)
    return case_card(session, attempt, now, mask_phones=not dials and unmask is None)


# ---------------------------------------------------------------- presence

def presence_of(session: Session, agent_id: int) -> AgentPresence:
    presence = session.get(AgentPresence, agent_id)
    if presence is None:
        presence = AgentPresence(agent_id=agent_id, requested="logged_out", state="logged_out")
        session.add(presence)
        session.flush()
    return presence


def request_presence(session: Session, account: Account, requested: str, reason: str | None,
                     now: dt.datetime) -> AgentPresence:
    """The agent asks to be ready, paused (with a reason code) or out of the queue. Ready is
    refused while a call bridged to them has no disposition (the wrap-up form comes first)."""
    if account.agent_id is None:
        raise Refused("forbidden", 403)
    if requested not in REQUESTS:
        raise Refused("not_found", 400)
    if requested == "paused" and reason not in PAUSE_REASONS:
        raise Refused("agent.pause_reason", 400)
    if requested == "ready" and pending_attempt(session, account.agent_id) is not None:
        raise Refused("agent.ready_blocked", 409)
    presence = presence_of(session, account.agent_id)
    presence.requested = requested
    presence.requested_reason = reason if requested == "paused" else None
    presence.requested_at = now
    audit(session, now, "presence", "ok", account=account, subject=requested, detail=presence.requested_reason)
    return presence


def presence_view(session: Session, agent_id: int, now: dt.datetime, settings: Settings) -> dict:
    presence = session.get(AgentPresence, agent_id)
    pending = pending_attempt(session, agent_id)
    state = presence.state if presence else "logged_out"
    since = presence.state_since if presence else None
    wrap_left = None
    if state == "wrap_up" and since is not None:
        # The campaign's limit, the one the engine applies, when it sets one.
        from campaigns.models import Campaign
        campaign = session.get(Campaign, presence.campaign_id) if presence.campaign_id else None
        limit = settings.wrap_up_limit
        if campaign is not None and "wrap_up_limit_seconds" in (campaign.settings or {}):
            from dialer.presence import wrap_up_limit_s
            limit = dt.timedelta(seconds=wrap_up_limit_s(campaign.settings))
        wrap_left = max(0, int((since + limit - now).total_seconds()))
    return {"type": "presence", "state": state, "requested": presence.requested if presence else "logged_out",
            "reason": presence.requested_reason if presence else None,
            "since": since.isoformat() if since else None, "call_id": presence.call_id if presence else None,
            "pending_call_id": pending.call_id if pending else None, "can_ready": pending is None,
            "wrap_up_left_s": wrap_left, "line": presence.line if presence else None,
            "line_since": presence.line_since.isoformat() if presence and presence.line_since else None}


#: Audit events of a supervisor listening in (agent_console/call_control.py), by mode.
SPY_EVENTS = {f"call_{mode}": mode for mode in SPY_MODES}


def supervision_by_call(session: Session, subject: str) -> dict[str, list[dict]]:
    """Who listened to, whispered to or barged into each call of a case (`subject`: "case N"),
    and when, from the audit log: {call id: [{mode, by, at}]}, oldest first."""
    out: dict[str, list[dict]] = {}
    rows = session.scalars(select(AuditEntry).where(AuditEntry.subject == subject, AuditEntry.result == "ok",
                                                    AuditEntry.event.in_(SPY_EVENTS)).order_by(AuditEntry.at))
    for row in rows:
        call_id = (row.detail or "").split(" ", 1)[0]
        out.setdefault(call_id, []).append({"mode": SPY_EVENTS[row.event], "by": row.username, "at": row.at})
    return out


# ---------------------------------------------------------------- the disposition

@dataclass(frozen=True)
class DispositionForm:
    call_id: str
    code: str
    note: str = ""
    amount: str = ""
    due: str = ""             # YYYY-MM-DD
    callback_at: str = ""     # YYYY-MM-DDTHH:MM, the debtor's local time
    requested_by: str = "debtor"
    callback_note: str = ""


def dispose(session: Session, account: Account, form: DispositionForm, now: dt.datetime) -> dict:
    """Record the agent's disposition of a call bridged to them (and its promise to pay or
    call-back appointment, checked against the campaign's policy), in one transaction."""
    if account.agent_id is None:
        raise Refused("forbidden", 403)
    attempt = session.scalar(select(Attempt).where(Attempt.call_id == form.call_id))
    if attempt is None or attempt.agent_id != account.agent_id or attempt.bridged_at is None:
        raise Refused("forbidden.case", 403)
    if form.code not in admin.DISPOSITION_CODES:
        raise Refused("dispo.error", 400, error=f"unknown result code {form.code!r}")
    due = None
    amount = None
    if form.code == "promise_to_pay":
        try:
            due = dt.date.fromisoformat(form.due)
        except ValueError:
            raise Refused("dispo.error", 400, error="the promised date is not a date (YYYY-MM-DD)") from None
        amount = promised_amount(form.amount)
    note = form.note.strip() or None
    callback_at = None
    if form.code == "callback" or form.callback_at.strip():
        # The appointment's note is the debtor's words (or the agent's note); both are kept.
        words = form.callback_note.strip()
        note = " / ".join(part for part in (words, form.note.strip()) if part) or None
        callback_at = _callback_time(session, attempt, form, note)
    try:
        disposition = admin.record_disposition(session, attempt.call_id, form.code, now, note=note,
                                               promise_amount=amount, promise_due=due,
                                               callback_at=callback_at, requested_by=form.requested_by,
                                               recorded_by=account.username)
    except admin.AppointmentRefused as exc:
        at = f"{callback_at.astimezone(ZoneInfo(exc.timezone or 'UTC')):%Y-%m-%d %H:%M}" if callback_at else ""
        if exc.reason == "outside_window":
            raise Refused("appt.outside_window", 400, at=at, window=exc.window, tz=exc.timezone,
                          allowed="appt.exception_allowed" if exc.exception else "appt.exception_not_allowed") from None
        if exc.reason == "in_past":
            raise Refused("appt.in_past", 400, at=at) from None
        raise Refused("dispo.error", 400, error=str(exc)) from None
    except CampaignError as exc:
        raise Refused("dispo.error", 400, error=str(exc)) from None
    result = {"disposition_id": disposition.id, "appointment": None}
    if callback_at is not None:
        appointment = session.scalar(select(Appointment).where(Appointment.attempt_id == attempt.id)
                                     .order_by(Appointment.id.desc()).limit(1))
        campaign = session.get(Campaign, attempt.campaign_id)
        zone = session.get(Case, attempt.case_id).timezone or campaign.timezone
        outside = admin.appointment_allowed(appointment.at, appointment.requested_by, zone, rules_for(campaign))[1]
        result["appointment"] = {"id": appointment.id, "at": f"{appointment.at.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}",
                                 "timezone": zone, "outside_window": outside,
                                 "requested_by": appointment.requested_by}
    audit(session, now, "disposition", "ok", account=account, subject=f"case {attempt.case_id}",
          detail=f"{attempt.call_id} {form.code}")
    return result


#: A sum of money as an agent types it: digits, an optional decimal point and at most two
#: decimals (no exponents, no Infinity or NaN); at most 12 digits before the point, the
#: promise table's Numeric(14, 2).
AMOUNT = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d{1,12})(?:\.\d{1,2})?")


def promised_amount(text: str) -> str:
    """The amount of a promise to pay, checked: a positive sum of money with at most two
    decimals ("1500", "1,500.50"); anything else (1E+30, Infinity, NaN, -5, 0) is refused."""
    typed = text.strip()
    if not AMOUNT.fullmatch(typed):
        raise Refused("dispo.bad_amount", 400, amount=typed[:40])
    try:
        value = Decimal(typed.replace(",", ""))
    except InvalidOperation:
        raise Refused("dispo.bad_amount", 400, amount=typed[:40]) from None
    if not value.is_finite() or value <= 0 or value >= Decimal(10) ** 12:
        raise Refused("dispo.bad_amount", 400, amount=typed[:40])
    return str(value)


def _callback_time(session: Session, attempt: Attempt, form: DispositionForm, note: str | None) -> dt.datetime:
    """The call-back time the form gives, on the debtor's clock (the case's zone, else the campaign's)."""
    campaign = session.get(Campaign, attempt.campaign_id)
    zone = session.get(Case, attempt.case_id).timezone or campaign.timezone
    if not form.callback_at.strip() or not note:
        raise Refused("appt.missing", 400)
    try:
        local = dt.datetime.fromisoformat(form.callback_at.strip())
    except ValueError:
        raise Refused("appt.bad_time", 400) from None
    return local.replace(tzinfo=ZoneInfo(zone)) if local.tzinfo is None else local


# ---------------------------------------------------------------- the agent's day

def agent_counters(session: Session, agent_id: int, now: dt.datetime, settings: Settings) -> dict:
    """The agent's figures for today (the report's day, in settings.report_timezone) against
    the 200 dials / 50 effective calls targets, computed by campaigns.report.daily."""
    return agents_counters(session, [agent_id], now, settings)[agent_id]


def agents_counters(session: Session, agent_ids: list[int], now: dt.datetime, settings: Settings) -> dict[int, dict]:
    """`agent_counters` for several agents from one run of the daily report."""
    day = now.astimezone(ZoneInfo(settings.report_timezone)).date()
    report = daily(session, day, settings.report_timezone, settings.effective_seconds)
    by_extension = {a.extension: a for a in report.agents}
    extensions = dict(session.execute(select(Agent.id, Agent.extension).where(Agent.id.in_(agent_ids))).all())
    out = {}
    for agent_id in agent_ids:
        row = by_extension.get(extensions.get(agent_id))
        dials, connects, effective, talk = (row.dials, row.connects, row.effective, row.talk_s) if row else (0, 0, 0, 0.0)
        out[agent_id] = {"type": "counters", "day": day.isoformat(), "dials": dials, "dials_target": DIALS_TARGET,
                         "dials_pct": row.dials_pct if row else 0.0, "connects": connects, "effective": effective,
                         "effective_target": EFFECTIVE_TARGET, "effective_pct": row.effective_pct if row else 0.0,
                         "talk_min": round(talk / 60, 1), "effective_seconds": settings.effective_seconds}
    return out
