"""Accounts, teams, sign-in, lockout, sessions and the audit log.

Sign-in refusals: an unknown name, a wrong password, a disabled account and a locked one are
told apart only in the audit log (`SignInRefused.reason`); the person at the keyboard gets
one answer for all four, after the same work (one scrypt comparison each). Lockout: failed
sign-ins from any addresses lock the account, and a lock is lifted by the right password
from an address the account has signed in from before (`known_address`); see README.

Every function takes an open session (the caller owns the transaction) and `now`; the
administration functions (`create_account`, `disable`, `reset_password`, `unlock`, `create_team`,
`assign_campaign`) are what `dunning console accounts ...` calls. Errors are `AccountError`
with a sentence for the person at the keyboard. Passwords and session tokens are never logged
and never stored in clear: the log says who and what happened, never with which secret.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns.models import Agent, AgentPresence, Campaign

from . import passwords
from .schema import ROLES, Account, AuditEntry, CampaignTeam, ConsoleSession, Team
from .settings import Settings

log = logging.getLogger(__name__)

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
LANGUAGES = ("zh", "en")


class AccountError(ValueError):
    """What was wrong with an account request, said for the person who made it."""


class WeakPassword(AccountError):
    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        super().__init__("the password is refused: " + "; ".join(passwords.PROBLEMS[c] for c in codes))


class SignInRefused(Exception):
    """A sign-in that failed; `reason` is failed, locked or disabled, for the audit log only:
    the page says 'wrong user name or password' for every one, so that neither names nor
    lockouts nor disabled accounts can be probed."""

    def __init__(self, reason: str, until: dt.datetime | None = None) -> None:
        self.reason, self.until = reason, until
        super().__init__(reason)


def audit(session: Session, now: dt.datetime, event: str, result: str, *, account: Account | None = None,
          username: str | None = None, subject: str | None = None, detail: str | None = None,
          remote: str | None = None) -> None:
    """Append one entry to the audit log (never a password or a token)."""
    session.add(AuditEntry(at=now, account_id=account.id if account else None,
                           username=(account.username if account else username or "")[:64], event=event,
                           result=result, subject=subject, detail=detail, remote=remote))
    log.info("audit: %s %s %s%s", account.username if account else username, event, result,
             f" ({subject})" if subject else "")


# ---------------------------------------------------------------- teams

def create_team(session: Session, name: str, now: dt.datetime) -> Team:
    name = name.strip()
    if not name:
        raise AccountError("a team needs a name")
    if session.scalar(select(Team).where(Team.name == name)) is not None:
        raise AccountError(f"a team named {name!r} exists already")
    team = Team(name=name, created_at=now)
    session.add(team)
    session.flush()
    return team


def team_named(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise AccountError(f"no team {name!r} (create it with `dunning console accounts team NAME`)")
    return team


def assign_campaign(session: Session, campaign_name: str, team_name: str) -> None:
    """Let `team_name`'s agents work (and see the cases of) the campaign."""
    campaign = session.scalar(select(Campaign).where(Campaign.name == campaign_name))
    if campaign is None:
        raise AccountError(f"no campaign {campaign_name!r}")
    team = team_named(session, team_name)
    if session.get(CampaignTeam, (campaign.id, team.id)) is None:
        session.add(CampaignTeam(campaign_id=campaign.id, team_id=team.id))
        session.flush()


def team_campaign_ids(session: Session, team_id: int | None) -> set[int]:
    if team_id is None:
        return set()
    return set(session.scalars(select(CampaignTeam.campaign_id).where(CampaignTeam.team_id == team_id)))


# ---------------------------------------------------------------- accounts

def account_named(session: Session, username: str) -> Account:
    account = session.scalar(select(Account).where(Account.username == username.strip().lower()))
    if account is None:
        raise AccountError(f"no account {username!r}")
    return account


