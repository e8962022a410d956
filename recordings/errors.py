"""What can go wrong in the recording vault. Each message says what was wrong and what to do."""
from __future__ import annotations


class VaultError(RuntimeError):
    """Base of the vault's errors; the CLI prints the message and exits non-zero."""


class VaultConflict(VaultError):
    """A stored file would be overwritten with different content (it never is)."""


class LegMissing(VaultError):
    """A leg of the call that the vault needs to build the stereo file is not there."""


class NotAnswered(VaultError):
    """An attempt that was never answered has nothing to keep."""


class NotFound(VaultError):
    """No client, case, attempt or recording by that name."""


class RetentionTooShort(VaultError):
    """A retention below the legal minimum."""


class IntegrityError(VaultError):
    """A stored file is missing or no longer matches its checksum."""


class AccessRefused(VaultError):
    """A playback or export without a user or a reason."""
