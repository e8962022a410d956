"""Faults keep the truth (issue #19), without the sandbox: the fake AMI peer, a CEL file
written as Asterisk's cel_custom writes it (asterisk_conf/generate.py: CEL_FIELDS), SQLite.

One test per finding of the fault run:
- a call left by a killed engine is settled from Asterisk's record (answer, bridge, end,
  cause), not from the takeover moment or file times;
- a call Asterisk no longer has (its hang-up missed while the link was down) is found by the
  self-audit, settled from Asterisk's record, and its agent freed; SIGTERM returns within its
  bound even with a call still up;
- no dial while recordings cannot be kept: an alert, and dialling resumes by itself;
- `verify` names an answered call whose legs wait in the spool as such;
- a call cut by an Asterisk restart says so;
- a debtor who picks up in the instant Asterisk gives the dial up (the chaos suite's freeze
  longer than the ring time) heard silence: an abandoned call, no recording to look for.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from ami_peer import (ANSWERED_AS_THE_DIAL_GIVES_UP, ANSWERED_AS_THE_DIAL_GIVES_UP_THEIRS_FIRST, ANSWERED_ONLY,
                      core_show_channel, eventually)
from sqlalchemy import select

from campaigns.db import make_engine, sessions
from campaigns.models import Alert, Attempt
from dialer.agents import AgentEvent, AgentPool, AgentState
from dialer.cel import CelLog
from dialer.engine import Engine, EngineSettings, SetClock
from recordings import integrity
from helpers import ANSWERED, CALL, DIALED, all_attempts, local, one_debtor_campaign, restart, spool_call, the_attempt

UTC = dt.timezone.utc


def cel_line(event: str, at: dt.datetime, uniqueid: str, linkedid: str, channel: str, context: str,
             extra: dict | None = None) -> str:
    """One line as cel_custom writes it (quoting_method = all)."""
    fields = [event, f"{at.timestamp():.6f}", uniqueid, linkedid, channel, context, "s",
              json.dumps(extra).replace('"', '""') if extra else ""]
    return ",".join(f'"{f}"' for f in fields) + "\n"


def answered_call(call_id: str, answered: dt.datetime, talk_s: float, *, debtor_first: bool = True,
                  complete: bool = True) -> str:
    """Asterisk's record of an answered call put through to agent 6001 one second after the
    answer, the debtor hanging up `talk_s` seconds after the bridge."""
    d = dt.timedelta
    dial = answered - d(seconds=5)
    bridged = answered + d(seconds=1)
    end = bridged + d(seconds=talk_s)
    ours, theirs, agent = "Local/x@dunning-outbound-1;1", "Local/x@dunning-outbound-1;2", "PJSIP/6001-1"
    rows = [
        cel_line("CHAN_START", dial, call_id, call_id, ours, "dunning-outbound"),
        cel_line("CHAN_START", dial, f"{call_id}-2", call_id, theirs, "dunning-outbound"),
        cel_line("ANSWER", answered, f"{call_id}-2", call_id, theirs, "dunning-outbound"),
        cel_line("ANSWER", answered, call_id, call_id, ours, "dunning-outbound"),
        cel_line("CHAN_START", answered, "agent-1", call_id, agent, "dunning-agents"),
        cel_line("ANSWER", bridged, "agent-1", call_id, agent, "dunning-agents"),
        cel_line("BRIDGE_ENTER", bridged, call_id, call_id, ours, "dunning-answered", {"bridge_id": "b"}),
    ]
    if complete:
        first, second = ((f"{call_id}-2", theirs, "dunning-outbound"), ("agent-1", agent, "dunning-agents"))
        if not debtor_first:
            first, second = second, first
        rows += [
            cel_line("HANGUP", end, first[0], call_id, first[1], first[2], {"hangupcause": 16}),
            cel_line("HANGUP", end + d(milliseconds=2), second[0], call_id, second[1], second[2], {"hangupcause": 16}),
            cel_line("HANGUP", end + d(milliseconds=3), call_id, call_id, ours, "dunning-answered",
                     {"hangupcause": 16}),
            cel_line("LINKEDID_END", end + d(milliseconds=3), call_id, call_id, ours, "dunning-answered"),
        ]
    return "".join(rows)


# -- 1. a killed engine's calls: times from Asterisk's record --------------------------------------

async def test_a_call_left_by_a_killed_engine_is_settled_from_asterisks_record(crashed_call, tmp_path, peer,
                                                                               monkeypatch):
    """The fault run: the restarted engine stored `answered_at = bridged_at =` the takeover
    moment, or a 24 s conversation as debtor_hung_up with 0.74 s; here the call ended while no
    engine ran, and Asterisk's CEL says when it was answered, bridged and hung up."""
    url, factory, attempt_id = crashed_call
    spool_call(tmp_path / "spool", CALL)
    cel = tmp_path / "cel.csv"
    cel.write_text(answered_call(CALL, ANSWERED, 24.0))
    echoed, summary = await restart(url, tmp_path, peer, monkeypatch, env={"DUNNING_CEL_LOG": str(cel)})

    attempt = the_attempt(factory, attempt_id)
    assert (attempt.state, attempt.outcome, attempt.hangup_cause) == ("ended", "answered", 16), echoed
    assert attempt.answered_at == ANSWERED
    assert attempt.bridged_at == ANSWERED + dt.timedelta(seconds=1)
    assert attempt.ended_at == ANSWERED + dt.timedelta(seconds=25.003)  # our half's hang-up, the last
    assert (attempt.ended_at - attempt.bridged_at).total_seconds() == pytest.approx(24.0, abs=0.01)
    assert "Asterisk's record" in attempt.note and "estimated" not in attempt.note
    with factory() as s:
        assert integrity.verify(s, tmp_path / "recordings", ANSWERED, spool=tmp_path / "spool").ok
    assert summary.problems == []


