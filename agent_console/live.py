"""The live task: one loop for every open WebSocket.

Every `poll_interval_s` (0.3 s) it reads, in one transaction in the database thread, what the
engine wrote (agent_presence, attempts bridged to an agent) for the agents whose pages are
open, and pushes over each agent's socket: their presence when it changed, the case the moment
a call is bridged to them (the case view is audited), and their counters. Sockets whose session
ended (signed out, expired, account disabled: by this console or by the CLI in another process)
are closed within one interval. The task is owned by the app (started on startup, cancelled and
awaited on cleanup) and survives a failing round (logged, tried again).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from .accounts import audit, live_session_ids, touch_sessions
from .cases import agents_counters, case_card, live_call, pending_attempt, presence_view
from .schema import Account
from .settings import Settings

log = logging.getLogger(__name__)

#: WebSocket close code for an ended session (4000-4999 are the application's).
CLOSE_SESSION_ENDED = 4401
COUNTERS_EVERY = dt.timedelta(seconds=15)
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclass
class Watch:
    """One open socket: whose it is, and what it has been sent."""

    key: int
    ws: web.WebSocketResponse
    session_id: int
    account_id: int
    agent_id: int | None
    remote: str | None = None
    last_presence: dict | None = None
    pushed: set[str] = field(default_factory=set)
    counters_at: dt.datetime | None = None


class Hub:
    def __init__(self, run_db: Callable[..., Awaitable], settings: Settings, clock: Callable[[], dt.datetime]) -> None:
        self.run_db, self.settings, self.clock = run_db, settings, clock
        self.watches: dict[int, Watch] = {}
        self._keys = itertools.count(1)
        self._task: asyncio.Task | None = None
        self._touched: dt.datetime | None = None
        self.rounds = 0

    def add(self, ws: web.WebSocketResponse, session_id: int, account_id: int, agent_id: int | None,
            remote: str | None) -> Watch:
        watch = Watch(next(self._keys), ws, session_id, account_id, agent_id, remote)
        self.watches[watch.key] = watch
        return watch

    def remove(self, watch: Watch) -> None:
        self.watches.pop(watch.key, None)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="console-live")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for watch in list(self.watches.values()):
            await watch.ws.close(code=1001, message=b"server shutting down")

    async def _loop(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("console live round failed; trying again")
            await asyncio.sleep(self.settings.poll_interval_s)

    async def round(self) -> None:
        watches = [w for w in self.watches.values() if not w.ws.closed]
        if not watches:
            return
        now = self.clock()
        touch = self._touched is None or now - self._touched >= TOUCH_EVERY
        out = await self.run_db(self._collect, watches, now, touch)
        if touch:
            self._touched = now
        self.rounds += 1
        for watch in watches:
            messages = out.get(watch.key)
            if messages is None:
                await watch.ws.close(code=CLOSE_SESSION_ENDED, message=b"session ended")
                self.remove(watch)
                continue
            for message in messages:
                try:
                    await watch.ws.send_json(message)
                except (ConnectionResetError, RuntimeError):
                    self.remove(watch)
                    break

    def _collect(self, session, watches: list[Watch], now: dt.datetime, touch: bool) -> dict[int, list[dict] | None]:
        """In the database thread: the messages for each socket, None for one to close."""
        live = live_session_ids(session, {w.session_id for w in watches}, now, self.settings)
        if touch:
            touch_sessions(session, live, now)
        out: dict[int, list[dict] | None] = {}
        wants_counters: list[Watch] = []
        for watch in watches:
            if watch.session_id not in live:
                out[watch.key] = None
                continue
            messages: list[dict] = []
            if watch.agent_id is not None:
                presence = presence_view(session, watch.agent_id, now, self.settings)
                # The wrap-up countdown is sent with each change and counted down by the page.
                compared = {k: v for k, v in presence.items() if k != "wrap_up_left_s"}
                changed = compared != watch.last_presence
                if changed:
                    messages.append(presence)
                    watch.last_presence = compared
                attempt = live_call(session, watch.agent_id) or pending_attempt(session, watch.agent_id)
                if attempt is not None and attempt.call_id not in watch.pushed:
                    card = case_card(session, attempt, now)
                    account = session.get(Account, watch.account_id)
                    audit(session, now, "case_view", "ok", account=account, subject=f"case {attempt.case_id}",
                          detail=f"{attempt.call_id} (pop-up)", remote=watch.remote)
                    messages.append({"type": "case", "case": card})
                    watch.pushed.add(attempt.call_id)
                if changed or watch.counters_at is None or now - watch.counters_at >= COUNTERS_EVERY:
                    wants_counters.append(watch)
            out[watch.key] = messages
        if wants_counters:  # one run of the daily report for every agent that is due
            counters = agents_counters(session, sorted({w.agent_id for w in wants_counters}), now, self.settings)
            for watch in wants_counters:
                out[watch.key].append(counters[watch.agent_id])
                watch.counters_at = now
        return out
