"""Issue 15, items 1-5, over HTTP against the real console (tests/test_console_http.py starts
it): sign-in throttling that strangers cannot turn against a person, one answer for every
refused sign-in, strength-checked passwords and sessions that end, personal data scoped by
team with phone numbers masked, audit entries for every view, search and play, and the small
ones (malformed JSON, amounts, open redirect, 404 headers, /healthz). And the route table:
every route declares its roles, and no role reaches a route it should not."""
from __future__ import annotations

import datetime as dt
import json
import re
import time

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from agent_console import accounts, passwords
from agent_console.app import ACCESS, ANONYMOUS, route_table
from agent_console.schema import AuditEntry
from campaigns.db import sessions, transaction
from campaigns.models import Disposition, PromiseToPay
from helpers import FAST, NOW, PASSWORDS, bridge, hang_up

WRONG = "Wrong#Passw0rd"
SECURITY = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")


def audit(console, *events: str) -> list[AuditEntry]:
    with sessions(console["factory"].kw["bind"])() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.event.in_(events)).order_by(AuditEntry.id)))


def later(console, **delta) -> None:
    console["clock"].at = console["clock"].at + dt.timedelta(**delta)


async def signed_in(console, username: str, address: str | None = None):
    b = console["browser"](address)
    response = await b.login(username, PASSWORDS[username])
    assert response.url.path != "/login", f"{username} could not sign in"
    return b


# ---------------------------------------------------------------- 1. anyone could lock anyone out

async def test_strangers_lock_an_account_but_not_its_owner_at_their_own_desk(console):
    """Before: five wrong passwords from anywhere locked any account for 30 minutes, and its
    owner with it. Now failures from any address lock it against every new address, and the
    right password from an address the account signed in from before lifts the lock."""
    alice = await signed_in(console, "alice", "127.0.0.1")  # her desk
    await alice.http.post("/logout", data={"csrf_token": alice.csrf})
    attacker = console["browser"]("127.0.0.2")
    for _ in range(FAST.max_failures):
        assert (await attacker.login("alice", WRONG)).status == 401
        later(console, minutes=1)  # slow enough for the delays: only the lockout is at work here
    [locked] = audit(console, "account_locked")
    assert locked.remote == "127.0.0.2" and "from 1 address(es)" in locked.detail
    # even the right password from an address the account never used is refused, as a wrong one
    thief = console["browser"]("127.0.0.3")
    refused = await thief.login("alice", PASSWORDS["alice"])
    assert refused.status == 401 and "Wrong user name or password." in await refused.text()
    # the administrator sees the lock: the account's state and the event with its source
    root = await signed_in(console, "root", "127.0.0.9")
    page = await (await root.http.get("/accounts")).text()
    assert re.search(r'data-testid="account-row" data-username="alice" data-state="locked"', page)
    assert 'data-testid="lock-event-row" data-event="account_locked" data-username="alice"' in page
    assert "127.0.0.2" in page
    # alice at her desk signs in: the lock is lifted, and said so
    back = await alice.login("alice", PASSWORDS["alice"])
    assert back.status == 200 and back.url.path == "/agent"
    [lifted] = audit(console, "lock_lifted")
    assert lifted.remote == "127.0.0.1" and lifted.subject == "account alice"
    [thiefs] = [e for e in audit(console, "sign_in") if e.result == "locked"]
    assert thiefs.remote == "127.0.0.3" and "never signed in from" in thiefs.detail  # worth a look


async def test_delays_grow_per_source_address_and_an_early_attempt_is_not_checked(console_with):
    console = await console_with(throttle_free_address=3, throttle_free_name=50, max_failures=50)
    guesser = console["browser"]("127.0.0.2")
    for n in range(3):  # unknown names: no account gets locked, only the address slows down
        assert (await guesser.login(f"nobody{n}", WRONG)).status == 401
    waits = []
    for n in range(4):
        early = await guesser.login("alice", PASSWORDS["alice"])  # even the right password: not checked
        assert early.status == 429 and early.url.path == "/login"
        waits.append(int(early.headers["Retry-After"]))
        later(console, seconds=2 ** n)
        assert (await guesser.login(f"nobody{n}", WRONG)).status == 401
    assert (await guesser.login("alice", PASSWORDS["alice"])).status == 429
    assert waits == [1, 2, 4, 8]  # the address's delay doubles with each failure
    assert audit(console, "sign_in_throttled")[0].subject == "address 127.0.0.2"
    # another address is not slowed down, and the guesser gets in once the delay is over
    assert (await (console["browser"]("127.0.0.3")).login("bob", PASSWORDS["bob"])).url.path == "/agent"
    later(console, seconds=16)
    assert (await guesser.login("alice", PASSWORDS["alice"])).url.path == "/agent"