def check_password(password: str, username: str, role: str, settings: Settings, display_name: str = "") -> None:
    codes = passwords.problems(password, username=username, role=role, rules=settings.passwords,
                               display_name=display_name)
    if codes:
        raise WeakPassword(codes)


def create_account(session: Session, username: str, role: str, password: str, now: dt.datetime, *,
                   display_name: str = "", extension: str | None = None, team: str | None = None,
                   language: str | None = None, by: str = "cli", settings: Settings = Settings()) -> Account:
    """A new account. An agent's account needs the agent's extension (`dunning agents add`
    first) and a team; one account per agent row. The password must pass the client's rules;
    the account must change it at its first sign-in only if `reset_password` set it later."""
    username = username.strip().lower()
    if not USERNAME.fullmatch(username):
        raise AccountError(f"user name {username!r}: 2 to 64 characters, lower-case letters, digits, '.', '_', '-'")
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if language is not None and language not in LANGUAGES:
        raise AccountError(f"unknown language {language!r}: zh or en")
    if session.scalar(select(Account).where(Account.username == username)) is not None:
        raise AccountError(f"an account {username!r} exists already (one account per person)")
    agent_id = None
    if role == "agent":
        if not extension:
            raise AccountError("an agent's account needs the agent's extension (--extension)")
        if not team:
            raise AccountError("an agent's account needs a team (--team)")
    if extension:
        agent = session.scalar(select(Agent).where(Agent.extension == extension))
        if agent is None:
            raise AccountError(f"no agent with extension {extension} (add it with `dunning agents add`)")
        if session.scalar(select(Account).where(Account.agent_id == agent.id)) is not None:
            raise AccountError(f"extension {extension} already has an account (one account per person)")
        agent_id = agent.id
    team_id = team_named(session, team).id if team else None
    check_password(password, username, role, settings, display_name)
    account = Account(username=username, display_name=display_name or username, role=role, agent_id=agent_id,
                      team_id=team_id, password_hash=passwords.hash_password(password, settings.passwords),
                      password_changed_at=now, must_change_password=False, language=language, created_at=now)
    session.add(account)
    session.flush()
    audit(session, now, "account_created", "ok", username=by, subject=f"account {username}", detail=role)
    return account


def leave_queue(session: Session, account: Account | None, now: dt.datetime) -> None:
    """An agent who signs out (or is disabled) asks the engine to log them out of the queue
    (after the call they are on, if any)."""
    if account is None or account.agent_id is None:
        return
    presence = session.get(AgentPresence, account.agent_id)
    if presence is not None and presence.requested != "logged_out":
        presence.requested, presence.requested_reason, presence.requested_at = "logged_out", None, now


def end_sessions(session: Session, account: Account, now: dt.datetime) -> int:
    """End every open session of the account (their WebSockets close at the next poll)."""
    leave_queue(session, account, now)
    result = session.execute(update(ConsoleSession).where(
        ConsoleSession.account_id == account.id, ConsoleSession.ended_at.is_(None)).values(ended_at=now))
    return result.rowcount or 0


def end_other_sessions(session: Session, account: Account, keep: int | None, now: dt.datetime) -> int:
    """End every open session of the account but `keep` (the one that changed the password)."""
    query = update(ConsoleSession).where(ConsoleSession.account_id == account.id, ConsoleSession.ended_at.is_(None))
    if keep is not None:
        query = query.where(ConsoleSession.id != keep)
    return session.execute(query.values(ended_at=now)).rowcount or 0


def disable(session: Session, username: str, now: dt.datetime, *, by: str = "cli") -> Account:
    """Disable an account at once: its sessions end and it cannot sign in again."""
    account = account_named(session, username)
    if account.disabled_at is None:
        account.disabled_at, account.disabled_by = now, by
    ended = end_sessions(session, account, now)
    audit(session, now, "account_disabled", "ok", username=by, subject=f"account {account.username}",
          detail=f"{ended} session(s) ended")
    return account