# -- 2. the self-audit and the bounded stop -------------------------------------------------------

@pytest.fixture
def factory(tmp_path):
    from campaigns.db import migrate
    url = f"sqlite:///{tmp_path / 'dunning.db'}"
    engine = make_engine(url)
    migrate(engine)
    factory = sessions(engine)
    one_debtor_campaign(factory, tmp_path, local(8, 0), timezone="Asia/Shanghai")
    yield factory
    engine.dispose()


def engine_with(factory, calls, tmp_path, cel: Path | None = None, **settings) -> Engine:
    clock = SetClock(local(10, 0))
    pool = AgentPool()
    pool.add("6001")
    pool.apply("6001", AgentEvent.LOGIN, clock.now())
    with factory() as s:
        from campaigns.models import Agent
        pool.seats["6001"].agent_id = s.scalar(select(Agent.id))
    return Engine(factory, calls, pool, "e", spool=tmp_path / "spool", recordings_root=tmp_path / "recordings",
                  settings=EngineSettings(tick_s=0.01, wrap_up_s=3600, **settings), clock=clock, cel=cel)


def answer_and_list(peer) -> None:
    """Asterisk answers the call and lists its channels (until the test takes them away)."""
    def script(p, headers):
        call_id = headers["channelid"]
        p.replay(ANSWERED_ONLY, call_id=call_id, action_id=headers["actionid"])
        p.channels[call_id] = core_show_channel("Local/x@dunning-outbound-1;1", call_id, call_id)
        p.channels[f"{call_id}-2"] = core_show_channel("Local/x@dunning-outbound-1;2", f"{call_id}-2", call_id)
    peer.on_originate = script


