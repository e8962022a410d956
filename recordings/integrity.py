"""Is every call still kept, and unchanged? Re-hash the stored files and compare.

`verify` reads every stored file the database knows (the vault's stereo and metadata
files, and the leg files of ``recordings.store``) and reports:

* missing — a file the database lists is not on disk;
* changed — a file whose SHA-256 no longer matches the one recorded when it was stored;
* orphans — a file on disk that no recording lists (the purge audit directory aside);
* partials — a ``.partial`` left by a crash in the middle of a write (``dunning recordings
  ingest`` completes the call and removes it);
* unrecorded — an answered call that is not in the vault (``has_legs`` says whether its
  leg files were at least stored, so that it can still be ingested);
* interrupted — a call the engine closed as interrupted after a crash, with no answer time,
  whose leg files are on disk (in the spool or the recordings dir) but that is not in the
  vault: the crash came between the call's end and its ingest (``recordings.backlog``).

Each of these makes the report not ok. It marks each vault file's ``checked_at``/``integrity``
so that `coverage` can say, per day, how many answered calls have a recording verified intact.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.models import Attempt, AttemptState, Recording, RecordingFile, VaultFile
from campaigns.report import verified_recordings

from .backlog import Stranded, stranded
from .retention import AUDIT_DIR
from .store import sha256_of
from .vault import is_partial

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class StoredRef:
    path: str
    sha256: str
    recording_id: int
    call_id: str
    vault_file: VaultFile | None = None  # set for the vault's stereo file


@dataclass(frozen=True)
class Unrecorded:
    attempt_id: int
    call_id: str
    answered_at: dt.datetime
    has_legs: bool
    #: Where its leg files wait when they are not stored yet (Asterisk's spool, or copied into
    #: the recordings dir with no rows): `dunning recordings ingest` stores them.
    waiting: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.has_legs:
            return "legs stored, not in the vault yet"
        if self.waiting:
            return (f"its legs wait on disk ({', '.join(self.waiting)}), not stored yet: "
                    "`dunning recordings ingest` stores them")
        return "no recording at all"


@dataclass
class VerifyReport:
    files: int = 0
    bytes: int = 0
    missing: list[StoredRef] = field(default_factory=list)
    changed: list[StoredRef] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    unrecorded: list[Unrecorded] = field(default_factory=list)
    interrupted: list[Stranded] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.orphans or self.partials or self.unrecorded
                    or self.interrupted)

    def lines(self) -> list[str]:
        out = [f"MISSING {r.path} (recording {r.recording_id}, call {r.call_id})" for r in self.missing]
        out += [f"CHANGED {r.path} (recording {r.recording_id}, call {r.call_id}): checksum mismatch"
                for r in self.changed]
        out += [f"ORPHAN {p}: no recording lists this file" for p in self.orphans]
        out += [f"PARTIAL {p}: left by an interrupted write; `dunning recordings ingest` completes the call "
                "and removes it" for p in self.partials]
        out += [f"UNRECORDED call {u.call_id} (attempt {u.attempt_id}, answered {u.answered_at:%Y-%m-%d %H:%M} UTC): "
                + u.describe() for u in self.unrecorded]
        out += [f"INTERRUPTED call {s.call_id} (attempt {s.attempt_id}): the engine stopped before storing it; its "
                f"recording is on disk ({', '.join(s.files)}) but not in the vault: `dunning recordings ingest` "
                "stores it" for s in self.interrupted]
        out.append(f"{self.files} files, {self.bytes / 1e6:.1f} MB checked: {len(self.missing)} missing, "
                   f"{len(self.changed)} changed, {len(self.orphans)} orphans, {len(self.unrecorded)} answered calls "
                   f"without a recording in the vault, {len(self.partials)} partial writes, {len(self.interrupted)} "
                   "interrupted calls with a recording not in the vault")
        return out


def stored_refs(session: Session) -> list[StoredRef]:
    """Every file the database says is stored (purged recordings excluded)."""
    refs = []
    vault = session.execute(select(VaultFile, Attempt.call_id).join(Recording, VaultFile.recording_id == Recording.id)
                            .join(Attempt, Recording.attempt_id == Attempt.id)
                            .where(VaultFile.purged_at.is_(None)).order_by(VaultFile.id))
    for stored, call_id in vault:
        refs.append(StoredRef(stored.path, stored.sha256, stored.recording_id, call_id, stored))
        refs.append(StoredRef(stored.metadata_path, stored.metadata_sha256, stored.recording_id, call_id))
    legs = session.execute(select(RecordingFile, Attempt.call_id)
                           .join(Recording, RecordingFile.recording_id == Recording.id)
                           .join(Attempt, Recording.attempt_id == Attempt.id).order_by(RecordingFile.id))
    refs += [StoredRef(leg.path, leg.sha256, leg.recording_id, call_id) for leg, call_id in legs]
    return refs


def files_on_disk(root: Path) -> list[str]:
    """Every file under the recordings dir, relative, as the database writes paths."""
    out = []
    for directory, subdirs, names in os.walk(root):
        here = Path(directory)
        if here == root:
            subdirs[:] = [d for d in subdirs if d != AUDIT_DIR]
        out += [(here / name).relative_to(root).as_posix() for name in names]
    return sorted(out)


def unrecorded_calls(session: Session, spool: Path | None = None, root: Path | None = None) -> list[Unrecorded]:
    """Answered calls not in the vault; with `root`, where their legs wait if they have no rows."""
    from .backlog import legs_on_disk
    rows = session.execute(
        select(Attempt.id, Attempt.call_id, Attempt.answered_at, Recording.id)
        .outerjoin(Recording, Recording.attempt_id == Attempt.id)
        .outerjoin(VaultFile, VaultFile.recording_id == Recording.id)
        .where(Attempt.answered_at.is_not(None), Attempt.state == AttemptState.ENDED.value, VaultFile.id.is_(None))
        .order_by(Attempt.answered_at))
    out = []
    for attempt_id, call_id, answered_at, recording_id in rows:
        waiting: tuple[str, ...] = ()
        if recording_id is None and root is not None:
            waiting = tuple(str(p) for p in legs_on_disk(session, spool, root, session.get(Attempt, attempt_id))
                            .values())
        out.append(Unrecorded(attempt_id, call_id, answered_at, recording_id is not None, waiting))
    return out


def verify(session: Session, root: Path, now: dt.datetime, progress: Progress | None = None,
           spool: Path | None = None) -> VerifyReport:
    """Re-hash every stored file and report what is missing, changed, orphaned or never
    recorded. `progress(bytes_done, bytes_total)` is called as the hashing goes (the total
    is the size of the files found on disk), so a caller can show a bar and a throughput.
    `spool` (Asterisk's recordings spool) is also searched for the legs of interrupted calls."""
    report = VerifyReport()
    refs = stored_refs(session)
    present = {r.path for r in refs if (root / r.path).is_file()}
    total = sum((root / path).stat().st_size for path in present)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)
    if progress is not None:
        progress(0, total)
    for ref in refs:
        path = root / ref.path
        if ref.path not in present:
            report.missing.append(ref)
            state = "missing"
        else:
            report.files += 1
            report.bytes += path.stat().st_size
            state = "ok" if sha256_of(path, advance) == ref.sha256 else "changed"
            if state == "changed":
                report.changed.append(ref)
        if ref.vault_file is not None:
            ref.vault_file.checked_at, ref.vault_file.integrity = now, state
    known = {r.path for r in refs}
    for relative in files_on_disk(root):
        if is_partial(Path(relative)):
            report.partials.append(relative)
        elif relative not in known:
            report.orphans.append(relative)
    report.unrecorded = unrecorded_calls(session, spool, root)
    report.interrupted = stranded(session, spool, root, now)
    session.flush()
    return report


class Coverage(NamedTuple):
    verified: int
    answered: int


def coverage(session: Session, day: dt.date, tz: str | dt.tzinfo) -> Coverage:
    """Of the answered calls dialled on `day` (a calendar day in `tz`: the daily report's
    rule, ``campaigns.report.daily``), how many have a recording in the vault whose last
    check (ingest or `verify`) found it intact."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    start = dt.datetime.combine(day, dt.time(0), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zone)
    answered = select(Attempt.id).where(Attempt.dialed_at >= start, Attempt.dialed_at < end,
                                        Attempt.answered_at.is_not(None))
    return Coverage(verified_recordings(session, answered),
                    session.scalar(select(func.count()).select_from(answered.subquery())) or 0)
