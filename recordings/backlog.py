"""Calls whose recording is on disk but not in the vault: finding them and storing them.

After an answered call the engine (``dialer/engine.py``) copies the legs out of Asterisk's
spool into the recordings dir (``recordings.store``), links them to the attempt (the
Recording row, which holds the answer time), stores the vault's stereo file, and only then
writes the attempt's outcome and answer time. A crash anywhere in between leaves the legs on
disk — still in the spool, or copied under ``<recordings>/YYYY/MM/DD/<call_id>-<leg>.wav``,
with or without their rows — and the attempt unfinished; the engine's next start closes it
as ``interrupted`` and calls `after_interrupted`, which stores what is on disk.
``dunning recordings ingest`` (`ingest_backlog`) does the same for every call left so,
whatever stopped it: an interrupted call with its legs on disk, an answered call the vault
could not take at the time (a full disk, a leg restored since). It is idempotent: a call
already in the vault is left as it is.

The attempt keeps its answer time when the database knows it (the attempt's, else the
recording's start, written with its legs). Otherwise the time is estimated from the leg
files: MixMonitor writes them from the answer to the hang-up, so the answer is their last
change minus their length, kept between the dial and the attempt's end (and within the day
the legs were filed under); the attempt's note says it was estimated.
"""
from __future__ import annotations

import datetime as dt
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import queue
from campaigns.models import Attempt, AttemptState, Recording, RecordingFile, VaultFile

from . import vault
from .codecs import DEFAULT_CODEC, Codec, codec_named
from .errors import LegMissing, NotFound, VaultError
from .legs import LEGS, leg_files
from .store import RecordingConflict, RecordingMissing, store_call, wav_seconds

INTERRUPTED = queue.NotDialled.INTERRUPTED.value
ESTIMATED = "answer time estimated from the recording's files (the engine stopped before writing it)"
FROM_ASTERISK = "answer time from Asterisk's record (CEL)"
#: How many days after its dial a call's legs are looked for in the recordings dir.
SEARCH_DAYS = 31
#: What can stop one call's ingest without stopping the others.
FAILURES = (VaultError, RecordingMissing, RecordingConflict, OSError)


def stored_leg_files(root: Path, day: dt.date, call_id: str) -> dict[str, Path]:
    """Where ``recordings.store`` files a call's legs answered on `day` (UTC)."""
    return {leg: root / f"{day:%Y/%m/%d}/{call_id}-{leg}.wav" for leg in ("mix", *LEGS)}


def _days(attempt: Attempt, now: dt.datetime | None) -> list[dt.date]:
    first = (attempt.dialed_at or attempt.planned_at).astimezone(dt.timezone.utc).date()
    last = (attempt.ended_at or now or attempt.planned_at).astimezone(dt.timezone.utc).date()
    return [first + dt.timedelta(days=n) for n in range(min((last - first).days, SEARCH_DAYS) + 1)]


def legs_on_disk(session: Session, spool: Path | None, root: Path, attempt: Attempt,
                 now: dt.datetime | None = None) -> dict[str, Path]:
    """The call's leg files (mix, agent, debtor) wherever they are: linked by its recording's
    rows, still in the spool, or copied into the recordings dir on a day from its dial to its
    end by a run that stopped before writing the rows. Empty when there is none."""
    found: dict[str, Path] = {}
    for leg, path in session.execute(select(RecordingFile.leg, RecordingFile.path).join(Recording)
                                     .where(Recording.attempt_id == attempt.id)):
        if (root / path).is_file():
            found[leg] = root / path
    places = [leg_files(spool, attempt.call_id)] if spool is not None else []
    places += [stored_leg_files(root, day, attempt.call_id) for day in _days(attempt, now)]
    for files in places:
        for leg, path in files.items():
            if leg not in found and path.is_file():
                found[leg] = path
    return found


def estimated_answer(attempt: Attempt, legs: Mapping[str, Path]) -> dt.datetime:
    """When the call was answered, from its leg files: their last change minus their length
    (the earliest), kept between the dial and the attempt's end."""
    starts = []
    for path in legs.values():
        try:
            seconds = wav_seconds(path)
            end = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
        except (wave.Error, EOFError, OSError):
            continue
        starts.append(end - dt.timedelta(seconds=seconds))
    low = attempt.dialed_at or attempt.planned_at
    at = max(min(starts, default=low), low)
    return min(at, attempt.ended_at) if attempt.ended_at is not None else at


def _within_filed_day(at: dt.datetime, legs: Mapping[str, Path], root: Path) -> dt.datetime:
    """A time on the UTC day the legs were already filed under in the recordings dir (their
    names depend on it), if they were."""
    for path in legs.values():
        try:
            year, month, day = path.parent.relative_to(root).parts
            filed = dt.date(int(year), int(month), int(day))
        except ValueError:
            continue
        start = dt.datetime.combine(filed, dt.time(0), dt.timezone.utc)
        return min(max(at, start), start + dt.timedelta(days=1, microseconds=-1))
    return at


