"""The call registry end to end over the fake peer, plus its pure rules."""

from __future__ import annotations

import asyncio

import pytest
from ami_peer import (
    BRIDGED_CALL_ENDS,
    BRIDGED_ONLY,
    ANSWERED_ONLY,
    ANSWERED_THEN_DEBTOR_HANGS_UP,
    BUSY,
    DEBTOR_HANGS_UP,
    L1,
    L2,
    AmiPeer,
    core_show_channel,
    eventually,
    hangup_event,
    settings_kwargs,
)

from ami_bridge import (
    AmiConnection,
    AmiNotConnected,
    AmiSettings,
    CallFacts,
    CallOutcome,
    Calls,
    CallState,
    ConnectionState,
    Newchannel,
    OriginateRequest,
    Side,
    classify,
    next_state,
)

S = CallState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def calls(peer, clock):
    conn = AmiConnection(AmiSettings(**settings_kwargs(peer)), clock=clock)
    registry = Calls(conn)
    await conn.start(timeout=3)
    yield registry
    registry.close()
    await conn.close()


def request(call_id: str = "c1") -> OriginateRequest:
    return OriginateRequest(call_id=call_id, channel="Local/20005@dunning-sim/n", context="dunning-agents",
                            exten="s", timeout_s=30, variables={"CASE_ID": "42"})


def replay_on_originate(peer: AmiPeer, transcript: str) -> None:
    peer.on_originate = lambda p, h: p.replay(transcript, call_id=h["channelid"], action_id=h["actionid"])


def states(call) -> list[CallState]:
    return [s for s, _ in call.history]


async def test_answered_and_bridged_call(calls, peer, clock):
    replay_on_originate(peer, BRIDGED_ONLY)
    call = await calls.originate(request())
    await eventually(lambda: call.state is S.BRIDGED, what="the bridge to the agent")
    clock.now += 95  # the conversation
    peer.replay(BRIDGED_CALL_ENDS, call_id="c1")
    assert await call.ended(3) is CallOutcome.ANSWERED
    assert states(call) == [S.DIALING, S.RINGING, S.ANSWERED, S.BRIDGED, S.ENDED]
    assert isinstance(call.events[0], Newchannel)
    assert call.answered_at is not None and call.bridged_at is not None
    assert call.first_hangup_side is Side.DEBTOR
    sent = next(a for a in peer.actions if a["action"] == "Originate")
    assert (sent["channelid"], sent["otherchannelid"], sent["async"]) == ("c1", "c1-2", "true")
    await asyncio.sleep(0.05)  # the agent leg's Hangup arrives after the call ended
    assert calls.active == {} and calls.routing_entries == 0
    assert calls._conn.counters.originates_sent == 1


async def test_debtor_hanging_up_right_after_answer(calls, peer):
    replay_on_originate(peer, ANSWERED_THEN_DEBTOR_HANGS_UP)
    call = await calls.originate(request())
    assert await call.ended(3) is CallOutcome.DEBTOR_HUNG_UP
    assert S.BRIDGED not in states(call)


async def test_debtor_hanging_up_after_the_drop_window_is_answered(calls, peer, clock):
    replay_on_originate(peer, ANSWERED_ONLY)
    call = await calls.originate(request())
    await eventually(lambda: call.state is S.ANSWERED, what="answer")
    clock.now += 2.5  # beyond drop_window_s=2.0
    peer.replay(DEBTOR_HANGS_UP, call_id="c1")
    assert await call.ended(3) is CallOutcome.ANSWERED
    assert call.ended_at - call.answered_at == pytest.approx(2.5)


async def test_busy(calls, peer):
    replay_on_originate(peer, BUSY)
    call = await calls.originate(request())
    assert await call.ended(3) is CallOutcome.BUSY
    assert call.reason == 5 and call.debtor_cause == 17
    assert S.ANSWERED not in states(call)
    assert calls.routing_entries == 0


async def test_originate_lost_before_acknowledgement_is_sent_once_and_ends_lost(calls, peer):
    peer.drop_on["Originate"] = 1  # peer reads the Originate, then the connection drops
    call = await calls.originate(request())
    assert call.state is S.UNKNOWN
    assert await call.ended(3) is CallOutcome.LOST
    await asyncio.sleep(0.2)  # time for any re-send after the FullyBooted of the new session
    assert peer.received["Originate"] == 1
    assert peer.received["CoreShowChannels"] == 1
    assert peer.received["Login"] == 2
    assert states(call) == [S.DIALING, S.UNKNOWN, S.ENDED]
    assert call.ended_unobserved and calls.routing_entries == 0


