"""The campaign's tables: clients, batches, cases, phones, campaigns, agents, attempts,
recordings and the vault's, presence, appointments, the hopper's dial states, alerts.

SQLAlchemy 2.0 typed models on ``campaigns.schema.Base``; the schema itself is created and
changed only by the Alembic migrations in ``campaigns/migrations`` (a test checks that they
agree with every table, campaigns/tables.py). Timestamps are ``UTCDateTime``; money is
``Numeric(14, 2)``, never float. The enums are in campaigns/enums.py, ``Base`` and the column
types in campaigns/schema.py; both are imported here too, as the tables' vocabulary.
"""
from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

# The tables' vocabulary, imported from here by most of the code: the enums and Base.
from .enums import AttemptState, CampaignStatus, CaseStatus, HopperPhase, PhoneRole  # noqa: F401
from .schema import Base, UTCDateTime


def _enum(cls: type[enum.Enum], length: int = 20) -> String:
    return String(length)


class Client(Base):
    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Batch(Base):
    """One file the bank delegated (委托批次), imported whole or not at all."""

    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    name: Mapped[str] = mapped_column(String(200))
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (UniqueConstraint("client_id", "sha256"),)


class Case(Base):
    """A debtor's case (催收档案) as delegated by a client."""

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    reference: Mapped[str] = mapped_column(String(64))  # the bank's case / account number
    debtor_name: Mapped[str] = mapped_column(String(200))
    id_number: Mapped[str | None] = mapped_column(String(18))  # 居民身份证号, checked on import
    amount_due: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    days_past_due: Mapped[int] = mapped_column(Integer)
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(_enum(CaseStatus), default=CaseStatus.NEW.value)
    timezone: Mapped[str | None] = mapped_column(String(64))  # overrides the campaign's
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # other columns of the bank's file
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    phones: Mapped[list[Phone]] = relationship(back_populates="case", order_by="Phone.id")
    __table_args__ = (UniqueConstraint("client_id", "reference"),)


class Phone(Base):
    __tablename__ = "phones"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    role: Mapped[str] = mapped_column(_enum(PhoneRole))
    e164: Mapped[str] = mapped_column(String(20))         # +8613800138000
    dial: Mapped[str] = mapped_column(String(20))         # what the trunk is given: 13800138000
    extension: Mapped[str | None] = mapped_column(String(10))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    relation: Mapped[str | None] = mapped_column(String(40))
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    # Stop calling this number (displeasure or complaint intent on a call), and why.
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    do_not_call_reason: Mapped[str | None] = mapped_column(Text)
    case: Mapped[Case] = relationship(back_populates="phones")


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    status: Mapped[str] = mapped_column(_enum(CampaignStatus), default=CampaignStatus.DRAFT.value)
    mode: Mapped[str] = mapped_column(String(20), default="progressive")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class CampaignCase(Base):
    __tablename__ = "campaign_cases"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    extension: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Attempt(Base):
    """One dial: written before the Originate, completed from what Asterisk reported."""

    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(63), unique=True)  # the Originate's ChannelId
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    phone_id: Mapped[int] = mapped_column(ForeignKey("phones.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    number: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(_enum(AttemptState), default=AttemptState.PLANNED.value)
    planned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    dialed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    bridged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(20))
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    #: The Asterisk server it was dialled on (`dunning run --server`); None: the only one.
    server: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        Index("ix_attempts_phone_planned", "phone_id", "planned_at"),
        Index("ix_attempts_case_planned", "case_id", "planned_at"),
        Index("ix_attempts_agent_planned", "agent_id", "planned_at"),
        Index("ix_attempts_campaign_planned", "campaign_id", "planned_at"),
        Index("ix_attempts_campaign_state", "campaign_id", "state"),
    )


class Recording(Base):
    """The recording of one answered attempt: its files in the recordings directory."""

    __tablename__ = "recordings"
    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), unique=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    seconds: Mapped[float] = mapped_column(Numeric(10, 2))
    files: Mapped[list[RecordingFile]] = relationship(back_populates="recording", order_by="RecordingFile.leg")


class RecordingFile(Base):
    __tablename__ = "recording_files"
    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    leg: Mapped[str] = mapped_column(String(10))  # mix, agent, debtor
    path: Mapped[str] = mapped_column(String(500), unique=True)  # relative to the recordings dir
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Numeric(10, 2))
    recording: Mapped[Recording] = relationship(back_populates="files")
    __table_args__ = (UniqueConstraint("recording_id", "leg"),)


class Disposition(Base):
    """What the agent recorded after a call (result code, notes)."""

    __tablename__ = "dispositions"
    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    code: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class PromiseToPay(Base):
    __tablename__ = "promises_to_pay"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    disposition_id: Mapped[int] = mapped_column(ForeignKey("dispositions.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    due_date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open, kept, broken
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# ── The recording vault (recordings/vault.py, retention.py, integrity.py, access.py) ──


class VaultFile(Base):
    """A call's recording as the vault keeps it: one stereo file (left = agent, right =
    debtor) and a JSON metadata file beside it, both read-only, their checksums, and how
    long they must be kept. Purging removes the files and marks the row; the row stays."""

    __tablename__ = "vault_files"
    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), unique=True)
    path: Mapped[str] = mapped_column(String(500), unique=True)  # relative to the recordings dir
    codec: Mapped[str] = mapped_column(String(20))
    layout: Mapped[str] = mapped_column(String(40))  # left=agent,right=debtor
    sample_rate: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Numeric(10, 2))
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    metadata_path: Mapped[str] = mapped_column(String(500), unique=True)
    metadata_sha256: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    retain_until: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    stored_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # The last time the checksums were compared (ingest, verify) and what was found.
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    integrity: Mapped[str] = mapped_column(String(10), default="ok")  # ok, missing, changed
    purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    purged_by: Mapped[str | None] = mapped_column(String(100))
    recording: Mapped[Recording] = relationship()


