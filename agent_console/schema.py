"""The console's tables: teams, accounts, sessions and the audit log.

Declared on ``campaigns.schema.Base``; campaigns/tables.py imports this module so that Alembic
compares them with the migration ``0005_console``. Passwords are stored only
as scrypt hashes (``agent_console.passwords``); sessions only as the SHA-256 of their cookie
value, so a copy of the database lets nobody sign in or ride a session.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from campaigns import models  # noqa: F401  the campaign tables the foreign keys name
from campaigns.schema import Base, UTCDateTime

#: The roles, from most to least powerful. Administrators manage accounts; supervisors watch
#: the wallboard and pause campaigns; QA staff review recordings; agents take calls.
ROLES = ("administrator", "supervisor", "qa", "agent")


class Team(Base):
    """A group of agents (and their supervisor); campaigns are assigned to teams."""

    __tablename__ = "console_teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class CampaignTeam(Base):
    """Which teams work a campaign: an agent sees only cases of their team's campaigns."""

    __tablename__ = "campaign_teams"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("console_teams.id"), primary_key=True)


class Account(Base):
    """One person's sign-in (one account per person). An agent's account is linked to the
    agent's row (their extension) and to a team."""

    __tablename__ = "console_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), unique=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("console_teams.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # scrypt$n$r$p$salt$hash, never the password
    password_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))  # zh, en; None: the browser's
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    disabled_by: Mapped[str | None] = mapped_column(String(64))
    # Failed sign-ins are counted from the audit log since this moment (the last success or
    # unlock) within the lockout window; locked_until is set when there were too many.
    failures_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "console_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("console_accounts.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    remote: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(Base):
    """Append-only (the migration adds triggers that refuse UPDATE and DELETE): sign-ins
    (ok, failed, locked, disabled), sign-outs, case views, recording playbacks, and what
    administrators and supervisors did to accounts and campaigns."""

    __tablename__ = "console_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    account_id: Mapped[int | None] = mapped_column(Integer, index=True)  # no foreign key: outlives anything
    username: Mapped[str] = mapped_column(String(64))  # as typed, for failed sign-ins of unknown names
    event: Mapped[str] = mapped_column(String(30))  # sign_in, sign_out, case_view, recording_play, ...
    result: Mapped[str] = mapped_column(String(20))  # ok, failed, locked, disabled, refused
    subject: Mapped[str | None] = mapped_column(String(100))  # case 17, recording 4, account wang
    detail: Mapped[str | None] = mapped_column(Text)
    remote: Mapped[str | None] = mapped_column(String(64))
