"""How long recordings are kept, legal holds, and the purge with its append-only audit.

A recording may go once ``retain_until = recorded_at + retention`` has passed, where the
retention is the client's, in whole years, never below the legal minimum of 2 years (a
recording is never purged before ``recorded_at + 2 years`` whatever its row says), and
only while no legal hold covers it: a hold on its case or on the recording itself, until
released.

The purge removes a recording's stored files (the vault's stereo file and metadata file,
and the leg files ``recordings.store`` kept), marks its VaultFile purged, and records every
file it removed twice: a line in a JSON-lines file opened in append mode and fsynced
*before* the file goes (``<recordings>/audit/purge.jsonl`` by default), and a row in the
``purge_audit`` table, which the code only inserts into and the database refuses to update
or delete. A purge interrupted by a crash is completed by the next one, which records files
already gone as ``already_absent``.

Two purges never overlap: each holds an exclusive lock on ``<recordings>/audit/purge.lock``
(`purge_lock`, flock: every process on the host; over NFS, Linux makes it a lock the other
clients see too) from its plan to its commit, and one that finds the lock taken does nothing.
The daily purge is a job of the database's APScheduler store (`schedule_purge`, one fixed id:
`dunning run` registers it, `dunning schedule` lists it); whichever scheduler is up runs it,
and one missed while none was runs once when one starts again. A second run the same day
finds nothing left to delete.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import enum
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import utc_now
from campaigns.models import (
    Attempt,
    Case,
    Client,
    LegalHold,
    PurgeAudit,
    Recording,
    RecordingFile,
    RetentionPolicy,
    VaultFile,
)

from .errors import NotFound, RetentionTooShort, VaultError

MIN_RETENTION_YEARS = 2
#: Where the JSON-lines copy of the purge audit goes, relative to the recordings dir.
AUDIT_DIR = "audit"
AUDIT_LOG = f"{AUDIT_DIR}/purge.jsonl"
PURGE_LOCK = f"{AUDIT_DIR}/purge.lock"
PURGE_JOB_ID = "dunning-recordings-purge"

log = logging.getLogger(__name__)


class PurgeRunning(VaultError):
    """Another purge holds the lock on the recordings dir."""


def add_years(at: dt.datetime, years: int) -> dt.datetime:
    """The same moment `years` later; 29 February becomes 1 March (later, never earlier)."""
    try:
        return at.replace(year=at.year + years)
    except ValueError:
        return at.replace(year=at.year + years, month=3, day=1)


def _years(n: int) -> str:
    return f"{n} year" if n == 1 else f"{n} years"


def check_retention(client_code: str, years: int) -> None:
    if years < MIN_RETENTION_YEARS:
        raise RetentionTooShort(f"retention for client {client_code}: {_years(years)} is below the legal minimum "
                                f"of {_years(MIN_RETENTION_YEARS)}")


def retention_years(session: Session, client_id: int) -> int:
    """The client's retention; the legal minimum where none was set."""
    policy = session.get(RetentionPolicy, client_id)
    return policy.years if policy else MIN_RETENTION_YEARS


def set_retention(session: Session, client_code: str, years: int, by: str, now: dt.datetime) -> int:
    """Set a client's retention and move the date of each of its kept recordings with it.
    Returns how many recordings were updated."""
    client = session.scalar(select(Client).where(Client.code == client_code))
    if client is None:
        raise NotFound(f"no client {client_code!r}: `dunning clients` lists them")
    check_retention(client.code, years)
    policy = session.get(RetentionPolicy, client.id)
    if policy is None:
        session.add(RetentionPolicy(client_id=client.id, years=years, set_by=by, set_at=now))
    else:
        policy.years, policy.set_by, policy.set_at = years, by, now
    stored = session.scalars(select(VaultFile).join(Recording).join(Attempt).join(Case).where(
        Case.client_id == client.id, VaultFile.purged_at.is_(None))).all()
    for f in stored:
        f.retain_until = add_years(f.recorded_at, years)
    return len(stored)


@dataclass(frozen=True)
class HoldTarget:
    case_id: int | None = None
    recording_id: int | None = None
    label: str = ""


def hold_target(session: Session, text: str) -> HoldTarget:
    """``case:REFERENCE``, ``case:CLIENT/REFERENCE``, ``recording:ID`` or ``recording:CALL_ID``."""
    kind, _, name = text.partition(":")
    if kind == "recording" and name:
        recording = find_recording(session, name)
        return HoldTarget(recording_id=recording.id, label=f"recording {recording.id}")
    if kind != "case" or not name:
        raise NotFound(f"{text!r}: write case:REFERENCE (or case:CLIENT/REFERENCE) or recording:ID (or recording:CALL_ID)")
    client_code, _, reference = name.rpartition("/")
    query = select(Case).join(Client).where(Case.reference == reference)
    cases = session.scalars(query.where(Client.code == client_code) if client_code else query).all()
    if not cases:
        raise NotFound(f"no case {name!r}")
    if len(cases) > 1:
        raise NotFound(f"case {reference!r} exists for several clients: write case:CLIENT/{reference}")
    return HoldTarget(case_id=cases[0].id, label=f"case {name}")


