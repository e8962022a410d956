"""What every page of the console shares: the application's keys, who is signed in (`Who`),
the page's language, rendering, the error page, the POST's fields and its CSRF check, the
client's address, and the security headers every response carries.

The handlers (one module per audience: sign_in, agent_desk, wallboard, qa, playback,
account_admin) import this module; app.py puts them together behind its `guard`.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from . import i18n, throttle
from .live import Hub
from .settings import Settings

SESSION_COOKIE = "dunning_session"
PRELOGIN_COOKIE = "dunning_prelogin"
LANG_COOKIE = "dunning_lang"

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Callable)
HUB = web.AppKey("hub", Hub)
DB = web.AppKey("db", object)
ACCESS = web.AppKey("access", dict)
GATE = web.AppKey("sign_in_gate", throttle.Gate)


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


def may_get(app: web.Application, role: str, path: str) -> bool:
    """Whether `role` may open the page at `path` (GET), by the route table (for the menu)."""
    return any(route.method == "GET" and route.resource.canonical == path and role in roles
               for route, roles in app[ACCESS].items())


JSON_PATHS = ("/api/", "/agent/", "/wallboard/", "/qa/findings/", "/qa/audio/")


def wants_json(request: web.Request) -> bool:
    path = request.path
    return (path.startswith(JSON_PATHS) or (path.startswith("/qa/recordings/") and path.endswith("/play"))
            or "application/json" in request.headers.get("Accept", ""))


def error(request: web.Request, status: int, key: str, lang: str | None = None, **values) -> web.Response:
    """The refusal `key` (an i18n key) as JSON for the pages' scripts, else as the error page."""
    lang = lang or request.get(LANG) or language(request)
    text = i18n.t(key, lang, **{k: (i18n.t(v, lang) if isinstance(v, str) and v in i18n.CATALOGUE else v)
                                for k, v in values.items()})
    if wants_json(request):
        return web.json_response({"ok": False, "error": key, "message": text}, status=status)
    return render(request, "error.html", {"message": text, "status": status}, status=status)


async def read_form(request: web.Request) -> dict[str, str]:
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


def csrf_ok(expected: str | None, request: web.Request, form: dict[str, str]) -> bool:
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


def secure(response: web.StreamResponse, settings: Settings) -> web.StreamResponse:
    """The security headers on `response` (a streamed file calls this before it sends them;
    app.guard does it for every other response)."""
    if response.prepared:  # a WebSocket or a file already sent its headers
        return response
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if settings.cookie_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if response.content_type in ("text/html", "application/json", "text/plain"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def set_cookie(response: web.StreamResponse, name: str, value: str, settings: Settings,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=settings.cookie_secure, path="/",
                        max_age=max_age)


def render(request: web.Request, template: str, context: dict, status: int = 200) -> web.Response:
    lang = request.get(LANG) or language(request)
    who: Who | None = request.get(WHO)
    base = {"t": lambda key, **values: i18n.t(key, lang, **values), "lang": lang, "who": who,
            "csrf": who.csrf if who else context.get("csrf", ""), "path": request.path_qs,
            "nav": _nav(request.app, who)}
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def _nav(app: web.Application, who: Who | None) -> list[tuple[str, str, str]]:
    if who is None or who.must_change_password:
        return []
    items = [("/agent", "nav.agent", "nav-agent"), ("/wallboard", "nav.wallboard", "nav-wallboard"),
             ("/qa", "nav.qa", "nav-qa"), ("/accounts", "nav.accounts", "nav-accounts")]
    return [item for item in items if may_get(app, who.role, item[0])] + [("/password", "nav.password", "nav-password")]


def strings(request: web.Request, *prefixes: str) -> dict[str, str]:
    """The catalogue entries a page's script needs, in the page's language."""
    lang = request[LANG]
    return {key: i18n.t(key, lang) for key in i18n.CATALOGUE if key.startswith(prefixes)}
