"""The console's settings: one frozen object, built by the CLI (or a test) and passed to
`make_app` and to the account functions."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from ami_bridge import AmiSettings

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
    #: Lockout: this many failed sign-ins for an account (from any addresses) within
    #: `failure_window` lock it for `lockout` (None: until an administrator unlocks it). A
    #: locked account still signs in with the right password from an address it has signed in
    #: from before (which lifts the lock); from any other address it is refused, even with the
    #: right password, with the answer a wrong password gets.
    max_failures: int = 5
    failure_window: dt.timedelta = dt.timedelta(minutes=15)
    lockout: dt.timedelta | None = dt.timedelta(minutes=30)
    #: Sign-in throttling (agent_console/throttle.py): after `throttle_free_address` failed
    #: sign-ins from one source address (IPv6: its /64) within `failure_window`, or
    #: `throttle_free_name` for one typed user name (whether or not such an account exists),
    #: the next attempt from there or for that name is answered "wait" (HTTP 429) until
    #: `throttle_base`, then twice, four times ... as long (at most `throttle_max`) has passed
    #: since the last failure. The name's delay does not apply from the account's known
    #: addresses, so that strangers cannot slow a person down at their own desk.
    throttle_free_address: int = 10
    throttle_free_name: int = 3
    throttle_base: dt.timedelta = dt.timedelta(seconds=1)
    throttle_max: dt.timedelta = dt.timedelta(seconds=60)
    #: Reverse proxies (the TLS terminator in front of the console) whose X-Forwarded-For is
    #: believed: behind one, every request comes from the proxy's address, and per-address
    #: throttling would otherwise let one attacker slow everybody down.
    trusted_proxies: tuple[str, ...] = ()
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
    #: One playback serves at most this many times the file's size (seeking back fetches some
    #: bytes again); downloading it again takes a new, logged, playback.
    playback_bytes_factor: float = 2.0
    #: The language when neither the account nor the browser says: zh or en.
    default_language: str = "zh"
    #: The seed of the weekly QA sample (recordings.qa.weekly_sample): the same seed, week and
    #: calls give the same sample.
    qa_sample_seed: str = "dunning-qa"
    #: Campaign figures (the policy over every case) are computed at most this often.
    figures_cache_s: float = 15.0
    #: The console's own link to Asterisk (agent_console/call_control.py: an agent's hang-up
    #: and hand-over, a supervisor listening in); None: those buttons answer that there is none.
    ami: AmiSettings | None = None
