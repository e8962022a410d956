"""Asterisk configuration for the engine, rendered from a spec by pure functions.

Two shapes come out of the same fragments:

* ``include_files`` — what a user who runs their own Asterisk ``#include``s:
  the AMI user, the agents' endpoints and the dialer's contexts, nothing else.
* ``sandbox_files`` — the complete, minimal configuration of the local sandbox,
  which wraps the same fragments with a transport, logger and module list.

Secrets go into the rendered text (Asterisk needs them there) but never into
the repository or a log: the caller keeps the files private. `dunning asterisk
config --out` writes them with mode 0600; the sandbox, whose Asterisk runs as root,
writes them root-owned with mode 0640 (the mode Debian gives /etc/asterisk's files).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ami_bridge.supervision import SPY_MODES

#: Contexts the engine relies on; ``dunning asterisk check`` looks for each.
CONTEXTS = ("dunning-outbound", "dunning-answered", "dunning-agents", "dunning-agent-line",
            "dunning-auto-answer", "dunning-supervise", "dunning-transfer", "dunning-hold",
            "dunning-consult", "dunning-transferred", "dunning-sim")

#: Simulated debtors: the leading digits of a test number choose what the
#: "public network" does with it; the last two digits are a parameter (seconds).
SIM_PATTERNS = {
    "21": "answers after NN seconds, says the debtor's sentence, stays on the line",
    "22": "rings NN seconds, then busy",
    "23": "rings and never answers",
    "24": "answers after NN seconds and hangs up at once",
    "25": "invalid number (congestion, cause 1 unallocated)",
}
#: Answering machines and short-spoken humans, for AMD: 26VS / 27VS, V picks one of the
#: recorded greetings (V mod SIM_VARIANTS), S the seconds it rings before the pick-up.
SIM_AMD_PATTERNS = {
    "26": "an answering machine: rings S seconds, a greeting of several seconds, a beep, then records",
    "27": "a person who says only \"hello?\" or \"喂？\" after S seconds of ringing, then waits",
}
SIM_VARIANTS = 5
#: 199 0000 + a test number above: that test number, in the shape of a mobile.
SIM_TEST_MOBILE = "1990000"

#: Realistic numbers (mobiles 1[3-9]x, landlines 0x…) are simulated too; the
#: last digit decides, so that imported demo cases have a plausible mix.
SIM_LAST_DIGIT = {
    "0": ("answer", 3), "1": ("answer", 4), "2": ("answer", 5), "3": ("answer", 6),
    "4": ("answer", 7), "5": ("answer", 8), "6": ("busy", 4), "7": ("noanswer", 0),
    "8": ("drop", 3), "9": ("invalid", 0),
}

_BEHAVIOUR_TEXT = {
    "answer": "answers after {s} s", "busy": "busy after {s} s", "noanswer": "never answers",
    "drop": "answers after {s} s, hangs up", "invalid": "invalid number",
}
_PATTERN_BEHAVIOUR = {"21": "answer", "22": "busy", "23": "noanswer", "24": "drop", "25": "invalid"}


def simulated_behaviour(number: str) -> str:
    """What the simulated network does with `number` (mirrors the dunning-sim context)."""
    if len(number) == 4 and number.isdigit() and number[:2] in SIM_AMD_PATTERNS:
        kind = "an answering machine" if number[:2] == "26" else "a person saying hello"
        return f"{kind} (greeting {int(number[2]) % SIM_VARIANTS}) after {number[3]} s"
    if len(number) == 4 and number[:2] in _PATTERN_BEHAVIOUR and number.isdigit():
        return _BEHAVIOUR_TEXT[_PATTERN_BEHAVIOUR[number[:2]]].format(s=int(number[2:]))
    if number.isdigit() and number.startswith(SIM_TEST_MOBILE) and len(number) == 11:
        return simulated_behaviour(number[7:])
    if number.isdigit() and (re.fullmatch(r"1[3-9]\d{9}", number) or re.fullmatch(r"0\d{9,11}", number)):
        behaviour, seconds = SIM_LAST_DIGIT[number[-1]]
        return _BEHAVIOUR_TEXT[behaviour].format(s=seconds)
    return _BEHAVIOUR_TEXT["invalid"]


_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


@dataclass(frozen=True)
class Agent:
    """A SIP endpoint a softphone registers as (the agent's extension)."""

    extension: str
    password: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.extension):
            raise ValueError(f"agent extension {self.extension!r}: letters, digits, '_.-' only")
        if len(self.password) < 12:
            raise ValueError(f"agent {self.extension}: password shorter than 12 characters")

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"Agent(extension={self.extension!r}, password='***')"


