"""The console's web application (aiohttp): sign-in, the agent page with its WebSocket, the
supervisor's wallboard, the QA pages and the administrator's account list.

`make_app(factory, settings, now=...)` builds it; `serve(site, factory, host, port)` runs it
until SIGTERM or Ctrl-C (what `dunning console serve` calls). The clock is read only through
`now` (a callable returning an aware datetime), so tests set the time.

Security, in one place (the `guard` middleware): every request but the sign-in page and the
static files needs a live session (its cookie is HttpOnly, SameSite=Strict, Secure unless
settings.cookie_secure is off); the session and its account are looked up on every request, so
a disabled account is out at its next click (and its WebSockets close within one poll); every
POST must carry the session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``;
the sign-in form a double-submit token); each page checks the role; responses carry a strict
Content-Security-Policy. Database work runs in one worker thread (SQLite's single writer).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import secrets
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import WSMsgType, web
from markupsafe import Markup
from sqlalchemy import select

from campaigns.admin import DISPOSITION_CODES
from campaigns.db import transaction
from campaigns.models import Agent
from campaigns.queue import CampaignError

from . import accounts, cases, i18n, qa_pages, wallboard
from .live import Hub
from .schema import Account, Team
from .settings import Settings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "dunning_session"
PRELOGIN_COOKIE = "dunning_prelogin"
LANG_COOKIE = "dunning_lang"
PUBLIC = ("/login", "/static/", "/healthz", "/favicon.ico")
#: Pages each role may open (by path prefix); everything else is refused with 403.
ROLE_PAGES = {
    "agent": ("/agent", "/ws/agent", "/cases/", "/api/cases/"),
    "supervisor": ("/wallboard", "/qa", "/cases/", "/api/cases/"),
    "qa": ("/qa", "/cases/", "/api/cases/"),
    "administrator": ("/wallboard", "/qa", "/cases/", "/api/cases/", "/accounts"),
}
COMMON = ("/", "/password", "/logout", "/lang")
HOME = {"agent": "/agent", "supervisor": "/wallboard", "qa": "/qa", "administrator": "/wallboard"}
PLAY_REASONS = ("qa_review", "complaint", "dispute")

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Callable)
HUB = web.AppKey("hub", Hub)
DB = web.AppKey("db", object)
CACHE = web.AppKey("figures", wallboard.FiguresCache)
TOKENS = web.AppKey("playback_tokens", dict)


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


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    env.globals["qa_offset"] = qa_pages.offset_label
    app.router.add_static("/static/", HERE / "static", name="static")
    routes = [
        web.get("/healthz", healthz), web.get("/favicon.ico", favicon), web.get("/login", login_page), web.post("/login", login),
        web.post("/logout", logout), web.post("/lang", switch_language), web.get("/", home),
        web.get("/password", password_page), web.post("/password", change_password),
        web.get("/agent", agent_page), web.post("/agent/presence", presence),
        web.post("/agent/disposition", disposition), web.get("/agent/counters", counters),
        web.get("/ws/agent", agent_socket),
        web.get("/cases/{case_id:\\d+}", case_page), web.get("/api/cases/{case_id:\\d+}", case_json),
        web.get("/wallboard", wallboard_page), web.get("/wallboard/data", wallboard_data),
        web.post("/wallboard/campaigns/{name}/{command}", campaign_command),
        web.get("/qa", qa_page), web.get("/qa/recordings/{recording_id:\\d+}", recording_page),
        web.post("/qa/recordings/{recording_id:\\d+}/play", play),
        web.get("/qa/audio/{token}", audio), web.post("/qa/findings/{finding_id}/verdict", verdict),
        web.get("/accounts", accounts_page), web.post("/accounts/{username}/{command}", account_command),
    ]
    app.add_routes(routes)
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app


async def _start(app: web.Application) -> None:
    app[HUB].start()


async def _shutdown(app: web.Application) -> None:
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


def remote(request: web.Request) -> str | None:
    return (request.remote or "")[:64] or None


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


def _allowed(role: str, path: str) -> bool:
    if path in COMMON:
        return True
    return any(path == p or path.startswith(p.rstrip("/") + "/") or (p.endswith("/") and path.startswith(p))
               for p in ROLE_PAGES.get(role, ()))


JSON_PATHS = ("/api/", "/agent/", "/wallboard/", "/qa/findings/", "/qa/audio/")


def _wants_json(request: web.Request) -> bool:
    path = request.path
    return (path.startswith(JSON_PATHS) or (path.startswith("/qa/recordings/") and path.endswith("/play"))
            or "application/json" in request.headers.get("Accept", ""))


def _error(request: web.Request, status: int, key: str, lang: str, **values) -> web.Response:
    text = i18n.t(key, lang, **{k: (i18n.t(v, lang) if isinstance(v, str) and v in i18n.CATALOGUE else v)
                                for k, v in values.items()})
    if _wants_json(request):
        return web.json_response({"ok": False, "error": key, "message": text}, status=status)
    return render(request, "error.html", {"message": text, "status": status}, status=status)


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        data = await request.post()
        return {k: v for k, v in data.items() if isinstance(v, str)}
    if request.content_type == "application/json":
        data = await request.json()
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return {}


def _csrf_ok(expected: str | None, request: web.Request, form: dict[str, str]) -> bool:
    given = form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


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
    app = request.app
    settings, now = app[SETTINGS], app[CLOCK]()
    path = request.path
    if path.startswith(PUBLIC) and path != "/logout":
        response = await handler(request)
        return _secure(response, settings)
    token = request.cookies.get(SESSION_COOKIE)
    who = await app[DB](_load_who, token, now, settings) if token else None
    lang = language(request, who)
    request[LANG] = lang
    if who is None:
        if request.method == "GET" and not _wants_json(request) and path != "/ws/agent":
            raise web.HTTPFound("/login" + ("?expired=1" if token else ""))
        return _secure(_error(request, 401, "login.expired", lang), settings)
    request[WHO] = who
    if request.method == "POST":
        form = await _form(request)
        if not _csrf_ok(who.csrf, request, form):
            log.warning("refused a POST to %s without a valid CSRF token (account %s)", path, who.username)
            return _secure(_error(request, 403, "csrf.refused", lang), settings)
        request[FORM] = form
    if who.must_change_password and path not in ("/password", "/logout", "/lang"):
        if request.method == "GET" and not _wants_json(request) and path != "/ws/agent":
            raise web.HTTPFound("/password")
        return _secure(_error(request, 403, "password.must_change", lang), settings)
    if not _allowed(who.role, path):
        if path.startswith("/qa") or path.startswith("/wallboard") or path.startswith("/accounts"):
            await app[DB](_audit_refusal, who, now, path, remote(request))
        return _secure(_error(request, 403, "forbidden", lang), settings)
    response = await handler(request)
    return _secure(response, settings)


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
    if response.content_type in ("text/html", "application/json"):
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
    return [item for item in items if _allowed(who.role, item[0])] + [("/password", "nav.password", "nav-password")]


# ---------------------------------------------------------------- signing in and out

async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "live_sockets": len(request.app[HUB].watches)})


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


async def login(request: web.Request) -> web.StreamResponse:
    app, settings, now = request.app, request.app[SETTINGS], request.app[CLOCK]()
    lang = language(request)
    request[LANG] = lang
    form = await _form(request)
    if not _csrf_ok(request.cookies.get(PRELOGIN_COOKIE), request, form):
        return await login_page(request, i18n.t("csrf.refused", lang), 403)
    username, password = form.get("username", ""), form.get("password", "")

    def attempt(session):
        try:
            account = accounts.authenticate(session, username, password, now, settings, remote(request))
        except accounts.SignInRefused as refused:
            return None, refused
        token, _row = accounts.start_session(session, account, now, settings, remote(request))
        return (token, account.role), None

    result, refused = await app[DB](attempt)
    if refused is not None:
        key = {"locked": "login.locked", "disabled": "login.disabled"}.get(refused.reason, "login.failed")
        until = ""
        if refused.reason == "locked" and refused.until and refused.until - now < dt.timedelta(days=365):
            until = i18n.t("login.locked_until", lang, at=refused.until.astimezone().strftime("%H:%M"))
        return await login_page(request, i18n.t(key, lang, until=until), 403 if refused.reason != "failed" else 401)
    token, role = result
    response = web.HTTPFound(HOME.get(role, "/"))
    _set_cookie(response, SESSION_COOKIE, token, settings, max_age=int(settings.session_max_age.total_seconds()))
    response.del_cookie(PRELOGIN_COOKIE, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    app, now = request.app, request.app[CLOCK]()
    token = request.cookies.get(SESSION_COOKIE)
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
    back = form.get("next", "/")
    response = web.HTTPFound(back if back.startswith("/") and not back.startswith("//") else "/")
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
    app, settings, now, who, lang = request.app, request.app[SETTINGS], request.app[CLOCK](), request[WHO], request[LANG]
    form = request[FORM]
    if form.get("new_password", "") != form.get("repeat_password", ""):
        return await password_page(request, i18n.t("password.mismatch", lang), status=400)

    def change(session):
        account = session.get(Account, who.account_id)
        accounts.change_own_password(session, account, form.get("current_password", ""),
                                     form.get("new_password", ""), now, settings)
    try:
        await app[DB](change)
    except accounts.WeakPassword as weak:
        text = "; ".join(i18n.t(f"password.problem.{code}", lang) for code in weak.codes)
        return await password_page(request, text, status=400)
    except accounts.AccountError:
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
    return render(request, "case.html", {"card": card})


async def case_json(request: web.Request) -> web.Response:
    card = await _open_case(request)
    if isinstance(card, web.Response):
        return card
    return web.json_response(card)


async def _open_case(request: web.Request):
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    case_id = int(request.match_info["case_id"])

    def load(session):
        return cases.open_case(session, session.get(Account, who.account_id), case_id, now, app[SETTINGS],
                               remote(request))
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
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    query = request.query.get("q", "").strip()[:200]

    def load(session):
        out = {"recent": qa_pages.recent_recordings(session), "hits": None, "search_error": None,
               "samples": [], "sample_error": None}
        if query:
            try:
                hits = qa_pages.search(session, query)
                out["hits"] = [(hit, Markup(qa_pages.highlight(hit.snippet, hit.matched, query, hit.span)))
                               for hit in hits]
            except qa_pages.NotAvailable as exc:
                out["search_error"] = str(exc)
        teams = session.scalars(select(Team).order_by(Team.name)).all()
        if who.team_id is not None:
            teams = [t for t in teams if t.id == who.team_id]
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
    app, who = request.app, request[WHO]
    recording_id = int(request.match_info["recording_id"])
    try:
        offset = max(0.0, float(request.query.get("t", "0")))
    except ValueError:
        offset = 0.0

    def load(session):
        from campaigns.models import Attempt, Case, Recording, VaultFile
        row = session.execute(select(VaultFile, Attempt, Case).join(Recording, Recording.id == VaultFile.recording_id)
                              .join(Attempt, Attempt.id == Recording.attempt_id).join(Case, Case.id == Attempt.case_id)
                              .where(VaultFile.recording_id == recording_id)).first()
        if row is None:
            return None
        stored, attempt, case = row
        try:
            found, error = qa_pages.findings(session, recording_id), None
        except qa_pages.NotAvailable as exc:
            found, error = [], str(exc)
        return {"recording_id": recording_id, "call_id": attempt.call_id, "case_id": case.id,
                "reference": case.reference, "seconds": float(stored.seconds), "recorded_at": stored.recorded_at,
                "purged": stored.purged_at is not None, "findings": found, "findings_error": error}
    info = await app[DB](load)
    if info is None:
        return _error(request, 404, "not_found", request[LANG])
    return render(request, "recording.html", {"rec": info, "offset": offset, "reasons": PLAY_REASONS,
                                              "verdicts": qa_pages.VERDICTS, "who": who})


async def play(request: web.Request) -> web.Response:
    """Log one playback (recordings.access.playback: checksum checked, RecordingAccess row) and
    hand out a short-lived token for the audio URL; the audio is served only with it."""
    from recordings import access
    from recordings.errors import AccessRefused, IntegrityError, NotFound
    app, now, who, form, lang = request.app, request.app[CLOCK](), request[WHO], request[FORM], request[LANG]
    settings = app[SETTINGS]
    recording_id = int(request.match_info["recording_id"])
    reason = form.get("reason", "")
    if reason not in PLAY_REASONS:
        return _error(request, 400, "qa.refused", lang, error=i18n.t("qa.play_reason", lang))
    reason_text = f"console: {i18n.t(f'qa.reason.{reason}', 'en')}"

    def log_playback(session):
        path = access.playback(session, settings.recordings_root, recording_id, who.username, reason_text, now)
        accounts.audit(session, now, "recording_play", "ok", account=session.get(Account, who.account_id),
                       subject=f"recording {recording_id}", detail=reason, remote=remote(request))
        return path
    try:
        path = await app[DB](log_playback)
    except (AccessRefused, IntegrityError, NotFound) as exc:
        return _error(request, 409, "qa.refused", lang, error=str(exc))
    tokens = app[TOKENS]
    for key in [k for k, v in tokens.items() if v[3] <= now]:
        tokens.pop(key, None)
    token = secrets.token_urlsafe(24)
    tokens[token] = (who.session_id, recording_id, Path(path), now + settings.playback_token_life)
    return web.json_response({"ok": True, "url": f"/qa/audio/{quote(token)}"})


async def audio(request: web.Request) -> web.StreamResponse:
    """The recording's file, with HTTP range requests (seeking), for a logged playback only."""
    who, now = request[WHO], request.app[CLOCK]()
    entry = request.app[TOKENS].get(request.match_info["token"])
    if entry is None or entry[0] != who.session_id or entry[3] <= now:
        return _error(request, 403, "forbidden", request[LANG])
    response = web.FileResponse(entry[2], headers={"Cache-Control": "no-store", "Content-Disposition": "inline"})
    return response