class RetentionPolicy(Base):
    """How long a client's recordings are kept, in years (never below the legal minimum)."""

    __tablename__ = "retention_policies"
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), primary_key=True)
    years: Mapped[int] = mapped_column(Integer)
    set_by: Mapped[str] = mapped_column(String(100))
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class LegalHold(Base):
    """Keep a case's recordings, or one recording, past their retention until released."""

    __tablename__ = "legal_holds"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(100))
    placed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    released_by: Mapped[str | None] = mapped_column(String(100))
    release_reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (CheckConstraint("(case_id IS NULL) <> (recording_id IS NULL)", name="one_target"),)


class PurgeAudit(Base):
    """One row per file the purge removed. Append-only: the code only inserts, and the
    migration adds triggers that refuse UPDATE and DELETE on both databases."""

    __tablename__ = "purge_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    purged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    purged_by: Mapped[str] = mapped_column(String(100))
    recording_id: Mapped[int] = mapped_column(Integer, index=True)  # no foreign key: outlives anything
    call_id: Mapped[str] = mapped_column(String(63))
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))  # deleted, already_absent
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    retain_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class RecordingAccess(Base):
    """Who played or exported which recording, when, and why. Append-only like PurgeAudit."""

    __tablename__ = "recording_access"
    id: Mapped[int] = mapped_column(primary_key=True)
    accessed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    accessed_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(10))  # play, export
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    target: Mapped[str | None] = mapped_column(Text)  # where an export was written
    sha256: Mapped[str] = mapped_column(String(64))


# ── What the engine and the console tell each other (they may run in different processes) ──

class AgentPresence(Base):
    """One row per agent: what the agent asked for in the console (``requested``: ready,
    paused, logged_out, with a reason code) and what the engine's pool says they are
    (``state``, an ``dialer.agents.AgentState`` value, and the call they are reserved for or
    on). The console writes the first half, the engine the second."""

    __tablename__ = "agent_presence"
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    requested: Mapped[str] = mapped_column(String(20), default="logged_out")
    requested_reason: Mapped[str | None] = mapped_column(String(40))
    requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(20), default="logged_out")
    state_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    call_id: Mapped[str | None] = mapped_column(String(63))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    #: The agent's persistent line (calling, up, down, lost) and since when; None when the
    #: engine calls the agent's phone per debtor.
    line: Mapped[str | None] = mapped_column(String(10))
    line_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class EngineStatus(Base):
    """The running engine's live figures for one campaign, refreshed every few seconds."""

    __tablename__ = "engine_status"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20))
    dial_level: Mapped[float] = mapped_column(Numeric(6, 2))  # lines per working agent
    lines: Mapped[int] = mapped_column(Integer)  # calls in flight now
    agents: Mapped[int] = mapped_column(Integer)  # agents logged in
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Appointment(Base):
    """A time the debtor asked to be called (与客户约定): the only exception to the calling
    window, recorded with who asked, who wrote it down, when, and the debtor's words or the
    agent's note. ``kept_attempt_id`` is the dial that kept it."""

    __tablename__ = "appointments"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    phone_id: Mapped[int | None] = mapped_column(ForeignKey("phones.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    requested_by: Mapped[str] = mapped_column(String(20))  # debtor, third_party, agent
    note: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id"))  # the call it was agreed on
    status: Mapped[str] = mapped_column(String(10), default="open")  # open, kept, cancelled
    kept_attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id"))



class DialState(Base):
    """A cache of the policy's answer for one case of one campaign: when it may next be
    dialled, until when that answer holds, the rule that blocks it, its follow-up, and its
    place in the queue. Kept up to date by campaigns/hopper.py; rebuilt from scratch by
    `dunning campaign rebuild`, compared with the policy by `dunning campaign check`."""

    __tablename__ = "dial_states"
    campaign_id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(primary_key=True, index=True)
    phase: Mapped[int] = mapped_column(Integer)  # HopperPhase
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # the queue's order: amount due desc,
    days_past_due: Mapped[int] = mapped_column(Integer)   # days past due desc, case id
    zone: Mapped[str] = mapped_column(String(64))
    eligible_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    reopen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    blocked_rule: Mapped[str | None] = mapped_column(String(40))
    follow_up_kind: Mapped[str | None] = mapped_column(String(20))
    follow_up_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    assigned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_dialled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_abandoned: Mapped[bool] = mapped_column(Boolean, default=False)
    needs_agent_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    computed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        Index("ix_dial_states_queue", "campaign_id", "phase", amount_cents.desc(), days_past_due.desc(), "case_id"),
        Index("ix_dial_states_eligible", "campaign_id", "phase", "eligible_at"),
        Index("ix_dial_states_valid", "campaign_id", "phase", "valid_until"),
        Index("ix_dial_states_figures", "campaign_id", "phase", "blocked_rule", "eligible_at"),
        # A case taken out of a campaign takes its state with it.
        ForeignKeyConstraint(["campaign_id", "case_id"], ["campaign_cases.campaign_id", "campaign_cases.case_id"],
                             ondelete="CASCADE"),
    )


class HopperClock(Base):
    """The latest moment a campaign's dial states were computed at: a question about an
    earlier moment (a clock set back) makes every state of the campaign to be asked again."""

    __tablename__ = "hopper_clocks"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    clock: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Alert(Base):
    """Something a supervisor must see: an agent behind target at mid-day, a queue that will
    not be covered in time, follow-ups overdue. ``key`` makes raising one idempotent (a job
    that runs twice, or again after a restart, does not double it)."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))  # behind_target, coverage_at_risk, follow_ups_overdue
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
