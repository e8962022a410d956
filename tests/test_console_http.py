"""The console over HTTP (a real aiohttp server on a loopback port, driven by aiohttp's
client): who may open what, CSRF, lockout, disabling, the WebSocket pop-up, the disposition
and its appointment rule, the wallboard, playback logging and range requests, and that
passwords never reach the database or the logs in clear."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from decimal import Decimal

import aiohttp
from sqlalchemy import func, select, text

from agent_console import accounts
from agent_console.app import make_app, start
from agent_console.schema import Account, AuditEntry, ConsoleSession
from agent_console.settings import Settings
from campaigns.db import sessions, transaction
from campaigns.models import (
    AgentPresence,
    Appointment,
    Attempt,
    Campaign,
    Disposition,
    EngineStatus,
    Phone,
    RecordingAccess,
)
from helpers import FAST, NOW, PASSWORDS, bridge, Clock, hang_up, seed

UTC = dt.timezone.utc


async def test_sign_in_sets_a_strict_httponly_cookie_and_the_role_decides_the_home_page(console):
    b = console["browser"]()
    response = await b.login("alice", PASSWORDS["alice"])
    assert response.status == 200 and response.url.path == "/agent"
    cookie = next(h for h in response.history[0].headers.getall("Set-Cookie") if h.startswith("dunning_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    sam = console["browser"]()
    assert (await sam.login("sam", PASSWORDS["sam"])).url.path == "/wallboard"


async def test_secure_cookie_when_configured(database, tmp_path, unused_tcp_port_factory):
    factory = sessions(database)
    seed(factory)
    app = make_app(factory, Settings(cookie_secure=True), now=Clock(NOW))
    port = unused_tcp_port_factory()
    runner = await start(app, "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as http:
            page = await (await http.get(f"http://127.0.0.1:{port}/login")).text()
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            response = await http.post(f"http://127.0.0.1:{port}/login", allow_redirects=False,
                                       data={"csrf_token": token, "username": "alice", "password": PASSWORDS["alice"]},
                                       cookies={"dunning_prelogin": token})
            assert response.status == 302
            cookie = next(h for h in response.headers.getall("Set-Cookie") if h.startswith("dunning_session="))
            assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        await runner.cleanup()


async def test_an_agent_cannot_open_another_teams_case_or_any_qa_page(console):
    ids, factory = console["ids"], console["factory"]
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    alice = console["browser"]()
    await alice.login("alice", PASSWORDS["alice"])
    own = await alice.http.get(f"/api/cases/{ids['C-EAST']}")
    assert own.status == 200
    card = await own.json()
    assert card["debtor_name"] == "李伟" and card["id_number"] == "4403**********1234"
    other = await alice.http.get(f"/api/cases/{ids['C-WEST']}")
    assert other.status == 403
    assert "440301199001011234" not in await other.text()
    for path in ("/qa", f"/qa/recordings/{ids['recording']}", "/wallboard", "/wallboard/data", "/accounts"):
        response = await alice.http.get(path, allow_redirects=False)
        assert response.status == 403, path
    assert (await alice.post(f"/qa/recordings/{ids['recording']}/play", {"reason": "qa_review"})).status == 403
    assert (await alice.post("/wallboard/campaigns/east/pause")).status == 403
    with sessions(console["factory"].kw["bind"])() as s:
        refused = s.scalars(select(AuditEntry.subject).where(AuditEntry.result == "refused")).all()
        assert f"case {ids['C-WEST']}" in refused and "/qa" in refused
        assert s.get(Campaign, ids["east"]).status == "running"


async def test_an_agent_sees_the_case_only_while_on_it_or_just_after(console):
    ids, factory, clock = console["ids"], console["factory"], console["clock"]
    alice = console["browser"]()
    await alice.login("alice", PASSWORDS["alice"])
    assert (await alice.http.get(f"/api/cases/{ids['C-EAST']}")).status == 403  # not on it yet
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    assert (await alice.http.get(f"/api/cases/{ids['C-EAST']}")).status == 200
    hang_up(factory, "call-east-1", ids["agent_alice"], NOW + dt.timedelta(seconds=60))
    saved = await alice.post("/agent/disposition", {"call_id": "call-east-1", "code": "refused", "note": "no money"})
    assert saved.status == 200, await saved.text()
    clock.at = NOW + dt.timedelta(minutes=20)
    assert (await alice.http.get(f"/api/cases/{ids['C-EAST']}")).status == 200
    clock.at = NOW + dt.timedelta(minutes=45)
    await alice.login("alice", PASSWORDS["alice"])  # the first session went idle
    assert (await alice.http.get(f"/api/cases/{ids['C-EAST']}")).status == 403


async def test_a_forged_form_without_the_csrf_token_is_refused(console):
    ids = console["ids"]
    sam = console["browser"]()
    await sam.login("sam", PASSWORDS["sam"])
    forged = await sam.post("/wallboard/campaigns/east/pause", csrf=False)
    assert forged.status == 403
    wrong = await sam.post("/wallboard/campaigns/east/pause", {"csrf_token": "x" * 43}, csrf=False)
    assert wrong.status == 403
    with sessions(console["factory"].kw["bind"])() as s:
        assert s.get(Campaign, ids["east"]).status == "running"
    ok = await sam.post("/wallboard/campaigns/east/pause")
    assert ok.status == 200 and (await ok.json())["status"] == "paused"
    with sessions(console["factory"].kw["bind"])() as s:
        assert s.get(Campaign, ids["east"]).status == "paused"
    # the sign-in form has its own token too
    async with aiohttp.ClientSession(base_url=sam.base) as http:
        response = await http.post("/login", data={"username": "sam", "password": PASSWORDS["sam"]})
        assert response.status == 403 and "dunning_session" not in {c.key for c in http.cookie_jar}


async def test_a_locked_account_cannot_sign_in_even_with_the_right_password(console):
    """From an address the account never signed in from; the answer is the one a wrong
    password gets (nothing says the account exists, is locked, or that the password was right)."""
    b = console["browser"]()
    for _ in range(FAST.max_failures):
        response = await b.login("alice", "Wrong#Passw0rd")
        assert response.status == 401 and response.url.path == "/login"
    console["clock"].at = NOW + dt.timedelta(minutes=2)  # past the name's delay, not the lockout
    refused = await b.login("alice", PASSWORDS["alice"])
    body = await refused.text()
    assert refused.status == 401 and "Wrong user name or password." in body and "locked" not in body
    with transaction(console["factory"]) as s:
        results = s.scalars(select(AuditEntry.result).where(AuditEntry.event == "sign_in")
                            .order_by(AuditEntry.id)).all()
        assert results[-(FAST.max_failures + 1):] == ["failed"] * FAST.max_failures + ["locked"]
        accounts.unlock(s, "alice", NOW + dt.timedelta(minutes=2), by="root")
    console["clock"].at = NOW + dt.timedelta(minutes=3)  # and past the name's delay again
    assert (await b.login("alice", PASSWORDS["alice"])).url.path == "/agent"


async def test_disabling_an_account_ends_its_session_and_closes_its_websocket(console):
    alice = console["browser"]()
    await alice.login("alice", PASSWORDS["alice"])
    ws = await alice.http.ws_connect("/ws/agent")
    first = await asyncio.wait_for(ws.receive_json(), 5)
    assert first["type"] == "presence"
    assert (await alice.post("/agent/presence", {"requested": "ready"})).status == 200
    with transaction(console["factory"]) as s:
        accounts.disable(s, "alice", NOW, by="root")
    closed = await asyncio.wait_for(_until_closed(ws), 5)
    assert closed == 4401
    with sessions(console["factory"].kw["bind"])() as s:  # and the engine is told to log her out
        assert s.get(AgentPresence, console["ids"]["agent_alice"]).requested == "logged_out"
    assert (await alice.http.get("/agent", allow_redirects=False)).status == 302
    assert (await alice.login("alice", PASSWORDS["alice"])).url.path == "/login"
    # through the accounts page too
    alice2 = console["browser"]()
    with transaction(console["factory"]) as s:
        accounts.enable(s, "alice", NOW)
    await alice2.login("alice", PASSWORDS["alice"])
    root = console["browser"]()
    await root.login("root", PASSWORDS["root"])
    response = await root.post("/accounts/alice/disable")
    assert response.status == 200
    assert (await alice2.http.get("/agent", allow_redirects=False)).status == 302


async def _until_closed(ws) -> int:
    while True:
        message = await ws.receive()
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code


async def test_the_case_pops_up_over_the_websocket_and_ready_waits_for_the_disposition(console):
    ids, factory = console["ids"], console["factory"]
    alice = console["browser"]()
    await alice.login("alice", PASSWORDS["alice"])
    ready = await alice.post("/agent/presence", {"requested": "ready"})
    assert ready.status == 200 and (await ready.json())["requested"] == "ready"
    ws = await alice.http.ws_connect("/ws/agent")
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    card = await asyncio.wait_for(_next_of(ws, "case"), 5)
    assert card["case"]["reference"] == "C-EAST" and card["case"]["call_id"] == "call-east-1"
    assert [p["dialled"] for p in card["case"]["phones"]] == [True, False]
    assert card["case"]["history"][0]["current"] and card["case"]["id_number"] == "4403**********1234"
    hang_up(factory, "call-east-1", ids["agent_alice"], NOW + dt.timedelta(seconds=65))
    blocked = await alice.post("/agent/presence", {"requested": "ready"})
    assert blocked.status == 409 and "disposition" in (await blocked.json())["message"]
    bad = await alice.post("/agent/disposition", {"call_id": "call-east-1", "code": "promise_to_pay", "amount": "500"})
    assert bad.status == 400
    saved = await alice.post("/agent/disposition", {"call_id": "call-east-1", "code": "promise_to_pay",
                                                    "amount": "1500", "due": "2026-12-01", "note": "payday"})
    body = await saved.json()
    assert saved.status == 200 and body["presence"]["can_ready"] is True
    assert (await alice.post("/agent/presence", {"requested": "ready"})).status == 200
    counters = await (await alice.http.get("/agent/counters")).json()  # campaigns/report.py's figures
    assert (counters["dials"], counters["connects"], counters["effective"]) == (1, 1, 1)  # 60 s >= 30 s
    assert (counters["dials_target"], counters["effective_target"], counters["effective_pct"]) == (200, 50, 2.0)
    with sessions(factory.kw["bind"])() as s:
        d = s.scalar(select(Disposition))
        assert (d.code, d.agent_id, d.note) == ("promise_to_pay", ids["agent_alice"], "payday")
        views = s.scalars(select(AuditEntry.detail).where(AuditEntry.event == "case_view")).all()
        assert "call-east-1 (pop-up)" in views
    # another agent cannot dispose of alice's call
    bob = console["browser"]()
    await bob.login("bob", PASSWORDS["bob"])
    assert (await bob.post("/agent/disposition", {"call_id": "call-east-1", "code": "refused"})).status == 403


async def _next_of(ws, kind: str) -> dict:
    while True:
        message = await ws.receive_json()
        if message["type"] == kind:
            return message


async def test_a_callback_outside_the_window_needs_the_debtors_own_request(console):
    ids, factory = console["ids"], console["factory"]
    alice = console["browser"]()
    await alice.login("alice", PASSWORDS["alice"])
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    hang_up(factory, "call-east-1", ids["agent_alice"], NOW + dt.timedelta(seconds=65))
    late = {"call_id": "call-east-1", "code": "callback", "callback_at": "2026-11-25T21:30",
            "callback_note": "明天不行，今晚九点半再打", "requested_by": "agent"}
    refused = await alice.post("/agent/disposition", late)
    message = (await refused.json())["message"]
    assert refused.status == 400 and "outside the calling window 08:00–21:00" in message and "debtor asked" in message
    with sessions(factory.kw["bind"])() as s:  # all or nothing: no disposition either
        assert s.scalar(select(func.count()).select_from(Disposition)) == 0
    ok = await alice.post("/agent/disposition", {**late, "requested_by": "debtor"})
    body = await ok.json()
    assert ok.status == 200 and body["appointment"]["outside_window"] is True and "debtor's own request" in body["message"]
    with sessions(factory.kw["bind"])() as s:
        appointment = s.scalar(select(Appointment))
        assert appointment.requested_by == "debtor" and appointment.recorded_by == "alice"
        assert appointment.at == dt.datetime(2026, 11, 25, 13, 30, tzinfo=UTC)
        assert appointment.note == "明天不行，今晚九点半再打"


async def test_wallboard_shows_agents_calls_and_campaign_figures(console):
    ids, factory = console["ids"], console["factory"]
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    with transaction(factory) as s:
        s.add(EngineStatus(campaign_id=ids["west"], mode="predictive", dial_level=Decimal("1.50"), lines=3, agents=2,
                           updated_at=NOW - dt.timedelta(seconds=5)))
        phone = s.scalar(select(Phone).where(Phone.case_id == ids["C-WEST"], Phone.role == "home"))
        for n, outcome in enumerate(("abandoned", "answered", "answered", "answered")):
            at = NOW - dt.timedelta(minutes=30 - n)
            s.add(Attempt(call_id=f"w-{n}", campaign_id=ids["west"], case_id=ids["C-WEST"], phone_id=phone.id,
                          number=phone.dial, state="ended", planned_at=at, dialed_at=at, answered_at=at,
                          bridged_at=None if outcome == "abandoned" else at, ended_at=at, outcome=outcome))
    sam = console["browser"]()
    await sam.login("sam", PASSWORDS["sam"])
    data = await (await sam.http.get("/wallboard/data")).json()
    west = next(c for c in data["campaigns"] if c["name"] == "west")
    assert (west["dial_level"], west["lines"], west["engine_agents"]) == (1.5, 3, 2)
    assert (west["answered_today"], west["abandoned_today"], west["abandon_rate"]) == (4, 1, 0.25)
    assert west["connects_last_hour"] == 3
    assert [(a["extension"], a["state"], a["call_id"]) for a in data["agents"]] == [("6001", "on_call", "call-east-1")]
    assert [(c["call_id"], c["stage"], c["agent"]) for c in data["calls"]] == [("call-east-1", "talking", "6001")]
    east = next(c for c in data["campaigns"] if c["name"] == "east")
    assert east["dials_today"] == 1 and east["connects_last_hour"] == 1 and east["figures"]["cases"] == 1
    assert east["abandon_rate"] == 0.0


async def test_playback_is_logged_and_served_with_range_requests(console):
    ids, root = console["ids"], console["root"]
    quinn = console["browser"]()
    await quinn.login("quinn", PASSWORDS["quinn"])
    page = await quinn.http.get(f"/qa/recordings/{ids['recording']}?t=2.5")
    assert page.status == 200 and 'data-offset="2.5"' in await page.text()
    played = await quinn.post(f"/qa/recordings/{ids['recording']}/play", {"reason": "qa_review"})
    url = (await played.json())["url"]
    whole = (root / "2026/11/24/old-west-1.wav").read_bytes()
    part = await quinn.http.get(url, headers={"Range": "bytes=100-199"})
    assert part.status == 206 and await part.read() == whole[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    with sessions(console["factory"].kw["bind"])() as s:
        logged = s.scalars(select(RecordingAccess)).all()
        assert [(r.accessed_by, r.action, r.recording_id) for r in logged] == [("quinn", "play", ids["recording"])]
        assert s.scalar(select(AuditEntry.subject).where(AuditEntry.event == "recording_play")) == \
            f"recording {ids['recording']}"
    # the audio URL is not a way around the log: another session cannot use it
    sam = console["browser"]()
    await sam.login("sam", PASSWORDS["sam"])
    assert (await sam.http.get(url)).status == 403
    # the QA page lists the recording (no transcript yet: the search finds nothing)
    qa = await (await quinn.http.get("/qa?q=起诉")).text()
    assert 'data-testid="qa-recording-link"' in qa and 'data-testid="qa-result-count"' in qa
    assert 'data-testid="qa-hit"' not in qa


async def test_passwords_are_never_stored_or_logged_in_clear(console, caplog):
    caplog.set_level(logging.DEBUG)
    b = console["browser"]()
    await b.login("alice", "Wrong#Passw0rd-typed")
    await b.login("alice", PASSWORDS["alice"])
    await b.login(PASSWORDS["bob"], PASSWORDS["bob"])  # a password typed into the name field
    sam = console["browser"]()
    await sam.login("sam", PASSWORDS["sam"])
    new = "Nw6%hYt!rQa8"
    response = await sam.http.post("/password", data={"csrf_token": sam.csrf, "current_password": PASSWORDS["sam"],
                                                      "new_password": new, "repeat_password": new})
    assert "Your password was changed" in await response.text()
    secrets = [*PASSWORDS.values(), "Wrong#Passw0rd-typed", new]
    engine = console["factory"].kw["bind"]
    with engine.connect() as conn:
        dump = []
        for table in ("console_accounts", "console_audit", "console_sessions"):
            dump += [repr(tuple(row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
    everything = "\n".join(dump) + "\n" + caplog.text
    for secret in secrets:
        assert secret not in everything
    hashes = [row.split("'")[1] for row in dump if "scrypt$" in row for row in [row[row.index("'scrypt$"):]]]
    assert len(hashes) == len(PASSWORDS) and all(h.startswith("scrypt$") for h in hashes)
    # and the session cookie's value is not stored either, only its hash
    token = next(c.value for c in sam.http.cookie_jar if c.key == "dunning_session")
    assert token not in everything
    with sessions(engine)() as s:
        assert s.scalar(select(ConsoleSession).where(ConsoleSession.token_sha256 == accounts.token_digest(token)))


async def test_language_follows_the_account_and_the_switch(console):
    sam = console["browser"]()
    await sam.login("sam", PASSWORDS["sam"])
    english = await (await sam.http.get("/wallboard")).text()
    assert "Wallboard" in english and "监控大屏" not in english
    switched = await sam.http.post("/lang", data={"csrf_token": sam.csrf, "to": "zh", "next": "/wallboard"})
    chinese = await switched.text()
    assert "监控大屏" in chinese and switched.url.path == "/wallboard"
    with sessions(console["factory"].kw["bind"])() as s:
        assert s.scalar(select(Account.language).where(Account.username == "sam")) == "zh"
    async with aiohttp.ClientSession(base_url=sam.base) as anonymous:
        page = await (await anonymous.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})).text()
        assert "用户名" in page
        page = await (await anonymous.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})).text()
        assert "User name" in page


async def test_an_administrator_past_the_monthly_rotation_must_change_the_password(console):
    clock = console["clock"]
    clock.at = NOW + dt.timedelta(days=31)
    root = console["browser"]()
    response = await root.login("root", PASSWORDS["root"])
    assert response.url.path == "/password" and "monthly" in await response.text()
    assert (await root.http.get("/accounts", allow_redirects=False)).headers["Location"] == "/password"
    weak = await root.http.post("/password", data={"csrf_token": root.csrf, "current_password": PASSWORDS["root"],
                                                   "new_password": "Root19900612!x", "repeat_password": "Root19900612!x"})
    assert "a date or birthday" in await weak.text()
    new = "Gx3!uPw#eMz7Kd"
    done = await root.http.post("/password", data={"csrf_token": root.csrf, "current_password": PASSWORDS["root"],
                                                   "new_password": new, "repeat_password": new})
    assert "Your password was changed" in await done.text()
    assert (await root.http.get("/accounts", allow_redirects=False)).status == 200
