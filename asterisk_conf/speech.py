"""Spoken sound files made on the host: espeak-ng speech, resampled by sox to 8 kHz
mono 16-bit WAV (what Asterisk and the softphones play without transcoding)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class SpeechToolMissing(RuntimeError):
    pass


def speak(text: str, target: Path, voice: str = "en", words_per_minute: int = 150) -> Path:
    """Write `text` as speech to `target` (8 kHz mono WAV) unless it already exists."""
    if target.exists():
        return target
    for tool in ("espeak-ng", "sox"):
        if not shutil.which(tool):
            raise SpeechToolMissing(f"{tool} is not installed: `apt-get install {tool}`")
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_name(f".{target.stem}.raw.wav")
    tmp = target.with_name(f".{target.stem}.tmp.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text],
                   check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(tmp)],
                   check=True, capture_output=True)
    raw.unlink()
    os.replace(tmp, target)
    return target



def synth(target: Path, *effect: str) -> Path:
    """Write what sox's synth makes (`effect`: its arguments, e.g. "0.5", "sine", "1000") to
    `target` (8 kHz mono WAV) unless it exists: a voicemail's beep, a line's faint noise."""
    if target.exists():
        return target
    if not shutil.which("sox"):
        raise SpeechToolMissing("sox is not installed: `apt-get install sox`")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp.wav")
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(tmp), "synth", *effect],
                   check=True, capture_output=True)
    os.replace(tmp, target)
    return target
