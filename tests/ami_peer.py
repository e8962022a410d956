"""A fake Asterisk manager interface that speaks the real wire format, for fault injection.

It is a peer, not a mock: a TCP server on 127.0.0.1 sending the banner, CRLF-framed
messages and the responses Asterisk 22 sends for the actions ami_bridge uses, so the real
panoramisk framing and our connection code run end to end. What Asterisk cannot be made to
do on demand is scriptable: drop the connection right after an action arrives, go silent
like a SIGSTOPped process (TCP still accepted, nothing read or answered), swallow one action
like an Asterisk too busy to answer it (the link stays up), replay a recorded event
transcript for an originated call. What `dunning asterisk check` asks (ListCommands,
ShowDialplan, Getvar DEVICE_STATE) is answered from settable tables, so an Asterisk with a
context, a module or a permission more or less than the engine's can be played.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from asterisk_conf.generate import CONTEXTS

EOL = "\r\n"
BANNER = "Asterisk Call Manager/11.0.0" + EOL


def wire(headers: list[tuple[str, str]]) -> str:
    return "".join(f"{k}: {v}{EOL}" for k, v in headers) + EOL


def parse_block(block: str) -> list[tuple[str, str]]:
    out = []
    for line in block.split(EOL):
        if ": " in line:
            k, v = line.split(": ", 1)
            out.append((k, v))
        elif line.endswith(":"):
            out.append((line[:-1], ""))
    return out


def transcript_blocks(transcript: str, **values: str) -> list[str]:
    """Split a recorded transcript (events separated by blank lines) into wire messages."""
    text = transcript.strip().replace("\r\n", "\n").format(**values)
    return [EOL.join(block.strip().split("\n")) + EOL + EOL for block in text.split("\n\n") if block.strip()]


class _Session(asyncio.Protocol):
    def __init__(self, peer: AmiPeer) -> None:
        self.peer = peer
        self.buffer = ""
        self.backlog: list[list[tuple[str, str]]] = []
        self.authenticated = False
        self.banner_sent = False
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer.connections += 1
        self.peer.sessions.add(self)
        if self.peer.silent:
            transport.pause_reading()
        else:
            self.send_banner()

    def send_banner(self) -> None:
        if not self.banner_sent:
            self.banner_sent = True
            self.write(BANNER)

    def write(self, text: str) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(text.encode())

    def data_received(self, data: bytes) -> None:
        self.buffer += data.decode()
        while EOL + EOL in self.buffer:
            block, self.buffer = self.buffer.split(EOL + EOL, 1)
            headers = parse_block(block)
            if headers:
                self.backlog.append(headers)
        self.process()

    def process(self) -> None:
        while self.backlog and not self.peer.silent and not self.closed:
            self.peer._handle(self, self.backlog.pop(0))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.peer.sessions.discard(self)

    def drop(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()


OriginateScript = Callable[["AmiPeer", dict[str, str]], None]

#: What ListCommands shows the engine's user on the sandbox (write = originate,call,reporting,
#: the modules of generate.SANDBOX_MODULES): the actions `check` looks for, and some others.
ENGINE_COMMANDS = {
    "Ping": "<none>", "Login": "<none>", "Logoff": "<none>", "ListCommands": "<none>",
    "Events": "<none>", "CoreSettings": "system,reporting,all", "Getvar": "call,reporting,all",
    "Setvar": "call,all", "Redirect": "call,all", "Hangup": "system,call,all", "Originate": "originate,all",
    "CoreShowChannels": "system,reporting,all", "ShowDialPlan": "config,reporting,all",
    "StopMixMonitor": "system,call,all", "MixMonitor": "system,call,all",
    "PJSIPHangup": "system,call,all", "Status": "system,call,reporting,all",
}
#: The dialplan contexts ShowDialplan finds (generate.CONTEXTS on the sandbox).
#: What an Asterisk configured by `dunning asterisk config` has: every context the engine relies on.
ENGINE_CONTEXTS = CONTEXTS


class AmiPeer:
    """Asterisk 22's AMI as seen on the wire, with fault injection.

    `received` counts actions by name as received (also while they go unanswered);
    `channels` is what CoreShowChannels lists (uniqueid -> CoreShowChannel headers);
    `on_originate(peer, headers)` runs after an Originate is acknowledged;
    `commands` (action -> privilege) is what ListCommands lists, `contexts` what ShowDialplan
    finds, `devices` the DEVICE_STATE of each PJSIP endpoint (absent: INVALID).
    """

    def __init__(self, username: str = "dunning", secret: str = "s3cret", *,
                 auth_failure_delay: float = 1.0) -> None:
        self.username = username
        self.secret = secret
        self.auth_failure_delay = auth_failure_delay  # Asterisk sleep(1)s before refusing
        self.received: Counter[str] = Counter()
        self.actions: list[dict[str, str | list[str]]] = []
        self.sessions: set[_Session] = set()
        self.connections = 0
        self.silent = False
        #: Like an Asterisk that accepts logins while still loading (right after a restart).
        self.booting = False
        self.drop_on: Counter[str] = Counter()  # action -> how many more to drop on arrival
        self.swallow: Counter[str] = Counter()  # action -> how many more to leave unanswered
        self.commands: dict[str, str] = dict(ENGINE_COMMANDS)
        self.contexts: set[str] = set(ENGINE_CONTEXTS)
        self.devices: dict[str, str] = {}
        self.channels: dict[str, list[tuple[str, str]]] = {}
        self.on_originate: OriginateScript | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, port: int = 0) -> AmiPeer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Session(self), "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every session, like Asterisk exiting."""
        if self._server is not None:
            self._server.close()
            for s in list(self.sessions):
                s.drop()
            # Some Python 3.11 patch releases make wait_closed() wait for every connection the
            # server ever accepted, including one accepted while we were closing: bound it.
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                for s in list(self.sessions):
                    s.drop()
            self._server = None

    def say_fully_booted(self, session: _Session | None = None) -> None:
        """Send FullyBooted to `session`, or to every logged-in session (boot finished)."""
        self.booting = False
        for target in [session] if session else [s for s in self.sessions if s.authenticated]:
            target.write(wire([("Event", "FullyBooted"), ("Privilege", "system,all"),
                               ("Uptime", "1234"), ("LastReload", "1234"), ("Status", "Fully Booted")]))

    # ----------------------------------------------------------- fault injection
    def go_silent(self) -> None:
        """Like SIGSTOP: connections are still accepted, nothing is read or answered."""
        self.silent = True
        for s in self.sessions:
            if s.transport is not None:
                s.transport.pause_reading()

    def resume(self) -> None:
        """Like SIGCONT: what piled up is read and answered."""
        self.silent = False
        for s in list(self.sessions):
            if s.transport is not None and not s.closed:
                s.send_banner()
                s.transport.resume_reading()
                s.process()

    def drop_all(self) -> None:
        for s in list(self.sessions):
            s.drop()

    async def wait_for_action(self, name: str, count: int = 1, timeout: float = 5.0) -> None:
        async def poll() -> None:
            while self.received[name] < count:
                await asyncio.sleep(0.005)
        await asyncio.wait_for(poll(), timeout)

    # ----------------------------------------------------------- events
    def emit(self, message: str | list[tuple[str, str]]) -> None:
        """Send an event to every logged-in session (Asterisk has no per-session events here)."""
        text = message if isinstance(message, str) else wire(message)
        if self.silent:
            return
        for s in list(self.sessions):
            if s.authenticated:
                s.write(text)

    def replay(self, transcript: str, **values: str) -> None:
        for block in transcript_blocks(transcript, **values):
            self.emit(block)

    # ----------------------------------------------------------- actions
    def _handle(self, session: _Session, headers: list[tuple[str, str]]) -> None:
        h: dict[str, str | list[str]] = {}
        for k, v in headers:
            key = k.lower()
            if key in h:
                prev = h[key]
                h[key] = (prev if isinstance(prev, list) else [prev]) + [v]
            else:
                h[key] = v
        name = str(h.get("action", ""))
        self.received[name] += 1
        self.actions.append(h)
        if self.drop_on[name] > 0:
            self.drop_on[name] -= 1
            session.drop()
            return
        if self.swallow[name] > 0:  # read, never acted on or answered; the session goes on
            self.swallow[name] -= 1
            return
        aid = str(h.get("actionid", ""))
        idl = [("ActionID", aid)] if aid else []

        def respond(response: str, *rest: tuple[str, str]) -> None:
            session.write(wire([("Response", response), *idl, *rest]))

        lname = name.lower()
        if lname == "login":
            if h.get("username") == self.username and h.get("secret") == self.secret:
                session.authenticated = True
                respond("Success", ("Message", "Authentication accepted"))
                if not self.booting:
                    self.say_fully_booted(session)
            else:
                async def refuse() -> None:
                    await asyncio.sleep(self.auth_failure_delay)
                    respond("Error", ("Message", "Authentication failed"))
                    if session.transport is not None:
                        session.transport.close()
                task = asyncio.ensure_future(refuse())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        if not session.authenticated:
            respond("Error", ("Message", "Permission denied"))
            return
        if lname == "ping":
            respond("Success", ("Ping", "Pong"), ("Timestamp", "1718000000.123456"))
        elif lname == "logoff":
            respond("Goodbye", ("Message", "Thanks for all the fish."))
            if session.transport is not None:
                session.transport.close()
        elif lname == "originate":
            respond("Success", ("Message", "Originate successfully queued"))
            if self.on_originate is not None:
                flat = {k: (v if isinstance(v, str) else ",".join(v)) for k, v in h.items()}
                asyncio.get_running_loop().call_soon(self.on_originate, self, flat)
        elif lname == "coreshowchannels":
            respond("Success", ("EventList", "start"), ("Message", "Channels will follow"))
            for channel in self.channels.values():
                session.write(wire([("Event", "CoreShowChannel"), *idl, *channel]))
            session.write(wire([("Event", "CoreShowChannelsComplete"), *idl, ("EventList", "Complete"),
                                ("ListItems", str(len(self.channels)))]))
        elif lname == "hangup":
            target = str(h.get("channel", ""))
            uid = next((u for u, c in self.channels.items() if u == target or dict(c)["Channel"] == target), None)
            if uid is None:
                respond("Error", ("Message", "No such channel"))
            else:
                chan = dict(self.channels.pop(uid))
                respond("Success", ("Message", "Channel Hungup"))
                self.emit(wire([("Event", "Hangup"), ("Privilege", "call,all"), ("Channel", chan["Channel"]),
                                ("Uniqueid", uid), ("Linkedid", chan["Linkedid"]),
                                ("Cause", str(h.get("cause", "16"))), ("Cause-txt", "Normal Clearing")]))
        elif lname == "listcommands":
            session.write(wire([("Response", "Success"), *idl] + [
                (action, f"(synopsis)  (Priv: {priv})") for action, priv in self.commands.items()]))
        elif lname == "showdialplan":
            self._show_dialplan(session, str(h.get("context", "")), idl)
        elif lname == "getvar":
            variable = str(h.get("variable", ""))
            value = ""
            if variable.startswith("DEVICE_STATE(PJSIP/") and variable.endswith(")"):
                value = self.devices.get(variable[len("DEVICE_STATE(PJSIP/"):-1], "INVALID")
            respond("Success", ("Variable", variable), ("Value", value))
        elif lname == "coresettings":
            respond("Success", ("AMIversion", "11.0.0"), ("AsteriskVersion", "22.10.1"),
                    ("SystemName", ""), ("CoreMaxCalls", "0"), ("CoreMaxLoadAvg", "0.000000"),
                    ("CoreRunUser", "asterisk"), ("CoreRunGroup", "asterisk"), ("CoreMaxFilehandles", "0"),
                    ("CoreRealTimeEnabled", "No"), ("CoreCDRenabled", "Yes"), ("CoreHTTPenabled", "No"),
                    ("SoundsSearchCustomDir", "No"))
        else:
            respond("Error", ("Message", f"Invalid/unknown command: {name}. "
                                         "Use Action: ListCommands to show available commands."))

    def _show_dialplan(self, session: _Session, context: str, idl: list[tuple[str, str]]) -> None:
        """Like Asterisk 22: an Error when the context is missing; otherwise a list of one
        ListDialplan event per priority (one here) and ShowDialPlanComplete."""
        if context not in self.contexts:
            session.write(wire([("Response", "Error"), *idl, ("Message", f"Did not find context {context}")]))
            return
        session.write(wire([("Response", "Success"), *idl, ("EventList", "start"),
                            ("Message", "DialPlan list will follow")]))
        session.write(wire([("Event", "ListDialplan"), *idl, ("Context", context), ("Extension", "_X."),
                            ("Priority", "1"), ("Application", "NoOp"), ("AppData", ""),
                            ("Registrar", "pbx_config")]))
        session.write(wire([("Event", "ShowDialPlanComplete"), *idl, ("EventList", "Complete"),
                            ("ListItems", "1"), ("ListExtensions", "1"), ("ListPriorities", "1"),
                            ("ListContexts", "1")]))


