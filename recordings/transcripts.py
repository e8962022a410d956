"""Stored transcripts and the persistent transcription queue.

Tables (migration 0004):

* ``transcription_jobs``: one row per recording to transcribe, ``queued`` → ``running``
  (claimed by a worker under a lease) → ``done`` or ``failed``. Claiming is one UPDATE that
  only succeeds on a job that is queued, or running under an expired lease (a worker that
  crashed): on PostgreSQL the candidate is picked ``FOR UPDATE SKIP LOCKED``, on SQLite the
  statement takes the write lock; either way two workers never hold the same job. A job that
  is done is never claimed again. Storing the transcript and marking the job done are one
  transaction, and only the worker that holds the lease may do it, so a worker whose lease
  ran out while it was still busy cannot store a second transcript.
* ``transcripts``: one per recording: language, model, the whole ``Transcript`` as JSON,
  each leg's text normalised for search, and (copied from the call, for search filters and
  ordering) when it was recorded, the agent and the campaign.
* ``transcript_postings``: the search index (``recordings.search_index`` says what is in
  it; ``recordings.search`` reads it), written with the transcript in the same transaction.

`run_workers` drains the queue with a pool of processes, each loading the model once.
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    delete,
    tuple_,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    and_,
    exists,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from campaigns.models import Attempt, Base, Recording, UTCDateTime, VaultFile

from . import search_index
from .transcript import Transcript

UTC = dt.timezone.utc
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
LEG_CODES = {"agent": 0, "debtor": 1}


class TranscriptionJob(Base):
    """A recording waiting for, or given, speech-to-text."""

    __tablename__ = "transcription_jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), unique=True)
    state: Mapped[str] = mapped_column(String(10), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)  # the last failure
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        Index("ix_transcription_jobs_state_lease", "state", "lease_expires_at"),
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),
    )


class StoredTranscript(Base):
    """A recording's transcript (``recordings.transcript.Transcript`` as JSON in `document`)."""

    __tablename__ = "transcripts"
    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), unique=True)
    language: Mapped[str] = mapped_column(String(10))
    model: Mapped[str] = mapped_column(String(200))
    document: Mapped[str] = mapped_column(Text)
    # Each leg's words normalised for search (recordings.search.normalize_words).
    agent_text: Mapped[str] = mapped_column(Text)
    debtor_text: Mapped[str] = mapped_column(Text)
    audio_seconds: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    speech_seconds: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    # Copied from the call, for search filters and ordering without joins.
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    def transcript(self) -> Transcript:
        return Transcript.from_json(self.document)


class TranscriptPosting(Base):
    """The search index (migration 0010): which transcript holds which gram (a character or
    a character bigram of Chinese/Japanese/Korean text, or a whole word of other text), on
    which legs (bit 1 agent, bit 2 debtor), keyed so that a gram's calls are read newest
    first (`rank`: the call's time in microseconds since the epoch). Written and removed only
    with its transcript (``recordings.search_index.postings``); no foreign key, to keep the
    millions of rows cheap to write."""

    __tablename__ = "transcript_postings"
    gram: Mapped[str] = mapped_column(String(40), primary_key=True)
    rank: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    transcript_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    legs: Mapped[int] = mapped_column(SmallInteger)  # 1 agent, 2 debtor, 3 both
    __table_args__ = {"sqlite_with_rowid": False}


class LeaseLost(RuntimeError):
    """The job is no longer this worker's (its lease expired and another worker took it)."""


@dataclass(frozen=True)
class Claimed:
    job_id: int
    recording_id: int
    attempts: int
    owner: str
    lease_expires_at: dt.datetime


# ── The queue (each function works in the caller's transaction) ──

def enqueue(session: Session, recording_id: int, now: dt.datetime) -> bool:
    """Queue a recording (the engine calls this after storing a call). False when it is
    already queued, running, done or failed: nothing is queued twice."""
    if session.scalar(select(TranscriptionJob.id).where(TranscriptionJob.recording_id == recording_id)):
        return False
    try:
        with session.begin_nested():
            session.add(TranscriptionJob(recording_id=recording_id, state=QUEUED, attempts=0, queued_at=now))
    except IntegrityError:  # another process queued it at the same moment
        return False
    return True


