"""The values a case, a phone, a campaign, an attempt and a hopper state can take.

Plain enums, importing nothing: the pure policy (campaigns/policy.py) and the presets use
them without loading SQLAlchemy; the tables (campaigns/models.py) store their values.
"""
from __future__ import annotations

import enum


class CaseStatus(str, enum.Enum):
    """Where a case stands. The policy decides what each allows (campaigns/policy.py)."""

    NEW = "new"
    ACTIVE = "active"
    PROMISE_TO_PAY = "promise_to_pay"
    PAID = "paid"
    CLIENT_STOP = "client_stop"          # 停催: the bank says stop
    COMPLAINT = "complaint"
    DISPUTE = "dispute"                  # 金额异议 / 否认透支
    FRAUD_CLAIM = "fraud_claim"          # 否认办卡
    DECEASED = "deceased"
    IMPRISONED = "imprisoned"
    HARDSHIP = "hardship"
    LOST_CONTACT = "lost_contact"
    CLOSED = "closed"


class PhoneRole(str, enum.Enum):
    """Whose phone it is; also the dial order (own mobile, home, work, then contacts)."""

    OWN_MOBILE = "own_mobile"
    HOME = "home"
    WORK = "work"
    CONTACT = "contact"


class CampaignStatus(str, enum.Enum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class AttemptState(str, enum.Enum):
    """An attempt row is written PLANNED before the Originate is sent, so that a crash can
    never leave a dial without its row; DIALING once Asterisk has it; ENDED with an outcome."""

    PLANNED = "planned"
    DIALING = "dialing"
    ENDED = "ended"


class HopperPhase(enum.IntEnum):
    """Where a case stands in its campaign's hopper (campaigns/hopper.py).

    READY: the policy allowed a dial when last asked, and allows it until `valid_until`.
    WAITING: asked; not dialable before `eligible_at` (a lower bound), then READY until
    `valid_until`. NEVER: nothing will allow a dial by itself (a stop status, no number left).
    IN_CALL: a call of the case is in progress. DUE: to be asked again now (a fact about the
    case changed, or it is new). DEFERRED: to be asked again, not dialable before `eligible_at`
    (its last answer expired at a calling-window edge)."""

    READY = 1
    WAITING = 2
    NEVER = 3
    IN_CALL = 4
    DUE = 5
    DEFERRED = 6
