"""What the console does to a live call through Asterisk: a supervisor listening in (listen,
whisper, barge), and the agent's own call controls (hang up, hand the debtor over to a
supervisor).

Listening in calls the supervisor's phone (Originate PJSIP/<supervisor>) into the
``dunning-supervise`` context, whose extension is the mode: ``ChanSpy`` on the agent's channel
(``PJSIP/<agent>-``, the agent's phone on this Asterisk) with ``q`` (no beep, no name spoken),
``E`` (ends when the agent's channel hangs up), ``S`` (ends when there is nothing to listen
to) and, for a whisper, ``w`` (the agent hears the supervisor, the debtor does not) or, for a
barge, ``B`` (both hear the supervisor). The options live in the dialplan, not in the action:
the console can only pick one of the three modes.

The debtor's side of a call is addressed by the attempt's call id: the Originate's ChannelId,
the uniqueid of the half of the Local channel that faces the debtor (``dunning-answered``).
Handing over redirects that channel to ``dunning-transfer,<supervisor>``, which dials the
supervisor's phone and, if nobody answers, brings the debtor back to the agent.

The request builders are pure; the three coroutines send one action each.
"""
from __future__ import annotations

import re
import secrets

from . import actions
from .connection import AmiConnection

SPY_CONTEXT = "dunning-supervise"
TRANSFER_CONTEXT = "dunning-transfer"
#: The modes of listening in, and ChanSpy's options for each (rendered into the dialplan).
SPY_MODES = {"listen": "qES", "whisper": "qESw", "barge": "qESB"}
#: A PJSIP endpoint name the dialplan may be given (agents' extensions, supervisors' phones).
ENDPOINT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


def _endpoint(what: str, name: str) -> str:
    if not ENDPOINT.fullmatch(name or ""):
        raise ValueError(f"{what} {name!r}: not a SIP endpoint name (letters, digits, '_.-')")
    return name


def spy_request(supervisor: str, agent_extension: str, mode: str, spy_id: str | None = None,
                ring_s: float = 30.0) -> actions.OriginateRequest:
    """The Originate that calls the supervisor's phone and, once answered, listens in on the
    agent's channel in `mode` (listen, whisper, barge)."""
    if mode not in SPY_MODES:
        raise ValueError(f"listening mode {mode!r}: one of {', '.join(SPY_MODES)}")
    agent = _endpoint("agent extension", agent_extension)
    return actions.OriginateRequest(
        call_id=spy_id or f"spy-{secrets.token_hex(6)}", channel=f"PJSIP/{_endpoint('supervisor phone', supervisor)}",
        context=SPY_CONTEXT, exten=mode, timeout_s=ring_s, caller_id=f"Dunning {mode} <{agent}>",
        variables={"DUNNING_SPY_AGENT": agent})


def hand_over_action(call_id: str, supervisor: str) -> dict:
    """The Redirect that takes the debtor of call `call_id` to the supervisor's phone."""
    return actions.redirect(call_id, TRANSFER_CONTEXT, _endpoint("supervisor phone", supervisor))


async def listen_in(conn: AmiConnection, supervisor: str, agent_extension: str, mode: str) -> str:
    """Call the supervisor's phone to listen in on the agent; returns the spy channel's uniqueid."""
    request = spy_request(supervisor, agent_extension, mode)
    await conn.send(actions.originate(request))
    return request.call_id


async def hand_over(conn: AmiConnection, call_id: str, supervisor: str) -> None:
    """Take the debtor of `call_id` off the agent to the supervisor's phone."""
    await conn.send(hand_over_action(call_id, supervisor))


async def end_call(conn: AmiConnection, call_id: str) -> None:
    """Hang up the debtor's side of `call_id` (the agent's line, if persistent, stays up)."""
    await conn.send(actions.hangup(call_id))