def backlog_statement(now: dt.datetime):
    """INSERT a job for every vault recording (not purged) with neither a job nor a transcript."""
    pending = (select(VaultFile.recording_id, literal(QUEUED, String(10)), literal(0, Integer),
                      literal(now, UTCDateTime()))
               .where(VaultFile.purged_at.is_(None))
               .where(~exists().where(TranscriptionJob.recording_id == VaultFile.recording_id))
               .where(~exists().where(StoredTranscript.recording_id == VaultFile.recording_id))
               .order_by(VaultFile.recorded_at, VaultFile.recording_id))
    return (insert(TranscriptionJob).from_select(["recording_id", "state", "attempts", "queued_at"], pending)
            .returning(TranscriptionJob.recording_id))


def enqueue_backlog(session: Session, now: dt.datetime) -> int:
    """Queue every stored recording that has no transcript yet; returns how many."""
    return len(session.execute(backlog_statement(now)).all())


def claimable(now: dt.datetime):
    return or_(TranscriptionJob.state == QUEUED,
               and_(TranscriptionJob.state == RUNNING, TranscriptionJob.lease_expires_at < now))


def claim_statement(dialect: str, owner: str, now: dt.datetime, lease: dt.timedelta):
    """One atomic UPDATE that takes the oldest claimable job (see the module docstring)."""
    candidate = select(TranscriptionJob.id).where(claimable(now)).order_by(TranscriptionJob.id).limit(1)
    if dialect == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    return (update(TranscriptionJob)
            .where(TranscriptionJob.id == candidate.scalar_subquery())
            .where(claimable(now))  # checked again under the row's write lock
            .values(state=RUNNING, lease_owner=owner, lease_expires_at=now + lease,
                    attempts=TranscriptionJob.attempts + 1, started_at=now, error=None)
            .returning(TranscriptionJob.id, TranscriptionJob.recording_id, TranscriptionJob.attempts))


def give_up_statement(now: dt.datetime, max_attempts: int):
    """Jobs whose lease expired `max_attempts` times (a recording that kills its worker)."""
    return (update(TranscriptionJob)
            .where(TranscriptionJob.state == RUNNING, TranscriptionJob.lease_expires_at < now,
                   TranscriptionJob.attempts >= max_attempts)
            .values(state=FAILED, finished_at=now, lease_owner=None, lease_expires_at=None,
                    error=f"its worker stopped (crashed or was killed) {max_attempts} times; not retried"))


def claim(session: Session, owner: str, now: dt.datetime, lease: dt.timedelta = dt.timedelta(minutes=10),
          max_attempts: int = 3) -> Claimed | None:
    """Take the next job for `owner`, or None when none is waiting. Commit soon after: on
    SQLite the claim holds the write lock until then."""
    session.execute(give_up_statement(now, max_attempts))
    row = session.execute(claim_statement(session.get_bind().dialect.name, owner, now, lease)).first()
    if row is None:
        return None
    return Claimed(row.id, row.recording_id, row.attempts, owner, now + lease)


def renew(session: Session, owner: str, job_ids: list[int], now: dt.datetime, lease: dt.timedelta) -> int:
    """Extend the leases `owner` still holds; returns how many it still holds."""
    if not job_ids:
        return 0
    return session.execute(update(TranscriptionJob)
                           .where(TranscriptionJob.id.in_(job_ids), TranscriptionJob.state == RUNNING,
                                  TranscriptionJob.lease_owner == owner)
                           .values(lease_expires_at=now + lease)).rowcount


def _finish(session: Session, job: Claimed, now: dt.datetime, **values) -> None:
    changed = session.execute(update(TranscriptionJob)
                              .where(TranscriptionJob.id == job.job_id, TranscriptionJob.state == RUNNING,
                                     TranscriptionJob.lease_owner == job.owner)
                              .values(lease_owner=None, lease_expires_at=None, **values)).rowcount
    if changed != 1:
        raise LeaseLost(f"transcription job {job.job_id} (recording {job.recording_id}) is no longer held by "
                        f"{job.owner}; its result was dropped")


def complete(session: Session, job: Claimed, transcript: Transcript, model: str, now: dt.datetime,
             audio_seconds: float | None = None, speech_seconds: float | None = None) -> StoredTranscript:
    """Mark the job done and store its transcript and search index, in the caller's
    transaction (commit it whole). LeaseLost when the job is no longer `job.owner`'s."""
    _finish(session, job, now, state=DONE, finished_at=now, error=None)
    return store(session, job.recording_id, transcript, model, now, audio_seconds, speech_seconds)


