"""How the engine asks Asterisk for one outbound call (pure: builds the request).

The call is a Local channel into the dialer's ``dunning-outbound`` context, which dials
the debtor through the configured network; once the debtor answers, the other half runs
``dunning-answered``: it starts the recording and bridges the debtor to the reserved agent,
or plays the no-agent message when none was reserved.
"""
from __future__ import annotations

from ami_bridge import OriginateRequest

OUTBOUND_CONTEXT = "dunning-outbound"
ANSWERED_CONTEXT = "dunning-answered"


def dial_request(call_id: str, number: str, agent: str | None, ring_timeout_s: float,
                 caller_id: str = "Dunning <4000>", extra: dict[str, str] | None = None) -> OriginateRequest:
    """The Originate for dialling `number` with `agent` reserved (None: no agent free);
    `extra`: how the dialplan reaches the agent (DUNNING_LINE, DUNNING_WHISPER,
    DUNNING_AUTO_ANSWER: see the engine's agent_line setting)."""
    if not number.isdigit():
        raise ValueError(f"number {number!r}: digits only (normalise it before dialling)")
    return OriginateRequest(
        call_id=call_id,
        channel=f"Local/{number}@{OUTBOUND_CONTEXT}/n",
        context=ANSWERED_CONTEXT, exten="s", priority=1,
        timeout_s=ring_timeout_s,
        caller_id=caller_id,
        variables={"DUNNING_ATTEMPT": call_id, "DUNNING_AGENT": agent or "", **(extra or {})},
    )
