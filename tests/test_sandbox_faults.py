"""Faults a real Asterisk can be put through: a restart, and a frozen process.

The ground truth for "dialled once" is Asterisk's own log: the dialplan's
``dunning-outbound`` context writes one ``dunning-dial <uniqueid> <number>`` line each
time it starts dialling a debtor, whatever our side believes it sent.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest
from ami_peer import eventually

from ami_bridge import AmiConnection, CallOutcome, Calls, CallState, ConnectionState
from asterisk_conf import sandbox
from dialer.outbound import dial_request

pytestmark = pytest.mark.asterisk


def dial_lines(site, call_id: str) -> int:
    """How many times Asterisk started dialling the debtor for `call_id`."""
    log = site.sandbox_root / "var/log/asterisk/messages.log"
    needle = f"dunning-dial {call_id}-2 "
    return sum(needle in line for line in log.read_text(errors="replace").splitlines())


async def test_core_restart_reconnects_by_itself_and_dials_nothing_twice(
        sandbox_up, sandbox_ami: AmiConnection, sandbox_calls: Calls):
    site = sandbox_up
    stamp = int(time.time())
    ringing = await sandbox_calls.originate(dial_request(f"r{stamp}-a", "2130", None, 60))
    await eventually(lambda: ringing.state is CallState.RINGING, 10, "the debtor's phone ringing")
    await eventually(lambda: dial_lines(site, ringing.call_id) == 1, 5, "the dial in Asterisk's log")
    logins = sandbox_ami.counters.logins

    restart = subprocess.run(["chroot", str(site.sandbox_root), "/usr/sbin/asterisk", "-rx",
                              "core restart now"], capture_output=True, text=True, timeout=30)
    assert restart.returncode == 0, restart.stderr

    # Asterisk hangs up the ringing call as it goes down (or, had we missed that, the
    # reconciliation after the reconnect would end it): it failed, and is not re-sent.
    assert await ringing.ended(90) in (CallOutcome.FAILED, CallOutcome.LOST)
    assert ringing.answered_at is None
    await eventually(lambda: sandbox_ami.state is not ConnectionState.CONNECTED, 30,
                     "the old Asterisk's connection to go")
    await sandbox_ami.wait_fully_booted(60)
    assert sandbox_ami.counters.logins > logins and sandbox_ami.counters.reconnects >= 1

    # The reconnected bridge dials again, once per call.
    fresh = await sandbox_calls.originate(dial_request(f"r{stamp}-b", "2101", None, 10))
    assert await fresh.ended(40) is CallOutcome.ANSWERED
    await asyncio.sleep(3)  # anything re-sent after the reconnect would have dialled by now
    assert dial_lines(site, ringing.call_id) == 1
    assert dial_lines(site, fresh.call_id) == 1
    assert sandbox_ami.counters.originates_sent == 2


async def test_frozen_asterisk_is_detected_by_the_heartbeat_and_recovered(
        sandbox_up, sandbox_ami: AmiConnection):
    pid = sandbox.running_pid(sandbox_up)
    assert pid is not None
    misses, logins = sandbox_ami.counters.heartbeat_misses, sandbox_ami.counters.logins
    os.kill(pid, signal.SIGSTOP)  # TCP still accepts; nothing is answered
    try:
        await eventually(lambda: sandbox_ami.state is not ConnectionState.CONNECTED, 15,
                         "the heartbeat to notice the silence")
        assert sandbox_ami.counters.heartbeat_misses == misses + 1
        await asyncio.sleep(2)
        assert sandbox_ami.state is not ConnectionState.CONNECTED, "a frozen peer must not look alive"
    finally:
        os.kill(pid, signal.SIGCONT)
    await sandbox_ami.wait_connected(60)
    assert sandbox_ami.counters.logins == logins + 1
    pong = await sandbox_ami.send({"Action": "Ping"})
    assert pong.response == "Success"


async def test_originate_written_to_a_frozen_asterisk_is_reconciled_and_dialled_at_most_once(
        sandbox_up, sandbox_ami: AmiConnection, sandbox_calls: Calls):
    """The dangerous case of a restart: the Originate is on the wire, unanswered, when the
    link drops (panoramisk would re-send it after the reconnect: a second call to the same
    debtor). Asterisk is frozen, so the Originate sits unread in its socket until the
    heartbeat gives the link up; after SIGCONT the call is reconciled from the channel list
    and nothing is sent again."""
    site = sandbox_up
    pid = sandbox.running_pid(site)
    assert pid is not None
    assert sandbox_ami.counters.originates_sent == 0
    os.kill(pid, signal.SIGSTOP)
    try:
        # Returns once the heartbeat has dropped the link with the Originate unanswered.
        call = await sandbox_calls.originate(dial_request(f"z{int(time.time())}-frozen", "2300", None, 10))
        assert call.state is CallState.UNKNOWN
        assert sandbox_ami.counters.heartbeat_misses >= 1
        await eventually(lambda: sandbox_ami.state is not ConnectionState.CONNECTED, 5, "the link to go")
    finally:
        os.kill(pid, signal.SIGCONT)
    await sandbox_ami.wait_fully_booted(60)
    outcome = await call.ended(60)
    # Reconciled: either Asterisk never acted on it (no channel: LOST), or it did and the
    # call was found in the channel list and followed to its end (never answers: 2300).
    assert outcome in (CallOutcome.LOST, CallOutcome.NO_ANSWER), outcome
    assert (outcome is CallOutcome.LOST) == call.ended_unobserved
    await asyncio.sleep(3)  # anything re-sent after the reconnect would have dialled by now
    assert dial_lines(site, call.call_id) <= 1
    if outcome is CallOutcome.LOST:
        assert dial_lines(site, call.call_id) == 0, "dialled, yet not found in the channel list"
    assert sandbox_ami.counters.originates_sent == 1
