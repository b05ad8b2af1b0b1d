"""Carrying commands to meters and following each to its end.

An async context manager owning a TaskGroup: ``commands:scheduler`` wakes when a command
is submitted, when a meter comes online, or when the next retry or deadline is due, and
starts each due command in its own task within its slots (see ``scheduling``: a global
bound, one at a time per meter, a bound per cell). Parameters are checked at submit,
before anything is stored. Every step is written to the store before the next, so a
restarted head-end resumes; a relay command it finds sent or acknowledged reads the
relay before acting, so a meter is never switched twice for one command.

A relay switch is confirmed by whichever comes first: the relay state read back, or the
meter's control event (201 disconnected / 202 connected) stamped at or after the send.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from functools import partial
from types import TracebackType
from typing import Any, Self

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError, HesSimError
from hes_sim.events import (
    CommandFinished,
    Event,
    EventBus,
    MeterEventReceived,
    MeterOnline,
    ReadsRecovered,
)
from hes_sim.hes import profile_read
from hes_sim.hes.commands import parameters as params
from hes_sim.hes.commands import store as rows
from hes_sim.hes.commands.lifecycle import (
    Command,
    CommandState,
    CommandType,
    FailureReason,
    RetryPolicy,
)
from hes_sim.hes.commands.parameters import (
    Parameters,
    ProfileName,
    PushSetupParameters,
    ReadProfileParameters,
)
from hes_sim.hes.commands.scheduling import Slots
from hes_sim.hes.meter_sessions import MeterConnection, MeterSessions
from hes_sim.hes.operations import InvalidRequestError
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.store import SqliteStore
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.topics import MeterState
from hes_sim.protocols.xdlms import DataAccessResult, Reference

log = structlog.get_logger(__name__)

RELAY = bytes([0, 0, 96, 3, 10, 255])
RELAY_OUTPUT_STATE = Reference(70, RELAY, 2)
CLOCK = bytes([0, 0, 1, 0, 0, 255])
PUSH_SETUP = bytes([0, 0, 25, 9, 0, 255])  # the block-load push
RELAY_METHOD = {CommandType.DISCONNECT: 1, CommandType.RECONNECT: 2}
# push setup (class 40) attributes by parameter name: attribute index and A-XDR type
PUSH_ATTRIBUTES = {
    "randomisation_start_interval": (5, Tag.LONG_UNSIGNED),
    "number_of_retries": (6, Tag.UNSIGNED),
    "repetition_delay": (7, Tag.LONG_UNSIGNED),
}
INDIA = timezone(timedelta(hours=5, minutes=30))
IDLE_WAKE_S = 60.0  # simulated: the scheduler looks again at least this often
# simulated: how long after a relay read back unswitched its control event may still come
CONTROL_EVENT_GRACE_S = 120.0


class ControlEvent(IntEnum):
    """IS 15959 control event codes a relay switch writes (and pushes)."""

    LOAD_SWITCH_DISCONNECTED = 201
    LOAD_SWITCH_CONNECTED = 202


CONTROL_EVENT = {
    CommandType.DISCONNECT: ControlEvent.LOAD_SWITCH_DISCONNECTED,
    CommandType.RECONNECT: ControlEvent.LOAD_SWITCH_CONNECTED,
}


class UnexpectedAnswerError(HesSimError):
    """The meter answered, but not with the kind of value the command reads."""


@dataclass(slots=True)
class _ControlWatch:
    """A relay command waiting for its control event (one per meter: one command runs)."""

    code: ControlEvent
    since: int  # whole simulated seconds: the meter stamps its events to the second
    seen: asyncio.Future[MeterEventReceived]


class CommandDispatcher:
    def __init__(
        self,
        store: SqliteStore,
        sessions: MeterSessions,
        presence: MeterPresence,
        clock: SimClock,
        bus: EventBus,
        *,
        concurrency: int = 32,
        retry: RetryPolicy | None = None,
        seed: int = 0,
        tz: timezone = INDIA,
        cell_of: Callable[[str], str | None] = lambda _: None,
        per_cell_limit: int = 8,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._presence = presence
        self._clock = clock
        self._bus = bus
        self._slots = Slots(concurrency, per_cell_limit, cell_of)
        self._retry = retry or RetryPolicy()
        self._rng = random.Random(seed)
        self._tz = tz
        self._open: dict[str, Command] = {}
        self._resumed: set[str] = set()  # caught mid-attempt by a restart; not yet done
        self._watches: dict[str, _ControlWatch] = {}  # by meter id
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        bus.subscribe(self._on_event)

    async def __aenter__(self) -> Self:
        now = self._clock.now()
        for command in await self._store.run_sql(rows.open_commands):
            if command.state in (CommandState.SENT, CommandState.ACKNOWLEDGED):
                # the previous head-end stopped mid-attempt: whether the meter acted is
                # unknown, so the next attempt of a relay command looks before it acts
                command.queue(now, f"head-end restarted during attempt {command.attempts}")
                await self._save(command)
                self._resumed.add(command.command_id)
            self._open[command.command_id] = command  # resumed after a restart
        self._group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._start(self._schedule(), "commands:scheduler")
        return self

    def _start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        assert self._group is not None  # noqa: S101 - started inside the context
        task = self._group.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # commands in flight stop where they are; their state is in the store, and a
        # restarted dispatcher picks them up again
        for task in list(self._tasks):
            task.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MeterOnline):
            self._wake.set()
        elif isinstance(event, MeterEventReceived):
            watch = self._watches.get(event.meter_id)
            if (
                watch is not None
                and event.code == watch.code
                and event.at >= watch.since
                and not watch.seen.done()
            ):
                watch.seen.set_result(event)

    @property
    def open_count(self) -> int:
        """Commands not yet in a terminal state."""
        return len(self._open)

    def open_by_state(self) -> dict[str, int]:
        """Open commands by state (queued ones wait for their meter or their retry time)."""
        return dict(Counter(command.state.value for command in self._open.values()))

    # ---------------------------------------------------------------- submitting

    async def submit(
        self,
        meter_id: str,
        kind: CommandType,
        *,
        idempotency_key: str | None = None,
        deadline_s: float = 3600.0,
        parameters: dict[str, object] | None = None,
    ) -> Command:
        """Store a command (or find the one with the same key) and let the scheduler run it.

        Raises InvalidRequestError, naming the field, when the parameters do not fit
        ``kind``; nothing is stored then.
        """
        checked = params.validate(kind, parameters or {})
        now = self._clock.now()
        command = Command(
            command_id=uuid.uuid4().hex,
            meter_id=meter_id,
            type=kind,
            idempotency_key=idempotency_key or uuid.uuid4().hex,
            created_at=now,
            deadline=now + deadline_s,
            parameters=params.stored(checked),
        )
        stored = await self._store.run_sql(partial(rows.insert, command=command))
        if stored is not command:
            return self._open.get(stored.command_id, stored)
        online = self._online(meter_id)
        command.queue(now, "meter online" if online else "meter offline: waiting")
        await self._save(command)
        self._open[command.command_id] = command
        self._wake.set()
        return command

    async def wait(self, command_id: str) -> Command:
        """Until the command reaches a terminal state."""
        command = self._open.get(command_id)
        if command is None:
            found = await self._store.run_sql(partial(rows.load, command_id=command_id))
            if found is None:
                raise HesSimError(f"no command {command_id}")
            return found
        done = self._finished.setdefault(command_id, asyncio.Event())
        try:
            await done.wait()
        finally:
            self._finished.pop(command_id, None)
        return command

    # ---------------------------------------------------------------- scheduling

    def _online(self, meter_id: str) -> bool:
        presence = self._presence.get(meter_id)
        return presence is not None and presence.state is MeterState.ONLINE

    async def _schedule(self) -> None:
        while True:
            now = self._clock.now()
            next_due = now + IDLE_WAKE_S
            due: list[Command] = []
            for command in list(self._open.values()):
                if command.done or self._slots.is_running(command.command_id):
                    continue  # a running attempt looks at the deadline when it ends
                if command.expire_if_due(now):
                    await self._finish(command)
                    continue
                next_due = min(next_due, command.deadline)
                if command.next_attempt_at > now:
                    next_due = min(next_due, command.next_attempt_at)
                elif self._online(command.meter_id):
                    due.append(command)
            # reconnects first, then by age, within the free slots: a reconnect submitted
            # after many reads does not wait behind them
            for command in self._slots.take(due):
                self._start(self._run(command), f"command:{command.command_id}")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self._clock.wall_seconds(next_due - now))):
                    await self._wake.wait()

    async def _run(self, command: Command) -> None:
        try:
            await self._execute(command)
        except Exception:
            # a bug must not leave the command hanging nor stop the others
            log.exception("command_crashed", command_id=command.command_id)
            if not command.done:
                self._failed(command, FailureReason.REJECTED, "internal error, see the log")
        finally:
            self._slots.release(command.command_id)
        command.expire_if_due(self._clock.now())
        if command.done:
            await self._finish(command)
        else:
            await self._save(command)
        self._wake.set()

    async def _execute(self, command: Command) -> None:
        try:
            parameters = params.validate(command.type, command.parameters)
        except InvalidRequestError as exc:  # stored by a head-end that checked less
            self._failed(command, FailureReason.REJECTED, str(exc))
            return
        # an earlier attempt may have switched the relay before its answer was lost (or
        # before a restart): read it first rather than switch twice
        look_first = command.type in RELAY_METHOD and command.attempts > 0
        command.send(self._clock.now(), "reading the relay first" if look_first else "")
        await self._save(command)
        try:
            async with self._sessions.associate(command.meter_id) as meter:
                await self._carry_out(command, meter, parameters, look_first=look_first)
            watch = self._watches.get(command.meter_id)
            if watch is not None and command.state is CommandState.ACKNOWLEDGED:
                await self._await_control_event(command, watch)
        except TimeoutError:
            self._failed(command, FailureReason.TIMEOUT, "no answer in time")
        except BrokerError as exc:
            self._failed(command, FailureReason.LINK_DOWN, str(exc))
        except (HesSimError, RuntimeError) as exc:
            # refused, undecipherable, or not the answer expected: worth another attempt
            self._failed(command, FailureReason.BAD_ANSWER, str(exc))
        finally:
            self._watches.pop(command.meter_id, None)

    async def _carry_out(
        self,
        command: Command,
        meter: MeterConnection,
        parameters: Parameters,
        *,
        look_first: bool,
    ) -> None:
        if isinstance(parameters, ReadProfileParameters):
            await self._read_profile(command, meter, parameters)
        elif isinstance(parameters, PushSetupParameters):
            await self._push_setup(command, meter, parameters)
        elif command.type is CommandType.TIME_SYNC:
            await self._time_sync(command, meter)
        elif command.type is CommandType.READ_INSTANTANEOUS:
            await self._read_instantaneous(command, meter)
        else:
            await self._switch_relay(command, meter, look_first=look_first)

    # ---------------------------------------------------------------- each command

    async def _time_sync(self, command: Command, meter: MeterConnection) -> None:
        now = self._clock.now
        at = now()
        stamp = cosem_datetime.encode(datetime.fromtimestamp(at, tz=self._tz))
        result = await meter.set(Reference(8, CLOCK, 2), axdr.octets(stamp))
        if result is not DataAccessResult.SUCCESS:
            self._failed(command, FailureReason.NEGATIVE_RESPONSE, result.name)
            return
        command.result = {"clock_set_to": at}
        command.acknowledge(now(), "clock set")
        command.confirm(now(), "clock set")

    async def _read_instantaneous(self, command: Command, meter: MeterConnection) -> None:
        values = await profile_read.read_instantaneous(meter)
        now = self._clock.now()
        command.result = values
        command.acknowledge(now, f"{len(values)} values read")
        command.confirm(now, "a read has no further effect to confirm")

    async def _read_profile(
        self, command: Command, meter: MeterConnection, parameters: ReadProfileParameters
    ) -> None:
        if parameters.profile is not ProfileName.BLOCK_LOAD:  # pragma: no cover - one profile
            self._failed(command, FailureReason.REJECTED, f"{parameters.profile} not readable")
            return
        records = await profile_read.read_block_load(
            meter, parameters.start, parameters.end, self._tz, received_at=self._clock.now()
        )
        command.acknowledge(self._clock.now(), f"{len(records)} entries read")
        await self._save(command)
        # stored once by meter and interval: what was pushed already is left as it is
        flags = await self._store.add_reads(records, self._clock.now())
        new = sum(flags)
        command.result = {"entries": len(records), "stored_new": new}
        command.confirm(self._clock.now(), f"{new} of {len(records)} entries stored new")
        self._bus.emit(ReadsRecovered(command.meter_id, command.command_id, new))

    async def _push_setup(
        self, command: Command, meter: MeterConnection, parameters: PushSetupParameters
    ) -> None:
        wanted = parameters.given()
        for name, value in wanted.items():
            index, tag = PUSH_ATTRIBUTES[name]
            result = await meter.set(Reference(40, PUSH_SETUP, index), Data(tag, value))
            if result is not DataAccessResult.SUCCESS:
                self._failed(command, FailureReason.NEGATIVE_RESPONSE, f"{name}: {result.name}")
                return
        command.acknowledge(self._clock.now(), f"set {', '.join(wanted)}")
        await self._save(command)
        read_back: dict[str, object] = {}
        for name in wanted:
            index, _tag = PUSH_ATTRIBUTES[name]
            read_back[name] = (await meter.get(Reference(40, PUSH_SETUP, index))).value
        command.result = read_back
        if read_back == wanted:
            command.confirm(self._clock.now(), "read back equal")
        else:
            self._failed(command, FailureReason.NOT_CONFIRMED, f"read back {read_back}")

    async def _switch_relay(
        self, command: Command, meter: MeterConnection, *, look_first: bool
    ) -> None:
        closed_wanted = command.type is CommandType.RECONNECT
        if look_first:
            closed = await self._relay_closed(meter)
            if closed is closed_wanted:
                found = (
                    "found done after restart"
                    if command.command_id in self._resumed
                    else "found done before sending again"
                )
                command.result = {"output_state": closed, "confirmed_by": "read_back"}
                command.acknowledge(self._clock.now(), f"{found}: output_state read back {closed}")
                command.confirm(self._clock.now(), found)
                return
        watch = self._watch(command)
        method = Reference(70, RELAY, RELAY_METHOD[command.type])
        answer = await meter.action(method, Data(Tag.INTEGER, 0))
        if answer.result is not DataAccessResult.SUCCESS:
            self._failed(command, FailureReason.NEGATIVE_RESPONSE, answer.result.name)
            return
        command.acknowledge(self._clock.now(), "action-result success")
        await self._save(command)
        await self._confirm_switch(command, meter, watch, closed_wanted=closed_wanted)

    def _watch(self, command: Command) -> _ControlWatch:
        sent_at = next(t.at for t in reversed(command.history) if t.state is CommandState.SENT)
        watch = _ControlWatch(
            CONTROL_EVENT[command.type],
            math.floor(sent_at),
            asyncio.get_running_loop().create_future(),
        )
        self._watches[command.meter_id] = watch
        return watch

    async def _confirm_switch(
        self,
        command: Command,
        meter: MeterConnection,
        watch: _ControlWatch,
        *,
        closed_wanted: bool,
    ) -> None:
        """Read the relay back, unless its control event comes first."""
        read = asyncio.ensure_future(self._relay_closed(meter))
        try:
            await asyncio.wait((read, watch.seen), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            read.cancel()
            raise
        if watch.seen.done():
            self._confirmed_by_event(command, watch.seen.result(), closed_wanted=closed_wanted)
            # the read's answer is on its way: take it, so that it is not taken for the
            # answer to the association's next request (the release)
            with contextlib.suppress(TimeoutError, HesSimError, RuntimeError):
                await read
            return
        closed = read.result()
        command.result = {"output_state": closed, "confirmed_by": "read_back"}
        if closed is closed_wanted:
            command.confirm(self._clock.now(), f"output_state read back: {closed}")
        else:
            # not switched yet: its control event may still come (see _execute)
            log.info("relay_not_switched_yet", command_id=command.command_id,
                     meter_id=command.meter_id, output_state=closed)  # fmt: skip

    async def _await_control_event(self, command: Command, watch: _ControlWatch) -> None:
        """After the association: the relay read back unswitched; wait a little for its
        control event (a relay may switch after answering), then give up."""
        grace = max(0.0, min(CONTROL_EVENT_GRACE_S, command.deadline - self._clock.now()))
        try:
            async with asyncio.timeout(self._clock.wall_seconds(grace)):
                event = await watch.seen
        except TimeoutError:
            closed = (command.result or {}).get("output_state")
            self._failed(command, FailureReason.NOT_CONFIRMED,
                         f"output_state is {closed}, and no control event {int(watch.code)}"
                         f" within {grace:.0f} s")  # fmt: skip
            return
        self._confirmed_by_event(
            command, event, closed_wanted=command.type is CommandType.RECONNECT
        )

    def _confirmed_by_event(
        self, command: Command, event: MeterEventReceived, *, closed_wanted: bool
    ) -> None:
        command.result = {
            "output_state": closed_wanted,
            "confirmed_by": "control_event",
            "event_at": event.at,
        }
        command.confirm(self._clock.now(), f"control event {event.code} stamped {event.at}")

    async def _relay_closed(self, meter: MeterConnection) -> bool:
        value = (await meter.get(RELAY_OUTPUT_STATE)).value
        if not isinstance(value, bool):
            raise UnexpectedAnswerError(f"output_state read as {value!r}, not a boolean")
        return value

    # ---------------------------------------------------------------- bookkeeping

    def _failed(self, command: Command, reason: FailureReason, detail: str) -> None:
        if command.done:
            return
        log.warning("command_attempt_failed", command_id=command.command_id,
                    meter_id=command.meter_id, reason=reason, detail=detail)  # fmt: skip
        command.fail(self._clock.now(), reason, self._retry, self._rng, detail)

    async def _save(self, command: Command) -> None:
        await self._store.run_sql(partial(rows.save, command=command))

    async def _finish(self, command: Command) -> None:
        if self._open.pop(command.command_id, None) is None:
            return  # finished already
        self._resumed.discard(command.command_id)
        await self._save(command)
        end = command.history[-1].at
        self._bus.emit(
            CommandFinished(command.command_id, command.meter_id, command.type.value,
                            command.state.value, end - command.created_at)
        )  # fmt: skip
        if command.state is CommandState.CONFIRMED:
            log.info("command_confirmed", command_id=command.command_id, meter_id=command.meter_id)
        waiting = self._finished.get(command.command_id)
        if waiting is not None:
            waiting.set()
