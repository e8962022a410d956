"""The ledger of attempts: a dial's row from PLANNED (written before anything is sent to
Asterisk, so that a dial can never happen without its row) through DIALING to ENDED with an
outcome, and the recording linked to it."""
from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from .case_views import ABANDONED
from .models import Agent, Appointment, Attempt, AttemptState, Campaign, Phone, Recording, RecordingFile
from .policy import AppointmentView

#: Q.850 causes that say the number does not exist (unallocated, invalid format): such a
#: phone is marked invalid and is not dialled again.
INVALID_CAUSES = frozenset({1, 28})
__all__ = ["ABANDONED", "INVALID_CAUSES", "NotDialled", "Planned", "attach_recording", "finish", "in_flight",
           "keep_appointment", "latest_dials", "mark_dialing", "set_agent"]


class NotDialled(str, enum.Enum):
    """Outcomes of attempts that never reached Asterisk, or whose fate was lost."""

    CANCELLED = "cancelled"      # planned, then the calling window closed before the dial
    NOT_SENT = "not_sent"        # Asterisk was not reachable: nothing was sent
    INTERRUPTED = "interrupted"  # the engine stopped mid-call and Asterisk no longer had it


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


def keep_appointment(session: Session, case_id: int, kept: AppointmentView, attempt_id: int) -> None:
    row = session.scalar(select(Appointment).where(
        Appointment.case_id == case_id, Appointment.at == kept.at, Appointment.status == "open"))
    if row is not None:
        row.status, row.kept_attempt_id = "kept", attempt_id


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


def in_flight(session: Session, campaign: Campaign, server: str | None = None) -> list[Attempt]:
    """Attempts an earlier run planned or dialled on `server` and never finished (after a
    crash). Each server's engine takes up its own: another server's calls are not its to
    follow (None: the attempts of engines that named no server)."""
    on_server = Attempt.server.is_(None) if server is None else Attempt.server == server
    return list(session.scalars(select(Attempt).where(
        Attempt.campaign_id == campaign.id, Attempt.state != AttemptState.ENDED.value, on_server)
        .order_by(Attempt.id)))


def latest_dials(session: Session, campaign_id: int, limit: int):
    """The times (dialed_at, answered_at, bridged_at, ended_at) of the campaign's latest
    `limit` dials, newest first: what the simulator learns from, without loading a large
    campaign's whole history."""
    return session.execute(select(Attempt.dialed_at, Attempt.answered_at, Attempt.bridged_at, Attempt.ended_at)
                           .where(Attempt.campaign_id == campaign_id, Attempt.dialed_at.is_not(None))
                           .order_by(Attempt.planned_at.desc()).limit(limit))
