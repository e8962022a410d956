"""The AMI bridge against the real Asterisk 22 sandbox: real calls, real outcomes.

Each simulated-debtor behaviour of the dialplan gives its typed outcome; an answered call's
events arrive in order; a real baresip softphone answers as the agent and the recording
has each party on its own leg.
"""
from __future__ import annotations

import array
import asyncio
import itertools
import time
import wave
from pathlib import Path

import pytest

from ami_bridge import (
    BridgeEnter,
    CallOutcome,
    Calls,
    CallState,
    DialBegin,
    DialEnd,
    Hangup,
    Newchannel,
    OriginateResponse,
)
from asterisk_conf.softphone import Softphone
from dialer.outbound import dial_request
from recordings.legs import leg_files, leg_levels

pytestmark = pytest.mark.asterisk
S = CallState
_serial = itertools.count(1)


def call_id(tag: str) -> str:
    return f"t{int(time.time())}-{tag}-{next(_serial)}"


@pytest.mark.parametrize("number, ring_s, outcome, cause", [
    ("2101", 10, CallOutcome.ANSWERED, 16),         # answers after 1 s (no agent: the message plays)
    ("2202", 10, CallOutcome.BUSY, 17),             # rings 2 s, then busy
    ("2300", 3, CallOutcome.NO_ANSWER, 19),         # rings until our 3 s ring limit
    ("2401", 10, CallOutcome.DEBTOR_HUNG_UP, 16),   # answers after 1 s, hangs up at once
    ("2500", 10, CallOutcome.CONGESTION, 1),        # invalid number
])
async def test_each_simulated_debtor_gives_its_typed_outcome(sandbox_calls: Calls, number, ring_s, outcome, cause):
    call = await sandbox_calls.originate(dial_request(call_id(number), number, None, ring_s))
    assert await call.ended(ring_s + 30) is outcome
    assert call.debtor_cause == cause   # the Q.850 cause the attempt records
    states = [s for s, _ in call.history]
    assert states[0] is S.DIALING and states[-1] is S.ENDED
    assert (S.ANSWERED in states) == (outcome in (CallOutcome.ANSWERED, CallOutcome.DEBTOR_HUNG_UP))
    assert sandbox_calls.routing_entries == 0 or call.call_id not in sandbox_calls.active


@pytest.mark.parametrize("number, answer_s, outcome", [
    ("2103", 3, CallOutcome.ANSWERED),         # 21NN: answers after NN seconds
    ("2403", 3, CallOutcome.DEBTOR_HUNG_UP),   # 24NN: answers after NN seconds, hangs up at once
])
async def test_a_simulated_debtor_answers_after_the_seconds_its_number_says(
        sandbox_calls: Calls, number, answer_s, outcome):
    """dunning-sim's Wait(NN) before Answer(): the answer comes NN seconds after the dial,
    give or take the call set-up."""
    call = await sandbox_calls.originate(dial_request(call_id(number), number, None, 10))
    assert await call.ended(40) is outcome
    assert call.answered_at is not None
    assert answer_s <= call.answered_at - call.sent_at < answer_s + 1.5


async def test_answered_call_events_arrive_in_order(sandbox_calls: Calls):
    call = await sandbox_calls.originate(dial_request(call_id("order"), "2101", None, 10))
    assert await call.ended(40) is CallOutcome.ANSWERED
    kinds = [type(e) for e in call.events]

    def first(kind, where=lambda e: True) -> int:
        return next(i for i, e in enumerate(call.events) if isinstance(e, kind) and where(e))

    ours = first(Newchannel, lambda e: e.uniqueid == call.call_id)
    dial = first(DialBegin)
    answered = first(DialEnd, lambda e: e.dial_status == "ANSWER")
    response = first(OriginateResponse)
    hangup = first(Hangup, lambda e: e.uniqueid == call.call_id)
    assert ours < dial < answered < hangup, kinds
    # OriginateResponse comes from the other half of the Local channel: its place relative to
    # the DialEnd varies from call to call, but it always precedes our half's hangup.
    assert response < hangup and call.events[response].reason == 4
    assert [s for s, _ in call.history] == [S.DIALING, S.RINGING, S.ANSWERED, S.ENDED]
    assert call.first_hangup_side is not None


def _envelope(path: Path, step_s: float = 0.05) -> list[float]:
    """Loudness per `step_s` window (8 kHz mono 16-bit WAV)."""
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        samples = array.array("h", w.readframes(w.getnframes()))
    step = int(8000 * step_s)
    return [sum(abs(x) for x in samples[i:i + step]) / step for i in range(0, len(samples) - step, step)]


