"""What an operator can ask of the head-end: the one interface behind the HTTP API.

The API and the CLI speak only to this protocol, so they are tested against a fake and
the head-end can change its insides freely. Times are simulated Unix seconds, durations
simulated seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from hes_sim.errors import HesSimError
from hes_sim.hes.commands.lifecycle import Command, CommandState, CommandType
from hes_sim.hes.records import ReadRecord

DEFAULT_SILENCE_S = 24 * 3600.0  # the utility's contract: silent for a day is non-communicating


class NotFoundError(HesSimError):
    """No meter or command by that id."""


class InvalidRequestError(HesSimError):
    """A request the head-end refuses before doing anything (bad parameters)."""


class IdempotencyConflictError(InvalidRequestError):
    """An idempotency key already used for another request (meter, type or parameters)."""

    def __init__(self, message: str, *, command_id: str) -> None:
        super().__init__(message)
        self.command_id = command_id  # the command first stored under the key


class Connectivity(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # never heard of since the head-end started


class RelayState(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MeterFilter:
    state: Connectivity | None = None
    cell: str | None = None
    feeder: str | None = None
    dt: str | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class MeterSummary:
    meter_id: str
    kind: str  # MeterKind value
    cell: str | None
    feeder: str | None
    dt: str | None
    state: Connectivity
    last_seen: float | None  # last message of any kind from the meter
    relay: RelayState  # as last read back or reported by a control event


@dataclass(frozen=True, slots=True)
class LinkStats:
    state_since: float | None
    uptime_share: float | None  # online time / observed time, None before any observation
    transitions: int  # online <-> offline changes seen
    reads_stored: int
    delivery_delay_p95_s: float | None
    command_round_trip_p95_s: float | None


@dataclass(frozen=True, slots=True)
class MeterDetail:
    summary: MeterSummary
    last_read: ReadRecord | None
    link: LinkStats
    open_commands: list[str] = field(default_factory=list)  # command ids not yet terminal


@dataclass(frozen=True, slots=True)
class SilentMeter:
    meter_id: str
    last_seen: float | None  # None: never heard from
    silent_for_s: float


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    broker_connected: bool
    sim_time: float
    meters_known: int
    meters_online: int
    ingest_queue_depth: int
    open_commands: int


@dataclass(frozen=True, slots=True)
class AccountStep:
    state: str
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class BalanceAlert:
    """A low-balance alert an account raised (as an SMS to the consumer would go)."""

    threshold: Decimal  # share of the last recharge; 0: the balance reached zero
    level: Decimal  # rupees
    balance: Decimal  # after the posting that crossed it
    at: float


@dataclass(frozen=True, slots=True)
class AccountView:
    meter_id: str
    consumer_id: str
    mode: str  # postpaid or prepaid
    state: str  # the prepaid account's state (in_credit, low, disconnected, ...)
    balance: Decimal  # rupees
    supply_on: bool
    grace_until: float | None
    history: list[AccountStep]
    alerts: list[BalanceAlert] = field(default_factory=list)  # oldest first, the newest kept


@dataclass(frozen=True, slots=True)
class RechargeView:
    meter_id: str
    balance: Decimal
    state: str
    reconnect_command: str | None  # the reconnect it asked for, when supply was off


class Operations(Protocol):
    async def meters(self, where: MeterFilter) -> list[MeterSummary]: ...

    async def meter(self, meter_id: str) -> MeterDetail:
        """Raises NotFoundError for an unknown meter."""
        ...

    async def submit(
        self,
        meter_id: str,
        kind: CommandType,
        *,
        idempotency_key: str | None,
        deadline_s: float,
        parameters: dict[str, object],
    ) -> Command:
        """Raises NotFoundError (unknown meter) or InvalidRequestError (bad parameters).

        The same idempotency key returns the command first stored under it.
        """
        ...

    async def command(self, command_id: str) -> Command:
        """The command with its full history; raises NotFoundError."""
        ...

    async def commands(
        self, meter_id: str | None, state: CommandState | None, limit: int
    ) -> list[Command]: ...

    async def reads(self, meter_id: str, start: float, end: float, limit: int) -> list[ReadRecord]:
        """Block-load reads with ``start <= interval_end < end``; raises NotFoundError."""
        ...

    async def non_communicating(self, silent_for_s: float) -> list[SilentMeter]:
        """Meters not heard from for at least ``silent_for_s`` (never heard: since start)."""
        ...

    def health(self) -> Health: ...

    async def account(self, meter_id: str) -> AccountView:
        """The consumer account of a meter; NotFoundError without prepaid accounts."""
        ...

    async def recharge(self, meter_id: str, amount: Decimal, reference: str) -> RechargeView:
        """Credit once per reference; a disconnected consumer gets a reconnect at once.
        InvalidRequestError for a postpaid account, a bad amount, or a reference reused
        with another amount."""
        ...
