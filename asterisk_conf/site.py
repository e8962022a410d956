"""Where this installation keeps its state, and which Asterisk it talks to.

Read once from the environment at the CLI edge; everything below takes a
``Site``. Nothing here is a secret in the repository: credentials live in the
state directory with mode 0600 (see ``credentials``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Site:
    #: State: credentials, recordings, softphone configs. Survives runs.
    home: Path = Path("/var/lib/dunning")
    #: Rebuildable caches: the sandbox chroot.
    cache: Path = Path("/var/cache/dunning")
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    sip_port: int = 5060
    #: Set when the engine drives an Asterisk other than the sandbox.
    ami_username: str | None = None
    ami_secret: str | None = field(default=None, repr=False)
    debian_mirror: str | None = None
    #: The database; default: SQLite in `home`.
    database_url: str | None = field(default=None, repr=False)
    #: Where stored recordings live; default: `home`/recordings.
    recordings: Path | None = None
    #: Where Asterisk's MixMonitor leaves recordings (seen from here); default: the sandbox's.
    spool: Path | None = None
    #: The vault's storage codec (flac, wav, opus-16k, opus-24k, mp3-32k, mp3-48k).
    codec: str = "flac"
    #: Asterisk's CEL log (cel_custom's CSV, seen from here); default: the sandbox's.
    cel: Path | None = None
    #: The least free space the recordings directory and the spool must have for a dial.
    min_free_mb: int = 200
    #: Another local sandbox than the default one (a letter B-Z: a second Asterisk server on
    #: this machine, with its own chroot, ports and logs); None: the default sandbox.
    sandbox_name: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Site":
        env = dict(os.environ if env is None else env)
        name = sandbox_name(env.get("DUNNING_SANDBOX") or None)
        offset = sandbox_offset(name)
        return cls(
            home=Path(env.get("DUNNING_HOME", cls.home)),
            cache=Path(env.get("DUNNING_CACHE", cls.cache)),
            ami_host=env.get("DUNNING_AMI_HOST", cls.ami_host),
            ami_port=_port(env, "DUNNING_AMI_PORT", cls.ami_port + offset),
            sip_port=_port(env, "DUNNING_SIP_PORT", cls.sip_port + 2 * offset),
            sandbox_name=name,
            ami_username=env.get("DUNNING_AMI_USERNAME") or None,
            ami_secret=env.get("DUNNING_AMI_SECRET") or None,
            debian_mirror=env.get("DUNNING_DEBIAN_MIRROR") or None,
            database_url=env.get("DUNNING_DATABASE_URL") or None,
            recordings=Path(env["DUNNING_RECORDINGS"]) if env.get("DUNNING_RECORDINGS") else None,
            spool=Path(env["DUNNING_SPOOL"]) if env.get("DUNNING_SPOOL") else None,
            codec=env.get("DUNNING_RECORDING_CODEC") or "flac",
            cel=Path(env["DUNNING_CEL_LOG"]) if env.get("DUNNING_CEL_LOG") else None,
            min_free_mb=int(env.get("DUNNING_MIN_FREE_MB") or 200),
        )

    @property
    def external_asterisk(self) -> bool:
        """True when the user pointed the engine at their own Asterisk."""
        return self.ami_secret is not None

    def in_sandbox(self, name: str | None) -> "Site":
        """This site driving the local sandbox `name` (None or A: the default one), on that
        sandbox's own ports."""
        name = sandbox_name(name)
        if name == self.sandbox_name:
            return self  # its ports as configured
        offset = sandbox_offset(name)
        return replace(self, sandbox_name=name, ami_port=Site.ami_port + offset,
                       sip_port=Site.sip_port + 2 * offset)

    @property
    def sandbox_root(self) -> Path:
        return self.cache / ("sid-asterisk" if self.sandbox_name is None else f"sid-asterisk-{self.sandbox_name}")

    @property
    def rtp_ports(self) -> tuple[int, int]:
        """The sandbox's RTP port range (each sandbox its own thousand)."""
        start = 10000 + 1000 * sandbox_offset(self.sandbox_name)
        return start, start + 999

    @property
    def recordings_spool(self) -> Path:
        """Where MixMonitor's files appear, seen from here (the sandbox's spool by default)."""
        return self.spool or self.sandbox_root / "var/spool/asterisk/dunning"

    @property
    def cel_log(self) -> Path:
        """Asterisk's CEL record of every call (dialer/cel.py), seen from here."""
        return self.cel or self.sandbox_root / "var/log/asterisk/cel-custom/dunning-cel.csv"

    @property
    def recordings_root(self) -> Path:
        return self.recordings or self.home / "recordings"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'dunning.db'}"


def sandbox_name(name: str | None) -> str | None:
    """A local sandbox's name: None (or A) is the default sandbox; others are one letter B-Z."""
    if name is None or name.upper() == "A":
        return None
    if len(name) != 1 or not "B" <= name.upper() <= "Z":
        raise ValueError(f"sandbox name {name!r}: one letter, B to Z (A is the default sandbox)")
    return name.upper()


def sandbox_offset(name: str | None) -> int:
    """How far a sandbox's ports are from the default one's: AMI 5038 + n, SIP 5060 + 2n,
    RTP 10000 + 1000n (B is 1, C is 2, ...)."""
    return 0 if name is None else ord(name) - ord("A")


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a port number") from None
    if not 0 < value < 65536:
        raise ValueError(f"{name}={raw!r} is not a port number (1-65535)")
    return value
