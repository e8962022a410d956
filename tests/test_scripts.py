"""The README's two commands are idempotent: a second run of their set-up reuses what
exists. (`sandbox up` reusing a running sandbox is tested in tests/test_sandbox.py.)

Both scripts run here as `scripts/test` runs them, as root, after they already ran once for
this very test session; so whatever they would install again shows here."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / script)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_a_second_setup_installs_nothing():
    result = run("setup")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "==> installing" not in output, output     # no Debian package, venv or npm install
    assert output.strip().startswith("browser tests ready: "), output


def test_a_second_postgres_set_up_prints_the_same_url_and_nothing_else(user_home):
    # In the home scripts/test ran it with, where the password already is (so nothing is
    # written there): in the test's own empty home it would make a new password and set it
    # on the role, under the feet of the PostgreSQL tests of this and any other run.
    env = {"DUNNING_HOME": str(user_home)}
    first, second = run("postgres", env), run("postgres", env)
    assert first.returncode == second.returncode == 0, second.stderr
    assert first.stdout == second.stdout, "the same role, password and database"
    assert re.fullmatch(r"postgresql\+psycopg://dunning_test:\S+@127\.0\.0\.1:\d+/dunning_test\n", second.stdout)
