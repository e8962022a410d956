"""Answering-machine detection's pure parts (campaigns/amd.py and what uses it): the
campaign setting's checks, the abandonment arithmetic with the people estimated among the
machines, the pacing's machine rate learnt apart from people's answers, the dialplan and the
AMI event; and the figure in the database (SQLite and PostgreSQL), `campaign status` and the
daily report. Times are inputs."""
from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from ami_bridge import UserEvent, parse_event
from asterisk_conf.generate import ConfigSpec, extensions_contexts, simulated_behaviour
from campaigns import queue
from campaigns.amd import (
    AmdResult,
    AmdSetting,
    AmdSettingError,
    amd_setting,
    estimated_abandonment,
    message_sound,
    preset_messages,
)
from campaigns.db import transaction
from campaigns.policy import AttemptView
from campaigns.presets import load_preset
from campaigns.report import daily, render
from dialer.memory import abandonment, predictive_for
from dialer.pacing import AbandonController, ControllerSettings, DialEnded, Learner
from helpers import at, attempts

NOW = at(15, 0)


# ------------------------------------------------------------------ the setting

def test_the_setting_takes_off_hangup_or_message_and_a_share_below_one():
    assert amd_setting({}, "campaign q") == AmdSetting("off", 0.05)
    assert amd_setting({"amd": "message", "amd_human_share": "0.1"}, "campaign q") == AmdSetting("message", 0.1)
    assert not AmdSetting().on and AmdSetting("hangup").on
    with pytest.raises(AmdSettingError, match=r"^campaign q: amd 'voicemail': one of off, hangup, message$"):
        amd_setting({"amd": "voicemail"}, "campaign q")
    with pytest.raises(AmdSettingError, match=r"^campaign q: amd_human_share 1.0: a share from 0 to below 1"):
        amd_setting({"amd": "hangup", "amd_human_share": 1}, "campaign q")
    with pytest.raises(AmdSettingError, match=r"^campaign q: amd_human_share 'lots' is not a number$"):
        amd_setting({"amd_human_share": "lots"}, "campaign q")


def test_the_result_note_says_what_amd_concluded_and_what_was_done():
    assert AmdResult("MACHINE", "LONGGREETING-1500-1500").note("hangup") == "AMD MACHINE (LONGGREETING-1500-1500); hung up"
    assert AmdResult("MACHINE", "MAXWORDS-4-4").note("message") == "AMD MACHINE (MAXWORDS-4-4); message left after the beep"
    assert AmdResult("HUMAN", "HUMAN-800-800").note("hangup") == "AMD HUMAN (HUMAN-800-800)"


def test_each_presets_message_names_no_debt_and_has_its_own_sound():
    messages = preset_messages()
    us = load_preset("us_fdcpa")
    assert messages[message_sound(us.amd_message)] == (us.amd_message, "en-us")
    for text, _ in messages.values():
        for word in ("debt", "owe", "overdue", "bank", "collect", "欠", "债", "逾期", "银行", "催收"):
            assert word not in text.lower(), (word, text)
    assert message_sound("a") != message_sound("b") and message_sound("a").startswith("amd-")
    assert load_preset("client", {"amd.message": "请回电"}).amd_message == "请回电"


# ------------------------------------------------------------------ the arithmetic

def test_people_estimated_among_the_machines_count_as_answered_and_abandoned():
    figure = estimated_abandonment(humans=95, abandoned=2, machines=40, human_share=0.05)
    assert figure.estimated_humans_among_machines == pytest.approx(2.0)
    assert figure.live == pytest.approx(97.0) and figure.abandoned_estimate == pytest.approx(4.0)
    assert figure.rate == pytest.approx(4 / 97)
    assert estimated_abandonment(95, 2, 40, 0.0).rate == pytest.approx(2 / 95), "no AMD: the plain rate"
    assert estimated_abandonment(0, 0, 0, 0.05).rate is None
    assert estimated_abandonment(0, 0, 10, 0.05).rate == 1.0, "only machines: every estimated person abandoned"
    with pytest.raises(ValueError, match="abandoned 3"):
        estimated_abandonment(2, 3, 0, 0.05)


def test_a_machine_is_not_a_contact_for_the_policy():
    # case_views: a MACHINE result is not answered, so it is no conversation either.
    machine = AttemptView(phone_id=1, at=NOW, answered=False)
    assert not machine.talked


# ------------------------------------------------------------------ pacing

def test_the_learner_keeps_the_machine_rate_apart_from_peoples_answers():
    learner = Learner()
    for i in range(200):
        kind = i % 4   # a quarter people, a quarter machines, half unanswered
        learner.observe(DialEnded(float(i), kind == 0, 8.0, machine=kind == 1))
    assert learner.answered.value == pytest.approx(0.25, abs=0.03), "machines are not answers needing an agent"
    assert learner.machines.value == pytest.approx(0.25, abs=0.03)
    # A machine's line is free again when AMD decides: its time counts with the give-ups.
    assert learner.give_up_s.n > learner.answer_s.n


