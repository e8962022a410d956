"""How a call's two legs become one stereo file, and the codecs it can be stored in.

Channel layout (fixed, documented in the README): **left = agent, right = debtor**, each
the leg MixMonitor wrote (8 kHz, 16-bit). A leg shorter than the other is padded with
silence at its end, so both channels keep their timing from the start of the recording.

Encoding goes through pydub (ffmpeg for everything but WAV) with ffmpeg's bit-exact flags,
so encoding the same legs twice gives the same bytes. Decoding always gives back 8 kHz
16-bit stereo, whatever the codec's own rate (Opus decodes at 48 kHz).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydub import AudioSegment

from .errors import VaultError

RATE = 8000
SAMPLE_WIDTH = 2
#: Which party is on which channel of every stored file.
CHANNELS = ("agent", "debtor")
LAYOUT = "left=agent,right=debtor"
_BITEXACT = ("-fflags", "+bitexact", "-flags:a", "+bitexact")
_OPUS_SPLIT = ("-application", "voip", "-mapping_family", "255")


@dataclass(frozen=True)
class Codec:
    name: str
    extension: str
    ffmpeg_format: str
    ffmpeg_codec: str | None = None
    bitrate: str | None = None
    lossless: bool = False
    parameters: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.name} ({'lossless' if self.lossless else self.bitrate + 'bit/s'})"


CODECS: dict[str, Codec] = {c.name: c for c in (
    Codec("wav", "wav", "wav", lossless=True),
    Codec("flac", "flac", "flac", "flac", lossless=True, parameters=("-compression_level", "8")),
    # Opus codes the two parties as two independent mono streams (channel mapping family
    # 255): coded as a stereo pair, at 16 kbit/s libopus folds both parties into one mono
    # signal heard on both channels (see the crosstalk column of bench.codecs).
    Codec("opus-16k", "opus", "opus", "libopus", "16k", parameters=_OPUS_SPLIT),
    Codec("opus-24k", "opus", "opus", "libopus", "24k", parameters=_OPUS_SPLIT),
    Codec("mp3-32k", "mp3", "mp3", "libmp3lame", "32k"),
    Codec("mp3-48k", "mp3", "mp3", "libmp3lame", "48k"),
)}
#: The default, from ``python -m bench.codecs``: lossless (the legal record, what QA hears
#: and what speech-to-text reads are exactly the legs), 26-55 % of WAV's size on call audio
#: (parties taking turns - both legs busy), encoded at ~390x real time. The lossy codecs
#: are 6-19 % of WAV but changed the speech-to-text transcript of almost every clip.
DEFAULT_CODEC = "flac"


class UnknownCodec(VaultError):
    pass


class DecodeError(VaultError):
    pass


def codec_named(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise UnknownCodec(f"unknown recording codec {name!r}: choose one of {', '.join(CODECS)}") from None


def _leg(segment: AudioSegment) -> AudioSegment:
    return segment.set_channels(1).set_sample_width(SAMPLE_WIDTH).set_frame_rate(RATE)


def stereo(agent: AudioSegment, debtor: AudioSegment) -> AudioSegment:
    """One stereo segment: the agent on the left channel, the debtor on the right."""
    agent, debtor = _leg(agent), _leg(debtor)
    frames = max(int(agent.frame_count()), int(debtor.frame_count()))

    def padded(leg: AudioSegment) -> AudioSegment:
        missing = frames - int(leg.frame_count())
        return leg + AudioSegment.silent(duration=missing * 1000 / RATE, frame_rate=RATE) if missing else leg
    agent, debtor = padded(agent), padded(debtor)
    return AudioSegment.from_mono_audiosegments(agent, debtor)


def stereo_from_files(agent: Path, debtor: Path) -> AudioSegment:
    return stereo(AudioSegment.from_file(agent), AudioSegment.from_file(debtor))


def encode(audio: AudioSegment, codec: Codec, target: Path) -> None:
    """Write `audio` to `target` in `codec` (the caller makes it durable and publishes it)."""
    if codec.ffmpeg_format == "wav":
        audio.export(target, format="wav").close()
        return
    audio.export(target, format=codec.ffmpeg_format, codec=codec.ffmpeg_codec, bitrate=codec.bitrate,
                 parameters=[*codec.parameters, *_BITEXACT]).close()


def decode(path: Path) -> AudioSegment:
    """A stored file as 8 kHz 16-bit stereo audio, resampled by ffmpeg where the codec has
    another rate of its own."""
    result = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ar", str(RATE), "-ac", "2",
                             "-f", "s16le", "-acodec", "pcm_s16le", "-"], capture_output=True, check=False)
    if result.returncode != 0:
        raise DecodeError(f"{path}: ffmpeg cannot decode it: {result.stderr.decode(errors='replace').strip()}")
    return AudioSegment(result.stdout, sample_width=SAMPLE_WIDTH, frame_rate=RATE, channels=2)


def channels(audio: AudioSegment) -> dict[str, AudioSegment]:
    """The stereo file split back into its parties: {"agent": left, "debtor": right}."""
    return dict(zip(CHANNELS, audio.split_to_mono()))
