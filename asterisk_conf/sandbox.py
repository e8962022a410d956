"""The local Asterisk sandbox: Debian sid's Asterisk 22 in a debootstrapped chroot.

Debian 12 has no Asterisk package and sid's needs a newer libc than the host's,
so the sandbox is a sid minbase chroot, built once into the cache directory and
reused. It shares the host's network: AMI on 127.0.0.1:5038, SIP on
127.0.0.1:5060/udp. The lifecycle is ``build`` → ``up`` → ``down``; each step is
idempotent, and ``down`` unmounts everything ``up`` mounted.
"""
from __future__ import annotations

import dataclasses

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .credentials import Credentials
from .generate import CEL_FILE, ConfigSpec, sandbox_files
from .site import Site
from .speech import SpeechToolMissing, speak, synth

PACKAGES = ("asterisk", "asterisk-core-sounds-en", "sox")
READY_MARK = ".dunning-sandbox-ready"
#: debootstrap's stage lines worth showing as progress (it prints one line per package too).
STAGES = ("Retrieving Release", "Validating Packages", "Resolving dependencies",
          "Installing core packages", "Unpacking the base system",
          "Configuring the base system", "Base system installed")
SPOOL = "/var/spool/asterisk/dunning"
SOUNDS = "/usr/share/asterisk/sounds/dunning"
#: The sandbox's music on hold (its default class, generate.MOH_DIRECTORY), under SOUNDS.
MOH_DIR = "moh"

Say = Callable[[str], None]


class SandboxError(RuntimeError):
    """Something the user must fix; the message says what and how."""


@dataclass(frozen=True)
class Status:
    built: bool
    running: bool
    pid: int | None
    version: str | None
    mounts: tuple[str, ...]
    root: Path


# -- checks that fail early with a clear message ------------------------------

def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "the Asterisk sandbox needs root (debootstrap, chroot and mount): "
            "run it as root, e.g. `sudo dunning asterisk sandbox up`"
        )


def debian_mirror(site: Site, sources: Path = Path("/etc/apt")) -> str:
    """The mirror the host's apt already uses, so the sandbox needs no new access."""
    if site.debian_mirror:
        return site.debian_mirror.rstrip("/")
    candidates = sorted(sources.glob("sources.list.d/*.sources")) + [sources / "sources.list"]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            uri = match.group(1).rstrip("/")
            if "security" not in uri and uri.startswith("http"):
                return uri
    return "http://deb.debian.org/debian"


def check_registry(mirror: str, timeout: float = 15.0) -> None:
    url = f"{mirror}/dists/sid/Release"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(64)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SandboxError(
            f"cannot reach the Debian package registry at {mirror} ({reason}); the sandbox's "
            "Asterisk is installed from Debian sid. Check the network, or set "
            "DUNNING_DEBIAN_MIRROR to a mirror you can reach."
        ) from None


def port_in_use(port: int, kind: int, host: str = "127.0.0.1") -> bool:
    """Whether another socket holds `port`. For TCP, SO_REUSEADDR lets the probe bind past
    the TIME_WAIT leftovers of a stopped Asterisk (a listener still refuses it); for UDP it
    would let the probe share the port with a holder that set it too, so it is not set."""
    with socket.socket(socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def require_free_ports(site: Site) -> None:
    taken = [f"{port}/{name}" for port, kind, name in (
        (site.ami_port, socket.SOCK_STREAM, "tcp"), (site.sip_port, socket.SOCK_DGRAM, "udp"),
    ) if port_in_use(port, kind)]
    if taken:
        raise SandboxError(
            f"port {', '.join(taken)} on 127.0.0.1 is taken by another program, so the sandbox's "
            "Asterisk cannot listen there. Stop that program (`ss -ltnup` shows it) or choose "
            "other ports with DUNNING_AMI_PORT / DUNNING_SIP_PORT."
        )


# -- build ---------------------------------------------------------------------

def build(site: Site, say: Say = print) -> Path:
    """Debootstrap the chroot once; later calls return the cached one at once. A named
    sandbox (a second server on this machine) is a copy of the default one's chroot."""
    root = site.sandbox_root
    if (root / READY_MARK).exists():
        return root
    require_root()
    if site.sandbox_name is not None:
        return _clone(build(dataclasses.replace(site, sandbox_name=None), say), root, say)
    if not shutil.which("debootstrap"):
        raise SandboxError("debootstrap is not installed: `apt-get install debootstrap`")
    mirror = debian_mirror(site)
    check_registry(mirror)
    partial = root.with_name(root.name + ".partial")
    _unmount_under(partial)
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    say(f"building the Asterisk sandbox in {root} from {mirror} (about a minute, once)")
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
               "sid", str(partial), mirror]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        tail: list[str] = []
        for line in proc.stdout:  # debootstrap's own progress, condensed
            tail = (tail + [line.rstrip()])[-20:]
            if line.startswith("I: ") and any(w in line for w in STAGES):
                say("  " + line[3:].strip())
    if proc.returncode != 0:
        raise SandboxError("debootstrap failed:\n" + "\n".join(tail))
    (partial / READY_MARK).write_text("debian sid, " + ",".join(PACKAGES) + "\n")
    os.replace(partial, root)
    return root