async def test_unacknowledged_originate_whose_channels_exist_stays_tracked(calls, peer):
    peer.channels = {"c1": core_show_channel(L1, "c1", "c1", state=6),
                     "c1-2": core_show_channel(L2, "c1-2", "c1", state=6)}
    peer.drop_on["Originate"] = 1
    call = await calls.originate(request())
    await eventually(lambda: peer.received["CoreShowChannels"] == 1, what="reconciliation")
    await eventually(lambda: call.state is S.ANSWERED, what="reconciled as answered")
    assert "c1" in calls.active
    peer.replay(DEBTOR_HANGS_UP, call_id="c1")
    assert await call.ended(3) in (CallOutcome.ANSWERED, CallOutcome.DEBTOR_HUNG_UP)
    assert not call.ended_unobserved
    assert peer.received["Originate"] == 1


async def test_reconnect_keeps_live_calls_and_ends_vanished_ones_unobserved(calls, peer):
    replay_on_originate(peer, ANSWERED_ONLY)
    call = await calls.originate(request())
    await eventually(lambda: call.state is S.ANSWERED, what="answer")
    peer.channels = {"c1": core_show_channel(L1, "c1", "c1"), "c1-2": core_show_channel(L2, "c1-2", "c1")}
    peer.drop_all()
    await eventually(lambda: peer.received["CoreShowChannels"] == 1, what="first reconciliation")
    await asyncio.sleep(0.05)
    assert call.state is S.ANSWERED and "c1" in calls.active
    peer.channels = {}  # the call ended while we were not connected
    peer.drop_all()
    assert await call.ended(3) is CallOutcome.ANSWERED
    assert call.ended_unobserved and not call.lost
    assert peer.received["Originate"] == 1


async def test_hangup_by_our_side(calls, peer):
    replay_on_originate(peer, ANSWERED_ONLY)
    call = await calls.originate(request())
    await eventually(lambda: call.state is S.ANSWERED, what="answer")
    peer.channels = {"c1": core_show_channel(L1, "c1", "c1")}
    assert await calls.hangup(call) is True
    assert peer.actions[-1]["channel"] == L1  # by the name Asterisk gave the channel
    peer.emit(hangup_event(L2, "c1-2", "c1"))
    assert await call.ended(3) is CallOutcome.ANSWERED
    assert call.first_hangup_side is Side.OURS
    assert await calls.hangup(call) is False  # Asterisk: No such channel


async def test_duplicate_and_unsendable_originates_are_refused(calls, peer):
    peer.on_originate = None
    await calls.originate(request("dup"))
    with pytest.raises(ValueError, match="already in flight"):
        await calls.originate(request("dup"))
    await calls._conn.close()
    with pytest.raises(AmiNotConnected):
        await calls.originate(request("never"))
    assert "never" not in calls.active
    assert peer.received["Originate"] == 1