@dataclass(frozen=True)
class ConfigSpec:
    """Everything the rendered configuration depends on."""

    ami_username: str
    ami_secret: str = field(repr=False)
    agents: tuple[Agent, ...] = ()
    #: Supervisors' phones: one endpoint per supervisor account, named by its user name
    #: (listening in, and the agents' hand-over, call it).
    supervisors: tuple[Agent, ...] = ()
    ami_bind: str = "127.0.0.1"
    ami_port: int = 5038
    ami_permit: str = "127.0.0.1/255.255.255.255"
    sip_bind: str = "127.0.0.1"
    sip_port: int = 5060
    rtp_start: int = 10000
    rtp_end: int = 10999
    #: Dial string of the outside world; ``{number}`` is replaced by ${EXTEN}.
    network: str = "Local/{number}@dunning-sim/n"
    recordings_dir: str = "/var/spool/asterisk/dunning"
    #: The message a debtor hears when no agent can take the call (no extension).
    no_agent_message: str = "dunning/no-agent"
    debtor_voice: str = "dunning/debtor-voice"
    sim_linger_s: int = 20
    agent_ring_s: int = 10
    #: How long a debtor who answered may wait for a free agent (the 2-second rule).
    agent_wait_s: int = 2
    #: AMD()'s parameters (ms), chosen on principle, not fitted to a clip (docs/supervisor.md):
    #: a person who picks up says a word or two ("hello?", "喂？", under 1.5 s) within 2.5 s
    #: and then waits for the caller (0.8 s of silence: HUMAN); a machine speaks longer than
    #: 1.5 s, or more than 4 words, or says nothing for 2.5 s (MACHINE); undecided after 4 s
    #: (NOTSURE) the call goes to an agent, as a person's would.
    amd_params: tuple[int, ...] = (2500, 1500, 800, 4000, 100, 50, 4, 256, 5000)

    def __post_init__(self) -> None:
        if not _NAME.match(self.ami_username):
            raise ValueError(f"AMI username {self.ami_username!r}: letters, digits, '_.-' only")
        if len(self.ami_secret) < 16:
            raise ValueError("AMI secret shorter than 16 characters")
        if "{number}" not in self.network:
            raise ValueError(f"network dial string {self.network!r} has no {{number}}")


# -- fragments (what a user's own Asterisk includes) -------------------------

#: Read: channel events and system events (FullyBooted, Shutdown, Reload), and user events
#: (the dialplan's UserEvent DunningAMD: what AMD() concluded).
#: Write: originate, hang up / MixMonitor (call), channel and dialplan listings
#: (reporting). No 'system', 'command' or 'config' write: the engine can neither
#: reload nor run CLI commands.
AMI_READ = "system,call,user"
AMI_WRITE = "originate,call,reporting"


def manager_user(spec: ConfigSpec) -> str:
    return (
        f"[{spec.ami_username}]\n"
        f"secret = {spec.ami_secret}\n"
        "deny = 0.0.0.0/0.0.0.0\n"
        f"permit = {spec.ami_permit}\n"
        f"read = {AMI_READ}\n"
        f"write = {AMI_WRITE}\n"
        "writetimeout = 1000\n"
    )


def pjsip_agents(spec: ConfigSpec) -> str:
    """The agents' endpoints, then the supervisors' phones (neither may dial out)."""
    blocks = [_endpoint(agent, "agent") for agent in spec.agents]
    blocks += [_endpoint(phone, "supervisor") for phone in spec.supervisors]
    return "\n".join(blocks)