def enable(session: Session, username: str, now: dt.datetime, *, by: str = "cli") -> Account:
    account = account_named(session, username)
    account.disabled_at = account.disabled_by = None
    account.failures_since, account.locked_until = now, None
    audit(session, now, "account_enabled", "ok", username=by, subject=f"account {account.username}")
    return account


def reset_password(session: Session, username: str, password: str, now: dt.datetime, *, by: str = "cli",
                   must_change: bool = True, settings: Settings = Settings()) -> Account:
    """Set a new password (checked against the rules). By default the person must choose
    their own at the next sign-in; their open sessions end."""
    account = account_named(session, username)
    check_password(password, account.username, account.role, settings, account.display_name)
    account.password_hash = passwords.hash_password(password, settings.passwords)
    account.password_changed_at, account.must_change_password = now, must_change
    account.failures_since, account.locked_until = now, None
    end_sessions(session, account, now)
    audit(session, now, "password_reset", "ok", username=by, subject=f"account {account.username}")
    return account


def change_own_password(session: Session, account: Account, current: str, new: str, now: dt.datetime,
                        settings: Settings = Settings(), keep_session: int | None = None,
                        remote: str | None = None) -> None:
    """The signed-in person changes their password (needs the current one). Every other
    session of the account ends (a browser left signed in elsewhere, or a stolen cookie);
    `keep_session`, the one that made the change, goes on."""
    if not passwords.verify_password(current, account.password_hash):
        audit(session, now, "password_change", "failed", account=account, remote=remote)
        raise AccountError("the current password is wrong")
    codes = passwords.problems(new, username=account.username, role=account.role, rules=settings.passwords,
                               display_name=account.display_name)
    if passwords.verify_password(new, account.password_hash):
        codes.append("same_as_before")
    if codes:
        raise WeakPassword(codes)
    account.password_hash = passwords.hash_password(new, settings.passwords)
    account.password_changed_at, account.must_change_password = now, False
    ended = end_other_sessions(session, account, keep_session, now)
    audit(session, now, "password_change", "ok", account=account, detail=f"{ended} other session(s) ended",
          remote=remote)


def unlock(session: Session, username: str, now: dt.datetime, *, by: str = "cli") -> Account:
    """Lift a lockout (failed sign-ins are counted afresh from now)."""
    account = account_named(session, username)
    account.locked_until, account.failures_since = None, now
    audit(session, now, "account_unlocked", "ok", username=by, subject=f"account {account.username}")
    return account


@dataclass(frozen=True)
class AccountRow:
    username: str
    display_name: str
    role: str
    extension: str | None
    team: str | None
    state: str  # active, disabled, locked
    password_changed_at: dt.datetime
    locked_until: dt.datetime | None = None


def list_accounts(session: Session, now: dt.datetime) -> list[AccountRow]:
    teams = {t.id: t.name for t in session.scalars(select(Team))}
    agents = {a.id: a.extension for a in session.scalars(select(Agent))}
    rows = []
    for a in session.scalars(select(Account).order_by(Account.username)):
        state = ("disabled" if a.disabled_at else "locked" if is_locked(a, now) else "active")
        rows.append(AccountRow(a.username, a.display_name, a.role, agents.get(a.agent_id), teams.get(a.team_id),
                               state, a.password_changed_at, a.locked_until if state == "locked" else None))
    return rows


#: The audit events an administrator sees as lock events (the accounts page lists them).
LOCK_EVENTS = ("account_locked", "lock_lifted", "account_unlocked", "sign_in_throttled")


@dataclass(frozen=True)
class LockEvent:
    at: dt.datetime
    event: str
    username: str
    subject: str | None
    detail: str | None
    remote: str | None


def lock_events(session: Session, limit: int = 50) -> list[LockEvent]:
    """The newest lockouts, lifted locks, unlocks and throttled sources, newest first."""
    rows = session.scalars(select(AuditEntry).where(AuditEntry.event.in_(LOCK_EVENTS))
                           .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))
    return [LockEvent(r.at, r.event, r.username, r.subject, r.detail, r.remote) for r in rows]


