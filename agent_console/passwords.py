"""Passwords: the client's rules and the key derivation. Pure: no database, no clock.

The client's IT rules (shared/DOMAIN.md): strong passwords, no birthdays or dates, no simple
digit runs, administrators change theirs at least monthly. `problems` names every rule a
password breaks (stable codes, worded by the console's message catalogue); `rotation_due`
says whether an account must change its password at `now`.

On top of those rules, the zxcvbn estimator (Dropbox's, the Python port) must rate the
password at least `PasswordRules.min_score` (3 of 4: about 10**8 guesses; 4 for
administrators): "Password12", "Welcome123", "Passw0rd!!" and "Qwerty123!" keep every
character rule and are still among the first guesses of any cracker (a word or keyboard row
with the usual digits and symbols appended), which is what zxcvbn's dictionaries and
patterns see. The user name and display name are given to it as words to avoid.

Hashes are scrypt (hashlib, OpenSSL) with a random 16-byte salt per password, stored as
``scrypt$n$r$p$salt$hash`` (base64), so the cost can be raised later and old hashes still
verify. Nothing here logs.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

#: scrypt cost: 2**14 x 8 x 1 needs 16 MiB and about 50 ms; OWASP's minimum is 2**17 x 8 x 1
#: for new systems with memory to spare, so it is a parameter (PasswordRules.scrypt_n).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32


@dataclass(frozen=True)
class PasswordRules:
    min_length: int = 10
    min_length_administrator: int = 12
    min_classes: int = 3           # of lower case, upper case, digits, other characters
    max_digit_run: int = 3         # 1234, 4321 and 8888 (4 digits) are refused
    rotation_days: dict | None = None  # role -> days; None: administrators every 30 days
    scrypt_n: int = SCRYPT_N
    min_score: int = 3                 # zxcvbn's 0-4: 3 is about 10**8 guesses
    min_score_administrator: int = 4   # about 10**10 guesses

    def score(self, role: str) -> int:
        return self.min_score_administrator if role == "administrator" else self.min_score

    def rotation(self, role: str) -> int | None:
        days = self.rotation_days if self.rotation_days is not None else {"administrator": 30}
        return days.get(role)

    def minimum(self, role: str) -> int:
        return self.min_length_administrator if role == "administrator" else self.min_length


RULES = PasswordRules()

#: Every code `problems` may return, with its English meaning (the catalogue words them).
PROBLEMS = {
    "too_short": "shorter than the minimum length",
    "too_few_classes": "too few kinds of characters (lower case, upper case, digits, others)",
    "digit_run": "a simple run of digits (123456, 654321, 888888)",
    "date": "a date or birthday (19850612, 850612, 1985-06-12, 12/06/1985)",
    "contains_username": "contains the user name",
    "same_as_before": "the same as the current password",
    "whitespace": "begins or ends with a space",
    "guessable": "easy to guess: a common word, name or keyboard pattern with the usual digits and symbols",
}

#: zxcvbn refuses longer input (its matching is quadratic); a longer password is rated on
#: its first 72 characters.
ZXCVBN_MAX = 72


def strength(password: str, words: tuple[str, ...] = ()) -> int:
    """zxcvbn's score of `password`, 0 (a top-10 guess) to 4 (more than 10**10 guesses);
    `words` (the user name, the display name) count as known to the attacker."""
    from zxcvbn import zxcvbn
    inputs = [w for w in words if w]
    return int(zxcvbn(password[:ZXCVBN_MAX], user_inputs=inputs, max_length=ZXCVBN_MAX)["score"])


def _classes(password: str) -> int:
    return sum((any(c.islower() for c in password), any(c.isupper() for c in password),
                any(c.isdigit() for c in password), any(not c.isalnum() for c in password)))


def has_digit_run(password: str, longest: int = 3) -> bool:
    """Whether `password` has more than `longest` digits in a row that repeat one digit
    (8888) or step by one up or down (1234, 9876, 7890)."""
    for digits in re.findall(r"\d+", password):
        same = up = down = 1
        for before, here in zip(digits, digits[1:]):
            a, b = int(before), int(here)
            same = same + 1 if a == b else 1
            up = up + 1 if b == (a + 1) % 10 else 1
            down = down + 1 if b == (a - 1) % 10 else 1
            if max(same, up, down) > longest:
                return True
    return False


def _valid(year: int, month: int, day: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


def _century(yy: int) -> int:
    return 2000 + yy if yy < 50 else 1900 + yy


def has_date(password: str) -> bool:
    """Whether `password` holds something that reads as a calendar date between 1900 and 2099:
    8 digits (YYYYMMDD, DDMMYYYY, MMDDYYYY), 6 digits (YYMMDD, DDMMYY, MMDDYY), or a date
    written with separators (1985-06-12, 12/06/1985, 1985.6.12, 85-6-12)."""
    for match in re.finditer(r"(?=(\d{8}))", password):
        s = match.group(1)
        for year, month, day in ((s[:4], s[4:6], s[6:]), (s[4:], s[2:4], s[:2]), (s[4:], s[:2], s[2:4])):
            if 1900 <= int(year) <= 2099 and _valid(int(year), int(month), int(day)):
                return True
    for match in re.finditer(r"(?<!\d)(?=(\d{6})(?!\d))", password):
        s = match.group(1)
        for yy, month, day in ((s[:2], s[2:4], s[4:]), (s[4:], s[2:4], s[:2]), (s[4:], s[:2], s[2:4])):
            if _valid(_century(int(yy)), int(month), int(day)):
                return True
    for match in re.finditer(r"(\d{1,4})[-/.年](\d{1,2})[-/.月](\d{1,4})", password):
        a, b, c = (int(x) for x in match.groups())
        candidates = [(a, b, c), (c, b, a), (c, a, b)]
        for year, month, day in candidates:
            year = _century(year) if year < 100 else year
            if 1900 <= year <= 2099 and _valid(year, month, day):
                return True
    return False


def problems(password: str, *, username: str = "", role: str = "agent",
             rules: PasswordRules = RULES, display_name: str = "") -> list[str]:
    """The codes (`PROBLEMS`) of every rule `password` breaks; [] when it is acceptable.
    "guessable" (zxcvbn) is added only when the client's own rules all pass, so that the
    person is told first what those rules say."""
    found = []
    if len(password) < rules.minimum(role):
        found.append("too_short")
    if _classes(password) < rules.min_classes:
        found.append("too_few_classes")
    if has_digit_run(password, rules.max_digit_run):
        found.append("digit_run")
    if has_date(password):
        found.append("date")
    if username and len(username) >= 3 and username.lower() in password.lower():
        found.append("contains_username")
    if password != password.strip():
        found.append("whitespace")
    if not found and password and strength(password, (username, display_name)) < rules.score(role):
        found.append("guessable")
    return found


def rotation_due(role: str, changed_at: dt.datetime, now: dt.datetime, rules: PasswordRules = RULES) -> bool:
    """Whether an account of `role` whose password was set at `changed_at` must change it at `now`."""
    days = rules.rotation(role)
    return days is not None and now - changed_at >= dt.timedelta(days=days)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, rules: PasswordRules = RULES) -> str:
    """A new scrypt hash of `password` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=rules.scrypt_n, r=SCRYPT_R, p=SCRYPT_P,
                         maxmem=256 * 1024 * 1024, dklen=KEY_BYTES)
    return f"scrypt${rules.scrypt_n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=256 * 1024 * 1024, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.lru_cache(maxsize=4)
def dummy_hash(scrypt_n: int = SCRYPT_N) -> str:
    """A hash (at the cost new passwords get) to check against when the user name is unknown,
    so that a wrong name costs the same time as a wrong password (no user-name discovery by
    timing)."""
    return hash_password(secrets.token_urlsafe(16), PasswordRules(scrypt_n=scrypt_n))