def _endpoint(agent: Agent, who: str) -> str:
    ext = agent.extension
    return (
        f"[{ext}]\n"
        "type = endpoint\n"
        "context = dunning-agents\n"
        "disallow = all\n"
        "allow = ulaw,alaw\n"
        f"auth = {ext}-auth\n"
        f"aors = {ext}\n"
        "direct_media = no\n"
        "rtp_symmetric = yes\n"
        "force_rport = yes\n"
        "rewrite_contact = yes\n"
        f"callerid = Dunning {who} <{ext}>\n"
        "\n"
        f"[{ext}-auth]\n"
        "type = auth\n"
        "auth_type = digest\n"
        f"username = {ext}\n"
        f"password = {agent.password}\n"
        "\n"
        f"[{ext}]\n"
        "type = aor\n"
        "max_contacts = 1\n"
        "remove_existing = yes\n"
    )


def _sim_context(spec: ConfigSpec) -> str:
    lines = [
        "; The simulated public network: a repeatable set of debtors for tests and demos.",
        "; Test numbers 2PNN: P picks the behaviour, NN is seconds.",
    ]
    lines += [f";   {p}NN  {what}" for p, what in SIM_PATTERNS.items()]
    lines += [f";   {p}VS  {what}" for p, what in SIM_AMD_PATTERNS.items()]
    lines += [
        "[dunning-sim]",
        "exten => _21XX,1,Gosub(dunning-sim-answer,s,1(${EXTEN:2}))",
        "exten => _22XX,1,Gosub(dunning-sim-busy,s,1(${EXTEN:2}))",
        "exten => _23XX,1,Gosub(dunning-sim-noanswer,s,1)",
        "exten => _24XX,1,Gosub(dunning-sim-drop,s,1(${EXTEN:2}))",
        "exten => _25XX,1,Gosub(dunning-sim-invalid,s,1)",
        f"exten => _26XX,1,Gosub(dunning-sim-machine,s,1($[${{EXTEN:2:1}} % {SIM_VARIANTS}],${{EXTEN:3:1}}))",
        f"exten => _27XX,1,Gosub(dunning-sim-human,s,1($[${{EXTEN:2:1}} % {SIM_VARIANTS}],${{EXTEN:3:1}}))",
        "; 199 0000 NNNN: the test number NNNN in a mobile's shape (what a bank's file holds).",
        "exten => _1990000XXXX,1,Goto(${EXTEN:7},1)",
        "; Mobiles (1[3-9] + 9 digits) and landlines (0 + 9-11 digits): the last digit decides.",
    ]
    for digit, (behaviour, seconds) in SIM_LAST_DIGIT.items():
        for pattern in (f"_1[3-9]XXXXXXXX{digit}", f"_0XXXXXXXX{digit}", f"_0XXXXXXXXX{digit}",
                        f"_0XXXXXXXXXX{digit}"):
            lines.append(f"exten => {pattern},1,Gosub(dunning-sim-{behaviour},s,1({seconds}))")
    lines += [
        "exten => _X.,1,Gosub(dunning-sim-invalid,s,1)",
        "",
        "; With the global DUNNING_SIM_RECORD (a directory; tests set it over AMI) the debtor's end",
        "; records what the debtor hears (MixMonitor's read direction: <uniqueid>-heard.wav).",
        "[dunning-sim-answer]",
        "exten => s,1,Ringing()",
        " same => n,Wait(${ARG1})",
        " same => n,Answer()",
        " same => n,GotoIf($[\"${DUNNING_SIM_RECORD}\" = \"\"]?talk)",
        " same => n,MixMonitor(${DUNNING_SIM_RECORD}/${UNIQUEID}.wav,r(${DUNNING_SIM_RECORD}/${UNIQUEID}-heard.wav))",
        " same => n(talk),Wait(0.3)",
        f" same => n,Playback({spec.debtor_voice})",
        f" same => n,Wait({spec.sim_linger_s})",
        " same => n,Hangup(16)",
        "",
        "; An answering machine: a pick-up 0.3-0.9 s before its greeting, the greeting, a beep;",
        "; then it records (the line's faint noise, 30 s) until the caller hangs up.",
        "[dunning-sim-machine]",
        "exten => s,1,Ringing()",
        " same => n,Wait(${ARG2})",
        " same => n,Answer()",
        " same => n,Wait(0.${RAND(3,9)})",
        " same => n,Playback(dunning/sim-machine-${ARG1})",
        " same => n,Playback(dunning/sim-beep)",
        " same => n,Playback(dunning/sim-line)",
        " same => n,Hangup(16)",
        "",
        "; A person who says only hello after a 0.2-0.8 s pick-up, then waits for the caller (30 s).",
        "[dunning-sim-human]",
        "exten => s,1,Ringing()",
        " same => n,Wait(${ARG2})",
        " same => n,Answer()",
        " same => n,Wait(0.${RAND(2,8)})",
        " same => n,Playback(dunning/sim-hello-${ARG1})",
        " same => n,Playback(dunning/sim-line)",
        " same => n,Hangup(16)",
        "",
        "[dunning-sim-busy]",
        "exten => s,1,Ringing()",
        " same => n,Wait(${ARG1})",
        " same => n,Busy(10)",
        "",
        "[dunning-sim-noanswer]",
        "exten => s,1,Ringing()",
        " same => n,Wait(3600)",
        "",
        "[dunning-sim-drop]",
        "exten => s,1,Ringing()",
        " same => n,Wait(${ARG1})",
        " same => n,Answer()",
        " same => n,Wait(0.2)",
        " same => n,Hangup(16)",
        "",
        "[dunning-sim-invalid]",
        "exten => s,1,Hangup(1)",
        "",
    ]
    return "\n".join(lines)