def core_show_channel(channel: str, uniqueid: str, linkedid: str, state: int = 6,
                      bridge_id: str = "") -> list[tuple[str, str]]:
    """CoreShowChannel headers as Asterisk 22 lists a channel."""
    desc = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}[state]
    return [("Channel", channel), ("ChannelState", str(state)), ("ChannelStateDesc", desc),
            ("CallerIDNum", "<unknown>"), ("CallerIDName", "<unknown>"), ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"), ("Language", "en"), ("AccountCode", ""),
            ("Context", "dunning-sim"), ("Exten", "20005"), ("Priority", "3"), ("Uniqueid", uniqueid),
            ("Linkedid", linkedid), ("Application", "Wait"), ("ApplicationData", "30"),
            ("Duration", "00:00:07"), ("BridgeId", bridge_id)]


# --------------------------------------------------------------------------- transcripts
# Event sequences of one originated Local-channel call, as Asterisk 22 emits them with the
# engine's ids (ChannelId = {call_id}, OtherChannelId = {call_id}-2). Placeholders:
# {call_id}, {action_id}. Blank lines separate messages.

_CHANNEL = """Privilege: call,all
Channel: {chan}
ChannelState: {state}
ChannelStateDesc: {desc}
CallerIDNum: <unknown>
CallerIDName: <unknown>
ConnectedLineNum: <unknown>
ConnectedLineName: <unknown>
Language: en
AccountCode: 
Context: {ctx}
Exten: {exten}
Priority: 1
Uniqueid: {uid}
Linkedid: {{call_id}}"""


