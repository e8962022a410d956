"""Listening to and exporting recordings: every access says who, why and when.

Each playback or export writes a row to ``recording_access`` (append-only: the database
refuses to change or delete its rows). Both check the stored file against its checksum
first and refuse a file that is missing or changed (run `verify`). An export writes a copy
of the stereo file (left = agent, right = debtor) and a ``<file>.sha256`` beside it in the
format of ``sha256sum``, so the receiver can check it with ``sha256sum -c``.
"""
from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import RecordingAccess, VaultFile

from .errors import AccessRefused, IntegrityError, NotFound, VaultConflict
from .store import sha256_of
from .vault import create_file


@dataclass(frozen=True)
class Exported:
    path: Path
    checksum_path: Path
    sha256: str


def _checked(session: Session, root: Path, recording_id: int, user: str, reason: str) -> VaultFile:
    if not user.strip() or not reason.strip():
        raise AccessRefused("every access to a recording needs a user and a reason (--user, --reason)")
    stored = session.scalar(select(VaultFile).where(VaultFile.recording_id == recording_id))
    if stored is None:
        raise NotFound(f"recording {recording_id} is not in the vault")
    if stored.purged_at is not None:
        raise NotFound(f"recording {recording_id} was purged on {stored.purged_at:%Y-%m-%d} by {stored.purged_by}")
    path = root / stored.path
    if not path.is_file():
        raise IntegrityError(f"{path} is missing: run `dunning recordings verify`")
    if sha256_of(path) != stored.sha256:
        raise IntegrityError(f"{path} no longer matches its checksum: run `dunning recordings verify`")
    return stored


def _log(session: Session, stored: VaultFile, action: str, user: str, reason: str, now: dt.datetime,
         target: str | None = None) -> None:
    session.add(RecordingAccess(accessed_at=now, accessed_by=user, reason=reason, action=action,
                                recording_id=stored.recording_id, target=target, sha256=stored.sha256))
    session.flush()


def playback(session: Session, root: Path, recording_id: int, user: str, reason: str, now: dt.datetime) -> Path:
    """The stored file to play, once the access is logged."""
    stored = _checked(session, root, recording_id, user, reason)
    _log(session, stored, "play", user, reason, now)
    return root / stored.path


def export(session: Session, root: Path, recording_id: int, dest: Path, user: str, reason: str,
           now: dt.datetime) -> Exported:
    """Copy a recording into the directory `dest` with its ``.sha256``, and log it. An
    existing file in `dest` is never overwritten."""
    stored = _checked(session, root, recording_id, user, reason)
    source = root / stored.path
    target = dest / source.name
    checksum_path = dest / f"{source.name}.sha256"
    for path in (target, checksum_path):
        if path.exists():
            raise VaultConflict(f"{path} exists: export to another directory or remove it first")
    create_file(target, lambda tmp: shutil.copyfile(source, tmp), mode=0o644)
    if sha256_of(target) != stored.sha256:
        raise IntegrityError(f"the copy {target} does not match the stored checksum; it was left there for inspection")
    create_file(checksum_path, lambda tmp: tmp.write_text(f"{stored.sha256}  {target.name}\n"), mode=0o644)
    _log(session, stored, "export", user, reason, now, target=str(target.resolve()))
    return Exported(target, checksum_path, stored.sha256)
