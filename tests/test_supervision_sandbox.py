"""Supervisors on a live call, and the agent's call controls, with real parts: the engine
(console mode) dials a simulated debtor through the Asterisk sandbox, the call is bridged to
the agent's baresip softphone; in headless Chromium a supervisor of the agent's team listens
to, whispers to and barges into it from the wallboard, each time on her own baresip phone,
and Asterisk shows her channel running ChanSpy on the agent's channel in that mode; a
supervisor of another team is refused and nothing reaches Asterisk (its CEL record has no
channel of his phone); each action is in the audit log and on the case's history; then the
agent ends the call with Alt+H, or hands it over to the supervisor with Alt+T."""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import math
import subprocess
import time
from array import array
from pathlib import Path

import pytest
from sqlalchemy import select

from agent_console import accounts
from agent_console.app import make_app, start
from agent_console.schema import AuditEntry
from agent_console.settings import Settings
from ami_bridge import actions
from ami_bridge.supervision import SPY_MODES
from asterisk_conf import credentials, sandbox
from asterisk_conf.softphone import Softphone
from campaigns import admin, queue
from campaigns.db import transaction
from campaigns.importing import import_batch
from campaigns.models import Attempt
from dialer.engine import ShiftedClock
from dialer.runner import run_campaign
from dialer.sandbox_session import ami_settings
from helpers import Driver, set_local, tid

pytestmark = pytest.mark.asterisk
PASSWORD = "Qm7#vTr!pLx2"


def tone(path: Path, seconds: int, spec: list[str]) -> Path:
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "synth", str(seconds), *spec],
                   check=True)
    return path


async def channels(ami) -> list:
    return list((await ami.send(actions.core_show_channels())).items)


async def spy_channel(ami, supervisor: str, timeout: float = 15.0):
    """The supervisor's channel once it runs ChanSpy (its CoreShowChannels entry)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in await channels(ami):
            if item["Channel"].startswith(f"PJSIP/{supervisor}-") and item.get("Application") == "ChanSpy":
                return item
        await asyncio.sleep(0.2)
    raise AssertionError(f"no ChanSpy channel of {supervisor} within {timeout} s: {[i['Channel'] for i in await channels(ami)]}")


async def gone(ami, prefix: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(i["Channel"].startswith(prefix) for i in await channels(ami)):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{prefix}* still up after {timeout} s")


def cel_channels(site, prefix: str) -> list[str]:
    with open(site.cel_log, newline="") as handle:
        return [row[4] for row in csv.reader(handle) if len(row) > 4 and row[4].startswith(prefix)]


@pytest.fixture
async def floor(request, sandbox_site, tmp_path, unused_tcp_port_factory):
    """A team (east) with agent 6001 and supervisor sue, another team (west) with supervisor
    wes; sue's phone registered (baresip, answered by itself); one simulated debtor who
    answers and stays on the line; the engine and the console (with its AMI link) running.
    With the parameter "persistent" the campaign runs on persistent agent lines and the
    agent's baresip rings until the agent answers (manual answer, as at a desk)."""
    line = getattr(request, "param", "ringing")
    site, factory = sandbox_site
    creds = credentials.add_supervisor(site.home, "sue")
    creds = credentials.add_supervisor(site.home, "wes")
    sandbox.up(site, creds, say=lambda _: None)  # the supervisors' endpoints, app_chanspy
    clock = ShiftedClock()
    set_local(clock, 10, 0)
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    batch = tmp_path / "batch.csv"
    batch.write_text("案件编号,姓名,欠款金额,逾期天数,手机\n"
                     f"S-{stamp},李伟,18600.00,95,13800138000\n", encoding="utf-8")
    assert import_batch(factory, batch, "SUP", now=clock.now()).ok
    ext = sorted(creds.agent_passwords)[0]
    with transaction(factory) as s:
        admin.add_agent(s, ext, "Alice Agent", clock.now())
        admin.create_campaign(s, "sup", "SUP", clock.now(), timezone="Asia/Shanghai",
                              settings={"ring_seconds": 15, "wrap_up_limit_seconds": 300, "agent_line": line})
        queue.change_campaign(s, "sup", "start", clock.now())
        for team in ("east", "west"):
            accounts.create_team(s, team, clock.now())
        accounts.assign_campaign(s, "sup", "east")
        accounts.create_account(s, "alice", "agent", PASSWORD, clock.now(), extension=ext, team="east", language="en")
        accounts.create_account(s, "sue", "supervisor", PASSWORD, clock.now(), team="east", language="en")
        accounts.create_account(s, "wes", "supervisor", PASSWORD, clock.now(), team="west", language="en")
    # the agent's microphone is silence, the supervisor's a 1 kHz tone
    alice = Softphone(ext, creds.agent_passwords[ext], tone(tmp_path / "quiet.wav", 240, ["sine", "300", "vol", "0"]),
                      tmp_path / ext, sip_server=f"127.0.0.1:{site.sip_port}", local_port=15930,
                      answer_mode="manual" if line == "persistent" else "auto")
    sue = Softphone("sue", creds.supervisor_passwords["sue"], tone(tmp_path / "tone.wav", 240, ["sine", "1000", "vol", "0.5"]),
                    tmp_path / "sue", sip_server=f"127.0.0.1:{site.sip_port}", local_port=15900, answer_mode="manual")
    alice.start()
    if line == "persistent":
        alice.keep_answering(0.3)
    sue.start()
    sue.keep_answering(0.2)
    port = unused_tcp_port_factory()
    settings = Settings(cookie_secure=False, poll_interval_s=0.2, ami=ami_settings(site))
    runner = await start(make_app(factory, settings, now=clock.now), "127.0.0.1", port)
    stop = asyncio.Event()
    dialler = asyncio.ensure_future(run_campaign(site, factory, "sup", [ext], clock=clock, stop=stop, console=True))
    d = await Driver.start()
    try:
        yield {"site": site, "factory": factory, "base": f"http://127.0.0.1:{port}", "d": d, "ext": ext,
               "sue": sue, "alice": alice, "clock": clock}
    finally:
        await d.quit()
        stop.set()
        await asyncio.wait_for(dialler, 60)
        await runner.cleanup()
        sue.stop()
        alice.stop()


