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
import hmac
import ipaddress
import json
import logging
import math
import mimetypes
import os
import secrets
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import WSMsgType, web
from markupsafe import Markup
from sqlalchemy import select

from campaigns.admin import DISPOSITION_CODES
from campaigns.clock import utc_now
from campaigns.db import transaction
from campaigns.models import Agent
from campaigns.queue import CampaignError

from . import accounts, cases, i18n, qa_pages, throttle, wallboard
from .live import Hub
from .schema import ROLES, Account, Team
from .settings import Settings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "dunning_session"
PRELOGIN_COOKIE = "dunning_prelogin"
LANG_COOKIE = "dunning_lang"
HOME = {"agent": "/agent", "supervisor": "/wallboard", "qa": "/qa", "administrator": "/wallboard"}
PLAY_REASONS = ("qa_review", "complaint", "dispute")

#: Who may use a route. ANONYMOUS in a declaration makes the route public (no session).
ANONYMOUS = "anonymous"
PUBLIC = frozenset({ANONYMOUS, *ROLES})
EVERYONE = frozenset(ROLES)
AGENTS = frozenset({"agent"})
STAFF = frozenset({"supervisor", "qa", "administrator"})  # read cases, recordings, findings (their teams')
WALLBOARD = frozenset({"supervisor", "administrator"})
ADMINISTRATORS = frozenset({"administrator"})

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Callable)
HUB = web.AppKey("hub", Hub)
DB = web.AppKey("db", object)
CACHE = web.AppKey("figures", wallboard.FiguresCache)
TOKENS = web.AppKey("playback_tokens", dict)
ACCESS = web.AppKey("access", dict)
GATE = web.AppKey("sign_in_gate", object)
SWEEPER = web.AppKey("sweeper", object)


def _request_key(name: str, kind: type):
    maker = getattr(web, "RequestKey", None)  # aiohttp >= 3.12
    return maker(name, kind) if maker else name


LANG = _request_key("lang", str)
FORM = _request_key("form", dict)


@dataclass(frozen=True)
class Who:
    """The signed-in person, as the handlers see them (no database object leaves its thread)."""

    account_id: int
    session_id: int
    username: str
    display_name: str
    role: str
    agent_id: int | None
    extension: str | None
    team_id: int | None
    team: str | None
    language: str | None
    csrf: str
    must_change_password: bool


WHO = _request_key("who", Who)


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


class Gate:
    """The sign-in throttles: one per source address, one per typed user name."""

    def __init__(self, settings: Settings) -> None:
        self.by_address = throttle.Throttle(settings.throttle_free_address, settings.throttle_base,
                                            settings.throttle_max, settings.failure_window)
        self.by_name = throttle.Throttle(settings.throttle_free_name, settings.throttle_base,
                                         settings.throttle_max, settings.failure_window)
        self.name_key = throttle.NameKeys()


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
        ("GET", "/qa", qa_page, STAFF),
        ("GET", "/qa/recordings/{recording_id:\\d+}", recording_page, STAFF),
        ("POST", "/qa/recordings/{recording_id:\\d+}/play", play, STAFF),
        ("GET", "/qa/audio/{token}", audio, STAFF),
        ("POST", "/qa/findings/{finding_id}/verdict", verdict, STAFF),
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
    app[TOKENS] = {}
    app[GATE] = Gate(settings)
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    env.globals["qa_offset"] = qa_pages.offset_label
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
    app[SWEEPER] = asyncio.get_running_loop().create_task(_sweep_plays(app), name="console-plays")


async def _shutdown(app: web.Application) -> None:
    task = app.get(SWEEPER)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await _close_plays(app, app[CLOCK](), lambda play: True)
    await app[HUB].stop()


async def _cleanup(app: web.Application) -> None:
    await asyncio.get_running_loop().run_in_executor(None, app[DB].close)


# ---------------------------------------------------------------- plumbing

def language(request: web.Request, who: Who | None = None) -> str:
    settings = request.app[SETTINGS]
    if who is not None and who.language in i18n.LANGUAGES:
        return who.language
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in i18n.LANGUAGES:
        return cookie
    return i18n.from_accept_language(request.headers.get("Accept-Language"), settings.default_language)


