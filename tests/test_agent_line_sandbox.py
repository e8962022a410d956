"""The agent's persistent line on the real sandbox, with baresip agents in manual-answer mode.

Each agent's phone rings once, at log-in, and an agent at the desk clicks "answer" (after
half a second); from then on every debtor is bridged to the agent with no ring. A whole
progressive and a whole predictive campaign run this way; an agent who hangs up the phone
mid-call is paused (that call ends as answered, not as the debtor's hang-up, and is not
lost) while the campaign goes on with the others; each call's recording keeps each party on
its own leg, as with a call per debtor.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from asterisk_conf.softphone import Softphone
from campaigns import admin, queue
from campaigns.db import transaction
from campaigns.importing import import_batch
from campaigns.models import Agent, Attempt, Recording
from dialer.agents import AgentState
from dialer.engine import LINE_DOWN, Engine, EngineSettings, ShiftedClock
from dialer.pacing import ControllerSettings, Predictive, PredictiveSettings
from recordings import integrity
from recordings.legs import SILENCE_DBFS
from recordings.store import wav_seconds
from dialer.demo import daytime_zone
from helpers import REPO, Environment, calls_up, check_predictive_dials, dial_lines, run_engine_on_sandbox, set_local

pytestmark = pytest.mark.asterisk


def agent_voice(speech: Path, out: Path, minutes: int = 6) -> Path:
    """The agent's microphone for a whole session: the clip again and again (baresip hangs up
    when its file ends, and a persistent line must not)."""
    repeats = math.ceil(minutes * 60 / wav_seconds(speech))
    subprocess.run(["sox", str(speech), str(out), "repeat", str(repeats)], check=True)
    return out


def import_cases(factory, clock, client: str, numbers: list[str], tmp_path: Path) -> None:
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    rows = ["案件编号,姓名,欠款金额,逾期天数,手机"] + [
        f"{client}{i}-{stamp},债务人{i},{1000 + i}.00,30,{n}" for i, n in enumerate(numbers)]
    batch = tmp_path / f"{client}.csv"
    batch.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert import_batch(factory, batch, client, now=clock.now()).ok


def desk_phones(site, creds, extensions, speech: Path, tmp_path: Path) -> list[Softphone]:
    phones = [Softphone(ext, creds.agent_passwords[ext], speech, tmp_path / ext, answer_mode="manual",
                        sip_server=f"127.0.0.1:{site.sip_port}") for ext in extensions]
    for phone in phones:
        phone.start()
        phone.keep_answering(0.5)
    return phones


async def run_engine(site, factory, campaign, extensions, clock, *, mode="progressive", pacing=None,
                     during=None) -> Engine:
    settings = EngineSettings(ring_timeout_s=15, wrap_up_s=1, mode=mode, agent_line="persistent", whisper="tone")
    return await run_engine_on_sandbox(site, factory, campaign, extensions, clock, settings, pacing=pacing,
                                       during=during, cel=site.cel_log)


async def run_with_phones(site, factory, campaign, extensions, clock, phones, during) -> tuple[Engine, list[Attempt]]:
    """A progressive run with `during(engine)` beside it; the phones stopped after; the attempts."""
    try:
        engine = await run_engine(site, factory, campaign, extensions, clock, during=during)
    finally:
        for phone in phones:
            phone.stop()
    return engine, attempts_of(factory)


def start_campaign(factory, clock, name: str, client: str, extensions, mode: str = "progressive",
                   settings: dict | None = None) -> None:
    with transaction(factory) as s:
        for ext in extensions:
            admin.add_agent(s, ext, ext, clock.now())
        admin.create_campaign(s, name, client, clock.now(), timezone="Asia/Shanghai", mode=mode, settings=settings)
        queue.change_campaign(s, name, "start", clock.now())


def check_recordings(factory, site, clock, attempts: list[Attempt]) -> None:
    """Every answered call is stored with each party on its own leg, and verify is clean."""
    from pydub import AudioSegment
    with factory() as s:
        files = {r.attempt_id: {f.leg: f for f in r.files} for r in s.scalars(select(Recording))}
        report = integrity.verify(s, site.recordings_root, clock.now())
    assert report.ok, report.lines()
    for a in attempts:
        if a.answered_at is None:
            continue
        legs = files[a.id]
        assert set(legs) == {"mix", "agent", "debtor"}, a.call_id
        level = {leg: AudioSegment.from_wav(site.recordings_root / legs[leg].path).dBFS for leg in ("agent", "debtor")}
        if a.bridged_at is not None:
            assert level["agent"] > SILENCE_DBFS, (a.call_id, level)
        if a.outcome == "debtor_hung_up":  # says nothing: the agent's voice is not on the debtor's leg
            assert level["debtor"] <= SILENCE_DBFS, (a.call_id, level)
        elif a.outcome == "answered":
            assert level["debtor"] > SILENCE_DBFS, (a.call_id, level)


def agent_ids(factory) -> dict[int, str]:
    with factory() as s:
        return {a.id: a.extension for a in s.scalars(select(Agent))}


def attempts_of(factory) -> list[Attempt]:
    with factory() as s:
        return list(s.scalars(select(Attempt).order_by(Attempt.id)))


async def test_a_progressive_campaign_on_persistent_lines(sandbox_site, creds, agent_speech, tmp_path):
    site, factory = sandbox_site
    clock = ShiftedClock()
    set_local(clock, 9, 30)
    # Answers after 3 s (talks), busy, answers after 4 s, hangs up at once, answers after 5 s.
    import_cases(factory, clock, "LINE", ["13800138000", "13800138006", "13800138001", "13800138008",
                                          "13800138002"], tmp_path)
    extensions = sorted(creds.agent_passwords)[:2]
    start_campaign(factory, clock, "line", "LINE", extensions)
    phones = desk_phones(site, creds, extensions, agent_voice(agent_speech, tmp_path / "agent.wav"), tmp_path)
    before = set(dial_lines(site))
    try:
        engine = await run_engine(site, factory, "line", extensions, clock)
    finally:
        for phone in phones:
            phone.stop()
    attempts = attempts_of(factory)
    assert [p.rings for p in phones] == [1, 1], "each phone rang once, at log-in, never per debtor"
    assert set(dial_lines(site)) - before == {a.call_id for a in attempts}, "one row per dial, one dial per row"
    assert sorted(a.outcome for a in attempts) == ["answered"] * 3 + ["busy", "debtor_hung_up"]
    for a in attempts:
        if a.outcome == "answered":
            assert a.bridged_at is not None and a.agent_id is not None, a.call_id
    assert {agent_ids(factory)[a.agent_id] for a in attempts if a.bridged_at} == set(extensions)
    assert all(seat.state is AgentState.READY for seat in engine.pool.seats.values())
    check_recordings(factory, site, clock, attempts)


async def test_an_agent_who_hangs_up_the_phone_is_paused_and_the_others_go_on(
        sandbox_site, creds, agent_speech, tmp_path):
    site, factory = sandbox_site
    clock = ShiftedClock()
    set_local(clock, 9, 30)
    numbers = ["13800138000", "13800138001", "13800138002", "13800138003", "13900139000", "13900139001"]
    import_cases(factory, clock, "HANG", numbers, tmp_path)  # each answers after 3 to 6 s
    extensions = sorted(creds.agent_passwords)[:2]
    start_campaign(factory, clock, "hang", "HANG", extensions)
    phones = desk_phones(site, creds, extensions, agent_voice(agent_speech, tmp_path / "agent.wav"), tmp_path)
    quitter, stayer = extensions[1], extensions[0]
    cut: dict[str, str] = {}

    async def hang_up_mid_call(engine: Engine) -> None:
        seat = engine.pool.seats[quitter]
        while seat.state is not AgentState.ON_CALL:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        cut["call"] = seat.attempt or ""
        phones[1].hang_up()

    engine, attempts = await run_with_phones(site, factory, "hang", extensions, clock, phones, hang_up_mid_call)
    by_call = {a.call_id: a for a in attempts}
    names = agent_ids(factory)
    assert cut["call"] in by_call
    hung = by_call[cut["call"]]
    assert hung.outcome == "answered" and hung.bridged_at is not None, "the agent ended it: not lost, not the debtor's"
    assert (hung.ended_at - hung.bridged_at).total_seconds() < 15, "the call ended when the agent hung up"
    seat = engine.pool.seats[quitter]
    assert seat.state is AgentState.PAUSED and seat.history[-1][2] == LINE_DOWN
    later = [a for a in attempts if a.id > hung.id]
    assert later and all(names[a.agent_id] == stayer for a in later), "the campaign went on with the other agent"
    assert all(a.state == "ended" for a in attempts) and len(attempts) == len(numbers), "every debtor was called"
    assert phones[0].rings == 1 and phones[1].rings == 1
    check_recordings(factory, site, clock, attempts)


async def test_a_predictive_campaign_on_persistent_lines(sandbox_site, creds, agent_speech, tmp_path):
    site, factory = sandbox_site
    clock = ShiftedClock()
    set_local(clock, 9, 30)
    import_cases(factory, clock, "PLINE", [f"1380013800{i % 6}" for i in range(8)], tmp_path)
    extensions = sorted(creds.agent_passwords)[:3]
    start_campaign(factory, clock, "pline", "PLINE", extensions, mode="predictive")
    phones = desk_phones(site, creds, extensions, agent_voice(agent_speech, tmp_path / "agent.wav"), tmp_path)
    eager = Predictive(PredictiveSettings(warmup_dials=0, max_lines_per_agent=1.5,
                                          controller=ControllerSettings(target=0.5, z_start=-2.0)))
    before = set(dial_lines(site))
    try:
        await run_engine(site, factory, "pline", extensions, clock, mode="predictive", pacing=eager)
    finally:
        for phone in phones:
            phone.stop()
    attempts = attempts_of(factory)
    assert [p.rings for p in phones] == [1, 1, 1], "each phone rang once, at log-in, never per debtor"
    check_predictive_dials(site, before, attempts)
    for a in attempts:
        if a.outcome == "abandoned":
            assert a.bridged_at is None and a.agent_id is None
    check_recordings(factory, site, clock, attempts)


def restart_asterisk(site) -> None:
    """`core restart now`, then wait until the new Asterisk is fully booted."""
    asterisk = ["chroot", str(site.sandbox_root), "/usr/sbin/asterisk", "-rx"]
    subprocess.run([*asterisk, "core restart now"], capture_output=True, timeout=30)
    for _ in range(300):
        if subprocess.run([*asterisk, "core waitfullybooted"], capture_output=True, timeout=30).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("Asterisk did not come back within 60 s")


async def test_lines_taken_away_by_asterisk_are_called_again(sandbox_site, creds, agent_speech, tmp_path):
    """`core restart now` mid-call ends every agent's line: not the agents' doing, so nobody is
    paused; once Asterisk is back (and the phones have registered again, which takes real
    phones a while) each phone is called again and the campaign goes on to its end."""
    site, factory = sandbox_site
    clock = ShiftedClock()
    set_local(clock, 9, 30)
    numbers = ["13800138000", "13800138001", "13800138002", "13800138003", "13900139000", "13900139001"]
    import_cases(factory, clock, "LOST", numbers, tmp_path)
    extensions = sorted(creds.agent_passwords)[:2]
    start_campaign(factory, clock, "lost", "LOST", extensions)
    phones = desk_phones(site, creds, extensions, agent_voice(agent_speech, tmp_path / "agent.wav"), tmp_path)
    restarted: dict[str, int] = {}

    async def restart_mid_call(engine: Engine) -> None:
        while not any(seat.state is AgentState.ON_CALL for seat in engine.pool.seats.values()):
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        with factory() as s:
            restarted["attempts"] = len(list(s.scalars(select(Attempt.id))))
        await asyncio.to_thread(restart_asterisk, site)
        await asyncio.sleep(3)  # the engine finds its lines gone, and calls phones not registered yet
        for phone in phones:  # the event loop goes on meanwhile: the engine is in it
            await asyncio.to_thread(phone.stop)
            await asyncio.to_thread(phone.start)

    engine, attempts = await run_with_phones(site, factory, "lost", extensions, clock, phones, restart_mid_call)
    assert restarted["attempts"] < len(numbers), "Asterisk restarted while the campaign had debtors left"
    assert all(a.state == "ended" and a.outcome for a in attempts), [(a.call_id, a.state) for a in attempts]
    assert {a.case_id for a in attempts if a.id > max(x.id for x in attempts[:restarted["attempts"]])}, \
        "debtors were called after the restart"
    for seat in engine.pool.seats.values():
        assert all(why != LINE_DOWN for _at, _state, why in seat.history), (seat.extension, seat.history)
        assert seat.state is AgentState.READY, seat.extension
    assert all(p.rings >= 2 for p in phones), "each phone was called again for its line"
    with factory() as s:
        report = integrity.verify(s, site.recordings_root, clock.now())
    assert report.ok, report.lines()


def test_an_engine_killed_leaves_the_lines_up_and_the_next_one_takes_them_over(
        sandbox_site, creds, agent_speech, tmp_path):
    """`dunning run` killed with kill -9 mid-call, on persistent lines: the agents' lines stay
    up in Asterisk (their phones never hung up); the next `dunning run` takes them over
    without calling the phones again, takes up the call in progress, and finishes the
    campaign."""
    site, factory = sandbox_site
    now = dt.datetime.now(dt.timezone.utc)
    zone = daytime_zone(now)
    numbers = ["13800138000", "13800138001", "13800138002", "13800138003", "13900139000", "13900139001"]
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    batch = tmp_path / "kill.csv"
    batch.write_text("\n".join(["案件编号,姓名,欠款金额,逾期天数,手机"] + [
        f"KILL{i}-{stamp},债务人{i},{1000 + i}.00,30,{n}" for i, n in enumerate(numbers)]) + "\n", encoding="utf-8")
    assert import_batch(factory, batch, "KILL", now=now).ok
    extensions = sorted(creds.agent_passwords)[:2]
    with transaction(factory) as s:
        for ext in extensions:
            admin.add_agent(s, ext, ext, now)
        admin.create_campaign(s, "kill", "KILL", now, timezone=zone,
                              settings={"agent_line": "persistent", "ring_seconds": 15, "wrap_up_seconds": 0})
        queue.change_campaign(s, "kill", "start", now)
    env = Environment(os.environ, DUNNING_DATABASE_URL=site.database_url, DUNNING_RECORDINGS=str(site.recordings))
    phones = desk_phones(site, creds, extensions, agent_voice(agent_speech, tmp_path / "agent.wav"), tmp_path)
    command = [str(REPO / ".venv/bin/dunning"), "run", "kill", "--agents", ",".join(extensions), "--until-idle"]
    try:
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + 90
        # The two lines are up (two channels); a debtor answered adds their own (the engine
        # writes the call's times at its end).
        while calls_up(site) < 4:
            if time.monotonic() > deadline or first.poll() is not None:
                first.kill()
                raise AssertionError(f"no call bridged on a persistent line:\n{first.communicate(timeout=10)[0]}")
            time.sleep(0.2)
        time.sleep(2)
        first.kill()
        first_text = first.communicate(timeout=10)[0]
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    finally:
        for phone in phones:
            phone.stop()
    text = first_text + second.stdout + second.stderr
    assert second.returncode == 0, text
    assert [p.rings for p in phones] == [1, 1], "the phones rang once, at the first log-in: the lines were taken over"
    assert second.stdout.count("line taken over") == 2, text
    assert "agent paused" not in second.stdout, text
    attempts = attempts_of(factory)
    assert all(a.state == "ended" and a.outcome for a in attempts), [(a.call_id, a.state) for a in attempts]
    assert {a.case_id for a in attempts} and len({a.case_id for a in attempts}) == len(numbers), text
    with factory() as s:
        report = integrity.verify(s, site.recordings_root, dt.datetime.now(dt.timezone.utc))
    assert report.ok, report.lines()
