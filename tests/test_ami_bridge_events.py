"""parse_event over header sets as Asterisk 22 sends them (captured wire text)."""

from __future__ import annotations

import dataclasses

import pytest
from ami_peer import ANSWERED_AND_BRIDGED, BUSY, parse_block, transcript_blocks
from panoramisk.message import Message

from ami_bridge import (
    AmiProtocolError,
    BridgeEnter,
    BridgeLeave,
    CoreShowChannel,
    DialBegin,
    DialEnd,
    FullyBooted,
    Hangup,
    MixMonitorStart,
    Newchannel,
    Newstate,
    OriginateResponse,
    Shutdown,
    parse_event,
)


def events_of(transcript: str) -> list:
    blocks = transcript_blocks(transcript, call_id="c1", action_id="originate-c1")
    return [parse_event(dict(parse_block(b)), received_at=float(i)) for i, b in enumerate(blocks)]


def test_answered_call_transcript_parses_into_typed_events():
    events = events_of(ANSWERED_AND_BRIDGED)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:4] == ["Newchannel", "Newchannel", "DialBegin", "Newstate"]
    assert kinds.count("BridgeEnter") == 2 and kinds.count("Hangup") == 3
    first = events[0]
    assert isinstance(first, Newchannel)
    assert (first.channel, first.uniqueid, first.linkedid) == ("Local/20005@dunning-sim-00000001;1", "c1", "c1")
    assert first.channel_state == 0 and first.received_at == 0.0
    dial = events[2]
    assert isinstance(dial, DialBegin)
    assert dial.channel == "" and dial.dest_uniqueid == "c1"  # Originate's own dial has no caller
    answer = next(e for e in events if isinstance(e, OriginateResponse))
    assert (answer.action_id, answer.reason, answer.uniqueid, answer.success) == ("originate-c1", 4, "c1", True)
    bridge = next(e for e in events if isinstance(e, BridgeEnter))
    assert bridge.bridge_uniqueid == "5d1c-bridge" and bridge.bridge_num_channels == 1
    hangup = next(e for e in events if isinstance(e, Hangup))
    assert (hangup.uniqueid, hangup.cause, hangup.cause_txt) == ("c1-2", 16, "Normal Clearing")
    assert any(isinstance(e, BridgeLeave) for e in events)
    assert any(isinstance(e, DialEnd) and e.dial_status == "ANSWER" for e in events)


def test_failed_originate_response_has_no_uniqueid():
    response = next(e for e in events_of(BUSY) if isinstance(e, OriginateResponse))
    assert response.uniqueid == "" and response.reason == 5 and not response.success


def test_header_case_does_not_matter():
    headers = {"EVENT": "newstate", "channel": "PJSIP/6001-00000001", "UNIQUEID": "u1", "LinkedID": "l1",
               "channelstate": "5", "ChannelStateDesc": "Ringing"}
    event = parse_event(headers, 3.0)
    assert isinstance(event, Newstate)
    assert (event.channel_state, event.uniqueid, event.linkedid) == (5, "u1", "l1")


def test_parses_a_panoramisk_message():
    line = ("Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/6001-00000001\r\nUniqueid: u1\r\n"
            "Linkedid: l1\r\nCause: 17\r\nCause-txt: User busy")
    event = parse_event(Message.from_line(line), 1.0)
    assert isinstance(event, Hangup) and event.cause == 17 and event.cause_txt == "User busy"


@pytest.mark.parametrize("headers, expected", [
    ({"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"}, FullyBooted),
    ({"Event": "Shutdown", "Shutdown": "Cleanly", "Restart": "True"}, Shutdown),
    ({"Event": "MixMonitorStart", "Channel": "PJSIP/6001-1", "Uniqueid": "u", "Linkedid": "l"}, MixMonitorStart),
    ({"Event": "CoreShowChannel", "ActionID": "a", "Channel": "PJSIP/6001-1", "Uniqueid": "u", "Linkedid": "l",
      "ChannelState": "6", "BridgeId": "b1"}, CoreShowChannel),
])
def test_other_modelled_events(headers, expected):
    assert type(parse_event(headers, 0.0)) is expected


def test_shutdown_restart_flag():
    event = parse_event({"Event": "Shutdown", "Shutdown": "Uncleanly", "Restart": "False"}, 0.0)
    assert isinstance(event, Shutdown) and event.restart is False and event.shutdown == "Uncleanly"


def test_unmodelled_events_and_responses_give_none():
    assert parse_event({"Event": "VarSet", "Variable": "X", "Value": "1"}, 0.0) is None
    assert parse_event({"Response": "Success", "Ping": "Pong"}, 0.0) is None


@pytest.mark.parametrize("headers", [
    {"Event": "Hangup", "Channel": "PJSIP/1", "Uniqueid": "u"},  # no Linkedid: could not be routed
    {"Event": "Newstate", "Channel": "PJSIP/1", "Uniqueid": "u", "Linkedid": "l", "ChannelState": "Up"},
    {"Event": "OriginateResponse", "ActionID": "a", "Reason": "4"},  # no Response
])
def test_malformed_modelled_events_raise(headers):
    with pytest.raises(AmiProtocolError):
        parse_event(headers, 0.0)


def test_events_are_frozen():
    event = parse_event({"Event": "Hangup", "Channel": "c", "Uniqueid": "u", "Linkedid": "l", "Cause": "16"}, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.cause = 17  # type: ignore[misc]