def _an_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def remote(request: web.Request) -> str | None:
    """The client's address: the peer's, or behind a trusted proxy (settings.trusted_proxies)
    the last X-Forwarded-For hop that is not one of the trusted proxies."""
    address = request.remote or ""
    proxies = request.app[SETTINGS].trusted_proxies
    if proxies and address in proxies:
        hops = [hop.strip() for line in request.headers.getall("X-Forwarded-For", ()) for hop in line.split(",")]
        for hop in reversed([h for h in hops if h]):
            if not _an_address(hop):
                break
            address = hop
            if hop not in proxies:
                break
    return address[:64] or None


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


def may_get(role: str, path: str) -> bool:
    """Whether `role` may open the page at `path` (GET), by the route table (for the menu)."""
    return any(method == "GET" and route_path == path and role in roles
               for method, route_path, _handler, roles in route_table())


JSON_PATHS = ("/api/", "/agent/", "/wallboard/", "/qa/findings/", "/qa/audio/")


def _wants_json(request: web.Request) -> bool:
    path = request.path
    return (path.startswith(JSON_PATHS) or (path.startswith("/qa/recordings/") and path.endswith("/play"))
            or "application/json" in request.headers.get("Accept", ""))


def _error(request: web.Request, status: int, key: str, lang: str | None = None, **values) -> web.Response:
    lang = lang or request.get(LANG) or language(request)
    text = i18n.t(key, lang, **{k: (i18n.t(v, lang) if isinstance(v, str) and v in i18n.CATALOGUE else v)
                                for k, v in values.items()})
    if _wants_json(request):
        return web.json_response({"ok": False, "error": key, "message": text}, status=status)
    return render(request, "error.html", {"message": text, "status": status}, status=status)


async def _form(request: web.Request) -> dict[str, str]:
    """The POST's fields (a form or a JSON object); a body that is neither is a 400."""
    try:
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            data = await request.post()
            return {k: v for k, v in data.items() if isinstance(v, str)}
        if request.content_type == "application/json":
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    except (ValueError, UnicodeDecodeError, AssertionError):  # json.JSONDecodeError is a ValueError
        raise web.HTTPBadRequest() from None
    return {}


def _csrf_ok(expected: str | None, request: web.Request, form: dict[str, str]) -> bool:
    given = form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def safe_next(value: str | None, default: str = "/") -> str:
    """`value` when it is a path on this console, else `default`: never another site, whatever
    browsers make of tabs, newlines, backslashes or percent signs in it (/%09/evil.example is
    //evil.example to a browser)."""
    if not value or not value.startswith("/") or len(value) > 2000:
        return default
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in value):
        return default
    if value.startswith("//") or "%" in value.split("?", 1)[0]:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                                "base-uri 'none'; object-src 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@web.middleware
async def guard(request: web.Request, handler):
    settings = request.app[SETTINGS]
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect: the handler's own answer
            raise _secure(exc, settings)
        # aiohttp's own errors (no such route, method not allowed, a static file that is not
        # there, a body that is not a form): our page, with the security headers.
        response = _error(request, exc.status, "not_found" if exc.status == 404 else "bad_request")
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    return _secure(response, settings)


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
        if request.method == "GET" and not _wants_json(request) and path != "/ws/agent":
            raise web.HTTPFound("/login" + ("?expired=1" if token else ""))
        return _error(request, 401, "login.expired", lang)
    request[WHO] = who
    if request.method == "POST":
        form = await _form(request)
        if not _csrf_ok(who.csrf, request, form):
            log.warning("refused a POST to %s without a valid CSRF token (account %s)", path, who.username)
            return _error(request, 403, "csrf.refused", lang)
        request[FORM] = form
    if who.must_change_password and path not in ("/password", "/logout", "/lang"):
        if request.method == "GET" and not _wants_json(request) and path != "/ws/agent":
            raise web.HTTPFound("/password")
        return _error(request, 403, "password.must_change", lang)
    if roles is None or who.role not in roles:  # not declared: nobody; declared: those roles only
        await app[DB](_audit_refusal, who, now, path, remote(request))
        return _error(request, 403, "forbidden.role", lang)
    return await handler(request)


def _audit_refusal(session, who: Who, now: dt.datetime, path: str, address: str | None) -> None:
    account = session.get(Account, who.account_id)
    accounts.audit(session, now, "page", "refused", account=account, subject=path[:100], remote=address)


def _secure(response: web.StreamResponse, settings: Settings) -> web.StreamResponse:
    if response.prepared:  # a WebSocket or a file already sent its headers
        return response
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if settings.cookie_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if response.content_type in ("text/html", "application/json", "text/plain"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _set_cookie(response: web.StreamResponse, name: str, value: str, settings: Settings,
                max_age: int | None = None) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=settings.cookie_secure, path="/",
                        max_age=max_age)