async def test_the_self_audit_settles_a_call_asterisk_no_longer_has_and_frees_its_agent(factory, calls, peer,
                                                                                        tmp_path):
    """The fault run's stall: the call's hang-up happened while the engine was not listening;
    the attempt stayed `dialing`, its agent `on_call`, and nothing was dialled for minutes."""
    answer_and_list(peer)
    cel = tmp_path / "cel.csv"
    cel.write_text("")
    engine = engine_with(factory, calls, tmp_path, cel, audit_every_s=0.5)
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run(stop))
    await eventually(lambda: calls.active and all_attempts(factory)[0].dialed_at, 5, "the call answered")
    (attempt,) = all_attempts(factory)
    call_id = attempt.call_id
    answered = attempt.dialed_at + dt.timedelta(seconds=5)
    # The call ends in Asterisk; no Hangup event reaches the engine (it was not listening).
    with cel.open("a") as f:
        f.write(answered_call(call_id, answered, 12.0))
    peer.channels.clear()
    await eventually(lambda: all_attempts(factory)[0].state == "ended", 10, "the audit to settle the call")
    (attempt,) = all_attempts(factory)
    assert attempt.outcome == "answered" and attempt.answered_at == answered
    assert attempt.bridged_at == answered + dt.timedelta(seconds=1)
    assert attempt.ended_at == answered + dt.timedelta(seconds=13.003)
    assert "Asterisk's record" in attempt.note
    assert engine.pool.seats["6001"].state is not AgentState.ON_CALL
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_sigterm_returns_within_its_bound_with_a_call_still_up(factory, calls, peer, tmp_path):
    """SIGTERM waited for ever for calls in progress; now for `stop_grace_s`, and a call still
    up in Asterisk keeps its attempt unfinished for the next run."""
    answer_and_list(peer)
    engine = engine_with(factory, calls, tmp_path, stop_grace_s=1.0)
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run(stop))
    await eventually(lambda: calls.active and next(iter(calls.active.values())).answered_at, 5, "the answer")
    stop.set()
    await asyncio.wait_for(task, 8)
    (attempt,) = all_attempts(factory)
    assert attempt.state == "dialing" and attempt.outcome is None, "left to the next run"
    assert engine.pool.seats["6001"].state is not AgentState.RESERVED


# -- 3. no dial without a place for its recording -------------------------------------------------

async def test_no_dial_while_recordings_cannot_be_kept_then_dialling_resumes(factory, calls, peer, tmp_path):
    from ami_peer import BUSY
    peer.on_originate = lambda p, h: p.replay(BUSY, call_id=h["channelid"], action_id=h["actionid"])
    engine = engine_with(factory, calls, tmp_path, min_free_bytes=10 ** 18)  # no disk has this much
    lines: list[str] = []
    engine.echo = lines.append
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run(stop))
    await eventually(lambda: any("dialling paused" in line for line in lines), 5, "the pause")
    await asyncio.sleep(0.5)
    assert peer.received["Originate"] == 0 and all_attempts(factory) == []
    with factory() as s:
        (alert,) = s.scalars(select(Alert)).all()
        assert alert.kind == "recordings_blocked" and "recordings cannot be kept" in alert.message
        from agent_console.wallboard import open_alerts  # what the wallboard shows for the campaign
        (shown,) = open_alerts(s, [alert.campaign_id])[alert.campaign_id]
        assert shown["kind"] == "recordings_blocked" and shown["message"] == alert.message
    from cli import main
    from click.testing import CliRunner
    listed = CliRunner().invoke(main, ["alerts"], env={"DUNNING_DATABASE_URL": str(factory.kw["bind"].url)})
    assert "recordings_blocked: campaign e: dialling paused" in listed.stdout, listed.output
    engine.settings = dataclasses.replace(engine.settings, min_free_bytes=1)
    await eventually(lambda: peer.received["Originate"] == 1, 10, "dialling to resume by itself")
    assert any("dialling resumes" in line for line in lines)
    stop.set()
    await asyncio.wait_for(task, 10)
    with factory() as s:
        assert "resolved" in s.scalars(select(Alert)).one().message


def test_a_read_only_recordings_directory_is_no_place_for_a_recording(factory, calls, tmp_path):
    engine = engine_with(factory, calls, tmp_path, min_free_bytes=1)
    assert engine.recordings_space() is None
    engine.recordings_root = Path("/proc/dunning-no-such-place")  # cannot be made, cannot take a file
    assert "cannot take a file" in engine.recordings_space()


# -- 4. verify names calls whose legs wait in the spool -------------------------------------------

def test_verify_names_an_answered_call_whose_legs_wait_in_the_spool(crashed_call, tmp_path):
    url, factory, attempt_id = crashed_call
    with factory() as s, s.begin():
        attempt = s.get(Attempt, attempt_id)
        attempt.state, attempt.outcome, attempt.answered_at = "ended", "answered", ANSWERED
        attempt.ended_at = ANSWERED + dt.timedelta(seconds=30)
    spool_call(tmp_path / "spool", CALL)
    with factory() as s:
        report = integrity.verify(s, tmp_path / "recordings", ANSWERED, spool=tmp_path / "spool")
    (line,) = [line for line in report.lines() if line.startswith("UNRECORDED")]
    assert "wait on disk" in line and str(tmp_path / "spool") in line and "no recording at all" not in line


