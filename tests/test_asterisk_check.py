"""`dunning asterisk check` against Asterisks that lack something, played by the fake AMI
peer (tests/ami_peer.py) over real loopback TCP: each gap is a MISSING line and exit 1.
The real sandbox, which has everything, is checked in test_cli.py."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DUNNING = str(REPO / ".venv/bin/dunning")
AGENTS = ("6001", "6002", "6003")  # credentials.DEFAULT_AGENTS, made in the test's DUNNING_HOME


async def check(peer, tmp_path) -> tuple[int, str, str]:
    """Run the command as a user would, pointed at the peer as "your own Asterisk"."""
    env = {**os.environ, "DUNNING_HOME": str(tmp_path / "home"), "DUNNING_AMI_HOST": "127.0.0.1",
           "DUNNING_AMI_PORT": str(peer.port), "DUNNING_AMI_USERNAME": peer.username,
           "DUNNING_AMI_SECRET": peer.secret}
    proc = await asyncio.create_subprocess_exec(DUNNING, "asterisk", "check", "--timeout", "5", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def complete(peer):
    """The peer as an Asterisk with everything the engine needs (like the sandbox)."""
    peer.devices = {agent: "UNAVAILABLE" for agent in AGENTS}
    return peer


async def test_an_asterisk_with_everything_passes(complete, tmp_path):
    code, out, err = await check(complete, tmp_path)
    assert code == 0, out + err
    assert all(line.startswith("ok") for line in out.splitlines()), out
    assert "ok   dialplan context dunning-sim: 1 priorities" in out
    assert "not checked over AMI" in err and "app_stack" in err


def _missing_context(peer):
    peer.contexts.discard("dunning-sim")


def _too_wide(peer):
    peer.commands["Command"] = "command,all"
    peer.commands["Reload"] = "system,config,all"


def _no_mixmonitor(peer):
    del peer.commands["StopMixMonitor"]  # app_mixmonitor not loaded
    del peer.commands["MixMonitor"]


def _no_endpoint(peer):
    del peer.devices["6002"]  # dunning-pjsip.conf not included: DEVICE_STATE says INVALID


@pytest.mark.parametrize("breakage, line", [
    (_missing_context, "MISSING dialplan context dunning-sim: Did not find context dunning-sim"),
    (_too_wide, "MISSING permissions no wider than needed: the engine's AMI user may also Command, Reload"),
    (_no_mixmonitor, "MISSING action StopMixMonitor: not permitted or not loaded: app_mixmonitor is loaded"),
    (_no_endpoint, "MISSING agent endpoint PJSIP/6002: no such endpoint"),
])
async def test_each_gap_is_a_missing_line_and_exit_1(complete, tmp_path, breakage, line):
    breakage(complete)
    code, out, err = await check(complete, tmp_path)
    assert code == 1, out + err
    assert line in out, out
    missing = [text for text in out.splitlines() if not text.startswith("ok")]
    assert len(missing) == 1, out  # the rest of the list is still checked, and passes
    assert complete.secret not in out + err
