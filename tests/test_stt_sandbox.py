"""From a phone call to a finding, with real parts: a baresip agent says a forbidden phrase
(Korean speech made with espeak-ng, the language of the only real Vosk model these machines
can get) on a real call through the sandbox; the engine stores the recording, transcribes
each leg in the background with Vosk, runs the QA rules, and `dunning qa search` finds the call.

The Korean model hears espeak-ng's Korean over an 8 kHz line poorly (and differently from the
clip played offline), so the forbidden-phrase rule is calibrated on a first call: a fuzzy rule
is written from what the model heard on that call's agent leg. A second call with the same
speech must then give a finding on the agent's leg, within the call's time, with the must-say
rule (no recording notice) firing too, and be found by `dunning qa search`. What this proves is
the path (phone line, recording, vault, queue, worker, rules, search), not the model.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

import cli
from asterisk_conf.softphone import Softphone
from campaigns import admin, queue
from campaigns.db import transaction
from campaigns.models import Attempt, Recording
from dialer.runner import run_campaign
from recordings.qa_schema import FindingRow
from recordings.transcripts import StoredTranscript
from helpers import import_one_case, korean_agent

pytestmark = pytest.mark.asterisk
RULES = Path(__file__).resolve().parent.parent / "recordings" / "rules" / "ko.yaml"
PHRASE = "돈을 안 갚으면 감옥에 갈 겁니다"  # "if you don't pay, you will go to prison"


def calibrated_rules(heard: str, target: Path) -> Path:
    """The shipped Korean rules plus a fuzzy rule made from what the model heard."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules["version"] = "test-calibrated"
    rules["rules"].append({"id": "ko.test.prison_threat_as_heard", "category": "threat", "severity": "critical",
                           "leg": "agent", "patterns": [{"fuzzy": heard, "threshold": 70}]})
    target.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    return target


async def test_a_forbidden_phrase_on_a_real_call_becomes_a_finding_and_is_searchable(
        sandbox_site, creds, tmp_path, monkeypatch):
    model_dir, clip, clock, stamp = korean_agent(f"{PHRASE}. {PHRASE}.", tmp_path)
    site, factory = sandbox_site

    def one_case(number: str) -> None:
        import_one_case(factory, tmp_path, "STT", f"K-{number}-{stamp}", number, clock.now())

    one_case("13800138000")  # the calibration call: both answer after 3 s
    ext = sorted(creds.agent_passwords)[0]
    with transaction(factory) as s:
        admin.add_agent(s, ext, "agent", clock.now())
        admin.create_campaign(s, "stt", "STT", clock.now(), timezone="Asia/Shanghai",
                              settings={"ring_seconds": 15, "wrap_up_seconds": 1})
        queue.change_campaign(s, "stt", "start", clock.now())
    phone = Softphone(ext, creds.agent_passwords[ext], clip, tmp_path / ext, sip_server=f"127.0.0.1:{site.sip_port}")
    phone.start()
    try:
        first = await asyncio.wait_for(
            run_campaign(site, factory, "stt", [ext], until_idle=True, clock=clock, stt_model=model_dir), 240)
        assert not first.problems and first.recordings == 1
        with factory() as s:
            heard = s.scalar(select(StoredTranscript)).transcript().text("agent").replace("\n", " ")
        assert heard, "the model heard nothing on the agent's leg of the calibration call"
        monkeypatch.setenv("DUNNING_QA_RULES", str(calibrated_rules(heard, tmp_path / "ko-calibrated.yaml")))
        with transaction(factory) as s:
            campaign = queue.campaign_named(s, "stt")
            from campaigns.models import CampaignCase, Case
        one_case("13900139000")
        with transaction(factory) as s:
            case = s.scalar(select(Case).where(Case.reference == f"K-13900139000-{stamp}"))
            if s.get(CampaignCase, (campaign.id, case.id)) is None:
                s.add(CampaignCase(campaign_id=campaign.id, case_id=case.id))
        summary = await asyncio.wait_for(
            run_campaign(site, factory, "stt", [ext], until_idle=True, clock=clock, stt_model=model_dir), 240)
    finally:
        phone.stop()
    assert not summary.problems and summary.recordings == 1
    heard_offline = heard

    with factory() as s:
        attempt = s.scalar(select(Attempt).where(Attempt.bridged_at.is_not(None), Attempt.number == "13900139000"))
        recording = s.scalar(select(Recording).where(Recording.attempt_id == attempt.id))
        stored = s.scalar(select(StoredTranscript).where(StoredTranscript.recording_id == recording.id))
        assert stored is not None, "the call was transcribed in the background before the run ended"
        transcript = stored.transcript()
        findings = list(s.scalars(select(FindingRow).where(FindingRow.recording_id == recording.id)))
    agent_words = [w for u in transcript.leg("agent") for w in u.words]
    assert agent_words, f"nothing recognised on the agent's leg (offline the model heard {heard_offline!r})"
    by_rule = {f.rule_id: f for f in findings}
    assert "ko.must.recording_notice" in by_rule and by_rule["ko.must.recording_notice"].leg == "agent"
    threat = by_rule.get("ko.test.prison_threat_as_heard")
    assert threat is not None, (f"no finding for the phrase: the call's agent leg says {transcript.text('agent')!r}, "
                                f"offline {heard_offline!r}")
    assert threat.leg == "agent" and threat.status in ("review", "confirmed")
    talk = (attempt.ended_at - attempt.bridged_at).total_seconds()
    assert 0 <= float(threat.offset_s) <= talk + 2

    hangul = [w.text for w in agent_words if len(w.text) >= 2 and all("\uac00" <= ch <= "\ud7a3" for ch in w.text)]
    assert hangul, f"no Korean word recognised on the agent's leg: {transcript.text('agent')!r}"
    word = max(hangul, key=len)
    result = CliRunner().invoke(cli.main, ["qa", "search", word, "--leg", "agent"],
                                env={"DUNNING_DATABASE_URL": site.database, "DUNNING_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert f"recording {recording.id} (call {attempt.call_id}" in result.output and f"[{word}]" in result.output
