"""A supervisor's day on the command line, against the real sandbox and a real softphone:
import, campaign life cycle, agents, `run` with SIGTERM and after a crash, dispositions,
the daily report. Each command is run as a user runs it (a subprocess) and checked by its
exit status, its output and the database."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from asterisk_conf.softphone import Softphone
from campaigns.db import make_engine, sessions
from campaigns.models import Attempt, Case, Disposition, PromiseToPay, Recording
from dialer.demo import daytime_zone
from helpers import dial_lines

REPO = Path(__file__).resolve().parent.parent
DUNNING = str(REPO / ".venv/bin/dunning")
pytestmark = pytest.mark.asterisk


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
            "DUNNING_RECORDINGS": str(tmp_path / "recordings")}


def env_tmp(env) -> Path:
    return Path(env["DUNNING_RECORDINGS"]).parent


def dunning(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([DUNNING, *args], capture_output=True, text=True, env=env, timeout=timeout)


def rows(env, model):
    engine = make_engine(env["DUNNING_DATABASE_URL"])
    with sessions(engine)() as s:
        found = list(s.scalars(select(model)))
    engine.dispose()
    return found


@pytest.fixture
def batch(tmp_path) -> Path:
    """Three debtors whose phones answer after 3 s and stay on the line."""
    stamp = dt.datetime.now().strftime("%H%M%S%f")
    lines = ["案件编号,姓名,欠款金额,逾期天数,手机"] + [
        f"S{i}-{stamp},债务人{i},{1000 * (4 - i)}.00,30,1380013800{i}" for i in range(3)]
    path = tmp_path / "batch.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("gbk"))
    return path


@pytest.fixture
def agent(sandbox_up, creds, agent_speech, tmp_path):
    ext = sorted(creds.agent_passwords)[0]
    phone = Softphone(ext, creds.agent_passwords[ext], agent_speech, tmp_path / "phone",
                      sip_server=f"127.0.0.1:{sandbox_up.sip_port}")
    phone.start()
    yield ext
    phone.stop()


def setup_campaign(env, batch: Path, ext: str, name: str = "cli") -> None:
    assert dunning(env, "import", str(batch), "--client", "CLI-BANK").returncode == 0
    added = dunning(env, "agents", "add", ext, "--name", "Wang Li")
    assert added.returncode == 0, added.stderr
    zone = daytime_zone(dt.datetime.now(dt.timezone.utc))
    created = dunning(env, "campaign", "create", name, "--client", "CLI-BANK", "--timezone", zone,
                      "--ring-seconds", "15", "--wrap-up-seconds", "1", "--agent-line", "ringing")
    assert created.returncode == 0, created.stderr
    assert dunning(env, "campaign", "start", name).stdout.strip() == f"campaign {name}: running"


def test_campaign_life_cycle_and_errors(env, batch, sandbox_up, creds):
    setup_campaign(env, batch, sorted(creds.agent_passwords)[0])
    listed = dunning(env, "campaign", "list").stdout
    assert "cli" in listed and "running" in listed and " 3 " in listed
    status = dunning(env, "campaign", "status", "cli")
    assert "may be dialled now: 3" in status.stdout and "attempts today: none" in status.stdout
    assert dunning(env, "campaign", "pause", "cli").stdout.strip() == "campaign cli: paused"
    assert dunning(env, "campaign", "stop", "cli").stdout.strip() == "campaign cli: stopped"
    again = dunning(env, "campaign", "start", "cli")
    assert again.returncode == 1 and "a stopped campaign cannot start" in again.stderr
    missing = dunning(env, "campaign", "start", "nope")
    assert missing.returncode == 1 and "no campaign named 'nope' (campaigns: cli)" in missing.stderr
    dup = dunning(env, "campaign", "create", "cli", "--client", "CLI-BANK")
    assert dup.returncode == 1 and "exists already" in dup.stderr
    tz = dunning(env, "campaign", "create", "x", "--client", "CLI-BANK", "--timezone", "Mars/Olympus")
    assert tz.returncode == 1 and "unknown time zone 'Mars/Olympus'" in tz.stderr


def test_status_and_why_at_the_edges_of_the_calling_window(env, batch, sandbox_up, creds):
    setup_campaign(env, batch, sorted(creds.agent_passwords)[0])
    zone = ZoneInfo(daytime_zone(dt.datetime.now(dt.timezone.utc)))
    # Tomorrow: the cases were imported today, so their first follow-up is due from then on;
    # the engine (and so `status`) dials a case only when its follow-up is due.
    day = dt.datetime.now(zone).date() + dt.timedelta(days=1)

    def local(hh: int, mm: int, ss: int) -> str:
        return dt.datetime.combine(day, dt.time(hh, mm, ss), zone).isoformat()

    for at, open_ in ((local(7, 59, 59), False), (local(8, 0, 0), True), (local(20, 59, 59), True),
                      (local(21, 0, 0), False)):
        status = dunning(env, "campaign", "status", "cli", "--at", at).stdout
        assert (f"may be dialled now: {3 if open_ else 0}" in status), (at, status)
        assert ("blocked by calling_window: 3" in status) is not open_
        why = dunning(env, "why", "13800138001", "--at", at)
        assert why.returncode == 0, why.stderr
        assert ("may be dialled now" in why.stdout) is open_, why.stdout
        if not open_:
            assert "calling_window" in why.stdout and "next possible at" in why.stdout
    unknown = dunning(env, "why", "13900000000")
    assert unknown.returncode == 1 and "no case or phone number '13900000000'" in unknown.stderr


def test_agents_add_creates_the_endpoint_without_printing_the_password(env, sandbox_up, own_home):
    result = dunning(env, "agents", "add", "6009", "--name", "Zhao Min")
    assert result.returncode == 0, result.stderr
    from asterisk_conf import credentials
    password = credentials.load_or_create(own_home).agent_passwords["6009"]  # the test's $DUNNING_HOME
    assert password not in result.stdout + result.stderr
    account = own_home / "agents" / "6009.sip"
    assert account.stat().st_mode & 0o777 == 0o600 and password in account.read_text()
    assert "PJSIP/6009" in dunning(env, "asterisk", "check").stdout
    assert ["6009", "Zhao", "Min", "yes"] in [l.split() for l in dunning(env, "agents", "list").stdout.splitlines()]
    bad = dunning(env, "agents", "add", "60 09")
    assert bad.returncode == 2 and "letters, digits" in bad.stderr
    assert "60 09" not in credentials.load_or_create(own_home).agent_passwords, "nothing written"


def test_sigterm_stops_dialling_and_lets_the_live_call_finish(env, batch, agent):
    setup_campaign(env, batch, agent)
    proc = subprocess.Popen([DUNNING, "run", "cli", "--agents", agent], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "dialling" in line:
            break
    time.sleep(4)  # the debtor has answered and is talking to the agent
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "stopping: waiting for 1 call(s) in progress to end" in text
    attempts = rows(env, Attempt)
    assert len(attempts) == 1, "nothing was dialled after SIGTERM"
    assert attempts[0].state == "ended" and attempts[0].outcome == "answered"
    assert len(rows(env, Recording)) == 1


def test_after_a_crash_the_call_is_followed_not_dialled_again(env, batch, agent, sandbox_up):
    setup_campaign(env, batch, agent)
    proc = subprocess.Popen([DUNNING, "run", "cli", "--agents", agent], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if "dialling" in line:
            break
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)  # the engine dies mid-call; Asterisk carries on
    proc.wait()
    (left,) = rows(env, Attempt)
    assert left.state == "dialing"
    again = dunning(env, "run", "cli", "--agents", agent, "--until-idle", timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{left.call_id}: still in Asterisk from an earlier run; following it" in again.stdout
    attempts = {a.call_id: a for a in rows(env, Attempt)}
    assert attempts[left.call_id].state == "ended" and attempts[left.call_id].outcome == "answered"
    assert all(a.state == "ended" for a in attempts.values())
    assert len(attempts) == 3, "the other two cases were dialled; the first was not dialled again"
    dialled = dial_lines(sandbox_up)
    assert all(dialled[call_id] == 1 for call_id in attempts)


def test_dispositions_and_the_daily_report(env, batch, agent):
    setup_campaign(env, batch, agent)
    result = dunning(env, "run", "cli", "--agents", agent, "--until-idle", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 dials: answered 3; 3 recordings stored" in result.stdout
    answered = sorted(rows(env, Attempt), key=lambda a: a.id)
    due = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    ok = dunning(env, "disposition", answered[0].call_id, "promise_to_pay", "--amount", "1500", "--due", due,
                 "--note", "will pay on payday")
    assert ok.returncode == 0, ok.stderr
    no_amount = dunning(env, "disposition", str(answered[1].id), "promise_to_pay")
    assert no_amount.returncode == 1 and "needs --amount and --due" in no_amount.stderr
    complaint = dunning(env, "disposition", str(answered[1].id), "complaint")
    assert complaint.returncode == 0
    twice = dunning(env, "disposition", str(answered[1].id), "refused")
    assert twice.returncode == 1 and "has a disposition already" in twice.stderr
    unknown = dunning(env, "disposition", str(answered[2].id), "shouted")
    assert unknown.returncode == 1 and "unknown result code 'shouted'" in unknown.stderr
    (promise,) = rows(env, PromiseToPay)
    assert str(promise.amount) == "1500.00" and promise.due_date.isoformat() == due
    statuses = {c.id: c.status for c in rows(env, Case)}
    assert statuses[answered[0].case_id] == "promise_to_pay" and statuses[answered[1].case_id] == "complaint"
    assert len(rows(env, Disposition)) == 2

    zone = daytime_zone(dt.datetime.now(dt.timezone.utc))
    picture = env_tmp(env) / "report.png"
    report = dunning(env, "report", "daily", "--timezone", zone, "--effective-seconds", "2", "--plot", str(picture))
    assert report.returncode == 0, report.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    agent_line = next(line for line in report.stdout.splitlines() if line.startswith(agent))
    cells = agent_line.split()
    assert cells[cells.index("Li") + 1:cells.index("Li") + 7] == ["3", "2", "%", "3", "3", "6"]
    campaign_line = next(line for line in report.stdout.splitlines() if line.startswith("cli "))
    assert "100 %" in campaign_line and "answered 3" in campaign_line
    assert "recording coverage: 3 of 3 answered calls have a verified recording in the vault (100 %" in report.stdout


def test_recordings_commands_on_a_real_campaign(env, batch, agent, tmp_path):
    setup_campaign(env, batch, agent)
    assert dunning(env, "run", "cli", "--agents", agent, "--until-idle", timeout=240).returncode == 0
    verify = dunning(env, "recordings", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "0 missing, 0 changed, 0 orphans, 0 answered calls without a recording" in verify.stdout
    first = sorted(rows(env, Attempt), key=lambda a: a.id)[0]
    out = tmp_path / "export"
    exported = dunning(env, "recordings", "export", first.call_id, "--to", str(out), "--user", "qa1",
                       "--reason", "bank request 2026-118")
    assert exported.returncode == 0, exported.stderr
    check = subprocess.run(["sha256sum", "-c", f"{first.call_id}.flac.sha256"], cwd=out, capture_output=True,
                           text=True)
    assert check.returncode == 0 and "OK" in check.stdout
    short = dunning(env, "recordings", "retention", "CLI-BANK", "--years", "1")
    assert short.returncode == 1 and "below the legal minimum of 2 years" in short.stderr
    assert dunning(env, "recordings", "retention", "CLI-BANK", "--years", "3").returncode == 0
    held = dunning(env, "recordings", "hold", f"recording:{first.call_id}", "--reason", "court order")
    assert held.returncode == 0, held.stderr
    purge = dunning(env, "recordings", "purge", "--dry-run")
    assert purge.returncode == 0 and "nothing was changed" in purge.stdout
    # What if: the campaign's real attempts drive the simulator.
    what_if = dunning(env, "simulate", "--campaign", "cli", "--agents", "5", "--hours", "1", "--seeds", "1")
    assert what_if.returncode == 0, what_if.stderr
    assert "3 attempts of campaign cli learned" in what_if.stdout
    assert [line.split()[0] for line in what_if.stdout.splitlines()[3:]] == ["progressive", "vicidial", "ours"]