def _chan(chan: str, uid: str, state: int, ctx: str = "dunning-sim", exten: str = "20005",
          prefix: str = "") -> str:
    desc = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}[state]
    body = _CHANNEL.format(chan=chan, uid=uid, state=state, desc=desc, ctx=ctx, exten=exten)
    if prefix:
        lines = body.split("\n")
        body = "\n".join([lines[0]] + [prefix + line for line in lines[1:]])
    return body


L1 = "Local/20005@dunning-sim-00000001;1"
L2 = "Local/20005@dunning-sim-00000001;2"
AGENT = "PJSIP/6001-00000002"


def _ev(name: str, body: str, extra: str = "") -> str:
    return f"Event: {name}\n{body}" + (f"\n{extra}" if extra else "")


_SETUP = "\n\n".join([
    _ev("Newchannel", _chan(L1, "{{call_id}}", 0)),
    _ev("Newchannel", _chan(L2, "{{call_id}}-2", 0)),
    "Event: DialBegin\n" + _chan(L1, "{{call_id}}", 0, prefix="Dest")
    + "\nDialString: 20005@dunning-sim/n",
    _ev("Newstate", _chan(L1, "{{call_id}}", 5)),
])

_ANSWER = "\n\n".join([
    _ev("Newstate", _chan(L2, "{{call_id}}-2", 6)),
    _ev("Newstate", _chan(L1, "{{call_id}}", 6)),
    "Event: DialEnd\n" + _chan(L1, "{{call_id}}", 6, prefix="Dest") + "\nDialStatus: ANSWER",
    """Event: OriginateResponse
Privilege: call,all
ActionID: {{action_id}}
Response: Success
Channel: """ + L1 + """
Context: dunning-agents
Exten: s
Application: 
Data: 
Reason: 4
Uniqueid: {{call_id}}
CallerIDNum: <unknown>
CallerIDName: <unknown>""",
])

