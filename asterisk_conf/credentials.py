"""The AMI secret and the agents' SIP passwords, generated once per installation.

Kept in ``<home>/credentials.json`` with mode 0600, written atomically; never
in the repository, never in a log (reprs mask them).
"""
from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .generate import Agent

DEFAULT_AGENTS = ("6001", "6002", "6003")
AMI_USERNAME = "dunning"


@dataclass(frozen=True)
class Credentials:
    ami_username: str
    ami_secret: str = field(repr=False)
    agent_passwords: dict[str, str] = field(repr=False, default_factory=dict)
    #: Supervisors' phones, by the supervisor's console user name.
    supervisor_passwords: dict[str, str] = field(repr=False, default_factory=dict)

    def agents(self) -> tuple[Agent, ...]:
        return tuple(Agent(ext, pw) for ext, pw in sorted(self.agent_passwords.items()))

    def supervisors(self) -> tuple[Agent, ...]:
        return tuple(Agent(name, pw) for name, pw in sorted(self.supervisor_passwords.items()))


def load_or_create(home: Path, agents: tuple[str, ...] = DEFAULT_AGENTS,
                   supervisors: tuple[str, ...] = ()) -> Credentials:
    """Read the credentials, creating any that are missing (never replacing one)."""
    path = home / "credentials.json"
    data: dict = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc}); fix or remove it") from None
    changed = False
    if not data.get("ami_secret"):
        data["ami_username"] = AMI_USERNAME
        data["ami_secret"] = secrets.token_urlsafe(24)
        changed = True
    passwords = data.setdefault("agent_passwords", {})
    for ext in agents:
        if ext not in passwords:
            passwords[ext] = secrets.token_urlsafe(18)
            changed = True
    phones = data.setdefault("supervisor_passwords", {})
    for name in supervisors:
        if name not in phones:
            phones[name] = secrets.token_urlsafe(18)
            changed = True
    if changed:
        write_private(path, json.dumps(data, indent=2, sort_keys=True))
    return Credentials(data["ami_username"], data["ami_secret"], dict(passwords), dict(phones))


def write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def add_agent(home: Path, extension: str) -> Credentials:
    """Give `extension` a SIP password (kept if it has one) and return all credentials."""
    current = load_or_create(home)
    return load_or_create(home, tuple(current.agent_passwords) + (extension,))


def add_supervisor(home: Path, username: str) -> Credentials:
    """Give supervisor `username`'s phone a SIP password (kept if it has one): the endpoint
    ``username`` that listening in and the agents' hand-over call."""
    return load_or_create(home, supervisors=(username,))
