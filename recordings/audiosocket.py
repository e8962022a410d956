"""Asterisk's AudioSocket protocol, as the live-findings service reads it. Pure: bytes in,
frames out; no sockets.

AudioSocket (``app_audiosocket`` / ``chan_audiosocket``, Asterisk 18+) is a TCP stream of
frames, each a 3-byte header (kind: 1 byte; payload length: 2 bytes, big-endian) and the
payload. The first frame Asterisk sends is the call's UUID (16 bytes); then audio, 16-bit
signed little-endian linear PCM, 8 kHz mono, 20 ms (320 bytes) a frame; a hang-up frame
(length 0) or the connection closing ends the call; an error frame carries one code byte.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

HANGUP = 0x00
UUID = 0x01
DTMF = 0x03
AUDIO = 0x10  # slin, 8 kHz
ERROR = 0xFF
KINDS = {HANGUP: "hangup", UUID: "uuid", DTMF: "dtmf", AUDIO: "audio", ERROR: "error"}
#: Other linear rates Asterisk 22 may send (kind -> Hz), should a channel be set to one.
AUDIO_RATES = {AUDIO: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000, 0x15: 44100,
               0x16: 48000, 0x17: 96000, 0x18: 192000}
HEADER = 3
SAMPLE_RATE = 8000
FRAME_BYTES = 320  # 20 ms of slin at 8 kHz


class ProtocolError(ValueError):
    """A stream that is not AudioSocket; the message says what was wrong and at which byte."""


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes

    @property
    def name(self) -> str:
        return KINDS.get(self.kind, "audio" if self.kind in AUDIO_RATES else f"0x{self.kind:02x}")

    def call_uuid(self) -> str:
        if self.kind != UUID or len(self.payload) != 16:
            raise ProtocolError(f"not a UUID frame: kind 0x{self.kind:02x}, {len(self.payload)} bytes")
        return str(uuid.UUID(bytes=self.payload))


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One frame on the wire."""
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"frame kind {kind} is not a byte")
    if len(payload) > 0xFFFF:
        raise ValueError(f"frame payload of {len(payload)} bytes: at most 65535")
    return bytes((kind,)) + len(payload).to_bytes(2, "big") + payload


def uuid_frame(call_uuid: str) -> bytes:
    return frame(UUID, uuid.UUID(call_uuid).bytes)


class Reader:
    """Frames from a TCP stream fed in arbitrary pieces (`feed` returns the complete ones)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.offset = 0  # bytes consumed so far, for error messages

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER:
            kind = self._buffer[0]
            length = int.from_bytes(self._buffer[1:3], "big")
            if len(self._buffer) < HEADER + length:
                break
            if kind == UUID and length != 16:
                raise ProtocolError(f"byte {self.offset}: a UUID frame of {length} bytes (a UUID is 16)")
            frames.append(Frame(kind, bytes(self._buffer[HEADER:HEADER + length])))
            del self._buffer[:HEADER + length]
            self.offset += HEADER + length
        return frames


def call_uuid(call_id: str) -> str:
    """The AudioSocket UUID the dialplan gives a call's live stream: the MD5 of its call id
    (the attempt's ``call_id``, the dialplan's DUNNING_ATTEMPT) written as a UUID, so the
    service can tell which call a stream belongs to (asterisk_conf/generate.py)."""
    digest = hashlib.md5(call_id.encode("utf-8")).hexdigest()  # an identifier, not a secret
    return str(uuid.UUID(digest))
