"""Live calls from the console: the agent's call controls (hang up, hand the debtor over to a
supervisor, mark the number wrong or invalid) and a supervisor listening in on an agent's call
(listen, whisper, barge).

What reaches Asterisk goes through ami_bridge.supervision, over the console's own AMI link
(`AsteriskLink`, opened at start-up when settings.ami is set). Every action is checked first
(an agent acts only on the call bridged to them; a supervisor only on a live, bridged call of
a campaign of their team, as the wallboard shows them: another team's call is "not found",
and nothing is sent to Asterisk), and every action, done or refused, is in the audit log
(event ``call_<action>``, subject the case, detail the call id first). A call's listening-in
shows in its case's history (cases.supervision_by_call).

The handlers come first; the database work they run (plain functions of a Session) below.
"""
from __future__ import annotations

import datetime as dt
import logging
import re

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from ami_bridge import AmiConnection, AmiError, supervision
from campaigns.models import Agent, AgentPresence, Attempt, Phone

from .accounts import audit
from .cases import Refused, live_call
from .pages import CLOCK, DB, FORM, LANG, SETTINGS, WHO, error, remote
from .schema import Account, AuditEntry
from .wallboard import visible_campaigns

log = logging.getLogger(__name__)

#: How an agent may mark the dialled number: wrong (not the debtor's) or invalid (not in service).
NUMBER_MARKS = ("wrong", "invalid")


class AsteriskLink:
    """The console's AMI connection, if it has one."""

    def __init__(self) -> None:
        self.conn: AmiConnection | None = None

    async def open(self, app: web.Application) -> None:
        settings = app[SETTINGS].ami
        if settings is not None:
            self.conn = AmiConnection(settings)
            await self.conn.start(wait=False)

    async def close(self, app: web.Application) -> None:
        if self.conn is not None:
            await self.conn.close()


LINK = web.AppKey("asterisk_link", AsteriskLink)


def _refused(request: web.Request, refused: Refused) -> web.Response:
    return error(request, refused.status, refused.key, request[LANG], **refused.values)


async def _send(request: web.Request, event: str, target: dict, action) -> web.Response:
    """Run `action(conn)` against Asterisk and audit the result; the JSON answer."""
    app, who = request.app, request[WHO]
    conn = app[LINK].conn
    try:
        if conn is None:
            raise AmiError("the console has no link to Asterisk (settings.ami)")
        started = await action(conn)
    except AmiError as exc:
        await app[DB](record, who.account_id, event, "failed", target, app[CLOCK](), remote(request), str(exc))
        return error(request, 502, "call.asterisk", request[LANG], error=str(exc)[:200])
    if isinstance(started, str):  # the channel listening in, for the record
        target = {**target, "channel_id": started}
    await app[DB](record, who.account_id, event, "ok", target, app[CLOCK](), remote(request))
    return web.json_response({"ok": True, **target})


async def hang_up(request: web.Request) -> web.Response:
    """The agent ends the call they are on (form field ``call_id``)."""
    target = await _agent_target(request, live=True)
    if isinstance(target, web.Response):
        return target
    return await _send(request, "call_hangup", target, lambda conn: supervision.end_call(conn, target["call_id"]))


async def transfer(request: web.Request) -> web.Response:
    """The agent transfers the debtor to a supervisor of their team (form field
    ``supervisor``: a user name; default the first of the team's supervisors). On a persistent
    line this starts an attended transfer (the debtor on hold, the supervisor's phone called to
    talk with the agent: ``call_transfer_consult``; then complete or cancel); without one, the
    debtor is handed over at once (``call_transfer``)."""
    target = await _agent_target(request, live=True, supervisor=request[FORM].get("supervisor", ""))
    if isinstance(target, web.Response):
        return target
    app, conn = request.app, request.app[LINK].conn
    agent = await app[DB](agent_extension, request[WHO].account_id)
    try:
        consult_id = await supervision.consult(conn, target["call_id"], target["supervisor"], agent) if conn else None
    except AmiError as exc:
        return await _send(request, "call_transfer_consult", target, _failed(exc))
    if consult_id is not None:
        return await _send(request, "call_transfer_consult", {**target, "consult": True},
                           lambda conn: _done(consult_id))
    return await _send(request, "call_transfer", target,
                       lambda conn: supervision.hand_over(conn, target["call_id"], target["supervisor"]))


