"""Answering-machine detection on the real Asterisk 22 sandbox: the simulated network's
answering machines (26VS) and people who say only hello (27VS) through AMD() in the
dunning-answered context, the result heard by the engine as UserEvent DunningAMD."""
from __future__ import annotations

import itertools
import time

import pytest

from ami_bridge import CallOutcome, Calls
from dialer.outbound import dial_request

pytestmark = pytest.mark.asterisk
_serial = itertools.count(1)


def call_id(tag: str) -> str:
    return f"amd{int(time.time())}-{tag}-{next(_serial)}"


AMD_HANGUP = {"DUNNING_AMD": "hangup"}


@pytest.mark.parametrize("number, status", [(f"26{v}1", "MACHINE") for v in range(5)]
                         + [(f"27{v}1", "HUMAN") for v in range(5)])
async def test_amd_tells_each_simulated_machine_and_person_apart(sandbox_calls: Calls, number, status):
    """Every greeting of the simulated set and every short hello, once each: AMD's status
    comes to the call as an AMI UserEvent before anyone is connected."""
    call = await sandbox_calls.originate(dial_request(call_id(number), number, None, 10, extra=AMD_HANGUP))
    outcome = await call.ended(60)
    assert call.amd_status == status, (call.amd_status, call.amd_cause)
    assert call.amd_at is not None and call.answered_at is not None and call.amd_at > call.answered_at
    assert call.bridged_at is None
    if status == "MACHINE":   # hung up by the dialplan as soon as AMD said so
        assert outcome is CallOutcome.ANSWERED
        assert call.ended_at - call.amd_at < 2


async def run_amd_campaign(site, factory, creds, tmp_path, amd: str, numbers: list[str], *, share: float,
                           mode: str = "progressive"):
    """A campaign with AMD over these numbers, two baresip agents answering; its attempts by
    number, and the campaign's abandonment figure once it is idle. Predictive: an eager pacing
    (no warm-up, two lines an agent) that launches calls with no agent reserved."""
    import datetime as dt

    from asterisk_conf.softphone import Softphone
    from campaigns import admin, queue
    from campaigns.amd import message_sound
    from campaigns.db import transaction
    from campaigns.importing import import_batch
    from campaigns.models import Attempt
    from campaigns.presets import load_preset
    from dialer.engine import EngineSettings, ShiftedClock
    from dialer.memory import abandonment
    from sqlalchemy import select
    from helpers import run_engine_on_sandbox, set_local

    clock = ShiftedClock()
    set_local(clock, 9, 30)
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    rows = ["案件编号,姓名,欠款金额,逾期天数,手机"] + [
        f"M{i}-{stamp},债务人{i},{1000 + i}.00,30,{number}" for i, number in enumerate(numbers)]
    batch = tmp_path / "batch.csv"
    batch.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert import_batch(factory, batch, "AMD", now=clock.now()).ok
    extensions = sorted(creds.agent_passwords)[:2]
    name = f"amd-{amd}-{mode}"
    with transaction(factory) as s:
        for ext in extensions:
            admin.add_agent(s, ext, ext, clock.now())
        admin.create_campaign(s, name, "AMD", clock.now(), timezone="Asia/Shanghai", mode=mode,
                              settings={"amd": amd, "amd_human_share": share})
        queue.change_campaign(s, name, "start", clock.now())
    speech = tmp_path / "agent.wav"
    from asterisk_conf.speech import speak
    speak("Hello, this is Anna speaking, thank you for taking my call.", speech)
    phones = [Softphone(ext, creds.agent_passwords[ext], speech, tmp_path / ext,
                        sip_server=f"127.0.0.1:{site.sip_port}") for ext in extensions]
    settings = EngineSettings(ring_timeout_s=15, wrap_up_s=1, amd=amd, mode=mode,
                              amd_message=message_sound(load_preset("client").amd_message))
    from dialer.pacing import ControllerSettings, Predictive, PredictiveSettings
    pacing = Predictive(PredictiveSettings(warmup_dials=0, max_lines_per_agent=2.0, controller=ControllerSettings(
        target=0.5, z_start=-2.0, machine_human_share=share))) if mode == "predictive" else None
    for phone in phones:
        phone.start()
    try:
        await run_engine_on_sandbox(site, factory, name, extensions, clock, settings, pacing=pacing)
    finally:
        for phone in phones:
            phone.stop()
    with factory() as s:
        attempts = {a.number: a for a in s.scalars(select(Attempt).order_by(Attempt.id))}
        figure = abandonment(s, queue.campaign_named(s, name), clock.now())
    return attempts, figure


