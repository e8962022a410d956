"""A crash between the end of an answered call and its vault ingest loses nothing silently.

Without the sandbox: the situation a crash leaves is built in a SQLite database and a spool
directory (an attempt still DIALING, the call's legs where the crash left them), then the
engine restarts (`dialer.runner.run_campaign` over the fake AMI peer, which no longer has
the call) or `dunning recordings ingest` runs, and the vault, the attempt, `verify` and the
coverage are checked."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from campaigns import queue
from campaigns.jobs import scheduled_jobs
from campaigns.db import transaction
from campaigns.models import Attempt, Recording, RecordingFile, VaultFile
from recordings import backlog, integrity, retention, vault
from recordings.codecs import channels, decode
from recordings.store import store_call, wav_seconds
from recordings.transcripts import TranscriptionJob
from helpers import AGENT_CLIP, ANSWERED, CALL, DEBTOR_CLIP, DIALED, RESTART, restart, spool_call, the_attempt, tree

UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 25)


def set_written_at(files, end: dt.datetime) -> None:
    """MixMonitor's files: last written at the hang-up."""
    for path in files:
        os.utime(path, (end.timestamp(), end.timestamp()))


def assert_in_the_vault(factory, root: Path, spool: Path, attempt_id: int, extension: str) -> VaultFile:
    with factory() as s:
        stored = s.scalar(select(VaultFile).join(Recording).where(Recording.attempt_id == attempt_id))
        assert stored is not None, "the call is in the vault"
        assert stored.path == f"vault/2026/11/25/{CALL}.{extension}"
        legs = {f.leg: f.path for f in s.scalars(select(RecordingFile))}
        assert set(legs) == {"mix", "agent", "debtor"}, "the legs are kept as the engine keeps them"
        assert s.scalar(select(func.count()).select_from(TranscriptionJob)) == 1, "queued for speech-to-text"
        report = integrity.verify(s, root, RESTART, spool=spool)
        assert report.ok, report.lines()
        assert integrity.coverage(s, DAY, "Asia/Shanghai") == (1, 1)
    assert not list(spool.glob(f"{CALL}*")), "the spool copies are gone once stored"
    parties = channels(decode(root / stored.path))
    assert parties["agent"].duration_seconds == pytest.approx(wav_seconds(DEBTOR_CLIP), abs=0.01)
    return stored


async def test_the_restarted_engine_stores_a_call_whose_legs_were_still_in_the_spool(crashed_call, tmp_path, peer,
                                                                                     monkeypatch):
    """The crash came before the legs left the spool: nothing in the database says the call
    was answered; the answer time is estimated from MixMonitor's files. With
    DUNNING_RECORDING_CODEC=wav the vault keeps a .wav."""
    url, factory, attempt_id = crashed_call
    legs = spool_call(tmp_path / "spool", CALL)
    hung_up = ANSWERED + dt.timedelta(seconds=wav_seconds(DEBTOR_CLIP))  # the longest leg
    set_written_at(legs.values(), hung_up)

    echoed, summary = await restart(url, tmp_path, peer, monkeypatch, codec="wav")

    assert summary.problems == [] and summary.dials == 0
    assert any(line.startswith(f"{CALL}: stored call {CALL}") and "(estimated)" in line for line in echoed), echoed
    attempt = the_attempt(factory, attempt_id)
    assert (attempt.state, attempt.outcome, attempt.ended_at) == ("ended", "interrupted", RESTART)
    assert abs((attempt.answered_at - ANSWERED).total_seconds()) < 0.01, attempt.answered_at
    assert "answer time estimated" in attempt.note
    stored = assert_in_the_vault(factory, tmp_path / "recordings", tmp_path / "spool", attempt_id, "wav")
    assert stored.codec == "wav" and stored.recorded_at == attempt.answered_at
    parties = channels(decode(tmp_path / "recordings" / stored.path))
    from pydub import AudioSegment
    assert parties["debtor"].raw_data[:len(AudioSegment.from_wav(DEBTOR_CLIP).raw_data)] == \
        AudioSegment.from_wav(DEBTOR_CLIP).raw_data, "lossless: the debtor's leg exactly"
    # `dunning run` keeps the daily purge in the database's job store, with the campaign's jobs.
    assert retention.PURGE_JOB_ID in {job for job, _ in scheduled_jobs(url)}


