"""Live findings with real parts: a baresip agent says a forbidden phrase on a real call through
the sandbox; Asterisk streams the agent's words over AudioSocket to the live service (the
`dunning live` pieces, in this process), Vosk recognises them as they are spoken, and the alert
is on the supervisor's wallboard while the call is still up, with the call it is about.

The speech is Korean made with espeak-ng (the only real Vosk model these machines can get is
Korean; see tests/test_stt_sandbox.py). The model hears it poorly over an 8 kHz line, so the
forbidden phrase is calibrated on a first call: a fuzzy rule is written from what the live
recogniser heard on that call. The same speech on a second call must then raise the alert.
What this proves is the live path (phone line, AudioSocket spy, streaming recogniser, rules,
alert, wallboard), not the model. The figure printed is the words -> wallboard latency
(docs/qa.md); no test asserts a time.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from agent_console import accounts
from agent_console.settings import Settings
from agent_console.wallboard import FiguresCache, wallboard
from ami_bridge import AmiConnection
from asterisk_conf.softphone import Softphone
from campaigns import admin, queue
from campaigns.db import transaction
from campaigns.models import Attempt, CampaignCase, Case
from dialer.runner import run_campaign
from dialer.sandbox_session import ami_settings
from helpers import import_one_case, korean_agent
from recordings.findings import parse_ruleset
from recordings.live import LiveService, run_live
from recordings.qa_schema import FindingRow
from recordings.transcribe import load_model

pytestmark = pytest.mark.asterisk
RULES = Path(__file__).resolve().parent.parent / "recordings" / "rules" / "ko.yaml"
PHRASE = "돈을 안 갚으면 감옥에 갈 겁니다"  # "if you don't pay, you will go to prison"
RULE = "ko.test.live_prison_threat_as_heard"


def calibrated(heard: str):
    """The shipped Korean rules plus a critical fuzzy rule made from what was heard live."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules["version"] = "test-live-calibrated"
    rules["rules"].append({"id": RULE, "category": "threat", "severity": "critical", "leg": "agent",
                           "patterns": [{"fuzzy": heard, "threshold": 70}]})
    return parse_ruleset(rules, "ko-live-calibrated")


async def test_a_forbidden_phrase_said_on_a_call_is_on_the_wallboard_while_the_call_is_up(
        sandbox_site, creds, tmp_path):
    model_dir, clip, clock, stamp = korean_agent(f"{PHRASE}. {PHRASE}. {PHRASE}.", tmp_path)
    site, factory = sandbox_site
    ext = sorted(creds.agent_passwords)[0]

    def one_case(number: str) -> None:
        import_one_case(factory, tmp_path, "LIVE", f"L-{number}-{stamp}", number, clock.now())

    one_case("13800138000")  # both answer after 3 s; the debtor lingers, the agent speaks
    with transaction(factory) as s:
        admin.add_agent(s, ext, "agent", clock.now())
        admin.create_campaign(s, "live", "LIVE", clock.now(), timezone="Asia/Shanghai",
                              settings={"ring_seconds": 15, "wrap_up_seconds": 1})
        queue.change_campaign(s, "live", "start", clock.now())
        supervisor = accounts.create_account(s, "sup", "supervisor", "Tq7#live-wallboard-Zr9!x", clock.now()).id

    model = await asyncio.to_thread(load_model, model_dir)
    rules = {"now": calibrated("이 규칙은 아직 보정되지 않았습니다")}  # nothing said matches this yet
    service = LiveService(factory, model, "ko", rules=lambda: rules["now"], clock=clock.now)
    announced = asyncio.Event()
    stop = asyncio.Event()
    live = asyncio.create_task(run_live(service, AmiConnection(ami_settings(site)), "127.0.0.1", 0, stop,
                                        echo=lambda line: announced.set()))
    phone = Softphone(ext, creds.agent_passwords[ext], clip, tmp_path / ext, sip_server=f"127.0.0.1:{site.sip_port}")
    phone.start()
    seen: dict = {}

    async def watch_wallboard() -> None:
        """The wallboard's data, read as often as a page could (every 0.1 s), until the alert."""
        cache = FiguresCache(60.0)
        while True:
            with factory() as s:
                data = wallboard(s, supervisor, clock.now(), Settings(), cache)
            alerts = [a for c in data["campaigns"] for a in c["alerts"]
                      if a["kind"] == "live_finding" and RULE in a["message"]]
            if alerts:
                seen.update(at=clock.now(), alert=alerts[0], calls=[c["call_id"] for c in data["calls"]])
                return
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(announced.wait(), 30)
        first = await asyncio.wait_for(run_campaign(site, factory, "live", [ext], until_idle=True, clock=clock), 240)
        assert not first.problems and first.recordings == 1
        assert len(service.streams) == 1, "the first call's agent leg never reached the live service"
        stream = next(iter(service.streams.values()))
        assert stream.ended
        said = max(stream.live.final, key=lambda u: len(u.text), default=None)
        assert said is not None and said.text, f"nothing heard live on the first call: {stream.live.text()!r}"
        rules["now"] = calibrated(said.text)

        one_case("13900139000")
        with transaction(factory) as s:
            campaign = queue.campaign_named(s, "live")
            case = s.scalar(select(Case).where(Case.reference == f"L-13900139000-{stamp}"))
            if s.get(CampaignCase, (campaign.id, case.id)) is None:
                s.add(CampaignCase(campaign_id=campaign.id, case_id=case.id))
        watcher = asyncio.create_task(watch_wallboard())
        second = await asyncio.wait_for(run_campaign(site, factory, "live", [ext], until_idle=True, clock=clock), 240)
        assert watcher.done(), f"no alert on the wallboard; heard live: {service.streams}"
        await watcher
    finally:
        phone.stop()
        stop.set()
        await asyncio.wait_for(live, 30)
    assert not second.problems and second.recordings == 1

    with factory() as s:
        attempt = s.scalar(select(Attempt).where(Attempt.number == "13900139000"))
        assert s.scalar(select(func.count()).select_from(FindingRow)) == 0, "live alerts are not findings"
    stream = service.streams[attempt.call_id]
    [(alert, latency)] = [(a, t) for a, t in stream.alerts if a.finding.rule_id == RULE]
    assert alert.finding.rule_id == RULE and alert.finding.leg == "agent"
    shown = seen["alert"]
    assert shown["call_id"] == attempt.call_id and attempt.call_id in shown["message"] and ext in shown["message"]
    assert attempt.call_id in seen["calls"], "the alert came while the call was up (barge-in possible)"
    assert seen["at"] < attempt.ended_at
    on_wallboard = (seen["at"] - latency.words_at).total_seconds()
    print(f"\nlive finding: words -> alert stored {latency.seconds:.2f} s, -> in the wallboard's data "
          f"{on_wallboard:.2f} s (+ up to 2 s for the page's poll); heard: {alert.finding.matched_text!r}")
