"""The sandbox lifecycle against the real chroot and the real Asterisk (root).
The checks that need neither are in test_sandbox_guards.py."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from asterisk_conf import sandbox
from asterisk_conf.site import Site

REPO = Path(__file__).resolve().parent.parent
DUNNING = str(REPO / ".venv/bin/dunning")

pytestmark = pytest.mark.asterisk


def run(*args, env=None, user=None):
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if user else []
    return subprocess.run(prefix + [DUNNING, *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_status_reports_running_version_and_mounts(sandbox_up):
    result = run("asterisk", "sandbox", "status")
    assert result.returncode == 0, result.stderr
    assert "running: yes" in result.stdout
    assert "Asterisk 22." in result.stdout
    assert "/proc" in result.stdout and "/dev" in result.stdout


def test_second_up_reuses_the_running_sandbox(sandbox_up):
    before = sandbox.running_pid(sandbox_up)
    result = run("asterisk", "sandbox", "up")
    assert result.returncode == 0, result.stderr
    assert "FullyBooted" in result.stdout
    assert "building" not in result.stdout and "starting" not in result.stdout
    assert sandbox.running_pid(sandbox_up) == before


def test_cli_runs_an_asterisk_command(sandbox_up):
    result = run("asterisk", "sandbox", "cli", "core", "show", "version")
    assert result.returncode == 0
    assert result.stdout.startswith("Asterisk 22.")


def test_not_root_is_refused_with_a_clear_error(sandbox_up):
    result = run("asterisk", "sandbox", "up", user="nobody")
    assert result.returncode == 1
    assert "needs root" in result.stderr


@pytest.mark.parametrize("args", [("status",), ("cli", "core", "show", "version")])
def test_status_and_cli_as_not_root_refuse_instead_of_saying_not_running(sandbox_up, args):
    """The sandbox runs, but without root its process cannot be told apart."""
    result = run("asterisk", "sandbox", *args, user="nobody")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "needs root" in result.stderr
    assert "running: no" not in result.stdout and "not running" not in result.stderr


def test_unreachable_registry_is_a_clear_error(tmp_path):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DUNNING_HOME": str(tmp_path / "home"),
           "DUNNING_CACHE": str(tmp_path / "cache"),
           "DUNNING_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}
    result = run("asterisk", "sandbox", "up", env=env)
    assert result.returncode == 1
    assert "cannot reach the Debian package registry at http://127.0.0.1:9/debian" in result.stderr
    assert not (tmp_path / "cache/sid-asterisk").exists()


def test_taken_port_is_a_clear_error(sandbox_up, tmp_path):
    """A second sandbox (another cache) cannot start while the first holds port 5038;
    it says which port, and starts nothing."""
    other = Site(home=tmp_path / "home", cache=tmp_path / "cache")
    root = other.sandbox_root
    (root / "etc/asterisk").mkdir(parents=True)
    (root / sandbox.READY_MARK).write_text("test: an already-built root\n")
    from asterisk_conf import credentials
    with pytest.raises(sandbox.SandboxError, match=r"port 5038/tcp"):
        sandbox.up(other, credentials.load_or_create(other.home), say=lambda _: None)
    assert sandbox.running_pid(other) is None
    assert sandbox._mounts_under(root) == []


def test_down_stops_and_unmounts_then_up_again(sandbox_up):
    run("asterisk", "sandbox", "down")
    status = sandbox.status(sandbox_up)
    assert not status.running
    assert status.mounts == ()
    assert run("asterisk", "sandbox", "status").returncode == 3
    started = time.monotonic()
    result = run("asterisk", "sandbox", "up")
    assert result.returncode == 0, result.stderr
    assert sandbox.status(sandbox_up).running
    print(f"sandbox up from stopped: {time.monotonic() - started:.1f} s")


def test_config_out_writes_private_include_files(sandbox_up, tmp_path):
    out = tmp_path / "conf"
    result = run("asterisk", "config", "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == ["dunning-cel.conf", "dunning-cel.logrotate", "dunning-cel_custom.conf", "dunning-extensions.conf",
                     "dunning-manager.conf", "dunning-pjsip.conf"]
    assert "size " in (out / "dunning-cel.logrotate").read_text()
    for path in out.glob("*.conf"):
        assert path.stat().st_mode & 0o777 == 0o600
    # The prompts among the sounds (the whole set: test_sandbox_guards).
    assert {"debtor-voice.wav", "no-agent.wav"} <= {p.name for p in (out / "sounds").iterdir()}
    assert "[dunning-outbound]" in (out / "dunning-extensions.conf").read_text()