async def test_the_restarted_engine_completes_a_call_whose_vault_write_was_cut_short(crashed_call, tmp_path, peer,
                                                                                     monkeypatch):
    """The crash came while the stereo file was written: the legs were stored and linked
    (their row holds the answer time), a hidden .partial is all the vault has."""
    url, factory, attempt_id = crashed_call
    root, spool = tmp_path / "recordings", tmp_path / "spool"
    spool_call(spool, CALL)
    files = store_call(spool, root, CALL, ANSWERED)
    with transaction(factory) as s:
        queue.attach_recording(s, attempt_id, ANSWERED, files)
    partial = root / f"vault/2026/11/25/.{CALL}.flac.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a stereo file")
    with factory() as s:
        before = integrity.verify(s, root, RESTART, spool=spool)
    assert not before.ok and before.partials == [partial.relative_to(root).as_posix()]

    echoed, summary = await restart(url, tmp_path, peer, monkeypatch)

    assert summary.problems == []
    attempt = the_attempt(factory, attempt_id)
    assert (attempt.outcome, attempt.answered_at) == ("interrupted", ANSWERED), "the answer time is kept exactly"
    assert "estimated" not in attempt.note
    assert not partial.exists()
    assert_in_the_vault(factory, root, spool, attempt_id, "flac")


async def test_the_restarted_engine_stores_legs_copied_just_before_the_crash(crashed_call, tmp_path, peer, monkeypatch):
    """The crash came after the legs were copied out of the spool and before their rows:
    they are found under the day they were filed, the answer time estimated from them."""
    url, factory, attempt_id = crashed_call
    root, spool = tmp_path / "recordings", tmp_path / "spool"
    spool_call(spool, CALL)
    files = store_call(spool, root, CALL, ANSWERED)
    copied = ANSWERED + dt.timedelta(seconds=wav_seconds(DEBTOR_CLIP) + 1)  # a second after the hang-up
    set_written_at([root / f.relative_path for f in files], copied)
    with factory() as s:
        lost = integrity.verify(s, root, RESTART, spool=spool)
    assert len(lost.orphans) == 3, "before the restart: three legs no call lists"

    echoed, summary = await restart(url, tmp_path, peer, monkeypatch)

    assert summary.problems == []
    attempt = the_attempt(factory, attempt_id)
    assert ANSWERED <= attempt.answered_at <= ANSWERED + dt.timedelta(seconds=1.01)
    assert_in_the_vault(factory, root, spool, attempt_id, "flac")


async def test_a_call_that_cannot_be_stored_at_restart_is_a_problem_and_stays_reported(crashed_call, tmp_path, peer,
                                                                                     monkeypatch):
    url, factory, attempt_id = crashed_call
    legs = spool_call(tmp_path / "spool", CALL)
    legs["debtor"].unlink()  # Asterisk lost a leg

    echoed, summary = await restart(url, tmp_path, peer, monkeypatch)

    assert len(summary.problems) == 1 and "no debtor leg on disk" in summary.problems[0], summary.problems
    with factory() as s:
        report = integrity.verify(s, tmp_path / "recordings", RESTART, spool=tmp_path / "spool")
    assert not report.ok and [(r.call_id, r.attempt_id) for r in report.interrupted] == [(CALL, attempt_id)]
    assert any(line.startswith(f"INTERRUPTED call {CALL}") and "dunning recordings ingest" in line
               for line in report.lines())


# -- `dunning recordings ingest` and verify, without the engine -----------------------------------

def cli(env: dict[str, str], *args: str):
    from cli import main
    return CliRunner().invoke(main, list(args), env=env)