async def test_delays_grow_per_name_from_everywhere_but_the_persons_known_address(console_with):
    console = await console_with(throttle_free_name=3, max_failures=50)
    sam = await signed_in(console, "sam", "127.0.0.1")
    for n in range(3):  # a different address each time: the per-address throttle never starts
        assert (await console["browser"](f"127.0.1.{n + 1}").login("sam", WRONG)).status == 401
    stranger = await console["browser"]("127.0.2.1").login("sam", PASSWORDS["sam"])
    assert stranger.status == 429
    # an unknown name is slowed down the same way: the delay says nothing about which names exist
    for n in range(3):
        assert (await console["browser"](f"127.0.3.{n + 1}").login("nosuchuser", WRONG)).status == 401
    assert (await console["browser"]("127.0.4.1").login("nosuchuser", WRONG)).status == 429
    # sam at an address he signed in from before is not slowed down by strangers
    again = await sam.login("sam", PASSWORDS["sam"])
    assert again.url.path == "/wallboard"
    events = audit(console, "sign_in_throttled")
    assert [e.subject for e in events] == ["account sam", "an unknown user name"]


async def test_one_answer_and_one_hash_for_unknown_wrong_disabled_and_locked(console_with, monkeypatch):
    """Before: "locked" and "This account is disabled." told real names apart, and an unknown
    name or a disabled account cost no hash at all."""
    console = await console_with(throttle_free_name=100, throttle_free_address=100, max_failures=3)
    with transaction(console["factory"]) as s:
        accounts.disable(s, "bob", NOW, by="root")
    b = console["browser"]()
    for _ in range(3):
        await b.login("sam", WRONG)  # sam is locked now
    compared = []
    real = passwords.verify_password

    def counting(password, stored):
        compared.append(stored.split("$")[1])  # the scrypt cost of the hash compared
        return real(password, stored)
    monkeypatch.setattr(passwords, "verify_password", counting)
    answers, seconds = {}, {}
    cases = {"unknown": ("nosuchuser", WRONG), "wrong": ("alice", WRONG), "disabled": ("bob", PASSWORDS["bob"]),
             "locked": ("sam", PASSWORDS["sam"])}
    for kind, (name, password) in cases.items():
        compared.clear()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            response = await b.login(name, password)
            times.append(time.perf_counter() - started)
            body = await response.text()
            answers.setdefault(kind, set()).add((response.status, re.search(
                r'data-testid="login-message">([^<]*)<', body).group(1)))
        assert compared == [str(passwords.SCRYPT_N)] * 3, kind  # one comparison each, at the same cost
        seconds[kind] = sorted(times)[1]
    assert {a for answer in answers.values() for a in answer} == {(401, "Wrong user name or password.")}
    # and about the same time (the hash dominates; generous bounds for a shared machine)
    assert max(seconds.values()) < 3 * min(seconds.values()), seconds


# ---------------------------------------------------------------- 2. weak passwords; sessions

@pytest.mark.parametrize("weak", ["Password12", "Welcome123", "Passw0rd!!", "Qwerty123!"])
def test_common_passwords_that_keep_the_character_rules_are_refused(weak):
    assert passwords.problems(weak, username="sam", role="supervisor") == ["guessable"]


async def test_weak_passwords_are_refused_and_a_change_ends_every_other_session(console):
    sam = await signed_in(console, "sam")
    for weak in ("Password12", "Welcome123", "Passw0rd!!", "Qwerty123!"):
        response = await sam.http.post("/password", data={"csrf_token": sam.csrf, "current_password": PASSWORDS["sam"],
                                                          "new_password": weak, "repeat_password": weak})
        assert response.status == 400 and "too easy to guess" in await response.text(), weak
    other = await signed_in(console, "sam")  # another browser
    assert (await other.http.get("/wallboard/data")).status == 200
    new = "Mv8!tLq#zRw3"
    changed = await sam.http.post("/password", data={"csrf_token": sam.csrf, "current_password": PASSWORDS["sam"],
                                                     "new_password": new, "repeat_password": new})
    assert "Your password was changed" in await changed.text()
    assert (await other.http.get("/wallboard/data")).status == 401  # ended
    assert (await sam.http.get("/wallboard/data")).status == 200    # the one that changed it goes on
    assert "1 other session(s) ended" in audit(console, "password_change")[-1].detail


