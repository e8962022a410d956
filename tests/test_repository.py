"""The repository stands on its own: no code, test, script or benchmark reaches outside it
for its data (the `../shared` folder beside the clone the project started from is not part
of a clone), and the speech clips the tests use live in tests/audio with their sources and
licences, exactly those and no others."""
from __future__ import annotations

import ast
import csv
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AUDIO = REPO / "tests" / "audio"
#: Not the project's files: environments, caches, vendored packages; docs/ holds screenshots.
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis", "build", "var",
             "docs"}
#: Text files that are code, configuration or scripts (Markdown is documentation, and may name
#: where a fact came from, such as ../shared/models/SOURCES.md).
TEXT_SUFFIXES = {".sh", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".js", ".mjs", ".cjs", ".json", ".html",
                 ".sql", ".mako", ".tsv", ".csv"}
#: A path to `shared` outside the repository, written out: ../shared, ../../shared, the
#: absolute /work/shared, or "..", "shared" as separate parts of a join.
OUTSIDE = re.compile(r"\.\.[/\\]+(?:\.\.[/\\]+)*shared\b|/work/shared\b|['\"]\.\.['\"]\s*,\s*['\"]shared\b")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _shared_part(node: ast.AST) -> bool:
    """A string whose first path part is `shared` ("shared", "shared/audio")."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and re.split(r"[/\\]", node.value, maxsplit=1)[0] == "shared")


def python_reaches(source: str) -> list[int]:
    """Lines of Python code (not comments, not docstrings) that build a path to `shared` outside
    the repository: a string naming ../shared, `<path> / "shared"` (as after
    `Path(__file__).parent.parent.parent` or `REPO.parent`), or `shared` joined after "..".
    Nothing in the repository is called `shared`, so a path part `shared` can only lead out."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    lines = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and OUTSIDE.search(node.value)):
            lines.add(node.lineno)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _shared_part(node.right):
            lines.add(node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if any(_shared_part(arg) for arg in node.args) and (
                    name in {"join", "joinpath", "Path", "PurePath", "PosixPath"}
                    or any(isinstance(arg, ast.Constant) and arg.value == ".." for arg in node.args)):
                lines.add(node.lineno)
    return sorted(lines)


def text_reaches(source: str) -> list[int]:
    """Lines of a script or configuration file, comments aside, that name ../shared."""
    return [n for n, line in enumerate(source.splitlines(), 1)
            if not line.lstrip().startswith(("#", "//")) and OUTSIDE.search(line)]


def project_files() -> list[Path]:
    """The project's code, tests, scripts, benchmarks and configuration."""
    found = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        here = Path(folder)
        for name in sorted(files):
            path = here / name
            relative = path.relative_to(REPO)
            script = relative.parts[0] in {"scripts", ".ci"} and path.suffix == ""
            if path.suffix == ".py" or path.suffix in TEXT_SUFFIXES or script:
                found.append(path)
    return found


def reaches_outside(path: Path) -> list[int]:
    source = path.read_text(errors="replace")
    return python_reaches(source) if path.suffix == ".py" else text_reaches(source)


def test_nothing_reaches_outside_the_repository_for_shared_data():
    files = project_files()
    relative = {p.relative_to(REPO).as_posix() for p in files}
    assert {"tests/conftest.py", "bench/codecs.py", "scripts/test", "cli.py"} <= relative, "the scan sees the project"
    found = []
    for path in files:
        if path == Path(__file__).resolve():
            continue  # this file's own examples of what the scan finds
        lines = path.read_text(errors="replace").splitlines()
        found += [f"{path.relative_to(REPO)}:{n}: {lines[n - 1].strip()}" for n in reaches_outside(path)]
    assert not found, ("paths outside the repository (a clone has nothing beside it; put the data in the "
                       "repository, e.g. tests/audio):\n" + "\n".join(found))


@pytest.mark.parametrize("code", [
    'AUDIO = Path(__file__).resolve().parent.parent.parent / "shared" / "audio"',
    'SHARED_AUDIO = REPO.parent / "shared" / "audio"',
    'clip = Path("../shared/audio/en-librivox-8k-001.wav")',
    'folder = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "audio")',
    'folder = REPO.parent.joinpath("shared/audio")',
    'folder = f"{REPO}/../shared/audio"',
])
def test_the_scan_finds_each_way_of_writing_such_a_path(code):
    assert python_reaches(f"from pathlib import Path\n\n{code}\n") == [3]


def test_the_scan_leaves_comments_docstrings_and_paths_inside_alone():
    source = ('"""Clips like those in ../shared/audio."""\n'
              "# the client's rules (../shared/DOMAIN.md)\n"
              'AUDIO = Path(__file__).resolve().parent / "audio"\n'
              'mode = "shared_buffers"\n')
    assert python_reaches(source) == []
    assert text_reaches("# see ../shared/audio\nclips=tests/audio\n") == []
    assert text_reaches("clips=../shared/audio\n") == [1]


def _rows() -> dict[str, dict[str, str]]:
    with open(AUDIO / "transcripts.tsv", encoding="utf-8", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle, delimiter="\t")}


def test_each_clip_in_tests_audio_has_its_source_licence_and_transcript():
    clips = sorted(p.name for p in AUDIO.glob("*.wav"))
    rows = _rows()
    assert clips and sorted(rows) == clips, "one row of transcripts.tsv per clip, and a clip per row"
    for name, row in rows.items():
        assert row["source"].strip() and row["license"].strip() and row["reference_transcript"].strip(), name
    if any("Apache" in row["license"] for row in rows.values()):
        assert "Apache License" in (AUDIO / "LICENSE-Apache-2.0").read_text()
    readme = (AUDIO / "README.md").read_text()
    assert all(name in readme for name in clips), "tests/audio/README.md names each clip"


def test_tests_audio_holds_exactly_the_clips_the_tests_use():
    named = set()
    for path in (REPO / "tests").glob("*.py"):
        if path == Path(__file__).resolve():
            continue  # its examples name a clip
        named |= set(re.findall(r"[a-z]{2}-[a-z0-9-]+-\d+k-\d{3}\.wav", path.read_text()))
    on_disk = {p.name for p in AUDIO.glob("*.wav")}
    assert named, "the tests name their clips"
    assert not named - on_disk, f"clips the tests use but tests/audio lacks: {sorted(named - on_disk)}"
    assert not on_disk - named, f"clips no test uses (keep the repository small): {sorted(on_disk - named)}"
