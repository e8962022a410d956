"""Moving a call's recording out of Asterisk's spool into the recordings directory.

Each leg file is copied to ``<recordings>/<YYYY>/<MM>/<DD>/<attempt>-<leg>.wav`` through a
temporary file that is fsynced and then renamed, so a crash leaves either nothing or a
whole file; the stored file is made read-only and its SHA-256 recorded. Only once every
leg is safely stored is the spool copy removed. Storing the same call again changes
nothing (same name, same checksum); a different file under an existing name is refused.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .legs import leg_files


class RecordingConflict(RuntimeError):
    """A stored recording would be overwritten with different content."""


class RecordingMissing(RuntimeError):
    """Asterisk left no recording for a call that was answered."""


@dataclass(frozen=True)
class StoredFile:
    leg: str
    relative_path: str
    sha256: str
    bytes: int
    seconds: float


def sha256_of(path: Path, on_block: Callable[[int], None] | None = None) -> str:
    """The file's SHA-256, read in 1 MiB blocks; `on_block(size)` after each (progress)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            if on_block is not None:
                on_block(len(block))
    return digest.hexdigest()


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / float(w.getframerate() or 1)


def close_unclosed(path: Path) -> bool:
    """Give a WAV file that Asterisk never closed its true sizes. MixMonitor writes the RIFF
    and data sizes when it closes the file; an Asterisk killed (or its machine lost) during
    the call leaves them 0, which no reader accepts, with the audio it wrote behind them. The
    sizes are set from the file's length (whole sample frames only); the audio is untouched.
    Returns whether the header was rewritten (a file that is not a WAV is left alone)."""
    import struct
    with open(path, "r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        size = os.fstat(f.fileno()).st_size
        offset, block_align, data_at = 12, 1, None
        while offset + 8 <= size:
            f.seek(offset)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"fmt ":
                fmt = f.read(16)
                block_align = max(1, struct.unpack("<H", fmt[12:14])[0]) if len(fmt) == 16 else 1
            if chunk == b"data":
                data_at = offset
                break
            offset += 8 + length + (length & 1)
        if data_at is None:
            return False
        data = size - data_at - 8
        data -= data % block_align
        riff = data_at + 8 + data - 8
        f.seek(4)
        if struct.unpack("<I", f.read(4))[0] == riff:
            f.seek(data_at + 4)
            if struct.unpack("<I", f.read(4))[0] == data:
                return False
        f.seek(4)
        f.write(struct.pack("<I", riff))
        f.seek(data_at + 4)
        f.write(struct.pack("<I", data))
        f.flush()
        os.fsync(f.fileno())
    return True


def fsync_path(path: Path) -> None:
    """Make a file's data, or a directory's entries, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """`mkdir -p`, durably: each directory created is fsynced into its parent, so a crash
    cannot lose a new day's folder (and the files already published in it)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_path(new.parent)


def _store_one(source: Path, target: Path) -> str:
    checksum = sha256_of(source)
    if target.exists():
        if sha256_of(target) != checksum:
            raise RecordingConflict(f"{target} exists with other content; not overwritten")
        return checksum
    make_dirs(target.parent)
    tmp = target.with_name(f".{target.name}.partial")
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    if sha256_of(tmp) != checksum:
        tmp.unlink()
        raise RecordingConflict(f"copy of {source} does not match its checksum")
    os.chmod(tmp, 0o444)
    os.replace(tmp, target)
    fsync_path(target.parent)
    return checksum


def store_call(spool: Path, root: Path, attempt: str, recorded_at: dt.datetime) -> list[StoredFile]:
    """Store every leg of `attempt`'s recording under `root`; remove the spool copies."""
    sources = leg_files(spool, attempt)
    day = recorded_at.astimezone(dt.timezone.utc).strftime("%Y/%m/%d")
    stored: list[StoredFile] = []
    for leg, source in sources.items():
        relative = f"{day}/{attempt}-{leg}.wav"
        target = root / relative
        if not source.exists():
            if target.exists():  # stored by an earlier, interrupted run
                source = target
            else:
                raise RecordingMissing(f"no {leg} recording for {attempt} in {spool}")
        if source.parent == spool:
            close_unclosed(source)  # left open by an Asterisk that went away during the call
        checksum = _store_one(source, target)
        stored.append(StoredFile(leg, relative, checksum, target.stat().st_size, wav_seconds(target)))
    for source in sources.values():
        if source.exists() and source.parent == spool:
            source.unlink()
    return stored