@pytest.mark.parametrize("facts, outcome", [
    (CallFacts(reason=4, answered_at=10.0, bridged_at=10.3, first_hangup_side=Side.DEBTOR,
               first_hangup_at=14.0), CallOutcome.ANSWERED),
    (CallFacts(reason=4, answered_at=10.0, bridged_at=10.1, first_hangup_side=Side.DEBTOR,
               first_hangup_at=10.4), CallOutcome.DEBTOR_HUNG_UP),
    (CallFacts(reason=4, answered_at=10.0, first_hangup_side=Side.DEBTOR, first_hangup_at=11.9),
     CallOutcome.DEBTOR_HUNG_UP),
    (CallFacts(reason=4, answered_at=10.0, first_hangup_side=Side.DEBTOR, first_hangup_at=12.1),
     CallOutcome.ANSWERED),
    (CallFacts(reason=4, answered_at=10.0, first_hangup_side=Side.OURS, first_hangup_at=10.5),
     CallOutcome.ANSWERED),
    (CallFacts(reason=4, answered_at=10.0, lost=False), CallOutcome.ANSWERED),
    # answered as Asterisk gave the dial up: both halves hung up at once, in either order
    (CallFacts(reason=3, answered_at=10.0, first_hangup_side=Side.DEBTOR, first_hangup_at=10.003),
     CallOutcome.ANSWERED),
    (CallFacts(answered_at=10.0, first_hangup_side=Side.OURS, first_hangup_at=10.003), CallOutcome.ANSWERED),
    # our half answered within the instant: the debtor's hang-up is the debtor's
    (CallFacts(answered_at=10.0, reached_us_at=10.001, first_hangup_side=Side.DEBTOR, first_hangup_at=10.003),
     CallOutcome.DEBTOR_HUNG_UP),
    (CallFacts(reason=5), CallOutcome.BUSY),
    (CallFacts(reason=3), CallOutcome.NO_ANSWER),
    (CallFacts(reason=8), CallOutcome.CONGESTION),
    (CallFacts(reason=0), CallOutcome.FAILED),
    (CallFacts(reason=0, debtor_cause=1), CallOutcome.CONGESTION),  # no such number
    (CallFacts(reason=1, debtor_cause=17), CallOutcome.BUSY),
    (CallFacts(reason=1, debtor_cause=1), CallOutcome.CONGESTION),
    (CallFacts(reason=1, debtor_cause=16), CallOutcome.NO_ANSWER),
    (CallFacts(lost=True), CallOutcome.LOST),
    (CallFacts(), CallOutcome.FAILED),
])
def test_classify(facts, outcome):
    assert classify(facts, drop_window_s=2.0) is outcome


def test_classify_answered_call_is_not_lost_even_if_unobserved():
    assert classify(CallFacts(answered_at=1.0, lost=True)) is CallOutcome.ANSWERED


@pytest.mark.parametrize("current, proposed, expected", [
    (S.DIALING, S.RINGING, S.RINGING),
    (S.RINGING, S.ANSWERED, S.ANSWERED),
    (S.ANSWERED, S.RINGING, None),  # late/duplicate events never move a call backwards
    (S.BRIDGED, S.ANSWERED, None),
    (S.ANSWERED, S.ANSWERED, None),
    (S.DIALING, S.UNKNOWN, S.UNKNOWN),
    (S.UNKNOWN, S.RINGING, S.RINGING),
    (S.RINGING, S.ENDED, S.ENDED),
    (S.ENDED, S.RINGING, None),
    (S.ENDED, S.UNKNOWN, None),
])
def test_next_state(current, proposed, expected):
    assert next_state(current, proposed) is expected


async def test_no_originate_is_sent_before_asterisk_says_fully_booted(peer, clock):
    """Right after a restart Asterisk accepts logins before its dialplan is loaded."""
    peer.booting = True
    conn = AmiConnection(AmiSettings(**settings_kwargs(peer)), clock=clock)
    registry = Calls(conn)
    await conn.start(timeout=3)
    try:
        assert conn.state is ConnectionState.CONNECTED and not conn.fully_booted
        with pytest.raises(AmiNotConnected, match="FullyBooted"):
            await registry.originate(request("early"))
        assert peer.received["Originate"] == 0 and "early" not in registry.active
        waiting = asyncio.ensure_future(conn.wait_fully_booted(3))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        peer.say_fully_booted()
        await waiting
        await registry.originate(request("later"))
        assert peer.received["Originate"] == 1
    finally:
        registry.close()
        await conn.close()


async def test_adopted_call_from_an_earlier_run_is_found_or_ended_without_any_originate(calls, peer):
    peer.channels = {"live": core_show_channel(L1, "live", "live", state=6)}
    seen: list[tuple[str, CallState]] = []
    calls.add_listener(lambda call, state: seen.append((call.call_id, state)))
    live = calls.adopt(request("live"))
    gone = calls.adopt(request("gone"))
    await calls.reconcile()
    assert live.state is S.ANSWERED and "live" in calls.active
    assert await gone.ended(1) is CallOutcome.LOST and gone.ended_unobserved
    assert ("gone", S.ENDED) in seen and ("live", S.UNKNOWN) in seen
    assert peer.received["Originate"] == 0