def test_ingest_stores_what_crashes_left_and_running_it_again_changes_nothing(crashed_call, tmp_path):
    url, factory, crashed_id = crashed_call
    root, spool = tmp_path / "recordings", tmp_path / "spool"
    env = {"DUNNING_HOME": str(tmp_path), "DUNNING_DATABASE_URL": url, "DUNNING_RECORDINGS": str(root),
           "DUNNING_SPOOL": str(spool)}
    # 1. closed as interrupted by an engine restart, its legs still in the spool (no other
    #    step would store it or report it);
    legs = spool_call(spool, CALL)
    set_written_at(legs.values(), ANSWERED + dt.timedelta(seconds=wav_seconds(DEBTOR_CLIP)))
    with transaction(factory) as s:
        queue.finish(s, crashed_id, queue.NotDialled.INTERRUPTED.value, ended_at=RESTART,
                     note="left unfinished by an earlier run; not in Asterisk")
        template = s.get(Attempt, crashed_id)
        # 2. answered and written, but the vault failed at the time (its legs stored and linked);
        refused = Attempt(call_id="a-refused", campaign_id=template.campaign_id, case_id=template.case_id,
                          phone_id=template.phone_id, agent_id=template.agent_id, number=template.number,
                          state="ended", planned_at=DIALED, dialed_at=DIALED, answered_at=ANSWERED,
                          ended_at=ANSWERED + dt.timedelta(minutes=3), outcome="answered",
                          note="vault problem: No space left on device")
        # 3. answered, and no leg anywhere: nothing can be stored;
        gone = Attempt(call_id="a-gone", campaign_id=template.campaign_id, case_id=template.case_id,
                       phone_id=template.phone_id, agent_id=template.agent_id, number=template.number,
                       state="ended", planned_at=DIALED, dialed_at=DIALED, answered_at=ANSWERED,
                       ended_at=ANSWERED + dt.timedelta(minutes=1), outcome="answered")
        # 4. interrupted while ringing: never answered, nothing on disk, nothing to say.
        ringing = Attempt(call_id="a-ringing", campaign_id=template.campaign_id, case_id=template.case_id,
                          phone_id=template.phone_id, agent_id=template.agent_id, number=template.number,
                          state="ended", planned_at=DIALED, dialed_at=DIALED, ended_at=RESTART,
                          outcome="interrupted")
        s.add_all([refused, gone, ringing])
        s.flush()
        refused_id = refused.id
    shutil.copyfile(AGENT_CLIP, spool / "a-refused-agent.wav")
    shutil.copyfile(DEBTOR_CLIP, spool / "a-refused-debtor.wav")
    shutil.copyfile(DEBTOR_CLIP, spool / "a-refused.wav")
    refused_files = store_call(spool, root, "a-refused", ANSWERED)
    with transaction(factory) as s:
        queue.attach_recording(s, refused_id, ANSWERED, refused_files)

    verify = cli(env, "recordings", "verify")
    assert verify.exit_code == 1, verify.output
    assert f"INTERRUPTED call {CALL} (attempt {crashed_id})" in verify.output
    assert "UNRECORDED call a-refused" in verify.output and "UNRECORDED call a-gone" in verify.output
    assert "a-ringing" not in verify.output

    first = cli(env, "recordings", "ingest")
    assert first.exit_code == 0, first.output
    assert re.search(rf"stored call {CALL} \(attempt {crashed_id}, answered 2026-11-25 01:(29:59|30:00) UTC "
                     r"\(estimated\)\) in the vault: vault/2026/11/25/", first.output), first.output
    assert "stored call a-refused (attempt" in first.output and "01:30:00 UTC) in the vault" in first.output
    assert "NO RECORDING call a-gone" in first.output
    assert first.output.splitlines()[-1] == "2 call(s) stored in the vault, 0 failed, 1 answered call(s) with no recording on disk"
    with factory() as s:
        assert s.get(Attempt, refused_id).answered_at == ANSWERED
        assert s.scalar(select(func.count()).select_from(VaultFile)) == 2
        assert integrity.coverage(s, DAY, "Asia/Shanghai") == (2, 3), "a-gone has no recording"
    after = cli(env, "recordings", "verify")
    assert after.exit_code == 1 and "UNRECORDED call a-gone" in after.output and "INTERRUPTED" not in after.output

    before = tree(root)
    again = cli(env, "recordings", "ingest")
    assert again.exit_code == 0 and "0 call(s) stored in the vault" in again.output, again.output
    assert tree(root) == before, "idempotent: nothing on disk changed"
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(VaultFile)) == 2


