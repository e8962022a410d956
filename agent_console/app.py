"""The console's web application (aiohttp): sign-in, the agent page with its WebSocket, the
supervisor's wallboard, the QA pages and the administrator's account list.

`make_app(factory, settings, now=...)` builds it; `serve(site, factory, host, port)` runs it
until SIGTERM or Ctrl-C (what `dunning console serve` calls). The clock is read only through
`now` (a callable returning an aware datetime), so tests set the time.

The handlers are in one module per audience: sign_in (everyone), agent_desk (agents, and the
case card), wallboard (supervisors), qa and playback (QA staff), account_admin
(administrators); what they share is pages.py. Each runs its database work as plain functions
of a Session through `app[DB]`.

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
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from campaigns.clock import utc_now
from campaigns.db import transaction
from campaigns.models import Agent

from . import account_admin, accounts, agent_desk, call_control, playback, qa, sign_in, throttle, wallboard
from .live import Hub
from .pages import (ACCESS, CLOCK, DB, FORM, GATE, HUB, LANG, SESSION_COOKIE, SETTINGS, WHO, Who, csrf_ok, error,
                    language, read_form, remote, secure, wants_json)
from .schema import ROLES, Account, Team
from .settings import Settings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent

#: Who may use a route. ANONYMOUS in a declaration makes the route public (no session).
ANONYMOUS = "anonymous"
PUBLIC = frozenset({ANONYMOUS, *ROLES})
EVERYONE = frozenset(ROLES)
AGENTS = frozenset({"agent"})
STAFF = frozenset({"supervisor", "qa", "administrator"})  # read cases, recordings, findings (their teams')
WALLBOARD = frozenset({"supervisor", "administrator"})
SUPERVISORS = frozenset({"supervisor"})  # listening in on live calls
ADMINISTRATORS = frozenset({"administrator"})


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
        ("GET", "/login", sign_in.login_page, PUBLIC),
        ("POST", "/login", sign_in.login, PUBLIC),
        ("POST", "/logout", sign_in.logout, EVERYONE),
        ("POST", "/lang", sign_in.switch_language, EVERYONE),
        ("GET", "/", sign_in.home, EVERYONE),
        ("GET", "/password", sign_in.password_page, EVERYONE),
        ("POST", "/password", sign_in.change_password, EVERYONE),
        ("GET", "/agent", agent_desk.agent_page, AGENTS),
        ("POST", "/agent/presence", agent_desk.presence, AGENTS),
        ("POST", "/agent/disposition", agent_desk.disposition, AGENTS),
        ("GET", "/agent/counters", agent_desk.counters, AGENTS),
        ("GET", "/ws/agent", agent_desk.agent_socket, AGENTS),
        ("POST", "/agent/call/hangup", call_control.hang_up, AGENTS),
        ("POST", "/agent/call/transfer", call_control.transfer, AGENTS),
        ("POST", "/agent/call/transfer/{how}", call_control.transfer_end, AGENTS),
        ("POST", "/agent/call/number", call_control.mark_number, AGENTS),
        # agents: only the case they are on or have just dispositioned (cases.may_view_case)
        ("GET", "/cases/{case_id:\\d+}", agent_desk.case_page, EVERYONE),
        ("GET", "/api/cases/{case_id:\\d+}", agent_desk.case_json, EVERYONE),
        ("POST", "/cases/{case_id:\\d+}/unmask", agent_desk.case_page_unmasked, STAFF),
        ("POST", "/api/cases/{case_id:\\d+}/unmask", agent_desk.case_json_unmasked, STAFF),
        ("GET", "/wallboard", wallboard.wallboard_page, WALLBOARD),
        ("GET", "/wallboard/data", wallboard.wallboard_data, WALLBOARD),
        ("POST", "/wallboard/campaigns/{name}/{command}", wallboard.campaign_command, WALLBOARD),
        ("POST", "/wallboard/calls/{call_id}/{mode}", call_control.listen_in, SUPERVISORS),
        ("GET", "/qa", qa.qa_page, STAFF),
        ("GET", "/qa/recordings/{recording_id:\\d+}", qa.recording_page, STAFF),
        ("POST", "/qa/recordings/{recording_id:\\d+}/play", playback.play, STAFF),
        ("GET", "/qa/audio/{token}", playback.audio, STAFF),
        ("POST", "/qa/findings/{finding_id}/verdict", qa.verdict, STAFF),
        ("GET", "/qa/review", qa.review_page, STAFF),
        ("GET", "/qa/precision", qa.precision_page, STAFF),
        ("GET", "/accounts", account_admin.accounts_page, ADMINISTRATORS),
        ("POST", "/accounts/{username}/{command}", account_admin.account_command, ADMINISTRATORS),
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
    app[wallboard.CACHE] = wallboard.FiguresCache(settings.figures_cache_s)
    app[playback.TOKENS] = {}
    app[GATE] = throttle.Gate(settings)
    link = app[call_control.LINK] = call_control.AsteriskLink()
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
    app.on_startup.append(link.open)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(link.close)
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
    await playback.close_plays(app, app[CLOCK](), lambda play: True)
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


# ---------------------------------------------------------------- for probes and browsers

async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


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
