"""After each call: the stored recording is queued for speech-to-text, transcribed by worker
processes in the background while the engine runs, and each new transcript is checked
against the QA rules (findings, and status changes the debtor's words propose).

`queue_call` is what the engine does in the transaction that registers the vault file;
`Transcriber` is the background half `dunning run` starts when a speech model is installed;
`check_new` is what both it and `dunning transcribe` run on the transcripts they stored.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import utc_now
from campaigns.models import Recording

from . import qa, transcripts
from .transcripts import StoredTranscript

log = logging.getLogger(__name__)


def queue_call(session: Session, attempt_id: int, now: dt.datetime) -> bool:
    """Queue the attempt's stored recording for transcription (False: queued already)."""
    recording_id = session.scalar(select(Recording.id).where(Recording.attempt_id == attempt_id))
    return recording_id is not None and transcripts.enqueue(session, recording_id, now)


def check_new(factory: sessionmaker[Session], since: dt.datetime, now: Callable[[], dt.datetime],
              done: set[int] | None = None) -> int:
    """Run the QA rules on every transcript stored at or after `since` and not in `done`
    (the ids checked are added to it); returns how many were checked."""
    done = set() if done is None else done
    checked = 0
    with factory() as session, session.begin():
        for stored in session.scalars(select(StoredTranscript).where(StoredTranscript.created_at >= since)
                                      .order_by(StoredTranscript.id)):
            if stored.id in done:
                continue
            qa.check_recording(session, stored.recording_id, stored.transcript(), now=now())
            done.add(stored.id)
            checked += 1
    return checked


class Transcriber:
    """The background transcription of `dunning run`: worker processes take each call as it is
    queued; every new transcript is checked for findings at once."""

    def __init__(self, factory: sessionmaker[Session], recordings_root: Path, model_path: Path, *,
                 processes: int = 1, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.factory, self.root, self.model_path, self.processes = factory, recordings_root, model_path, processes
        self.clock = clock or utc_now
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.checked: set[int] = set()
        self.since = utc_now() - dt.timedelta(seconds=5)
        self.error: BaseException | None = None

    def _check(self, _progress=None) -> None:
        check_new(self.factory, self.since, self.clock, self.checked)

    def _run(self) -> None:
        try:
            transcripts.run_workers(self.factory, self.root, self.model_path, processes=self.processes,
                                    progress=self._check, stop=self.stop_event, poll_seconds=1.0)
            self._check()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            log.exception("background transcription stopped")
            self.error = exc

    def start(self) -> Transcriber:
        self.thread = threading.Thread(target=self._run, name="dunning-transcriber", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 120.0, *, drain: bool = True) -> None:
        """Stop; with `drain`, first let the workers finish what is queued (up to `timeout`)."""
        import time
        deadline = time.monotonic() + timeout
        while drain and self.error is None and self.thread is not None and self.thread.is_alive() \
                and time.monotonic() < deadline:
            with self.factory() as session:
                if transcripts.queued_count(session) == 0:
                    break
            time.sleep(0.5)
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)