def test_a_machine_result_moves_the_controller_by_the_estimated_share_of_a_person_abandoned():
    settings = ControllerSettings(target=0.03, aim=0.8, gain=0.05, z_start=2.0, machine_human_share=0.1)
    c = AbandonController(settings)
    c.observe(DialEnded(0.0, False, 6.0, machine=True))
    assert (c.answered, c.abandoned) == (pytest.approx(0.1), pytest.approx(0.1))
    assert c.z == pytest.approx(2.0 + 0.05 * 0.1 * (1 - 2 * 0.024))
    plain = AbandonController(ControllerSettings(machine_human_share=0.0))
    plain.observe(DialEnded(0.0, False, 6.0, machine=True))
    assert (plain.answered, plain.abandoned, plain.z) == (0, 0, ControllerSettings().z_start)
    c.remember(10.0, abandoned=False, machine=True)
    assert c.abandoned == pytest.approx(0.2)


# ------------------------------------------------------------------ Asterisk

def test_the_dialplan_runs_amd_before_any_agent_and_sends_its_result():
    text = extensions_contexts(ConfigSpec(ami_username="dunning", ami_secret="s" * 16))
    answered = text[text.index("[dunning-answered]"):text.index("[dunning-agents]")]
    order = [answered.index(step) for step in ("MixMonitor(", "AMD(2500,1500,800,4000,100,50,4,256,5000)",
                                               "UserEvent(DunningAMD", "?machine)", "(waiting)", "Dial(PJSIP")]
    assert order == sorted(order)
    assert "WaitForSilence(1500,1,30)" in answered and "Playback(${DUNNING_AMD_MESSAGE})" in answered
    assert "[dunning-sim-machine]" in text and "[dunning-sim-human]" in text
    assert simulated_behaviour("2632") == "an answering machine (greeting 3) after 2 s"
    assert simulated_behaviour("19900002791") == "a person saying hello (greeting 4) after 1 s"


def test_the_amd_user_event_is_typed():
    event = parse_event({"Event": "UserEvent", "UserEvent": "DunningAMD", "Channel": "Local/2601@x-0;1",
                         "Uniqueid": "c1", "Linkedid": "c1", "Status": "MACHINE",
                         "Cause": "LONGGREETING-1500-1500"}, 2.0)
    assert event == UserEvent(received_at=2.0, channel="Local/2601@x-0;1", uniqueid="c1", linkedid="c1",
                              name="DunningAMD", status="MACHINE", cause="LONGGREETING-1500-1500")


# ------------------------------------------------------------------ the figure in the database

def test_campaign_status_and_the_daily_report_count_people_among_the_machines(report_campaign, database):
    from cli import main
    factory = report_campaign   # conftest: campaign q's session factory
    attempts(factory, ("6001", "answered", at(9, 0), 3, 60.0), ("6001", "answered", at(9, 5), 3, 60.0),
             ("6002", "abandoned", at(9, 10), 3, None), ("6002", "machine", at(9, 20), 3, None),
             ("6002", "machine", at(9, 30), 4, None), ("6001", "no_answer", at(9, 40), None, None))
    with transaction(factory) as s:
        q = queue.campaign_named(s, "q")
        q.settings = {**(q.settings or {}), "amd": "hangup", "amd_human_share": 0.5}
    with factory() as s:
        figure = abandonment(s, queue.campaign_named(s, "q"), NOW)
        policy = predictive_for(s, queue.campaign_named(s, "q"), 10.0, NOW)
        report = daily(s, dt.date(2026, 11, 25), "Asia/Shanghai")
    assert (figure.answered, figure.abandoned, figure.machines) == (3, 1, 2)
    assert figure.rate == pytest.approx((1 + 1) / (3 + 1))
    assert figure.line() == ("abandoned over the last 24h: 50.00% (1 abandoned + 1.0 people estimated among 2 "
                             "answering machines at 50%, of 3 + 1.0 answered by people); target 3.0%")
    # The next run's controller starts from the same window; its learner saw the machines apart.
    assert policy.controller.answered == pytest.approx(4) and policy.controller.abandoned == pytest.approx(2)
    assert policy.learner.machines._true == 2
    text = render(report)
    assert "50.0% est." in text
    assert ("q: abandoned 50.0% est. = (1 abandoned + 1.0 people estimated among 2 answering machines at 50%) "
            "/ (3 answered by people + 1.0)") in text

    env = {"DUNNING_DATABASE_URL": database.url.render_as_string(hide_password=False)}
    status = CliRunner().invoke(main, ["campaign", "status", "q", "--at", NOW.isoformat()], env=env)
    assert status.exit_code == 0, status.output
    assert status.stdout.splitlines()[-1] == figure.line(), "shown for a progressive campaign with AMD too"
    wrong = CliRunner().invoke(main, ["campaign", "create", "w", "--client", "R", "--amd", "message",
                                      "--amd-human-share", "2"], env=env)
    assert wrong.exit_code == 2 and "--amd-human-share" in wrong.stderr
    made = CliRunner().invoke(main, ["campaign", "create", "w", "--client", "R", "--amd", "message",
                                     "--amd-human-share", "0.08"], env=env)
    assert made.exit_code == 0, made.output
