"""The call's controls in the console, checked over HTTP with the real console and database
(SQLite and PostgreSQL): an agent marks the dialled number wrong or invalid and the policy no
longer dials it; the controls act only on the agent's own call; listening in is for
supervisors, on their teams' live calls only, and every action is in the audit log. What
reaches Asterisk is shown on the sandbox (tests/test_supervision_sandbox.py); here the console
has no link to Asterisk, which it says, after its checks passed."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from agent_console.call_control import consultation, record
from agent_console.schema import Account, AuditEntry
from ami_bridge import supervision
from ami_bridge.events import parse_event
from asterisk_conf.generate import Agent, ConfigSpec, extensions_contexts, pjsip_agents, sandbox_files
from campaigns import admin
from campaigns.db import sessions
from campaigns.models import Phone
from helpers import NOW, PASSWORDS, bridge, hang_up


def _audit(factory, event: str) -> list[AuditEntry]:
    with sessions(factory.kw["bind"])() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.event == event).order_by(AuditEntry.id)))


async def test_an_agent_marks_the_number_wrong_and_the_policy_no_longer_dials_it(console):
    ids, factory = console["ids"], console["factory"]
    alice, bob = console["browser"](), console["browser"]()
    await alice.login("alice", PASSWORDS["alice"])
    await bob.login("bob", PASSWORDS["bob"])
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    with sessions(factory.kw["bind"])() as s:
        before = "\n".join(admin.why(s, "C-EAST", NOW + dt.timedelta(days=1)))
    assert "may be dialled now (2026-11-26 10:00:00 CST, Asia/Shanghai) on own mobile 13800138000" in before
    # not bob's call; not a mark
    assert (await bob.post("/agent/call/number", {"call_id": "call-east-1", "mark": "wrong"})).status == 403
    assert (await alice.post("/agent/call/number", {"call_id": "call-east-1", "mark": "maybe"})).status == 400
    hang_up(factory, "call-east-1", ids["agent_alice"], NOW + dt.timedelta(seconds=40))  # in wrap-up: still hers
    response = await alice.post("/agent/call/number", {"call_id": "call-east-1", "mark": "wrong"})
    body = await response.json()
    assert response.status == 200 and body["mark"] == "wrong"
    with sessions(factory.kw["bind"])() as s:
        phone = s.get(Phone, body["phone_id"])
        assert (phone.valid, phone.dial) == (False, "13800138000")
        assert phone.do_not_call_reason.startswith("wrong number: agent alice")
        after = "\n".join(admin.why(s, "C-EAST", NOW + dt.timedelta(days=1)))
    assert "may be dialled now (2026-11-26 10:00:00 CST, Asia/Shanghai) on home 075588888888" in after
    assert "skipped, invalid_number: own mobile 13800138000 (phone 1) is marked invalid" in after
    [entry] = _audit(factory, "call_number_marked")
    assert (entry.username, entry.result, entry.subject) == ("alice", "ok", f"case {ids['C-EAST']}")
    assert entry.detail.startswith("call-east-1 wrong")


async def test_hang_up_and_transfer_act_only_on_the_agents_live_call(console):
    ids, factory = console["ids"], console["factory"]
    alice, bob = console["browser"](), console["browser"]()
    await alice.login("alice", PASSWORDS["alice"])
    await bob.login("bob", PASSWORDS["bob"])
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    assert (await bob.post("/agent/call/hangup", {"call_id": "call-east-1"})).status == 403
    assert (await alice.post("/agent/call/hangup", {"call_id": "no-such-call"})).status == 403
    # the checks pass; the console has no link to Asterisk and says so (audited as failed)
    response = await alice.post("/agent/call/hangup", {"call_id": "call-east-1"})
    assert response.status == 502 and "no link to Asterisk" in (await response.json())["message"]
    # the transfer goes to a supervisor of alice's team: sue (team-east), not sam (no team)
    response = await alice.post("/agent/call/transfer", {"call_id": "call-east-1", "supervisor": "sam"})
    assert response.status == 409
    response = await alice.post("/agent/call/transfer", {"call_id": "call-east-1"})
    assert response.status == 502
    [hangup] = _audit(factory, "call_hangup")
    [transfer] = _audit(factory, "call_transfer")
    assert (hangup.result, hangup.detail.split()[0]) == ("failed", "call-east-1")
    assert (transfer.result, transfer.detail.split()[:3]) == ("failed", ["call-east-1", "supervisor", "sue"])
    hang_up(factory, "call-east-1", ids["agent_alice"], NOW + dt.timedelta(seconds=40))
    assert (await alice.post("/agent/call/hangup", {"call_id": "call-east-1"})).status == 409  # already ended


async def test_listening_in_is_for_supervisors_on_their_teams_live_calls(console):
    ids, factory = console["ids"], console["factory"]
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    bridge(factory, ids["C-WEST"], ids["agent_bob"], "call-west-1", NOW)
    sue, root, alice = console["browser"](), console["browser"](), console["browser"]()
    for b, name in ((sue, "sue"), (root, "root"), (alice, "alice")):
        await b.login(name, PASSWORDS[name])
    # another team's call: "not found", audited, nothing sent (no link error: the check came first)
    refused = await sue.post("/wallboard/calls/call-west-1/whisper")
    assert refused.status == 404
    # an administrator and an agent may not listen in at all
    assert (await root.post("/wallboard/calls/call-east-1/listen")).status == 403
    assert (await alice.post("/wallboard/calls/call-east-1/listen")).status == 403
    assert (await sue.post("/wallboard/calls/call-east-1/eavesdrop")).status == 404
    # her own team's call passes the checks (and the console, without a link, says so)
    assert (await sue.post("/wallboard/calls/call-east-1/barge")).status == 502
    whisper = _audit(factory, "call_whisper")
    assert [(e.username, e.result, e.subject, e.detail) for e in whisper] == [
        ("sue", "refused", f"case {ids['C-WEST']}", "call-west-1")]
    [barge] = _audit(factory, "call_barge")
    assert (barge.result, barge.detail.split()[:5]) == ("failed", ["call-east-1", "agent", "6001", "supervisor", "sue"])
    # a call that has ended is no longer live
    hang_up(factory, "call-east-1", ids["agent_alice"], NOW + dt.timedelta(seconds=40))
    assert (await sue.post("/wallboard/calls/call-east-1/listen")).status == 404


def test_the_spy_originate_and_the_dialplan_agree_on_the_modes():
    request = supervision.spy_request("sue", "6001", "whisper", "spy-1")
    assert (request.channel, request.context, request.exten) == ("PJSIP/sue", "dunning-supervise", "whisper")
    assert dict(request.variables) == {"DUNNING_SPY_AGENT": "6001"}
    for bad in (("sue", "6001", "eavesdrop"), ("sue;x", "6001", "listen"), ("sue", "60,01", "listen")):
        try:
            supervision.spy_request(*bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
    spec = ConfigSpec(ami_username="dunning", ami_secret="s" * 16, agents=(Agent("6001", "p" * 12),),
                      supervisors=(Agent("sue", "q" * 12),))
    dialplan = extensions_contexts(spec)
    for mode, options in {"listen": "qES", "whisper": "qESw", "barge": "qESB"}.items():
        assert f"exten => {mode},1,ChanSpy(PJSIP/${{DUNNING_SPY_AGENT}}-,{options})" in dialplan
    assert "[sue]\ntype = endpoint\ncontext = dunning-agents" in pjsip_agents(spec)
    assert "callerid = Dunning supervisor <sue>" in pjsip_agents(spec)
    assert "load => app_chanspy.so" in sandbox_files(spec)["modules.conf"]
    assert supervision.hand_over_action("call-1", "sue") == {
        "Action": "Redirect", "Channel": "call-1", "Context": "dunning-transfer", "Exten": "sue", "Priority": "1"}


def test_the_attended_transfers_actions_and_the_dialplan_agree():
    """Consult: the debtor to dunning-hold,<consultation id>, then the supervisor's phone called
    with that id into dunning-consult, which bridges the agent's line; complete: the debtor to
    dunning-transferred,<id>; the agent's line is found among Asterisk's channels by its id."""
    request = supervision.consult_request("sue", "line-2612071200ab12-6001-3", "6001", "xfer-1")
    assert (request.call_id, request.channel, request.context, request.exten) == (
        "xfer-1", "PJSIP/sue", "dunning-consult", "s")
    assert dict(request.variables) == {"DUNNING_LINE": "line-2612071200ab12-6001-3"}
    assert supervision.hold_action("call-1", "xfer-1") == {
        "Action": "Redirect", "Channel": "call-1", "Context": "dunning-hold", "Exten": "xfer-1", "Priority": "1"}
    assert supervision.complete_action("call-1", "xfer-1")["Context"] == "dunning-transferred"
    for bad in (("sue", "call-1", "6001"), ("sue;x", "line-1-6001-1", "6001"), ("sue", "line-1-6001-1", "60,01")):
        try:
            supervision.consult_request(*bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
    listed = [parse_event({"Event": "CoreShowChannel", "Uniqueid": uid, "Linkedid": uid, "Channel": f"PJSIP/{ext}-1",
                           "ChannelState": state}, 0.0)
              for uid, ext, state in (("line-1-6002-1", "6002", "6"), ("line-1-6001-1", "6001", "5"),
                                      ("line-1-6001-2", "6001", "6"), ("call-1", "6001", "6"))]
    assert supervision.line_of(listed, "6001") == "line-1-6001-2"
    assert supervision.line_of(listed, "6003") is None
    spec = ConfigSpec(ami_username="dunning", ami_secret="s" * 16, agents=(Agent("6001", "p" * 12),))
    dialplan = extensions_contexts(spec)
    assert "Bridge(${DUNNING_LINE},F(dunning-agent-line^s^2))" in dialplan  # the line back to waiting after
    assert "[dunning-hold]\n" in dialplan and "StartMusicOnHold()" in dialplan
    assert "Goto(dunning-answered,s,line)" in dialplan  # the consultation gone: back to the agent
    assert " same => n,Bridge(${EXTEN})" in dialplan  # complete: the debtor with the supervisor
    assert "load => res_musiconhold.so" in sandbox_files(spec)["modules.conf"]
    assert "[default]\nmode = files\n" in sandbox_files(spec)["musiconhold.conf"]


async def test_an_attended_transfer_ends_only_after_it_began_and_only_by_the_agent(console):
    ids, factory = console["ids"], console["factory"]
    alice, bob = console["browser"](), console["browser"]()
    await alice.login("alice", PASSWORDS["alice"])
    await bob.login("bob", PASSWORDS["bob"])
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    assert (await bob.post("/agent/call/transfer/complete", {"call_id": "call-east-1"})).status == 403
    assert (await alice.post("/agent/call/transfer/sideways", {"call_id": "call-east-1"})).status == 404
    for how in ("complete", "cancel"):  # no consultation under way on this call
        response = await alice.post(f"/agent/call/transfer/{how}", {"call_id": "call-east-1"})
        assert response.status == 409 and "No transfer in progress" in (await response.json())["message"]
    with sessions(factory.kw["bind"])() as s, s.begin():
        account = s.scalar(select(Account).where(Account.username == "alice"))
        record(s, account.id, "call_transfer_consult", "ok",
               {"call_id": "call-east-1", "case_id": ids["C-EAST"], "supervisor": "sue", "channel_id": "xfer-9"}, NOW, None)
    with sessions(factory.kw["bind"])() as s:
        assert consultation(s, account.id, "call-east-1") == "xfer-9"
        assert consultation(s, account.id, "call-east-10") is None
    # the consultation found, the console (no link to Asterisk here) says so, audited as failed
    response = await alice.post("/agent/call/transfer/complete", {"call_id": "call-east-1"})
    assert response.status == 502
    [complete] = _audit(factory, "call_transfer_complete")
    assert (complete.result, complete.detail.split()[:3]) == ("failed", ["call-east-1", "channel", "xfer-9"])
