"""The softphone wrapper's own rules, with a stand-in for baresip (pure: no Asterisk).
Real baresip calls are in test_sandbox_calls.py."""
from __future__ import annotations

import pytest

from asterisk_conf.softphone import Softphone, SoftphoneError

PASSWORD = "pw-6001-long-enough"


def test_a_failed_registration_does_not_put_the_password_in_the_error(tmp_path, monkeypatch):
    """baresip echoes the account line, auth_pass included; the error quotes baresip's last
    lines, so they are scrubbed first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "baresip"
    fake.write_text(
        "#!/bin/sh\n"
        'echo "baresip v1.0.0 Copyright (C) 2010 - 2020 Alfred E. Heggestad et al."\n'
        'echo "Populated 1 account"\n'
        f'echo "account: <sip:6001@127.0.0.1:5060;transport=udp>;auth_pass={PASSWORD};answermode=auto"\n'
        f'echo "6001@127.0.0.1: password {PASSWORD} refused"\n'
        'echo "reg: sip:6001@127.0.0.1: 401 Unauthorized, registration failed"\n'
        "sleep 5\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    phone = Softphone("6001", PASSWORD, says=tmp_path / "says.wav", workdir=tmp_path / "phone")
    with pytest.raises(SoftphoneError, match="did not register") as raised:
        phone.start(timeout=5)
    message = str(raised.value)
    assert PASSWORD not in message
    assert "auth_pass=***" in message and "registration failed" in message
    assert not phone.running


def test_scrubbing_masks_any_auth_pass_and_leaves_other_lines_alone(tmp_path):
    phone = Softphone("6001", PASSWORD, says=tmp_path / "says.wav", workdir=tmp_path / "phone")
    lines = ["<sip:6002@h>;auth_pass=someone-elses-secret;regint=300", "200 OK"]
    assert phone.scrubbed(lines) == ["<sip:6002@h>;auth_pass=***;regint=300", "200 OK"]