def extensions_contexts(spec: ConfigSpec) -> str:
    network = spec.network.replace("{number}", "${EXTEN}")
    return f"""\
; The dialer's contexts, generated by `dunning asterisk config`.
;
; The engine originates  Local/<number>@dunning-outbound/n  with
;   DUNNING_ATTEMPT  the attempt id (names the recording files)
;   DUNNING_AGENT    the reserved agent's endpoint, empty when none is free
; and, once the debtor answers, the call continues in dunning-answered,s,1.

[dunning-outbound]
; One line per dial reaches Asterisk's log: the ground truth for "dialled once".
exten => _X.,1,Log(NOTICE,dunning-dial ${{UNIQUEID}} ${{EXTEN}})
 same => n,Dial({network})
 same => n,Goto(status-${{DIALSTATUS}},1)
exten => status-BUSY,1,Busy(5)
; Otherwise hang up with the network's own cause (1: no such number, 34: congestion, ...).
exten => _status-.,1,Hangup(${{IF($[0${{HANGUPCAUSE}} > 0]?${{HANGUPCAUSE}}:16)}})

[dunning-answered]
; This half of the Local channel faces the debtor: MixMonitor's "read" direction
; is what the debtor says, "write" is what the agent says.
; A call placed with no agent reserved (predictive dialing) waits here up to
; {spec.agent_wait_s} s for the engine to name a free agent (AMI Setvar DUNNING_AGENT); after
; that the debtor hears the no-agent message and the call is abandoned.
; With DUNNING_AMD (hangup or message) AMD() listens first and the engine hears its result
; (UserEvent DunningAMD); a MACHINE never reaches an agent: hung up, or, with message, the
; campaign's message (DUNNING_AMD_MESSAGE) is left once the greeting and its beep are over.
exten => s,1,NoOp(dunning answered attempt ${{DUNNING_ATTEMPT}} agent ${{DUNNING_AGENT}})
 same => n,Set(REC={spec.recordings_dir}/${{DUNNING_ATTEMPT}})
 same => n,MixMonitor(${{REC}}.wav,r(${{REC}}-debtor.wav)t(${{REC}}-agent.wav))
 same => n,GotoIf($["${{DUNNING_AMD}}" = "" | "${{DUNNING_AMD}}" = "off"]?waiting)
 same => n,AMD({",".join(map(str, spec.amd_params))})
 same => n,UserEvent(DunningAMD,Attempt: ${{DUNNING_ATTEMPT}},Status: ${{AMDSTATUS}},Cause: ${{AMDCAUSE}})
 same => n,GotoIf($["${{AMDSTATUS}}" = "MACHINE"]?machine)
 same => n(waiting),Set(WAITED=0)
 same => n(wait),GotoIf($["${{DUNNING_AGENT}}" != ""]?connect)
 same => n,GotoIf($[${{WAITED}} >= {spec.agent_wait_s * 10}]?no-agent)
 same => n,Set(WAITED=$[${{WAITED}} + 1])
 same => n,Wait(0.1)
 same => n,Goto(wait)
; Live findings (recordings/live.py): while `dunning live` runs it sets the global DUNNING_LIVE
; to its AudioSocket address; the agent's words are then streamed to it as they are spoken: an
; AudioSocket channel (its UUID made from the MD5 of the attempt) spies, quietly and read-only,
; on the ;2 half of this call (the half that dials the debtor, uniqueid <attempt>-2), whose read
; direction is what the agent says. The spy only listens: the call and its recording are as
; without it, and it ends when the call does.
 same => n(connect),GotoIf($["${{DUNNING_LIVE}}" = ""]?reach)
 same => n,Set(LIVE_ID=${{MD5(${{DUNNING_ATTEMPT}})}})
 same => n,Originate(AudioSocket/${{DUNNING_LIVE}}/${{LIVE_ID:0:8}}-${{LIVE_ID:8:4}}-${{LIVE_ID:12:4}}-${{LIVE_ID:16:4}}-${{LIVE_ID:20:12}},exten,dunning-live,spy,1,,av(DUNNING_SPIED=${{UNIQUEID}}-2))
 same => n(reach),GotoIf($["${{DUNNING_LINE}}" != ""]?line)
 same => n,GotoIf($["${{DUNNING_AUTO_ANSWER}}" = "1"]?auto)
 same => n,Dial(PJSIP/${{DUNNING_AGENT}},{spec.agent_ring_s})
 same => n,Goto(dialled)
 same => n(auto),Dial(PJSIP/${{DUNNING_AGENT}},{spec.agent_ring_s},b(dunning-auto-answer^s^1))
 same => n(dialled),GotoIf($["${{DIALSTATUS}}" != "ANSWER"]?no-agent)
 same => n,Hangup(16)
; The agent's persistent line (DUNNING_LINE, the uniqueid of the agent's channel waiting in
; dunning-agent-line): the agent is pulled into a bridge with the debtor, no ring; with
; DUNNING_WHISPER=tone the agent hears a beep first. When the debtor leaves, the agent goes
; back to waiting on the line; when the agent hangs up, the call ends here.
 same => n(line),Bridge(${{DUNNING_LINE}},${{IF($["${{DUNNING_WHISPER}}" = "tone"]?p)}}F(dunning-agent-line^s^{LINE_WAIT_PRIORITY}))
 same => n,GotoIf($["${{BRIDGERESULT}}" != "SUCCESS"]?no-agent)
 same => n,Hangup(16)
 same => n(no-agent),Set(DUNNING_ABANDONED=1)
 same => n,Playback({spec.no_agent_message})
 same => n,Hangup(16)
 same => n(machine),GotoIf($["${{DUNNING_AMD}}" != "message"]?machine-end)
 same => n,WaitForSilence(1500,1,30)
 same => n,Log(NOTICE,dunning-amd-message ${{DUNNING_ATTEMPT}} ${{DUNNING_AMD_MESSAGE}})
 same => n,Playback(${{DUNNING_AMD_MESSAGE}})
 same => n(machine-end),Hangup(16)

[dunning-agents]
; Agents' softphones may not dial out through the engine's Asterisk.
exten => _X.,1,Hangup(21)

[dunning-agent-line]
; The agent's persistent line: the engine calls the agent's phone once at log-in
; (Originate PJSIP/<agent> into here); once answered it waits, hearing silence, in the
; agent's own holding bridge until a debtor is bridged in (dunning-answered, Bridge()), and
; comes back here when that call ends. The agent hanging up ends the line (the engine
; pauses the agent).
exten => s,1,NoOp(dunning agent line ${{DUNNING_LINE_AGENT}})
 same => n(wait),BridgeWait(dunning-line-${{UNIQUEID}},participant,e(s))
 same => n,Goto(wait)

[dunning-live]
; The live-findings stream (see dunning-answered): listen to the agent's words only (o), with
; no beep (q), on that one channel (u), until it hangs up (E).
exten => spy,1,ChanSpy(${{DUNNING_SPIED}},qouE)
 same => n,Hangup()

[dunning-supervise]
; A supervisor listening in: the console calls the supervisor's phone (Originate
; PJSIP/<supervisor>) into here, the extension being the mode, with DUNNING_SPY_AGENT the
; agent's extension. ChanSpy on the agent's channel: q no beep, E ends when the agent's channel
; hangs up, S ends when there is nothing to listen to; w whisper (the agent hears the
; supervisor, the debtor does not), B barge (both hear the supervisor).
exten => listen,1,ChanSpy(PJSIP/${{DUNNING_SPY_AGENT}}-,{SPY_MODES["listen"]})
 same => n,Hangup()
exten => whisper,1,ChanSpy(PJSIP/${{DUNNING_SPY_AGENT}}-,{SPY_MODES["whisper"]})
 same => n,Hangup()
exten => barge,1,ChanSpy(PJSIP/${{DUNNING_SPY_AGENT}}-,{SPY_MODES["barge"]})
 same => n,Hangup()

[dunning-transfer]
; An agent hands the debtor over to a supervisor: the console redirects the debtor's channel
; (still recorded) here, the extension being the supervisor's phone; if the supervisor does
; not answer, the debtor goes back to the agent (dunning-answered's connect).
exten => _[0-9A-Za-z].,1,NoOp(dunning hand-over of attempt ${{DUNNING_ATTEMPT}} to ${{EXTEN}})
 same => n,Dial(PJSIP/${{EXTEN}},{spec.agent_ring_s * 2})
 same => n,GotoIf($["${{DIALSTATUS}}" != "ANSWER"]?dunning-answered,s,connect)
 same => n,Hangup(16)

; An attended transfer on a persistent line (ami_bridge/supervision.py), in three steps.
[dunning-hold]
; 1. The console redirects the debtor's channel here (out of the bridge with the agent's line,
; which goes back to waiting by itself), the extension being the consultation's id: the
; uniqueid of the supervisor's phone, which the console calls next into dunning-consult. The
; debtor hears music on hold, still recorded (MixMonitor stays on this channel). Once that
; channel is gone (the supervisor did not answer or hung up, or the agent cancelled: the
; console hung it up) the debtor is bridged to the agent's line again.
exten => _[0-9A-Za-z].,1,UserEvent(DunningTransfer,Attempt: ${{DUNNING_ATTEMPT}},Status: hold,Cause: ${{EXTEN}})
 same => n,StartMusicOnHold()
 same => n,Set(HELD=0)
 same => n(hold),Wait(0.2)
 same => n,Set(HELD=$[${{HELD}} + 1])
 same => n,GotoIf($[${{HELD}} < {TRANSFER_GRACE_TICKS}]?hold)
 same => n,GotoIf($[${{CHANNEL_EXISTS(${{EXTEN}})}}]?hold)
 same => n,StopMusicOnHold()
 same => n,UserEvent(DunningTransfer,Attempt: ${{DUNNING_ATTEMPT}},Status: back,Cause: ${{EXTEN}})
 same => n,Goto(dunning-answered,s,line)

[dunning-consult]
; 2. The supervisor's phone (Originate PJSIP/<supervisor> with the consultation's id, and
; DUNNING_LINE the agent's line), once answered, is bridged with the agent's line: the agent
; and the supervisor talk while the debtor waits. When the supervisor hangs up, the agent's
; line goes back to waiting (and the debtor, seeing the consultation gone, comes back to it).
exten => s,1,NoOp(dunning consultation of ${{DUNNING_LINE}})
 same => n,Bridge(${{DUNNING_LINE}},F(dunning-agent-line^s^{LINE_WAIT_PRIORITY}))
 same => n,Hangup(16)

[dunning-transferred]
; 3. Complete: the console redirects the debtor here, the extension being the consultation's
; id: the supervisor's phone is taken out of the consultation into a bridge with the debtor
; (still recorded); the agent's line, left alone, goes back to waiting. A consultation already
; over (the supervisor hung up) brings the debtor back to the agent instead.
exten => _[0-9A-Za-z].,1,StopMusicOnHold()
 same => n,GotoIf($[!${{CHANNEL_EXISTS(${{EXTEN}})}}]?dunning-answered,s,line)
 same => n,UserEvent(DunningTransfer,Attempt: ${{DUNNING_ATTEMPT}},Status: complete,Cause: ${{EXTEN}})
 same => n,Bridge(${{EXTEN}})
 same => n,Hangup(16)

[dunning-auto-answer]
; Pre-dial handler on the agent's channel (ringing mode with auto-answer): ask the phone to
; answer by itself. Call-Info answer-after=0 (Polycom, Yealink, Grandstream, Snom, Zoiper,
; Linphone, MicroSIP), Alert-Info info=alert-autoanswer (Cisco, Yealink, older Snom).
exten => s,1,Set(PJSIP_HEADER(add,Call-Info)=<sip:dunning>\\;answer-after=0)
 same => n,Set(PJSIP_HEADER(add,Alert-Info)=<http://127.0.0.1/>\\;info=alert-autoanswer\\;delay=0)
 same => n,Return()

{_sim_context(spec)}
"""