def render(request: web.Request, template: str, context: dict, status: int = 200) -> web.Response:
    lang = request.get(LANG) or language(request)
    who: Who | None = request.get(WHO)
    base = {"t": lambda key, **values: i18n.t(key, lang, **values), "lang": lang, "who": who,
            "csrf": who.csrf if who else context.get("csrf", ""), "path": request.path_qs,
            "nav": _nav(who)}
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def _nav(who: Who | None) -> list[tuple[str, str, str]]:
    if who is None or who.must_change_password:
        return []
    items = [("/agent", "nav.agent", "nav-agent"), ("/wallboard", "nav.wallboard", "nav-wallboard"),
             ("/qa", "nav.qa", "nav-qa"), ("/accounts", "nav.accounts", "nav-accounts")]
    return [item for item in items if may_get(who.role, item[0])] + [("/password", "nav.password", "nav-password")]


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
    _set_cookie(response, PRELOGIN_COOKIE, token, settings)
    if chosen in i18n.LANGUAGES:
        _set_cookie(response, LANG_COOKIE, chosen, settings, max_age=365 * 86400)
    return response


async def _throttled(request: web.Request, seconds: float, page=None) -> web.Response:
    """The answer to an attempt that came before its delay was over: not checked at all."""
    wait = max(1, math.ceil(seconds))
    text = i18n.t("login.throttled", request[LANG], s=wait)
    response = await (page or login_page)(request, text, status=429)
    response.headers["Retry-After"] = str(wait)
    return response


@contextlib.asynccontextmanager
async def _one_at_a_time(gate: Gate, *keys: str):
    """Attempts on the same address or name are checked one after the other, so that parallel
    requests cannot all slip in before the first failure is counted."""
    async with contextlib.AsyncExitStack() as stack:
        for key in keys:
            await stack.enter_async_context(gate.by_address.hold(key) if key.startswith("address:")
                                            else gate.by_name.hold(key))
        yield


async def login(request: web.Request) -> web.StreamResponse:
    app, settings = request.app, request.app[SETTINGS]
    lang = language(request)
    request[LANG] = lang
    form = await _form(request)
    if not _csrf_ok(request.cookies.get(PRELOGIN_COOKIE), request, form):
        return await login_page(request, i18n.t("csrf.refused", lang), 403)
    username, password = form.get("username", ""), form.get("password", "")
    typed = username.strip().lower()[:64]
    address = remote(request)
    gate: Gate = app[GATE]
    address_key, name_key = throttle.address_key(address), gate.name_key(username)
    old_token = request.cookies.get(SESSION_COOKIE)
    async with _one_at_a_time(gate, address_key, name_key):
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
    _set_cookie(response, SESSION_COOKIE, token, settings, max_age=int(settings.session_max_age.total_seconds()))
    response.del_cookie(PRELOGIN_COOKIE, path="/")
    raise response


async def _count_failure(app: web.Application, gate: Gate, address_key: str, name_key: str, typed: str,
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
    await _close_plays(app, now, lambda p: p.session_id == who.session_id)
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
    _set_cookie(response, LANG_COOKIE, to, request.app[SETTINGS], max_age=365 * 86400)
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
    gate: Gate = app[GATE]
    address = remote(request)
    address_key, name_key = throttle.address_key(address), gate.name_key(who.username)
    async with _one_at_a_time(gate, address_key, name_key):
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
                                          "strings": _strings(request, "state.", "phone.", "code.", "case.",
                                                              "agent.", "dispo.", "pause.", "promise."),
                                          "wrap_up_limit_s": int(settings.wrap_up_limit.total_seconds()),
                                          "requesters": ("debtor", "third_party", "agent")})


def _strings(request: web.Request, *prefixes: str) -> dict[str, str]:
    """The catalogue entries a page's script needs, in the page's language."""
    lang = request[LANG]
    return {key: i18n.t(key, lang) for key in i18n.CATALOGUE if key.startswith(prefixes)}