async def sign_in(d, page: str, base: str, username: str, path: str) -> None:
    await d("goto", page, url=f"{base}/login")
    await d("fill", page, sel=tid("login-username"), value=username)
    await d("fill", page, sel=tid("login-password"), value=PASSWORD)
    await d("click", page, sel=tid("login-submit"))
    await d("goto", page, url=f"{base}{path}")


async def on_a_call(floor) -> str:
    """The agent goes ready; returns the call id once the call is bridged and on the wallboard."""
    d, base = floor["d"], floor["base"]
    await sign_in(d, "agent", base, "alice", "/agent")
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=ws-status]').dataset.connected === 'true'")
    await d("click", "agent", sel=tid("btn-ready"))
    await d("waitFor", "agent", timeout=55000,
            js="const p = document.querySelector('[data-testid=case-panel]'); return p && !!p.dataset.callId")
    return await d("attr", "agent", sel=tid("case-panel"), name="data-call-id")


def audit(factory, *events: str) -> list[tuple[str, str, str]]:
    with factory() as s:
        return [(e.event, e.username, e.result) for e in
                s.scalars(select(AuditEntry).where(AuditEntry.event.in_(events)).order_by(AuditEntry.id))]


async def test_a_supervisor_listens_whispers_and_barges_and_another_team_is_refused(floor, sandbox_ami):
    d, base, factory, site, ext = floor["d"], floor["base"], floor["factory"], floor["site"], floor["ext"]
    call_id = await on_a_call(floor)
    await sign_in(d, "sue", base, "sue", "/wallboard")
    row = f"[data-testid=wall-call-row][data-call-id='{call_id}']"
    await d("waitFor", "sue", timeout=10000, js=f"return !!document.querySelector(\"{row} [data-testid=btn-listen]\")")
    for mode in ("listen", "whisper", "barge"):
        await d("click", "sue", sel=f"{row} [data-testid=btn-{mode}]")
        await d("waitFor", "sue", js=f"const m = document.querySelector('[data-testid=wall-listen-message]');"
                                     f" return m.dataset.mode === '{mode}' && m.dataset.ok === 'true'")
        spy = await spy_channel(sandbox_ami, "sue")
        assert spy["ApplicationData"] == f"PJSIP/{ext}-,{SPY_MODES[mode]}", spy
        floor["sue"].hang_up()  # she hangs up her phone: the listening ends
        await gone(sandbox_ami, "PJSIP/sue-")
    # a supervisor of another team: the call is not on his wallboard, and asking for it anyway
    # is "not found", audited, and nothing reaches Asterisk
    await sign_in(d, "wes", base, "wes", "/wallboard")
    assert await d("eval", "wes", js="return document.querySelectorAll('[data-testid=wall-call-row][data-call-id]').length") == 0
    status = await d("eval", "wes", arg=call_id, js=(
        "return fetch(`/wallboard/calls/${arg}/listen`, {method: 'POST', headers: {'X-CSRF-Token':"
        " document.body.dataset.csrf, 'Accept': 'application/json'}}).then(r => r.status)"))
    assert status == 404
    await asyncio.sleep(1)
    assert cel_channels(site, "PJSIP/wes-") == []
    assert audit(factory, "call_listen", "call_whisper", "call_barge") == [
        ("call_listen", "sue", "ok"), ("call_whisper", "sue", "ok"), ("call_barge", "sue", "ok"),
        ("call_listen", "wes", "refused")]
    assert len(cel_channels(site, "PJSIP/sue-")) >= 3
    # the call's record: the case page shows who listened in, how and when
    with factory() as s:
        case_id = s.scalar(select(Attempt.case_id).where(Attempt.call_id == call_id))
    await d("goto", "sue", url=f"{base}/cases/{case_id}")
    modes = await d("eval", "sue", js="return [...document.querySelectorAll('[data-testid=supervision-entry]')]"
                                      ".map(e => e.dataset.mode + ' ' + e.dataset.by)")
    assert modes == ["listen sue", "whisper sue", "barge sue"]
    # the agent ends the call with Alt+H: Asterisk hangs up the debtor, long before the debtor would
    await d("press", "agent", key="Alt+h")
    await d("waitFor", "agent", js="const m = document.querySelector('[data-testid=call-message]'); return m.dataset.ok === 'true'")
    await d("waitFor", "agent", timeout=15000,
            js="return document.querySelector('[data-testid=agent-state]').dataset.state === 'wrap_up'")
    with factory() as s:
        attempt = s.scalar(select(Attempt).where(Attempt.call_id == call_id))
        assert attempt.state == "ended" and attempt.bridged_at is not None
    assert audit(factory, "call_hangup") == [("call_hangup", "alice", "ok")]


