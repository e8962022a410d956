"""The console in a real headless Chromium (Debian's `chromium`, driven by playwright-core
through agent_console/browser/driver.mjs; `scripts/browser` installs both).

The engine's side is played by writing the rows the engine writes (agent_presence, the
attempt bridged to the agent, its end), so these tests need no Asterisk; the end-to-end test
with the engine, the sandbox and a softphone uses the same element ids (the browser console
in docs/agent.md). Screenshots of each page go to docs/screenshots/.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from agent_console.app import make_app, start
from agent_console.settings import Settings
from campaigns.db import sessions, transaction
from campaigns.models import AgentPresence, Campaign, Disposition, RecordingAccess
from dialer import presence
from dialer.agents import AgentSeat, AgentState
from helpers import NOW, PASSWORDS, bridge, Clock, Driver, hang_up, seed, tid

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "docs" / "screenshots"


@pytest.fixture
async def served(sqlite_db, tmp_path):
    root = tmp_path / "vault"
    factory = sessions(sqlite_db)
    ids = seed(factory, root)
    clock = Clock(NOW)
    settings = Settings(cookie_secure=False, poll_interval_s=0.1, recordings_root=root)
    app = make_app(factory, settings, now=clock)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = await start(app, "127.0.0.1", port)
    driver = await Driver.start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield {"factory": factory, "ids": ids, "clock": clock, "base": f"http://127.0.0.1:{port}", "driver": driver}
    await driver.quit()
    await runner.cleanup()


async def sign_in(d: Driver, page: str, base: str, username: str, screenshot: str | None = None) -> None:
    await d("goto", page, url=f"{base}/login")
    await d("wait", page, sel=tid("login-form"))
    if screenshot:
        await d("screenshot", page, path=str(SHOTS / screenshot))
    await d("fill", page, sel=tid("login-username"), value=username)
    await d("fill", page, sel=tid("login-password"), value=PASSWORDS[username])
    await d("click", page, sel=tid("login-submit"))
    await d("wait", page, sel=tid("who"))


def engine_sets(factory, agent_id: int, state: str, at: dt.datetime) -> None:
    with transaction(factory) as s:
        presence = s.get(AgentPresence, agent_id)
        presence.state, presence.state_since = state, at
        if state in ("ready", "paused"):
            presence.call_id = None


async def test_agent_takes_a_call_the_case_pops_up_and_the_disposition_frees_them(served):
    d, base, factory, ids = served["driver"], served["base"], served["factory"], served["ids"]
    await sign_in(d, "agent", base, "alice", screenshot="login.png")
    assert (await d("url", "agent")).endswith("/agent")
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=ws-status]').dataset.connected === 'true'")
    # pause with a reason, then ready
    await d("select", "agent", sel=tid("pause-reason"), value="meal")
    await d("click", "agent", sel=tid("btn-pause"))
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=agent-requested]').dataset.requested === 'paused'")
    await d("click", "agent", sel=tid("btn-ready"))
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=agent-requested]').dataset.requested === 'ready'")
    with transaction(factory) as s:
        presence = s.get(AgentPresence, ids["agent_alice"])
        assert (presence.requested, presence.requested_reason) == ("ready", None)
    engine_sets(factory, ids["agent_alice"], "ready", NOW)
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=agent-state]').dataset.state === 'ready'")
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=counter-dials]').textContent.includes('/ 200')")
    await d("screenshot", "agent", path=str(SHOTS / "agent.png"))

    # the engine reserves alice, dials, the debtor answers, the call is bridged to her
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    served["clock"].at = NOW + dt.timedelta(seconds=35)
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=case-panel]').dataset.callId === 'call-east-1'")
    assert await d("text", "agent", sel=tid("case-debtor")) == "李伟"
    assert await d("text", "agent", sel=tid("case-id-number")) == "4403**********1234"
    assert await d("text", "agent", sel=tid("case-amount")) == "18,600.00 CNY"
    dialled = await d("eval", "agent", js="return [...document.querySelectorAll('[data-testid=phone-row]')].map(r => r.dataset.dialled)")
    assert dialled == ["true", "false"]
    assert await d("eval", "agent", js="return document.querySelector('[data-testid=disposition-panel]').hidden") is False
    await d("screenshot", "agent", path=str(SHOTS / "popup.png"), fullPage=True)

    # the supervisor sees it on the wallboard, and pauses and resumes a campaign
    await sign_in(d, "sup", base, "sam")
    await d("waitFor", "sup", js="const r = document.querySelector('[data-testid=wall-agent-row][data-extension=\"6001\"]'); return r && r.dataset.state === 'on_call'")
    await d("wait", "sup", sel=tid("wall-call-row", '[data-call-id="call-east-1"]'))
    await d("screenshot", "sup", path=str(SHOTS / "wallboard.png"), fullPage=True)
    await d("click", "sup", sel=tid("wall-campaign-row", '[data-campaign="east"] ') + tid("btn-campaign-pause"))
    await d("waitFor", "sup", js="return document.querySelector('[data-testid=wall-campaign-row][data-campaign=east]').dataset.status === 'paused'")
    with transaction(factory) as s:
        assert s.get(Campaign, ids["east"]).status == "paused"
    await d("click", "sup", sel=tid("wall-campaign-row", '[data-campaign="east"] ') + tid("btn-campaign-resume"))
    await d("waitFor", "sup", js="return document.querySelector('[data-testid=wall-campaign-row][data-campaign=east]').dataset.status === 'running'")
    # the same page in Chinese (the switch is kept on the account)
    await d("click", "sup", sel=tid("lang-switch"))
    await d("waitFor", "sup", js="return document.querySelector('[data-testid=nav-wallboard]').textContent === '监控大屏'")
    await d("wait", "sup", sel=tid("wall-agent-row", '[data-extension="6001"]'))
    await d("screenshot", "sup", path=str(SHOTS / "wallboard-zh.png"), fullPage=True)

    # the call ends: wrap-up; ready is not possible until the disposition is saved
    hang_up(factory, "call-east-1", ids["agent_alice"], NOW + dt.timedelta(seconds=95))
    served["clock"].at = NOW + dt.timedelta(seconds=100)
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=agent-state]').dataset.state === 'wrap_up'")
    assert await d("attr", "agent", sel=tid("btn-ready"), name="data-blocked") == "true"
    assert await d("eval", "agent", js="return document.querySelector('[data-testid=btn-ready]').disabled") is True
    assert await d("text", "agent", sel=tid("wrap-up-left")) in ("Wrap-up: 175 s left", "Wrap-up: 174 s left")
    await d("select", "agent", sel=tid("dispo-code"), value="promise_to_pay")
    await d("fill", "agent", sel=tid("dispo-amount"), value="1500")
    await d("fill", "agent", sel=tid("dispo-due"), value="2026-12-01")
    await d("fill", "agent", sel=tid("dispo-note"), value="payday on the 1st")
    await d("click", "agent", sel=tid("dispo-submit"))
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=dispo-message]').dataset.ok === 'true'")
    assert await d("attr", "agent", sel=tid("btn-ready"), name="data-blocked") == "false"
    with transaction(factory) as s:
        disposition = s.scalar(select(Disposition))
        assert (disposition.code, disposition.note, disposition.agent_id) == (
            "promise_to_pay", "payday on the 1st", ids["agent_alice"])
    # the engine sees the disposition and makes her ready again
    served["clock"].at = NOW + dt.timedelta(seconds=120)
    engine_sets(factory, ids["agent_alice"], "ready", NOW + dt.timedelta(seconds=120))
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=agent-state]').dataset.state === 'ready'")
    errors = [line for line in await d("console", "agent") if line.startswith(("error", "pageerror"))]
    assert errors == []


def engine_writes_line(factory, agent_id: int, campaign_id: int, line: str, at: dt.datetime) -> None:
    """What the engine writes each tick on a persistent line: the agent's state and line."""
    seat = AgentSeat("6001", agent_id, AgentState.READY, history=[(NOW, AgentState.READY, "ready")])
    with transaction(factory) as s:
        presence.write_states(s, [seat], campaign_id, {"6001": (line, at)})


