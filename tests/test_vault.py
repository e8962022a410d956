"""The recording vault: ingest (stereo, atomic, idempotent), retention and purge, verify,
export and the access log. Real speech from tests/audio: the agent says an English
clip, the debtor a Mandarin one; every stored file is decoded and its channels compared
with what each party said."""
from __future__ import annotations

import array
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydub import AudioSegment
from sqlalchemy import func, select, text

from campaigns import queue
from campaigns.db import make_engine, sessions, transaction
from campaigns.models import (
    Agent,
    Attempt,
    Batch,
    Campaign,
    Case,
    Client,
    LegalHold,
    Phone,
    PurgeAudit,
    Recording,
    RecordingAccess,
    RecordingFile,
    VaultFile,
)
from recordings import access, integrity, retention, vault
from recordings.codecs import channels, decode
from recordings.errors import (
    AccessRefused,
    IntegrityError,
    LegMissing,
    NotFound,
    RetentionTooShort,
    VaultConflict,
    VaultError,
)
from recordings.store import sha256_of, store_call
from helpers import AGENT_CLIP, DEBTOR_CLIP, set_next_run, spool_call, tree

UTC = dt.timezone.utc
AUDIO = Path(__file__).resolve().parent / "audio"  # tests/audio: the clips, with their sources and licences
ANSWERED = dt.datetime(2026, 11, 25, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai
NOW = ANSWERED + dt.timedelta(minutes=5)
REPO = Path(__file__).resolve().parent.parent


# -- a small world: one client, case, campaign, agent, and answered calls ------------------

def add_world(s, client_code: str = "ICBC", at: dt.datetime = ANSWERED) -> dict[str, int]:
    client = Client(code=client_code, name="工商银行", created_at=at)
    s.add(client)
    s.flush()
    batch = Batch(client_id=client.id, name="b", file_name="b.csv", sha256=client_code.ljust(64, "0"), rows=1,
                  imported_at=at)
    campaign = Campaign(name=f"camp-{client_code}", client_id=client.id, created_at=at, status_changed_at=at)
    agent = Agent(extension=f"80{client.id:02d}", name="张敏", created_at=at)
    s.add_all([batch, campaign, agent])
    s.flush()
    return {"client": client.id, "batch": batch.id, "campaign": campaign.id, "agent": agent.id}


def add_case(s, world: dict[str, int], reference: str) -> tuple[int, int]:
    case = Case(client_id=world["client"], batch_id=world["batch"], reference=reference, debtor_name="李伟",
                amount_due=Decimal("1200.00"), days_past_due=40, created_at=ANSWERED)
    s.add(case)
    s.flush()
    phone = Phone(case_id=case.id, role="own_mobile", e164="+8613800138000", dial="13800138000")
    s.add(phone)
    s.flush()
    return case.id, phone.id


def add_call(s, world: dict[str, int], case_phone: tuple[int, int], call_id: str,
             answered_at: dt.datetime | None = ANSWERED) -> int:
    case_id, phone_id = case_phone
    attempt = Attempt(call_id=call_id, campaign_id=world["campaign"], case_id=case_id, phone_id=phone_id,
                      agent_id=world["agent"], number="13800138000", state="ended", planned_at=ANSWERED,
                      dialed_at=ANSWERED, answered_at=answered_at, ended_at=ANSWERED + dt.timedelta(minutes=3),
                      outcome="answered" if answered_at else "no_answer")
    s.add(attempt)
    s.flush()
    return attempt.id


@pytest.fixture
def one_call(tmp_path):
    """A factory with one answered call, and its legs in a spool directory."""
    def make(engine, call_id: str = "a1-8001-1"):
        factory = sessions(engine)
        with transaction(factory) as s:
            world = add_world(s)
            attempt_id = add_call(s, world, add_case(s, world, "C1"), call_id)
        return factory, attempt_id, spool_call(tmp_path / "spool", call_id)
    return make


def samples(segment: AudioSegment) -> array.array:
    return array.array("h", segment.raw_data)


def assert_holds(channel: AudioSegment, party: AudioSegment, other: AudioSegment) -> None:
    """The channel is exactly `party`'s leg, padded with silence to the longer leg."""
    got, want = samples(channel), samples(party)
    assert len(got) == max(len(want), len(samples(other)))
    assert got[:len(want)] == want
    assert not any(got[len(want):])


def envelope(segment: AudioSegment, ms: int = 20) -> list[float]:
    return [float(segment[i:i + ms].rms) for i in range(0, len(segment), ms)]


def correlation(a: list[float], b: list[float]) -> float:
    """Pearson correlation of two loudness envelopes (a lossy codec keeps the envelope of
    speech, not the exact waveform)."""
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    mean_a, mean_b = sum(a) / n, sum(b) / n
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    norm = (sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b)) ** 0.5
    return cov / norm if norm else 0.0


def ingest(factory, root: Path, attempt_id: int, legs, codec: str = "flac", now: dt.datetime = NOW) -> VaultFile:
    with transaction(factory) as s:
        return vault.ingest(s, root, attempt_id, legs, now, codec=codec)


# -- ingest ---------------------------------------------------------------------------------