async def transfer_end(request: web.Request) -> web.Response:
    """The agent completes the attended transfer (the debtor to the supervisor, the agent free
    for the next call) or cancels it (the supervisor dropped, the agent back with the debtor)."""
    how = request.match_info["how"]
    if how not in ("complete", "cancel"):
        return error(request, 404, "not_found", request[LANG])
    target = await _agent_target(request, live=True)
    if isinstance(target, web.Response):
        return target
    consult_id = await request.app[DB](consultation, request[WHO].account_id, target["call_id"])
    if consult_id is None:
        return error(request, 409, "call.no_consultation", request[LANG])
    target = {**target, "channel_id": consult_id}
    conn = request.app[LINK].conn
    if how == "complete" and conn is not None:
        try:
            over = not await supervision.consultation_up(conn, consult_id)
        except AmiError as exc:
            return await _send(request, "call_transfer_complete", target, _failed(exc))
        if over:  # not answered, or hung up: the dialplan has brought the debtor back
            app, who = request.app, request[WHO]
            await app[DB](record, who.account_id, "call_transfer_complete", "failed", target, app[CLOCK](),
                          remote(request), "the supervisor's phone is no longer on the line")
            return error(request, 409, "call.consult_over", request[LANG])
    if how == "complete":
        return await _send(request, "call_transfer_complete", target,
                           lambda conn: supervision.complete(conn, target["call_id"], consult_id))
    return await _send(request, "call_transfer_cancel", target, lambda conn: supervision.cancel(conn, consult_id))


async def _done(value: str) -> str:
    return value


def _failed(exc: AmiError):
    async def action(conn) -> None:
        raise exc
    return action


async def mark_number(request: web.Request) -> web.Response:
    """The agent marks the number of their call wrong or invalid (form field ``mark``): the
    policy no longer dials it."""
    app, who = request.app, request[WHO]
    try:
        result = await app[DB](mark_dialled_number, who.account_id, request[FORM].get("call_id", ""),
                               request[FORM].get("mark", ""), app[CLOCK](), remote(request))
    except Refused as refused:
        return _refused(request, refused)
    return web.json_response({"ok": True, **result})


async def listen_in(request: web.Request) -> web.Response:
    """A supervisor listens to, whispers to or barges into an agent's live call, on the
    supervisor's own phone."""
    app, who = request.app, request[WHO]
    mode = request.match_info["mode"]
    if mode not in supervision.SPY_MODES:
        return error(request, 404, "not_found", request[LANG])
    target = await app[DB](spy_target, who.account_id, request.match_info["call_id"], mode, app[CLOCK](),
                           remote(request))
    if isinstance(target, Refused):
        return _refused(request, target)
    return await _send(request, f"call_{mode}", target,
                       lambda conn: supervision.listen_in(conn, target["supervisor"], target["agent"], mode))


async def _agent_target(request: web.Request, live: bool, supervisor: str | None = None):
    app, who = request.app, request[WHO]
    try:
        return await app[DB](agent_call, who.account_id, request[FORM].get("call_id", ""), live, supervisor)
    except Refused as refused:
        return _refused(request, refused)


# ---------------------------------------------------------------- the database work

def _agents_attempt(session: Session, account: Account, call_id: str, live: bool) -> Attempt:
    """The attempt `call_id` if the account's agent is talking on it (with `live`), or if it was
    bridged to them (without: also after the call, in wrap-up), else Refused."""
    if account.agent_id is None:
        raise Refused("forbidden", 403)
    attempt = session.scalar(select(Attempt).where(Attempt.call_id == call_id)) if call_id else None
    on_it = attempt is not None and live_call(session, account.agent_id) == attempt
    if not on_it and (attempt is None or attempt.agent_id != account.agent_id or attempt.bridged_at is None):
        raise Refused("forbidden.case", 403)
    if live and not on_it:
        raise Refused("call.ended", 409)
    return attempt