# -- 5. a call cut by an Asterisk restart says so -------------------------------------------------

async def test_a_call_cut_by_an_asterisk_restart_says_so(factory, calls, peer, tmp_path):
    answer_and_list(peer)
    cel = tmp_path / "cel.csv"
    cel.write_text("")
    engine = engine_with(factory, calls, tmp_path, cel, audit_every_s=0.5)
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run(stop))
    await eventually(lambda: calls.active and all_attempts(factory)[0].dialed_at, 5, "the call answered")
    (attempt,) = all_attempts(factory)
    answered = attempt.dialed_at + dt.timedelta(seconds=5)
    with cel.open("a") as f:
        f.write(answered_call(attempt.call_id, answered, 3.0))
    calls.asterisk_started_at = (attempt.dialed_at + dt.timedelta(seconds=10)).timestamp()  # as CoreStatus says
    peer.channels.clear()
    await eventually(lambda: all_attempts(factory)[0].state == "ended", 10, "the audit to settle the call")
    assert "cut by an Asterisk restart" in all_attempts(factory)[0].note
    stop.set()
    await asyncio.wait_for(task, 10)


# -- 6. answered as the dial gives up: silence, no agent, nothing recorded ------------------------

@pytest.mark.parametrize("transcript", [ANSWERED_AS_THE_DIAL_GIVES_UP, ANSWERED_AS_THE_DIAL_GIVES_UP_THEIRS_FIRST],
                         ids=["ours_first", "theirs_first"])
async def test_a_debtor_answering_as_the_dial_gives_up_is_an_abandoned_call_with_nothing_to_record(
        transcript, factory, calls, peer, tmp_path):
    """The chaos suite's freeze: Asterisk stopped for longer than the ring time; on waking it
    answered the debtor's half and gave the dial up (cause 19) in the same millisecond. The
    call was stored as answered (or, the debtor's half hung up first, debtor_hung_up) and, its
    recording looked for, the run ended with a problem: "no mix recording". The call never
    went past the answer: nothing was recorded."""
    peer.on_originate = lambda p, headers: p.replay(transcript, call_id=headers["channelid"],
                                                    action_id=headers["actionid"])
    engine = engine_with(factory, calls, tmp_path)
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run(stop))
    await eventually(lambda: all_attempts(factory) and all_attempts(factory)[0].state == "ended", 10, "the end")
    stop.set()
    await asyncio.wait_for(task, 10)
    (attempt,) = all_attempts(factory)
    assert attempt.outcome == "abandoned", attempt.note
    assert attempt.answered_at is not None and attempt.bridged_at is None
    assert "dropped as it was answered" in attempt.note and "nothing recorded" in attempt.note
    assert engine.summary.problems == [] and engine.summary.recordings == 0
    assert engine.pool.seats["6001"].state is not AgentState.RESERVED


def test_asterisks_record_tells_a_call_dropped_as_it_was_answered(tmp_path):
    d = dt.timedelta
    ours, theirs = "Local/x@dunning-outbound-1;1", "Local/x@dunning-outbound-1;2"
    dropped = "".join([
        cel_line("CHAN_START", DIALED, "c1", "c1", ours, "dunning-outbound"),
        cel_line("CHAN_START", DIALED, "c1-2", "c1", theirs, "dunning-outbound"),
        cel_line("ANSWER", DIALED + d(seconds=23), "c1-2", "c1", theirs, "dunning-outbound"),
        # the debtor's half hung up first, as the chaos suite saw it: not the debtor's doing
        cel_line("HANGUP", DIALED + d(seconds=23.001), "c1-2", "c1", theirs, "dunning-outbound",
                 {"hangupcause": 19}),
        cel_line("HANGUP", DIALED + d(seconds=23.002), "c1", "c1", ours, "dunning-outbound", {"hangupcause": 19}),
        cel_line("LINKEDID_END", DIALED + d(seconds=23.002), "c1-2", "c1", theirs, "dunning-outbound"),
    ])
    path = tmp_path / "cel.csv"
    path.write_text(dropped + answered_call("c2", DIALED, 10.0))
    log = CelLog(path)
    assert log.call("c1").facts().dropped_at_answer and log.call("c1").answered == DIALED + d(seconds=23)
    assert log.call("c1").outcome().value == "answered", "Asterisk hung both halves up, not the debtor"
    assert not log.call("c2").facts().dropped_at_answer, "a call put through reached our half"