#: What a sandbox writes while it runs: copied for a named sandbox, not shared with the default
#: one's (the rest, the system and Asterisk's binaries and sounds, is hard-linked: seconds, no space).
OWN_DIRS = ("etc", "var", "run", "tmp", "root")


def _clone(base: Path, root: Path, say: Say) -> Path:
    partial = root.with_name(root.name + ".partial")
    _unmount_under(partial)
    shutil.rmtree(partial, ignore_errors=True)
    say(f"making the sandbox {root.name} from {base.name} (hard links; its own configuration and logs)")
    # -x: not into the default sandbox's mounted /proc and /dev.
    subprocess.run(["cp", "-alx", str(base), str(partial)], check=True, capture_output=True)
    for name in OWN_DIRS:
        own = partial / name
        if not (base / name).is_dir() or (base / name).is_symlink():
            continue
        shutil.rmtree(own, ignore_errors=True)
        subprocess.run(["cp", "-ax", str(base / name), str(own)], check=True, capture_output=True)
    # Nothing of the default sandbox's calls: its logs, CEL record, spool and run files.
    for name in ("var/log/asterisk", SPOOL.lstrip("/"), "run/asterisk"):  # var/run is a link to /run
        shutil.rmtree(partial / name, ignore_errors=True)
        (partial / name).mkdir(parents=True, exist_ok=True)
    os.replace(partial, root)
    return root


def site_for_server(site: Site, server: str) -> Site:
    """The site an engine of `server` drives: the local sandbox of that name (A, B, ...) when
    the site drives sandboxes and that one is built; otherwise the site as configured (your
    own Asterisk: its AMI address in the engine's environment, one engine process per server)."""
    if site.external_asterisk or site.sandbox_name is not None:
        return site
    try:
        named = site.in_sandbox(server)
    except ValueError:
        return site
    return named if (named.sandbox_root / READY_MARK).exists() else site


# -- configuration -------------------------------------------------------------

def config_spec(site: Site, credentials: Credentials) -> ConfigSpec:
    return ConfigSpec(
        ami_username=credentials.ami_username,
        ami_secret=credentials.ami_secret,
        agents=credentials.agents(),
        supervisors=credentials.supervisors(),
        ami_port=site.ami_port,
        sip_port=site.sip_port,
        rtp_start=site.rtp_ports[0],
        rtp_end=site.rtp_ports[1],
        recordings_dir=SPOOL,
    )


def install_config(site: Site, spec: ConfigSpec) -> set[str]:
    """Write the generated files into the chroot; the names of those that changed."""
    etc = site.sandbox_root / "etc/asterisk"
    changed: set[str] = set()
    for name, text in sandbox_files(spec).items():
        path = etc / name
        if path.exists() and path.read_text() == text:
            continue
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
        changed.add(name)
    spool = site.sandbox_root / SPOOL.lstrip("/")
    spool.mkdir(parents=True, exist_ok=True)
    (site.sandbox_root / "var/log/asterisk/cel-custom").mkdir(parents=True, exist_ok=True)
    rotate_cel_log(site.sandbox_root / "var/log/asterisk/cel-custom" / CEL_FILE)
    install_sounds(site.sandbox_root / SOUNDS.lstrip("/"))
    return changed