async def test_a_new_sign_in_ends_the_session_it_replaces(console):
    b = await signed_in(console, "alice")
    old = next(c.value for c in b.http.cookie_jar if c.key == "dunning_session")
    await b.login("sam", PASSWORDS["sam"])  # someone else signs in in the same browser
    async with aiohttp.ClientSession(base_url=b.base, headers={"Cookie": f"dunning_session={old}"}) as copy:
        assert (await copy.get("/agent/counters")).status == 401
        assert (await copy.get("/agent", allow_redirects=False)).headers["Location"] == "/login?expired=1"
    assert (await b.http.get("/wallboard/data")).status == 200
    assert audit(console, "sign_out")[-1].detail == "replaced by a new sign-in in the same browser"


# ---------------------------------------------------------------- 3. personal data scoped by team

def _store_transcript(factory, recording_id: int) -> None:
    from recordings import qa, transcripts
    from recordings.transcript import Transcript, Utterance, Word

    def said(leg: str, start: float, text: str) -> Utterance:
        words = tuple(Word(ch, start + i * 0.18, start + (i + 1) * 0.18, 0.95) for i, ch in enumerate(text))
        return Utterance(leg, start, start + len(text) * 0.18, text, words)
    transcript = Transcript((said("agent", 0.2, "您好我是示范银行工号一二三四本次通话将被录音"),
                             said("debtor", 1.4, "我现在没钱"), said("agent", 2.5, "不还钱就起诉你家人")), "zh")
    with transaction(factory) as s:
        transcripts.store(s, recording_id, transcript, "test-transcript", NOW)
        qa.check_recording(s, recording_id, transcript, now=NOW)


async def test_supervisors_and_qa_see_only_their_teams_cases_with_phones_masked(console):
    """Before: any supervisor or QA reviewer read any case by its sequential id, phone numbers whole."""
    ids = console["ids"]
    bridge(console["factory"], ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)  # each case has a call now
    sue, quinn = await signed_in(console, "sue"), await signed_in(console, "quinn")  # team-east, team-west
    for who, own, other in ((sue, "C-EAST", "C-WEST"), (quinn, "C-WEST", "C-EAST")):
        refused = await who.http.get(f"/api/cases/{ids[other]}")
        assert refused.status == 403 and "13800138000" not in await refused.text()
        assert (await who.http.get(f"/cases/{ids[other]}")).status == 403
        response = await who.http.get(f"/api/cases/{ids[own]}")
        text = await response.text()
        card = json.loads(text)
        assert response.status == 200 and card["phones_masked"] is True
        assert [p["number"] for p in card["phones"]] == ["138****8000", "075****8888"]
        assert "13800138000" not in text and "075588888888" not in text  # nor in the history
    # the numbers whole, for a reason that is audited; no reason, no numbers
    assert (await quinn.post(f"/api/cases/{ids['C-WEST']}/unmask", {"reason": ""})).status == 400
    assert (await quinn.post(f"/api/cases/{ids['C-WEST']}/unmask", {"reason": "curiosity"})).status == 400
    assert (await quinn.post(f"/api/cases/{ids['C-EAST']}/unmask", {"reason": "complaint"})).status == 403
    shown = await quinn.post(f"/api/cases/{ids['C-WEST']}/unmask", {"reason": "complaint"})
    assert [p["number"] for p in (await shown.json())["phones"]] == ["13800138000", "075588888888"]
    [unmasked] = audit(console, "case_unmask")
    assert (unmasked.username, unmasked.subject, unmasked.detail) == ("quinn", f"case {ids['C-WEST']}",
                                                                      "old-west-1; reason: complaint")
    page = await (await quinn.http.get(f"/cases/{ids['C-WEST']}")).text()
    assert 'data-testid="unmask-form"' in page and "138****8000" in page and "13800138000" not in page
    # agents dial: they see the numbers of the case they are on
    alice = await signed_in(console, "alice")
    card = await (await alice.http.get(f"/api/cases/{ids['C-EAST']}")).json()
    assert card["phones"][0]["number"] == "13800138000" and card["phones_masked"] is False
    # an administrator sees every team's case, masked too
    root = await signed_in(console, "root")
    assert (await (await root.http.get(f"/api/cases/{ids['C-WEST']}")).json())["phones"][0]["number"] == "138****8000"


