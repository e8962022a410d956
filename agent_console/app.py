"""The console's web application (aiohttp): sign-in, the agent page with its WebSocket, the
supervisor's wallboard, the QA pages and the administrator's account list.

`make_app(factory, settings, now=...)` builds it; `serve(site, factory, host, port)` runs it
until SIGTERM or Ctrl-C (what `dunning console serve` calls). The clock is read only through
`now` (a callable returning an aware datetime), so tests set the time.

Security, in one place (the `guard` middleware): every route is declared in `route_table()`
with the roles that may use it (PUBLIC ones need no session); a route that is not declared
there is refused to everybody (deny by default), and so is a role that is not listed. Every
other request needs a live session (its cookie is HttpOnly, SameSite=Strict, Secure unless
settings.cookie_secure is off); the session and its account are looked up on every request, so
a disabled account is out at its next click (and its WebSockets close within one poll); every
POST must carry the session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``;
the sign-in form a double-submit token); every response, aiohttp's own 404 and 405 included,
carries a strict Content-Security-Policy and the other security headers. Sign-ins are
throttled per source address and per typed name (`throttle.py`) and get one answer for every
kind of refusal. What a supervisor or QA reviewer sees is scoped to their team
(cases.visible_campaigns), and phone numbers are masked for roles that do not dial. Database
work runs in one worker thread (SQLite's single writer).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import math
import os
import secrets
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import WSMsgType, web
from sqlalchemy import select

from campaigns.admin import DISPOSITION_CODES
from campaigns.clock import utc_now
from campaigns.db import transaction
from campaigns.models import Agent
from campaigns.queue import CampaignError

from . import accounts, cases, i18n, playback, qa, throttle, wallboard
from .live import Hub
from .pages import (ACCESS, CLOCK, DB, FORM, GATE, HUB, LANG, LANG_COOKIE, PRELOGIN_COOKIE, SESSION_COOKIE,
                    SETTINGS, WHO, Who, csrf_ok, error, language, read_form, remote, render, safe_next, secure,
                    set_cookie, strings, wants_json)
from .playback import close_plays
from .schema import ROLES, Account, Team
from .settings import Settings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
HOME = {"agent": "/agent", "supervisor": "/wallboard", "qa": "/qa", "administrator": "/wallboard"}

#: Who may use a route. ANONYMOUS in a declaration makes the route public (no session).
ANONYMOUS = "anonymous"
PUBLIC = frozenset({ANONYMOUS, *ROLES})
EVERYONE = frozenset(ROLES)
AGENTS = frozenset({"agent"})
STAFF = frozenset({"supervisor", "qa", "administrator"})  # read cases, recordings, findings (their teams')
WALLBOARD = frozenset({"supervisor", "administrator"})
ADMINISTRATORS = frozenset({"administrator"})

CACHE = web.AppKey("figures", wallboard.FiguresCache)


class Database:
    """Runs `fn(session, *args)` in one transaction on the database thread."""

    def __init__(self, factory, workers: int = 1) -> None:
        self.factory = factory
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="console-db")

    async def __call__(self, fn, *args, **kwargs):
        def work():
            with transaction(self.factory) as session:
                return fn(session, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def route_table() -> tuple[tuple[str, str, Callable, frozenset[str]], ...]:
    """Every route of the console: method, path, handler, and the roles that may use it.
    `guard` refuses a route that is not here (and the static files, declared public in
    make_app) to everybody; tests/test_console_http.py checks each role against each route."""
    return (
        ("GET", "/healthz", healthz, PUBLIC),
        ("GET", "/favicon.ico", favicon, PUBLIC),
        ("GET", "/login", login_page, PUBLIC),
        ("POST", "/login", login, PUBLIC),
        ("POST", "/logout", logout, EVERYONE),
        ("POST", "/lang", switch_language, EVERYONE),
        ("GET", "/", home, EVERYONE),
        ("GET", "/password", password_page, EVERYONE),
        ("POST", "/password", change_password, EVERYONE),
        ("GET", "/agent", agent_page, AGENTS),
        ("POST", "/agent/presence", presence, AGENTS),
        ("POST", "/agent/disposition", disposition, AGENTS),
        ("GET", "/agent/counters", counters, AGENTS),
        ("GET", "/ws/agent", agent_socket, AGENTS),
        # agents: only the case they are on or have just dispositioned (cases.may_view_case)
        ("GET", "/cases/{case_id:\\d+}", case_page, EVERYONE),
        ("GET", "/api/cases/{case_id:\\d+}", case_json, EVERYONE),
        ("POST", "/cases/{case_id:\\d+}/unmask", case_page_unmasked, STAFF),
        ("POST", "/api/cases/{case_id:\\d+}/unmask", case_json_unmasked, STAFF),
        ("GET", "/wallboard", wallboard_page, WALLBOARD),
        ("GET", "/wallboard/data", wallboard_data, WALLBOARD),
        ("POST", "/wallboard/campaigns/{name}/{command}", campaign_command, WALLBOARD),
        ("GET", "/qa", qa.qa_page, STAFF),
        ("GET", "/qa/recordings/{recording_id:\\d+}", qa.recording_page, STAFF),
        ("POST", "/qa/recordings/{recording_id:\\d+}/play", playback.play, STAFF),
        ("GET", "/qa/audio/{token}", playback.audio, STAFF),
        ("POST", "/qa/findings/{finding_id}/verdict", qa.verdict, STAFF),
        ("GET", "/accounts", accounts_page, ADMINISTRATORS),
        ("POST", "/accounts/{username}/{command}", account_command, ADMINISTRATORS),
    )


def make_app(factory, settings: Settings | None = None, now: Callable[[], dt.datetime] = utc_now) -> web.Application:
    """The console as an aiohttp application over the session factory `factory`
    (campaigns.db.sessions(engine)); `now` is the clock."""
    settings = settings or Settings()
    app = web.Application(middlewares=[guard], client_max_size=256 * 1024)
    app[SETTINGS], app[CLOCK] = settings, now
    workers = 1 if factory.kw.get("bind") is None or factory.kw["bind"].dialect.name == "sqlite" else 4
    database = Database(factory, workers)
    app[DB] = database
    app[HUB] = Hub(database, settings, now)
    app[CACHE] = wallboard.FiguresCache(settings.figures_cache_s)
    app[playback.TOKENS] = {}
    app[GATE] = throttle.Gate(settings)
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    env.globals["qa_offset"] = qa.offset_label
    access: dict = {}
    static = app.router.add_static("/static/", HERE / "static", name="static")
    for route in static:
        access[route] = PUBLIC
    for method, path, handler, roles in route_table():
        added = app.router.add_get(path, handler) if method == "GET" else app.router.add_route(method, path, handler)
        for route in added.resource:
            if route.method == method or (method == "GET" and route.method == "HEAD"):
                access[route] = roles
    app[ACCESS] = access
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app


async def _start(app: web.Application) -> None:
    app[HUB].start()
    # the hash an unknown name is compared with, made now, not in the first such sign-in
    asyncio.get_running_loop().run_in_executor(None, accounts.passwords.dummy_hash, app[SETTINGS].passwords.scrypt_n)
    app[playback.SWEEPER] = asyncio.get_running_loop().create_task(playback.sweep_plays(app), name="console-plays")


async def _shutdown(app: web.Application) -> None:
    task = app.get(playback.SWEEPER)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await close_plays(app, app[CLOCK](), lambda play: True)
    await app[HUB].stop()


async def _cleanup(app: web.Application) -> None:
    await asyncio.get_running_loop().run_in_executor(None, app[DB].close)


def _load_who(session, token: str | None, now: dt.datetime, settings: Settings) -> Who | None:
    found = accounts.session_for(session, token, now, settings)
    if found is None:
        return None
    row, account = found
    agent = session.get(Agent, account.agent_id) if account.agent_id else None
    team = session.get(Team, account.team_id) if account.team_id else None
    return Who(account.id, row.id, account.username, account.display_name, account.role, account.agent_id,
               agent.extension if agent else None, account.team_id, team.name if team else None, account.language,
               row.csrf_token, accounts.must_change_password(account, now, settings))


@web.middleware
async def guard(request: web.Request, handler):
    settings = request.app[SETTINGS]
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect: the handler's own answer
            raise secure(exc, settings)
        # aiohttp's own errors (no such route, method not allowed, a static file that is not
        # there, a body that is not a form): our page, with the security headers.
        response = error(request, exc.status, "not_found" if exc.status == 404 else "bad_request")
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    return secure(response, settings)


async def _guarded(request: web.Request, handler) -> web.StreamResponse:
    app = request.app
    settings, now = app[SETTINGS], app[CLOCK]()
    path = request.path
    match = request.match_info
    if match.http_exception is not None:
        raise match.http_exception
    roles = app[ACCESS].get(match.route)
    if roles is not None and ANONYMOUS in roles:
        return await handler(request)
    token = request.cookies.get(SESSION_COOKIE)
    who = await app[DB](_load_who, token, now, settings) if token else None
    lang = language(request, who)
    request[LANG] = lang
    if who is None:
        if request.method == "GET" and not wants_json(request) and path != "/ws/agent":
            raise web.HTTPFound("/login" + ("?expired=1" if token else ""))
        return error(request, 401, "login.expired", lang)
    request[WHO] = who
    if request.method == "POST":
        form = await read_form(request)
        if not csrf_ok(who.csrf, request, form):
            log.warning("refused a POST to %s without a valid CSRF token (account %s)", path, who.username)
            return error(request, 403, "csrf.refused", lang)
        request[FORM] = form
    if who.must_change_password and path not in ("/password", "/logout", "/lang"):
        if request.method == "GET" and not wants_json(request) and path != "/ws/agent":
            raise web.HTTPFound("/password")
        return error(request, 403, "password.must_change", lang)
    if roles is None or who.role not in roles:  # not declared: nobody; declared: those roles only
        await app[DB](_audit_refusal, who, now, path, remote(request))
        return error(request, 403, "forbidden.role", lang)
    return await handler(request)


def _audit_refusal(session, who: Who, now: dt.datetime, path: str, address: str | None) -> None:
    account = session.get(Account, who.account_id)
    accounts.audit(session, now, "page", "refused", account=account, subject=path[:100], remote=address)


# ---------------------------------------------------------------- signing in and out

async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


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

        def attempt(session):
            if name_wait > 0:  # the name's delay, except from the account's own known addresses
                account = session.scalar(select(Account).where(Account.username == typed))
                if account is None or not accounts.known_address(session, account, address):
                    return "throttled", None
            try:
                account = accounts.authenticate(session, username, password, now, settings, address)
            except accounts.SignInRefused as refused:
                return "refused", refused
            accounts.end_replaced_session(session, old_token, account, now)
            token, _row = accounts.start_session(session, account, now, settings, address)
            return "ok", (token, account.role)

        outcome, value = await app[DB](attempt)
        if outcome == "throttled":
            return await _throttled(request, name_wait)
        if outcome == "refused":
            await _count_failure(app, gate, address_key, name_key, typed, address, now)
            # One answer for an unknown name, a wrong password, a disabled and a locked account.
            return await login_page(request, i18n.t("login.failed", lang), 401)
        gate.by_name.clear(name_key)
    token, role = value
    response = web.HTTPFound(HOME.get(role, "/"))
    set_cookie(response, SESSION_COOKIE, token, settings, max_age=int(settings.session_max_age.total_seconds()))
    response.del_cookie(PRELOGIN_COOKIE, path="/")
    raise response


async def _count_failure(app: web.Application, gate: throttle.Gate, address_key: str, name_key: str, typed: str,
                         address: str | None, now: dt.datetime) -> None:
    """Count a refused attempt against the address and the name; when either has just reached
    its free failures (delays start), say so in the audit log (once, not per attempt)."""
    settings = app[SETTINGS]
    started = []
    if gate.by_address.failed(address_key, now) == gate.by_address.free:
        started.append("address")
    if gate.by_name.failed(name_key, now) == gate.by_name.free:
        started.append("name")
    if not started:
        return

    def note(session):
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
    await app[DB](note)


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

    def save(session):
        session.get(Account, who.account_id).language = to
    await request.app[DB](save)
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

        def change(session):
            account = session.get(Account, who.account_id)
            accounts.change_own_password(session, account, form.get("current_password", ""),
                                         form.get("new_password", ""), now, settings, keep_session=who.session_id,
                                         remote=address)
        try:
            await app[DB](change)
        except accounts.WeakPassword as weak:
            text = "; ".join(i18n.t(f"password.problem.{code}", lang) for code in weak.codes)
            return await password_page(request, text, status=400)
        except accounts.AccountError:
            await _count_failure(app, gate, address_key, name_key, who.username, address, now)
            return await password_page(request, i18n.t("password.wrong", lang), status=400)
    return await password_page(request, i18n.t("password.changed", lang), ok=True)


# ---------------------------------------------------------------- the agent

async def agent_page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    codes = [(code, f"code.{code}") for code in DISPOSITION_CODES]
    return render(request, "agent.html", {"pause_reasons": cases.PAUSE_REASONS, "codes": codes,
                                          "strings": strings(request, "state.", "phone.", "code.", "case.",
                                                              "agent.", "dispo.", "pause.", "promise."),
                                          "wrap_up_limit_s": int(settings.wrap_up_limit.total_seconds()),
                                          "requesters": ("debtor", "third_party", "agent")})


def _refused(request: web.Request, refused: cases.Refused) -> web.Response:
    return error(request, refused.status, refused.key, request[LANG], **refused.values)


async def presence(request: web.Request) -> web.Response:
    app, now, who, form = request.app, request.app[CLOCK](), request[WHO], request[FORM]

    def ask(session):
        account = session.get(Account, who.account_id)
        cases.request_presence(session, account, form.get("requested", ""), form.get("reason") or None, now)
        return cases.presence_view(session, who.agent_id, now, app[SETTINGS])
    try:
        view = await app[DB](ask)
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

    def save(session):
        account = session.get(Account, who.account_id)
        result = cases.dispose(session, account, data, now)
        return result, cases.presence_view(session, who.agent_id, now, app[SETTINGS])
    try:
        result, view = await app[DB](save)
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

    def load(session):
        return cases.open_case(session, session.get(Account, who.account_id), case_id, now, app[SETTINGS],
                               remote(request), unmask=unmask)
    result = await app[DB](load)
    return _refused(request, result) if isinstance(result, cases.Refused) else result


# ---------------------------------------------------------------- the wallboard

async def wallboard_page(request: web.Request) -> web.Response:
    return render(request, "wallboard.html", {"strings": strings(request, "state.", "wall.", "pause.")})


async def wallboard_data(request: web.Request) -> web.Response:
    app, now, who = request.app, request.app[CLOCK](), request[WHO]

    def load(session):
        return wallboard.wallboard(session, session.get(Account, who.account_id), now, app[SETTINGS], app[CACHE])
    return web.json_response(await app[DB](load))


async def campaign_command(request: web.Request) -> web.Response:
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    name, command = request.match_info["name"], request.match_info["command"]
    command = {"pause": "pause", "resume": "start"}.get(command)
    if command is None:
        return error(request, 404, "not_found", request[LANG])

    def change(session):
        campaign = wallboard.pause_or_resume(session, session.get(Account, who.account_id), name, command, now,
                                             app[CACHE])
        return campaign.status
    try:
        status = await app[DB](change)
    except CampaignError as exc:
        return web.json_response({"ok": False, "message": str(exc)}, status=409)
    return web.json_response({"ok": True, "status": status})


# ---------------------------------------------------------------- accounts (administrators)

async def accounts_page(request: web.Request) -> web.Response:
    now = request.app[CLOCK]()

    def load(session):
        return accounts.list_accounts(session, now), accounts.lock_events(session)
    rows, events = await request.app[DB](load)
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


# ---------------------------------------------------------------- running it

async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving `app` on host:port; returns the runner (await runner.cleanup() to stop)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def serve(site, factory, host: str = "127.0.0.1", port: int = 8080, settings: Settings | None = None,
          say: Callable[[str], None] = print) -> None:
    """Run the console until SIGTERM or Ctrl-C (`dunning console serve`). `site` gives the
    recordings directory; plain HTTP sets Secure cookies off only on a loopback address.
    $DUNNING_CONSOLE_TRUSTED_PROXIES (addresses, comma-separated) names the reverse proxies
    whose X-Forwarded-For is believed, when `settings` names none."""
    if settings is None:
        loopback = host in ("127.0.0.1", "::1", "localhost")
        settings = Settings(recordings_root=Path(site.recordings_root), cookie_secure=not loopback)
    proxies = tuple(p.strip() for p in os.environ.get("DUNNING_CONSOLE_TRUSTED_PROXIES", "").split(",") if p.strip())
    if proxies and not settings.trusted_proxies:
        settings = dataclasses.replace(settings, trusted_proxies=proxies)

    async def main() -> None:
        app = make_app(factory, settings)
        runner = await start(app, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        say(f"console on http://{host}:{port}/ (cookies {'Secure: serve it behind HTTPS' if settings.cookie_secure else 'for loopback only'}); "
            "Ctrl-C stops it")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
    asyncio.run(main())