def test_the_cel_log_is_read_as_it_grows(tmp_path):
    path = tmp_path / "cel.csv"
    text = answered_call("c1", DIALED, 10.0)
    head, tail = text[:len(text) // 2], text[len(text) // 2:]
    path.write_text(head)
    log = CelLog(path)
    first = log.call("c1")
    assert first is not None and not first.complete
    with path.open("a") as f:
        f.write(tail)
    record = log.call("c1")
    assert record.complete and record.dialled and record.answered == DIALED
    assert record.outcome().value == "answered" and record.debtor_cause == 16
    assert log.dials() == {"c1": 1}
    early = CelLog(path)
    path.write_text(answered_call("c2", DIALED, 0.5))  # rotated: read again from the start
    assert early.call("c2").outcome().value == "debtor_hung_up"


def test_ingest_takes_a_lost_answer_time_from_asterisks_record_not_file_times(crashed_call, tmp_path):
    """An interrupted call with no answer time kept: `dunning recordings ingest` gives it the
    answer Asterisk recorded (the fault run: estimated 20 s late from the files' times)."""
    url, factory, attempt_id = crashed_call
    with factory() as s, s.begin():
        attempt = s.get(Attempt, attempt_id)
        attempt.state, attempt.outcome, attempt.ended_at = "ended", "interrupted", ANSWERED + dt.timedelta(minutes=5)
    spool_call(tmp_path / "spool", CALL)  # written now: their times say nothing of the answer
    cel = tmp_path / "cel.csv"
    cel.write_text(answered_call(CALL, ANSWERED, 24.0))
    from click.testing import CliRunner

    from cli import main
    result = CliRunner().invoke(main, ["recordings", "ingest"], env={
        "DUNNING_DATABASE_URL": url, "DUNNING_SPOOL": str(tmp_path / "spool"),
        "DUNNING_RECORDINGS": str(tmp_path / "recordings"), "DUNNING_CEL_LOG": str(cel)})
    assert result.exit_code == 0, result.output
    attempt = the_attempt(factory, attempt_id)
    assert attempt.answered_at == ANSWERED
    assert "Asterisk's record" in attempt.note and "estimated" not in attempt.note


async def test_a_call_placed_after_a_restart_was_not_cut_by_it(calls):
    """The chaos suite's core restart: a debtor who hung up at once on a call placed just after
    Asterisk came back was stored as answered and "cut by an Asterisk restart", because the
    restart's Shutdown had been seen less than 5 s before the call's end."""
    from ami_bridge.calls import Call
    from dialer.outbound import dial_request
    now = calls.connection.now()
    calls.shutdown_at = now - 2  # Asterisk said it shuts down 2 s ago
    before = Call(dial_request("c-before", "13800138000", "6001", 15), now - 10)
    after = Call(dial_request("c-after", "13800138010", "6001", 15), now - 1)
    assert await calls.asterisk_going_down(before), "placed on the Asterisk that went down"
    assert not await calls.asterisk_going_down(after), "placed on the Asterisk that came back (it answers)"


# -- Asterisk's record read by several threads at once, and across a rotation -----------------------

def test_a_second_reader_waits_for_the_first_instead_of_seeing_half_a_call(tmp_path, monkeypatch):
    """The chaos suite's kill -9: three calls taken over ended at once, and their settlements
    read the CEL file on three threads. The first read the whole file; the others, finding it
    read, saw only rows indexed so far or the file's new end, i.e. a call with its hang-up and
    no dial, and kept the takeover moment as the answer (and debtor_hung_up as the outcome)."""
    import threading

    from dialer import cel as cel_module
    path = tmp_path / "cel.csv"
    path.write_text(answered_call("c1", DIALED, 10.0, complete=False))
    log = CelLog(path)
    first_parsing, second_done = threading.Event(), threading.Event()
    real_reader = cel_module.csv.reader

    def slow_reader(text):  # the first parse stops after its first row until the second reader is done
        for index, row in enumerate(real_reader(text)):
            yield row
            if index == 0 and not first_parsing.is_set():
                first_parsing.set()
                second_done.wait(2)

    monkeypatch.setattr(cel_module.csv, "reader", slow_reader)
    first = threading.Thread(target=log.refresh)
    first.start()
    assert first_parsing.wait(5)
    with path.open("a") as f:  # the call's end, written while the first reader parses
        f.write(answered_call("c1", DIALED, 10.0).removeprefix(answered_call("c1", DIALED, 10.0, complete=False)))
    seen = log.call("c1")
    second_done.set()
    first.join(5)
    assert seen is not None and seen.complete and seen.dialled and seen.answered == DIALED


def test_the_cel_log_is_read_across_a_rotation(tmp_path):
    """cel_custom opens the file for every line, so a rotation renames it: the lines written
    to the old file after the last read are still read, then the new file; a reader started
    after the rotation finds the calls of the previous file (``.1``) too."""
    path = tmp_path / "cel.csv"
    path.write_text(answered_call("c1", DIALED, 10.0, complete=False))
    log = CelLog(path)
    assert not log.call("c1").complete
    with path.open("a") as f:  # the end, written just before the rotation
        f.write(answered_call("c1", DIALED, 10.0).removeprefix(answered_call("c1", DIALED, 10.0, complete=False)))
    path.rename(tmp_path / "cel.csv.1")
    path.write_text(answered_call("c2", DIALED, 0.5))
    assert log.call("c1").complete and log.call("c1").dialled
    assert log.call("c2").outcome().value == "debtor_hung_up"
    later = CelLog(path)
    assert later.call("c1").complete and later.call("c2").complete
    assert later.dials() == {"c1": 1, "c2": 1}


def test_the_generated_rotation_keeps_every_line_of_asterisks_record(tmp_path):
    """logrotate(8) with the configuration `dunning asterisk config` writes (a smaller size,
    so that the test writes little): the file is renamed, not copied and truncated; an engine
    reading it still reads the lines written before the rename, then the new file Asterisk
    starts; an engine started later finds the previous file's calls (``.1``, not compressed)."""
    from asterisk_conf.generate import CEL_ROTATE_SIZE, cel_logrotate
    path = tmp_path / "cel.csv"
    conf = tmp_path / "dunning-cel"
    conf.write_text(cel_logrotate(str(path)).replace(f"size {CEL_ROTATE_SIZE}", "size 1k"))

    def rotate() -> None:
        done = subprocess.run(["logrotate", "-s", str(tmp_path / "state"), str(conf)], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr

    whole = answered_call("c1", DIALED, 10.0)
    start = answered_call("c1", DIALED, 10.0, complete=False)
    path.write_text(start)
    log = CelLog(path)
    assert not log.call("c1").complete
    with path.open("a") as f:
        f.write(whole.removeprefix(start))  # the call's end, written just before the rotation
    rotate()
    assert not path.exists() and (tmp_path / "cel.csv.1").read_text() == whole
    path.write_text(answered_call("c2", DIALED, 0.5))  # Asterisk's next line starts a new file
    assert log.call("c1").complete and log.call("c1").dialled
    assert log.call("c2").outcome().value == "debtor_hung_up"
    rotate()
    assert (tmp_path / "cel.csv.2.gz").exists(), sorted(p.name for p in tmp_path.iterdir())
    later = CelLog(path)
    assert later.call("c2").complete, "the previous file's calls are found"
    assert later.call("c1") is None, "older files are not read (compressed, out of the bound)"


def test_the_sandbox_rotates_its_cel_file_past_the_size_a_floor_rotates_at(tmp_path):
    """The sandbox has no logrotate: `sandbox up` renames its CEL file past 16 MB, and the
    engine finds the calls of the renamed file."""
    from asterisk_conf.sandbox import rotate_cel_log
    path = tmp_path / "dunning-cel.csv"
    assert not rotate_cel_log(path), "no file yet"
    path.write_text(answered_call("c1", DIALED, 10.0))
    assert not rotate_cel_log(path, limit=path.stat().st_size) and path.exists()
    assert rotate_cel_log(path, limit=100)
    assert not path.exists() and CelLog(path).call("c1").complete