async def verdict(request: web.Request) -> web.Response:
    app, now, who, form = request.app, request.app[CLOCK](), request[WHO], request[FORM]
    finding_id = request.match_info["finding_id"]
    value = form.get("verdict", "")
    if value not in qa_pages.VERDICTS:
        return _error(request, 400, "not_found", request[LANG])

    def save(session):
        qa_pages.record_verdict(session, int(finding_id) if finding_id.isdigit() else finding_id, value,
                                who.username, now, form.get("note", ""))
        accounts.audit(session, now, "qa_verdict", "ok", account=session.get(Account, who.account_id),
                       subject=f"finding {finding_id}", detail=value)
    try:
        await app[DB](save)
    except qa_pages.NotAvailable as exc:
        return web.json_response({"ok": False, "message": i18n.t("qa.not_available", request[LANG], what=str(exc))},
                                 status=501)
    except ValueError as exc:  # recordings.qa.QaError / NotFound
        return web.json_response({"ok": False, "message": str(exc)}, status=400)
    back = form.get("next", "")
    if back.startswith("/qa/") and "application/json" not in request.headers.get("Accept", ""):
        raise web.HTTPFound(back)
    return web.json_response({"ok": True, "message": i18n.t("qa.verdict_saved", request[LANG])})


# ---------------------------------------------------------------- accounts (administrators)

async def accounts_page(request: web.Request) -> web.Response:
    now = request.app[CLOCK]()
    rows = await request.app[DB](accounts.list_accounts, now)
    return render(request, "accounts.html", {"rows": rows})


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
    recordings directory; plain HTTP sets Secure cookies off only on a loopback address."""
    if settings is None:
        loopback = host in ("127.0.0.1", "::1", "localhost")
        settings = Settings(recordings_root=Path(site.recordings_root), cookie_secure=not loopback)

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
