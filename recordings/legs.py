"""The recording of one answered call as Asterisk leaves it, leg by leg.

The dialplan (``dunning-answered``) runs MixMonitor on the half of the Local channel that
faces the debtor, writing ``<attempt>.wav`` (both directions mixed),
``<attempt>-debtor.wav`` (what the debtor says) and ``<attempt>-agent.wav`` (what the
agent says), 8 kHz mono 16-bit.
"""
from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pydub import AudioSegment

LEGS = ("agent", "debtor")
#: A leg quieter than this over the whole call carries no speech (line noise is far below).
SILENCE_DBFS = -55.0


def leg_files(spool: Path, attempt: str) -> dict[str, Path]:
    return {"mix": spool / f"{attempt}.wav",
            **{leg: spool / f"{attempt}-{leg}.wav" for leg in LEGS}}


@dataclass(frozen=True)
class LegLevels:
    """Loudness (dBFS) and length of each leg; -inf for a silent or missing leg (a missing
    leg also has length -1)."""

    agent_dbfs: float
    debtor_dbfs: float
    agent_seconds: float
    debtor_seconds: float

    def has_audio(self, leg: str) -> bool:
        return getattr(self, f"{leg}_dbfs") > SILENCE_DBFS

    @property
    def complete(self) -> bool:
        return all(self.has_audio(leg) for leg in LEGS)

    def describe(self) -> str:
        def one(leg: str) -> str:
            dbfs = getattr(self, f"{leg}_dbfs")
            if getattr(self, f"{leg}_seconds") < 0:
                return "missing"
            return "silent" if not self.has_audio(leg) else f"{dbfs:.0f}"
        return f"{one('agent')} / {one('debtor')} ({self.debtor_seconds:.1f} s)"


def measure(spool: Path, attempt: str) -> LegLevels:
    files = leg_files(spool, attempt)
    values: dict[str, float] = {}
    for leg in LEGS:
        path = files[leg]
        if not path.exists():
            values[f"{leg}_dbfs"], values[f"{leg}_seconds"] = -math.inf, -1.0
            continue
        if path.stat().st_size <= 44:  # a WAV header and no audio
            values[f"{leg}_dbfs"], values[f"{leg}_seconds"] = -math.inf, 0.0
            continue
        audio = AudioSegment.from_wav(path)
        values[f"{leg}_dbfs"], values[f"{leg}_seconds"] = audio.dBFS, audio.duration_seconds
    return LegLevels(**values)


async def leg_levels(spool: Path, attempt: str, settle_s: float = 0.5, timeout_s: float = 10.0) -> LegLevels:
    """Measure once MixMonitor has finished writing (file sizes stable for `settle_s`)."""
    files = list(leg_files(spool, attempt).values())
    deadline = time.monotonic() + timeout_s
    last: tuple[int, ...] | None = None
    while time.monotonic() < deadline:
        sizes = tuple(os.path.getsize(p) if p.exists() else -1 for p in files)
        if sizes == last and min(sizes) > 0:
            break
        last = sizes
        await asyncio.sleep(settle_s)
    return await asyncio.to_thread(measure, spool, attempt)