def release(session: Session, job: Claimed, error: str, now: dt.datetime, max_attempts: int = 3,
            retry: bool = True) -> str:
    """Give a job back after a failure: queued again while it has attempts left (and `retry`),
    else failed. Returns the new state."""
    state = QUEUED if retry and job.attempts < max_attempts else FAILED
    _finish(session, job, now, state=state, error=error[:2000], finished_at=now if state == FAILED else None)
    return state


# ── Stored transcripts ──

def store(session: Session, recording_id: int, transcript: Transcript, model: str, now: dt.datetime,
          audio_seconds: float | None = None, speech_seconds: float | None = None) -> StoredTranscript:
    """Write a recording's transcript with its search index (replacing an earlier one)."""
    row = session.execute(select(Recording.recorded_at, Attempt.agent_id, Attempt.campaign_id)
                          .join(Attempt, Recording.attempt_id == Attempt.id)
                          .where(Recording.id == recording_id)).one()
    old = session.scalar(select(StoredTranscript).where(StoredTranscript.recording_id == recording_id))
    if old is not None:
        drop_index(session, old)
        session.delete(old)
        session.flush()
    texts = search_index.leg_texts(transcript)

    def seconds(value: float | None) -> Decimal | None:
        return None if value is None else Decimal(f"{value:.2f}")
    stored = StoredTranscript(recording_id=recording_id, language=transcript.language, model=model,
                              document=transcript.to_json(), agent_text=texts["agent"], debtor_text=texts["debtor"],
                              audio_seconds=seconds(audio_seconds), speech_seconds=seconds(speech_seconds),
                              recorded_at=row.recorded_at, agent_id=row.agent_id, campaign_id=row.campaign_id,
                              created_at=now)
    session.add(stored)
    session.flush()
    write_index(session, stored)
    return stored


def index_rows(stored: StoredTranscript) -> list[dict]:
    """A stored transcript's postings (computed from its stored texts)."""
    return search_index.postings(stored.id, stored.recorded_at, stored.agent_text, stored.debtor_text)


def write_index(session: Session, stored: StoredTranscript) -> int:
    """Index a stored transcript (`store` calls it in its transaction)."""
    rows = index_rows(stored)
    if rows:
        session.execute(insert(TranscriptPosting), rows)
    return len(rows)


def drop_index(session: Session, stored: StoredTranscript) -> None:
    """Remove a transcript's postings (found from its own texts: primary-key deletes)."""
    keys = [(r["gram"], r["rank"], r["transcript_id"]) for r in index_rows(stored)]
    for at in range(0, len(keys), 300):
        session.execute(delete(TranscriptPosting).where(
            tuple_(TranscriptPosting.gram, TranscriptPosting.rank, TranscriptPosting.transcript_id)
            .in_(keys[at:at + 300])))


def transcript_for(session: Session, recording_id: int) -> Transcript | None:
    stored = session.scalar(select(StoredTranscript).where(StoredTranscript.recording_id == recording_id))
    return None if stored is None else stored.transcript()


# ── Workers ──

@dataclass(frozen=True)
class Progress:
    """What a run has done so far (given to the progress callback after every job)."""

    queued: int = 0  # jobs waiting when the run started
    done: int = 0
    failed: int = 0  # given back (retried later) or failed for good
    audio_seconds: float = 0.0  # both legs
    speech_seconds: float = 0.0
    cpu_seconds: float = 0.0  # the workers' CPU time
    wall_seconds: float = 0.0

    @property
    def speed(self) -> float:
        """Audio seconds transcribed per CPU second."""
        return self.audio_seconds / self.cpu_seconds if self.cpu_seconds else 0.0


_MODEL = None


def _load(model_path: str) -> None:  # the pool's initializer: once per worker process
    global _MODEL
    from .transcribe import load_model
    _MODEL = load_model(Path(model_path))


def _work(path: str, language: str, skip_silence: bool) -> tuple[str, float, float, float]:
    from .transcribe import transcribe_file
    done = transcribe_file(_MODEL, Path(path), language, skip_silence)
    return done.transcript.to_json(), done.audio_seconds, done.speech_seconds, done.cpu_seconds


def _utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def queued_count(session: Session) -> int:
    from sqlalchemy import func
    return session.scalar(select(func.count()).select_from(TranscriptionJob)
                          .where(TranscriptionJob.state.in_((QUEUED, RUNNING)))) or 0


