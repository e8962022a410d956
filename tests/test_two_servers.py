"""One floor, two Asterisk servers (issue #17): the default sandbox (A) and a second one (B,
`dunning asterisk sandbox up --name B`), baresip agents registered on each, one campaign in
PostgreSQL dialled by two `dunning run --server` engines at once, as a user runs them.

What must hold: every attempt ends with an outcome and says which server dialled it; both
servers dialled; no case was dialled by both at once or twice where the rules allow once (a
debtor reached on one server is not called by the other that day); the dials in each
Asterisk's own log are exactly that server's attempts, none twice; every answered call has
its recording in the shared vault.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from asterisk_conf import sandbox
from asterisk_conf.softphone import Softphone
from campaigns.db import sessions
from campaigns.models import Attempt
from dialer.demo import daytime_zone
from helpers import dial_lines
from recordings import vault

REPO = Path(__file__).resolve().parent.parent
DUNNING = str(REPO / ".venv/bin/dunning")
pytestmark = [pytest.mark.asterisk, pytest.mark.softphone]

#: Twelve debtors with two numbers each (the simulated network: a mobile's last digit says
#: what it does; 0-5 answer after 3-8 s, 6 busy, 7 no answer, 8 answers and hangs up, 9 invalid).
CASES = [(f"139{i:04d}{a}000", f"138{i:04d}{b}001") for i, (a, b) in
         enumerate([(0, 7), (1, 6), (6, 2), (7, 3), (8, 4), (9, 5), (2, 7), (3, 9), (4, 6), (5, 8), (7, 7), (6, 0)])]


@pytest.fixture(scope="module")
def server_b(sandbox_up, creds):
    """The second sandbox, B, up beside the default one (left up afterwards, as `up` leaves A)."""
    site_b = sandbox_up.in_sandbox("B")
    sandbox.up(site_b, creds, say=lambda _: None)
    return site_b


@pytest.fixture(scope="module")
def agents_on_both(sandbox_up, server_b, creds, agent_speech, tmp_path_factory):
    """6001 and 6002 at their softphones on server A, 6003 on server B."""
    base = tmp_path_factory.mktemp("two-servers-phones")
    placed = {"6001": sandbox_up, "6002": sandbox_up, "6003": server_b}
    phones = [Softphone(ext, creds.agent_passwords[ext], agent_speech, base / ext,
                        sip_server=f"127.0.0.1:{site.sip_port}") for ext, site in placed.items()]
    for phone in phones:
        phone.start()
    yield placed
    for phone in phones:
        phone.stop()


class Environment(dict):
    """The engines' environment; never shown in a failure's traceback (it holds the
    database's password)."""

    def __repr__(self) -> str:
        return "<environment>"


def dunning(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([DUNNING, *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, f"dunning {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def two_server_campaign(database, tmp_path, agents) -> Environment:
    """The campaign "two" over `CASES` in PostgreSQL, started, with `agents`; the environment
    the engines run in."""
    env = Environment(os.environ, DUNNING_DATABASE_URL=database.url.render_as_string(hide_password=False),
                      DUNNING_RECORDINGS=str(tmp_path / "recordings"))
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    rows = ["案件编号,姓名,欠款金额,逾期天数,手机,家庭电话"] + [
        f"T{i}-{stamp},债务人{i},{1000 + 100 * i}.00,40,{own},{home}" for i, (own, home) in enumerate(CASES)]
    batch = tmp_path / "batch.csv"
    batch.write_bytes(("\n".join(rows) + "\n").encode("gbk"))
    dunning(env, "import", str(batch), "--client", "TWO")
    for ext in agents:
        dunning(env, "agents", "add", ext, "--name", f"agent {ext}")
    zone = daytime_zone(dt.datetime.now(dt.timezone.utc))
    dunning(env, "campaign", "create", "two", "--client", "TWO", "--timezone", zone, "--ring-seconds", "15",
            "--wrap-up-seconds", "0")
    dunning(env, "campaign", "start", "two")
    return env


def engine(env, server: str, agents: str) -> subprocess.Popen:
    return subprocess.Popen([DUNNING, "run", "two", "--agents", agents, "--server", server, "--until-idle"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_one_campaign_on_two_servers(database, sandbox_up, server_b, agents_on_both, tmp_path):
    env = two_server_campaign(database, tmp_path, agents_on_both)
    before = {"A": dial_lines(sandbox_up), "B": dial_lines(server_b)}
    engines = {"A": engine(env, "A", "6001,6002"), "B": engine(env, "B", "6003")}
    outputs = {}
    try:
        for name, proc in engines.items():
            outputs[name] = proc.communicate(timeout=400)[0]
            assert proc.returncode == 0, f"engine {name}:\n{outputs[name]}"
    finally:
        for proc in engines.values():
            if proc.poll() is None:
                proc.kill()
    assert "server A: this engine holds it" in outputs["A"] and "server B: AMI 127.0.0.1:5039" in outputs["B"]
    found = check_the_floor(database, {"A": sandbox_up, "B": server_b}, before, outputs)
    assert set(Counter(a.server for a in found)) == {"A", "B"}, "both servers dialled"


def check_the_floor(database, sites: dict, before: dict, outputs: dict) -> list[Attempt]:
    """What must hold of the campaign's attempts, however many servers dialled them."""
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
    out = subprocess.run(["chroot", str(site.sandbox_root), "/usr/sbin/asterisk", "-rx", "core show channels concise"],
                         capture_output=True, text=True, timeout=20).stdout
    return sum("!Up!" in line for line in out.splitlines())


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_server_killed_mid_campaign_loses_nothing(database, sandbox_up, server_b, agents_on_both, creds,
                                                     tmp_path):
    """Server B's Asterisk killed (`kill -9`) while it carries calls: A goes on and finishes
    the campaign; B's engine settles B's calls and stops dialling there; B brought back, its
    engine finds nothing left to take up; every attempt has an outcome, nothing was dialled
    twice (both Asterisks' own logs), every answered call is in the vault."""
    env = two_server_campaign(database, tmp_path, agents_on_both)
    before = {"A": dial_lines(sandbox_up), "B": dial_lines(server_b)}
    engines = {"A": engine(env, "A", "6001,6002"), "B": engine(env, "B", "6003")}
    outputs = {}
    try:
        deadline = time.monotonic() + 120
        while calls_up(server_b) == 0:
            if time.monotonic() > deadline or engines["B"].poll() is not None:
                engines["B"].kill()
                raise AssertionError(f"server B carried no answered call within 120 s:\n{engines['B'].communicate()[0]}")
            time.sleep(0.2)
        os.kill(sandbox.running_pid(server_b), signal.SIGKILL)
        killed_at = dt.datetime.now(dt.timezone.utc)
        outputs["A"] = engines["A"].communicate(timeout=400)[0]
        assert engines["A"].returncode == 0, outputs["A"]
        outputs["B"] = engines["B"].communicate(timeout=180)[0]
        # Its server lost, B's engine settles what B carried and ends, saying so (exit 1).
        assert engines["B"].returncode == 1, outputs["B"]
        assert "server B: unreachable since" in outputs["B"] and "asterisk server lost" in outputs["B"]
    finally:
        for proc in engines.values():
            if proc.poll() is None:
                proc.kill()
        sandbox.up(server_b, creds, say=lambda _: None)
    found = check_the_floor(database, {"A": sandbox_up, "B": server_b}, before, outputs)
    # The calls B carried say they were cut, and end when B went, not when its loss was declared.
    cut = [a for a in found if a.server == "B" and a.note and "cut" in a.note]
    assert cut, [(a.call_id, a.outcome, a.note) for a in found if a.server == "B"]
    for a in cut:
        assert abs((a.ended_at - killed_at).total_seconds()) <= 3, (a.call_id, a.ended_at, killed_at, a.note)
