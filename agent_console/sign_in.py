"""Signing in and out (everyone): the sign-in page and form, throttled per source address
and per typed name (throttle.Gate) with one answer for every kind of refusal, signing out,
the language, and changing one's own password.

The handlers come first; the database work they run (plain functions of a Session) below.
"""
from __future__ import annotations

import datetime as dt
import math
import secrets
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import accounts, i18n, throttle
from .pages import (CLOCK, DB, FORM, GATE, LANG, LANG_COOKIE, PRELOGIN_COOKIE, SESSION_COOKIE, SETTINGS, WHO, Who,
                    csrf_ok, language, read_form, remote, render, safe_next, set_cookie)
from .playback import close_plays
from .schema import Account
from .settings import Settings

#: Where each role lands after signing in.
HOME = {"agent": "/agent", "supervisor": "/wallboard", "qa": "/qa", "administrator": "/wallboard"}


async def login_page(request: web.Request, message: str | None = None, status: int = 200) -> web.Response:
    settings = request.app[SETTINGS]
    # One token per browser until it signs in: a second tab (or a stray request that lands
    # here) must not invalidate the form already shown.
    token = request.cookies.get(PRELOGIN_COOKIE, "")
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
    chosen = request.query.get("lang")
    if chosen in i18n.LANGUAGES:  # before signing in, the language is only a cookie
        request[LANG] = chosen
    if request.query.get("expired") and message is None:
        message = i18n.t("login.expired", language(request))
    response = render(request, "login.html", {"csrf": token, "message": message}, status=status)
    set_cookie(response, PRELOGIN_COOKIE, token, settings)
    if chosen in i18n.LANGUAGES:
        set_cookie(response, LANG_COOKIE, chosen, settings, max_age=365 * 86400)
    return response


async def _throttled(request: web.Request, seconds: float, page=None) -> web.Response:
    """The answer to an attempt that came before its delay was over: not checked at all."""
    wait = max(1, math.ceil(seconds))
    text = i18n.t("login.throttled", request[LANG], s=wait)
    response = await (page or login_page)(request, text, status=429)
    response.headers["Retry-After"] = str(wait)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    app, settings = request.app, request.app[SETTINGS]
    lang = language(request)
    request[LANG] = lang
    form = await read_form(request)
    if not csrf_ok(request.cookies.get(PRELOGIN_COOKIE), request, form):
        return await login_page(request, i18n.t("csrf.refused", lang), 403)
    username, password = form.get("username", ""), form.get("password", "")
    typed = username.strip().lower()[:64]
    address = remote(request)
    gate: throttle.Gate = app[GATE]
    address_key, name_key = throttle.address_key(address), gate.name_key(username)
    old_token = request.cookies.get(SESSION_COOKIE)
    async with gate.one_at_a_time(address_key, name_key):
        now = app[CLOCK]()
        waiting = gate.by_address.wait(address_key, now)
        if waiting > 0:
            return await _throttled(request, waiting)
        name_wait = gate.by_name.wait(name_key, now)
        signed = await app[DB](try_sign_in, username, password, old_token, name_wait > 0, now, settings, address)
        if signed.outcome == "throttled":
            return await _throttled(request, name_wait)
        if signed.outcome == "refused":
            await _count_failure(app, gate, address_key, name_key, typed, address, now)
            # One answer for an unknown name, a wrong password, a disabled and a locked account.
            return await login_page(request, i18n.t("login.failed", lang), 401)
        gate.by_name.clear(name_key)
    response = web.HTTPFound(HOME.get(signed.role, "/"))
    set_cookie(response, SESSION_COOKIE, signed.token, settings,
               max_age=int(settings.session_max_age.total_seconds()))
    response.del_cookie(PRELOGIN_COOKIE, path="/")
    raise response


async def _count_failure(app: web.Application, gate: throttle.Gate, address_key: str, name_key: str, typed: str,
                         address: str | None, now: dt.datetime) -> None:
    """Count a refused attempt against the address and the name; when either has just reached
    its free failures (delays start), say so in the audit log (once, not per attempt)."""
    started = []
    if gate.by_address.failed(address_key, now) == gate.by_address.free:
        started.append("address")
    if gate.by_name.failed(name_key, now) == gate.by_name.free:
        started.append("name")
    if not started:
        return
    await app[DB](audit_delays_started, started, typed, address, now, app[SETTINGS])


