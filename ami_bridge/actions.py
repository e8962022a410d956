"""Pure builders for the AMI actions the project sends (build, then execute).

Each builder returns a plain dict that `AmiConnection.send` executes. Keeping them pure
means the exact bytes we would put on the wire can be checked without a socket, and the
validation that protects Asterisk (no header injection, no ids Asterisk would mangle)
happens before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Our call ids become Asterisk uniqueids (ChannelId) and part of ActionIDs, so keep them
# to characters that survive CDRs, CEL, file names and log greps unchanged.
_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# Channel variable names; a leading _ or __ asks Asterisk to inherit the variable.
_VAR_NAME = re.compile(r"_{0,2}[A-Za-z][A-Za-z0-9_]*")
_FORBIDDEN_IN_VALUES = ("\r", "\n", "\0")

#: Actions whose answer is a list of events ending in an `...Complete` event.
LIST_ACTIONS = frozenset({"coreshowchannels", "showdialplan", "status", "pjsipshowendpoints", "queuestatus"})


def _check_value(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if any(c in value for c in _FORBIDDEN_IN_VALUES):
        raise ValueError(f"{name} contains a line break or NUL, which would inject AMI headers: {value!r}")
    return value


def _checked(action: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
    for key, value in action.items():
        for item in value if isinstance(value, list) else [value]:
            _check_value(key, item)
    return action


def ping() -> dict[str, str | list[str]]:
    return {"Action": "Ping"}


def login(username: str, secret: str, events: str = "system,call,user") -> dict[str, str | list[str]]:
    """Login; `events` limits what Asterisk pushes to the classes the engine consumes."""
    if not username or not secret:
        raise ValueError("AMI username and secret must not be empty")
    return _checked({"Action": "Login", "Username": username, "Secret": secret, "Events": events})


def logoff() -> dict[str, str | list[str]]:
    return {"Action": "Logoff"}


def core_show_channels() -> dict[str, str | list[str]]:
    return {"Action": "CoreShowChannels"}


def hangup(channel: str, cause: int = 16) -> dict[str, str | list[str]]:
    """Hang up one channel by name (a /regex/ would hang up many: refused)."""
    if not channel or (channel.startswith("/") and channel.endswith("/")):
        raise ValueError(f"hangup needs one channel name, got {channel!r}")
    if not 0 < int(cause) < 128:
        raise ValueError(f"hangup cause must be a Q.850 cause 1..127, got {cause}")
    return _checked({"Action": "Hangup", "Channel": channel, "Cause": str(int(cause))})


def setvar(channel: str, name: str, value: str) -> dict[str, str | list[str]]:
    """Set a channel variable on one live channel (how the engine names the agent for a
    call that was placed before an agent was free)."""
    if not channel or (channel.startswith("/") and channel.endswith("/")):
        raise ValueError(f"setvar needs one channel name, got {channel!r}")
    if not _VAR_NAME.fullmatch(name):
        raise ValueError(f"variable name {name!r} is not a valid channel variable name")
    return _checked({"Action": "Setvar", "Channel": channel, "Variable": name, "Value": value})


def redirect(channel: str, context: str, exten: str, priority: int = 1) -> dict[str, str | list[str]]:
    """Send one live channel to another place in the dialplan (out of the bridge it is in)."""
    if not channel or (channel.startswith("/") and channel.endswith("/")):
        raise ValueError(f"redirect needs one channel name, got {channel!r}")
    if not context or not exten or priority < 1:
        raise ValueError(f"redirect needs a context, an extension and a priority >= 1, got {context!r} {exten!r} {priority}")
    return _checked({"Action": "Redirect", "Channel": channel, "Context": context, "Exten": exten,
                     "Priority": str(priority)})


def list_commands() -> dict[str, str | list[str]]:
    return {"Action": "ListCommands"}


def show_dialplan(context: str) -> dict[str, str | list[str]]:
    if not context:
        raise ValueError("show_dialplan needs a context name")
    return _checked({"Action": "ShowDialplan", "Context": context})


def core_settings() -> dict[str, str | list[str]]:
    return {"Action": "CoreSettings"}


def originate_action_id(call_id: str) -> str:
    """The ActionID of a call's Originate: one per call, so it doubles as idempotency key."""
    return f"originate-{call_id}"


def debtor_uniqueid(call_id: str) -> str:
    """Uniqueid we assign to the ;2 half of the Local channel (the side that dials out)."""
    return f"{call_id}-2"


@dataclass(frozen=True)
class OriginateRequest:
    """Everything needed to place one outbound call, validated on construction.

    Either `context` + `exten` (+ `priority`) or `application` (+ `data`) say where the
    ;1 half of the channel goes once the far end answers.
    """

    call_id: str
    channel: str
    context: str | None = None
    exten: str | None = None
    priority: int = 1
    application: str | None = None
    data: str = ""
    timeout_s: float = 30.0
    caller_id: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.call_id:
            raise ValueError("call_id must not be empty")
        if not _CALL_ID.fullmatch(self.call_id):
            raise ValueError(
                f"call_id {self.call_id!r} must be 1-63 characters of A-Z a-z 0-9 . _ - "
                "(it becomes the channel's Asterisk uniqueid)"
            )
        if not self.channel or "/" not in self.channel:
            raise ValueError(f"channel must look like Tech/resource, got {self.channel!r}")
        dialplan = self.context is not None or self.exten is not None
        if dialplan == (self.application is not None):
            raise ValueError("give either context+exten or application, not both or neither")
        if dialplan and not (self.context and self.exten):
            raise ValueError("context and exten must both be given")
        if self.priority < 1:
            raise ValueError(f"priority must be >= 1, got {self.priority}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        for name in ("channel", "context", "exten", "application", "data", "caller_id"):
            value = getattr(self, name)
            if value is not None:
                _check_value(name, value)
        for key, value in self.variables.items():
            if not _VAR_NAME.fullmatch(key):
                raise ValueError(f"variable name {key!r} is not a valid channel variable name")
            _check_value(f"variable {key}", value)
            if "," in value:
                # Asterisk splits each Variable header on commas (several k=v per line).
                raise ValueError(f"variable {key} contains a comma, which Asterisk would split: {value!r}")
        object.__setattr__(self, "variables", MappingProxyType(dict(self.variables)))


def originate(req: OriginateRequest) -> dict[str, str | list[str]]:
    """Async Originate with our ids, so every event of the call can be routed back to it."""
    action: dict[str, str | list[str]] = {
        "Action": "Originate",
        "ActionID": originate_action_id(req.call_id),
        "Channel": req.channel,
        "ChannelId": req.call_id,
        "OtherChannelId": debtor_uniqueid(req.call_id),
        "Timeout": str(int(round(req.timeout_s * 1000))),
        "Async": "true",  # without it panoramisk's protocol handler crashes
    }
    if req.application is not None:
        action["Application"] = req.application
        if req.data:
            action["Data"] = req.data
    else:
        action.update({"Context": req.context or "", "Exten": req.exten or "", "Priority": str(req.priority)})
    if req.caller_id:
        action["CallerID"] = req.caller_id
    if req.variables:
        action["Variable"] = [f"{k}={v}" for k, v in req.variables.items()]
    return _checked(action)


def redacted(action: Mapping[str, object]) -> dict[str, object]:
    """A copy safe to log: the Login secret is masked."""
    return {k: ("********" if k.lower() == "secret" else v) for k, v in action.items()}
