"""The QA tables: findings of the rule sets on each recording, reviewers' verdicts, status
changes proposed from what debtors said, and the weekly samples. Declared on
``campaigns.schema.Base`` (campaigns/tables.py imports this module for Alembic);
created by migration 0006. The workflow itself is ``recordings.qa``."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.models import Base, UTCDateTime


class FindingRow(Base):
    """One finding of a rule on a recording (``recordings.findings.Finding``, stored).
    ``status`` is confirmed, review (waiting for a reviewer) or false_positive; a verdict
    sets it. ``fingerprint`` makes storing the same findings twice a no-op."""

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    rule_id: Mapped[str] = mapped_column(String(100))
    rule_version: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(10))  # phrase, must_say, order
    category: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    leg: Mapped[str] = mapped_column(String(10))
    offset_s: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    matched_text: Mapped[str] = mapped_column(Text)
    match_type: Mapped[str] = mapped_column(String(10))
    confidence: Mapped[Decimal] = mapped_column(Numeric(4, 3))
    status: Mapped[str] = mapped_column(String(20), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    found_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("recording_id", "fingerprint"),
        Index("ix_findings_category_severity", "category", "severity"),
        Index("ix_findings_rule_id", "rule_id"),
    )


class QaVerdict(Base):
    """A reviewer's verdict: on a finding (confirmed / false_positive) or on a whole sampled
    recording (pass / fail). Kept as history; the latest one counts."""

    __tablename__ = "qa_verdicts"
    id: Mapped[int] = mapped_column(primary_key=True)
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("findings.id"), index=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(100))
    verdict: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (CheckConstraint("(finding_id IS NULL) <> (recording_id IS NULL)", name="one_target"),)


class StatusProposal(Base):
    """A status change the debtor's words call for, waiting for a supervisor:
    proposed -> confirmed (applied to the case / phone) or rejected."""

    __tablename__ = "status_proposals"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    phone_id: Mapped[int | None] = mapped_column(ForeignKey("phones.id"))
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    evidence_finding_id: Mapped[int | None] = mapped_column(ForeignKey("findings.id"))
    rule_id: Mapped[str] = mapped_column(String(100))
    proposal: Mapped[str] = mapped_column(String(20))  # case_status, stop_number, invalid_number, third_party, appointment
    case_status: Mapped[str | None] = mapped_column(String(20))
    appointment_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), default="proposed", index=True)
    proposed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    decision_note: Mapped[str | None] = mapped_column(Text)


class QaSample(Base):
    """One recording drawn for a team's weekly QA sample: which check it belongs to and
    whether it was drawn because it was flagged or at random."""

    __tablename__ = "qa_samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    week: Mapped[str] = mapped_column(String(8))  # ISO week, 2026-W48
    team: Mapped[str] = mapped_column(String(100))
    check_no: Mapped[int] = mapped_column(Integer)  # 1, 2, 3 ...
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    picked: Mapped[str] = mapped_column(String(10))  # flagged, random
    seed: Mapped[str] = mapped_column(String(100))
    drawn_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (UniqueConstraint("week", "team", "recording_id"),)