async def logout(request: web.Request) -> web.StreamResponse:
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    token = request.cookies.get(SESSION_COOKIE)
    await close_plays(app, now, lambda p: p.session_id == who.session_id)
    await app[DB](accounts.end_session, token, now)
    response = web.HTTPFound("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def switch_language(request: web.Request) -> web.StreamResponse:
    who: Who = request[WHO]
    form = request[FORM]
    to = form.get("to") if form.get("to") in i18n.LANGUAGES else "en"
    await request.app[DB](save_language, who.account_id, to)
    response = web.HTTPFound(safe_next(form.get("next")))
    set_cookie(response, LANG_COOKIE, to, request.app[SETTINGS], max_age=365 * 86400)
    raise response


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(HOME.get(request[WHO].role, "/password"))


async def password_page(request: web.Request, message: str | None = None, ok: bool = False,
                        status: int = 200) -> web.Response:
    settings, who = request.app[SETTINGS], request[WHO]
    return render(request, "password.html", {"message": message, "ok": ok,
                                             "min_length": settings.passwords.minimum(who.role)}, status)


async def change_password(request: web.Request) -> web.Response:
    """A wrong current password counts like a failed sign-in against the address and the
    name (a stolen session cannot be used to guess the password at full speed); a change
    ends every other session of the account."""
    app, settings, who, lang = request.app, request.app[SETTINGS], request[WHO], request[LANG]
    form = request[FORM]
    if form.get("new_password", "") != form.get("repeat_password", ""):
        return await password_page(request, i18n.t("password.mismatch", lang), status=400)
    gate: throttle.Gate = app[GATE]
    address = remote(request)
    address_key, name_key = throttle.address_key(address), gate.name_key(who.username)
    async with gate.one_at_a_time(address_key, name_key):
        now = app[CLOCK]()
        waiting = max(gate.by_address.wait(address_key, now), gate.by_name.wait(name_key, now))
        if waiting > 0:
            return await _throttled(request, waiting, page=password_page)
        try:
            await app[DB](change_password_of, who.account_id, who.session_id, form.get("current_password", ""),
                          form.get("new_password", ""), now, settings, address)
        except accounts.WeakPassword as weak:
            text = "; ".join(i18n.t(f"password.problem.{code}", lang) for code in weak.codes)
            return await password_page(request, text, status=400)
        except accounts.AccountError:
            await _count_failure(app, gate, address_key, name_key, who.username, address, now)
            return await password_page(request, i18n.t("password.wrong", lang), status=400)
    return await password_page(request, i18n.t("password.changed", lang), ok=True)


# ---------------------------------------------------------------- the database work

@dataclass(frozen=True)
class SignIn:
    """How a sign-in attempt ended: ok (with the new session's token and the role), refused,
    or throttled (the name's delay was not over and the address is not one the account knows)."""

    outcome: str
    token: str | None = None
    role: str | None = None


def try_sign_in(session: Session, username: str, password: str, old_token: str | None, name_waits: bool,
            now: dt.datetime, settings: Settings, address: str | None) -> SignIn:
    if name_waits:  # the name's delay, except from the account's own known addresses
        account = session.scalar(select(Account).where(Account.username == username.strip().lower()[:64]))
        if account is None or not accounts.known_address(session, account, address):
            return SignIn("throttled")
    try:
        account = accounts.authenticate(session, username, password, now, settings, address)
    except accounts.SignInRefused:
        return SignIn("refused")
    accounts.end_replaced_session(session, old_token, account, now)
    token, _row = accounts.start_session(session, account, now, settings, address)
    return SignIn("ok", token, account.role)


def audit_delays_started(session: Session, started: list[str], typed: str, address: str | None, now: dt.datetime,
                         settings: Settings) -> None:
    """One audit entry per throttle (address, name) whose delays have just begun."""
    for kind in started:
        free = settings.throttle_free_address if kind == "address" else settings.throttle_free_name
        detail = (f"{free} failed sign-ins within {settings.failure_window}: each further attempt waits "
                  f"{int(settings.throttle_base.total_seconds())} s, then twice as long, up to "
                  f"{int(settings.throttle_max.total_seconds())} s")
        if kind == "address":
            accounts.audit(session, now, "sign_in_throttled", "throttled", username="(address)",
                           subject=f"address {address or '-'}"[:100], detail=detail, remote=address)
            continue
        account = session.scalar(select(Account).where(Account.username == typed))
        if account is not None:
            accounts.audit(session, now, "sign_in_throttled", "throttled", account=account,
                           subject=f"account {account.username}", detail=detail, remote=address)
        else:
            accounts.audit(session, now, "sign_in_throttled", "throttled", username="(unknown)",
                           subject="an unknown user name", detail=detail, remote=address)


def save_language(session: Session, account_id: int, language_: str) -> None:
    session.get(Account, account_id).language = language_


def change_password_of(session: Session, account_id: int, session_id: int, current: str, new: str,
                       now: dt.datetime, settings: Settings, address: str | None) -> None:
    """accounts.change_own_password for the signed-in account, keeping the session it is
    signed in with (its other sessions end)."""
    account = session.get(Account, account_id)
    accounts.change_own_password(session, account, current, new, now, settings, keep_session=session_id,
                                 remote=address)
