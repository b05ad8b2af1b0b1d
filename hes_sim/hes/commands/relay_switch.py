"""Disconnect and reconnect: switching a meter's relay (disconnect control, class 70) and
confirming the switch.

A switch is confirmed by whichever comes first: the relay's ``output_state`` read back,
or the meter's control event (201 disconnected / 202 connected) stamped at or after the
send. A relay may switch after it answered, so when the read back shows it unswitched,
its control event is still awaited a little, after the association is released.

An attempt that may follow an earlier one which reached the meter (``look_first``) reads
the relay before acting and confirms without switching when the switch shows: a meter is
never switched twice for one command.

``RelaySwitch`` is owned by the dispatcher, which passes it every ``MeterEventReceived``
and, per attempt: ``switch`` (in the association), ``await_late_event`` (after it) and
``forget`` (when the attempt ends, whatever happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass

import structlog

from hes_sim.errors import HesSimError
from hes_sim.events import MeterEventReceived
from hes_sim.hes.commands.executors import Attempt
from hes_sim.hes.commands.lifecycle import CommandState, CommandType, FailureReason
from hes_sim.hes.meter_sessions import MeterConnection
from hes_sim.meter_sim.event_logs import EventCode
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.xdlms import DataAccessResult, Reference

log = structlog.get_logger(__name__)

RELAY = bytes([0, 0, 96, 3, 10, 255])
RELAY_OUTPUT_STATE = Reference(70, RELAY, 2)
RELAY_METHOD = {CommandType.DISCONNECT: 1, CommandType.RECONNECT: 2}
# the IS 15959 control event codes a switch writes and pushes: the one table the meter
# simulator writes them from
CONTROL_EVENT = {
    CommandType.DISCONNECT: EventCode.LOAD_SWITCH_DISCONNECTED,
    CommandType.RECONNECT: EventCode.LOAD_SWITCH_CONNECTED,
}
# simulated: how long after a relay read back unswitched its control event may still come
CONTROL_EVENT_GRACE_S = 120.0


class UnexpectedAnswerError(HesSimError):
    """The meter answered, but not with the kind of value the command reads."""


@dataclass(slots=True)
class _ControlWatch:
    """A relay command waiting for its control event (one per meter: one command runs)."""

    code: EventCode
    since: int  # whole simulated seconds: the meter stamps its events to the second
    seen: asyncio.Future[MeterEventReceived]


class RelaySwitch:
    def __init__(self) -> None:
        self._watches: dict[str, _ControlWatch] = {}  # by meter id

    def on_event(self, event: MeterEventReceived) -> None:
        watch = self._watches.get(event.meter_id)
        if (
            watch is not None
            and event.code == watch.code
            and event.at >= watch.since
            and not watch.seen.done()
        ):
            watch.seen.set_result(event)

    def forget(self, meter_id: str) -> None:
        """The attempt on this meter has ended: its control event no longer matters."""
        self._watches.pop(meter_id, None)

    async def switch(self, attempt: Attempt, meter: MeterConnection) -> None:
        command = attempt.command
        closed_wanted = command.type is CommandType.RECONNECT
        if attempt.look_first:
            closed = await relay_closed(meter)
            if closed is closed_wanted:
                found = (
                    "found done after restart"
                    if attempt.resumed
                    else "found done before sending again"
                )
                command.result = {"output_state": closed, "confirmed_by": "read_back"}
                command.acknowledge(attempt.now(), f"{found}: output_state read back {closed}")
                command.confirm(attempt.now(), found)
                return
        watch = self._watch(attempt)
        method = Reference(70, RELAY, RELAY_METHOD[command.type])
        answer = await meter.action(method, Data(Tag.INTEGER, 0))
        if answer.result is not DataAccessResult.SUCCESS:
            attempt.fail(FailureReason.NEGATIVE_RESPONSE, answer.result.name)
            return
        command.acknowledge(attempt.now(), "action-result success")
        await attempt.checkpoint()
        await self._confirm(attempt, meter, watch, closed_wanted=closed_wanted)

    def _watch(self, attempt: Attempt) -> _ControlWatch:
        command = attempt.command
        sent_at = next(t.at for t in reversed(command.history) if t.state is CommandState.SENT)
        watch = _ControlWatch(
            CONTROL_EVENT[command.type],
            math.floor(sent_at),
            asyncio.get_running_loop().create_future(),
        )
        self._watches[command.meter_id] = watch
        return watch

    async def _confirm(
        self, attempt: Attempt, meter: MeterConnection, watch: _ControlWatch, *, closed_wanted: bool
    ) -> None:
        """Read the relay back, unless its control event comes first."""
        command = attempt.command
        read = asyncio.ensure_future(relay_closed(meter))
        try:
            await asyncio.wait((read, watch.seen), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            read.cancel()
            raise
        if watch.seen.done():
            _confirmed_by_event(attempt, watch.seen.result(), closed_wanted=closed_wanted)
            # the read's answer is on its way: take it, so that it is not taken for the
            # answer to the association's next request (the release)
            with contextlib.suppress(TimeoutError, HesSimError, RuntimeError):
                await read
            return
        closed = read.result()
        command.result = {"output_state": closed, "confirmed_by": "read_back"}
        if closed is closed_wanted:
            command.confirm(attempt.now(), f"output_state read back: {closed}")
        else:
            # not switched yet: its control event may still come (await_late_event)
            log.info("relay_not_switched_yet", command_id=command.command_id,
                     meter_id=command.meter_id, output_state=closed)  # fmt: skip

    async def await_late_event(self, attempt: Attempt) -> None:
        """After the association: when the relay read back unswitched, wait a little for
        its control event (a relay may switch after answering), then give up."""
        command = attempt.command
        watch = self._watches.get(command.meter_id)
        if watch is None or command.state is not CommandState.ACKNOWLEDGED:
            return
        grace = max(0.0, min(CONTROL_EVENT_GRACE_S, command.deadline - attempt.now()))
        try:
            async with asyncio.timeout(attempt.clock.wall_seconds(grace)):
                event = await watch.seen
        except TimeoutError:
            closed = (command.result or {}).get("output_state")
            attempt.fail(FailureReason.NOT_CONFIRMED,
                         f"output_state is {closed}, and no control event {int(watch.code)}"
                         f" within {grace:.0f} s")  # fmt: skip
            return
        _confirmed_by_event(attempt, event, closed_wanted=command.type is CommandType.RECONNECT)


def _confirmed_by_event(
    attempt: Attempt, event: MeterEventReceived, *, closed_wanted: bool
) -> None:
    attempt.command.result = {
        "output_state": closed_wanted,
        "confirmed_by": "control_event",
        "event_at": event.at,
    }
    attempt.command.confirm(attempt.now(), f"control event {event.code} stamped {event.at}")


async def relay_closed(meter: MeterConnection) -> bool:
    value = (await meter.get(RELAY_OUTPUT_STATE)).value
    if not isinstance(value, bool):
        raise UnexpectedAnswerError(f"output_state read as {value!r}, not a boolean")
    return value
