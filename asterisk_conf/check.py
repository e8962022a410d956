"""`dunning asterisk check`: does a running Asterisk have what the engine needs?

Everything is asked over AMI as the engine's own user, so a check that passes proves
the engine's credentials and permissions too, not only the Asterisk's set-up.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ami_bridge import AmiActionError, AmiConnection, AmiError, AmiNotConnected, AmiSettings

from .generate import CONTEXTS
from .sandbox import SOUNDS

#: AMI actions the engine sends, and what each proves about the Asterisk.
REQUIRED_ACTIONS = {
    "Originate": "the engine may place calls (write = originate)",
    "Hangup": "the engine may hang up its calls (write = call)",
    "CoreShowChannels": "the engine may list channels to reconcile after a reconnect (write = reporting)",
    "ShowDialPlan": "the engine may read the dialplan (write = reporting)",
    "Setvar": "the engine may name the agent for a call placed ahead of a free agent (write = call)",
    "Redirect": "the console may put a debtor on hold, hand over or transfer a call (write = call)",
    "StopMixMonitor": "app_mixmonitor is loaded (every call is recorded)",
    "PJSIPHangup": "chan_pjsip is loaded (the agents' softphones)",
}
#: Actions that would give the engine more power than it needs.
TOO_WIDE = ("Command", "Reload", "UpdateConfig", "GetConfig", "ModuleLoad", "DBPut")
#: What AMI cannot show the engine's user: listing modules (ModuleCheck) needs write = system
#: and the CLI (Command) write = command, both withheld on purpose. So `check` says so.
NOT_CHECKED = (
    "not checked over AMI (the engine's user may not list modules or run CLI commands): "
    "the dialplan's applications Dial, Playback, Gosub, Log, Bridge, BridgeWait, ChanSpy, AMD, "
    "WaitForSilence, UserEvent, MusicOnHold, Originate and function IF (app_dial, app_playback, "
    "app_stack, app_verbose, app_bridgewait, bridge_holding, app_chanspy, app_amd, "
    "app_waitforsilence, app_userevent, res_musiconhold, app_originate, func_logic; "
    "res_audiosocket and chan_audiosocket for `dunning live`), the read = user class the engine's "
    "AMI user needs to hear the dialplan's UserEvents (answering machines, transfers), and the "
    f"prompts in {SOUNDS}/; on the Asterisk host: asterisk -rx 'module show like app_' and ls {SOUNDS}/"
)


@dataclass(frozen=True)
class CheckItem:
    what: str
    ok: bool
    detail: str = ""


async def run_check(settings: AmiSettings, agents: Sequence[str] = (), timeout: float = 10.0) -> list[CheckItem]:
    """Every check, in order; a failed login ends the list early."""
    conn = AmiConnection(settings)
    where = f"{settings.username}@{settings.host}:{settings.port}"
    try:
        await conn.start(timeout=timeout)
    except AmiError as exc:
        await conn.close()
        return [CheckItem(f"AMI login as {where}", False, str(exc))]
    items = [CheckItem(f"AMI login as {where}", True)]
    try:
        core = await conn.send({"Action": "CoreSettings"})
        version = core.headers.get("AsteriskVersion", "?")
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        items.append(CheckItem("Asterisk 18 or newer", major >= 18, f"version {version}"))
        try:
            await conn.wait_fully_booted(timeout)
            items.append(CheckItem("Asterisk fully booted", True))
        except AmiNotConnected:
            items.append(CheckItem("Asterisk fully booted", False, "no FullyBooted event (read = system missing?)"))
        allowed = set((await conn.send({"Action": "ListCommands"})).headers)
        for action, why in REQUIRED_ACTIONS.items():
            items.append(CheckItem(f"action {action}", action in allowed, why if action in allowed
                                   else f"not permitted or not loaded: {why}"))
        wide = sorted(a for a in TOO_WIDE if a in allowed)
        items.append(CheckItem("permissions no wider than needed", not wide,
                               f"the engine's AMI user may also {', '.join(wide)}" if wide else ""))
        for context in CONTEXTS:
            try:
                listing = await conn.send({"Action": "ShowDialplan", "Context": context})
                items.append(CheckItem(f"dialplan context {context}", True, f"{len(listing.items)} priorities"))
            except AmiActionError as exc:
                items.append(CheckItem(f"dialplan context {context}", False, exc.message))
        for agent in agents:
            items.append(await _agent_endpoint(conn, agent))
    finally:
        await conn.close()
    return items


async def _agent_endpoint(conn: AmiConnection, agent: str) -> CheckItem:
    what = f"agent endpoint PJSIP/{agent}"
    try:
        answer = await conn.send({"Action": "Getvar", "Variable": f"DEVICE_STATE(PJSIP/{agent})"})
    except AmiActionError as exc:
        return CheckItem(what, False, exc.message)
    state = answer.headers.get("Value", "")
    if not state:
        return CheckItem(what, False, "DEVICE_STATE() unavailable: load func_devstate")
    if state == "INVALID":
        return CheckItem(what, False, "no such endpoint: #include dunning-pjsip.conf in pjsip.conf")
    registered = "softphone registered" if state != "UNAVAILABLE" else "no softphone registered yet"
    return CheckItem(what, True, f"{state.lower()} ({registered})")