async def test_recordings_transcripts_and_findings_are_scoped_by_team(console):
    """Before: transcript search, the recent recordings and every recording were open to every
    supervisor and QA reviewer."""
    ids = console["ids"]
    _store_transcript(console["factory"], ids["recording"])  # the recording is of the west case
    sue, quinn, root = (await signed_in(console, "sue"), await signed_in(console, "quinn"),
                        await signed_in(console, "root"))
    found = await (await quinn.http.get("/qa?q=起诉")).text()
    assert found.count('data-testid="qa-hit"') == 1 and 'data-testid="qa-recording-link"' in found
    assert (await (await root.http.get("/qa?q=起诉")).text()).count('data-testid="qa-hit"') == 1
    none = await (await sue.http.get("/qa?q=起诉")).text()
    assert 'data-testid="qa-hit"' not in none and 'data-testid="qa-recording-link"' not in none
    assert "old-west-1" not in none
    assert (await sue.http.get(f"/qa/recordings/{ids['recording']}")).status == 403
    assert (await sue.post(f"/qa/recordings/{ids['recording']}/play", {"reason": "qa_review"})).status == 403
    with sessions(console["factory"].kw["bind"])() as s:
        from recordings.qa_schema import FindingRow
        finding = s.scalar(select(FindingRow.id).where(FindingRow.recording_id == ids["recording"]))
    assert (await sue.post(f"/qa/findings/{finding}/verdict", {"verdict": "confirmed"})).status == 403
    assert (await quinn.post(f"/qa/findings/{finding}/verdict", {"verdict": "confirmed"})).status == 200
    assert (await quinn.http.get(f"/qa/recordings/{ids['recording']}")).status == 200
    refused = [(e.username, e.event) for e in audit(console, "recording_view", "recording_play", "qa_verdict")
               if e.result == "refused"]
    assert refused == [("sue", "recording_view"), ("sue", "recording_play"), ("sue", "qa_verdict")]


# ---------------------------------------------------------------- 4. audit gaps

async def test_every_recording_page_search_and_play_is_audited_once_per_play(console):
    """Before: the recording page, searches and any number of downloads with one play token
    wrote nothing."""
    ids, root = console["ids"], console["root"]
    quinn = await signed_in(console, "quinn")
    await quinn.http.get(f"/qa/recordings/{ids['recording']}")
    await quinn.http.get("/qa?q=不还钱")
    [view] = audit(console, "recording_view")
    assert (view.username, view.result, view.subject) == ("quinn", "ok", f"recording {ids['recording']}")
    [search] = audit(console, "transcript_search")
    assert (search.username, search.detail) == ("quinn", "不还钱")
    whole = (root / "2026/11/24/old-west-1.wav").read_bytes()
    url = (await (await quinn.post(f"/qa/recordings/{ids['recording']}/play", {"reason": "qa_review"})).json())["url"]
    for first, last in ((0, 99), (100, 199), (5000, 5999)):  # a player's range requests: one play
        part = await quinn.http.get(url, headers={"Range": f"bytes={first}-{last}"})
        assert part.status == 206 and await part.read() == whole[first:last + 1]
    assert [(e.result, e.detail.split(": ")[1]) for e in audit(console, "recording_audio")] == [
        ("ok", f"first bytes 0-99 of {len(whole)}")]
    # downloading the whole file again and again with the same token: twice, then a new play is needed
    for _ in range(2):
        assert await (await quinn.http.get(url)).read() == whole
    spent = await quinn.http.get(url)
    assert spent.status == 403 and (await spent.json())["error"] == "qa.play_again"
    # a new play ends the last one, whose entry lists every byte range it sent
    await quinn.post(f"/qa/recordings/{ids['recording']}/play", {"reason": "complaint"})
    entries = audit(console, "recording_audio")
    assert [e.result for e in entries] == ["ok", "refused", "closed"]
    closed = entries[-1].detail
    assert f"5 request(s), {1200 + 2 * len(whole)} bytes sent of {len(whole)}; bytes 0-{len(whole) - 1}" in closed
    assert len(audit(console, "recording_play")) == 2


