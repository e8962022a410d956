"""Playing a recording (QA pages): each playback is logged (recordings.access.playback:
checksum checked, a RecordingAccess row) and audited, and hands out a short-lived token for
the audio URL; the audio is served only with it, with HTTP range requests (seeking), and
what each play sent is audited when it ends.

The plays live in memory (the console is one process): `close_plays` ends those a
predicate picks (expired ones, a session's at sign-out, all at shutdown), `sweep_plays`
ends the expired ones every 30 s.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import mimetypes
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.orm import Session

from recordings import access
from recordings.errors import AccessRefused, IntegrityError, NotFound

from . import accounts, cases, i18n
from .pages import CLOCK, DB, FORM, LANG, SETTINGS, WHO, error, remote, secure
from .qa import PLAY_REASONS, recording_campaign
from .schema import Account

log = logging.getLogger(__name__)

TOKENS = web.AppKey("playback_tokens", dict)
SWEEPER = web.AppKey("sweeper", object)


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
    """Log one playback of a recording of the reader's team, and hand out a short-lived token
    for the audio URL; the audio is served only with it (and `audio` audits what it sends)."""
    app, now, who, form, lang = request.app, request.app[CLOCK](), request[WHO], request[FORM], request[LANG]
    settings = app[SETTINGS]
    recording_id = int(request.match_info["recording_id"])
    reason = form.get("reason", "")
    if reason not in PLAY_REASONS:
        return error(request, 400, "qa.refused", lang, error=i18n.t("qa.play_reason", lang))
    play_id = secrets.token_hex(4)
    address = remote(request)
    try:
        path = await app[DB](log_playback, who.account_id, recording_id, reason, play_id, settings.recordings_root,
                             now, address)
    except (AccessRefused, IntegrityError, NotFound) as exc:
        return error(request, 409, "qa.refused", lang, error=str(exc))
    if path is None:
        return error(request, 403, "forbidden.recording", lang)
    # Expired plays end, and so do this session's earlier plays of the same recording.
    await close_plays(app, now, lambda p: p.expires <= now or (p.session_id == who.session_id
                                                                 and p.recording_id == recording_id))
    token = secrets.token_urlsafe(24)
    app[TOKENS][token] = Play(play_id, who.session_id, who.account_id, recording_id, reason, Path(path),
                              Path(path).stat().st_size, now + settings.playback_token_life, address)
    return web.json_response({"ok": True, "url": f"/qa/audio/{quote(token)}"})


def log_playback(session: Session, account_id: int, recording_id: int, reason: str, play_id: str,
                 recordings_root: Path, now: dt.datetime, address: str | None) -> Path | None:
    """The recording's file for one logged, audited playback by the account (None: the
    recording is of another team's call, refused and audited)."""
    account = session.get(Account, account_id)
    if not cases.may_see_campaign(session, account, recording_campaign(session, recording_id)):
        accounts.audit(session, now, "recording_play", "refused", account=account,
                       subject=f"recording {recording_id}", detail=reason, remote=address)
        return None
    reason_text = f"console: {i18n.t(f'qa.reason.{reason}', 'en')}"
    path = access.playback(session, recordings_root, recording_id, account.username, reason_text, now)
    accounts.audit(session, now, "recording_play", "ok", account=account, subject=f"recording {recording_id}",
                   detail=f"play {play_id}: {reason}", remote=address)
    return path


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
    sent, and one when the play ends (`close_plays`) with every byte range it sent. A play
    that has sent settings.playback_bytes_factor times the file sends no more: fetching it
    again takes a new, logged, playback."""
    app, who, now = request.app, request[WHO], request.app[CLOCK]()
    play_ = app[TOKENS].get(request.match_info["token"])
    if play_ is None or play_.session_id != who.session_id or play_.expires <= now:
        return error(request, 403, "qa.token", request[LANG])
    size = play_.size
    wanted = _byte_range(request.headers.get("Range"), size)
    if wanted is None:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted
    if play_.sent >= app[SETTINGS].playback_bytes_factor * size:
        if not play_.spent:
            play_.spent = True
            await app[DB](_audit_play, play_, now, "refused",
                          f"play {play_.play_id}: the play's bytes are spent ({play_.sent} sent of a "
                          f"{size}-byte file); a new playback is needed")
        return error(request, 403, "qa.play_again", request[LANG])
    if not play_.opened:
        play_.opened = True
        await app[DB](_audit_play, play_, now, "ok",
                      f"play {play_.play_id}: first bytes {start}-{end - 1} of {size}")
    play_.requests += 1
    headers = {"Content-Type": mimetypes.guess_type(play_.path.name)[0] or "application/octet-stream",
               "Accept-Ranges": "bytes", "Content-Length": str(end - start), "Cache-Control": "no-store",
               "Content-Disposition": "inline"}
    partial = "Range" in request.headers
    if partial:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=206 if partial else 200, headers=headers)
    secure(response, app[SETTINGS])
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


def _audit_play(session: Session, play_: Play, now: dt.datetime, result: str, detail: str) -> None:
    account = session.get(Account, play_.account_id)
    accounts.audit(session, now, "recording_audio", result, account=account,
                   subject=f"recording {play_.recording_id}", detail=detail, remote=play_.remote)


async def close_plays(app: web.Application, now: dt.datetime, which: Callable[[Play], bool]) -> None:
    """End the plays `which` picks: each gets one audit entry with what it sent (requests,
    bytes, the byte ranges merged)."""
    tokens = app[TOKENS]
    ending = [(token, p) for token, p in tokens.items() if which(p)]
    for token, _ in ending:
        tokens.pop(token, None)
    if ending:
        await app[DB](_audit_closed, [p for _token, p in ending], now)


def _audit_closed(session: Session, plays: list[Play], now: dt.datetime) -> None:
    for p in plays:
        _audit_play(session, p, now, "closed", f"play {p.play_id}: {p.requests} request(s), {p.sent} bytes sent "
                                               f"of {p.size}; bytes {p.ranges()}")


async def sweep_plays(app: web.Application) -> None:
    """Every 30 s, the plays whose token has expired end (and are audited)."""
    while True:
        await asyncio.sleep(30)
        try:
            now = app[CLOCK]()
            await close_plays(app, now, lambda p: p.expires <= now)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("closing expired plays failed; trying again")


