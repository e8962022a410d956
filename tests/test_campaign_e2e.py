"""A campaign end to end on the real sandbox, with two baresip agents, through a day.

The engine's clock is moved explicitly (morning, noon, evening, after 20:00 in the debtors'
time zone) while the calls themselves are real and take their real time. Everything is
checked against independent evidence: Asterisk's own log of what it dialled, the recording
files on disk, and a tally of attempts per number and slot written here.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from asterisk_conf.softphone import Softphone
from campaigns import admin, queue
from campaigns.db import make_engine, migrate, sessions, transaction
from campaigns.importing import import_batch
from campaigns.models import Attempt, Phone, Recording
from dialer.engine import ShiftedClock
from dialer.runner import run_campaign
from recordings.legs import SILENCE_DBFS
from recordings.store import wav_seconds
from helpers import dial_lines, set_local

pytestmark = pytest.mark.asterisk
SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.timezone.utc

#: reference -> (mobile, home); the last digit decides what the simulated phone does.
CASES = {
    "E1": ("13800138000", ""),             # answers after 3 s
    "E2": ("13912345676", "075588886661"),  # mobile busy; home answers after 4 s
    "E3": ("13700001237", ""),             # never answers
    "E4": ("13600001239", ""),             # no such number
    "E5": ("15800001238", ""),             # answers and hangs up at once
}


def batch_csv(path: Path, stamp: str) -> Path:
    rows = ["案件编号,姓名,欠款金额,逾期天数,手机,家庭电话"]
    for i, (ref, (mobile, home)) in enumerate(CASES.items()):
        rows.append(f"{ref}-{stamp},债务人{i},{9000 - 1000 * i}.00,{60 - i},{mobile},{home}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    return path


async def test_campaign_through_a_day(sandbox_up, creds, agent_speech, tmp_path):
    site = dataclasses.replace(sandbox_up, recordings=tmp_path / "recordings",
                               database_url=f"sqlite:///{tmp_path / 'dunning.db'}")
    engine = make_engine(site.database)
    migrate(engine)
    factory = sessions(engine)
    stamp = dt.datetime.now(UTC).strftime("%H%M%S%f")
    clock = ShiftedClock()
    morning = set_local(clock, 9, 30)
    report = import_batch(factory, batch_csv(tmp_path / "batch.csv", stamp), "E2E-BANK", now=clock.now())
    assert report.ok and report.imported == len(CASES), report.problems
    extensions = sorted(creds.agent_passwords)[:2]
    with transaction(factory) as s:
        for ext in extensions:
            admin.add_agent(s, ext, f"agent {ext}", clock.now())
        admin.create_campaign(s, "day", "E2E-BANK", clock.now(), timezone="Asia/Shanghai",
                              settings={"ring_seconds": 15, "wrap_up_seconds": 1})
        # The same debtors seen from London, where this moment is the middle of the night.
        admin.create_campaign(s, "night", "E2E-BANK", clock.now(), timezone="Europe/London",
                              settings={"ring_seconds": 15, "wrap_up_seconds": 1})
        queue.change_campaign(s, "day", "start", clock.now())
        queue.change_campaign(s, "night", "start", clock.now())
    assert morning.astimezone(ZoneInfo("Europe/London")).hour < 8

    phones = [Softphone(ext, creds.agent_passwords[ext], agent_speech, tmp_path / ext,
                        sip_server=f"127.0.0.1:{site.sip_port}") for ext in extensions]
    for phone in phones:
        phone.start()
    before = set(dial_lines(site))
    try:
        night = await run_campaign(site, factory, "night", extensions, until_idle=True, clock=clock)
        assert night.dials == 0, "nothing is dialled where it is night"
        for hour, minute in ((9, 30), (12, 30), (17, 30), (20, 10)):
            set_local(clock, hour, minute)
            summary = await run_campaign(site, factory, "day", extensions, until_idle=True, clock=clock)
            assert not summary.problems, summary.problems
    finally:
        for phone in phones:
            phone.stop()

    with sessions(engine)() as s:
        attempts = list(s.scalars(select(Attempt).order_by(Attempt.id)))
        phone_of = {p.id: p for p in s.scalars(select(Phone))}
        recordings = {r.attempt_id: r for r in s.scalars(select(Recording))}
        files = {r.attempt_id: {f.leg: f for f in r.files} for r in recordings.values()}

    # Every dial has exactly one row, and Asterisk dialled each row exactly once.
    assert attempts and all(a.state == "ended" and a.dialed_at is not None for a in attempts)
    dialled = dial_lines(site)
    for a in attempts:
        assert dialled[a.call_id] == 1, f"{a.call_id} dialled {dialled[a.call_id]} times"
    assert set(dialled) - before == {a.call_id for a in attempts}, "a dial without its attempt row"

    by_ref: dict[str, list[tuple[str, str]]] = {}
    for a in attempts:
        ref = next(r for r, nums in CASES.items() if phone_of[a.phone_id].dial in nums)
        by_ref.setdefault(ref, []).append((phone_of[a.phone_id].dial, a.outcome))
    assert by_ref["E1"] == [("13800138000", "answered")]
    assert by_ref["E2"] == [("13912345676", "busy"), ("075588886661", "answered")]
    assert by_ref["E3"] == [("13700001237", "no_answer")] * 3, "three tries: morning, noon, evening"
    assert by_ref["E4"] == [("13600001239", "congestion")]
    assert not next(p for p in phone_of.values() if p.dial == "13600001239").valid
    assert by_ref["E5"] == [("15800001238", "debtor_hung_up")]

    # What Asterisk said about each end (Q.850), where the simulated network gives a fixed
    # cause: the debtor hangs up normally (16), the line is busy (17), the ring timeout runs
    # out (19), the number does not exist (1).
    causes = {"answered": 16, "debtor_hung_up": 16, "busy": 17, "no_answer": 19, "congestion": 1}
    for a in attempts:
        if a.outcome in causes:
            assert a.hangup_cause == causes[a.outcome], (a.call_id, a.outcome, a.hangup_cause)

    # The times of every attempt follow each other: planned, dialled, answered, bridged, ended.
    for a in attempts:
        times = [t for t in (a.planned_at, a.dialed_at, a.answered_at, a.bridged_at, a.ended_at) if t is not None]
        assert times == sorted(times), (a.call_id, times)
        assert (a.answered_at is None) is (a.outcome not in ("answered", "debtor_hung_up")), a.call_id

    # The 3-tries rule, tallied here: per number per local day at most 3, one per slot.
    slots = Counter()
    for a in attempts:
        local = a.dialed_at.astimezone(SHANGHAI)
        slot = "morning" if local.hour < 12 else "noon" if local.hour < 17 else "evening"
        assert 8 <= local.hour < 20, f"dial at {local}"
        slots[(a.phone_id, local.date(), slot)] += 1
    assert max(slots.values()) == 1
    assert max(Counter((p, d) for p, d, _ in slots).values()) <= 3

    # Every answered call was bridged to an agent and recorded, both legs with speech, the
    # recording and each of its legs as long as the call. The debtor who hangs up at once
    # (E5) says nothing (the simulated network answers, waits 0.2 s and hangs up): the agent's
    # leg carries the agent, the debtor's leg is silence, which also shows the legs are apart.
    from pydub import AudioSegment
    for a in attempts:
        if a.answered_at is None:
            assert a.id not in recordings
            continue
        assert a.bridged_at is not None and a.agent_id is not None
        legs = files[a.id]
        assert set(legs) == {"mix", "agent", "debtor"}
        for f in legs.values():
            path = site.recordings_root / f.path
            assert path.stat().st_mode & 0o222 == 0, "stored recordings are read-only"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256
        call_s = (a.ended_at - a.answered_at).total_seconds()
        for leg in ("mix", "agent", "debtor"):
            assert abs(wav_seconds(site.recordings_root / legs[leg].path) - call_s) < 1.5, (a.call_id, leg, call_s)
        level = {leg: AudioSegment.from_wav(site.recordings_root / legs[leg].path).dBFS for leg in ("agent", "debtor")}
        assert level["agent"] > SILENCE_DBFS, (a.call_id, a.outcome, level)
        if a.outcome == "answered":
            assert level["debtor"] > SILENCE_DBFS, (a.call_id, level)
        else:
            assert a.outcome == "debtor_hung_up", (a.call_id, a.outcome)
            assert level["debtor"] <= SILENCE_DBFS, (a.call_id, level)
    for a in attempts:
        assert not list(site.recordings_spool.glob(f"{a.call_id}*")), "spool copies are removed once stored"

    # The vault: every answered call is there as one stereo file, verify is clean, coverage 100 %.
    from recordings import integrity
    with sessions(engine)() as s:
        report = integrity.verify(s, site.recordings_root, clock.now())
        covered = integrity.coverage(s, clock.now().astimezone(SHANGHAI).date(), "Asia/Shanghai")
    assert report.ok, report.lines()
    answered = sum(a.answered_at is not None for a in attempts)
    assert covered.answered == answered and covered.verified == answered
    stereo = list((site.recordings_root / "vault").rglob("*.flac"))
    assert len(stereo) == answered
    from pydub import AudioSegment as Audio
    assert all(Audio.from_file(p).channels == 2 for p in stereo)
