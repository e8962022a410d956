"""The sandbox commands' early checks and `asterisk config --out`, without the sandbox
(pure: no root, no chroot, no Asterisk). tests/test_sandbox.py runs the same commands
against the real sandbox."""
from __future__ import annotations

import os
import socket
import wave

import pytest
from click.testing import CliRunner

from asterisk_conf import sandbox
from asterisk_conf.site import Site


@pytest.fixture
def not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 65534)


def dunning(*args: str, env: dict[str, str] | None = None):
    from cli import main
    return CliRunner().invoke(main, list(args), env=env)


@pytest.mark.parametrize("args", [("status",), ("cli", "core", "show", "version")])
def test_status_and_cli_refuse_without_root(not_root, tmp_path, args):
    """Without root the sandbox's Asterisk cannot be seen (/proc/PID/root), so `status`
    would say "not running" while it runs: both commands refuse instead."""
    (tmp_path / "cache/sid-asterisk").mkdir(parents=True)
    result = dunning("asterisk", "sandbox", *args, env={"DUNNING_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 1, result.output
    assert "needs root" in result.stderr
    assert "running: no" not in result.output and "not running" not in result.output


def test_status_refuses_without_root_as_a_library_call_too(not_root, tmp_path):
    with pytest.raises(sandbox.SandboxError, match="needs root"):
        sandbox.status(Site(home=tmp_path / "home", cache=tmp_path / "cache"))


def test_port_probe_sees_a_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert sandbox.port_in_use(port, socket.SOCK_STREAM)
    assert not sandbox.port_in_use(port, socket.SOCK_STREAM)


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_port_probe_sees_a_udp_holder_that_allows_address_reuse(tmp_path):
    """A SIP stack may set SO_REUSEADDR on its UDP socket; a probe that set it too would
    share the port instead of finding it taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert sandbox.port_in_use(port, socket.SOCK_DGRAM)
        site = Site(home=tmp_path / "home", cache=tmp_path / "cache", ami_port=_free_tcp_port(), sip_port=port)
        with pytest.raises(sandbox.SandboxError, match=rf"port {port}/udp on 127\.0\.0\.1 is taken"):
            sandbox.require_free_ports(site)
    assert not sandbox.port_in_use(port, socket.SOCK_DGRAM)


def test_config_out_writes_the_prompts_the_dialplan_plays(tmp_path):
    out = tmp_path / "conf"
    result = dunning("asterisk", "config", "--out", str(out), env={"DUNNING_HOME": str(tmp_path / "home")})
    assert result.exit_code == 0, result.output
    extensions = (out / "dunning-extensions.conf").read_text()
    for name in sandbox.PROMPTS:
        assert f"dunning/{name})" in extensions  # Playback(dunning/<name>)
        with wave.open(str(out / "sounds" / f"{name}.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            assert w.getnframes() > 8000  # more than a second of speech
    from campaigns.amd import preset_messages
    made = {p.name for p in (out / "sounds").iterdir()}
    # The prompts, each shipped preset's answering-machine message, the simulated network's
    # greetings, hellos, beep and line noise (its dunning-sim context is in the file too)...
    assert made == {"debtor-voice.wav", "no-agent.wav", *(f"{m}.wav" for m in preset_messages()),
                    *(f"sim-machine-{i}.wav" for i in range(len(sandbox.SIM_MACHINES))),
                    *(f"sim-hello-{i}.wav" for i in range(len(sandbox.SIM_HELLOS))), "sim-beep.wav", "sim-line.wav",
                    sandbox.MOH_DIR}
    # ... and the sandbox's music on hold (its default class: a debtor on hold during a transfer).
    with wave.open(str(out / "sounds" / sandbox.MOH_DIR / "hold.wav")) as w:
        assert w.getframerate() == 8000 and w.getnframes() > 8000 * 10
    assert f"wrote {out / 'sounds' / 'no-agent.wav'}" in result.output
    assert f"cp {out / 'sounds'}/*.wav /usr/share/asterisk/sounds/dunning/" in result.output
    for conf in out.glob("*.conf"):
        assert conf.stat().st_mode & 0o777 == 0o600
