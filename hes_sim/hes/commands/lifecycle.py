"""A command's life, as a table-driven state machine with an audit trail. Pure: the caller
passes the time of each step (simulated seconds).

    created -> queued -> sent -> acknowledged -> confirmed
                 ^         |          |
                 +---------+----------+   (retriable failure before the deadline)
    any live state -> failed (negative response, rejected, internal, or retries used up)
    any live state -> expired (deadline passed)
    sent -> queued, the attempt withdrawn (the meter was not asked: the store failed)

``acknowledged`` is the meter's positive DLMS answer; ``confirmed`` is the effect seen
(the relay state read back, or the control event received).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from enum import StrEnum
from typing import Protocol, assert_never

from hes_sim.backoff import Backoff
from hes_sim.errors import HesSimError


class CommandType(StrEnum):
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    READ_INSTANTANEOUS = "read_instantaneous"
    READ_PROFILE = "read_profile"
    TIME_SYNC = "time_sync"
    PUSH_SETUP = "push_setup"


class CommandState(StrEnum):
    CREATED = "created"
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    EXPIRED = "expired"


class FailureReason(StrEnum):
    NEGATIVE_RESPONSE = "negative_response"  # the meter answered, and said no
    TIMEOUT = "timeout"  # no answer in time
    LINK_DOWN = "link_down"  # the meter or the broker could not be reached
    REJECTED = "rejected"  # refused before sending (bad parameters, unknown meter)
    NOT_CONFIRMED = "not_confirmed"  # acknowledged, but the effect did not show
    BAD_ANSWER = "bad_answer"  # refused, undecipherable, or not the answer expected
    INTERNAL = "internal"  # a bug in the head-end (see its log): not retried, it would recur


# the meters' local time (IST, no daylight saving): the default zone of the COSEM
# date-times the head-end writes and reads; defined once here, for every module
INDIA = timezone(timedelta(hours=5, minutes=30))


S = CommandState
TERMINAL = frozenset({S.CONFIRMED, S.FAILED, S.EXPIRED})
ALLOWED: dict[CommandState, frozenset[CommandState]] = {
    S.CREATED: frozenset({S.QUEUED, S.FAILED, S.EXPIRED}),
    S.QUEUED: frozenset({S.SENT, S.FAILED, S.EXPIRED}),
    S.SENT: frozenset({S.ACKNOWLEDGED, S.QUEUED, S.FAILED, S.EXPIRED}),
    S.ACKNOWLEDGED: frozenset({S.CONFIRMED, S.QUEUED, S.FAILED, S.EXPIRED}),
}
RETRIABLE = frozenset({FailureReason.TIMEOUT, FailureReason.LINK_DOWN, FailureReason.BAD_ANSWER})
# lower runs first: a consumer waiting for light goes ahead of everything else
PRIORITY = {
    CommandType.RECONNECT: 0,
    CommandType.DISCONNECT: 1,
    CommandType.TIME_SYNC: 2,
    CommandType.PUSH_SETUP: 3,
    CommandType.READ_INSTANTANEOUS: 4,
    CommandType.READ_PROFILE: 5,
}


class InvalidTransition(HesSimError):  # noqa: N818 - a transition, not an error of the caller's data
    """A step the lifecycle does not allow (a bug in the caller, never the meter's fault)."""


@dataclass(frozen=True, slots=True)
class Transition:
    state: CommandState
    at: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 30.0  # simulated seconds
    cap_s: float = 900.0


@dataclass(slots=True)
class Command:
    command_id: str
    meter_id: str
    type: CommandType
    idempotency_key: str
    created_at: float
    deadline: float
    parameters: dict[str, object] = field(default_factory=dict)
    state: CommandState = S.CREATED
    attempts: int = 0
    next_attempt_at: float = 0.0
    failure: FailureReason | None = None
    history: list[Transition] = field(default_factory=list)
    result: dict[str, object] | None = None  # what the meter answered (JSON-ready), when done

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append(Transition(S.CREATED, self.created_at))
        if not self.next_attempt_at:
            self.next_attempt_at = self.created_at

    @property
    def priority(self) -> int:
        return PRIORITY[self.type]

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def _move(self, to: CommandState, at: float, detail: str = "") -> None:
        if to not in ALLOWED.get(self.state, frozenset()):
            raise InvalidTransition(f"{self.command_id}: {self.state} -> {to} is not allowed")
        self.state = to
        self.history.append(Transition(to, at, detail))

    def queue(self, at: float, detail: str = "") -> None:
        self._move(S.QUEUED, at, detail)

    def send(self, at: float, detail: str = "") -> None:
        self.attempts += 1
        self._move(S.SENT, at, f"attempt {self.attempts}" + (f": {detail}" if detail else ""))

    def withdraw(self, at: float, retry_at: float, detail: str) -> None:
        """Back to queued from sent before the meter was asked anything: the attempt does
        not count (a relay needs no look first, and no retry is used up)."""
        if self.state is not S.SENT:
            raise InvalidTransition(f"{self.command_id}: only a sent command is withdrawn")
        self.attempts -= 1
        self.next_attempt_at = retry_at
        self._move(S.QUEUED, at, f"not sent: {detail}; retry at {retry_at:.0f}")

    def acknowledge(self, at: float, detail: str = "") -> None:
        self._move(S.ACKNOWLEDGED, at, detail)

    def confirm(self, at: float, detail: str = "") -> None:
        self._move(S.CONFIRMED, at, detail)

    def fail(self, at: float, reason: FailureReason, policy: RetryPolicy, rng: random.Random,
             detail: str = "") -> None:  # fmt: skip
        """Retry later (back to queued) when the reason allows and time remains, else fail."""
        if reason in RETRIABLE and self.attempts < policy.max_attempts:
            backoff = Backoff(rng, policy.base_s, policy.cap_s)
            backoff.attempt = self.attempts - 1
            retry_at = at + backoff.next_delay()
            if retry_at < self.deadline:
                self.next_attempt_at = retry_at
                self._move(S.QUEUED, at, f"{reason}: {detail}; retry at {retry_at:.0f}")
                return
        self.failure = reason
        self._move(S.FAILED, at, f"{reason}: {detail}")

    def resume(self, at: float) -> bool:
        """After a head-end restart: queued again, whatever open state the last one left
        it in. True when it was caught mid-attempt (whether the meter acted is unknown)."""
        match self.state:
            case S.CREATED:
                # stored but never queued (older head-ends wrote the two apart): not sent
                self._move(S.QUEUED, at, "head-end restarted before queueing it")
                return False
            case S.QUEUED | S.CONFIRMED | S.FAILED | S.EXPIRED:
                return False  # waiting already, or done
            case S.SENT | S.ACKNOWLEDGED:
                self._move(S.QUEUED, at, f"head-end restarted during attempt {self.attempts}")
                return True
            case unknown:
                assert_never(unknown)

    def expire_if_due(self, now: float) -> bool:
        if self.done or now < self.deadline:
            return False
        self._move(S.EXPIRED, now, "deadline passed")
        return True


class CommandSubmitter(Protocol):
    """What the head-end's other parts (backfill, the operator desk, scenario events)
    need of the command dispatcher."""

    @property
    def open_count(self) -> int:
        """Commands not yet in a terminal state."""
        ...

    async def submit(
        self,
        meter_id: str,
        kind: CommandType,
        *,
        idempotency_key: str | None = None,
        deadline_s: float = 3600.0,
        parameters: dict[str, object] | None = None,
        reason: str = "",
    ) -> Command: ...