#: Where an agent's line goes back to wait after a call (the BridgeWait priority above).
LINE_WAIT_PRIORITY = 2
#: How long (0.2 s ticks) a debtor on hold waits for the supervisor's phone to be called
#: before its absence sends the debtor back to the agent (the console calls it right after).
TRANSFER_GRACE_TICKS = 10


#: Asterisk's own record of every call: Channel Event Logging (CEL) written by cel_custom to
#: ``/var/log/asterisk/cel-custom/<CEL_FILE>``, one line per event. The engine reads it
#: (dialer/cel.py) to settle a call whose end it did not see live (after a crash of the
#: engine, a lost AMI connection, a frozen or restarted Asterisk): answer, bridge and hang-up
#: times and causes come from here, never from file times or the moment of a takeover.
CEL_FILE = "dunning-cel.csv"
CEL_EVENTS = "CHAN_START,CHAN_END,ANSWER,HANGUP,BRIDGE_ENTER,BRIDGE_EXIT,LINKEDID_END"
CEL_FIELDS = "EventType,EventTime,UniqueID,LinkedID,ChanName,Context,Exten,EventExtra"


def cel_general() -> str:
    """cel.conf: CEL on, with the events the engine reads (times are epoch.microseconds)."""
    return f"[general]\nenable = yes\napps = \nevents = {CEL_EVENTS}\n"