async def test_the_agent_and_the_supervisor_see_the_agents_phone_line(served):
    d, base, factory, ids = served["driver"], served["base"], served["factory"], served["ids"]
    await sign_in(d, "agent", base, "alice")
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=ws-status]').dataset.connected === 'true'")
    assert await d("eval", "agent", js="return document.getElementById('agent-line-row').hidden") is True
    engine_writes_line(factory, ids["agent_alice"], ids["east"], "calling", NOW)
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=agent-line]').dataset.line === 'calling'")
    assert "answer your phone" in await d("text", "agent", sel=tid("agent-line"))
    engine_writes_line(factory, ids["agent_alice"], ids["east"], "up", NOW + dt.timedelta(seconds=3))
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=agent-line]').dataset.line === 'up'")
    assert "without ringing" in await d("text", "agent", sel=tid("agent-line"))
    engine_writes_line(factory, ids["agent_alice"], ids["east"], "lost", NOW + dt.timedelta(seconds=60))
    await d("waitFor", "agent", js="return document.querySelector('[data-testid=agent-line]').dataset.line === 'lost'")
    assert "called again" in await d("text", "agent", sel=tid("agent-line"))
    with transaction(factory) as s:
        row = s.get(AgentPresence, ids["agent_alice"])
        assert (row.line, row.line_since) == ("lost", NOW + dt.timedelta(seconds=60))
    await sign_in(d, "sup", base, "sam")
    await d("waitFor", "sup", js="const r = document.querySelector('[data-testid=wall-agent-row][data-extension=\"6001\"]'); "
                                 "return r && r.dataset.line === 'lost'")
    assert "line lost" in await d("text", "sup", sel=tid("wall-agent-row", '[data-extension="6001"]'))
    errors = [line for who in ("agent", "sup") for line in await d("console", who) if line.startswith(("error", "pageerror"))]
    assert errors == []


