"""Speech-to-text of a stored call: Vosk on each leg separately, speech only.

The vault file is split into its channels (left = agent, right = debtor); each leg is
recognised at the recording's own rate. Silence is skipped: `speech_spans` finds the spans
that carry sound (pydub's ``detect_nonsilent``, padded a little so no word is clipped), and
only those are fed to the leg's recogniser, one after the other with a short gap between
them; the word times Vosk gives (in the audio it was fed) are mapped back to offsets in the
recording (`Timeline`). A call costs in proportion to its speech, and every word keeps its
offset from the start of the recording. Every word keeps Vosk's timing and confidence (``SetWords(True)``).

The model is loaded with Kaldi's dithering turned off (`without_dither`): with it on, Vosk
adds random noise to the samples and gives different words for the same recording from one
run to the next, which a transcript used as evidence must not do.

Blocking and CPU-bound: run it in worker processes (``recordings.transcripts.run_workers``),
never on the engine's event loop.
"""
from __future__ import annotations

import bisect
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydub import AudioSegment
from pydub.silence import detect_nonsilent

from .codecs import channels, decode
from .transcript import Transcript, Utterance, Word, join_words, merge

#: Quieter than this (dBFS, RMS over `MIN_SILENCE_MS`) is silence: telephone line noise is
#: far below, the quietest speech on a call well above.
SILENCE_DBFS = -45.0
#: A pause shorter than this stays inside a span (Vosk gets the whole phrase).
MIN_SILENCE_MS = 500
#: Sound kept before and after each span, so that soft word onsets and endings are heard.
PAD_MS = 300
#: Step of the silence search (1 ms, pydub's default, costs ~10x more for nothing).
SEEK_MS = 10
#: Silence put after each span fed to Vosk, so that it ends the utterance there.
GAP_MS = 600
#: Samples handed to Vosk at once.
CHUNK_FRAMES = 4000


def without_dither(model: Path, work: Path) -> Path:
    """A view of `model` in `work` with Kaldi's dithering off (``--dither=0`` appended to
    ``conf/mfcc.conf``; every other part is a symbolic link). With dithering on (the setting
    models ship with) Vosk gives different words for the same samples from run to run."""
    copy = Path(work) / "model"
    copy.mkdir()
    for part in Path(model).iterdir():
        if part.name != "conf":
            (copy / part.name).symlink_to(part.resolve())
    shutil.copytree(Path(model) / "conf", copy / "conf")
    with open(copy / "conf" / "mfcc.conf", "a") as conf:
        conf.write("\n--dither=0\n")
    return copy


def load_model(path: Path, deterministic: bool = True):
    """A ``vosk.Model`` (2-3 s and ~600 MB for the Korean small model: load it once per
    process). `deterministic` turns dithering off (see `without_dither`)."""
    import vosk
    vosk.SetLogLevel(-1)
    from .speech_models import check_layout
    check_layout(Path(path))
    if not deterministic:
        return vosk.Model(str(path))
    with tempfile.TemporaryDirectory(prefix="dunning-model-") as work:
        return vosk.Model(str(without_dither(Path(path), Path(work))))  # read whole at load time


def speech_spans(leg: AudioSegment, silence_dbfs: float = SILENCE_DBFS, min_silence_ms: int = MIN_SILENCE_MS,
                 pad_ms: int = PAD_MS) -> list[tuple[int, int]]:
    """The parts of `leg` that carry sound, in milliseconds, padded by `pad_ms` each side
    and merged where they touch."""
    spans = detect_nonsilent(leg, min_silence_len=min_silence_ms, silence_thresh=silence_dbfs, seek_step=SEEK_MS)
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        start, end = max(0, start - pad_ms), min(len(leg), end + pad_ms)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _utterance(result: dict, leg: str, language: str, to_call: Callable[[float], float]) -> Utterance | None:
    words = tuple(Word(w["word"], round(to_call(w["start"]), 3), round(to_call(w["end"]), 3), round(w["conf"], 4))
                  for w in result.get("result", ()))
    if not words:
        return None
    return Utterance(leg, words[0].start, words[-1].end, join_words([w.text for w in words], language), words)


