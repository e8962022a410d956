"""The recording vault: each answered call kept as one stereo file, verifiable, for years.

Under the recordings directory, for a call that started (was answered) on a given UTC day::

    vault/<YYYY>/<MM>/<DD>/<call_id>.<ext>    the call: LEFT channel = agent, RIGHT = debtor
    vault/<YYYY>/<MM>/<DD>/<call_id>.json     its metadata: attempt, case, client, campaign,
                                              agent, start, duration, codec, layout, checksum

Both are written once and never changed: a temporary ``.<name>.partial`` in the same
directory, fsynced, made read-only (0444), then published under its final name by a hard
link (a rename that cannot overwrite: if the name exists the link fails), and the directory
fsynced. A crash before publishing leaves only the hidden ``.partial``, which the next
ingest throws away and writes again; a crash after publishing leaves a complete file that
the next ingest adopts. The stored file is decoded once after writing: it must give back
two channels of the call's length (for a lossless codec, exactly the legs' samples).

Ingest is three steps so that the engine can keep blocking work off its event loop and
database work on its database thread: `call_metadata` reads, `write_call` writes files
only, `register` writes the rows. `ingest` runs the three, and does nothing for a call
already in the vault (re-ingesting changes nothing).
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import (
    Agent,
    Attempt,
    Campaign,
    Case,
    Client,
    Recording,
    VaultFile,
)

from .codecs import (
    DEFAULT_CODEC,
    LAYOUT,
    RATE,
    Codec,
    codec_named,
    decode,
    encode,
    stereo_from_files,
)
from .errors import LegMissing, NotAnswered, NotFound, VaultConflict
from .retention import add_years, retention_years
from .store import fsync_path, make_dirs, sha256_of

VAULT = "vault"


@dataclass(frozen=True)
class CallMetadata:
    """Who and what a recording is about, as written into its metadata file."""

    attempt_id: int
    call_id: str
    case_id: int
    case_reference: str
    client_id: int
    client_code: str
    campaign_id: int
    campaign: str
    agent_id: int | None
    agent_extension: str | None
    agent_name: str | None
    recorded_at: dt.datetime


@dataclass(frozen=True)
class Written:
    """The files `write_call` left in the vault (paths relative to the recordings dir)."""

    path: str
    sha256: str
    bytes: int
    seconds: float
    codec: str
    metadata_path: str
    metadata_sha256: str


def vault_paths(call_id: str, recorded_at: dt.datetime, codec: Codec) -> tuple[str, str]:
    day = recorded_at.astimezone(dt.timezone.utc).strftime("%Y/%m/%d")
    return f"{VAULT}/{day}/{call_id}.{codec.extension}", f"{VAULT}/{day}/{call_id}.json"


def partial_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial")


def is_partial(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".partial")


def create_file(target: Path, produce: Callable[[Path], None], mode: int = 0o444) -> bool:
    """Write a new file atomically: `produce` fills a temporary file, which is fsynced, given
    `mode` and published under `target` without ever replacing an existing file. False when
    `target` already existed (nothing was written)."""
    tmp = partial_path(target)
    tmp.unlink(missing_ok=True)  # left by a crash: never trusted, written again or dropped
    if target.exists():
        return False
    make_dirs(target.parent)
    try:
        produce(tmp)
        fsync_path(tmp)
        os.chmod(tmp, mode)
        os.link(tmp, target)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(target.parent)
    return True


def metadata_document(meta: CallMetadata, codec: Codec, path: str, sha256: str, seconds: float) -> bytes:
    fields = asdict(meta)
    fields["recorded_at"] = meta.recorded_at.astimezone(dt.timezone.utc).isoformat()
    document = {**fields, "file": path.rsplit("/", 1)[-1], "codec": codec.name, "layout": LAYOUT,
                "sample_rate": RATE, "seconds": round(seconds, 2), "sha256": sha256}
    return (json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def _stored_seconds(target: Path, expected_samples: bytes | None) -> float:
    """Decode the stored file: two channels, and for a lossless codec exactly the legs."""
    audio = decode(target)
    if expected_samples is not None and audio.raw_data != expected_samples:
        raise VaultConflict(f"{target} does not decode to the call's audio; it was kept, check it by hand")
    return audio.duration_seconds


def write_call(root: Path, legs: Mapping[str, Path], meta: CallMetadata, codec: Codec | str = DEFAULT_CODEC) -> Written:
    """Store the call's agent and debtor legs as one stereo file plus its metadata file.

    Blocking (ffmpeg, fsync): run it off the event loop. Writes files only. A file already
    published under the call's name is kept as it is (adopted), never rewritten."""
    codec = codec_named(codec) if isinstance(codec, str) else codec
    relative, metadata_relative = vault_paths(meta.call_id, meta.recorded_at, codec)
    target = root / relative
    samples: bytes | None = None

    def produce(tmp: Path) -> None:  # only when the call is not stored yet
        nonlocal samples
        for leg in ("agent", "debtor"):
            if leg not in legs or not Path(legs[leg]).exists():
                raise LegMissing(f"call {meta.call_id}: the {leg} leg {legs.get(leg, '(not given)')} is missing; "
                                 "nothing was stored")
        audio = stereo_from_files(Path(legs["agent"]), Path(legs["debtor"]))
        samples = audio.raw_data if codec.lossless else None
        encode(audio, codec, tmp)
    create_file(target, produce)
    seconds = _stored_seconds(target, samples)
    checksum = sha256_of(target)
    document = metadata_document(meta, codec, relative, checksum, seconds)
    metadata_target = root / metadata_relative
    if not create_file(metadata_target, lambda tmp: tmp.write_bytes(document)) and \
            metadata_target.read_bytes() != document:
        raise VaultConflict(f"{metadata_target} exists and describes another recording; it was not overwritten")
    return Written(relative, checksum, target.stat().st_size, seconds, codec.name, metadata_relative,
                   sha256_of(metadata_target))