@dataclass(frozen=True)
class Ingested:
    attempt_id: int
    call_id: str
    path: str
    answered_at: dt.datetime
    estimated: bool = False
    already: bool = False  # it was in the vault before

    def line(self) -> str:
        when = f"answered {self.answered_at:%Y-%m-%d %H:%M:%S} UTC" + (" (estimated)" if self.estimated else "")
        if self.already:
            return f"call {self.call_id} (attempt {self.attempt_id}, {when}) was in the vault already: {self.path}"
        return f"stored call {self.call_id} (attempt {self.attempt_id}, {when}) in the vault: {self.path}"


#: Asterisk's own record of a call's answer time (dialer/cel.py, read by the caller): call id
#: -> the answer time, or None when Asterisk has no record of the call's answer.
AnswerTimes = Callable[[str], "dt.datetime | None"]


def _keep_answer_time(attempt: Attempt, at: dt.datetime, estimated: bool, note: str = ESTIMATED) -> None:
    if attempt.answered_at is not None:
        return
    attempt.answered_at = at
    if estimated:
        attempt.note = f"{attempt.note}; {note}" if attempt.note else note


def ingest_call(session: Session, spool: Path | None, root: Path, attempt_id: int, now: dt.datetime,
                codec: Codec | str = DEFAULT_CODEC, answer_times: AnswerTimes | None = None) -> Ingested:
    """Do for one ended attempt what the engine does after an answered call: store its legs
    (out of the spool), link them, store the vault's stereo file, queue it for
    speech-to-text, and give the attempt its answer time if it has none. Nothing is written
    again for a call already in the vault. LegMissing when its agent or debtor leg is on
    disk nowhere."""
    from . import after_call
    attempt = session.get(Attempt, attempt_id)
    if attempt is None:
        raise NotFound(f"no attempt {attempt_id}")
    stored = vault.stored_for_attempt(session, attempt_id)
    if stored is not None:
        _keep_answer_time(attempt, stored.recorded_at, False)
        if stored.purged_at is None:
            after_call.queue_call(session, attempt_id, now)
        return Ingested(attempt_id, attempt.call_id, stored.path, stored.recorded_at, already=True)
    legs = legs_on_disk(session, spool, root, attempt, now)
    if not all(leg in legs for leg in LEGS):
        missing = ", ".join(leg for leg in LEGS if leg not in legs)
        raise LegMissing(f"call {attempt.call_id}: no {missing} leg on disk (looked in {spool} and {root}); "
                         "nothing was stored")
    recording = session.scalar(select(Recording).where(Recording.attempt_id == attempt_id))
    known = attempt.answered_at or (recording.recorded_at if recording is not None else None)
    asterisk = answer_times(attempt.call_id) if known is None and answer_times is not None else None
    answered = known or asterisk or _within_filed_day(estimated_answer(attempt, legs), legs, root)
    files = None
    if recording is None:  # the legs as the engine keeps them: out of the spool, read-only, hashed
        files = store_call(spool or root, root, attempt.call_id, answered)
        legs = {f.leg: root / f.relative_path for f in files}
    meta = vault.call_metadata(session, attempt_id, answered)
    written = vault.write_call(root, legs, meta, codec)
    if files is not None:
        queue.attach_recording(session, attempt_id, answered, files)
    stored = vault.register(session, meta, written, now)
    _keep_answer_time(attempt, answered, known is None, FROM_ASTERISK if asterisk is not None else ESTIMATED)
    after_call.queue_call(session, attempt_id, now)
    return Ingested(attempt_id, attempt.call_id, stored.path, answered, estimated=known is None and asterisk is None)


def has_recording(session: Session, spool: Path | None, root: Path, attempt: Attempt,
                  now: dt.datetime | None = None) -> bool:
    """Whether the call has a recording to keep: in the vault already, or legs on disk."""
    return vault.stored_for_attempt(session, attempt.id) is not None or bool(
        legs_on_disk(session, spool, root, attempt, now))


class Recovered(NamedTuple):
    ok: bool
    message: str


def after_interrupted(session: Session, spool: Path, root: Path, attempt_id: int, now: dt.datetime,
                      codec: Codec | str = DEFAULT_CODEC) -> Recovered | None:
    """The engine's hook for an attempt it closed as interrupted at start-up: if the call's
    recording is on disk (it was answered), store it in the vault and keep its answer time.
    None when there is nothing on disk (the call was not answered). Never raises for one
    call: a failure comes back as a message (``dunning recordings verify`` reports the call
    and ``dunning recordings ingest`` tries again)."""
    if not has_recording(session, spool, root, session.get(Attempt, attempt_id), now):
        return None
    try:
        with session.begin_nested():
            done = ingest_call(session, spool, root, attempt_id, now, codec)
    except FAILURES as exc:
        return Recovered(False, f"its recording is on disk but could not be stored in the vault: {exc}; "
                                "`dunning recordings ingest` tries again")
    return Recovered(True, done.line())