def cel_custom() -> str:
    """cel_custom.conf: one CSV line per CEL event, in the columns dialer/cel.py reads."""
    return (f"[{CEL_FILE}]\nformat = dsv\nseparator_character = ,\nquote_character = \"\n"
            f"quoting_method = all\nfields = {CEL_FIELDS}\n")


#: Where cel_custom writes the file on a standard install (the engine: DUNNING_CEL_LOG).
CEL_PATH = f"/var/log/asterisk/cel-custom/{CEL_FILE}"
#: A floor's CEL file grows by about 4 KB per answered call (some 20 lines): 80 MB on a day of
#: 20,000 calls. Rotated at this size, the engine reads at most two such files when it starts
#: (the current one and the previous), about 1 s each, and holds about 3 times their size in
#: memory (measured: a 5 MB file, 0.2 s, 15 MB).
CEL_ROTATE_SIZE = "16M"
#: Rotated files kept (compressed but the newest): a month of a floor of 20,000 calls a day.
CEL_ROTATE_KEEP = 150


def cel_logrotate(path: str = CEL_PATH) -> str:
    """The CEL file's rotation for logrotate(8) (/etc/logrotate.d/dunning-cel). logrotate checks
    the size when it runs (daily by default: run it hourly for the cap to hold on a busy
    floor). cel_custom opens the file for every line (Asterisk holds no descriptor of it), so a
    rename is enough: no signal, and no copytruncate (which loses the lines written between
    its copy and its truncation); Asterisk starts the new file with its next line. The newest
    rotated file stays uncompressed (delaycompress): the engine reads it when it starts
    (dialer/cel.py), so a call from before the last rotation is still settled from Asterisk's
    record."""
    return (f"{path} {{\n    size {CEL_ROTATE_SIZE}\n    rotate {CEL_ROTATE_KEEP}\n    missingok\n"
            "    notifempty\n    nocreate\n    compress\n    delaycompress\n}\n")


