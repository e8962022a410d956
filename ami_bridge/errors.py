"""The exceptions `ami_bridge` raises.

Callers (the dialer engine, the CLI) branch on *what went wrong with Asterisk*, not on
asyncio or socket internals, so every failure that crosses the package boundary is one of
these. User-facing wording is left to the edges (click, HTTP).
"""

from __future__ import annotations


class AmiError(Exception):
    """Base class: anything that went wrong talking to Asterisk's manager interface."""


class AmiAuthError(AmiError):
    """Asterisk refused our Login. Retrying cannot help, so the connection stops."""


class AmiNotConnected(AmiError):
    """No logged-in connection right now; the action was *not* written to any socket."""


class AmiConnectionLost(AmiError):
    """The connection dropped after the action was written and before it was answered.

    Asterisk may or may not have executed it. Nothing is re-sent: reconcile instead.
    """


class AmiActionTimeout(AmiError):
    """The action was written but no response arrived within its deadline."""

    def __init__(self, action: str, action_id: str, timeout: float) -> None:
        super().__init__(f"{action} (ActionID {action_id}) got no response within {timeout:g}s")
        self.action = action
        self.action_id = action_id
        self.timeout = timeout


class AmiActionError(AmiError):
    """Asterisk answered `Response: Error` (or Fail/Failure); `message` is its own text."""

    def __init__(self, action: str, action_id: str, message: str) -> None:
        super().__init__(f"{action} (ActionID {action_id}) failed: {message or '(no message)'}")
        self.action = action
        self.action_id = action_id
        self.message = message


class AmiProtocolError(AmiError):
    """A message from Asterisk did not have the shape we model (missing or non-numeric header)."""
