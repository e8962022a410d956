"""The console's settings: one frozen object, built by the CLI (or a test) and passed to
`make_app` and to the account functions."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from .passwords import PasswordRules


@dataclass(frozen=True)
class Settings:
    #: Where the vault's files are (recordings.vault's root: $DUNNING_RECORDINGS).
    recordings_root: Path = Path("/var/lib/dunning/recordings")
    #: Send the session cookie only over HTTPS. On by default; off only for a console on
    #: loopback or behind a TLS proxy that talks plain HTTP to it on the same machine.
    cookie_secure: bool = True
    #: A session ends after this long without a request, and at the latest after max_age.
    session_idle: dt.timedelta = dt.timedelta(hours=1)
    session_max_age: dt.timedelta = dt.timedelta(hours=12)
    #: Lockout: this many failed sign-ins within `failure_window` lock the account for
    #: `lockout` (None: until an administrator unlocks it).
    max_failures: int = 5
    failure_window: dt.timedelta = dt.timedelta(minutes=15)
    lockout: dt.timedelta | None = dt.timedelta(minutes=30)
    passwords: PasswordRules = field(default_factory=PasswordRules)
    #: The day of the agents' counters and the wallboard is the calendar day here.
    report_timezone: str = "Asia/Shanghai"
    #: An effective call (有效通话) is a bridged conversation at least this long (the daily
    #: report's --effective-seconds; campaigns/report.py counts it).
    effective_seconds: float = 30.0
    #: The engine's wrap-up limit, shown to the agent as a countdown (the engine enforces it).
    wrap_up_limit: dt.timedelta = dt.timedelta(minutes=3)  # = dialer.presence.DEFAULT_WRAP_UP_LIMIT_S
    #: An agent may reopen a case they dispositioned for this long after the call.
    case_recent: dt.timedelta = dt.timedelta(minutes=30)
    #: How often the live task looks at the database for bridged calls and presence changes.
    poll_interval_s: float = 0.3
    #: How long a playback token (one logged playback) lets the browser fetch the audio.
    playback_token_life: dt.timedelta = dt.timedelta(minutes=30)
    #: The language when neither the account nor the browser says: zh or en.
    default_language: str = "zh"
    #: The seed of the weekly QA sample (recordings.qa.weekly_sample): the same seed, week and
    #: calls give the same sample.
    qa_sample_seed: str = "dunning-qa"
    #: Campaign figures (the policy over every case) are computed at most this often.
    figures_cache_s: float = 15.0