def include_files(spec: ConfigSpec) -> dict[str, str]:
    """Files a user's own Asterisk includes (``#include dunning-….conf``)."""
    return {
        "dunning-manager.conf": manager_user(spec),
        "dunning-pjsip.conf": pjsip_agents(spec),
        "dunning-extensions.conf": extensions_contexts(spec),
        "dunning-cel.conf": cel_general(),
        "dunning-cel_custom.conf": cel_custom(),
    }


# -- the sandbox's complete configuration ------------------------------------

#: The sandbox's music on hold (asterisk_conf/sandbox.py writes its file).
MOH_DIRECTORY = "/usr/share/asterisk/sounds/dunning/moh"

#: Everything the engine uses, nothing else, so the sandbox boots in a second.
SANDBOX_MODULES = (
    "res_timing_timerfd", "res_pjproject", "res_sorcery_config", "res_sorcery_memory",
    "res_sorcery_astdb", "res_pjsip", "res_pjsip_session", "res_pjsip_pubsub",
    "res_pjsip_authenticator_digest", "res_pjsip_endpoint_identifier_user",
    "res_pjsip_registrar", "res_pjsip_sdp_rtp", "res_pjsip_nat", "res_pjsip_caller_id",
    "res_rtp_asterisk", "chan_pjsip", "codec_ulaw", "codec_alaw", "codec_gsm",
    "codec_resample", "format_wav", "format_gsm", "format_pcm", "format_sln", "pbx_config",
    "app_dial", "app_playback", "res_musiconhold", "app_bridgewait", "app_originate", "app_chanspy",
    "res_audiosocket", "chan_audiosocket", "func_md5", "res_pjsip_header_funcs", "app_mixmonitor", "app_stack", "app_verbose", "app_echo",
    "func_channel", "func_devstate", "func_logic", "func_strings", "func_callerid", "bridge_simple",
    "bridge_native_rtp", "bridge_holding", "bridge_builtin_features",
    "res_cdrel_custom", "cel_custom", "app_amd", "app_userevent", "app_waitforsilence", "func_rand",
)