@pytest.fixture
async def slow_calls(peer, clock):
    """A registry whose Originate answers time out fast and which looks for the channels of
    an unanswered Originate every 20 ms."""
    conn = AmiConnection(AmiSettings(**settings_kwargs(peer, action_timeout=0.2)), clock=clock)
    registry = Calls(conn, settle_interval_s=0.02, settle_margin_s=5.0)
    await conn.start(timeout=3)
    yield registry
    registry.close()
    await conn.close()


async def test_originate_unanswered_on_a_live_connection_ends_lost_after_its_ring_timeout(slow_calls, peer, clock):
    """Asterisk reads one Originate and never acts on it, while the link stays up (pings are
    answered): no reconnect will come to reconcile it, so the registry asks for the channel
    list itself and gives the call up once its ring timeout and the margin have passed."""
    peer.swallow["Originate"] = 1
    call = await slow_calls.originate(request())  # ring timeout 30 s
    assert call.state is S.UNKNOWN
    await eventually(lambda: peer.received["CoreShowChannels"] >= 2, what="the registry looking for the call")
    assert call.state is S.UNKNOWN, "not given up while Asterisk might still dial it"
    clock.now += 30 + 5
    assert await call.ended(3) is CallOutcome.LOST
    assert call.ended_unobserved and slow_calls.routing_entries == 0
    assert states(call) == [S.DIALING, S.UNKNOWN, S.ENDED]
    assert peer.received["Originate"] == 1
    assert peer.received["Login"] == 1 and slow_calls.connection.state is ConnectionState.CONNECTED


async def test_originate_unanswered_whose_channels_appear_late_is_followed(slow_calls, peer, clock):
    peer.swallow["Originate"] = 1
    call = await slow_calls.originate(request())
    assert call.state is S.UNKNOWN
    peer.channels = {"c1": core_show_channel(L1, "c1", "c1", state=5),
                     "c1-2": core_show_channel(L2, "c1-2", "c1", state=5)}  # Asterisk caught up
    await eventually(lambda: call.state is S.DIALING, what="the call found in the channel list")
    clock.now += 30 + 5
    seen = peer.received["CoreShowChannels"]
    await asyncio.sleep(0.1)
    assert peer.received["CoreShowChannels"] == seen, "a found call is left to its events"
    assert "c1" in slow_calls.active
    peer.replay(DEBTOR_HANGS_UP, call_id="c1")  # nobody answered within the ring timeout
    peer.emit([("Event", "OriginateResponse"), ("Privilege", "call,all"), ("ActionID", "originate-c1"),
               ("Response", "Failure"), ("Channel", "Local/20005@dunning-sim"), ("Context", "dunning-agents"),
               ("Exten", "s"), ("Reason", "3"), ("Uniqueid", "<null>")])
    assert await call.ended(3) is CallOutcome.NO_ANSWER
    assert not call.ended_unobserved and peer.received["Originate"] == 1


async def test_engine_gives_up_an_unanswered_call_without_an_outcome(peer, clock):
    """The engine's backstop: a call that no one settles (here the registry is told to wait
    an hour) is hung up and ended LOST after the limit, so its agent is released."""
    from dialer.engine import settled_outcome
    conn = AmiConnection(AmiSettings(**settings_kwargs(peer, action_timeout=0.2)), clock=clock)
    registry = Calls(conn, settle_interval_s=3600)
    await conn.start(timeout=3)
    try:
        peer.swallow["Originate"] = 1
        call = await registry.originate(request())
        assert await settled_outcome(registry, call, 0.3) is CallOutcome.LOST
        assert peer.received["Hangup"] == 1 and peer.received["Originate"] == 1
        assert registry.routing_entries == 0
    finally:
        registry.close()
        await conn.close()


async def test_engine_waits_for_an_answered_call_past_the_limit(calls, peer):
    from dialer.engine import settled_outcome
    replay_on_originate(peer, ANSWERED_ONLY)
    call = await calls.originate(request())
    await eventually(lambda: call.state is S.ANSWERED, what="answer")
    waiting = asyncio.ensure_future(settled_outcome(calls, call, 0.1))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "a conversation is not cut short"
    peer.replay(DEBTOR_HANGS_UP, call_id="c1")
    assert await asyncio.wait_for(waiting, 3) in (CallOutcome.ANSWERED, CallOutcome.DEBTOR_HUNG_UP)
    assert peer.received["Hangup"] == 0
