"""Action builders: exact headers, validation, and the wire text panoramisk makes of them."""

from __future__ import annotations

import pytest
from panoramisk.actions import Action

from ami_bridge import OriginateRequest, actions


def request(**overrides) -> OriginateRequest:
    fields = dict(call_id="case42-attempt3", channel="Local/20005@dunning-sim/n", context="dunning-agents",
                  exten="s", timeout_s=25.5, caller_id='"Bank" <4000>',
                  variables={"CASE_ID": "42", "__ATTEMPT": "3"})
    fields.update(overrides)
    return OriginateRequest(**fields)


def test_originate_headers():
    action = actions.originate(request())
    assert action == {
        "Action": "Originate", "ActionID": "originate-case42-attempt3",
        "Channel": "Local/20005@dunning-sim/n", "ChannelId": "case42-attempt3",
        "OtherChannelId": "case42-attempt3-2", "Timeout": "25500", "Async": "true",
        "Context": "dunning-agents", "Exten": "s", "Priority": "1", "CallerID": '"Bank" <4000>',
        "Variable": ["CASE_ID=42", "__ATTEMPT=3"],
    }


async def test_originate_wire_text_repeats_variable_headers():
    # In a running loop, as the connection builds it (panoramisk's Action makes a future of
    # the current loop: outside one it depends on what ran before).
    wire = str(Action(actions.originate(request()), as_list=False))
    lines = wire.split("\r\n")
    assert "Variable: CASE_ID=42" in lines and "Variable: __ATTEMPT=3" in lines
    assert "Async: true" in lines and "ActionID: originate-case42-attempt3" in lines
    assert wire.endswith("\r\n\r\n")


def test_originate_to_application():
    action = actions.originate(request(context=None, exten=None, application="Playback", data="tt-monkeys"))
    assert action["Application"] == "Playback" and action["Data"] == "tt-monkeys"
    assert "Context" not in action and "Exten" not in action


@pytest.mark.parametrize("overrides, message", [
    ({"call_id": ""}, "must not be empty"),
    ({"call_id": "has space"}, "1-63 characters"),
    ({"call_id": "semi;colon"}, "1-63 characters"),
    ({"call_id": "x" * 64}, "1-63 characters"),
    ({"channel": "nochannel"}, "Tech/resource"),
    ({"channel": "Local/1@x\r\nAction: Hangup"}, "line break"),
    ({"caller_id": "Bank\r\nAction: Originate"}, "line break"),
    ({"exten": "s\nEvil: 1"}, "line break"),
    ({"variables": {"CASE_ID": "42\r\nAction: Logoff"}}, "line break"),
    ({"variables": {"CASE_ID": "1,2"}}, "comma"),
    ({"variables": {"BAD NAME": "1"}}, "not a valid channel variable"),
    ({"application": "Playback"}, "either context"),
    ({"context": None, "exten": None}, "either context"),
    ({"exten": None}, "both be given"),
    ({"timeout_s": 0}, "positive"),
    ({"priority": 0}, "priority"),
])
def test_originate_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        request(**overrides)


def test_request_variables_cannot_be_mutated_afterwards():
    variables = {"CASE_ID": "42"}
    req = request(variables=variables)
    variables["CASE_ID"] = "43\r\nAction: Logoff"
    assert actions.originate(req)["Variable"] == ["CASE_ID=42"]
    with pytest.raises(TypeError):
        req.variables["X"] = "1"  # type: ignore[index]


def test_simple_builders():
    assert actions.ping() == {"Action": "Ping"}
    assert actions.core_show_channels() == {"Action": "CoreShowChannels"}
    assert actions.list_commands() == {"Action": "ListCommands"}
    assert actions.core_settings() == {"Action": "CoreSettings"}
    assert actions.show_dialplan("dunning-sim") == {"Action": "ShowDialplan", "Context": "dunning-sim"}
    assert actions.hangup("PJSIP/6001-00000001") == {"Action": "Hangup", "Channel": "PJSIP/6001-00000001",
                                                     "Cause": "16"}
    assert actions.login("dunning", "pw") == {"Action": "Login", "Username": "dunning", "Secret": "pw",
                                              "Events": "system,call,user"}


@pytest.mark.parametrize("call", [
    lambda: actions.hangup("/.*/"),  # a regex would hang up every call
    lambda: actions.hangup(""),
    lambda: actions.hangup("PJSIP/1", cause=0),
    lambda: actions.hangup("PJSIP/1\r\nAction: Logoff"),
    lambda: actions.login("", "pw"),
    lambda: actions.login("u", "pw\r\nAction: Originate"),
    lambda: actions.show_dialplan(""),
])
def test_builders_refuse_bad_input(call):
    with pytest.raises(ValueError):
        call()


def test_redacted_masks_secret_only():
    assert actions.redacted({"Action": "Login", "secret": "pw", "Username": "u"}) == {
        "Action": "Login", "secret": "********", "Username": "u"}


def test_setvar_names_one_channel_and_a_valid_variable():
    assert actions.setvar("Local/2101@dunning-outbound-00000001;1", "DUNNING_AGENT", "6001") == {
        "Action": "Setvar", "Channel": "Local/2101@dunning-outbound-00000001;1",
        "Variable": "DUNNING_AGENT", "Value": "6001"}
    with pytest.raises(ValueError):
        actions.setvar("/Local/.*/", "DUNNING_AGENT", "6001")
    with pytest.raises(ValueError):
        actions.setvar("PJSIP/6001-1", "BAD NAME", "x")
    with pytest.raises(ValueError, match="inject"):
        actions.setvar("PJSIP/6001-1", "DUNNING_AGENT", "6001\r\nAction: Originate")
