"""The README's main job and the supervisor-facing `asterisk` commands, as a user runs them."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DUNNING = str(REPO / ".venv/bin/dunning")

pytestmark = pytest.mark.asterisk


def dunning(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([DUNNING, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_demo_runs_a_campaign_and_ends_with_the_daily_report(sandbox_up, creds):
    result = dunning("demo", "--agents", "2")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "cases for client DEMO-BANK" in out and "inside the 08:00-21:00 calling window" in out
    assert out.count("softphone registered") == 2
    # Each case: dialled in order own mobile, home, work, with the outcome its phone gives.
    for outcome in ("busy", "no_answer", "congestion", "debtor_hung_up", "answered, talked"):
        assert outcome in out, outcome
    report = out[out.index("Daily report for"):]
    name = out.split("campaign ", 1)[1].split(":", 1)[0]
    campaign_line = next(line for line in report.splitlines() if line.startswith(name + " "))
    assert campaign_line.split()[1:3] == ["9", "6"], campaign_line  # 9 dials, 6 answered
    assert "100 %" in campaign_line, "every answered call has its recording"
    assert "recording coverage: 6 of 6 answered calls have a verified recording in the vault (100 %" in out
    assert re.search(r"^AMI: \d+ events .*, 0 reconnect\(s\), 0 failed connect\(s\)", out, re.M), out
    # ... and through speech-to-text (the Korean test model) to findings and search.
    speech = out.split("Speech-to-text (Vosk, each leg on its own) and QA findings:", 1)[1]
    assert speech.count("model vosk-model-small-ko-0.22") == 6, speech
    assert speech.count("finding: ko.must.recording_notice") == 6 and " agent " in speech
    assert "dunning qa search " in speech and " 0 call(s)" not in speech
    agents = [line.split()[0] for line in report.splitlines() if line[:4].isdigit()]
    assert agents == sorted(creds.agent_passwords)[:2]
    secrets = [creds.ami_secret, *creds.agent_passwords.values()]
    log = (sandbox_up.sandbox_root / "var/log/asterisk/messages.log").read_text(errors="replace")
    for secret in secrets:
        assert secret not in out + result.stderr and secret not in log


def test_check_finds_everything_the_engine_needs(sandbox_up):
    result = dunning("asterisk", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("ok") for line in lines), result.stdout
    assert any("dialplan context dunning-answered" in line for line in lines)
    assert any("agent endpoint PJSIP/6001" in line for line in lines)
    assert any("permissions no wider than needed" in line for line in lines)


def test_check_reports_refused_credentials(sandbox_up):
    result = dunning("asterisk", "check", env={"DUNNING_AMI_USERNAME": "dunning",
                                               "DUNNING_AMI_SECRET": "not-the-secret"})
    assert result.returncode == 1
    assert "MISSING AMI login as dunning@127.0.0.1:5038" in result.stdout
    assert "refused AMI login" in result.stdout
    assert "not-the-secret" not in result.stdout + result.stderr
