"""Typed AMI events: the only shape in which Asterisk's events leave `ami_bridge`.

AMI events are bags of text headers whose case and presence vary between Asterisk versions
and code paths. Parsing them once, here, into frozen dataclasses means the engine gets
ints where Asterisk means numbers, a fixed field set it can rely on, and nothing it can
mutate by accident. `parse_event` is pure (the receive time is an argument) so captured
header sets can be tested without a socket.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import AmiProtocolError

#: ChannelState values Asterisk sends (include/asterisk/channelstate.h).
STATE_DOWN = 0
STATE_RING = 4
STATE_RINGING = 5
STATE_UP = 6


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every typed event. `received_at` is our monotonic clock, not Asterisk's."""

    received_at: float


@dataclass(frozen=True, kw_only=True)
class ChannelEvent(Event):
    """An event about one channel. `linkedid` ties together every channel of one call."""

    channel: str
    uniqueid: str
    linkedid: str


@dataclass(frozen=True, kw_only=True)
class FullyBooted(Event):
    status: str


@dataclass(frozen=True, kw_only=True)
class Shutdown(Event):
    shutdown: str  # "Cleanly" / "Uncleanly"
    restart: bool


@dataclass(frozen=True, kw_only=True)
class Newchannel(ChannelEvent):
    channel_state: int
    channel_state_desc: str
    caller_id_num: str
    context: str
    exten: str


@dataclass(frozen=True, kw_only=True)
class Newstate(ChannelEvent):
    channel_state: int
    channel_state_desc: str
    connected_line_num: str


@dataclass(frozen=True, kw_only=True)
class DialBegin(ChannelEvent):
    """`channel`/`uniqueid`/`linkedid` are the *caller*; empty when Originate itself dials."""

    dest_channel: str
    dest_uniqueid: str
    dest_linkedid: str
    dial_string: str


@dataclass(frozen=True, kw_only=True)
class DialEnd(ChannelEvent):
    dest_channel: str
    dest_uniqueid: str
    dest_linkedid: str
    dial_status: str  # ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL, ...


@dataclass(frozen=True, kw_only=True)
class BridgeEnter(ChannelEvent):
    bridge_uniqueid: str
    bridge_num_channels: int


@dataclass(frozen=True, kw_only=True)
class BridgeLeave(ChannelEvent):
    bridge_uniqueid: str
    bridge_num_channels: int


@dataclass(frozen=True, kw_only=True)
class Hangup(ChannelEvent):
    cause: int
    cause_txt: str