def _refused(request: web.Request, refused: cases.Refused) -> web.Response:
    return _error(request, refused.status, refused.key, request[LANG], **refused.values)


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
        return _error(request, 403, "forbidden", request[LANG])
    if who.agent_id is None:
        return _error(request, 403, "forbidden", request[LANG])
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
    return render(request, "wallboard.html", {"strings": _strings(request, "state.", "wall.", "pause.")})


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
        return _error(request, 404, "not_found", request[LANG])

    def change(session):
        campaign = wallboard.pause_or_resume(session, session.get(Account, who.account_id), name, command, now,
                                             app[CACHE])
        return campaign.status
    try:
        status = await app[DB](change)
    except CampaignError as exc:
        return web.json_response({"ok": False, "message": str(exc)}, status=409)
    return web.json_response({"ok": True, "status": status})


# ---------------------------------------------------------------- QA

async def qa_page(request: web.Request) -> web.Response:
    """Recent recordings, the transcript search and the week's sample, all of the reader's
    team's campaigns (every campaign for administrators); each search is audited with its
    query and the number of hits."""
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    query = request.query.get("q", "").strip()[:200]
    address = remote(request)

    def load(session):
        account = session.get(Account, who.account_id)
        campaigns = cases.visible_campaigns(session, account)
        out = {"recent": qa_pages.recent_recordings(session, campaigns=campaigns), "hits": None,
               "search_error": None, "samples": [], "sample_error": None}
        if query:
            try:
                hits = qa_pages.search(session, query, campaigns=campaigns)
                out["hits"] = [(hit, Markup(qa_pages.highlight(hit.snippet, hit.matched, query, hit.span)))
                               for hit in hits]
                result, subject = "ok", f"{len(hits)} hit(s) in {len({h.recording_id for h in hits})} call(s)"
            except qa_pages.NotAvailable as exc:
                out["search_error"] = str(exc)
                result, subject = "unavailable", None
            accounts.audit(session, now, "transcript_search", result, account=account, subject=subject,
                           detail=query, remote=address)
        if campaigns is None:
            teams = session.scalars(select(Team).order_by(Team.name)).all()
        else:
            teams = [session.get(Team, who.team_id)] if who.team_id is not None else []
        try:
            for team in teams:
                agent_ids = session.scalars(select(Account.agent_id).where(
                    Account.team_id == team.id, Account.agent_id.is_not(None))).all()
                out["samples"].append(qa_pages.weekly_sample(session, team.name, list(agent_ids), now,
                                                             app[SETTINGS].qa_sample_seed))
        except qa_pages.NotAvailable as exc:
            out["sample_error"] = str(exc)
        except ValueError as exc:  # recordings.qa.QaError
            out["sample_error"] = str(exc)
        return out
    return render(request, "qa.html", {"query": query, **await app[DB](load)})


async def recording_page(request: web.Request) -> web.Response:
    """A recording of the reader's team's campaigns, with its findings; every view is audited."""
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    recording_id = int(request.match_info["recording_id"])
    try:
        offset = max(0.0, float(request.query.get("t", "0")))
    except ValueError:
        offset = 0.0
    if not math.isfinite(offset):
        offset = 0.0
    address = remote(request)

    def load(session):
        from campaigns.models import Attempt, Case, Recording, VaultFile
        account = session.get(Account, who.account_id)
        row = session.execute(select(VaultFile, Attempt, Case).join(Recording, Recording.id == VaultFile.recording_id)
                              .join(Attempt, Attempt.id == Recording.attempt_id).join(Case, Case.id == Attempt.case_id)
                              .where(VaultFile.recording_id == recording_id)).first()
        subject = f"recording {recording_id}"
        if row is None:
            accounts.audit(session, now, "recording_view", "not_found", account=account, subject=subject,
                           remote=address)
            return None
        stored, attempt, case = row
        if not cases.may_see_campaign(session, account, attempt.campaign_id):
            accounts.audit(session, now, "recording_view", "refused", account=account, subject=subject,
                           remote=address)
            return "refused"
        try:
            found, error = qa_pages.findings(session, recording_id), None
        except qa_pages.NotAvailable as exc:
            found, error = [], str(exc)
        accounts.audit(session, now, "recording_view", "ok", account=account, subject=subject,
                       detail=f"case {case.id}, call {attempt.call_id}, {len(found)} finding(s)", remote=address)
        return {"recording_id": recording_id, "call_id": attempt.call_id, "case_id": case.id,
                "reference": case.reference, "seconds": float(stored.seconds), "recorded_at": stored.recorded_at,
                "purged": stored.purged_at is not None, "findings": found, "findings_error": error}
    info = await app[DB](load)
    if info is None:
        return _error(request, 404, "not_found", request[LANG])
    if info == "refused":
        return _error(request, 403, "forbidden.recording", request[LANG])
    return render(request, "recording.html", {"rec": info, "offset": offset, "reasons": PLAY_REASONS,
                                              "verdicts": qa_pages.VERDICTS, "who": who})