# ---------------------------------------------------------------- signing in

def is_locked(account: Account, now: dt.datetime) -> bool:
    return account.locked_until is not None and now < account.locked_until


def recent_failures(session: Session, account: Account, now: dt.datetime, settings: Settings) -> int:
    since = now - settings.failure_window
    if account.failures_since is not None and account.failures_since > since:
        since = account.failures_since
    return session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.account_id == account.id, AuditEntry.event == "sign_in", AuditEntry.result == "failed",
        AuditEntry.at >= since)) or 0


def failure_addresses(session: Session, account: Account, now: dt.datetime, settings: Settings) -> int:
    """From how many source addresses the failures `recent_failures` counts came."""
    since = now - settings.failure_window
    if account.failures_since is not None and account.failures_since > since:
        since = account.failures_since
    return len(set(session.scalars(select(AuditEntry.remote).where(
        AuditEntry.account_id == account.id, AuditEntry.event == "sign_in", AuditEntry.result == "failed",
        AuditEntry.at >= since))))


def known_address(session: Session, account: Account, address: str | None) -> bool:
    """Whether the account has signed in (successfully) from `address` before."""
    if not address:
        return False
    return session.scalar(select(AuditEntry.id).where(
        AuditEntry.account_id == account.id, AuditEntry.event == "sign_in", AuditEntry.result == "ok",
        AuditEntry.remote == address).limit(1)) is not None


FOREVER = dt.timedelta(days=365 * 100)


def authenticate(session: Session, username: str, password: str, now: dt.datetime, settings: Settings,
                 remote: str | None = None) -> Account:
    """The account, when `password` is right and the account may sign in; else SignInRefused
    (and the attempt is in the audit log either way).

    Every path compares exactly one scrypt hash (a dummy one at the same cost for an unknown
    name), so that an unknown name, a wrong password, a disabled and a locked account take the
    same time. A wrong password counts towards the lockout, whichever address it came from. A
    locked account is refused even with the right password, except from an address it has
    signed in from before: that lifts the lock (an attacker elsewhere cannot keep its owner
    out)."""
    typed = username.strip().lower()[:64]
    account = session.scalar(select(Account).where(Account.username == typed))
    if account is None:
        passwords.verify_password(password, passwords.dummy_hash(settings.passwords.scrypt_n))
        # What was typed is not kept: people type their password into the name field.
        audit(session, now, "sign_in", "failed", username="(unknown)", detail="unknown user name", remote=remote)
        raise SignInRefused("failed")
    right = passwords.verify_password(password, account.password_hash)
    if account.disabled_at is not None:
        audit(session, now, "sign_in", "disabled", account=account, remote=remote)
        raise SignInRefused("disabled")
    if is_locked(account, now):
        if not (right and known_address(session, account, remote)):
            # The right password from an unknown address is worth an administrator's look.
            audit(session, now, "sign_in", "locked", account=account, remote=remote,
                  detail="the right password from an address this account never signed in from" if right else None)
            raise SignInRefused("locked", account.locked_until)
        audit(session, now, "lock_lifted", "ok", account=account, subject=f"account {account.username}",
              detail="the right password from an address this account signed in from before", remote=remote)
    elif not right:
        audit(session, now, "sign_in", "failed", account=account, detail="wrong password", remote=remote)
        session.flush()
        failures = recent_failures(session, account, now, settings)
        if failures >= settings.max_failures:
            account.locked_until = now + (settings.lockout or FOREVER)
            sources = failure_addresses(session, account, now, settings)
            audit(session, now, "account_locked", "locked", account=account, subject=f"account {account.username}",
                  detail=(f"{failures} failed sign-ins within {settings.failure_window} from {sources} "
                          f"address(es); locked until {account.locked_until:%Y-%m-%d %H:%M} UTC"), remote=remote)
            raise SignInRefused("locked", account.locked_until)
        raise SignInRefused("failed")
    account.failures_since, account.locked_until = now, None
    audit(session, now, "sign_in", "ok", account=account, remote=remote)
    return account