_AGENT_BRIDGE = "\n\n".join([
    _ev("Newchannel", _chan(AGENT, "1718000000.7", 0, ctx="agents", exten="s")),
    "Event: DialBegin\n" + _chan(L1, "{{call_id}}", 6, ctx="dunning-agents", exten="s")
    + "\n" + "\n".join("Dest" + line for line in _chan(AGENT, "1718000000.7", 0).split("\n")[1:])
    + "\nDialString: 6001",
    _ev("Newstate", _chan(AGENT, "1718000000.7", 6, ctx="agents", exten="s")),
    _ev("BridgeEnter", "Privilege: call,all\nBridgeUniqueid: 5d1c-bridge\nBridgeType: basic\n"
        "BridgeTechnology: simple_bridge\nBridgeCreator: <unknown>\nBridgeName: <unknown>\n"
        "BridgeNumChannels: 1\nBridgeVideoSourceMode: none\n"
        + "\n".join(_chan(L1, "{{call_id}}", 6, ctx="dunning-agents", exten="s").split("\n")[1:])),
    _ev("BridgeEnter", "Privilege: call,all\nBridgeUniqueid: 5d1c-bridge\nBridgeType: basic\n"
        "BridgeTechnology: simple_bridge\nBridgeCreator: <unknown>\nBridgeName: <unknown>\n"
        "BridgeNumChannels: 2\nBridgeVideoSourceMode: none\n"
        + "\n".join(_chan(AGENT, "1718000000.7", 6, ctx="agents", exten="s").split("\n")[1:])),
])