async def test_the_agent_hands_the_debtor_over_to_the_teams_supervisor(floor, sandbox_ami):
    d, factory = floor["d"], floor["factory"]
    call_id = await on_a_call(floor)
    # A supervisor's phone that does not answer sends the debtor back to the agent, who may
    # press Alt+T again: once more at most here (in a long suite the phone has been seen
    # unreachable for a moment; issue #16's closing note).
    for attempt in (1, 2):
        await d("press", "agent", key="Alt+t")
        await d("waitFor", "agent", js="const m = document.querySelector('[data-testid=call-message]'); "
                                       "return m.dataset.ok === 'true'")
        assert "sue" in await d("text", "agent", sel=tid("call-message"))
        # Asterisk: the supervisor's phone answered and is bridged with the debtor's channel
        deadline = time.monotonic() + 15
        while True:
            items = await channels(sandbox_ami)
            debtor = next((i for i in items if i["Uniqueid"] == call_id), None)
            sue = next((i for i in items if i["Channel"].startswith("PJSIP/sue-")), None)
            if (debtor is not None and sue is not None and sue.get("ChannelStateDesc") == "Up"
                    and debtor.get("Context") == "dunning-transfer" and debtor.get("Application") == "Dial"):
                break
            if time.monotonic() > deadline:
                assert attempt == 1, [dict(i) for i in items]
                break
            await asyncio.sleep(0.2)
        if sue is not None and debtor is not None and debtor.get("Context") == "dunning-transfer":
            break
    assert sue.get("BridgeId") == debtor.get("BridgeId"), (dict(sue), dict(debtor))
    assert audit(factory, "call_transfer") == [("call_transfer", "alice", "ok")] * attempt


async def call_message(d, action: str) -> str:
    """The call screen's message once `action` succeeded."""
    await d("waitFor", "agent", js="const m = document.querySelector('[data-testid=call-message]'); "
                                   f"return m.dataset.ok === 'true' && m.dataset.action === '{action}'")
    return await d("text", "agent", sel=tid("call-message"))


