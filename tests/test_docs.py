"""The README documents every command and every setting (as datasette's docs tests do)."""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

import cli
from asterisk_conf import site

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands(group: click.Group, prefix: str = "dunning") -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        found += commands(command, path) if isinstance(command, click.Group) else [path]
    return found


@pytest.mark.parametrize("command", commands(cli.main))
def test_every_command_is_in_the_readme(command):
    assert command in README or command.replace("dunning demo", "scripts/demo") in README


def test_every_environment_setting_is_in_the_readme():
    names = set(re.findall(r"DUNNING_[A-Z_]+", Path(site.__file__).read_text()))
    assert names, "Site.from_env reads DUNNING_* variables"
    missing = sorted(n for n in names if n not in README)
    assert not missing


def test_the_readme_test_command_is_what_ci_runs():
    ci = (Path(__file__).resolve().parent.parent / ".ci/run").read_text()
    assert "sudo scripts/test" in README and "exec scripts/test" in ci
