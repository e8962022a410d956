"""The agent's line, the parts that need no Asterisk: the log-in call's Originate, the
dialplan's way back to the waiting line, the settings' checks, the manual-answer softphone.
The line on the real sandbox is in test_agent_line_sandbox.py."""
from __future__ import annotations

import re

import pytest

from ami_bridge import actions
from ami_bridge.lines import LINE_CONTEXT, line_request
from asterisk_conf.generate import LINE_WAIT_PRIORITY, ConfigSpec, extensions_contexts
from asterisk_conf.softphone import Softphone
from dialer.engine import EngineSettings
from dialer.outbound import dial_request

SPEC = ConfigSpec(ami_username="dunning", ami_secret="s" * 20)


def context(name: str) -> list[str]:
    text = extensions_contexts(SPEC)
    body = text.split(f"[{name}]\n", 1)[1].split("\n[", 1)[0]
    return [line for line in body.splitlines() if line.startswith(("exten", " same"))]


def test_the_log_in_call_rings_the_agents_endpoint_into_the_waiting_line():
    action = actions.originate(line_request("6001", "line-x-6001-1", 30))
    assert action["Channel"] == "PJSIP/6001" and action["Context"] == LINE_CONTEXT == "dunning-agent-line"
    assert action["ChannelId"] == "line-x-6001-1" and action["Timeout"] == "30000"
    assert "DUNNING_LINE_AGENT=6001" in action["Variable"]


def test_a_debtor_leaving_sends_the_agent_back_to_the_waiting_priority():
    """Bridge()'s F(...) names a priority of dunning-agent-line by number: it must be the
    BridgeWait, or the agent would fall out of the line after the first call."""
    line = context("dunning-agent-line")
    assert "BridgeWait(" in line[LINE_WAIT_PRIORITY - 1]
    answered = "\n".join(context("dunning-answered"))
    bridge = re.search(r"Bridge\(\$\{DUNNING_LINE\},(.*)\)$", answered, re.M)
    assert bridge and f"F(dunning-agent-line^s^{LINE_WAIT_PRIORITY})" in bridge.group(1)
    assert "?p)" in bridge.group(1), "the whisper tone is Bridge()'s courtesy tone to the agent"


def test_auto_answer_asks_the_phone_with_both_headers_before_it_rings():
    answered = "\n".join(context("dunning-answered"))
    assert "b(dunning-auto-answer^s^1)" in answered
    handler = "\n".join(context("dunning-auto-answer"))
    assert "Call-Info)=<sip:dunning>\\;answer-after=0" in handler
    assert "Alert-Info)=" in handler and "info=alert-autoanswer" in handler


def test_the_line_reaches_the_dialplan_with_the_call():
    request = dial_request("a1-6001-1", "13800138000", "6001", 25,
                           extra={"DUNNING_LINE": "line-x-6001-1", "DUNNING_WHISPER": "tone"})
    assert dict(request.variables) == {"DUNNING_ATTEMPT": "a1-6001-1", "DUNNING_AGENT": "6001",
                                       "DUNNING_LINE": "line-x-6001-1", "DUNNING_WHISPER": "tone"}


@pytest.mark.parametrize("field, value", [("agent_line", "always_on"), ("whisper", "name")])
def test_unknown_line_settings_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=rf"{field} '{value}': one of"):
        EngineSettings(**{field: value})


def test_a_manual_answer_softphone_rings_and_takes_keys(tmp_path):
    phone = Softphone("6001", "pw-6001-long-enough", tmp_path / "says.wav", tmp_path / "p", answer_mode="manual")
    files = phone.render_config()
    assert ";answermode=manual;" in files["accounts"]
    assert "module stdio.so" in files["config"]
    auto = Softphone("6001", "pw-6001-long-enough", tmp_path / "says.wav", tmp_path / "p").render_config()
    assert ";answermode=auto;" in auto["accounts"] and "stdio" not in auto["config"]


async def test_after_a_login_lines_are_compared_with_asterisks_lost_kept_or_taken_over(peer):
    """Over the faithful AMI peer: two lines answered, then (as after a restart with the link
    down, its Hangup events never seen) Asterisk lists only one of them: the other is down
    and marked lost (not the agent's doing), the listed one stays up. Lines an earlier engine
    left up are taken over for this engine's agents (answered) or hung up (still ringing)."""
    from ami_peer import core_show_channel, eventually, settings_kwargs

    from ami_bridge import AmiConnection, AmiSettings
    from ami_bridge.lines import Lines, LineState
    conn = AmiConnection(AmiSettings(**settings_kwargs(peer)))
    lines = Lines(conn)
    await conn.start(timeout=3)
    try:
        def answer(p, h):
            p.emit([("Event", "Newstate"), ("Privilege", "call,all"), ("Channel", f"PJSIP/{h['channelid'][-6:]}"),
                    ("ChannelState", "6"), ("ChannelStateDesc", "Up"), ("Uniqueid", h["channelid"]),
                    ("Linkedid", h["channelid"])])
        peer.on_originate = answer
        kept, gone = await lines.call("6001"), await lines.call("6002")
        await eventually(lambda: kept.state is LineState.UP and gone.state is LineState.UP, what="both lines up")
        # Left by an engine before this one: 6003's line answered, 6004's still ringing, and
        # 6005's, whose agent this engine does not have.
        left = {uid: core_show_channel(f"PJSIP/{ext}-0000000{ext[-1]}", uid, uid, state)
                for uid, ext, state in (("line-261207120000ab12-6003-1", "6003", 6),
                                        ("line-261207120000ab12-6004-2", "6004", 5),
                                        ("line-261207120000ab12-6005-3", "6005", 6))}
        peer.channels = {kept.line_id: core_show_channel(kept.channel, kept.line_id, kept.line_id), **left}
        lost, adopted = await lines.audit(["6001", "6002", "6003", "6004"])
        assert lost == 1
        assert (gone.state, gone.lost) == (LineState.DOWN, True)
        assert (kept.state, kept.lost) == (LineState.UP, False)
        assert lines.up("6001") is kept and lines.up("6002") is None
        assert [(line.extension, line.line_id) for line in adopted] == [("6003", "line-261207120000ab12-6003-1")]
        assert lines.up("6003") is adopted[0] and lines.up("6004") is None and lines.up("6005") is None
        await eventually(lambda: peer.received["Hangup"] == 1, what="the ringing line left behind hung up")
    finally:
        lines.close()
        await conn.close()