def recognise(model, audio: AudioSegment, leg: str, language: str,
              spans: Sequence[tuple[int, int]] | None = None) -> list[Utterance]:
    """Vosk on one leg (mono) at its own rate: the whole of it, or only `spans` (ms).

    One recogniser hears the spans one after the other, each followed by `GAP_MS` of
    silence so that Vosk ends the utterance there; it keeps adapting to the speaker across
    spans (a fresh recogniser per span decodes about twice as slowly). Vosk's times are in
    the audio it was fed; `Timeline` maps them back to offsets in the recording."""
    import vosk
    recognizer = vosk.KaldiRecognizer(model, audio.frame_rate)
    recognizer.SetWords(True)
    mono = audio.set_channels(1).set_sample_width(2)
    spans = [(0, len(mono))] if spans is None else list(spans)
    timeline = Timeline()
    gap = b"\0\0" * int(mono.frame_rate * GAP_MS / 1000)
    step = CHUNK_FRAMES * 2
    results = []
    for start, end in spans:
        data = mono[start:end].raw_data
        timeline.add(start / 1000, len(data) / 2 / mono.frame_rate)
        timeline.add(None, len(gap) / 2 / mono.frame_rate)
        data += gap
        for at in range(0, len(data), step):
            if recognizer.AcceptWaveform(data[at:at + step]):
                results.append(json.loads(recognizer.Result()))
    results.append(json.loads(recognizer.FinalResult()))
    return [u for u in (_utterance(r, leg, language, timeline.to_call) for r in results) if u is not None]


class Timeline:
    """Where each stretch of the audio fed to Vosk came from in the recording."""

    def __init__(self) -> None:
        self.pieces: list[tuple[float, float | None, float]] = []  # (fed start, call start or None, length)
        self.fed = 0.0

    def add(self, call_start: float | None, seconds: float) -> None:
        self.pieces.append((self.fed, call_start, seconds))
        self.fed += seconds

    def to_call(self, fed: float) -> float:
        """The recording's offset of a time in the fed audio (a time inside an inserted gap
        is put at the end of the span before it)."""
        index = max(0, bisect.bisect_right([p[0] for p in self.pieces], fed) - 1)
        while index > 0 and self.pieces[index][1] is None:
            index -= 1
            fed = self.pieces[index][0] + self.pieces[index][2]
        start, call_start, length = self.pieces[index]
        return (call_start or 0.0) + min(max(fed - start, 0.0), length)


@dataclass(frozen=True)
class LegResult:
    utterances: list[Utterance]
    audio_seconds: float
    speech_seconds: float  # what was fed to the recogniser


def transcribe_leg(model, audio: AudioSegment, leg: str, language: str, skip_silence: bool = True) -> LegResult:
    if not skip_silence:
        return LegResult(recognise(model, audio, leg, language), audio.duration_seconds, audio.duration_seconds)
    spans = speech_spans(audio)
    utterances = recognise(model, audio, leg, language, spans) if spans else []
    return LegResult(utterances, audio.duration_seconds, sum(end - start for start, end in spans) / 1000)


@dataclass(frozen=True)
class Transcribed:
    transcript: Transcript
    audio_seconds: float  # both legs
    speech_seconds: float  # both legs, what the recogniser was given
    cpu_seconds: float  # this process's CPU time for decoding and recognition


def transcribe_audio(model, stereo: AudioSegment, language: str, skip_silence: bool = True) -> Transcribed:
    """A stereo call (left = agent, right = debtor) as a Transcript, each leg on its own."""
    cpu = time.process_time()
    legs = [transcribe_leg(model, audio, leg, language, skip_silence) for leg, audio in channels(stereo).items()]
    return Transcribed(merge([u for r in legs for u in r.utterances], language),
                       sum(r.audio_seconds for r in legs), sum(r.speech_seconds for r in legs),
                       time.process_time() - cpu)


def transcribe_file(model, path: Path, language: str, skip_silence: bool = True) -> Transcribed:
    """A vault file (any of the vault's codecs; decoded by ffmpeg at the vault's rate)."""
    cpu = time.process_time()
    stereo = decode(Path(path))
    done = transcribe_audio(model, stereo, language, skip_silence)
    return Transcribed(done.transcript, done.audio_seconds, done.speech_seconds, time.process_time() - cpu)