@dataclass
class Play:
    """One logged playback: what its token lets its session fetch, and what it has fetched."""

    play_id: str
    session_id: int
    account_id: int
    recording_id: int
    reason: str
    path: Path
    size: int
    expires: dt.datetime
    remote: str | None
    served: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of the bytes sent
    requests: int = 0
    sent: int = 0
    opened: bool = False   # its first bytes were audited
    spent: bool = False    # its byte budget ran out (audited once)

    def ranges(self) -> str:
        merged: list[list[int]] = []
        for start, end in sorted(r for r in self.served if r[1] > r[0]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return ", ".join(f"{a}-{b - 1}" for a, b in merged) or "none"


async def play(request: web.Request) -> web.Response:
    """Log one playback (recordings.access.playback: checksum checked, RecordingAccess row)
    of a recording of the reader's team, and hand out a short-lived token for the audio URL;
    the audio is served only with it (and `audio` audits what it sends)."""
    from recordings import access
    from recordings.errors import AccessRefused, IntegrityError, NotFound
    app, now, who, form, lang = request.app, request.app[CLOCK](), request[WHO], request[FORM], request[LANG]
    settings = app[SETTINGS]
    recording_id = int(request.match_info["recording_id"])
    reason = form.get("reason", "")
    if reason not in PLAY_REASONS:
        return _error(request, 400, "qa.refused", lang, error=i18n.t("qa.play_reason", lang))
    reason_text = f"console: {i18n.t(f'qa.reason.{reason}', 'en')}"
    play_id = secrets.token_hex(4)
    address = remote(request)

    def log_playback(session):
        account = session.get(Account, who.account_id)
        if not cases.may_see_campaign(session, account, qa_pages.recording_campaign(session, recording_id)):
            accounts.audit(session, now, "recording_play", "refused", account=account,
                           subject=f"recording {recording_id}", detail=reason, remote=address)
            return None
        path = access.playback(session, settings.recordings_root, recording_id, who.username, reason_text, now)
        accounts.audit(session, now, "recording_play", "ok", account=account, subject=f"recording {recording_id}",
                       detail=f"play {play_id}: {reason}", remote=address)
        return path
    try:
        path = await app[DB](log_playback)
    except (AccessRefused, IntegrityError, NotFound) as exc:
        return _error(request, 409, "qa.refused", lang, error=str(exc))
    if path is None:
        return _error(request, 403, "forbidden.recording", lang)
    # Expired plays end, and so do this session's earlier plays of the same recording.
    await _close_plays(app, now, lambda p: p.expires <= now or (p.session_id == who.session_id
                                                                  and p.recording_id == recording_id))
    token = secrets.token_urlsafe(24)
    app[TOKENS][token] = Play(play_id, who.session_id, who.account_id, recording_id, reason, Path(path),
                              Path(path).stat().st_size, now + settings.playback_token_life, address)
    return web.json_response({"ok": True, "url": f"/qa/audio/{quote(token)}"})


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single-range Range header over `size` bytes; the whole file without
    one; None when it cannot be satisfied (several ranges, or past the end)."""
    if not header:
        return 0, size
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            length = int(last)
            return (max(0, size - length), size) if length > 0 and size > 0 else None
        start = int(first)
        end = size if last == "" else min(size, int(last) + 1)
    except ValueError:
        return None
    if start < 0 or start >= size or end <= start:
        return None
    return start, end


async def audio(request: web.Request) -> web.StreamResponse:
    """The recording's file, with HTTP range requests (seeking), for a logged playback only.

    Audited once per play, not per range request: an entry when the play's first bytes are
    sent, and one when the play ends (`_close_plays`) with every byte range it sent. A play
    that has sent settings.playback_bytes_factor times the file sends no more: fetching it
    again takes a new, logged, playback."""
    app, who, now = request.app, request[WHO], request.app[CLOCK]()
    play_ = app[TOKENS].get(request.match_info["token"])
    if play_ is None or play_.session_id != who.session_id or play_.expires <= now:
        return _error(request, 403, "qa.token", request[LANG])
    size = play_.size
    wanted = _byte_range(request.headers.get("Range"), size)
    if wanted is None:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted
    if play_.sent >= app[SETTINGS].playback_bytes_factor * size:
        if not play_.spent:
            play_.spent = True
            await app[DB](_audit_play, play_, who, now, "refused",
                          f"play {play_.play_id}: the play's bytes are spent ({play_.sent} sent of a "
                          f"{size}-byte file); a new playback is needed")
        return _error(request, 403, "qa.play_again", request[LANG])
    if not play_.opened:
        play_.opened = True
        await app[DB](_audit_play, play_, who, now, "ok",
                      f"play {play_.play_id}: first bytes {start}-{end - 1} of {size}")
    play_.requests += 1
    headers = {"Content-Type": mimetypes.guess_type(play_.path.name)[0] or "application/octet-stream",
               "Accept-Ranges": "bytes", "Content-Length": str(end - start), "Cache-Control": "no-store",
               "Content-Disposition": "inline"}
    partial = "Range" in request.headers
    if partial:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=206 if partial else 200, headers=headers)
    _secure(response, app[SETTINGS])
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    sent = 0
    try:
        with play_.path.open("rb") as source:
            source.seek(start)
            while sent < end - start:
                chunk = await asyncio.to_thread(source.read, min(256 * 1024, end - start - sent))
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
                play_.sent += len(chunk)
        await response.write_eof()
    except ConnectionResetError:  # the browser stopped reading (it seeks elsewhere, or went away)
        pass
    finally:
        play_.served.append((start, start + sent))
    return response


def _audit_play(session, play_: Play, who: Who | None, now: dt.datetime, result: str, detail: str) -> None:
    account = session.get(Account, play_.account_id)
    accounts.audit(session, now, "recording_audio", result, account=account,
                   subject=f"recording {play_.recording_id}", detail=detail, remote=play_.remote)


async def _close_plays(app: web.Application, now: dt.datetime, which: Callable[[Play], bool]) -> None:
    """End the plays `which` picks: each gets one audit entry with what it sent (requests,
    bytes, the byte ranges merged)."""
    tokens = app[TOKENS]
    ending = [(token, p) for token, p in tokens.items() if which(p)]
    for token, _ in ending:
        tokens.pop(token, None)
    if not ending:
        return

    def note(session):
        for _token, p in ending:
            _audit_play(session, p, None, now, "closed",
                        f"play {p.play_id}: {p.requests} request(s), {p.sent} bytes sent of {p.size}; "
                        f"bytes {p.ranges()}")
    await app[DB](note)


async def _sweep_plays(app: web.Application) -> None:
    """Every 30 s, the plays whose token has expired end (and are audited)."""
    while True:
        await asyncio.sleep(30)
        try:
            now = app[CLOCK]()
            await _close_plays(app, now, lambda p: p.expires <= now)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("closing expired plays failed; trying again")


async def verdict(request: web.Request) -> web.Response:
    app, now, who, form = request.app, request.app[CLOCK](), request[WHO], request[FORM]
    finding_id = request.match_info["finding_id"]
    value = form.get("verdict", "")
    if value not in qa_pages.VERDICTS:
        return _error(request, 400, "not_found", request[LANG])
    key = int(finding_id) if finding_id.isdigit() else finding_id

    def save(session):
        account = session.get(Account, who.account_id)
        recording_id = qa_pages.finding_recording(session, key)
        if recording_id is not None and not cases.may_see_campaign(
                session, account, qa_pages.recording_campaign(session, recording_id)):
            accounts.audit(session, now, "qa_verdict", "refused", account=account, subject=f"finding {finding_id}",
                           detail=value, remote=remote(request))
            return False
        qa_pages.record_verdict(session, key, value, who.username, now, form.get("note", ""))
        accounts.audit(session, now, "qa_verdict", "ok", account=account,
                       subject=f"finding {finding_id}", detail=value, remote=remote(request))
        return True
    try:
        allowed = await app[DB](save)
    except qa_pages.NotAvailable as exc:
        return web.json_response({"ok": False, "message": i18n.t("qa.not_available", request[LANG], what=str(exc))},
                                 status=501)
    except ValueError as exc:  # recordings.qa.QaError / NotFound
        return web.json_response({"ok": False, "message": str(exc)}, status=400)
    if not allowed:
        return _error(request, 403, "forbidden.recording", request[LANG])
    back = safe_next(form.get("next"), "")
    if back.startswith("/qa/") and "application/json" not in request.headers.get("Accept", ""):
        raise web.HTTPFound(back)
    return web.json_response({"ok": True, "message": i18n.t("qa.verdict_saved", request[LANG])})


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
        return _error(request, 404, "not_found", request[LANG])
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
