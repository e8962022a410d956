"""The agent's desk (agents): the agent page, presence (ready, paused, out of the queue),
the disposition, the day's counters, the WebSocket that pushes the case pop-up; and the case
card, which agents open for the call they are on and supervisors, QA and administrators for
their team's cases (phone numbers masked unless they give a reason, which is audited).

The handlers come first; the database work they run (plain functions of a Session) below.
"""
from __future__ import annotations

import datetime as dt

from aiohttp import WSMsgType, web
from sqlalchemy.orm import Session

from campaigns.admin import DISPOSITION_CODES

from . import cases, i18n
from .pages import CLOCK, DB, FORM, HUB, LANG, SETTINGS, WHO, Who, error, remote, render, strings
from .schema import Account
from .settings import Settings


async def agent_page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    codes = [(code, f"code.{code}") for code in DISPOSITION_CODES]
    return render(request, "agent.html", {"pause_reasons": cases.PAUSE_REASONS, "codes": codes,
                                          "strings": strings(request, "state.", "phone.", "code.", "case.",
                                                              "agent.", "dispo.", "pause.", "promise.", "line.", "call."),
                                          "wrap_up_limit_s": int(settings.wrap_up_limit.total_seconds()),
                                          "requesters": ("debtor", "third_party", "agent")})


def _refused(request: web.Request, refused: cases.Refused) -> web.Response:
    return error(request, refused.status, refused.key, request[LANG], **refused.values)


async def presence(request: web.Request) -> web.Response:
    app, now, who, form = request.app, request.app[CLOCK](), request[WHO], request[FORM]
    try:
        view = await app[DB](ask_presence, who.account_id, who.agent_id, form.get("requested", ""),
                             form.get("reason") or None, now, app[SETTINGS])
    except cases.Refused as refused:
        return _refused(request, refused)
    return web.json_response({"ok": True, **view})


async def disposition(request: web.Request) -> web.Response:
    app, now, who, form, lang = request.app, request.app[CLOCK](), request[WHO], request[FORM], request[LANG]
    data = cases.DispositionForm(call_id=form.get("call_id", ""), code=form.get("code", ""),
                                 note=form.get("note", ""), amount=form.get("amount", ""), due=form.get("due", ""),
                                 callback_at=form.get("callback_at", ""),
                                 requested_by=form.get("requested_by", "debtor"),
                                 callback_note=form.get("callback_note", ""))
    try:
        result, view = await app[DB](save_disposition, who.account_id, who.agent_id, data, now, app[SETTINGS])
    except cases.Refused as refused:
        return _refused(request, refused)
    message = i18n.t("dispo.saved", lang)
    if result["appointment"] and result["appointment"]["outside_window"]:
        message += " " + i18n.t("appt.outside_ok", lang)
    return web.json_response({"ok": True, "message": message, **result, "presence": view})


async def counters(request: web.Request) -> web.Response:
    who = request[WHO]
    data = await request.app[DB](cases.agent_counters, who.agent_id, request.app[CLOCK](), request.app[SETTINGS])
    return web.json_response(data)


async def agent_socket(request: web.Request) -> web.StreamResponse:
    who: Who = request[WHO]
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        # A page of another site cannot open an agent's socket (cross-site WebSocket hijacking).
        return error(request, 403, "forbidden", request[LANG])
    if who.agent_id is None:
        return error(request, 403, "forbidden", request[LANG])
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    hub = request.app[HUB]
    watch = hub.add(ws, who.session_id, who.account_id, who.agent_id, remote(request))
    try:
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
    finally:
        hub.remove(watch)
    return ws


async def case_page(request: web.Request) -> web.Response:
    card = await _open_case(request)
    if isinstance(card, web.Response):
        return card
    return render(request, "case.html", {"card": card, "reasons": cases.UNMASK_REASONS})


async def case_json(request: web.Request) -> web.Response:
    card = await _open_case(request)
    if isinstance(card, web.Response):
        return card
    return web.json_response(card)


async def case_page_unmasked(request: web.Request) -> web.Response:
    """The case with its phone numbers whole, for a reason (form field ``reason``, one of
    cases.UNMASK_REASONS) that goes to the audit log with the view."""
    card = await _open_case(request, unmask=request[FORM].get("reason", ""))
    if isinstance(card, web.Response):
        return card
    return render(request, "case.html", {"card": card, "reasons": cases.UNMASK_REASONS})


async def case_json_unmasked(request: web.Request) -> web.Response:
    card = await _open_case(request, unmask=request[FORM].get("reason", ""))
    if isinstance(card, web.Response):
        return card
    return web.json_response(card)


async def _open_case(request: web.Request, unmask: str | None = None):
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    case_id = int(request.match_info["case_id"])
    result = await app[DB](case_card_for, who.account_id, case_id, now, app[SETTINGS], remote(request), unmask)
    return _refused(request, result) if isinstance(result, cases.Refused) else result


# ---------------------------------------------------------------- the database work

def ask_presence(session: Session, account_id: int, agent_id: int | None, requested: str, reason: str | None,
                 now: dt.datetime, settings: Settings) -> dict:
    """The agent asks to be ready, paused or out of the queue; returns the presence the page shows."""
    cases.request_presence(session, session.get(Account, account_id), requested, reason, now)
    return cases.presence_view(session, agent_id, now, settings)


def save_disposition(session: Session, account_id: int, agent_id: int | None, data: cases.DispositionForm,
                     now: dt.datetime, settings: Settings) -> tuple[dict, dict]:
    """The agent's disposition of a call; returns what was saved and the presence after it."""
    result = cases.dispose(session, session.get(Account, account_id), data, now)
    return result, cases.presence_view(session, agent_id, now, settings)


def case_card_for(session: Session, account_id: int, case_id: int, now: dt.datetime, settings: Settings,
                  address: str | None, unmask: str | None) -> dict | cases.Refused:
    """The case card the account may see (cases.open_case; audited), or why not."""
    return cases.open_case(session, session.get(Account, account_id), case_id, now, settings, address, unmask=unmask)