def candidates(session: Session) -> list[Attempt]:
    """Ended attempts the vault may be missing: answered or interrupted with no vault file,
    and interrupted ones in the vault whose attempt has no answer time."""
    return list(session.scalars(
        select(Attempt).outerjoin(Recording, Recording.attempt_id == Attempt.id)
        .outerjoin(VaultFile, VaultFile.recording_id == Recording.id)
        .where(Attempt.state == AttemptState.ENDED.value, or_(
            and_(VaultFile.id.is_(None), or_(Attempt.answered_at.is_not(None), Attempt.outcome == INTERRUPTED)),
            and_(VaultFile.id.is_not(None), Attempt.answered_at.is_(None), Attempt.outcome == INTERRUPTED)))
        .order_by(Attempt.id)))


@dataclass(frozen=True)
class Stranded:
    """An interrupted call whose recording is on disk but not in the vault."""

    attempt_id: int
    call_id: str
    files: tuple[str, ...]


def stranded(session: Session, spool: Path | None, root: Path, now: dt.datetime | None = None) -> list[Stranded]:
    """Interrupted calls never answered as far as the attempt says, but with leg files on disk
    and nothing in the vault (what `verify` reports: a crash lost them)."""
    out = []
    for attempt in candidates(session):
        if attempt.answered_at is not None or vault.stored_for_attempt(session, attempt.id) is not None:
            continue
        legs = legs_on_disk(session, spool, root, attempt, now)
        if legs:
            out.append(Stranded(attempt.id, attempt.call_id, tuple(str(p) for p in legs.values())))
    return out


def stale_partials(session: Session, root: Path) -> list[Path]:
    """Temporary files left by a crash *after* the file they were written for was published
    and registered: nothing will ever complete them, and they are safe to remove."""
    known = set(session.scalars(select(VaultFile.path).where(VaultFile.purged_at.is_(None))))
    known |= set(session.scalars(select(VaultFile.metadata_path).where(VaultFile.purged_at.is_(None))))
    known |= set(session.scalars(select(RecordingFile.path)))
    stale = []
    for partial in sorted(root.rglob(".*.partial")):
        target = partial.with_name(partial.name[1:-len(".partial")])
        if target.is_file() and target.relative_to(root).as_posix() in known:
            stale.append(partial)
    return stale


@dataclass
class BacklogReport:
    ingested: list[Ingested] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Answered calls with no leg file anywhere: nothing to store (verify reports them).
    lost: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        out = [i.line() for i in self.ingested]
        out += [f"removed {p}: left by a crash after its file was stored" for p in self.removed]
        out += [f"FAILED {f}" for f in self.failures]
        out += [f"NO RECORDING {c}: answered, but no leg file is on disk; nothing to store" for c in self.lost]
        stored = sum(not i.already for i in self.ingested)
        out.append(f"{stored} call(s) stored in the vault, {len(self.failures)} failed, "
                   f"{len(self.lost)} answered call(s) with no recording on disk")
        return out


def ingest_backlog(factory: sessionmaker[Session], spool: Path | None, root: Path, now: dt.datetime,
                   codec: Codec | str = DEFAULT_CODEC, answer_times: AnswerTimes | None = None) -> BacklogReport:
    """Store in the vault every call whose recording is on disk but not in the vault (one
    transaction per call), then remove the temporary files left by a crash after their file
    was stored. Running it again changes nothing."""
    codec = codec_named(codec) if isinstance(codec, str) else codec
    report = BacklogReport()
    with factory() as session:
        todo = [(a.id, a.call_id, a.answered_at is not None) for a in candidates(session)]
    for attempt_id, call_id, answered in todo:
        try:
            with factory() as session, session.begin():
                if not has_recording(session, spool, root, session.get(Attempt, attempt_id), now):
                    if answered:
                        report.lost.append(f"call {call_id} (attempt {attempt_id})")
                    continue
                done = ingest_call(session, spool, root, attempt_id, now, codec, answer_times)
        except FAILURES as exc:
            report.failures.append(f"call {call_id} (attempt {attempt_id}): {exc}")
            continue
        if not done.already or not answered:
            report.ingested.append(done)
    with factory() as session:
        for partial in stale_partials(session, root):
            partial.unlink(missing_ok=True)
            report.removed.append(partial.relative_to(root).as_posix())
    return report
