"""The administrator's account list: every account with its state and lock, the recent lock
events, and disabling, enabling or unlocking an account (which also lifts the name's
sign-in delay). The accounts themselves are accounts.py (what `dunning console accounts`
calls too).
"""
from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy.orm import Session

from . import accounts
from .pages import CLOCK, DB, GATE, LANG, WHO, error, render


async def accounts_page(request: web.Request) -> web.Response:
    rows, events = await request.app[DB](account_list, request.app[CLOCK]())
    return render(request, "accounts.html", {"rows": rows, "events": events})


async def account_command(request: web.Request) -> web.StreamResponse:
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    username, command = request.match_info["username"], request.match_info["command"]
    actions = {"disable": accounts.disable, "unlock": accounts.unlock, "enable": accounts.enable}
    if command not in actions:
        return error(request, 404, "not_found", request[LANG])
    try:
        await app[DB](actions[command], username, now, by=who.username)
    except accounts.AccountError as exc:
        return web.json_response({"ok": False, "message": str(exc)}, status=404)
    if command in ("unlock", "enable"):  # and the name's sign-in delay goes with the lock
        app[GATE].by_name.clear(app[GATE].name_key(username))
    raise web.HTTPFound("/accounts")


def account_list(session: Session, now: dt.datetime) -> tuple[list, list]:
    """Every account (accounts.list_accounts) and the recent lock events."""
    return accounts.list_accounts(session, now), accounts.lock_events(session)