async def asterisk_shows(ami, what, timeout: float = 15.0) -> dict:
    """Asterisk's channels (uniqueid -> CoreShowChannels entry) once `what(channels)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        items = {i["Uniqueid"]: dict(i) for i in await channels(ami)}
        if what(items):
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"not so within {timeout} s: {list(items.values())}")
        await asyncio.sleep(0.2)


def line_of(items: dict, ext: str) -> dict | None:
    return next((i for uid, i in items.items() if uid.startswith("line-") and uid.split("-")[2] == ext), None)


def sue_of(items: dict) -> dict | None:
    return next((i for i in items.values() if i["Channel"].startswith("PJSIP/sue-")), None)


def on_hold_while_consulting(call_id: str, ext: str):
    """The debtor waits in dunning-hold while sue's phone (up) and the agent's line share a bridge."""
    def check(items: dict) -> bool:
        debtor, line, sue = items.get(call_id), line_of(items, ext), sue_of(items)
        return (debtor is not None and debtor.get("Context") == "dunning-hold" and not debtor.get("BridgeId")
                and line is not None and sue is not None and sue.get("ChannelStateDesc") == "Up"
                and sue.get("Context") == "dunning-consult" and bool(sue.get("BridgeId"))
                and sue.get("BridgeId") == line.get("BridgeId"))
    return check


def with_the_agent(call_id: str, ext: str):
    """The debtor and the agent's line share a bridge again; no channel of sue's phone."""
    def check(items: dict) -> bool:
        debtor, line = items.get(call_id), line_of(items, ext)
        return (sue_of(items) is None and debtor is not None and line is not None
                and debtor.get("Context") == "dunning-answered" and bool(debtor.get("BridgeId"))
                and debtor.get("BridgeId") == line.get("BridgeId"))
    return check


@pytest.mark.parametrize("floor", ["persistent"], indirect=True)
async def test_an_attended_transfer_consults_then_cancels_then_completes(floor, sandbox_ami):
    """On a persistent line, Alt+T puts the debtor on hold and calls the supervisor's phone into
    the agent's line; Alt+X cancels (the supervisor dropped, the agent back with the debtor);
    Alt+T, Alt+T consults again and completes: the debtor with the supervisor, the agent's line
    back waiting and the agent in wrap-up, free, while the call goes on; the audit has each step."""
    d, factory, ext = floor["d"], floor["factory"], floor["ext"]
    call_id = await on_a_call(floor)
    await d("press", "agent", key="Alt+t")
    assert "sue" in await call_message(d, "transfer")
    assert await d("attr", "agent", sel=tid("case-panel"), name="data-consulting") == "true"
    await asterisk_shows(sandbox_ami, on_hold_while_consulting(call_id, ext))
    await d("press", "agent", key="Alt+x")
    await call_message(d, "transfer_cancel")
    await asterisk_shows(sandbox_ami, with_the_agent(call_id, ext))
    assert await d("attr", "agent", sel=tid("case-panel"), name="data-consulting") == "false"
    # again, and this time complete it
    await d("press", "agent", key="Alt+t")
    await call_message(d, "transfer")
    await asterisk_shows(sandbox_ami, on_hold_while_consulting(call_id, ext))
    await d("press", "agent", key="Alt+t")
    await call_message(d, "transfer_complete")

    def transferred(items: dict) -> bool:
        debtor, line, sue = items.get(call_id), line_of(items, ext), sue_of(items)
        return (debtor is not None and sue is not None and debtor.get("Context") == "dunning-transferred"
                and bool(debtor.get("BridgeId")) and debtor.get("BridgeId") == sue.get("BridgeId")
                and line is not None and line.get("Application") == "BridgeWait"
                and line.get("BridgeId") != debtor.get("BridgeId"))
    await asterisk_shows(sandbox_ami, transferred)
    # the engine lets the agent go (wrap-up) while the debtor talks with the supervisor
    await d("waitFor", "agent", timeout=15000,
            js="return document.querySelector('[data-testid=agent-state]').dataset.state === 'wrap_up'")
    with factory() as s:
        assert s.scalar(select(Attempt.state).where(Attempt.call_id == call_id)) != "ended"
    assert audit(factory, "call_transfer", "call_transfer_consult", "call_transfer_complete", "call_transfer_cancel") == [
        ("call_transfer_consult", "alice", "ok"), ("call_transfer_cancel", "alice", "ok"),
        ("call_transfer_consult", "alice", "ok"), ("call_transfer_complete", "alice", "ok")]
    # the supervisor ends the call: the attempt ends, its record says it was transferred
    floor["sue"].hang_up()
    deadline = time.monotonic() + 15
    while True:
        with factory() as s:
            attempt = s.scalar(select(Attempt).where(Attempt.call_id == call_id))
        if attempt.state == "ended" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert attempt.state == "ended" and attempt.bridged_at is not None, attempt.state
    assert "transferred to a supervisor" in (attempt.note or "")


@pytest.mark.parametrize("floor", ["persistent"], indirect=True)
async def test_a_supervisor_who_does_not_answer_leaves_the_agent_with_the_debtor(floor, sandbox_ami):
    d, ext = floor["d"], floor["ext"]
    floor["sue"].keep_answering(None)  # her phone rings and nobody picks it up
    call_id = await on_a_call(floor)
    await d("press", "agent", key="Alt+t")
    await call_message(d, "transfer")
    await asterisk_shows(sandbox_ami, lambda items: items.get(call_id, {}).get("Context") == "dunning-hold"
                         and sue_of(items) is not None)
    # the consultation's ring time (20 s) runs out: the debtor is bridged to the agent's line again
    await asterisk_shows(sandbox_ami, with_the_agent(call_id, ext), timeout=40)
    # Alt+T (complete) now: the console says the supervisor is not on the line and leaves the
    # debtor with the agent
    await d("press", "agent", key="Alt+t")
    await d("waitFor", "agent", js="const m = document.querySelector('[data-testid=call-message]'); "
                                   "return m.dataset.ok === 'false' && m.dataset.action === 'transfer_complete'")
    assert "no longer on the line" in await d("text", "agent", sel=tid("call-message"))
    assert await d("attr", "agent", sel=tid("case-panel"), name="data-consulting") == "false"
    await asterisk_shows(sandbox_ami, with_the_agent(call_id, ext))
    assert audit(floor["factory"], "call_transfer_consult", "call_transfer_complete") == [
        ("call_transfer_consult", "alice", "ok"), ("call_transfer_complete", "alice", "failed")]


SIM_RECORDINGS = "/var/spool/asterisk/dunning-sim"


def dbfs(pcm: bytes) -> float:
    """The loudness of 16-bit mono PCM (dBFS; -inf for digital silence)."""
    samples = array("h", pcm[:len(pcm) // 2 * 2])
    if not samples:
        return -math.inf
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    return 20 * math.log10(rms / 32768) if rms else -math.inf


async def test_the_debtor_hears_a_barge_and_not_a_whisper(floor, sandbox_ami):
    """At the simulated debtor's end (dunning-sim-answer records what the debtor hears when
    the global DUNNING_SIM_RECORD names a directory) the supervisor's phone, which sends a
    constant tone, is heard for no longer than her barge lasted, though she also whispered for
    3 s or more on the same call (the agent's microphone is silent, the debtor's recording of
    what it hears has nothing else loud)."""
    d, base, site = floor["d"], floor["base"], floor["site"]
    folder = site.sandbox_root / SIM_RECORDINGS.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.wav"):
        old.unlink()
    await sandbox_ami.send({"Action": "Setvar", "Variable": "DUNNING_SIM_RECORD", "Value": SIM_RECORDINGS})
    try:
        call_id = await on_a_call(floor)
    finally:
        await sandbox_ami.send({"Action": "Setvar", "Variable": "DUNNING_SIM_RECORD", "Value": ""})
    [heard] = list(folder.glob("*-heard.wav"))
    await sign_in(d, "sue", base, "sue", "/wallboard")
    row = f"[data-testid=wall-call-row][data-call-id='{call_id}']"
    await d("waitFor", "sue", timeout=10000, js=f"return !!document.querySelector(\"{row} [data-testid=btn-listen]\")")
    lasted = {}
    for mode in ("whisper", "barge"):
        started = time.monotonic()
        await d("click", "sue", sel=f"{row} [data-testid=btn-{mode}]")
        await spy_channel(sandbox_ami, "sue")
        await asyncio.sleep(3)  # her channel spies, in this mode, for 3 s at least
        floor["sue"].hang_up()
        await gone(sandbox_ami, "PJSIP/sue-")
        lasted[mode] = time.monotonic() - started  # at most this long
    await d("press", "agent", key="Alt+h")  # the call ends: the recording is complete
    await gone(sandbox_ami, f"PJSIP/{floor['ext']}-")
    pcm = heard.read_bytes()[44:]
    frames = [dbfs(pcm[at:at + 1600]) for at in range(0, len(pcm) - 1599, 1600)]  # 0.1 s each
    toned = sum(level > -20 for level in frames) / 10  # seconds of her tone (half scale: -9 dBFS)
    assert toned >= 2.0, (lasted, frames)  # the barge is heard
    # the whisper's 3 s would come on top: the debtor heard her only while she barged in
    assert toned <= lasted["barge"] + 0.5, (lasted, frames)
