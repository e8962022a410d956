"""A campaign's compliance preset, chosen and overridden on the command line, is what
`dunning why` and `campaign status` apply."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

DUNNING = str(Path(__file__).resolve().parent.parent / ".venv/bin/dunning")


@pytest.fixture
def env(tmp_path):
    env = {**os.environ, "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path / 'presets.db'}"}
    batch = tmp_path / "b.csv"
    batch.write_text("案件编号,姓名,欠款金额,逾期天数,手机\nX1,李伟,100,3,+86 138-0013-8000\n", encoding="utf-8")
    assert run(env, "import", str(batch), "--client", "T").returncode == 0
    return env


def run(env, *args):
    return subprocess.run([DUNNING, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("preset, at, open_", [
    ("client", "2026-11-25T21:30:00+08:00", False),
    ("cn_national", "2026-11-25T21:30:00+08:00", True),       # the national standard allows until 22:00
    ("cn_national", "2026-11-25T22:00:00+08:00", False),
])
def test_the_preset_decides_the_window(env, preset, at, open_):
    created = run(env, "campaign", "create", "c", "--client", "T", "--preset", preset)
    assert created.returncode == 0, created.stderr
    why = run(env, "why", "13800138000", "--at", at)
    assert ("may be dialled now" in why.stdout) is open_, why.stdout
    assert f"rules: {preset}" in why.stdout


def test_overrides_apply_and_bad_ones_are_refused_naming_the_key(env):
    ok = run(env, "campaign", "create", "us", "--client", "T", "--preset", "us_fdcpa", "--timezone",
             "America/New_York", "--set", "window.end=20:30")
    assert ok.returncode == 0, ok.stderr
    why = run(env, "why", "X1", "--at", "2026-11-25T20:30:00-05:00")
    assert "calling window 08:00–20:30 is closed" in why.stdout
    bad = run(env, "campaign", "create", "bad", "--client", "T", "--set", "window.stop=20:30")
    assert bad.returncode == 1 and "override window.stop='20:30': unknown key" in bad.stderr
    malformed = run(env, "campaign", "create", "bad", "--client", "T", "--set", "window.end")
    assert malformed.returncode == 2 and "is not KEY=VALUE" in malformed.stderr
    unknown = run(env, "campaign", "create", "bad", "--client", "T", "--preset", "mars")
    assert unknown.returncode == 1 and "mars" in unknown.stderr


def test_an_unknown_recording_codec_is_refused_before_anything_is_dialled(env):
    assert run(env, "campaign", "create", "c", "--client", "T").returncode == 0
    bad = run({**env, "DUNNING_RECORDING_CODEC": "ogg"}, "run", "c", "--agents", "6001")
    assert bad.returncode == 1
    assert "DUNNING_RECORDING_CODEC: unknown recording codec 'ogg'" in bad.stderr