def _store_transcript(factory, recording_id: int) -> None:
    """A real transcript and the real rule set's findings for the seeded recording."""
    from recordings import qa, transcripts
    from recordings.transcript import Transcript, Utterance, Word

    def said(leg: str, start: float, text: str) -> Utterance:
        step = 0.18
        words = tuple(Word(ch, start + i * step, start + (i + 1) * step, 0.95) for i, ch in enumerate(text))
        return Utterance(leg, start, start + len(text) * step, text, words)
    transcript = Transcript((said("agent", 0.2, "您好我是示范银行工号一二三四本次通话将被录音"),
                             said("debtor", 1.4, "我现在没钱"),
                             said("agent", 2.5, "不还钱就起诉你家人")), "zh")
    with transaction(factory) as s:
        transcripts.store(s, recording_id, transcript, "test-transcript", NOW)
        qa.check_recording(s, recording_id, transcript, now=NOW)


async def test_qa_searches_plays_from_an_offset_and_records_a_verdict(served):
    d, base, factory, ids = served["driver"], served["base"], served["factory"], served["ids"]
    _store_transcript(factory, ids["recording"])
    await sign_in(d, "qa", base, "quinn")
    await d("goto", "qa", url=f"{base}/qa?q=起诉")
    await d("wait", "qa", sel=tid("qa-hit"))
    assert await d("text", "qa", sel=tid("qa-hit") + " mark") == "起诉"
    offset = float(await d("attr", "qa", sel=tid("qa-hit"), name="data-offset"))
    assert 2.5 < offset < 6
    await d("screenshot", "qa", path=str(SHOTS / "qa.png"), fullPage=True)
    await d("click", "qa", sel=tid("qa-hit-link"))
    await d("wait", "qa", sel=tid("recording-page"))
    assert float(await d("attr", "qa", sel=tid("recording-page"), name="data-offset")) == pytest.approx(offset)
    await d("select", "qa", sel=tid("play-reason"), value="qa_review")
    await d("click", "qa", sel=tid("btn-play"))
    # the browser fetched the vault file with range requests and started at the offset
    await d("waitFor", "qa", js="const a = document.querySelector('[data-testid=qa-player]'); "
                                "return a.readyState >= 1 && a.currentTime >= arg - 0.05", arg=offset)
    src = await d("eval", "qa", js="return document.querySelector('[data-testid=qa-player]').currentSrc")
    assert f"#t={offset}" in src
    with transaction(factory) as s:
        access = s.scalars(select(RecordingAccess)).all()
        assert [(a.accessed_by, a.action, a.recording_id) for a in access] == [("quinn", "play", ids["recording"])]
    await d("wait", "qa", sel=tid("finding-row"))
    finding = await d("attr", "qa", sel=tid("finding-row"), name="data-finding-id")
    before = await d("attr", "qa", sel=tid("finding-row"), name="data-status")
    verdict = "false_positive" if before != "false_positive" else "confirmed"
    await d("click", "qa", sel=tid("finding-row", f'[data-finding-id="{finding}"] ') + tid(f"btn-verdict-{verdict}"))
    await d("waitFor", "qa", js=f"const r = document.querySelector('[data-testid=finding-row][data-finding-id=\"{finding}\"]'); "
                                f"return r && r.dataset.status === '{verdict}'")
    from recordings.qa_schema import FindingRow, QaVerdict
    with transaction(factory) as s:
        verdicts = s.scalars(select(QaVerdict)).all()
        assert [(v.reviewer, v.verdict, v.finding_id) for v in verdicts] == [("quinn", verdict, int(finding))]
        assert s.get(FindingRow, int(finding)).status == verdict
    # jump to the finding's offset in the same playback (the page stayed; no second log entry)
    jump = float(await d("attr", "qa", sel=tid("jump-offset"), name="data-offset"))
    await d("click", "qa", sel=tid("jump-offset"))
    await d("waitFor", "qa", js="const a = document.querySelector('[data-testid=qa-player]'); "
                                "return Math.abs(a.currentTime - arg) < 0.6", arg=jump)
    with transaction(factory) as s:
        assert len(s.scalars(select(RecordingAccess)).all()) == 1
    await d("screenshot", "qa", path=str(SHOTS / "recording.png"), fullPage=True)