def must_change_password(account: Account, now: dt.datetime, settings: Settings) -> bool:
    """Whether every page but the password page is closed to the account until it changes
    its password (reset by an administrator, or an administrator's monthly rotation)."""
    return account.must_change_password or passwords.rotation_due(
        account.role, account.password_changed_at, now, settings.passwords)


# ---------------------------------------------------------------- sessions

def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def start_session(session: Session, account: Account, now: dt.datetime, settings: Settings,
                  remote: str | None = None) -> tuple[str, ConsoleSession]:
    """A new session; returns the cookie value (shown to nobody else, stored only hashed)."""
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(token_sha256=token_digest(token), account_id=account.id,
                         csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
                         expires_at=now + settings.session_max_age, remote=remote)
    session.add(row)
    session.flush()
    return token, row


def session_for(session: Session, token: str | None, now: dt.datetime,
                settings: Settings) -> tuple[ConsoleSession, Account] | None:
    """The live session and its account for a cookie value, or None: unknown, ended, expired,
    idle too long, or the account disabled (checked on every request)."""
    if not token:
        return None
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_sha256 == token_digest(token)))
    if row is None or row.ended_at is not None:
        return None
    if now >= row.expires_at or now - row.last_seen_at >= settings.session_idle:
        row.ended_at = now
        return None
    account = session.get(Account, row.account_id)
    if account is None or account.disabled_at is not None:
        row.ended_at = now
        return None
    if (now - row.last_seen_at).total_seconds() >= 30:
        row.last_seen_at = now
    return row, account


def end_replaced_session(session: Session, token: str | None, account: Account, now: dt.datetime) -> None:
    """A new sign-in in a browser ends the session its old cookie held (of whichever account):
    the old cookie is worth nothing from then on, wherever a copy of it went."""
    if not token:
        return
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_sha256 == token_digest(token)))
    if row is None or row.ended_at is not None:
        return
    row.ended_at = now
    old = session.get(Account, row.account_id)
    if old is not None and old.id != account.id:
        leave_queue(session, old, now)
    audit(session, now, "sign_out", "ok", account=old, detail="replaced by a new sign-in in the same browser")


def end_session(session: Session, token: str | None, now: dt.datetime) -> Account | None:
    if not token:
        return None
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_sha256 == token_digest(token)))
    if row is None or row.ended_at is not None:
        return None
    row.ended_at = now
    account = session.get(Account, row.account_id)
    leave_queue(session, account, now)
    audit(session, now, "sign_out", "ok", account=account)
    return account


def live_session_ids(session: Session, ids: set[int], now: dt.datetime, settings: Settings) -> set[int]:
    """Which of the session ids are still usable (for closing WebSockets of ended sessions)."""
    if not ids:
        return set()
    rows = session.execute(select(ConsoleSession.id, ConsoleSession.expires_at, ConsoleSession.last_seen_at,
                                  Account.disabled_at)
                           .join(Account, Account.id == ConsoleSession.account_id)
                           .where(ConsoleSession.id.in_(ids), ConsoleSession.ended_at.is_(None))).all()
    # A page with an open WebSocket is in use: idleness is judged by requests, so a long call
    # with no clicks keeps the session (its socket is the proof of life), but not past max age.
    return {sid for sid, expires, _seen, disabled in rows if disabled is None and now < expires}


def touch_sessions(session: Session, ids: set[int], now: dt.datetime) -> None:
    if ids:
        session.execute(update(ConsoleSession).where(ConsoleSession.id.in_(ids), ConsoleSession.ended_at.is_(None))
                        .values(last_seen_at=now))
