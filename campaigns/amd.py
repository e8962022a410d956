"""Answering-machine detection (AMD) per campaign: the setting, the message left on a
machine, and the abandonment figure regulators ask for.

Asterisk's ``AMD()`` listens to the first seconds of an answered call (asterisk_conf's
dunning-answered context) before the engine is told that a debtor needs an agent. A MACHINE
result never reaches an agent: the call is hung up, or, with ``amd = message``, the
campaign's message is left after the greeting's beep. The attempt's outcome is ``machine``:
not a contact, not an effective call, not an answer the pacing needs an agent for.

No detector is perfect: some humans are taken for machines and hung up on. UK Ofcom (its statement of policy on the
persistent misuse of a network, on AMD "false positives") and the US FTC's Telemarketing
Sales Rule (16 CFR 310.4(b)(4), the 3 % abandonment safe harbour) count those calls as
abandoned. Which MACHINE results were
humans cannot be known call by call, so the abandonment figure adds an estimate: the share
of MACHINE results that were humans (`human_share`, per campaign) times the MACHINE results,
counted both as live calls answered and as abandoned (`estimated_abandonment`). The default
share is the benchmark's ceiling (``bench.amd``, docs/benchmarks.md: at most 5 % of humans
taken for machines); a campaign sets its own from a sample of its machine calls listened to (their recordings
are kept like any answered call's): docs/supervisor.md says how.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .case_views import ABANDONED, MACHINE
from .lifecycle import CampaignError

__all__ = ["ABANDONED", "AMD_MODES", "DEFAULT_HUMAN_SHARE", "MACHINE", "Abandonment", "AmdResult", "AmdSetting",
           "AmdSettingError", "amd_setting", "estimated_abandonment", "human_share_of", "message_sound", "preset_messages"]

#: What a campaign does with an answered call AMD takes for a machine.
AMD_MODES = ("off", "hangup", "message")
#: The estimated share of MACHINE results that were humans, unless the campaign says: the
#: benchmark's ceiling (5 %), until a campaign measures its own.
DEFAULT_HUMAN_SHARE = 0.05
#: Where the message's sound lives in Asterisk's sounds folder (``dunning/amd-<hash>``).
SOUND_PREFIX = "amd-"


class AmdSettingError(CampaignError):
    pass


@dataclass(frozen=True)
class AmdSetting:
    """A campaign's AMD: `mode` (off, hangup, message) and `human_share`, the estimated share
    of MACHINE results that were humans (counted as abandoned)."""

    mode: str = "off"
    human_share: float = DEFAULT_HUMAN_SHARE

    def __post_init__(self) -> None:
        if self.mode not in AMD_MODES:
            raise AmdSettingError(f"amd {self.mode!r}: one of {', '.join(AMD_MODES)}")
        if not 0.0 <= self.human_share < 1.0:
            raise AmdSettingError(f"amd_human_share {self.human_share!r}: a share from 0 to below 1 "
                                  "(0.05 is 5 % of the machine results)")

    @property
    def on(self) -> bool:
        return self.mode != "off"


def amd_setting(settings: Mapping[str, Any] | None, where: str) -> AmdSetting:
    """A campaign's AMD from its settings (keys ``amd``, ``amd_human_share``); `where` names
    the campaign in the one-line error a bad value raises."""
    settings = settings or {}
    try:
        share = float(settings.get("amd_human_share", DEFAULT_HUMAN_SHARE))
    except (TypeError, ValueError):
        raise AmdSettingError(f"{where}: amd_human_share {settings.get('amd_human_share')!r} "
                              "is not a number") from None
    try:
        return AmdSetting(str(settings.get("amd", "off")), share)
    except AmdSettingError as exc:
        raise AmdSettingError(f"{where}: {exc}") from None


def human_share_of(campaign) -> float:
    """The estimated share of a campaign's MACHINE results that were people (0 without AMD:
    no call is taken for a machine)."""
    setting = amd_setting(campaign.settings, f"campaign {campaign.name}")
    return setting.human_share if setting.on else 0.0


def message_sound(text: str) -> str:
    """The sound (``dunning/<name>``, without extension) a message text is spoken into: named
    by the text, so that a changed text is a new file and never a stale one."""
    return SOUND_PREFIX + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class AmdResult:
    """What AMD() concluded (AMDSTATUS: MACHINE, HUMAN, NOTSURE, HANGUP) and why (AMDCAUSE,
    e.g. LONGGREETING-1500-1500)."""

    status: str
    cause: str

    @property
    def machine(self) -> bool:
        return self.status == "MACHINE"

    def note(self, mode: str) -> str:
        """What the attempt's note records."""
        done = {"hangup": "hung up", "message": "message left after the beep"}.get(mode, "")
        return f"AMD {self.status} ({self.cause})" + (f"; {done}" if self.machine and done else "")


@dataclass(frozen=True)
class Abandonment:
    """Live calls and abandoned calls over a window, AMD's false positives estimated in."""

    humans: int        # answered calls AMD did not take for machines (or no AMD)
    abandoned: int     # of those, no agent within the grace time
    machines: int      # MACHINE results
    human_share: float

    @property
    def estimated_humans_among_machines(self) -> float:
        return self.machines * self.human_share

    @property
    def live(self) -> float:
        """Calls a person answered: the humans, plus the estimate among the machine results."""
        return self.humans + self.estimated_humans_among_machines

    @property
    def abandoned_estimate(self) -> float:
        """Abandoned calls, counting the estimated humans among machine results as abandoned."""
        return self.abandoned + self.estimated_humans_among_machines

    @property
    def rate(self) -> float | None:
        return self.abandoned_estimate / self.live if self.live else None


def estimated_abandonment(humans: int, abandoned: int, machines: int, human_share: float) -> Abandonment:
    """The abandonment figure with AMD's false positives: (abandoned + share x machines) /
    (humans + share x machines). Raises ValueError on counts that cannot be."""
    if min(humans, abandoned, machines) < 0 or abandoned > humans:
        raise ValueError(f"abandonment counts: humans {humans}, abandoned {abandoned}, machines {machines}")
    AmdSetting("off", human_share)  # the share's own check
    return Abandonment(humans, abandoned, machines, human_share)


def preset_messages() -> dict[str, tuple[str, str]]:
    """Sound name -> (text, espeak-ng voice) of the shipped presets' machine messages: what
    ``dunning asterisk sandbox up`` and ``dunning asterisk config`` speak into sound files."""
    from .presets import PRESET_NAMES, load_preset
    found = {}
    for name in PRESET_NAMES:
        rules = load_preset(name)
        found[message_sound(rules.amd_message)] = (rules.amd_message, rules.amd_voice)
    return found