#: The sandbox has no logrotate: its CEL file is rotated as the generated dunning-cel.logrotate
#: does (generate.cel_logrotate), at this size, each time the sandbox is brought up.
SANDBOX_CEL_ROTATE_BYTES = 16 * 1024 * 1024


def rotate_cel_log(path: Path, limit: int = SANDBOX_CEL_ROTATE_BYTES) -> bool:
    """Rename the CEL file to ``<name>.1`` (replacing the older one) once past `limit`, as
    logrotate does; Asterisk starts a new file with its next line. True if it was rotated."""
    try:
        if path.stat().st_size <= limit:
            return False
    except FileNotFoundError:
        return False
    os.replace(path, path.with_name(path.name + ".1"))
    return True


#: Spoken prompts, made with espeak-ng and sox on the host.
PROMPTS = {
    "no-agent": "Hello, this is Dunning Collections calling on behalf of your bank. "
                "We are sorry, no agent is free to speak with you right now. "
                "We will call you again. Goodbye.",
    "debtor-voice": "Hello? Yes, this is Li Wei speaking. Who is calling, please?",
}


#: The simulated network's answering machines (dunning-sim-machine): greetings of 3 to 9 s,
#: in English and Mandarin, at different speeds: (text, espeak-ng voice, words per minute).
SIM_MACHINES = (
    ("Hi, you have reached Li Wei. I can't take your call right now. Please leave your name and "
     "number after the tone, and I will get back to you. Thank you.", "en", 165),
    ("您好，您拨打的用户暂时无法接听，请在提示音后留言，我们会尽快给您回电。", "cmn", 170),
    ("Hello. The person you are calling is not available. Please leave a message after the beep.", "en-us", 185),
    ("你好，我是王芳，现在不方便接电话。请在嘀声之后留下您的姓名和电话，我会给您回电。谢谢。", "cmn", 150),
    ("Thank you for calling. Nobody is here to answer the phone at the moment. At the tone, "
     "please record your message, and simply hang up when you are finished.", "en", 150),
)
#: The simulated network's people who answer with a word or two and wait (dunning-sim-human).
SIM_HELLOS = (("Hello?", "en", 160), ("喂？", "cmn", 160), ("喂，你好？", "cmn", 170), ("Yes?", "en-us", 160),
              ("喂，哪位？", "cmn", 170))


def install_sounds(directory: Path, messages: dict[str, tuple[str, str]] | None = None) -> list[Path]:
    """Write the prompts the dialplan plays (``dunning/<name>``) into `directory`: the
    sandbox's sounds folder, or `dunning asterisk config --out`'s for your own Asterisk.
    `messages`: sound name -> (text, voice) of the answering-machine messages to make (by
    default those of the shipped presets, campaigns/amd.py); the simulated network's
    greetings, hellos and beep come with them."""
    from campaigns.amd import preset_messages
    spoken = {name: (text, "en", 150) for name, text in PROMPTS.items()}
    spoken |= {name: (text, voice, 150) for name, (text, voice) in (messages or preset_messages()).items()}
    spoken |= {f"sim-machine-{i}": clip for i, clip in enumerate(SIM_MACHINES)}
    spoken |= {f"sim-hello-{i}": clip for i, clip in enumerate(SIM_HELLOS)}
    written = []
    try:
        for name, (text, voice, speed) in spoken.items():
            written.append(speak(text, directory / f"{name}.wav", voice, speed))
        written.append(synth(directory / "sim-beep.wav", "0.5", "sine", "1000", "vol", "0.5"))
        # A line is never without sound: what a quiet room sends, far below AMD's threshold.
        written.append(synth(directory / "sim-line.wav", "30", "whitenoise", "vol", "0.002"))
        # Music on hold (a debtor waiting during an attended transfer): a soft pulsing tone.
        written.append(synth(directory / MOH_DIR / "hold.wav", "20", "sine", "523", "tremolo", "1.5", "80", "vol", "0.2"))
    except SpeechToolMissing as exc:
        raise SandboxError(str(exc)) from None
    return written


# -- run -------------------------------------------------------------------------

def _asterisk_rx(root: Path, command: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["chroot", str(root), "/usr/sbin/asterisk", "-rx", command],
                          capture_output=True, text=True, timeout=timeout)