def run_workers(factory: sessionmaker[Session], recordings_root: Path, model_path: Path, *,
                processes: int | None = None, language: str | None = None,
                progress: Callable[[Progress], None] | None = None, clock: Callable[[], dt.datetime] = _utcnow,
                lease: dt.timedelta = dt.timedelta(minutes=10), max_attempts: int = 3,
                max_tasks_per_child: int = 50, stop: threading.Event | None = None, poll_seconds: float = 2.0,
                skip_silence: bool = True, owner: str | None = None) -> Progress:
    """Transcribe queued recordings with `processes` worker processes (default: CPUs - 1,
    at least 1) until the queue is empty (`stop` None: ``dunning transcribe``), or until
    `stop` is set (the engine, which queues each call as it is stored).

    This process claims the jobs, renews their leases and stores the results; the workers
    (a process pool whose initializer loads the model once per process; each is replaced
    after `max_tasks_per_child` jobs so memory stays bounded) only decode and recognise. A
    worker that dies gives its job back to the queue (retried up to `max_attempts` claims);
    if this process dies, the leases run out and the next run retries the jobs."""
    from .speech_models import model_info
    info = model_info(model_path)
    language = language or info.get("language")
    if not language:
        raise ValueError(f"the language of the model in {model_path} is unknown: pass language=")
    model_name = info.get("name") or Path(model_path).resolve().name
    processes = processes or max(1, (os.cpu_count() or 2) - 1)
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    started = time.monotonic()
    with factory() as session:
        state = Progress(queued=queued_count(session))
    context = multiprocessing.get_context("spawn")

    def new_pool() -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(processes, mp_context=context, initializer=_load,
                                      initargs=(str(model_path),), max_tasks_per_child=max_tasks_per_child)
    pool = new_pool()
    in_flight: dict[cf.Future, Claimed] = {}
    renewed = time.monotonic()
    try:
        while True:
            while len(in_flight) < processes and not (stop is not None and stop.is_set()):
                with factory() as session, session.begin():
                    job = claim(session, owner, clock(), lease, max_attempts)
                    path = None
                    if job is not None:
                        vault = session.scalar(select(VaultFile).where(VaultFile.recording_id == job.recording_id))
                        if vault is None or vault.purged_at is not None:
                            release(session, job, "no stored recording (not in the vault, or purged)", clock(),
                                    retry=False)
                            state = replace(state, failed=state.failed + 1)
                            continue
                        path = str(Path(recordings_root) / vault.path)
                if job is None:
                    break
                in_flight[pool.submit(_work, path, language, skip_silence)] = job
            if not in_flight:
                if stop is None or stop.wait(poll_seconds):
                    break
                continue
            finished, _ = cf.wait(in_flight, timeout=max(1.0, lease.total_seconds() / 6),
                                  return_when=cf.FIRST_COMPLETED)
            broken = False
            for future in finished:
                job = in_flight.pop(future)
                try:
                    document, audio_s, speech_s, cpu_s = future.result()
                except Exception as error:  # noqa: BLE001 - any failure gives the job back
                    broken |= isinstance(error, cf.process.BrokenProcessPool)
                    reason = ("its worker process died" if isinstance(error, cf.process.BrokenProcessPool)
                              else f"{type(error).__name__}: {error}")
                    with factory() as session, session.begin():
                        try:
                            release(session, job, reason, clock(), max_attempts)
                        except LeaseLost:
                            pass
                    state = replace(state, failed=state.failed + 1)
                else:
                    try:
                        with factory() as session, session.begin():
                            complete(session, job, Transcript.from_json(document), model_name, clock(),
                                     audio_s, speech_s)
                    except LeaseLost:
                        state = replace(state, failed=state.failed + 1)
                    else:
                        state = replace(state, done=state.done + 1, audio_seconds=state.audio_seconds + audio_s,
                                        speech_seconds=state.speech_seconds + speech_s,
                                        cpu_seconds=state.cpu_seconds + cpu_s)
                state = replace(state, wall_seconds=time.monotonic() - started)
                if progress:
                    progress(state)
            if broken:  # every job still in the dead pool is lost with it: give them back
                for future, job in list(in_flight.items()):
                    with factory() as session, session.begin():
                        try:
                            release(session, job, "its worker pool broke", clock(), max_attempts)
                        except LeaseLost:
                            pass
                in_flight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
            if in_flight and time.monotonic() - renewed > lease.total_seconds() / 3:
                with factory() as session, session.begin():
                    renew(session, owner, [j.job_id for j in in_flight.values()], clock(), lease)
                renewed = time.monotonic()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return replace(state, wall_seconds=time.monotonic() - started)