def _pearson(pairs: list[tuple[float, float]]) -> float:
    n = len(pairs)
    mx, my = sum(x for x, _ in pairs) / n, sum(y for _, y in pairs) / n
    sxy = sum((x - mx) * (y - my) for x, y in pairs)
    sxx, syy = sum((x - mx) ** 2 for x, _ in pairs), sum((y - my) ** 2 for _, y in pairs)
    return sxy / ((sxx * syy) ** 0.5 or 1.0)


def _similarity(source: list[float], leg: list[float]) -> float:
    """Best correlation of two loudness envelopes over every lag at which they overlap by
    at least half of the shorter one (a leg may start a little before or after)."""
    need = min(len(source), len(leg)) // 2
    best = -1.0
    for lag in range(-len(source) + need, len(leg) - need + 1):
        pairs = [(source[i], leg[i + lag]) for i in range(len(source)) if 0 <= i + lag < len(leg)]
        best = max(best, _pearson(pairs))
    return best


@pytest.fixture
async def softphone(sandbox_up, creds, agent_speech, tmp_path):
    """A baresip agent registered to the sandbox, saying the LibriVox clip; its extension."""
    ext = sorted(creds.agent_passwords)[-1]
    phone = Softphone(ext, creds.agent_passwords[ext], agent_speech, tmp_path / "phone",
                      sip_server=f"127.0.0.1:{sandbox_up.sip_port}")
    await asyncio.to_thread(phone.start)
    yield ext
    phone.stop()


async def test_softphone_agent_answers_and_each_party_is_on_its_own_leg(
        sandbox_up, sandbox_calls: Calls, softphone, agent_speech):
    site, ext = sandbox_up, softphone
    call = await sandbox_calls.originate(dial_request(call_id("agent"), "2101", ext, 10))
    assert await call.ended(60) is CallOutcome.ANSWERED
    assert S.BRIDGED in [s for s, _ in call.history]
    assert any(isinstance(e, BridgeEnter) and e.uniqueid == call.call_id for e in call.events)
    levels = await leg_levels(site.recordings_spool, call.call_id)  # once MixMonitor is done
    assert levels.complete, levels
    files = leg_files(site.recordings_spool, call.call_id)
    debtor_voice = site.sandbox_root / "usr/share/asterisk/sounds/dunning/debtor-voice.wav"
    agent_src, debtor_src = _envelope(agent_speech), _envelope(debtor_voice)
    agent_leg, debtor_leg = _envelope(files["agent"]), _envelope(files["debtor"])
    # Each leg sounds like its own party's speech, and more so than like the other's.
    assert _similarity(agent_src, agent_leg) > 0.8
    assert _similarity(debtor_src, debtor_leg) > 0.8
    assert _similarity(agent_src, agent_leg) > _similarity(agent_src, debtor_leg)
    assert _similarity(debtor_src, debtor_leg) > _similarity(debtor_src, agent_leg)


async def test_a_call_placed_ahead_of_an_agent_is_given_one_after_the_answer_or_abandoned(
        sandbox_up, sandbox_calls: Calls, softphone):
    """Predictive dialing's two endings: the engine names a free agent within 2 s of the
    answer (Setvar), or no agent is free and the debtor hears the message."""
    ext = softphone
    served = await sandbox_calls.originate(dial_request(call_id("ahead"), "2101", None, 10))

    async def name_the_agent_on_answer() -> None:
        while served.state not in (S.ANSWERED, S.ENDED):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the engine takes a moment to find a free agent
        assert await sandbox_calls.set_variable(served, "DUNNING_AGENT", ext)

    await asyncio.gather(name_the_agent_on_answer(), served.ended(60))
    abandoned = await sandbox_calls.originate(dial_request(call_id("abandon"), "2101", None, 10))
    assert await abandoned.ended(60) is CallOutcome.ANSWERED
    assert S.BRIDGED in [s for s, _ in served.history]
    assert S.BRIDGED not in [s for s, _ in abandoned.history]
    # The abandoned debtor heard the whole message: the call lasted well over the 2 s wait.
    assert abandoned.ended_at - abandoned.answered_at > 5
    levels = await leg_levels(sandbox_up.recordings_spool, abandoned.call_id)
    assert levels.has_audio("debtor") and levels.has_audio("agent"), "the message is on the agent's side"
