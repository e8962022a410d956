"""Live findings without Asterisk: the AudioSocket framing, the dialplan's stream id against the
service's, which rules run live, findings over partial results (one alert a call and rule),
when the words were said, the alert rows and the wallboard's view of them (SQLite and
PostgreSQL). The whole path on a real call is tests/test_live_sandbox.py."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid

import pytest
from sqlalchemy import select

from agent_console.wallboard import open_alerts
from asterisk_conf.generate import ConfigSpec, extensions_contexts
from campaigns.db import sessions, transaction
from campaigns.models import Alert, Attempt, AttemptState, Phone
from helpers import NOW, seed
from recordings import audiosocket
from recordings.findings import parse_ruleset, shipped_rulesets
from recordings.live import ALERT_KIND, CallInfo, find_call, raise_alert
from recordings.live_findings import (
    LATENCY_BUDGET_S,
    Latency,
    LiveCall,
    StreamClock,
    alert_message,
    live_rules,
)

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.timezone.utc)


# ── AudioSocket ──────────────────────────────────────────────────────────────────────────

def test_frames_are_read_whatever_pieces_the_stream_arrives_in():
    call = str(uuid.uuid4())
    audio = bytes(range(256)) + bytes(64)
    wire = audiosocket.uuid_frame(call) + audiosocket.frame(audiosocket.AUDIO, audio) \
        + audiosocket.frame(audiosocket.HANGUP)
    for size in (1, 2, 3, 7, 320, len(wire)):
        reader = audiosocket.Reader()
        frames = [f for at in range(0, len(wire), size) for f in reader.feed(wire[at:at + size])]
        assert [f.name for f in frames] == ["uuid", "audio", "hangup"]
        assert frames[0].call_uuid() == call and frames[1].payload == audio and frames[2].payload == b""
        assert reader.offset == len(wire)


def test_bad_frames_are_refused_saying_what_and_where():
    reader = audiosocket.Reader()
    reader.feed(audiosocket.frame(audiosocket.AUDIO, bytes(320)))
    with pytest.raises(audiosocket.ProtocolError, match="byte 323: a UUID frame of 4 bytes"):
        reader.feed(audiosocket.frame(audiosocket.UUID, b"abcd"))
    with pytest.raises(audiosocket.ProtocolError, match="not a UUID frame"):
        audiosocket.Frame(audiosocket.AUDIO, bytes(16)).call_uuid()
    with pytest.raises(ValueError, match="at most 65535"):
        audiosocket.frame(audiosocket.AUDIO, bytes(70000))


def test_the_dialplan_names_each_stream_as_the_service_expects():
    """The dialplan builds the stream's UUID from MD5(call id) with substrings; the service
    computes it in Python: the two must agree, or no stream finds its call."""
    text = extensions_contexts(ConfigSpec(ami_username="dunning", ami_secret="s3cret-s3cret-s3cret"))
    line = next(x for x in text.splitlines() if "Originate(AudioSocket/" in x)
    assert "${DUNNING_LIVE}" in line and ",exten,dunning-live,spy,1," in line
    assert "DUNNING_SPIED=${UNIQUEID}-2" in line  # the half that dials the debtor: its read is the agent
    assert re.search(r"ChanSpy\(\$\{DUNNING_SPIED\},qouE\)", text)
    assert re.search(r'\(connect\),GotoIf\(\$\["\$\{DUNNING_LIVE\}" = ""\]\?reach\)', text)
    spec = line.split("AudioSocket/${DUNNING_LIVE}/", 1)[1].split(",", 1)[0]
    for call_id in ("a261207120938e8e1-6001-1", "p-7", "x"):
        digest = hashlib.md5(call_id.encode()).hexdigest()
        built = re.sub(r"\$\{LIVE_ID:(\d+):(\d+)\}", lambda m: digest[int(m[1]):int(m[1]) + int(m[2])], spec)
        assert built == audiosocket.call_uuid(call_id)


# ── Rules over what is being said ─────────────────────────────────────────────────────────

def test_live_rules_are_the_agents_phrase_rules_that_need_no_earlier_words():
    for language, ruleset in shipped_rulesets().items():
        live = live_rules(ruleset)
        assert live.rules, f"no live rule in the shipped {language} rules"
        for rule in live.rules:
            assert (rule.kind, rule.severity, rule.after, rule.trigger) == ("phrase", "critical", None, None)
            assert rule.leg in ("agent", "any")
        left_out = {r.id for r in ruleset.rules} - {r.id for r in live.rules}
        assert any(ruleset.rule(r).after is not None and ruleset.rule(r).severity == "critical" for r in left_out) \
            or language != "zh"
    assert {r.severity for r in live_rules(shipped_rulesets()["en"], ("high", "critical")).rules} == {"high", "critical"}


def words(*spoken: tuple[str, float, float], conf: float = 0.95) -> list[dict]:
    return [{"word": w, "start": a, "end": b, "conf": conf} for w, a, b in spoken]


def test_a_phrase_is_found_in_a_partial_result_and_alerted_once_a_call_and_rule():
    call = LiveCall("call-1", live_rules(shipped_rulesets()["en"]))
    assert call.heard({"partial": "", "partial_result": []}, False) == []
    assert call.heard({"partial_result": words(("you", 1.0, 1.2), ("will", 1.2, 1.4))}, False) == []
    found = call.heard({"partial_result": words(("you", 1.0, 1.2), ("will", 1.2, 1.4), ("go", 1.4, 1.6),
                                                ("to", 1.6, 1.7), ("jail", 1.7, 2.1))}, False)
    [alert] = found
    assert (alert.finding.rule_id, alert.call_id, alert.final) == ("en.threat.arrest", "call-1", False)
    assert alert.words_end_s == 2.1 and alert.key == "live:call-1:en.threat.arrest"
    # the same utterance made final, and said again later: no second alert
    assert call.heard({"result": words(("you", 1.0, 1.2), ("will", 1.2, 1.4), ("go", 1.4, 1.6), ("to", 1.6, 1.7),
                                       ("jail", 1.7, 2.1))}, True) == []
    assert call.heard({"result": words(("jail", 9.0, 9.4))}, True) == []
    assert call.text() == "you will go to jail\njail"
    # another critical rule still alerts
    [other] = call.heard({"partial_result": words(("i", 12.0, 12.1), ("am", 12.1, 12.2), ("a", 12.2, 12.3),
                                                  ("police", 12.3, 12.8), ("officer", 12.8, 13.3))}, False)
    assert other.finding.rule_id == "en.impersonation.authority" and other.words_end_s == 13.3  # the regex reaches "officer"


def test_exclusions_hold_live_and_the_message_names_the_call_and_agent():
    call = LiveCall("call-2", live_rules(shipped_rulesets()["en"]))
    assert call.heard({"result": words(*[(w, i * 0.3, i * 0.3 + 0.3) for i, w in
                                          enumerate("you will not be arrested".split())])}, True) == []
    zh = LiveCall("call-3", live_rules(shipped_rulesets()["zh"]))
    [alert] = zh.heard({"text": "你不还钱我们就起诉你家人"}, True)
    assert alert.finding.rule_id == "zh.threat.family"
    message = alert_message(alert, "6001")
    assert message.startswith("critical threat (zh.threat.family) by agent 6001 on call call-3 at 0:00")
    assert "起诉你家人" in message


def test_a_calibrated_fuzzy_rule_alerts_on_what_a_small_model_heard():
    rules = parse_ruleset({"version": "t", "language": "ko", "rules": [
        {"id": "ko.t", "category": "threat", "severity": "critical", "leg": "agent",
         "patterns": [{"fuzzy": "르노 와 렙 영화 라며 나오 리나", "threshold": 70}]}]}, "t")
    call = LiveCall("k", live_rules(rules))
    assert call.heard({"partial_result": words(("르노", 0.5, 0.9), ("와", 0.9, 1.0))}, False) == []
    [alert] = call.heard({"partial_result": words(("르노", 0.5, 0.9), ("와", 0.9, 1.0), ("랩", 1.0, 1.3),
                                                  ("영화", 1.3, 1.7), ("라며", 1.7, 2.0), ("나오", 2.0, 2.4),
                                                  ("리나", 2.4, 2.9))}, False)
    assert alert.finding.match_type == "fuzzy" and alert.words_end_s == 2.9  # heard 랩 for 렙 this time
    assert alert.finding.status == "review"


# ── When the words were said ─────────────────────────────────────────────────────────────

def test_the_stream_clock_says_when_audio_had_arrived():
    clock = StreamClock()
    assert clock.arrived(1.0) is None
    for i in range(1, 9):  # a quarter of a second every 0.25 s, the last one late
        clock.add(i * 0.25, T0 + dt.timedelta(seconds=i * 0.25 + (0.5 if i == 8 else 0)))
    assert clock.seconds == 2.0
    assert clock.arrived(0.1) == T0 + dt.timedelta(seconds=0.25)
    assert clock.arrived(0.75) == T0 + dt.timedelta(seconds=0.75)
    assert clock.arrived(1.9) == T0 + dt.timedelta(seconds=2.5)
    assert clock.arrived(9.0) == T0 + dt.timedelta(seconds=2.5)
    with pytest.raises(ValueError, match="stream time went back: 1.0 s after 2.0 s"):
        clock.add(1.0, T0)


def test_an_alert_is_within_the_budget_when_it_reaches_a_polling_wallboard_in_time():
    latency = Latency(T0, T0 + dt.timedelta(seconds=1.2))
    assert latency.seconds == 1.2
    assert latency.within() and latency.within(poll_s=2.0)
    assert not latency.within(poll_s=LATENCY_BUDGET_S)
    assert not Latency(T0, T0 + dt.timedelta(seconds=5.1)).within()


# ── Alerts in the database, on the wallboard ──────────────────────────────────────────────

def add_attempt(factory, campaign_id: int, case_id: int, agent_id: int, call_id: str, ended: bool) -> int:
    with transaction(factory) as s:
        phone = s.scalars(select(Phone).where(Phone.case_id == case_id)).first()
        attempt = Attempt(call_id=call_id, campaign_id=campaign_id, case_id=case_id, phone_id=phone.id,
                          agent_id=agent_id, number=phone.dial, planned_at=NOW, dialed_at=NOW, answered_at=NOW,
                          bridged_at=NOW, state=AttemptState.ENDED.value if ended else AttemptState.DIALING.value,
                          ended_at=NOW if ended else None)
        s.add(attempt)
        s.flush()
        return attempt.id


def test_a_stream_finds_its_call_and_an_alert_is_raised_once_for_the_wallboard(database, tmp_path):
    factory = sessions(database)
    ids = seed(factory, tmp_path)
    live_id = add_attempt(factory, ids["east"], ids["C-EAST"], ids["agent_alice"], "a-live-6001-1", False)
    add_attempt(factory, ids["east"], ids["C-EAST"], ids["agent_alice"], "a-done-6001-2", True)
    with transaction(factory) as s:
        found = find_call(s, audiosocket.call_uuid("a-live-6001-1"), NOW)
        assert found == CallInfo("a-live-6001-1", live_id, ids["east"], ids["agent_alice"], "6001")
        assert find_call(s, audiosocket.call_uuid("a-done-6001-2"), NOW) is None, "an ended call streams no more"
        assert find_call(s, audiosocket.call_uuid("no-such-call"), NOW) is None
    call = LiveCall(found.call_id, live_rules(shipped_rulesets()["en"]))
    [alert] = call.heard({"text": "we will arrest you today"}, True)
    for expected in (True, False):
        with transaction(factory) as s:
            assert raise_alert(s, found, alert, NOW) is expected
    with factory() as s:
        [row] = s.scalars(select(Alert)).all()
        assert (row.kind, row.key, row.agent_id, row.campaign_id) == (
            ALERT_KIND, "live:a-live-6001-1:en.threat.arrest", ids["agent_alice"], ids["east"])
        [shown] = open_alerts(s, {ids["east"]})[ids["east"]]
    assert shown["call_id"] == "a-live-6001-1" and "by agent 6001 on call a-live-6001-1" in shown["message"]


def test_dunning_live_refuses_an_address_that_is_not_host_and_port():
    from click.testing import CliRunner

    import cli
    for bad in ("9092", "localhost:", ":9092", "127.0.0.1:http", "127.0.0.1:70000"):
        result = CliRunner().invoke(cli.main, ["live", "--listen", bad])
        assert result.exit_code == 2 and f"{bad!r} is not HOST:PORT" in result.output, result.output