async def test_an_expired_play_is_closed_and_audited(console):
    ids = console["ids"]
    quinn = await signed_in(console, "quinn")
    url = (await (await quinn.post(f"/qa/recordings/{ids['recording']}/play", {"reason": "qa_review"})).json())["url"]
    await quinn.http.get(url, headers={"Range": "bytes=10-19"})
    later(console, minutes=31)
    assert (await quinn.http.get(url, headers={"Range": "bytes=10-19"})).status == 403
    await quinn.http.get("/qa")  # still signed in
    from agent_console.playback import close_plays
    await close_plays(console["app"], console["clock"](), lambda p: p.expires <= console["clock"]())
    closed = [e for e in audit(console, "recording_audio") if e.result == "closed"]
    assert len(closed) == 1 and "1 request(s), 10 bytes" in closed[0].detail and "bytes 10-19" in closed[0].detail


# ---------------------------------------------------------------- 5. the smaller ones

async def test_malformed_json_is_a_400_not_a_500(console):
    async with aiohttp.ClientSession(base_url=console["base"]) as http:
        for body in ("{not json", "[1, 2]", "\"text\""):
            response = await http.post("/login", data=body, headers={"Content-Type": "application/json"})
            assert response.status == 400, body
            assert all(h in response.headers for h in SECURITY)
    sam = await signed_in(console, "sam")
    response = await sam.http.post("/wallboard/campaigns/east/pause", data="{oops",
                                   headers={"Content-Type": "application/json", "X-CSRF-Token": sam.csrf})
    assert response.status == 400


@pytest.mark.parametrize("amount", ["Infinity", "1E+30", "NaN", "-5", "0", "12.345", "1e3"])
async def test_a_promised_amount_must_be_a_sum_of_money(console, amount):
    ids, factory = console["ids"], console["factory"]
    alice = await signed_in(console, "alice")
    bridge(factory, ids["C-EAST"], ids["agent_alice"], "call-east-1", NOW)
    hang_up(factory, "call-east-1", ids["agent_alice"], NOW + dt.timedelta(seconds=60))
    form = {"call_id": "call-east-1", "code": "promise_to_pay", "due": "2026-12-01"}
    refused = await alice.post("/agent/disposition", {**form, "amount": amount})
    assert refused.status == 400 and (await refused.json())["error"] == "dispo.bad_amount"
    with sessions(factory.kw["bind"])() as s:
        assert s.scalar(select(func.count()).select_from(Disposition)) == 0
    saved = await alice.post("/agent/disposition", {**form, "amount": "1,500.50"})
    assert saved.status == 200
    with sessions(factory.kw["bind"])() as s:
        assert str(s.scalar(select(PromiseToPay.amount))) == "1500.50"


@pytest.mark.parametrize("target", ["/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example",
                                    "/%2F/evil.example", "/\n/evil.example", "evil.example"])