def _hangup(chan: str, uid: str, cause: int = 16, txt: str = "Normal Clearing", state: int = 6) -> str:
    return _ev("Hangup", _chan(chan, uid, state), f"Cause: {cause}\nCause-txt: {txt}")


#: Debtor answers and is bridged to agent 6001; the conversation goes on.
BRIDGED_ONLY = "\n\n".join([_SETUP, _ANSWER, _AGENT_BRIDGE]).replace("{{", "{").replace("}}", "}")

#: The end of a bridged call: the debtor hangs up, then the agent's side.
BRIDGED_CALL_ENDS = "\n\n".join([
    _hangup(L2, "{{call_id}}-2"),
    _ev("BridgeLeave", "Privilege: call,all\nBridgeUniqueid: 5d1c-bridge\nBridgeType: basic\n"
        "BridgeTechnology: simple_bridge\nBridgeCreator: <unknown>\nBridgeName: <unknown>\n"
        "BridgeNumChannels: 1\nBridgeVideoSourceMode: none\n"
        + "\n".join(_chan(L1, "{{call_id}}", 6).split("\n")[1:])),
    _hangup(L1, "{{call_id}}"),
    _hangup(AGENT, "1718000000.7"),
]).replace("{{", "{").replace("}}", "}")

def _originate_failure(reason: int) -> str:
    """Asterisk's OriginateResponse for an Originate that failed with `reason`."""
    return ("Event: OriginateResponse\nPrivilege: call,all\nActionID: {{action_id}}\nResponse: Failure\n"
            "Channel: Local/20005@dunning-sim\nContext: dunning-agents\nExten: s\nApplication: \nData: \n"
            f"Reason: {reason}\nUniqueid: <null>\nCallerIDNum: <unknown>\nCallerIDName: <unknown>")


