"""What the operator API reads and answers: pydantic models, built from the contract's types.

The contract counts time in simulated Unix seconds; an operator reads clock times, so
every instant is rendered as an ISO 8601 string in the API's time zone (the scenario's).
Durations stay simulated seconds (``*_s``).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from hes_sim.hes.commands.lifecycle import (
    Command,
    CommandState,
    CommandType,
    FailureReason,
    Transition,
)
from hes_sim.hes.operations import (
    Connectivity,
    Health,
    LinkStats,
    MeterDetail,
    MeterSummary,
    RelayState,
    SilentMeter,
)
from hes_sim.hes.records import ReadRecord

log = structlog.get_logger(__name__)
DEFAULT_DEADLINE_S = 3600.0
MAX_DEADLINE_S = 30 * 86400.0  # a month: longer is a mistake (1e300 could not even be shown)


def iso(at: float, tz: tzinfo) -> str:
    """``at`` in ``tz``. A time no datetime can hold (a deadline stored before requests
    were bounded) is clamped to the last or first one that can, and logged: one bad row
    must not make every listing that holds it fail."""
    try:
        return datetime.fromtimestamp(at, tz).isoformat()
    except (OverflowError, ValueError, OSError):
        log.warning("api_time_unrenderable", seconds=at)
        if at > 0:
            return datetime.max.replace(tzinfo=tz).isoformat()
        return datetime.min.replace(tzinfo=tz).isoformat()  # NaN too


def iso_or_none(at: float | None, tz: tzinfo) -> str | None:
    return None if at is None else iso(at, tz)


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorOut(Schema):
    detail: str = Field(description="what went wrong, for a person")


class ConflictOut(ErrorOut):
    command_id: str = Field(description="the command first stored under the idempotency key")


class CommandRequest(Schema):
    meter_id: str = Field(min_length=1, max_length=64)
    type: CommandType
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="a repeated request with the same key returns the first command "
        "(the Idempotency-Key header does the same)",
    )
    deadline_s: float = Field(
        default=DEFAULT_DEADLINE_S,
        gt=0,
        le=MAX_DEADLINE_S,
        allow_inf_nan=False,
        description="simulated seconds from now after which the command expires (at most 30 days)",
    )
    parameters: dict[str, JsonValue] = Field(default_factory=dict)


class MeterOut(Schema):
    meter_id: str
    kind: str
    cell: str | None
    feeder: str | None
    dt: str | None
    state: Connectivity
    last_seen: str | None = Field(description="last message of any kind from the meter")
    relay: RelayState

    @classmethod
    def of(cls, meter: MeterSummary, tz: tzinfo) -> MeterOut:
        return cls(
            meter_id=meter.meter_id,
            kind=meter.kind,
            cell=meter.cell,
            feeder=meter.feeder,
            dt=meter.dt,
            state=meter.state,
            last_seen=iso_or_none(meter.last_seen, tz),
            relay=meter.relay,
        )


class MeterPage(Schema):
    meters: list[MeterOut]
    limit: int
    offset: int


class ReadOut(Schema):
    meter_id: str
    interval_end: str
    layout: str
    voltage_v: float
    current_a: float
    wh_import: int
    wh_export: int
    vah_import: int
    vah_export: int
    registers: dict[str, int]
    received_at: str
    delivery_delay_s: float = Field(description="interval end to stored, simulated seconds")

    @classmethod
    def of(cls, read: ReadRecord, tz: tzinfo) -> ReadOut:
        return cls(
            meter_id=read.meter_id,
            interval_end=iso(read.interval_end, tz),
            layout=read.layout,
            voltage_v=read.voltage_v,
            current_a=read.current_a,
            wh_import=read.wh_import,
            wh_export=read.wh_export,
            vah_import=read.vah_import,
            vah_export=read.vah_export,
            registers=dict(read.registers),
            received_at=iso(read.received_at, tz),
            delivery_delay_s=round(read.received_at - read.interval_end, 3),
        )


class ReadPage(Schema):
    meter_id: str
    start: str
    end: str = Field(description="exclusive: reads with start <= interval_end < end")
    limit: int
    reads: list[ReadOut]


class LinkOut(Schema):
    state_since: str | None
    uptime_share: float | None = Field(description="online time / observed time")
    transitions: int = Field(description="online <-> offline changes seen")
    reads_stored: int
    delivery_delay_p95_s: float | None
    command_round_trip_p95_s: float | None

    @classmethod
    def of(cls, link: LinkStats, tz: tzinfo) -> LinkOut:
        return cls(
            state_since=iso_or_none(link.state_since, tz),
            uptime_share=link.uptime_share,
            transitions=link.transitions,
            reads_stored=link.reads_stored,
            delivery_delay_p95_s=link.delivery_delay_p95_s,
            command_round_trip_p95_s=link.command_round_trip_p95_s,
        )


class MeterDetailOut(MeterOut):
    last_read: ReadOut | None
    link: LinkOut
    open_commands: list[str] = Field(description="ids of the meter's commands not yet terminal")

    @classmethod
    def of_detail(cls, detail: MeterDetail, tz: tzinfo) -> MeterDetailOut:
        summary = MeterOut.of(detail.summary, tz)
        return cls(
            **summary.model_dump(),
            last_read=None if detail.last_read is None else ReadOut.of(detail.last_read, tz),
            link=LinkOut.of(detail.link, tz),
            open_commands=list(detail.open_commands),
        )


class TransitionOut(Schema):
    state: CommandState
    at: str
    detail: str

    @classmethod
    def of(cls, step: Transition, tz: tzinfo) -> TransitionOut:
        return cls(state=step.state, at=iso(step.at, tz), detail=step.detail)


class CommandOut(Schema):
    command_id: str
    meter_id: str
    type: CommandType
    state: CommandState
    done: bool = Field(description="the state is terminal: confirmed, failed or expired")
    failure: FailureReason | None
    idempotency_key: str
    created_at: str
    deadline: str
    attempts: int
    next_attempt_at: str
    parameters: dict[str, Any]
    result: dict[str, Any] | None = Field(description="what the meter answered, once done")
    history: list[TransitionOut] = Field(description="every transition, oldest first")

    @classmethod
    def of(cls, command: Command, tz: tzinfo) -> CommandOut:
        return cls(
            command_id=command.command_id,
            meter_id=command.meter_id,
            type=command.type,
            state=command.state,
            done=command.done,
            failure=command.failure,
            idempotency_key=command.idempotency_key,
            created_at=iso(command.created_at, tz),
            deadline=iso(command.deadline, tz),
            attempts=command.attempts,
            next_attempt_at=iso(command.next_attempt_at, tz),
            parameters=dict(command.parameters),
            result=None if command.result is None else dict(command.result),
            history=[TransitionOut.of(step, tz) for step in command.history],
        )


class CommandList(Schema):
    commands: list[CommandOut]


class SilentMeterOut(Schema):
    meter_id: str
    last_seen: str | None = Field(description="None: never heard from")
    silent_for_s: float

    @classmethod
    def of(cls, meter: SilentMeter, tz: tzinfo) -> SilentMeterOut:
        return cls(
            meter_id=meter.meter_id,
            last_seen=iso_or_none(meter.last_seen, tz),
            silent_for_s=meter.silent_for_s,
        )


class SilentReport(Schema):
    silent_for_s: float
    as_of: str = Field(description="the simulated time of the report")
    meters: list[SilentMeterOut]


class HealthOut(Schema):
    healthy: bool
    broker_connected: bool
    sim_time: str
    meters_known: int
    meters_online: int
    ingest_queue_depth: int
    open_commands: int

    @classmethod
    def of(cls, health: Health, tz: tzinfo) -> HealthOut:
        return cls(
            healthy=health.healthy,
            broker_connected=health.broker_connected,
            sim_time=iso(health.sim_time, tz),
            meters_known=health.meters_known,
            meters_online=health.meters_online,
            ingest_queue_depth=health.ingest_queue_depth,
            open_commands=health.open_commands,
        )


class Liveness(Schema):
    status: str