def stored_for_attempt(session: Session, attempt_id: int) -> VaultFile | None:
    return session.scalar(select(VaultFile).join(Recording).where(Recording.attempt_id == attempt_id))


def call_metadata(session: Session, attempt_id: int, recorded_at: dt.datetime | None = None) -> CallMetadata:
    """What the vault records about an attempt's call. `recorded_at` (when the call was
    answered) defaults to the recording's, then the attempt's answer time."""
    row = session.execute(
        select(Attempt, Case, Client, Campaign, Agent)
        .join(Case, Attempt.case_id == Case.id).join(Client, Case.client_id == Client.id)
        .join(Campaign, Attempt.campaign_id == Campaign.id).outerjoin(Agent, Attempt.agent_id == Agent.id)
        .where(Attempt.id == attempt_id)).one_or_none()
    if row is None:
        raise NotFound(f"no attempt {attempt_id}")
    attempt, case, client, campaign, agent = row
    recording = session.scalar(select(Recording).where(Recording.attempt_id == attempt_id))
    start = recorded_at or (recording.recorded_at if recording else None) or attempt.answered_at
    if start is None:
        raise NotAnswered(f"call {attempt.call_id} was not answered: there is no recording to keep")
    return CallMetadata(attempt.id, attempt.call_id, case.id, case.reference, client.id, client.code, campaign.id,
                        campaign.name, agent.id if agent else None, agent.extension if agent else None,
                        agent.name if agent else None, start)


def register(session: Session, meta: CallMetadata, written: Written, now: dt.datetime) -> VaultFile:
    """The rows for a call `write_call` stored (idempotent): its Recording (created if the
    engine has not attached the legs yet) and its VaultFile with the date it may go."""
    existing = stored_for_attempt(session, meta.attempt_id)
    if existing is not None:
        return existing
    recording = session.scalar(select(Recording).where(Recording.attempt_id == meta.attempt_id))
    if recording is None:
        recording = Recording(attempt_id=meta.attempt_id, recorded_at=meta.recorded_at,
                              seconds=Decimal(f"{written.seconds:.2f}"))
        session.add(recording)
        session.flush()
    stored = VaultFile(recording_id=recording.id, path=written.path, codec=written.codec, layout=LAYOUT,
                       sample_rate=RATE, seconds=Decimal(f"{written.seconds:.2f}"), bytes=written.bytes,
                       sha256=written.sha256, metadata_path=written.metadata_path,
                       metadata_sha256=written.metadata_sha256, recorded_at=meta.recorded_at,
                       retain_until=add_years(meta.recorded_at, retention_years(session, meta.client_id)),
                       stored_at=now, checked_at=now, integrity="ok")
    session.add(stored)
    session.flush()
    return stored


def ingest(session: Session, root: Path, attempt_id: int, legs: Mapping[str, Path], now: dt.datetime,
           codec: Codec | str = DEFAULT_CODEC, recorded_at: dt.datetime | None = None) -> VaultFile:
    """Keep an answered call in the vault: `legs` maps "agent" and "debtor" to the leg files
    (``recordings.legs.leg_files(spool, call_id)`` gives them). Nothing happens for a call
    already in the vault, even after it was purged. The legs are never removed."""
    existing = stored_for_attempt(session, attempt_id)
    if existing is not None:
        return existing
    meta = call_metadata(session, attempt_id, recorded_at)
    return register(session, meta, write_call(root, legs, meta, codec), now)
