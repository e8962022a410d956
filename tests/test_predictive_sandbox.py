"""Predictive dialing on the real sandbox with three baresip agents.

The agents talk for about 12 s; the debtors answer after 3 s. The pacing policy is ours
(`Predictive`), made eager (no warm-up, a loose abandon target) so that in a short run it
launches calls ahead of agents becoming free and some debtor answers with no agent free:
that call plays the message, is counted as abandoned and recorded, and the same debtor's
next call is made with an agent reserved.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from asterisk_conf.softphone import Softphone
from asterisk_conf.speech import speak
from campaigns import admin, queue
from campaigns.db import transaction
from campaigns.importing import import_batch
from campaigns.models import Attempt
from dialer.engine import Engine, EngineSettings, ShiftedClock
from dialer.pacing import ControllerSettings, Predictive, PredictiveSettings
from recordings import integrity
from helpers import check_predictive_dials, dial_lines, run_engine_on_sandbox, set_local

pytestmark = pytest.mark.asterisk
SHANGHAI = ZoneInfo("Asia/Shanghai")


async def run_engine(site, factory, extensions, clock, pacing) -> Engine:
    settings = EngineSettings(ring_timeout_s=15, wrap_up_s=1, mode="predictive")
    return await run_engine_on_sandbox(site, factory, "pred", extensions, clock, settings, pacing=pacing)


async def test_predictive_launches_ahead_and_abandons_with_the_message(sandbox_site, creds, tmp_path):
    site, factory = sandbox_site
    clock = ShiftedClock()
    set_local(clock, 9, 30)
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    rows = ["案件编号,姓名,欠款金额,逾期天数,手机"] + [
        f"P{i}-{stamp},债务人{i},{1000 + i}.00,30,1380013800{i % 6}" for i in range(10)]
    batch = tmp_path / "batch.csv"
    batch.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert import_batch(factory, batch, "PRED", now=clock.now()).ok
    extensions = sorted(creds.agent_passwords)[:3]
    with transaction(factory) as s:
        for ext in extensions:
            admin.add_agent(s, ext, ext, clock.now())
        admin.create_campaign(s, "pred", "PRED", clock.now(), timezone="Asia/Shanghai", mode="predictive")
        queue.change_campaign(s, "pred", "start", clock.now())
    speech = speak("Hello, this is Anna from Dunning Collections on behalf of your bank. This call is "
                   "recorded. I am calling about the overdue balance on your card, and I would like to "
                   "agree a repayment date with you today.", tmp_path / "agent.wav")
    phones = [Softphone(ext, creds.agent_passwords[ext], speech, tmp_path / ext,
                        sip_server=f"127.0.0.1:{site.sip_port}") for ext in extensions]
    eager = Predictive(PredictiveSettings(warmup_dials=0, max_lines_per_agent=2.0,
                                          controller=ControllerSettings(target=0.5, z_start=-2.0)))
    before = set(dial_lines(site))
    for phone in phones:
        phone.start()
    try:
        await run_engine(site, factory, extensions, clock, eager)
        set_local(clock, 12, 30)  # the next slot: the abandoned debtors are called again
        await run_engine(site, factory, extensions, clock, eager)
    finally:
        for phone in phones:
            phone.stop()

    with factory() as s:
        attempts = list(s.scalars(select(Attempt).order_by(Attempt.id)))
        report = integrity.verify(s, site.recordings_root, clock.now())
    check_predictive_dials(site, before, attempts)
    abandoned = [a for a in attempts if a.outcome == "abandoned"]
    assert abandoned, "with every agent talking, some debtor answered with no agent free"
    for a in abandoned:
        assert a.bridged_at is None and a.agent_id is None
        assert (a.ended_at - a.answered_at).total_seconds() > 5, "the message was played in full"
    # Every answered call, abandoned ones included, is in the vault, and verify is clean.
    assert report.ok, report.lines()
    # The same debtor's next call was made with an agent reserved.
    for a in abandoned:
        later = [b for b in attempts if b.case_id == a.case_id and b.id > a.id]
        assert later and later[0].call_id.split("-")[1] != "p" and later[0].agent_id is not None
