"""What ``Account.disconnection_due`` answers: disconnect now, wait until an instant, or
nothing to do, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    DISCONNECT = "disconnect"  # now
    WAIT = "wait"  # due, or becoming due, but not before ``until``
    NONE = "none"  # nothing to do


class Reason(StrEnum):
    CREDIT_EXHAUSTED = "credit_exhausted"  # with DISCONNECT
    POSTPAID = "postpaid"  # with NONE ...
    IN_CREDIT = "in_credit"
    DISCONNECTED = "disconnected"
    RECONNECT_PENDING = "reconnect_pending"
    GRACE = "grace"  # with WAIT ...
    EMERGENCY_CREDIT = "emergency_credit"
    HOLIDAY = "holiday"  # ... and the policy's verdicts, by the same names
    WEEKDAY = "weekday"
    FORBIDDEN_HOURS = "forbidden_hours"
    OUTSIDE_HOURS = "outside_hours"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason
    until: float | None = None  # with WAIT: the earliest instant it may become DISCONNECT

    @property
    def disconnect_now(self) -> bool:
        return self.action is Action.DISCONNECT