def test_ingest_keeps_one_stereo_file_with_the_agent_left_and_the_debtor_right(database, one_call, tmp_path):
    factory, attempt_id, legs = one_call(database)
    root = tmp_path / "recordings"
    stored = ingest(factory, root, attempt_id, legs)
    path = root / stored.path
    assert stored.path == "vault/2026/11/25/a1-8001-1.flac" and stored.codec == "flac"
    assert path.stat().st_mode & 0o777 == 0o444, "stored files are read-only"
    assert sha256_of(path) == stored.sha256 and path.stat().st_size == stored.bytes

    parties = channels(decode(path))
    agent, debtor = AudioSegment.from_wav(AGENT_CLIP), AudioSegment.from_wav(DEBTOR_CLIP)
    assert_holds(parties["agent"], agent, debtor), "left channel: exactly what the agent said, then silence"
    assert_holds(parties["debtor"], debtor, agent), "right channel: exactly what the debtor said"
    assert float(stored.seconds) == pytest.approx(debtor.duration_seconds, abs=0.01), "as long as the longer leg"

    metadata = json.loads((root / stored.metadata_path).read_text())
    assert (root / stored.metadata_path).stat().st_mode & 0o777 == 0o444
    assert sha256_of(root / stored.metadata_path) == stored.metadata_sha256
    assert {k: metadata[k] for k in ("attempt_id", "call_id", "case_reference", "client_code", "campaign",
                                     "agent_extension", "recorded_at", "codec", "layout", "sha256", "file")} == {
        "attempt_id": attempt_id, "call_id": "a1-8001-1", "case_reference": "C1", "client_code": "ICBC",
        "campaign": "camp-ICBC", "agent_extension": "8001", "recorded_at": "2026-11-25T01:30:00+00:00",
        "codec": "flac", "layout": "left=agent,right=debtor", "sha256": stored.sha256, "file": "a1-8001-1.flac"}
    assert metadata["seconds"] == pytest.approx(debtor.duration_seconds, abs=0.01)
    with sessions(database)() as s:
        recording = s.scalar(select(Recording).where(Recording.attempt_id == attempt_id))
        row = s.scalar(select(VaultFile))
        assert row.recording_id == recording.id and row.retain_until == dt.datetime(2028, 11, 25, 1, 30, tzinfo=UTC)
        assert row.integrity == "ok" and row.checked_at == NOW


@pytest.mark.parametrize("codec", ["wav", "opus-16k", "mp3-32k"])
def test_every_codec_keeps_each_party_on_its_own_channel(sqlite_db, one_call, tmp_path, codec):
    factory, attempt_id, legs = one_call(sqlite_db)
    stored = ingest(factory, tmp_path / "recordings", attempt_id, legs, codec=codec)
    parties = channels(decode(tmp_path / "recordings" / stored.path))
    agent, debtor = AudioSegment.from_wav(AGENT_CLIP), AudioSegment.from_wav(DEBTOR_CLIP)
    if codec == "wav":
        assert_holds(parties["agent"], agent, debtor)
        assert_holds(parties["debtor"], debtor, agent)
        return
    # Lossy: each channel still follows the loudness of its own party's speech, not the other's.
    left, right = envelope(parties["agent"]), envelope(parties["debtor"])
    assert len(parties["agent"]) == pytest.approx(len(debtor), abs=1)
    assert correlation(left, envelope(agent)) > 0.9 and correlation(right, envelope(debtor)) > 0.9
    assert correlation(left, envelope(debtor)) < 0.5 and correlation(right, envelope(agent)) < 0.5


