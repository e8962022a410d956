"""Simulated agents: real SIP softphones (baresip) registered to the sandbox.

Each softphone registers as an agent's PJSIP endpoint, answers automatically,
says what a WAV file says (its "microphone"). When the WAV file ends, baresip
hangs up: an agent who says a known sentence on a real call. (Debian 12's
baresip 1.0 has no file player, so what the agent hears is checked in the
call's recording instead.)

With ``answer="manual"`` the phone rings like a stock softphone (Zoiper, MicroSIP, a desk
phone) until someone clicks: `answer()` is the click, `hang_up()` the red button (baresip's
own keys, sent to its stdin).
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .credentials import write_private

MODULE_PATH = "/usr/lib/baresip/modules"
#: baresip echoes account lines, password included, e.g. when a registration fails.
_AUTH_PASS = re.compile(r"(auth_pass=)[^;>\s]*")
_STATUS = re.compile(r"^\[\d+:\d\d:\d\d\] audio=")


class SoftphoneError(RuntimeError):
    pass


@dataclass
class Softphone:
    extension: str
    password: str = field(repr=False)
    says: Path
    workdir: Path
    sip_server: str = "127.0.0.1:5060"
    local_port: int = 0
    #: "auto": baresip answers by itself; "manual": it rings until `answer()`.
    answer_mode: str = "auto"
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    #: How many calls came in (counted once `keep_answering` is on).
    rings: int = field(default=0, init=False)
    _answer_after: float | None = field(default=None, init=False, repr=False)
    _lines: "queue.Queue[str]" = field(default_factory=queue.Queue, init=False, repr=False)
    log: list[str] = field(default_factory=list, init=False, repr=False)

    def render_config(self) -> dict[str, str]:
        """baresip's config and accounts files (pure)."""
        # baresip binds SIP on UDP and TCP at `port` and TLS at port+1: keep phones 10 apart.
        slot = int("".join(c for c in self.extension if c.isdigit())[-3:] or 0)
        port = self.local_port or 15000 + 10 * slot
        config = "\n".join([
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{port}",
            "sip_transports udp",
            f"audio_source aufile,{self.says}",
            "audio_alert aufile,/dev/null",
            "ausrc_srate 8000",
            "auplay_srate 8000",
            "ausrc_channels 1",
            "auplay_channels 1",
            f"rtp_ports {20000 + 10 * slot}-{20009 + 10 * slot}",
            "rtp_stats no",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aufile.so",
            "module_app account.so",
            "module_app menu.so",
            *(["module stdio.so"] if self.answer_mode == "manual" else []),
            "",
        ])
        account = (f"<sip:{self.extension}@{self.sip_server};transport=udp>"
                   f";auth_pass={self.password};answermode={self.answer_mode};regint=300"
                   ";audio_codecs=PCMU,PCMA\n")
        return {"config": config, "accounts": account, "contacts": ""}

    def start(self, timeout: float = 10) -> None:
        """Start baresip and wait until Asterisk accepted its registration."""
        if not shutil.which("baresip"):
            raise SoftphoneError("baresip is not installed: `apt-get install baresip`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, text in self.render_config().items():
            write_private(self.workdir / name, text)
        self._proc = subprocess.Popen(
            ["baresip", "-f", str(self.workdir)],
            stdin=subprocess.PIPE if self.answer_mode == "manual" else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self.wait_for("200 OK", timeout, "failed"):
            self.stop()
            raise SoftphoneError(f"softphone {self.extension} did not register within "
                                 f"{timeout:.0f} s: {' | '.join(self.scrubbed(self.log[-5:]))}")

    def scrubbed(self, lines: list[str]) -> list[str]:
        """baresip's output with the SIP password masked, fit for an error message or a log."""
        masked = [_AUTH_PASS.sub(r"\1***", line) for line in lines]
        return [line.replace(self.password, "***") for line in masked] if self.password else masked

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.rstrip()
            if _STATUS.match(line):  # the call's running audio figures (module stdio), twice a second
                continue
            if self._answer_after is not None and "Incoming call" in line:
                self.rings += 1
                threading.Timer(self._answer_after, self.answer).start()
            self.log.append(line)
            self._lines.put(line)

    def wait_for(self, text: str, timeout: float, failure: str | None = None) -> bool:
        """Wait for a line of baresip's output containing ``text``.

        baresip 1.0 reports a registration as ``6001@host: {0/UDP/v4} 200 OK``.
        """
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                return False
            if text in line:
                return True
            if failure and failure in line.lower():
                return False
        return False

    def _key(self, key: str) -> None:
        if self._proc is None:  # stopped meanwhile
            return
        if self._proc.stdin is None:
            raise SoftphoneError(f"softphone {self.extension}: not started with answer_mode='manual'")
        try:
            self._proc.stdin.write(key)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # baresip has exited (or is being stopped)
            pass

    def answer(self) -> None:
        """Click "answer" on the ringing call."""
        self._key("a")

    def hang_up(self) -> None:
        """Click "hang up" on the call in progress."""
        self._key("b")

    def keep_answering(self, after_s: float = 0.5) -> None:
        """An agent at the desk: click "answer" `after_s` seconds after each call comes in."""
        self._answer_after = after_s

    def wait_ringing(self, timeout: float) -> bool:
        """Wait until a call comes in (baresip says "Incoming call")."""
        return self.wait_for("Incoming call", timeout)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait()
        self._proc = None