def test_ingest_removes_a_partial_left_after_its_file_was_stored_and_verify_fails_until_then(crashed_call, tmp_path):
    url, factory, attempt_id = crashed_call
    root, spool = tmp_path / "recordings", tmp_path / "spool"
    with transaction(factory) as s:
        queue.finish(s, attempt_id, "answered", answered_at=ANSWERED, ended_at=ANSWERED + dt.timedelta(minutes=3))
    legs = spool_call(spool, CALL)
    with transaction(factory) as s:
        stored = vault.ingest(s, root, attempt_id, legs, RESTART)
    # The crash came after the file was published and registered, before its temporary name went.
    leftover = (root / stored.path).with_name(f".{CALL}.flac.partial")
    leftover.write_bytes(b"x")
    with transaction(factory) as s:
        report = integrity.verify(s, root, RESTART, spool=spool)
    assert not report.ok and report.partials == [leftover.relative_to(root).as_posix()]
    assert "1 partial writes" in report.lines()[-1]

    done = backlog.ingest_backlog(factory, spool, root, RESTART)
    assert done.ok and done.removed == [leftover.relative_to(root).as_posix()] and done.ingested == []
    with transaction(factory) as s:
        assert integrity.verify(s, root, RESTART, spool=spool).ok


def test_an_interrupted_call_already_in_the_vault_gets_its_answer_time_back(crashed_call, tmp_path):
    """The crash came after the vault's rows were committed, before the attempt's outcome."""
    url, factory, attempt_id = crashed_call
    root, spool = tmp_path / "recordings", tmp_path / "spool"
    legs = spool_call(spool, CALL)
    with transaction(factory) as s:
        vault.ingest(s, root, attempt_id, legs, RESTART, recorded_at=ANSWERED)
    with transaction(factory) as s:
        queue.finish(s, attempt_id, queue.NotDialled.INTERRUPTED.value, ended_at=RESTART)
        assert integrity.coverage(s, DAY, "Asia/Shanghai") == (0, 0), "not counted as answered"
    with transaction(factory) as s:
        recovered = backlog.after_interrupted(s, spool, root, attempt_id, RESTART)
    assert recovered.ok and "was in the vault already" in recovered.message
    with factory() as s:
        assert s.get(Attempt, attempt_id).answered_at == ANSWERED
        assert integrity.coverage(s, DAY, "Asia/Shanghai") == (1, 1)


def test_a_recording_asterisk_never_closed_is_stored_with_its_audio(tmp_path):
    """An Asterisk killed during a call leaves MixMonitor's files with their RIFF and data
    sizes 0 (what it writes at close): the header is given the file's true sizes, the audio
    behind it is kept whole; a file with no audio yet is stored as 0 s, not refused."""
    import wave
    spool, root = tmp_path / "spool", tmp_path / "recordings"
    spool.mkdir()
    for name, frames in (("cut-1.wav", 12000), ("cut-1-agent.wav", 12000), ("cut-1-debtor.wav", 0)):
        with wave.open(str(spool / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x10\x00" * frames)
        raw = bytearray((spool / name).read_bytes())
        raw[4:8] = raw[40:44] = b"\0\0\0\0"  # as Asterisk left them
        (spool / name).write_bytes(bytes(raw) + b"\x07")  # and half a sample frame
    stored = {f.leg: f for f in store_call(spool, root, "cut-1", dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.timezone.utc))}
    assert stored["mix"].seconds == stored["agent"].seconds == 1.5
    assert stored["debtor"].seconds == 0.0
    with wave.open(str(root / stored["agent"].relative_path)) as w:
        assert w.readframes(w.getnframes()) == b"\x10\x00" * 12000
    assert not any(spool.iterdir()), "the spool copies are removed once stored"