MACHINES = ["19900002601", "19900002611", "19900002621"]
PEOPLE = ["19900002701", "19900002711"]
#: The simulated debtor of 21NN says a whole sentence at once ("Hello? Yes, this is Li Wei
#: speaking. Who is calling, please?", 4 s): AMD takes that person for a machine (a greeting
#: longer than 1.5 s), the false positive the abandonment figure must count.
TALKER = "19900002101"


async def test_machines_are_hung_up_on_and_never_reach_an_agent(sandbox_site, creds, tmp_path):
    site, factory = sandbox_site
    attempts, figure = await run_amd_campaign(site, factory, creds, tmp_path, "hangup",
                                              MACHINES + PEOPLE + [TALKER], share=0.25)
    for number in MACHINES + [TALKER]:
        a = attempts[number]
        assert a.outcome == "machine", (number, a.outcome, a.note)
        assert a.bridged_at is None and a.answered_at is not None
        assert "AMD MACHINE" in a.note and "hung up" in a.note
        assert (a.ended_at - a.answered_at).total_seconds() < 6, "hung up once AMD decided"
    for number in PEOPLE:
        a = attempts[number]
        assert a.outcome == "answered" and a.bridged_at is not None, (number, a.outcome, a.note)
        assert "AMD HUMAN" in a.note
    # The person AMD hung up on is in the abandonment figure, as an estimate: a quarter of the
    # 4 machine results (the campaign's amd_human_share) counted as people abandoned.
    assert (figure.answered, figure.abandoned, figure.machines) == (2, 0, 4)
    assert figure.rate == pytest.approx((0 + 0.25 * 4) / (2 + 0.25 * 4))
    assert "people estimated among 4 answering machines at 25%" in figure.line()


async def test_a_machine_gets_the_campaigns_message_after_the_beep(sandbox_site, creds, tmp_path):
    site, factory = sandbox_site
    attempts, _ = await run_amd_campaign(site, factory, creds, tmp_path, "message", [MACHINES[0], PEOPLE[0]],
                                         share=0.05)
    machine = attempts[MACHINES[0]]
    assert machine.outcome == "machine" and machine.bridged_at is None
    assert "message left after the beep" in machine.note
    log = (site.sandbox_root / "var/log/asterisk/messages.log").read_text(errors="replace")
    assert f"dunning-amd-message {machine.call_id} dunning/amd-" in log
    # The greeting (several seconds), the beep, the silence and then the message: a long call.
    assert (machine.ended_at - machine.answered_at).total_seconds() > 8
    assert attempts[PEOPLE[0]].bridged_at is not None


async def test_predictive_names_an_agent_only_for_the_people_amd_lets_through(sandbox_site, creds, tmp_path):
    site, factory = sandbox_site
    attempts, figure = await run_amd_campaign(site, factory, creds, tmp_path, "hangup", MACHINES + PEOPLE,
                                              share=0.05, mode="predictive")
    ahead = [a for a in attempts.values() if a.call_id.split("-")[1] == "p"]
    assert ahead, "calls were launched with no agent reserved"
    for number in MACHINES:
        a = attempts[number]
        assert a.outcome == "machine" and a.bridged_at is None, (number, a.outcome, a.note)
        if a in ahead:
            assert a.agent_id is None, "no agent was named for a machine"
    for number in PEOPLE:
        assert attempts[number].bridged_at is not None and attempts[number].agent_id is not None
    assert (figure.answered, figure.machines) == (2, 3)