def test_ingesting_the_same_call_again_changes_nothing(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"
    first = ingest(factory, root, attempt_id, legs)
    before = tree(root)
    for f in legs.values():
        f.unlink()  # the spool copies may be gone by then: not needed for a call already kept
    again = ingest(factory, root, attempt_id, legs, now=NOW + dt.timedelta(days=1))
    assert again.id == first.id and again.stored_at == NOW
    assert tree(root) == before
    with sessions(sqlite_db)() as s:
        assert s.scalar(select(func.count()).select_from(VaultFile)) == 1
        assert s.scalar(select(func.count()).select_from(Recording)) == 1


def test_a_crash_before_the_rename_leaves_no_file_and_the_next_ingest_completes_it(sqlite_db, one_call, tmp_path,
                                                                                   monkeypatch):
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"

    def crash(src, dst):
        raise OSError("simulated crash between writing and publishing")
    monkeypatch.setattr(os, "link", crash)
    with pytest.raises(OSError, match="simulated crash"):
        ingest(factory, root, attempt_id, legs)
    assert [p for p in root.rglob("*") if p.is_file()] == [], "no partial file is visible"
    with sessions(sqlite_db)() as s:
        assert s.scalar(select(func.count()).select_from(VaultFile)) == 0
    monkeypatch.undo()
    stored = ingest(factory, root, attempt_id, legs)
    assert_holds(channels(decode(root / stored.path))["agent"], AudioSegment.from_wav(AGENT_CLIP),
                 AudioSegment.from_wav(DEBTOR_CLIP))


CRASHING_INGEST = """
import os, signal, sys, datetime as dt
from pathlib import Path
from campaigns.db import make_engine, sessions, transaction
from recordings import vault
from recordings.legs import leg_files
os.link = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)   # die right before publishing
url, root, spool, attempt_id, call_id = sys.argv[1:]
with transaction(sessions(make_engine(url))) as s:
    vault.ingest(s, Path(root), int(attempt_id), leg_files(Path(spool), call_id),
                 dt.datetime(2026, 11, 25, 1, 35, tzinfo=dt.timezone.utc))
"""


def test_a_killed_ingest_leaves_only_a_hidden_partial_that_the_next_ingest_replaces(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"
    killed = subprocess.run([sys.executable, "-c", CRASHING_INGEST, sqlite_db.url.render_as_string(), str(root),
                             str(legs["agent"].parent), str(attempt_id), "a1-8001-1"], cwd=REPO, capture_output=True, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    left = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    assert left == ["vault/2026/11/25/.a1-8001-1.flac.partial"], "only the hidden temporary file remains"
    with sessions(sqlite_db)() as s:
        report = integrity.verify(s, root, NOW)
    assert report.partials == left and report.orphans == []
    assert [u.call_id for u in report.unrecorded] == ["a1-8001-1"]

    stored = ingest(factory, root, attempt_id, legs)
    assert sorted(p.name for p in (root / "vault/2026/11/25").iterdir()) == ["a1-8001-1.flac", "a1-8001-1.json"]
    assert_holds(channels(decode(root / stored.path))["debtor"], AudioSegment.from_wav(DEBTOR_CLIP),
                 AudioSegment.from_wav(AGENT_CLIP))


def test_a_crash_after_the_rename_but_before_the_commit_is_adopted(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"
    with sessions(sqlite_db)() as s:  # files written, the transaction never committed
        vault.write_call(root, legs, vault.call_metadata(s, attempt_id), "flac")
    before = tree(root)
    # ... and the crash came between publishing the file and removing its temporary name.
    (root / "vault/2026/11/25/.a1-8001-1.flac.partial").write_bytes(b"half a file")
    stored = ingest(factory, root, attempt_id, legs)
    assert tree(root) == before, "the complete files are kept as they are, not rewritten; the leftover is gone"
    assert sha256_of(root / stored.path) == stored.sha256


def test_a_missing_leg_stores_nothing(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    legs["debtor"].unlink()
    with pytest.raises(LegMissing, match="the debtor leg .* is missing; nothing was stored"):
        ingest(factory, tmp_path / "recordings", attempt_id, legs)
    assert not [p for p in (tmp_path / "recordings").rglob("*") if p.is_file()]


# -- retention, holds, purge ----------------------------------------------------------------

def test_a_retention_below_two_years_is_refused(sqlite_db):
    with transaction(sessions(sqlite_db)) as s:
        add_world(s, "CMB")
    with pytest.raises(RetentionTooShort, match=r"^retention for client CMB: 1 year is below the legal minimum "
                                                r"of 2 years$"):
        with transaction(sessions(sqlite_db)) as s:
            retention.set_retention(s, "CMB", 1, "admin", NOW)


def test_a_longer_retention_moves_the_date_of_every_kept_recording(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    ingest(factory, tmp_path / "recordings", attempt_id, legs)
    with transaction(factory) as s:
        assert retention.set_retention(s, "ICBC", 3, "admin", NOW) == 1
    with sessions(sqlite_db)() as s:
        assert s.scalar(select(VaultFile.retain_until)) == dt.datetime(2029, 11, 25, 1, 30, tzinfo=UTC)


def test_leap_day_recordings_are_kept_until_the_first_of_march():
    at = dt.datetime(2028, 2, 29, 12, 0, tzinfo=UTC)
    assert retention.add_years(at, 2) == dt.datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


@settings(max_examples=400)
@given(recorded=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1), timezones=st.just(UTC)),
       retain_days=st.integers(-1000, 2000), age_days=st.integers(-10, 4000), held=st.booleans())
def test_the_verdict_never_lets_a_recording_go_before_two_years_or_while_held(recorded, retain_days, age_days, held):
    """Whatever the stored retain_until says (even earlier than the law allows)."""
    now = recorded + dt.timedelta(days=age_days)
    decision = retention.verdict(recorded, recorded + dt.timedelta(days=retain_days), held, now)
    if decision is retention.Verdict.PURGE:
        assert now >= retention.add_years(recorded, 2) and not held
        assert now >= recorded + dt.timedelta(days=retain_days)


def tiny_vault(s, root: Path, world, case_phone, call_id: str, recorded_at: dt.datetime) -> VaultFile:
    """A stored call without audio work: write_call's bookkeeping over two small files."""
    attempt_id = add_call(s, world, case_phone, call_id, answered_at=recorded_at)
    meta = vault.call_metadata(s, attempt_id)
    for name in (f"vault/{call_id}.flac", f"vault/{call_id}.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(call_id.encode())
    digest = sha256_of(root / f"vault/{call_id}.flac")
    written = vault.Written(f"vault/{call_id}.flac", digest, len(call_id), 1.0, "flac", f"vault/{call_id}.json", digest)
    return vault.register(s, meta, written, recorded_at)


#: Recordings as (case, whole years before `now`, seconds more or less): small offsets put
#: many right at the 2-, 3- and 4-year boundaries, to the second.
calls = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5),
                           st.one_of(st.integers(-3, 3), st.integers(-200 * 86400, 200 * 86400))),
                 min_size=1, max_size=8)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """One migrated SQLite database, copied for each generated example."""
    from campaigns.db import migrate
    path = tmp_path_factory.mktemp("template") / "dunning.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recordings=calls, case_holds=st.sets(st.integers(0, 3), max_size=2),
       recording_holds=st.sets(st.integers(0, 7), max_size=3), released=st.sets(st.integers(0, 4)),
       years=st.integers(2, 4), dry_run=st.booleans(), leap=st.booleans())
def test_purge_never_deletes_anything_younger_than_two_years_or_on_hold(
        template_db, tmp_path_factory, recordings, case_holds, recording_holds, released, years, dry_run, leap):
    work = tmp_path_factory.mktemp("purge")
    shutil.copyfile(template_db, work / "dunning.db")
    engine = make_engine(f"sqlite:///{work / 'dunning.db'}")
    root = work / "recordings"
    now = dt.datetime(2032 if leap else 2031, 2, 29 if leap else 28, 3, 0, tzinfo=UTC)
    start = now - dt.timedelta(days=7 * 366)
    factory = sessions(engine)
    with transaction(factory) as s:
        world = add_world(s, at=start)
        cases = [add_case(s, world, f"C{i}") for i in range(4)]
        retention.set_retention(s, "ICBC", years, "admin", start)
        stored = [tiny_vault(s, root, world, cases[case], f"call-{i}",
                             retention.add_years(now, -back) + dt.timedelta(seconds=offset))
                  for i, (case, back, offset) in enumerate(recordings)]
        targets = [("case", c) for c in sorted(case_holds)] + [("recording", r) for r in sorted(recording_holds)
                                                                if r < len(stored)]
        holds = [retention.place_hold(s, retention.HoldTarget(case_id=cases[n][0]) if kind == "case" else
                                      retention.HoldTarget(recording_id=stored[n].recording_id), "legal", "dispute", start)
                 for kind, n in targets]
        for i in released & set(range(len(holds))):
            retention.release_hold(s, holds[i].id, "legal", "settled", start + dt.timedelta(days=1))
        active = {targets[i] for i in range(len(targets)) if i not in released}
        held = {f.recording_id for i, (f, (case, *_)) in enumerate(zip(stored, recordings))
                if ("case", case) in active or ("recording", i) in active}
        facts = {f.recording_id: (f.recorded_at, f.path) for f in stored}
    with transaction(factory) as s:
        report = retention.purge(s, root, now, "nightly", dry_run=dry_run)
    event(f"purged: {bool(report.purged)}, kept on hold: {bool(report.held)}")
    for recording in report.purged:
        recorded_at, _ = facts[recording.recording_id]
        assert now >= retention.add_years(recorded_at, years) >= retention.add_years(recorded_at, 2)
        assert recording.recording_id not in held
    gone = {rid for rid, (_, path) in facts.items() if not (root / path).exists()}
    assert gone == (set() if dry_run else {r.recording_id for r in report.purged})
    expected = {rid for rid, (at, _) in facts.items() if now >= retention.add_years(at, years) and rid not in held}
    assert {r.recording_id for r in report.purged} == expected, "everything due and not held goes, nothing else"
    assert {r.recording_id for r in report.held} == {
        rid for rid, (at, _) in facts.items() if now >= retention.add_years(at, years) and rid in held}
    with sessions(engine)() as s:
        assert s.scalar(select(func.count()).select_from(PurgeAudit)) == (0 if dry_run else 2 * len(expected))
    engine.dispose()


@pytest.fixture
def stored_and_legs(one_call, tmp_path):
    """The engine's path today plus the vault: store_call keeps the legs, attach_recording
    links them, ingest builds the stereo file from the stored legs."""
    def make(engine):
        factory, attempt_id, legs = one_call(engine)
        root = tmp_path / "recordings"
        files = store_call(legs["agent"].parent, root, "a1-8001-1", ANSWERED)
        with transaction(factory) as s:
            queue.attach_recording(s, attempt_id, ANSWERED, files)
        stored_legs = {f.leg: root / f.relative_path for f in files}
        return factory, attempt_id, root, ingest(factory, root, attempt_id, stored_legs)
    return make


def test_purge_deletes_past_retention_with_one_audit_row_per_file_and_dry_run_deletes_nothing(
        database, stored_and_legs):
    factory, _, root, stored = stored_and_legs(database)
    before = tree(root)
    young = retention.add_years(ANSWERED, 2) - dt.timedelta(seconds=1)
    with transaction(factory) as s:
        assert retention.purge(s, root, young, "nightly").purged == []
    due = retention.add_years(ANSWERED, 2)
    with transaction(factory) as s:
        dry = retention.purge(s, root, due, "nightly", dry_run=True)
    assert [r.recording_id for r in dry.purged] == [stored.recording_id]
    assert "would delete recording" in dry.lines()[0] and "nothing was changed" in dry.lines()[-1]
    assert tree(root) == before, "a dry run deletes nothing"
    with sessions(database)() as s:
        assert s.scalar(select(func.count()).select_from(PurgeAudit)) == 0

    with transaction(factory) as s:
        report = retention.purge(s, root, due, "nightly")
    files = {stored.path, stored.metadata_path, *(p for p in before if "-" in Path(p).name and p.endswith(".wav"))}
    assert len(files) == 5 and set(report.purged[0].files) == files, "stereo, metadata and the three legs"
    assert [p for p in tree(root) if not p.startswith("audit/")] == []
    with sessions(database)() as s:
        audit = s.scalars(select(PurgeAudit).order_by(PurgeAudit.id)).all()
        assert [(a.path, a.action, a.purged_by, a.purged_at) for a in audit] == [
            (p, "deleted", "nightly", due) for p in report.purged[0].files]
        assert {a.path: a.sha256 for a in audit}[stored.path] == stored.sha256
        assert s.scalar(select(VaultFile)).purged_at == due
        assert s.scalar(select(func.count()).select_from(RecordingFile)) == 0
    lines = [json.loads(line) for line in (root / "audit/purge.jsonl").read_text().splitlines()]
    assert [(line["path"], line["sha256"], line["action"]) for line in lines] == [
        (a.path, a.sha256, "deleted") for a in audit]
    with transaction(factory) as s:
        assert retention.purge(s, root, due + dt.timedelta(days=1), "nightly").purged == [], "purged once"
        assert integrity.verify(s, root, due).ok, "a purged call is neither missing nor unrecorded"


def test_the_audit_and_access_tables_refuse_updates_and_deletes(database, stored_and_legs):
    factory, _, root, stored = stored_and_legs(database)
    with transaction(factory) as s:
        retention.purge(s, root, retention.add_years(ANSWERED, 2), "nightly")
        s.add(RecordingAccess(accessed_at=NOW, accessed_by="qa", reason="check", action="play",
                              recording_id=stored.recording_id, sha256=stored.sha256))
    for statement in ("UPDATE purge_audit SET purged_by = 'someone else'", "DELETE FROM purge_audit",
                      "UPDATE recording_access SET reason = 'other'", "DELETE FROM recording_access"):
        with pytest.raises(Exception, match="append-only"):
            with database.begin() as conn:
                conn.execute(text(statement))
    with sessions(database)() as s:
        assert s.scalar(select(func.count()).select_from(PurgeAudit)) == 5
        assert s.scalar(select(PurgeAudit.purged_by).limit(1)) == "nightly"


def test_a_hold_on_the_case_keeps_the_recording_until_released(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"
    stored = ingest(factory, root, attempt_id, legs)
    due = retention.add_years(ANSWERED, 5)
    with transaction(factory) as s:
        hold = retention.place_hold(s, retention.hold_target(s, "case:ICBC/C1"), "legal", "lawsuit 2026-17", NOW)
        assert retention.hold_target(s, "recording:a1-8001-1").recording_id == stored.recording_id
        assert retention.hold_target(s, f"recording:{stored.recording_id}").recording_id == stored.recording_id
        for wrong, message in (("C1", "write case:REFERENCE"), ("case:C9", "no case 'C9'"),
                               ("recording:nope", "no recording 'nope'")):
            with pytest.raises(NotFound, match=message):
                retention.hold_target(s, wrong)
        with pytest.raises(VaultError, match="needs who places it and why"):
            retention.place_hold(s, retention.hold_target(s, "case:C1"), "legal", " ", NOW)
    with transaction(factory) as s:
        report = retention.purge(s, root, due, "nightly")
    assert report.purged == [] and [r.recording_id for r in report.held] == [stored.recording_id]
    assert (root / stored.path).exists()
    with transaction(factory) as s:
        retention.release_hold(s, hold.id, "legal", "case closed", due)
        assert [r.recording_id for r in retention.purge(s, root, due, "nightly").purged] == [stored.recording_id]
    assert not (root / stored.path).exists()


def cli_env(engine, root: Path, home: Path) -> dict[str, str]:
    """The environment `dunning` reads: this database, this recordings dir."""
    return {"DUNNING_DATABASE_URL": engine.url.render_as_string(hide_password=False), "DUNNING_RECORDINGS": str(root),
            "DUNNING_HOME": str(home), "DUNNING_SPOOL": str(home / "spool")}


def dunning(env: dict[str, str], *args: str):
    from click.testing import CliRunner

    from cli import main
    return CliRunner().invoke(main, list(args), env=env)


def job_scheduler(url: str):
    """A process's scheduler on the database's job store, started paused (as `dunning run`
    starts it while it registers its jobs)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from campaigns.jobs import job_store
    scheduler = BackgroundScheduler(timezone="UTC", jobstores={"default": job_store(url)})
    scheduler.start(paused=True)
    return scheduler


def test_the_daily_purge_is_one_job_in_the_database_and_one_missed_runs_when_a_scheduler_starts(
        sqlite_db, one_call, tmp_path, monkeypatch):
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED

    from campaigns.jobs import scheduled_jobs
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"
    stored = ingest(factory, root, attempt_id, legs)
    url = sqlite_db.url.render_as_string(hide_password=False)
    for _ in range(2):  # two engines (`dunning run` of two campaigns) register it: one job
        scheduler = job_scheduler(url)
        job = retention.schedule_purge(scheduler, url, root)
        scheduler.shutdown(wait=False)
    assert job.id == retention.PURGE_JOB_ID and str(job.trigger) == "cron[hour='3', minute='30']"
    assert str(job.trigger.timezone) == "Asia/Shanghai" and job.coalesce and job.misfire_grace_time is None
    listed = [job_id for job_id, _ in scheduled_jobs(url)]
    assert listed == [retention.PURGE_JOB_ID], "`dunning schedule` lists it, once"
    assert retention.PURGE_JOB_ID in dunning(cli_env(sqlite_db, root, tmp_path), "schedule").output

    # No scheduler ran at 03:30; the next one to start (even days later) registers it again,
    # which keeps the missed run, and runs it once.
    missed = dt.datetime(2026, 11, 24, 19, 30, tzinfo=UTC)  # 03:30 in Shanghai, before the wall clock
    set_next_run(url, retention.PURGE_JOB_ID, missed)
    for _ in range(2):
        assert scheduled_jobs(url) == [(retention.PURGE_JOB_ID, missed)], "listing it leaves it due"
    scheduler = job_scheduler(url)
    assert retention.schedule_purge(scheduler, url, root).next_run_time == missed
    monkeypatch.setattr(retention, "utc_now", lambda: retention.add_years(ANSWERED, 2))  # the purge's clock
    runs = []
    scheduler.add_listener(runs.append, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    try:
        scheduler.resume()
        deadline = time.monotonic() + 20
        while not runs and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    (run,) = runs
    assert run.exception is None, run.traceback
    assert [r.recording_id for r in run.retval.purged] == [stored.recording_id] and not (root / stored.path).exists()
    (_, next_at), = scheduled_jobs(url)
    assert next_at > dt.datetime.now(UTC), "then the next 03:30"


def test_two_purges_never_overlap(sqlite_db, stored_and_legs, tmp_path, monkeypatch):
    """Two schedulers (or a scheduler and `dunning recordings purge`) at the same moment:
    one purges, the other finds the lock taken and does nothing; nothing is audited twice."""
    import concurrent.futures
    _, _, root, stored = stored_and_legs(sqlite_db)
    url = sqlite_db.url.render_as_string(hide_password=False)
    monkeypatch.setattr(retention, "utc_now", lambda: retention.add_years(ANSWERED, 2))
    plan = retention._plan

    def slow_plan(*args):  # both would plan the same deletions, were they not locked out
        found = plan(*args)
        time.sleep(0.5)
        return found
    monkeypatch.setattr(retention, "_plan", slow_plan)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: retention.scheduled_purge(url, str(root)), range(2)))
    assert sorted(report is None for report in reports) == [False, True]
    done = next(report for report in reports if report is not None)
    assert [r.recording_id for r in done.purged] == [stored.recording_id]
    with sessions(sqlite_db)() as s:
        assert s.scalar(select(func.count()).select_from(PurgeAudit)) == 5, "each file audited once"
    assert len((root / retention.AUDIT_LOG).read_text().splitlines()) == 5

    with retention.purge_lock(root):
        refused = dunning(cli_env(sqlite_db, root, tmp_path), "recordings", "purge")
    assert refused.exit_code == 1
    assert f"another purge is running on {root}" in refused.output and "nothing was done" in refused.output
    assert dunning(cli_env(sqlite_db, root, tmp_path), "recordings", "purge").exit_code == 0, "once it is over"


def test_hold_and_release_on_the_command_line(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"
    ingest(factory, root, attempt_id, legs)
    env = cli_env(sqlite_db, root, tmp_path)
    placed = dunning(env, "recordings", "hold", "case:ICBC/C1", "--reason", "lawsuit 2026-17")
    assert placed.exit_code == 0 and placed.output == "hold 1 placed on case:ICBC/C1\n", placed.output
    released = dunning(env, "recordings", "release", "1", "--reason", "case closed")
    assert released.exit_code == 0 and released.output == "hold 1 released\n", released.output
    with sessions(sqlite_db)() as s:
        hold = s.scalar(select(LegalHold))
        assert (hold.release_reason, hold.released_by) == ("case closed", retention_operator())
        assert hold.released_at is not None
        assert retention.active_holds(s) == (set(), set())
    again = dunning(env, "recordings", "release", "1", "--reason", "twice")
    assert again.exit_code == 1 and "no active legal hold 1" in again.output


def retention_operator() -> str:
    import getpass
    return os.environ.get("SUDO_USER") or getpass.getuser()


# -- verify ------------------------------------------------------------------------------------

def test_verify_reports_a_flipped_byte_a_deleted_file_and_an_orphan(database, stored_and_legs):
    factory, _, root, stored = stored_and_legs(database)
    seen = []
    with transaction(factory) as s:
        clean = integrity.verify(s, root, NOW, progress=lambda done, total: seen.append((done, total)))
    assert clean.ok and clean.files == 5 and clean.lines()[-1].startswith("5 files")
    assert seen[0] == (0, clean.bytes) and seen[-1] == (clean.bytes, clean.bytes)

    path = root / stored.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    leg = next(p for p in root.rglob("*-debtor.wav"))
    leg.unlink()
    (root / "2026/11/25/stray.wav").write_bytes(b"RIFF")
    with transaction(factory) as s:
        report = integrity.verify(s, root, NOW + dt.timedelta(hours=1))
    assert [r.path for r in report.changed] == [stored.path]
    assert [r.path for r in report.missing] == [leg.relative_to(root).as_posix()]
    assert report.orphans == ["2026/11/25/stray.wav"] and not report.ok
    assert any(line.startswith("CHANGED vault/2026/11/25/a1-8001-1.flac") for line in report.lines())
    with sessions(database)() as s:
        row = s.scalar(select(VaultFile))
        assert (row.integrity, row.checked_at) == ("changed", NOW + dt.timedelta(hours=1))
        assert integrity.coverage(s, dt.date(2026, 11, 25), "Asia/Shanghai") == (0, 1)


def test_answered_calls_without_a_recording_are_reported_and_coverage_counts_per_day(database, one_call, tmp_path):
    factory, attempt_id, legs = one_call(database)
    root = tmp_path / "recordings"
    ingest(factory, root, attempt_id, legs)
    with transaction(factory) as s:
        world = {"campaign": s.scalar(select(Campaign.id)), "agent": s.scalar(select(Agent.id))}
        case_phone = (s.scalar(select(Case.id)), s.scalar(select(Phone.id)))
        add_call(s, world, case_phone, "a1-8001-2")  # answered, nothing kept
        add_call(s, world, case_phone, "a1-8001-3", answered_at=None)  # not answered: nothing to keep
        late = add_call(s, world, case_phone, "a1-8001-4", answered_at=dt.datetime(2026, 11, 25, 16, 30, tzinfo=UTC))
        s.get(Attempt, late).dialed_at = dt.datetime(2026, 11, 25, 16, 29, 50, tzinfo=UTC)  # the day is the dial's
    with transaction(factory) as s:
        report = integrity.verify(s, root, NOW)
        assert [(u.call_id, u.has_legs) for u in report.unrecorded] == [("a1-8001-2", False), ("a1-8001-4", False)]
        assert "UNRECORDED call a1-8001-2" in report.lines()[0]
        # 16:30 UTC is 00:30 the next day in Shanghai.
        assert integrity.coverage(s, dt.date(2026, 11, 25), "Asia/Shanghai") == (1, 2)
        assert integrity.coverage(s, dt.date(2026, 11, 26), "Asia/Shanghai") == (0, 1)
        assert integrity.coverage(s, dt.date(2026, 11, 25), "UTC") == (1, 3)
        assert s.get(Attempt, late).call_id == "a1-8001-4"


# -- access ----------------------------------------------------------------------------------

def test_export_writes_a_copy_and_its_checksum_and_logs_the_access(database, one_call, tmp_path):
    factory, attempt_id, legs = one_call(database)
    root = tmp_path / "recordings"
    stored = ingest(factory, root, attempt_id, legs)
    dest = tmp_path / "for-the-bank"
    with transaction(factory) as s:
        recording = retention.find_recording(s, "a1-8001-1")
        exported = access.export(s, root, recording.id, dest, "wang.qa", "bank request 2026-311", NOW)
    assert exported.path == dest / "a1-8001-1.flac" and exported.sha256 == stored.sha256
    assert exported.checksum_path.read_text() == f"{stored.sha256}  a1-8001-1.flac\n"
    checked = subprocess.run(["sha256sum", "-c", exported.checksum_path.name], cwd=dest, capture_output=True, check=False)
    assert checked.returncode == 0, checked.stdout
    with transaction(factory) as s:
        played = access.playback(s, root, stored.recording_id, "li.qa", "weekly QA check", NOW + dt.timedelta(hours=1))
        assert played == root / stored.path
        with pytest.raises(AccessRefused, match="a user and a reason"):
            access.export(s, root, stored.recording_id, tmp_path / "other", "wang.qa", " ", NOW)
    with sessions(database)() as s:
        log = s.scalars(select(RecordingAccess).order_by(RecordingAccess.id)).all()
        assert [(a.action, a.accessed_by, a.reason, a.recording_id, a.accessed_at) for a in log] == [
            ("export", "wang.qa", "bank request 2026-311", stored.recording_id, NOW),
            ("play", "li.qa", "weekly QA check", stored.recording_id, NOW + dt.timedelta(hours=1))]
        assert log[0].target == str(exported.path.resolve()) and log[0].sha256 == stored.sha256


def test_a_changed_file_is_not_exported(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"
    stored = ingest(factory, root, attempt_id, legs)
    os.chmod(root / stored.path, 0o644)
    with open(root / stored.path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(IntegrityError, match="no longer matches its checksum"):
        with transaction(factory) as s:
            access.export(s, root, stored.recording_id, tmp_path / "out", "wang.qa", "bank request", NOW)
    assert not (tmp_path / "out").exists()


# -- overwrite refused, a deleted stereo file, coverage in the daily report, verify's CLI ------

def test_a_metadata_file_that_describes_another_recording_is_never_overwritten(sqlite_db, one_call, tmp_path):
    factory, attempt_id, legs = one_call(sqlite_db)
    root = tmp_path / "recordings"
    foreign = root / "vault/2026/11/25/a1-8001-1.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b'{"call_id": "a1-8001-1", "case_reference": "someone else"}\n')
    os.chmod(foreign, 0o444)
    with pytest.raises(VaultConflict, match=r"a1-8001-1\.json exists and describes another recording; "
                                            r"it was not overwritten"):
        ingest(factory, root, attempt_id, legs)
    assert foreign.read_bytes() == b'{"call_id": "a1-8001-1", "case_reference": "someone else"}\n'
    with sessions(sqlite_db)() as s:
        assert s.scalar(select(func.count()).select_from(VaultFile)) == 0, "nothing registered"
    with transaction(factory) as s:
        assert [u.call_id for u in integrity.verify(s, root, NOW).unrecorded] == ["a1-8001-1"]


def test_a_deleted_stereo_file_is_reported_and_lowers_the_coverage_once_verified(sqlite_db, stored_and_legs):
    from campaigns.report import daily, render
    factory, _, root, stored = stored_and_legs(sqlite_db)
    with transaction(factory) as s:
        assert integrity.verify(s, root, NOW).ok
    (root / stored.path).unlink()
    with sessions(sqlite_db)() as s:
        # "Verified" is what the last check found: until verify runs again, the report cannot know.
        assert daily(s, dt.date(2026, 11, 25), "Asia/Shanghai").coverage == (1, 1)
    with transaction(factory) as s:
        report = integrity.verify(s, root, NOW + dt.timedelta(days=1))
    assert [r.path for r in report.missing] == [stored.path] and not report.ok
    assert f"MISSING {stored.path} (recording {stored.recording_id}, call a1-8001-1)" in report.lines()
    with sessions(sqlite_db)() as s:
        assert s.scalar(select(VaultFile.integrity)) == "missing"
        day = daily(s, dt.date(2026, 11, 25), "Asia/Shanghai")
        assert integrity.coverage(s, dt.date(2026, 11, 25), "Asia/Shanghai") == (0, 1)
    assert day.coverage == (0, 1)
    assert render(day).endswith("recording coverage: 0 of 1 answered calls have a verified recording in the vault "
                                "(0 %; it must be 100 %)")


def test_the_daily_report_shows_coverage_below_100_when_an_answered_call_has_no_recording(sqlite_db, one_call,
                                                                                         tmp_path):
    from campaigns.report import daily, render
    factory, attempt_id, legs = one_call(sqlite_db)
    ingest(factory, tmp_path / "recordings", attempt_id, legs)
    shanghai = dt.timezone(dt.timedelta(hours=8))
    with transaction(factory) as s:
        world = {"campaign": s.scalar(select(Campaign.id)), "agent": s.scalar(select(Agent.id))}
        case_phone = (s.scalar(select(Case.id)), s.scalar(select(Phone.id)))
        add_call(s, world, case_phone, "a1-8001-2")  # answered, nothing kept
        # Dialled at 23:59:58 on the 25th in Shanghai, answered at 00:00:03 on the 26th: the
        # report and the coverage both count it on the day it was dialled.
        late = add_call(s, world, case_phone, "a1-8001-3",
                        answered_at=dt.datetime(2026, 11, 26, 0, 0, 3, tzinfo=shanghai))
        s.get(Attempt, late).dialed_at = dt.datetime(2026, 11, 25, 23, 59, 58, tzinfo=shanghai)
    with sessions(sqlite_db)() as s:
        day = daily(s, dt.date(2026, 11, 25), "Asia/Shanghai")
        next_day = daily(s, dt.date(2026, 11, 26), "Asia/Shanghai")
        assert integrity.coverage(s, dt.date(2026, 11, 25), "Asia/Shanghai") == day.coverage == (1, 3)
        assert integrity.coverage(s, dt.date(2026, 11, 26), "Asia/Shanghai") == next_day.coverage == (0, 0)
    assert day.campaigns[0].dials == 3 and day.campaigns[0].answered == 3
    assert "recording coverage: 1 of 3 answered calls have a verified recording in the vault (33 %; it must be " \
           "100 %)" in render(day)


def test_verify_on_the_command_line_shows_its_progress_and_throughput(sqlite_db, stored_and_legs, tmp_path,
                                                                       monkeypatch):
    import re

    import click._termui_impl
    _, _, root, stored = stored_and_legs(sqlite_db)
    monkeypatch.setattr(click._termui_impl, "isatty", lambda _: True)  # the bar as a terminal shows it
    result = dunning(cli_env(sqlite_db, root, tmp_path), "recordings", "verify")
    assert result.exit_code == 0, result.output
    bar = result.stderr.split("\r")
    assert any(re.match(r"verifying\s+\[-+\]\s+0%", frame) for frame in bar), bar
    assert any(re.match(r"verifying\s+\[#+\]\s+100%", frame) for frame in bar), bar
    lines = result.stdout.splitlines()
    assert lines[-2].startswith("5 files, ") and " 0 missing, 0 changed, 0 orphans" in lines[-2]
    assert re.fullmatch(r"throughput \d+\.\d MB/s", lines[-1]), lines[-1]
    (root / stored.path).unlink()
    broken = dunning(cli_env(sqlite_db, root, tmp_path), "recordings", "verify")
    assert broken.exit_code == 1 and f"MISSING {stored.path}" in broken.stdout


# -- the codec bench's arithmetic (bench/codecs.py) --------------------------------------------

def test_the_codec_table_gives_the_storage_per_agent_year_and_per_100_agents_over_2_years(monkeypatch):
    import math

    monkeypatch.syspath_prepend(str(REPO))  # bench/ is run from the repository, not installed
    from bench.codecs import Row, Workload, table
    from recordings.codecs import CODECS
    workload = Workload()  # the targets: 50 effective calls of 3 minutes a day, 250 working days
    assert workload.minutes_per_agent_year == 37_500
    every_answered = Workload(other_calls_per_day=150, other_minutes_per_call=0.5)
    assert every_answered.minutes_per_agent_year == 56_250, "the other 150 dials answered, 30 s each"
    rows = [Row(CODECS["wav"], 1_920_000, 1_920_000, -math.inf, 12_000, 786, 1.0, 1.0),
            Row(CODECS["flac"], 496_000, 1_047_000, -math.inf, 383, 526, 1.0, 1.0),
            Row(CODECS["mp3-32k"], 240_200, 240_200, -106.4, 182, 613, 0.0, None)]
    lines = table(rows, workload, agents=100, years=2).splitlines()
    assert lines[0] == ("| codec | kB/min (turns) | kB/min (both talking) | size vs WAV | crosstalk | encode ×RT "
                        "| decode ×RT | STT words vs WAV | STT syllables vs WAV | GB per agent-year "
                        "| TB per 100 agents, 2 years |")
    # 8 kHz × 2 channels × 2 bytes = 1.92 MB a minute; × 37,500 minutes = 72 GB; × 100 × 2 = 14.4 TB.
    assert lines[2] == "| wav (lossless) | 1920 | 1920 | 1.00 | none | 12000 | 786 | 100% | 100% | 72.0 | 14.40 |"
    assert lines[3] == "| flac (lossless) | 496 | 1047 | 0.55 | none | 383 | 526 | 100% | 100% | 39.3 | 7.85 |"
    assert lines[4] == "| mp3-32k (32kbit/s) | 240 | 240 | 0.13 | -106 dB | 182 | 613 | 0% | n/a | 9.0 | 1.80 |"
    wav_all = table(rows[:1], every_answered, agents=100, years=2).splitlines()[2]
    assert wav_all.endswith("| 108.0 | 21.60 |")


def test_the_speech_to_text_agreement_measure(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from bench.codecs import agreement, edit_distance, syllables
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1 and edit_distance([], ["x"]) == 1
    assert agreement([(["a", "b"], ["a", "b"])]) == 1.0
    assert agreement([(["a", "b"], ["a", "b"]), (["c", "d"], ["x"])]) == 0.5, "2 edits over 4 reference words"
    assert agreement([(["a"], ["x", "y", "z"])]) == 0.0, "floored at 0"
    assert agreement([]) == 1.0 and agreement([([], ["x"])]) == 1.0, "no reference words: nothing to lose"
    assert syllables("널 오륜 벼") == ["널", "오", "륜", "벼"]
    assert agreement([(syllables("오륜벼"), syllables("오류 벼"))]) == pytest.approx(2 / 3)


def test_a_new_day_folder_is_made_durable_in_its_parent(tmp_path, monkeypatch):
    """A crash must not lose a new YYYY/MM/DD folder with the files already published in it:
    each directory created is fsynced into its parent, top down; existing ones are left be."""
    from recordings import store
    synced = []
    monkeypatch.setattr(store, "fsync_path", synced.append)
    (tmp_path / "vault" / "2026").mkdir(parents=True)
    store.make_dirs(tmp_path / "vault" / "2026" / "11" / "25")
    assert (tmp_path / "vault" / "2026" / "11" / "25").is_dir()
    assert synced == [tmp_path / "vault" / "2026", tmp_path / "vault" / "2026" / "11"]
    synced.clear()
    store.make_dirs(tmp_path / "vault" / "2026" / "11" / "25")
    assert synced == []