@dataclass(frozen=True, kw_only=True)
class MixMonitorStart(ChannelEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class MixMonitorStop(ChannelEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class UserEvent(ChannelEvent):
    """The dialplan's UserEvent(): `name` is its UserEvent header; `status` and `cause` what
    the dunning-answered context sends after AMD() (DunningAMD: AMDSTATUS and AMDCAUSE)."""

    name: str
    status: str
    cause: str


@dataclass(frozen=True, kw_only=True)
class OriginateResponse(Event):
    """Outcome of an async Originate, correlated by `action_id`.

    `uniqueid` is "" when Asterisk had no channel to name (it sends "<null>").
    `reason` is Asterisk's AST_CONTROL_* code: 4 answered, 5 busy, 3 no answer,
    8 congestion, 1 hangup, 0 failure.
    """

    action_id: str
    response: str  # "Success" / "Failure"
    channel: str
    uniqueid: str
    reason: int
    context: str
    exten: str

    @property
    def success(self) -> bool:
        return self.response.lower() == "success"


@dataclass(frozen=True, kw_only=True)
class CoreShowChannel(ChannelEvent):
    """One live channel listed by CoreShowChannels; what reconciliation trusts."""

    action_id: str
    channel_state: int
    channel_state_desc: str
    application: str
    bridge_id: str
    duration: str


@dataclass(frozen=True, kw_only=True)
class CoreShowChannelsComplete(Event):
    action_id: str
    list_items: int


class _Headers:
    """Case-insensitive, typed read access over one message's headers."""

    def __init__(self, name: str, headers: Mapping[str, Any]) -> None:
        self._name = name
        self._h = {str(k).lower(): v for k, v in headers.items()}

    def text(self, key: str, default: str | None = None) -> str:
        value = self._h.get(key.lower())
        if value is None:
            if default is None:
                raise AmiProtocolError(f"{self._name} event without {key} header")
            return default
        if isinstance(value, list):  # a repeated header: the last one wins
            value = value[-1] if value else ""
        return str(value)

    def number(self, key: str, default: int | None = None) -> int:
        raw = self.text(key, None if default is None else "")
        if raw == "" and default is not None:
            return default
        try:
            return int(raw.strip())
        except ValueError:
            raise AmiProtocolError(f"{self._name} event: {key} is not a number: {raw!r}") from None

    def channel_fields(self, prefix: str = "") -> dict[str, str]:
        return {
            "channel": self.text(prefix + "Channel"),
            "uniqueid": self.text(prefix + "Uniqueid"),
            "linkedid": self.text(prefix + "Linkedid"),
        }


def _null(value: str) -> str:
    return "" if value == "<null>" else value


def _newchannel(h: _Headers, at: float) -> Event:
    return Newchannel(
        received_at=at, **h.channel_fields(),
        channel_state=h.number("ChannelState"), channel_state_desc=h.text("ChannelStateDesc", ""),
        caller_id_num=h.text("CallerIDNum", ""), context=h.text("Context", ""), exten=h.text("Exten", ""),
    )


def _newstate(h: _Headers, at: float) -> Event:
    return Newstate(
        received_at=at, **h.channel_fields(),
        channel_state=h.number("ChannelState"), channel_state_desc=h.text("ChannelStateDesc", ""),
        connected_line_num=h.text("ConnectedLineNum", ""),
    )


def _caller_fields(h: _Headers) -> dict[str, str]:
    # Originate's own dial has no calling channel: Asterisk then sends only Dest* headers.
    return {"channel": h.text("Channel", ""), "uniqueid": h.text("Uniqueid", ""), "linkedid": h.text("Linkedid", "")}


def _dialbegin(h: _Headers, at: float) -> Event:
    return DialBegin(
        received_at=at, **_caller_fields(h),
        dest_channel=h.text("DestChannel"), dest_uniqueid=h.text("DestUniqueid"),
        dest_linkedid=h.text("DestLinkedid", ""), dial_string=h.text("DialString", ""),
    )


def _dialend(h: _Headers, at: float) -> Event:
    return DialEnd(
        received_at=at, **_caller_fields(h),
        dest_channel=h.text("DestChannel"), dest_uniqueid=h.text("DestUniqueid"),
        dest_linkedid=h.text("DestLinkedid", ""), dial_status=h.text("DialStatus", ""),
    )


def _bridge(cls: type[BridgeEnter] | type[BridgeLeave]) -> Callable[[_Headers, float], Event]:
    def parse(h: _Headers, at: float) -> Event:
        return cls(
            received_at=at, **h.channel_fields(),
            bridge_uniqueid=h.text("BridgeUniqueid"), bridge_num_channels=h.number("BridgeNumChannels", 0),
        )
    return parse


def _hangup(h: _Headers, at: float) -> Event:
    return Hangup(received_at=at, **h.channel_fields(), cause=h.number("Cause", 0), cause_txt=h.text("Cause-txt", ""))


def _mixmonitor(cls: type[MixMonitorStart] | type[MixMonitorStop]) -> Callable[[_Headers, float], Event]:
    return lambda h, at: cls(received_at=at, **h.channel_fields())


def _originate_response(h: _Headers, at: float) -> Event:
    return OriginateResponse(
        received_at=at, action_id=h.text("ActionID", ""), response=h.text("Response"),
        channel=h.text("Channel", ""), uniqueid=_null(h.text("Uniqueid", "")), reason=h.number("Reason", 0),
        context=h.text("Context", ""), exten=h.text("Exten", ""),
    )


def _coreshowchannel(h: _Headers, at: float) -> Event:
    return CoreShowChannel(
        received_at=at, **h.channel_fields(), action_id=h.text("ActionID", ""),
        channel_state=h.number("ChannelState"), channel_state_desc=h.text("ChannelStateDesc", ""),
        application=h.text("Application", ""), bridge_id=h.text("BridgeId", ""), duration=h.text("Duration", ""),
    )


def _userevent(h: _Headers, at: float) -> Event:
    return UserEvent(received_at=at, **h.channel_fields(), name=h.text("UserEvent", ""),
                     status=h.text("Status", ""), cause=h.text("Cause", ""))


_PARSERS: dict[str, Callable[[_Headers, float], Event]] = {
    "fullybooted": lambda h, at: FullyBooted(received_at=at, status=h.text("Status", "")),
    "shutdown": lambda h, at: Shutdown(
        received_at=at, shutdown=h.text("Shutdown", ""), restart=h.text("Restart", "").lower() in ("true", "yes")
    ),
    "newchannel": _newchannel,
    "newstate": _newstate,
    "dialbegin": _dialbegin,
    "dialend": _dialend,
    "bridgeenter": _bridge(BridgeEnter),
    "bridgeleave": _bridge(BridgeLeave),
    "hangup": _hangup,
    "mixmonitorstart": _mixmonitor(MixMonitorStart),
    "mixmonitorstop": _mixmonitor(MixMonitorStop),
    "originateresponse": _originate_response,
    "userevent": _userevent,
    "coreshowchannel": _coreshowchannel,
    "coreshowchannelscomplete": lambda h, at: CoreShowChannelsComplete(
        received_at=at, action_id=h.text("ActionID", ""), list_items=h.number("ListItems", 0)
    ),
}

MODELLED_EVENTS = frozenset(_PARSERS)


def parse_event(headers: Mapping[str, Any], received_at: float) -> Event | None:
    """Turn one AMI event's headers into a typed event; None for events we don't model.

    Raises AmiProtocolError when a modelled event lacks a header we need or carries a
    non-numeric number: silently defaulting would misroute or misclassify a call.
    """
    h = _Headers("AMI", headers)
    name = h.text("Event", "")
    parser = _PARSERS.get(name.lower())
    if parser is None:
        return None
    return parser(_Headers(name, headers), received_at)
