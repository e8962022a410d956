"""A console agent on the real sandbox: the agent goes ready in the database (as the browser
console does), the engine dials for them, the call is bridged to their baresip softphone, and
the agent stays in wrap-up until the disposition is saved, however short the campaign's timer."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from asterisk_conf.softphone import Softphone
from campaigns import admin, queue
from campaigns.db import transaction
from campaigns.importing import import_batch
from campaigns.models import AgentPresence, Attempt, EngineStatus
from dialer import presence
from dialer.engine import ShiftedClock
from dialer.runner import run_campaign
from helpers import set_local

pytestmark = pytest.mark.asterisk


async def wait_for(predicate, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = predicate()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def test_a_console_agent_is_ready_again_only_after_the_disposition(sandbox_site, creds, agent_speech, tmp_path):
    site, factory = sandbox_site
    clock = ShiftedClock()
    set_local(clock, 10, 0)
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    batch = tmp_path / "batch.csv"
    batch.write_text(f"案件编号,姓名,欠款金额,逾期天数,手机\nC-{stamp},债务人,5000.00,30,13800138000\n", encoding="utf-8")
    assert import_batch(factory, batch, "CONSOLE", now=clock.now()).ok
    ext = sorted(creds.agent_passwords)[0]
    with transaction(factory) as s:
        agent = admin.add_agent(s, ext, "console agent", clock.now())
        admin.create_campaign(s, "con", "CONSOLE", clock.now(), timezone="Asia/Shanghai",
                              settings={"ring_seconds": 15, "wrap_up_seconds": 1, "wrap_up_limit_seconds": 300})
        queue.change_campaign(s, "con", "start", clock.now())

    def state() -> str | None:
        with factory() as s:
            row = s.get(AgentPresence, agent.id)
            return row.state if row else None

    def attempt() -> Attempt | None:
        with factory() as s:
            return s.scalar(select(Attempt).where(Attempt.agent_id == agent.id))

    phone = Softphone(ext, creds.agent_passwords[ext], agent_speech, tmp_path / ext,
                      sip_server=f"127.0.0.1:{site.sip_port}")
    phone.start()
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_campaign(site, factory, "con", [ext], clock=clock, stop=stop, console=True))
    try:
        await wait_for(lambda: state() == "logged_out", 30, "the engine to publish the agent, logged out")
        await asyncio.sleep(1.5)
        assert attempt() is None, "nothing is dialled for an agent who has not gone ready"
        with transaction(factory) as s:
            presence.request(s, agent.id, "ready", clock.now())
        call = await wait_for(lambda: (a := attempt()) and a.bridged_at and a, 40, "the call bridged to the agent")
        await wait_for(lambda: (a := attempt()) and a.ended_at, 60, "the call to end")
        await wait_for(lambda: state() == "wrap_up", 10, "wrap-up")
        await asyncio.sleep(4)  # far beyond the campaign's 1 s timer
        assert state() == "wrap_up", "a console agent's wrap-up lasts until the disposition"
        with transaction(factory) as s:
            admin.record_disposition(s, call.call_id, "promise_to_pay", clock.now(), promise_amount="800",
                                     promise_due=clock.now().date() + dt.timedelta(days=7), note="payday")
        await wait_for(lambda: state() == "ready", 10, "ready after the disposition")
        with factory() as s:
            status = s.get(EngineStatus, s.scalar(select(Attempt.campaign_id)))
            assert status.mode == "progressive" and status.agents == 1
        with transaction(factory) as s:
            presence.request(s, agent.id, "logged_out", clock.now())
        await wait_for(lambda: state() == "logged_out", 10, "logged out")
    finally:
        stop.set()
        summary = await asyncio.wait_for(task, 60)
        phone.stop()
    assert not summary.problems and summary.dials == 1 and summary.recordings == 1