def find_recording(session: Session, text: str) -> Recording:
    """A recording by its number or by its call's id (the name of its files)."""
    query = select(Recording).join(Attempt)
    recording = session.scalar(query.where(Recording.id == int(text)) if text.isdigit()
                               else query.where(Attempt.call_id == text))
    if recording is None:
        raise NotFound(f"no recording {text!r}: give its number or its call id")
    return recording


def place_hold(session: Session, target: HoldTarget, by: str, reason: str, now: dt.datetime) -> LegalHold:
    if not reason.strip() or not by.strip():
        raise VaultError("a legal hold needs who places it and why (--reason)")
    hold = LegalHold(case_id=target.case_id, recording_id=target.recording_id, reason=reason, placed_by=by,
                     placed_at=now)
    session.add(hold)
    session.flush()
    return hold


def release_hold(session: Session, hold_id: int, by: str, reason: str, now: dt.datetime) -> LegalHold:
    hold = session.get(LegalHold, hold_id)
    if hold is None or hold.released_at is not None:
        raise NotFound(f"no active legal hold {hold_id}")
    hold.released_at, hold.released_by, hold.release_reason = now, by, reason
    return hold


def active_holds(session: Session) -> tuple[set[int], set[int]]:
    """(case ids, recording ids) under an active legal hold."""
    rows = session.execute(select(LegalHold.case_id, LegalHold.recording_id).where(LegalHold.released_at.is_(None)))
    cases, recordings = set(), set()
    for case_id, recording_id in rows:
        (cases.add(case_id) if case_id is not None else recordings.add(recording_id))
    return cases, recordings


class Verdict(str, enum.Enum):
    RETAINED = "retained"
    HELD = "held"
    PURGE = "purge"


def verdict(recorded_at: dt.datetime, retain_until: dt.datetime, held: bool, now: dt.datetime) -> Verdict:
    """Whether a recording may go now. The legal minimum is applied here again, whatever
    `retain_until` says."""
    if now < max(retain_until, add_years(recorded_at, MIN_RETENTION_YEARS)):
        return Verdict.RETAINED
    return Verdict.HELD if held else Verdict.PURGE


@dataclass(frozen=True)
class DueRecording:
    recording_id: int
    call_id: str
    recorded_at: dt.datetime
    retain_until: dt.datetime
    files: tuple[str, ...]


@dataclass
class PurgeReport:
    dry_run: bool
    purged: list[DueRecording] = field(default_factory=list)
    held: list[DueRecording] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        out = [f"{verb} recording {r.recording_id} ({r.call_id}, recorded {r.recorded_at:%Y-%m-%d}, kept until "
               f"{r.retain_until:%Y-%m-%d}): {', '.join(r.files)}" for r in self.purged]
        out += [f"kept on legal hold: recording {r.recording_id} ({r.call_id}, past {r.retain_until:%Y-%m-%d})"
                for r in self.held]
        out += [f"could not delete: {f}" for f in self.failures]
        out.append(f"{len(self.purged)} recording(s) {verb}, {len(self.held)} kept on legal hold"
                   + (" (dry run: nothing was changed)" if self.dry_run else ""))
        return out


def _audit_record(row: PurgeAudit) -> dict:
    return {"purged_at": row.purged_at.isoformat(), "purged_by": row.purged_by, "recording_id": row.recording_id,
            "call_id": row.call_id, "path": row.path, "sha256": row.sha256, "bytes": row.bytes, "action": row.action,
            "recorded_at": row.recorded_at.isoformat(), "retain_until": row.retain_until.isoformat()}


def _append(handle, record: dict) -> None:
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _files_of(session: Session, stored: VaultFile, root: Path) -> list[tuple[str, str, int, RecordingFile | None]]:
    metadata = root / stored.metadata_path
    files = [(stored.path, stored.sha256, stored.bytes, None),
             (stored.metadata_path, stored.metadata_sha256, metadata.stat().st_size if metadata.exists() else 0, None)]
    legs = session.scalars(select(RecordingFile).where(RecordingFile.recording_id == stored.recording_id)
                           .order_by(RecordingFile.id))
    return files + [(leg.path, leg.sha256, leg.bytes, leg) for leg in legs]