def sandbox_files(spec: ConfigSpec) -> dict[str, str]:
    """The sandbox's whole /etc/asterisk (Debian's asterisk.conf is kept)."""
    modules = "\n".join(f"load => {name}.so" for name in SANDBOX_MODULES)
    return {
        **include_files(spec),
        "modules.conf": f"[modules]\nautoload = no\n{modules}\n",
        "logger.conf": (
            "[general]\ndateformat = %F %T.%3q\n\n[logfiles]\n"
            "messages.log => notice,warning,error\n"
            "console => warning,error\n"
        ),
        "manager.conf": (
            "[general]\nenabled = yes\n"
            f"bindaddr = {spec.ami_bind}\nport = {spec.ami_port}\n"
            "displayconnects = no\nauthlimit = 5\nauthtimeout = 10\n\n"
            "#include dunning-manager.conf\n"
        ),
        "pjsip.conf": (
            "[global]\ntype = global\nuser_agent = Dunning sandbox\n\n"
            "[transport-udp]\ntype = transport\nprotocol = udp\n"
            f"bind = {spec.sip_bind}:{spec.sip_port}\n\n"
            "#include dunning-pjsip.conf\n"
        ),
        "extensions.conf": (
            "[general]\nstatic = yes\nwriteprotect = yes\n\n"
            "#include dunning-extensions.conf\n"
        ),
        "rtp.conf": f"[general]\nrtpstart = {spec.rtp_start}\nrtpend = {spec.rtp_end}\n",
        # The default class of music on hold (an attended transfer's debtor on hold); a user's
        # own Asterisk has its own.
        "musiconhold.conf": f"[default]\nmode = files\ndirectory = {MOH_DIRECTORY}\n",
        "cel.conf": "#include dunning-cel.conf\n",
        "cel_custom.conf": "#include dunning-cel_custom.conf\n",
    }