async def test_the_qa_workspace_conversation_review_queue_and_precision(served):
    """The call as a conversation (both legs in time order, the finding's words marked, a line
    plays the call from where it was said), the review queue (a filter, a verdict from the
    keyboard) and the rule's precision from that verdict."""
    d, base, factory, ids = served["driver"], served["base"], served["factory"], served["ids"]
    _store_transcript(factory, ids["recording"])
    await sign_in(d, "ws", base, "quinn")
    await d("goto", "ws", url=f"{base}/qa/recordings/{ids['recording']}")
    await d("wait", "ws", sel=tid("conversation"))
    lines = await d("eval", "ws", js="return [...document.querySelectorAll('[data-testid=conv-line]')]"
                                     ".map(l => [l.dataset.leg, parseFloat(l.dataset.start), l.dataset.severity || null])")
    assert [leg for leg, _, _ in lines] == ["agent", "debtor", "agent"]
    assert [start for _, start, _ in lines] == sorted(start for _, start, _ in lines)
    assert lines[2][2] == "critical"  # 不还钱就起诉你家人: a threat to the family
    assert await d("text", "ws", sel=tid("conv-line", "[data-severity] ") + tid("conv-mark")) == "不还钱就起诉你家人"
    await d("screenshot", "ws", path=str(SHOTS / "qa-conversation.png"), fullPage=True)
    # a click on the debtor's line logs a playback and seeks to where the line starts
    await d("select", "ws", sel=tid("play-reason"), value="qa_review")
    await d("click", "ws", sel=tid("conv-line", '[data-leg="debtor"]'))
    await d("waitFor", "ws", js="const a = document.querySelector('[data-testid=qa-player]'); "
                                "return a.readyState >= 1 && Math.abs(a.currentTime - arg) < 0.3", arg=lines[1][1])
    with transaction(factory) as s:
        assert [(a.accessed_by, a.action) for a in s.scalars(select(RecordingAccess))] == [("quinn", "play")]
    # the review queue: only the critical finding under that filter; c confirms it from the keyboard
    await d("goto", "ws", url=f"{base}/qa/review?status=all")
    await d("wait", "ws", sel=tid("review-queue"))
    assert await d("eval", "ws", js="return document.querySelectorAll('[data-testid=queue-row]').length") == 2
    await d("select", "ws", sel=tid("filter-severity"), value="critical")
    await d("click", "ws", sel=tid("filter-apply"))
    await d("waitFor", "ws", js="return location.search.includes('severity=critical')")
    rows = await d("eval", "ws", js="return [...document.querySelectorAll('[data-testid=queue-row]')]"
                                    ".map(r => [r.dataset.findingId, r.dataset.severity, r.dataset.selected])")
    assert [(severity, selected) for _, severity, selected in rows] == [("critical", "true")]
    await d("screenshot", "ws", path=str(SHOTS / "qa-review.png"), fullPage=True)
    await d("press", "ws", key="f")
    finding = rows[0][0]
    await d("waitFor", "ws", js=f"return document.querySelector('[data-finding-id=\"{finding}\"]').dataset.status"
                                " === 'false_positive'")
    from recordings.qa_schema import FindingRow, QaVerdict
    with transaction(factory) as s:
        assert [(v.reviewer, v.verdict, v.finding_id) for v in s.scalars(select(QaVerdict))] == [
            ("quinn", "false_positive", int(finding))]
        rule = s.get(FindingRow, int(finding)).rule_id
    # the precision page: that rule at 0 % (one false positive), the other without verdicts
    await d("goto", "ws", url=f"{base}/qa/precision")
    await d("wait", "ws", sel=tid("precision-plot"))
    assert await d("attr", "ws", sel=tid("precision-row", f'[data-rule="{rule}"]'),
                   name="data-precision") == "0.000"
    bars = await d("eval", "ws", js="return [...document.querySelectorAll('[data-testid=precision-bar]')]"
                                    ".map(b => [b.dataset.rule, b.dataset.precision])")
    assert bars == [[rule, "0.000"]]
    await d("screenshot", "ws", path=str(SHOTS / "qa-precision.png"), fullPage=True)
    errors = [line for line in await d("console", "ws") if line.startswith(("error", "pageerror"))]
    assert errors == []