async def test_the_language_switch_never_sends_the_browser_to_another_site(console, target):
    sam = await signed_in(console, "sam")
    response = await sam.http.post("/lang", data={"csrf_token": sam.csrf, "to": "zh", "next": target},
                                   allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/"
    ok = await sam.http.post("/lang", data={"csrf_token": sam.csrf, "to": "en", "next": "/wallboard?x=1"},
                             allow_redirects=False)
    assert ok.headers["Location"] == "/wallboard?x=1"


async def test_aiohttps_own_errors_carry_the_security_headers(console):
    sam = await signed_in(console, "sam")
    anonymous = aiohttp.ClientSession(base_url=console["base"])
    try:
        for http, method, path, status in ((anonymous, "GET", "/static/nope.css", 404),
                                           (anonymous, "GET", "/no/such/page", 404),
                                           (sam.http, "GET", "/no/such/page", 404),
                                           (sam.http, "GET", "/logout", 405),
                                           (anonymous, "PUT", "/login", 405)):
            response = await http.request(method, path, allow_redirects=False)
            assert response.status == status, path
            assert all(h in response.headers for h in SECURITY), (method, path, dict(response.headers))
        redirect = await anonymous.get("/wallboard", allow_redirects=False)
        assert redirect.status == 302 and all(h in redirect.headers for h in SECURITY)
    finally:
        await anonymous.close()


async def test_healthz_tells_nobody_how_many_sockets_are_open(console):
    alice = await signed_in(console, "alice")
    ws = await alice.http.ws_connect("/ws/agent")
    async with aiohttp.ClientSession(base_url=console["base"]) as anonymous:
        assert await (await anonymous.get("/healthz")).json() == {"ok": True}
    await ws.close()


# ---------------------------------------------------------------- the route table

#: What each role may reach: written here, apart from the code, so that a route added without
#: a declaration, or a declaration widened by mistake, fails.
EXPECTED = {
    ("GET", "/healthz"): "public", ("GET", "/favicon.ico"): "public", ("GET", "/login"): "public",
    ("POST", "/login"): "public", ("GET", "/static/console.css"): "public",
    ("POST", "/logout"): "agent supervisor qa administrator", ("POST", "/lang"): "agent supervisor qa administrator",
    ("GET", "/"): "agent supervisor qa administrator", ("GET", "/password"): "agent supervisor qa administrator",
    ("POST", "/password"): "agent supervisor qa administrator",
    ("GET", "/agent"): "agent", ("POST", "/agent/presence"): "agent", ("POST", "/agent/disposition"): "agent",
    ("GET", "/agent/counters"): "agent", ("GET", "/ws/agent"): "agent",
    ("POST", "/agent/call/hangup"): "agent", ("POST", "/agent/call/transfer"): "agent",
    ("POST", "/agent/call/transfer/{how}"): "agent",
    ("POST", "/agent/call/number"): "agent", ("POST", "/wallboard/calls/{call_id}/{mode}"): "supervisor",
    ("GET", "/cases/{case_id}"): "agent supervisor qa administrator",
    ("GET", "/api/cases/{case_id}"): "agent supervisor qa administrator",
    ("POST", "/cases/{case_id}/unmask"): "supervisor qa administrator",
    ("POST", "/api/cases/{case_id}/unmask"): "supervisor qa administrator",
    ("GET", "/wallboard"): "supervisor administrator", ("GET", "/wallboard/data"): "supervisor administrator",
    ("POST", "/wallboard/campaigns/{name}/{command}"): "supervisor administrator",
    ("GET", "/qa"): "supervisor qa administrator",
    ("GET", "/qa/recordings/{recording_id}"): "supervisor qa administrator",
    ("POST", "/qa/recordings/{recording_id}/play"): "supervisor qa administrator",
    ("GET", "/qa/audio/{token}"): "supervisor qa administrator",
    ("POST", "/qa/findings/{finding_id}/verdict"): "supervisor qa administrator",
    ("GET", "/qa/review"): "supervisor qa administrator", ("GET", "/qa/precision"): "supervisor qa administrator",
    ("GET", "/accounts"): "administrator", ("POST", "/accounts/{username}/{command}"): "administrator",
}
ROLE_OF = {"alice": "agent", "sue": "supervisor", "quinn": "qa", "root": "administrator"}


def _declared(app) -> dict[tuple[str, str], frozenset]:
    out = {}
    for route, roles in app[ACCESS].items():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if not isinstance(route.resource, web.StaticResource) else "/static/console.css"
        out[(route.method, path)] = roles
    return out


def test_every_route_in_the_table_is_expected():
    table = {(m, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", p)) for m, p, _h, _r in route_table()}
    assert table | {("GET", "/static/console.css")} == set(EXPECTED)


async def test_every_route_declares_its_roles_and_no_role_reaches_another(console_with):
    async def secret(request):
        return web.json_response({"leaked": True})
    console = await console_with(before_start=lambda app: app.router.add_get("/undeclared", secret))
    app, ids = console["app"], console["ids"]
    undeclared = [r for r in app.router.routes() if r not in app[ACCESS]]
    assert [r.resource.canonical for r in undeclared] == ["/undeclared", "/undeclared"]  # GET and HEAD
    declared = _declared(app)
    assert {k: ("public" if ANONYMOUS in v else " ".join(sorted(v))) for k, v in declared.items()} == {
        k: (v if v == "public" else " ".join(sorted(v.split()))) for k, v in EXPECTED.items()}
    values = {"case_id": ids["C-EAST"], "recording_id": ids["recording"], "token": "not-a-token",
              "finding_id": "0", "name": "nope", "command": "nope", "username": "nobody",
              "call_id": "nope", "mode": "listen", "how": "cancel"}
    browsers = {name: await signed_in(console, name) for name in ROLE_OF}
    anonymous = console["browser"]()
    # what is not declared is refused to every role, administrators included
    for name, b in browsers.items():
        response = await b.http.get("/undeclared", headers={"Accept": "application/json"})
        assert response.status == 403 and b"leaked" not in await response.read(), name
    assert (await anonymous.http.get("/undeclared", headers={"Accept": "application/json"})).status == 401
    seen = []
    for (method, template), allowed in sorted(EXPECTED.items(), key=lambda kv: kv[0] == ("POST", "/logout")):
        path = template.format(**values)
        data = {"new_password": "a", "repeat_password": "b", "to": "en", "next": "/"}
        for name, b in [*browsers.items(), ("anonymous", anonymous)]:
            headers = {"Accept": "application/json"}
            kwargs = {"data": {**data, "csrf_token": b.csrf}} if method == "POST" else {}
            response = await b.http.request(method, path, headers=headers, allow_redirects=False, **kwargs)
            body = await response.read()
            denied_role = response.status == 403 and b'"forbidden.role"' in body
            signed_out = response.status == 401  # with Accept: JSON the guard answers 401, never a redirect
            role = ROLE_OF.get(name, "anonymous")
            if allowed == "public":
                assert not denied_role and not signed_out, (method, path, name)
            elif name == "anonymous":
                assert signed_out, (method, path, response.status)
            else:
                assert denied_role == (role not in allowed.split()), (method, path, name, response.status, body[:200])
                assert not signed_out, (method, path, name)
            seen.append((method, template, name))
    assert len(seen) == len(EXPECTED) * 5


async def test_the_qa_workspace_is_scoped_by_team_and_audited(console):
    """The review queue, the precision page and the conversation show only the reader's
    team's calls; a filter that cannot be read is a one-line 400; listing the queue and the
    precision are audited."""
    ids = console["ids"]
    _store_transcript(console["factory"], ids["recording"])  # the west case's call
    sue, quinn, root = (await signed_in(console, "sue"), await signed_in(console, "quinn"),
                        await signed_in(console, "root"))
    west = await (await quinn.http.get("/qa/review?status=all")).text()
    east = await (await sue.http.get("/qa/review?status=all")).text()
    assert 'data-testid="queue-row"' in west and "old-west-1" in west
    assert 'data-testid="queue-row"' not in east and "old-west-1" not in east
    everyone = await (await root.http.get("/qa/review?status=all&team=team-east")).text()
    assert 'data-testid="queue-row"' not in everyone  # the call is of the west team's campaign
    assert 'data-testid="queue-row"' in await (await root.http.get("/qa/review?status=all&team=team-west")).text()
    assert 'data-testid="precision-row"' in await (await quinn.http.get("/qa/precision")).text()
    assert 'data-testid="precision-row"' not in await (await sue.http.get("/qa/precision")).text()
    # the call was recorded at 2026-11-24 02:00 UTC, 10:00 in the report's zone (Asia/Shanghai)
    for days, shown in (("since=2026-11-24&until=2026-11-24", True), ("since=2026-11-25", False),
                        ("until=2026-11-23", False)):
        page = await (await quinn.http.get(f"/qa/review?status=all&{days}")).text()
        assert ('data-testid="queue-row"' in page) == shown, days
    bad = await quinn.http.get("/qa/review?since=yesterday")
    assert bad.status == 400 and "filter &#39;since&#39;: &#39;yesterday&#39; is not a date" in await bad.text()
    page = await (await quinn.http.get(f"/qa/recordings/{ids['recording']}")).text()
    assert page.count('data-testid="conv-line"') == 3 and 'data-testid="conv-mark"' in page
    assert [(e.username, e.detail) for e in audit(console, "qa_queue")][:4] == [
        ("quinn", "status=all"), ("sue", "status=all"), ("root", "team=team-east status=all"),
        ("root", "team=team-west status=all")]
    assert audit(console, "qa_queue")[4].detail == "status=all since=2026-11-24 until=2026-11-24"
    assert [e.username for e in audit(console, "qa_precision")] == ["quinn", "sue"]
    alice = await signed_in(console, "alice")
    assert (await alice.http.get("/qa/review")).status == 403
