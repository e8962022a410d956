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
import time
from collections import Counter

import pytest

from asterisk_conf import sandbox
from asterisk_conf.softphone import Softphone
from helpers import calls_up, check_the_floor, dial_lines, floor_campaign, floor_engine

pytestmark = [pytest.mark.asterisk, pytest.mark.softphone]


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


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_one_campaign_on_two_servers(database, sandbox_up, server_b, agents_on_both, tmp_path):
    env = floor_campaign(database, tmp_path, agents_on_both)
    before = {"A": dial_lines(sandbox_up), "B": dial_lines(server_b)}
    engines = {"A": floor_engine(env, "A", "6001,6002"), "B": floor_engine(env, "B", "6003")}
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
    found = check_the_floor(database, {"A": sandbox_up, "B": server_b}, before)
    assert set(Counter(a.server for a in found)) == {"A", "B"}, "both servers dialled"


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_server_killed_mid_campaign_loses_nothing(database, sandbox_up, server_b, agents_on_both, creds,
                                                     tmp_path):
    """Server B's Asterisk killed (`kill -9`) while it carries calls: A goes on and finishes
    the campaign; B's engine settles B's calls and stops dialling there; B brought back, its
    engine finds nothing left to take up; every attempt has an outcome, nothing was dialled
    twice (both Asterisks' own logs), every answered call is in the vault."""
    env = floor_campaign(database, tmp_path, agents_on_both)
    before = {"A": dial_lines(sandbox_up), "B": dial_lines(server_b)}
    engines = {"A": floor_engine(env, "A", "6001,6002"), "B": floor_engine(env, "B", "6003")}
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
    found = check_the_floor(database, {"A": sandbox_up, "B": server_b}, before)
    # The calls B carried say they were cut, and end when B went, not when its loss was declared.
    cut = [a for a in found if a.server == "B" and a.note and "cut" in a.note]
    assert cut, [(a.call_id, a.outcome, a.note) for a in found if a.server == "B"]
    for a in cut:
        assert abs((a.ended_at - killed_at).total_seconds()) <= 3, (a.call_id, a.ended_at, killed_at, a.note)
