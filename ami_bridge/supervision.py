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

An attended transfer (the agent's persistent line: the debtor is bridged to the line, which
otherwise waits in its own holding bridge) goes in three steps, each the console's:

* consult: the debtor's channel is redirected to ``dunning-hold,<consultation id>`` (music on
  hold, still recorded; the agent's line goes back to waiting by itself), then the
  supervisor's phone is called (Originate with the consultation id as its uniqueid, into
  ``dunning-consult``, which ``Bridge()``s the agent's line): agent and supervisor talk;
* complete: the debtor is redirected to ``dunning-transferred,<consultation id>``, which
  bridges the debtor with the supervisor's phone (taken out of the consultation); the
  agent's line goes back to waiting, free for the next debtor;
* cancel: the supervisor's phone is hung up. The debtor on hold, seeing the consultation's
  channel gone (as when the supervisor does not answer or hangs up), is bridged to the
  agent's line again.

The dialplan tells the engine each step on the debtor's channel (UserEvent DunningTransfer:
hold, back, complete). Without a persistent line (ringing, auto-answer: the agent's channel is
dialled by the debtor's, and leaves with it) the transfer is the blind hand-over above.

The request builders are pure; the coroutines send one or two actions each.
"""
from __future__ import annotations

import logging
import re
import secrets

from . import actions
from .connection import AmiConnection
from .errors import AmiActionError
from .events import STATE_UP, CoreShowChannel
from .lines import line_extension

log = logging.getLogger(__name__)

SPY_CONTEXT = "dunning-supervise"
TRANSFER_CONTEXT = "dunning-transfer"
HOLD_CONTEXT = "dunning-hold"
CONSULT_CONTEXT = "dunning-consult"
TRANSFERRED_CONTEXT = "dunning-transferred"
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


def consult_request(supervisor: str, line_id: str, agent_extension: str, consult_id: str | None = None,
                    ring_s: float = 20.0) -> actions.OriginateRequest:
    """The Originate that calls the supervisor's phone for a consultation with the agent whose
    persistent line is `line_id` (the call's uniqueid: the consultation id)."""
    if line_extension(line_id) is None:
        raise ValueError(f"agent line {line_id!r}: not a line id (line-<stamp>-<extension>-<n>)")
    agent = _endpoint("agent extension", agent_extension)
    return actions.OriginateRequest(
        call_id=consult_id or f"xfer-{secrets.token_hex(6)}",
        channel=f"PJSIP/{_endpoint('supervisor phone', supervisor)}", context=CONSULT_CONTEXT, exten="s",
        timeout_s=ring_s, caller_id=f"Dunning transfer <{agent}>", variables={"DUNNING_LINE": line_id})


def hold_action(call_id: str, consult_id: str) -> dict:
    """The Redirect that puts the debtor of `call_id` on hold for consultation `consult_id`."""
    return actions.redirect(call_id, HOLD_CONTEXT, consult_id)


def complete_action(call_id: str, consult_id: str) -> dict:
    """The Redirect that bridges the debtor of `call_id` with the supervisor of `consult_id`."""
    return actions.redirect(call_id, TRANSFERRED_CONTEXT, consult_id)


def line_of(listed: list, agent_extension: str) -> str | None:
    """The uniqueid of the agent's persistent line among CoreShowChannels' entries, if up."""
    return next((c.uniqueid for c in listed if isinstance(c, CoreShowChannel) and c.channel_state == STATE_UP
                 and line_extension(c.uniqueid) == agent_extension), None)


async def consult(conn: AmiConnection, call_id: str, supervisor: str, agent_extension: str) -> str | None:
    """Start an attended transfer: the debtor on hold, the supervisor's phone called to talk
    with the agent on the agent's line. Returns the consultation id; None when the agent has no
    persistent line (nothing is sent: the caller hands the debtor over instead)."""
    listed = (await conn.send(actions.core_show_channels())).events
    line_id = line_of(listed, agent_extension)
    if line_id is None:
        return None
    request = consult_request(supervisor, line_id, agent_extension)
    await conn.send(hold_action(call_id, request.call_id))
    await conn.send(actions.originate(request))
    return request.call_id


async def consultation_up(conn: AmiConnection, consult_id: str) -> bool:
    """Whether the supervisor's phone of consultation `consult_id` is still answered (not
    unanswered and gone, nor hung up)."""
    listed = (await conn.send(actions.core_show_channels())).events
    return any(isinstance(c, CoreShowChannel) and c.uniqueid == consult_id and c.channel_state == STATE_UP
               for c in listed)


async def complete(conn: AmiConnection, call_id: str, consult_id: str) -> None:
    """End an attended transfer: the debtor to the supervisor, the agent's line free again."""
    await conn.send(complete_action(call_id, consult_id))


async def cancel(conn: AmiConnection, consult_id: str) -> None:
    """Drop the supervisor: the debtor comes back to the agent (the dialplan sees to it). A
    consultation already over (not answered, hung up) is no error: the debtor is back."""
    try:
        await conn.send(actions.hangup(consult_id))
    except AmiActionError as exc:
        log.info("transfer %s: hangup: %s", consult_id, exc.message)


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