def agent_call(session: Session, account_id: int, call_id: str, live: bool, supervisor: str | None) -> dict:
    """What an agent's call control acts on: the call, its case, and for a hand-over the
    supervisor's phone (a supervisor of the agent's team; `supervisor` names one, or the first)."""
    account = session.get(Account, account_id)
    attempt = _agents_attempt(session, account, call_id, live)
    target = {"call_id": attempt.call_id, "case_id": attempt.case_id}
    if supervisor is not None:
        names = list(session.scalars(select(Account.username).where(
            Account.role == "supervisor", Account.team_id == account.team_id, Account.team_id.is_not(None),
            Account.disabled_at.is_(None)).order_by(Account.username)))
        if not names or (supervisor and supervisor not in names):
            raise Refused("call.no_supervisor", 409)
        target["supervisor"] = supervisor or names[0]
    return target


def agent_extension(session: Session, account_id: int) -> str:
    """The extension (softphone endpoint) of the account's agent."""
    account = session.get(Account, account_id)
    return session.get(Agent, account.agent_id).extension


#: The audit events of an attended transfer (a consultation, then how it ended).
TRANSFER_EVENTS = ("call_transfer_consult", "call_transfer_complete", "call_transfer_cancel")


def consultation(session: Session, account_id: int, call_id: str) -> str | None:
    """The consultation the agent started on call `call_id` and has not completed or cancelled
    (its id, from the audit of ``call_transfer_consult``), else None."""
    last = session.scalar(select(AuditEntry).where(
        AuditEntry.account_id == account_id, AuditEntry.event.in_(TRANSFER_EVENTS), AuditEntry.result == "ok",
        AuditEntry.detail.startswith(f"{call_id} ")).order_by(AuditEntry.id.desc()).limit(1))
    if last is None or last.event != "call_transfer_consult":
        return None
    found = re.search(r"\bchannel (\S+)", last.detail or "")
    return found.group(1) if found else None


def spy_target(session: Session, account_id: int, call_id: str, mode: str, now: dt.datetime,
               address: str | None) -> dict | Refused:
    """What a supervisor listens in on: the agent of live call `call_id`, if the call is of a
    campaign the supervisor sees; else why not (404, audited), as if there were no such call."""
    account = session.get(Account, account_id)
    attempt = session.scalar(select(Attempt).where(Attempt.call_id == call_id))
    visible = {c.id for c in visible_campaigns(session, account)}
    presence = session.scalar(select(AgentPresence).where(AgentPresence.call_id == call_id,
                                                          AgentPresence.state == "on_call")) if attempt else None
    if (account.role != "supervisor" or attempt is None or attempt.campaign_id not in visible
            or presence is None or live_call(session, presence.agent_id) != attempt):
        audit(session, now, f"call_{mode}", "refused", account=account,
              subject=f"case {attempt.case_id}" if attempt is not None else None, detail=call_id[:63], remote=address)
        return Refused("not_found", 404)
    agent = session.get(Agent, presence.agent_id)
    return {"call_id": attempt.call_id, "case_id": attempt.case_id, "agent": agent.extension,
            "supervisor": account.username}


def record(session: Session, account_id: int, event: str, result: str, target: dict, now: dt.datetime,
           address: str | None, why: str | None = None) -> None:
    """The audit entry of a call action: the case, then the call id first in the detail."""
    parts = [target["call_id"], f"agent {target['agent']}" if "agent" in target else "",
             f"supervisor {target['supervisor']}" if "supervisor" in target else "",
             f"channel {target['channel_id']}" if "channel_id" in target else "", why or ""]
    audit(session, now, event, result, account=session.get(Account, account_id), subject=f"case {target['case_id']}",
          detail=" ".join(p for p in parts if p), remote=address)


def mark_dialled_number(session: Session, account_id: int, call_id: str, mark: str, now: dt.datetime,
                        address: str | None) -> dict:
    """Mark the number of the agent's call wrong or invalid: the phone is no longer valid (the
    policy's invalid_number block, which nothing lifts), with who said so and why."""
    if mark not in NUMBER_MARKS:
        raise Refused("call.bad_mark", 400)
    account = session.get(Account, account_id)
    attempt = _agents_attempt(session, account, call_id, live=False)
    phone = session.get(Phone, attempt.phone_id)
    phone.valid = False
    phone.do_not_call_reason = (f"{'wrong number' if mark == 'wrong' else 'invalid number'}: agent "
                                f"{account.username}, attempt {attempt.id}")
    audit(session, now, "call_number_marked", "ok", account=account, subject=f"case {attempt.case_id}",
          detail=f"{attempt.call_id} {mark} phone {phone.id}", remote=address)
    return {"call_id": attempt.call_id, "phone_id": phone.id, "mark": mark}
