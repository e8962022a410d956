"""The only code in the project that speaks AMI (Asterisk Manager Interface).

A thin adapter over panoramisk 1.4's wire layer: typed events (`events`), pure action
builders (`actions`), one supervised connection (`connection`) and the call registry
(`calls`). Everything past this package sees typed objects and `AmiError`s only.
"""

from .actions import OriginateRequest
from .calls import Call, CallFacts, CallOutcome, Calls, CallState, Side, classify, next_state
from .connection import (
    ActionResult,
    AmiConnection,
    AmiSettings,
    ConnectionState,
    Headers,
    backoff_delay,
)
from .counters import ActionStats, CountersSnapshot
from .errors import (
    AmiActionError,
    AmiActionTimeout,
    AmiAuthError,
    AmiConnectionLost,
    AmiError,
    AmiNotConnected,
    AmiProtocolError,
)
from .events import (
    BridgeEnter,
    BridgeLeave,
    ChannelEvent,
    CoreShowChannel,
    CoreShowChannelsComplete,
    DialBegin,
    DialEnd,
    Event,
    FullyBooted,
    Hangup,
    MixMonitorStart,
    MixMonitorStop,
    Newchannel,
    Newstate,
    OriginateResponse,
    Shutdown,
    UserEvent,
    parse_event,
)

__all__ = [
    "ActionResult", "ActionStats", "AmiActionError", "AmiActionTimeout", "AmiAuthError",
    "AmiConnection", "AmiConnectionLost", "AmiError", "AmiNotConnected", "AmiProtocolError",
    "AmiSettings", "BridgeEnter", "BridgeLeave", "Call", "CallFacts", "CallOutcome", "CallState",
    "Calls", "ChannelEvent", "ConnectionState", "CoreShowChannel", "CoreShowChannelsComplete",
    "CountersSnapshot", "DialBegin", "DialEnd", "Event", "FullyBooted", "Hangup", "Headers",
    "MixMonitorStart", "MixMonitorStop", "Newchannel", "Newstate", "OriginateRequest",
    "OriginateResponse", "Shutdown", "Side", "UserEvent", "backoff_delay", "classify", "next_state", "parse_event",
]