async def test_a_live_finding_is_on_the_wallboard_with_its_call_and_a_barge_in_button(served):
    """An alert as `dunning live` raises it (recordings/live.py) for a call in progress: the
    wallboard shows it under the call's campaign with the call id, agent and words, and a barge-in
    button while the call lasts; once the call ends, no button."""
    from recordings.audiosocket import call_uuid
    from recordings.findings import shipped_rulesets
    from recordings.live import find_call, raise_alert
    from recordings.live_findings import LiveCall, live_rules
    factory, ids, d, base = served["factory"], served["ids"], served["driver"], served["base"]
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-9", NOW)
    with transaction(factory) as s:
        call = find_call(s, call_uuid("call-east-9"), NOW)
        [alert] = LiveCall(call.call_id, live_rules(shipped_rulesets()["zh"])).heard(
            {"text": "你再不还钱我们就起诉你家人"}, True)
        assert raise_alert(s, call, alert, NOW)
    await sign_in(d, "sup", base, "sam")
    row = tid("wall-alert", '[data-call-id="call-east-9"]')
    await d("wait", "sup", sel=row + " " + tid("btn-barge"))
    text = await d("text", "sup", sel=row)
    assert "live_finding" in text and "zh.threat.family" in text and "agent 6001 on call call-east-9" in text
    assert "起诉你家人" in text
    await d("click", "sup", sel=row + " " + tid("btn-barge"))
    assert await d("eval", "sup", js=f"return document.querySelector('{row} {tid('btn-barge')}').dataset.callId") \
        == "call-east-9"
    # The supervisor's barge action, refused here: this console has no link to Asterisk.
    await d("waitFor", "sup", js="const m = document.querySelector('[data-testid=wall-listen-message]'); "
                                 "return m && !m.hidden && m.dataset.mode === 'barge' && m.dataset.ok === 'false'")
    hang_up(factory, "call-east-9", ids["agent_alice"], NOW + dt.timedelta(seconds=60))
    served["clock"].at = NOW + dt.timedelta(seconds=61)
    await d("waitFor", "sup", js=f"const r = document.querySelector('{row}'); "
                                 "return r && !r.querySelector('[data-testid=btn-barge]') && r.textContent.includes('call ended')")