def running_pid(site: Site) -> int | None:
    """The sandbox's Asterisk process, found by the chroot it runs in. Only root can see
    another user's /proc/PID/root: without root this says None even while it runs."""
    root = site.sandbox_root.resolve()
    pidfile = root / "var/run/asterisk/asterisk.pid"
    candidates = []
    if pidfile.exists():
        try:
            candidates.append(int(pidfile.read_text().strip()))
        except ValueError:
            pass
    candidates += [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in candidates:
        try:
            if Path(f"/proc/{pid}/root").resolve() != root:
                continue
            if Path(f"/proc/{pid}/comm").read_text().strip() == "asterisk":
                return pid
        except OSError:
            continue
    return None


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    found = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def _unmount_under(root: Path) -> None:
    if not root.exists():
        return
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def _mount(root: Path) -> None:
    mounted = set(_mounts_under(root))
    for source, target, args in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])):
        point = root / target
        if str(point.resolve()) in mounted:
            continue
        point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, source, str(point)], check=True, capture_output=True)


def up(site: Site, credentials: Credentials, say: Say = print, timeout: float = 60) -> Status:
    """Build if needed, configure, start, and wait until Asterisk is fully booted."""
    require_root()
    root = build(site, say)
    changed = install_config(site, config_spec(site, credentials))
    pid = running_pid(site)
    if pid is not None and "modules.conf" in changed:
        say("the module list changed: restarting the sandbox's Asterisk")
        down(site, say)
        pid = None
    if pid is not None:
        if changed:
            say(f"configuration changed ({', '.join(sorted(changed))}): reloading the running sandbox")
            _asterisk_rx(root, "core reload")
        _wait_fully_booted(root, timeout)
        return status(site)
    require_free_ports(site)
    _mount(root)
    (root / "var/run/asterisk").mkdir(parents=True, exist_ok=True)
    log = open(console_log(site), "ab")
    say("starting Asterisk in the sandbox")
    subprocess.Popen(["chroot", str(root), "/usr/sbin/asterisk", "-f"],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    _wait_fully_booted(root, timeout)
    return status(site)


def console_log(site: Site) -> Path:
    return site.cache / console_log_name(site.sandbox_root)


def console_log_name(root: Path) -> str:
    return root.name.replace("sid-asterisk", "asterisk-console") + ".log"


def _wait_fully_booted(root: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            result = _asterisk_rx(root, "core waitfullybooted", timeout=max(1, deadline - time.monotonic()))
            if result.returncode == 0 and "fully booted" in result.stdout.lower():
                return
            last = (result.stdout + result.stderr).strip()
        except subprocess.TimeoutExpired:
            break
        time.sleep(0.2)
    raise SandboxError(f"Asterisk did not finish booting within {timeout:.0f} s ({last}); "
                       f"see {root.parent / console_log_name(root)} and "
                       f"{root / 'var/log/asterisk/messages.log'}")


def down(site: Site, say: Say = print, timeout: float = 20) -> None:
    """Stop Asterisk and unmount everything ``up`` mounted. Safe to repeat."""
    require_root()
    root = site.sandbox_root
    pid = running_pid(site)
    if pid is not None:
        say(f"stopping Asterisk (pid {pid})")
        try:
            os.kill(pid, signal.SIGCONT)  # a stopped process cannot shut down
            _asterisk_rx(root, "core stop now", timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            say("Asterisk did not stop in time: killing it")
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
    _unmount_under(root)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def status(site: Site) -> Status:
    require_root()  # without root, a running sandbox would look stopped (see running_pid)
    root = site.sandbox_root
    pid = running_pid(site) if root.exists() else None
    version = None
    if pid is not None:
        result = _asterisk_rx(root, "core show version", timeout=10)
        version = result.stdout.strip() or None
    return Status(
        built=(root / READY_MARK).exists(), running=pid is not None, pid=pid, version=version,
        mounts=tuple(_mounts_under(root)) if root.exists() else (), root=root,
    )


def cli(site: Site, command: str | None) -> int:
    """Run one Asterisk CLI command (or an interactive console) in the sandbox."""
    require_root()  # chroot, and telling whether it runs (see running_pid)
    root = site.sandbox_root
    if running_pid(site) is None:
        raise SandboxError("the sandbox is not running: `dunning asterisk sandbox up`")
    args = ["chroot", str(root), "/usr/sbin/asterisk"] + (["-rx", command] if command else ["-r"])
    return subprocess.call(args)