#: Debtor answers, is bridged to agent 6001, later the debtor hangs up.
ANSWERED_AND_BRIDGED = BRIDGED_ONLY + "\n\n" + BRIDGED_CALL_ENDS

#: Debtor answers and hangs up before any agent is bridged.
ANSWERED_THEN_DEBTOR_HANGS_UP = "\n\n".join([
    _SETUP, _ANSWER,
    _hangup(L2, "{{call_id}}-2"),
    _hangup(L1, "{{call_id}}"),
]).replace("{{", "{").replace("}}", "}")

#: Debtor answers; the call stays up (for reconciliation tests).
ANSWERED_ONLY = "\n\n".join([_SETUP, _ANSWER]).replace("{{", "{").replace("}}", "}")

#: Debtor's line is busy: Busy() on the ;2 half, OriginateResponse Failure reason 5.
BUSY = "\n\n".join([
    _SETUP,
    _hangup(L2, "{{call_id}}-2", 17, "User busy", state=5),
    _hangup(L1, "{{call_id}}", 17, "User busy", state=5),
    _originate_failure(5),
]).replace("{{", "{").replace("}}", "}")


def _answered_as_the_dial_gives_up(ours_first: bool) -> str:
    """The debtor answers in the instant Asterisk gives the dial up (its ring time over; seen
    after Asterisk was frozen for longer than the ring time): the debtor's half is answered,
    ours hangs up still ringing (19: no answer) and never reaches the dialplan after the
    answer; the two halves hang up in either order."""
    hangups = [_hangup(L1, "{{call_id}}", 19, "No answer", state=5), _hangup(L2, "{{call_id}}-2", 19, "No answer")]
    return "\n\n".join([
        _SETUP, _ev("Newstate", _chan(L2, "{{call_id}}-2", 6)), *(hangups if ours_first else hangups[::-1]),
        _originate_failure(3),
    ]).replace("{{", "{").replace("}}", "}")


ANSWERED_AS_THE_DIAL_GIVES_UP = _answered_as_the_dial_gives_up(ours_first=True)
ANSWERED_AS_THE_DIAL_GIVES_UP_THEIRS_FIRST = _answered_as_the_dial_gives_up(ours_first=False)


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    """Poll until `predicate()` holds; fail with `what` after `timeout` seconds."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def settings_kwargs(peer: AmiPeer, **overrides: object) -> dict[str, object]:
    """AmiSettings fields for a fast test connection to `peer`."""
    base: dict[str, object] = dict(
        host="127.0.0.1", port=peer.port, username=peer.username, secret=peer.secret,
        heartbeat_interval=5.0, heartbeat_timeout=0.3, action_timeout=1.0, login_timeout=0.5,
        backoff_initial=0.02, backoff_max=0.1,
    )
    base.update(overrides)
    return base


#: The debtor side hangs up, then our half follows (Local channel propagation).
DEBTOR_HANGS_UP = "\n\n".join([
    _hangup(L2, "{{call_id}}-2"),
    _hangup(L1, "{{call_id}}"),
]).replace("{{", "{").replace("}}", "}")


def hangup_event(channel: str, uniqueid: str, linkedid: str, cause: int = 16) -> str:
    return wire([("Event", "Hangup"), ("Privilege", "call,all"), ("Channel", channel), ("Uniqueid", uniqueid),
                 ("Linkedid", linkedid), ("Cause", str(cause)), ("Cause-txt", "Normal Clearing")])
