"""What a read, a push-setup change or a time sync does with its meter, in one attempt
(relay switches are in ``relay_switch``).

The dispatcher opens the association and passes each executor an ``Attempt``: the command,
the time, where reads go, and two callbacks: ``checkpoint`` stores the steps taken so far
(before the next one that reaches the meter), ``fail`` ends the attempt with a reason (the
lifecycle retries it when the reason allows). An executor moves the command on
(acknowledge, confirm) itself; an exception it raises is the dispatcher's to classify
(timeout, link down, bad answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from hes_sim.clock import SimClock
from hes_sim.events import EventBus, ReadsRecovered, ReadStored
from hes_sim.hes import profile_read
from hes_sim.hes.commands.lifecycle import Command, CommandType, FailureReason
from hes_sim.hes.commands.parameters import (
    Parameters,
    ProfileName,
    PushSetupParameters,
    ReadProfileParameters,
)
from hes_sim.hes.meter_sessions import MeterConnection
from hes_sim.hes.records import ReadRecord
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.xdlms import DataAccessResult, Reference

CLOCK = Reference(8, bytes([0, 0, 1, 0, 0, 255]), 2)  # the clock's time attribute
# simulated: how far the clock read back may be from the head-end's time while the read
# was under way (the meter's clock runs on; a COSEM date-time is to the hundredth)
CLOCK_TOLERANCE_S = 5.0
PUSH_SETUP = bytes([0, 0, 25, 9, 0, 255])  # the block-load push
# push setup (class 40) attributes by parameter name: attribute index and A-XDR type
PUSH_ATTRIBUTES = {
    "randomisation_start_interval": (5, Tag.LONG_UNSIGNED),
    "number_of_retries": (6, Tag.UNSIGNED),
    "repetition_delay": (7, Tag.LONG_UNSIGNED),
}


class ReadSink(Protocol):
    async def add_reads(
        self, reads: Sequence[ReadRecord], stored_at: float, *, recovered: bool = False
    ) -> list[bool]: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at a command: what an executor gets besides its meter's connection."""

    command: Command
    clock: SimClock
    tz: tzinfo  # the meters' local time, for the COSEM date-times written
    reads: ReadSink
    bus: EventBus
    checkpoint: Callable[[], Awaitable[object]]  # store the steps so far
    fail: Callable[[FailureReason, str], None]  # this attempt failed (retried if allowed)
    look_first: bool = False  # relay: an earlier attempt may have switched it already
    resumed: bool = False  # the command was caught mid-attempt by a restart

    def now(self) -> float:
        return self.clock.now()


async def execute(attempt: Attempt, meter: MeterConnection, parameters: Parameters) -> None:
    """Carry out a command that is not a relay switch."""
    if isinstance(parameters, ReadProfileParameters):
        await read_profile(attempt, meter, parameters)
    elif isinstance(parameters, PushSetupParameters):
        await push_setup(attempt, meter, parameters)
    elif attempt.command.type is CommandType.TIME_SYNC:
        await time_sync(attempt, meter)
    elif attempt.command.type is CommandType.READ_INSTANTANEOUS:
        await read_instantaneous(attempt, meter)
    else:  # pragma: no cover - the dispatcher sends relay commands to relay_switch
        raise TypeError(f"no executor for {attempt.command.type}")


async def time_sync(attempt: Attempt, meter: MeterConnection) -> None:
    """Set the clock, then read it back: confirmed when it shows the time set, run on by
    as long as the meter can have counted since (within CLOCK_TOLERANCE_S)."""
    command = attempt.command
    at = attempt.now()
    stamp = cosem_datetime.encode(datetime.fromtimestamp(at, tz=attempt.tz))
    result = await meter.set(CLOCK, axdr.octets(stamp))
    if result is not DataAccessResult.SUCCESS:
        attempt.fail(FailureReason.NEGATIVE_RESPONSE, result.name)
        return
    set_by = attempt.now()  # the meter took the time somewhere between ``at`` and now
    command.result = {"clock_set_to": at}
    command.acknowledge(set_by, "clock set")
    await attempt.checkpoint()
    before = attempt.now()
    meter_time = cosem_datetime.decode((await meter.get(CLOCK)).bytes_value).timestamp()
    after = attempt.now()
    command.result = {"clock_set_to": at, "clock_read_back": meter_time}
    # since the set, the meter's clock ran on at least (before - set_by), at most (after - at)
    earliest, latest = at + (before - set_by), after
    off = min(0.0, meter_time - earliest) + max(0.0, meter_time - latest)
    if abs(off) <= CLOCK_TOLERANCE_S:
        command.confirm(attempt.now(), "clock read back as set")
    else:
        attempt.fail(FailureReason.NOT_CONFIRMED, f"clock read back {off:+.0f} s off the time set")


async def read_instantaneous(attempt: Attempt, meter: MeterConnection) -> None:
    values = await profile_read.read_instantaneous(meter)
    now = attempt.now()
    attempt.command.result = values
    attempt.command.acknowledge(now, f"{len(values)} values read")
    attempt.command.confirm(now, "a read has no further effect to confirm")


async def read_profile(
    attempt: Attempt, meter: MeterConnection, parameters: ReadProfileParameters
) -> None:
    command = attempt.command
    if parameters.profile is not ProfileName.BLOCK_LOAD:  # pragma: no cover - one profile
        attempt.fail(FailureReason.REJECTED, f"{parameters.profile} not readable")
        return
    records = await profile_read.read_block_load(
        meter, parameters.start, parameters.end, attempt.tz, received_at=attempt.now()
    )
    command.acknowledge(attempt.now(), f"{len(records)} entries read")
    await attempt.checkpoint()
    # stored once by meter and interval: what was pushed already is left as it is
    # read back from the profile: not a push, so not in the delivery-delay figures
    stored_at = attempt.now()
    flags = await attempt.reads.add_reads(records, stored_at, recovered=True)
    new = sum(flags)
    for record, fresh in zip(records, flags, strict=True):
        if fresh:  # charged by prepaid and exported like any read; not a push's delay
            attempt.bus.emit(ReadStored(record.meter_id, record.interval_end,
                                        stored_at - record.interval_end, record.wh_import,
                                        recovered=True))  # fmt: skip
    command.result = {"entries": len(records), "stored_new": new}
    command.confirm(attempt.now(), f"{new} of {len(records)} entries stored new")
    attempt.bus.emit(ReadsRecovered(command.meter_id, command.command_id, new))


async def push_setup(
    attempt: Attempt, meter: MeterConnection, parameters: PushSetupParameters
) -> None:
    command = attempt.command
    wanted = parameters.given()
    for name, value in wanted.items():
        index, tag = PUSH_ATTRIBUTES[name]
        result = await meter.set(Reference(40, PUSH_SETUP, index), Data(tag, value))
        if result is not DataAccessResult.SUCCESS:
            attempt.fail(FailureReason.NEGATIVE_RESPONSE, f"{name}: {result.name}")
            return
    command.acknowledge(attempt.now(), f"set {', '.join(wanted)}")
    await attempt.checkpoint()
    read_back: dict[str, object] = {}
    for name in wanted:
        index, _tag = PUSH_ATTRIBUTES[name]
        read_back[name] = (await meter.get(Reference(40, PUSH_SETUP, index))).value
    command.result = read_back
    if read_back == wanted:
        command.confirm(attempt.now(), "read back equal")
    else:
        attempt.fail(FailureReason.NOT_CONFIRMED, f"read back {read_back}")
