"""The whole console path with real parts: an agent signs in in headless Chromium and goes
ready; the engine (console mode) places a real call through the Asterisk sandbox to a
simulated debtor; it is bridged to the agent's baresip softphone; the case pops up over the
WebSocket; the disposition is saved in the browser, and the engine makes the agent ready again."""
from __future__ import annotations

import asyncio
import datetime as dt
import socket

import pytest
from sqlalchemy import select

from agent_console import accounts
from agent_console.app import make_app, start
from agent_console.settings import Settings
from asterisk_conf.softphone import Softphone
from campaigns import admin, queue
from campaigns.db import transaction
from campaigns.importing import import_batch
from campaigns.models import AgentPresence, Attempt, Disposition
from dialer.engine import ShiftedClock
from dialer.runner import run_campaign
from helpers import Driver, set_local, tid

pytestmark = pytest.mark.asterisk
PASSWORD = "Qm7#vTr!pLx2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_real_call_pops_up_in_the_browser_and_the_disposition_frees_the_agent(
        sandbox_site, creds, agent_speech, tmp_path):
    site, factory = sandbox_site
    clock = ShiftedClock()
    set_local(clock, 10, 0)
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    batch = tmp_path / "batch.csv"
    batch.write_text("案件编号,姓名,欠款金额,逾期天数,手机,身份证号\n"
                     f"R-{stamp},李伟,18600.00,95,13800138000,11010519491231002X\n", encoding="utf-8")
    report = import_batch(factory, batch, "REAL", now=clock.now())
    assert report.ok, report.problems
    ext = sorted(creds.agent_passwords)[0]
    with transaction(factory) as s:
        admin.add_agent(s, ext, "Real Agent", clock.now())
        admin.create_campaign(s, "real", "REAL", clock.now(), timezone="Asia/Shanghai",
                              settings={"ring_seconds": 15, "wrap_up_limit_seconds": 300})
        queue.change_campaign(s, "real", "start", clock.now())
        accounts.create_team(s, "team-a", clock.now())
        accounts.assign_campaign(s, "real", "team-a")
        accounts.create_account(s, "alice", "agent", PASSWORD, clock.now(), extension=ext, team="team-a",
                                language="en")

    phone = Softphone(ext, creds.agent_passwords[ext], agent_speech, tmp_path / ext,
                      sip_server=f"127.0.0.1:{site.sip_port}")
    phone.start()
    port = free_port()
    runner = await start(make_app(factory, Settings(cookie_secure=False, poll_interval_s=0.2), now=clock.now),
                         "127.0.0.1", port)
    stop = asyncio.Event()
    dialler = asyncio.ensure_future(run_campaign(site, factory, "real", [ext], clock=clock, stop=stop, console=True))
    d = await Driver.start()
    try:
        base = f"http://127.0.0.1:{port}"
        await d("goto", "agent", url=f"{base}/login")
        await d("fill", "agent", sel=tid("login-username"), value="alice")
        await d("fill", "agent", sel=tid("login-password"), value=PASSWORD)
        await d("click", "agent", sel=tid("login-submit"))
        await d("waitFor", "agent", js="return document.querySelector('[data-testid=ws-status]').dataset.connected === 'true'")
        await d("click", "agent", sel=tid("btn-ready"))
        # The engine logs the agent in, dials, the simulated debtor answers, the call is bridged.
        await d("waitFor", "agent", timeout=55000,
                js="const p = document.querySelector('[data-testid=case-panel]'); return p && !!p.dataset.callId")
        call_id = await d("attr", "agent", sel=tid("case-panel"), name="data-call-id")
        assert await d("text", "agent", sel=tid("case-debtor")) == "李伟"
        assert "*" in await d("text", "agent", sel=tid("case-id-number"))
        with factory() as s:  # the case pops up while they talk (bridged_at is written when the call ends)
            attempt = s.scalar(select(Attempt).where(Attempt.call_id == call_id))
            assert attempt is not None and attempt.number == "13800138000"
            assert (s.get(AgentPresence, attempt.agent_id).state, attempt.ended_at) == ("on_call", None)
        # The debtor's side ends the call; the agent is in wrap-up, and ready is blocked.
        await d("waitFor", "agent", timeout=55000,
                js="return document.querySelector('[data-testid=agent-state]').dataset.state === 'wrap_up'")
        with factory() as s:
            assert s.get(Attempt, attempt.id).bridged_at is not None
        assert await d("attr", "agent", sel=tid("btn-ready"), name="data-blocked") == "true"
        await d("select", "agent", sel=tid("dispo-code"), value="refused")
        await d("fill", "agent", sel=tid("dispo-note"), value="says the bank already has his answer")
        await d("click", "agent", sel=tid("dispo-submit"))
        await d("waitFor", "agent", js="return document.querySelector('[data-testid=dispo-message]').dataset.ok === 'true'")
        # The engine sees the disposition and the agent is ready again, with no click.
        await d("waitFor", "agent", timeout=20000,
                js="return document.querySelector('[data-testid=agent-state]').dataset.state === 'ready'")
        with factory() as s:
            disposition = s.scalar(select(Disposition))
            assert (disposition.code, disposition.attempt_id) == ("refused", attempt.id)
    finally:
        await d.quit()
        stop.set()
        summary = await asyncio.wait_for(dialler, 60)
        await runner.cleanup()
        phone.stop()
    assert not summary.problems and summary.dials == 1 and summary.recordings == 1