def _plan(session: Session, root: Path, now: dt.datetime) -> tuple[list[tuple[VaultFile, DueRecording, list]],
                                                                     list[DueRecording]]:
    """What may go now (with its files) and what is past its date but held."""
    held_cases, held_recordings = active_holds(session)
    candidates = session.execute(
        select(VaultFile, Attempt.case_id, Attempt.call_id).join(Recording, VaultFile.recording_id == Recording.id)
        .join(Attempt, Recording.attempt_id == Attempt.id)
        .where(VaultFile.purged_at.is_(None), VaultFile.retain_until <= now).order_by(VaultFile.recorded_at)).all()
    due, held = [], []
    for stored, case_id, call_id in candidates:
        decision = verdict(stored.recorded_at, stored.retain_until,
                           case_id in held_cases or stored.recording_id in held_recordings, now)
        if decision is Verdict.RETAINED:
            continue
        files = _files_of(session, stored, root)
        item = DueRecording(stored.recording_id, call_id, stored.recorded_at, stored.retain_until,
                            tuple(path for path, *_ in files))
        if decision is Verdict.HELD:
            held.append(item)
        else:
            due.append((stored, item, files))
    return due, held


def _delete(session: Session, root: Path, stored: VaultFile, item: DueRecording, files: list, handle,
            now: dt.datetime, actor: str) -> list[str]:
    """Remove one recording's files, auditing each; the failures, if any."""
    failures = []
    for path, checksum, size, leg in files:
        row = PurgeAudit(purged_at=now, purged_by=actor, recording_id=stored.recording_id, call_id=item.call_id,
                         path=path, sha256=checksum, bytes=size,
                         action="deleted" if (root / path).exists() else "already_absent",
                         recorded_at=stored.recorded_at, retain_until=stored.retain_until)
        _append(handle, _audit_record(row))  # written ahead of the deletion
        try:
            (root / path).unlink(missing_ok=True)
        except OSError as exc:
            _append(handle, {**_audit_record(row), "action": "failed", "error": str(exc)})
            failures.append(f"{path}: {exc}")
            continue
        session.add(row)
        if leg is not None:
            session.delete(leg)
    if not failures:
        stored.purged_at, stored.purged_by = now, actor
    session.flush()
    return failures


def purge(session: Session, root: Path, now: dt.datetime, actor: str, dry_run: bool = False,
          audit_log: Path | None = None) -> PurgeReport:
    """Delete the recordings past their retention and not on legal hold (see the module
    doc). With `dry_run` nothing is touched and the report says what would go."""
    due, held = _plan(session, root, now)
    report = PurgeReport(dry_run, [item for _, item, _ in due], held)
    if dry_run or not due:
        return report
    log_path = audit_log or root / AUDIT_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as handle:
        for stored, item, files in due:
            report.failures += _delete(session, root, stored, item, files, handle, now, actor)
    return report


@contextlib.contextmanager
def purge_lock(root: Path) -> Iterator[None]:
    """Hold the purge's lock on the recordings dir, or raise PurgeRunning at once. Hold it
    until the purge's transaction is committed (a second purge must not plan from rows the
    first has not committed yet). The kernel drops it when the holder exits, even killed."""
    path = root / PURGE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PurgeRunning(f"another purge is running on {root} (it holds {path}); nothing was done") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def scheduled_purge(database_url: str, root: str, actor: str = "scheduled purge") -> PurgeReport | None:
    """The daily job (called by reference, so that the database's job store can keep it):
    purge as of the wall clock, under the lock; None when another purge was running."""
    from campaigns.db import job_transaction
    try:
        with purge_lock(Path(root)), job_transaction(database_url) as session:
            report = purge(session, Path(root), utc_now(), actor)
    except PurgeRunning as exc:
        log.warning("scheduled purge skipped: %s", exc)
        return None
    for line in report.lines():
        log.info("scheduled purge: %s", line)
    return report


def schedule_purge(scheduler, database_url: str, root: Path, *, jobstore: str = "default", hour: int = 3,
                   minute: int = 30, timezone: str = "Asia/Shanghai"):
    """Register the daily purge on an APScheduler 3.x scheduler, in `jobstore` (the
    database's, ``campaigns.jobs.job_store``) under its fixed id: one job, however
    many processes register it. Started (even paused), the scheduler shows what the
    store holds: the same job already there is kept as it is, with its next run time, so
    that a purge missed while no scheduler ran runs once when one starts (coalesce, no
    grace limit); anything else is replaced."""
    from apscheduler.triggers.cron import CronTrigger

    from campaigns.db import stored_url
    from campaigns.jobs import keep_or_add
    trigger = CronTrigger(hour=hour, minute=minute, timezone=timezone)
    return keep_or_add(scheduler, scheduled_purge, trigger, args=(stored_url(database_url), str(root)), id=PURGE_JOB_ID,
                       name="purge recordings past retention", jobstore=jobstore, misfire_grace_time=None)
