"""The documentation — README.md, the front door, and the guides in docs/ — documents every
command and every setting (as datasette's docs tests do), its links and anchors lead somewhere,
and every `dunning` command it shows names a command and options that exist."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

import cli
from asterisk_conf import site

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = PAGES[0].read_text()
DOCS = "\n".join(page.read_text() for page in PAGES)


def commands(group: click.Group, prefix: str = "dunning") -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        found += commands(command, path) if isinstance(command, click.Group) else [path]
    return found


def prose_and_code(page: Path) -> tuple[list[str], list[str]]:
    """The page's lines outside fenced code blocks, and the lines inside them."""
    prose, code, fenced = [], [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            prose.append(line)
    return prose, code


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = prose_and_code(page)
    return {anchor(line.lstrip("#")) for line in prose if re.match(r"#{1,6} ", line)}


def links(page: Path) -> list[str]:
    prose, _ = prose_and_code(page)
    return [target for line in prose for target in re.findall(r"\]\(([^)\s]+)\)", line)
            if not re.match(r"[a-z]+:", target)]


def shown_commands(page: Path) -> list[str]:
    """Each `dunning …` line of the page's code blocks (continuations joined, `$ ` dropped)."""
    _, code = prose_and_code(page)
    joined, found = "", []
    for line in code:
        joined += line.rstrip().removesuffix("\\")
        if line.rstrip().endswith("\\"):
            continue
        text = joined.strip().removeprefix("$ ")
        joined = ""
        if text.startswith("dunning "):
            found.append(text)
    return found


@pytest.mark.parametrize("command", commands(cli.main))
def test_every_command_is_in_the_docs(command):
    assert command in DOCS or command.replace("dunning demo", "scripts/demo") in DOCS


def test_every_environment_setting_is_in_the_docs():
    names = set(re.findall(r"DUNNING_[A-Z_]+", Path(site.__file__).read_text()))
    assert names, "Site.from_env reads DUNNING_* variables"
    missing = sorted(n for n in names if n not in DOCS)
    assert not missing


def test_the_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci/run").read_text()
    assert "sudo scripts/test" in README and "exec scripts/test" in ci


def test_the_readme_links_to_every_guide():
    guides = {page.relative_to(ROOT).as_posix() for page in PAGES[1:]}
    assert guides, "the guides are in docs/"
    linked = {target.split("#")[0] for target in links(PAGES[0])}
    assert not sorted(guides - linked)


def test_every_link_and_anchor_leads_somewhere():
    followed, broken = 0, []
    for page in PAGES:
        for target in links(page):
            path, _, fragment = target.partition("#")
            where = (page.parent / path).resolve() if path else page
            followed += 1
            if not where.exists():
                broken.append(f"{page.name}: {target}: no file {where.relative_to(ROOT)}")
            elif fragment and fragment not in anchors(where):
                broken.append(f"{page.name}: {target}: no heading #{fragment} in {where.name}")
    assert followed > 20, "the pages link to each other and to the screenshots"
    assert not broken


def resolve(text: str) -> tuple[click.Command, str, list[str]]:
    """The command a shown `dunning …` line runs, its name, and the options the line gives."""
    words = shlex.split(text.split("  #")[0], posix=True)
    command, path = cli.main, ["dunning"]
    for word in words[1:]:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command, path = command.commands[word], path + [word]
    given = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", " ".join(words[len(path):]))
    return command, " ".join(path), given


def test_every_command_shown_exists_with_the_options_shown():
    shown = [(page.name, text) for page in PAGES for text in shown_commands(page)]
    assert len(shown) > 50, "the docs show the commands as a user types them"
    wrong = []
    for page, text in shown:
        command, name, given = resolve(text)
        if isinstance(command, click.Group):
            wrong.append(f"{page}: {text!r}: {name} is a group, not a command")
            continue
        options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        wrong += [f"{page}: {text!r}: {name} has no option {option}"
                  for option in given if option not in options | {"--help"}]
    assert not wrong
