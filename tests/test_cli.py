"""The README's main job and the supervisor-facing `asterisk` commands, as a user runs them."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DUNNING = str(REPO / ".venv/bin/dunning")

pytestmark = pytest.mark.asterisk


def dunning(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([DUNNING, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_demo_places_calls_and_prints_each_outcome_and_recording(sandbox_up, creds):
    result = dunning("demo", "--agents", "1", "--numbers", "2101,2202,2500")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "softphone registered" in out
    for line in ("dialing", "ringing", "answered", "bridged", "ended"):
        assert line in out
    table = out[out.index("number "):]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:4]}
    assert rows["2101"][1:3] == [sorted(creds.agent_passwords)[0], "answered"]
    assert rows["2202"][2] == "busy" and rows["2500"][2] == "congestion"
    assert "missing" not in rows["2101"], "both legs of the bridged call carry audio"
    assert "3 originates" in out
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
