"""Carrying commands to meters and following each to its end.

An async context manager owning a TaskGroup: ``commands:scheduler`` wakes when a command
is submitted, when a meter comes online, or when the next retry or deadline is due, and
starts each due command in its own task within its slots (see ``scheduling``: a global
bound, one at a time per meter, a bound per cell, half kept for relay commands).
Parameters, deadline and idempotency key are checked at submit, before anything is
stored. Every step is written to the store before the next, so a restarted head-end
resumes; a relay command it finds sent or acknowledged reads the relay before acting,
so a meter is never switched twice for one command.

What each command does with its meter is in ``relay_switch`` (disconnect, reconnect) and
``executors`` (the others); this module keeps the schedule and the bookkeeping.

A store that fails a write (disk full) stops no one: the command goes on in memory and
its write is tried again at its next step, or by the scheduler soon after. Only the
write that says a command is about to be sent must succeed first; without it the attempt
is withdrawn, since a restart could not know that the meter was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import timezone
from functools import partial
from types import TracebackType
from typing import Any, Self

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError, HesSimError, StoreError
from hes_sim.events import CommandFinished, Event, EventBus, MeterEventReceived, MeterOnline
from hes_sim.hes.commands import executors
from hes_sim.hes.commands import parameters as params
from hes_sim.hes.commands import store as rows
from hes_sim.hes.commands.executors import Attempt
from hes_sim.hes.commands.lifecycle import (
    INDIA,
    Command,
    CommandState,
    CommandType,
    FailureReason,
    RetryPolicy,
)
from hes_sim.hes.commands.relay_switch import RelaySwitch
from hes_sim.hes.commands.scheduling import RELAY_COMMANDS, Slots
from hes_sim.hes.meter_sessions import MeterSessions
from hes_sim.hes.operations import IdempotencyConflictError, InvalidRequestError
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.store import SqlStore

__all__ = ["INDIA", "CommandDispatcher"]  # INDIA: the default zone, defined in lifecycle

log = structlog.get_logger(__name__)

IDLE_WAKE_S = 60.0  # simulated: the scheduler looks again at least this often
STORE_RETRY_S = 30.0  # simulated: a failed write is tried again this soon
MAX_DEADLINE_S = 30 * 86_400.0  # a command older than a month is no longer wanted
S = CommandState


class CommandDispatcher:
    def __init__(
        self,
        store: SqlStore,
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
        self._relay = RelaySwitch()
        self._open: dict[str, Command] = {}
        self._unsaved: dict[str, Command] = {}  # their last write failed; tried again
        self._resumed: set[str] = set()  # caught mid-attempt by a restart; not yet done
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: dict[str, asyncio.Event] = {}  # set and removed by _finish only
        self._wake = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        bus.subscribe(self._on_event, self.EVENT_KINDS)

    async def __aenter__(self) -> Self:
        now = self._clock.now()
        for command in await self._store.run_sql(rows.open_commands):
            steps = len(command.history)
            if command.resume(now):  # caught mid-attempt: a relay command looks first
                self._resumed.add(command.command_id)
            if len(command.history) > steps:
                await self._save(command)
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

    EVENT_KINDS = (MeterOnline, MeterEventReceived)  # what _on_event looks at

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MeterOnline):
            self._wake.set()
        elif isinstance(event, MeterEventReceived):
            self._relay.on_event(event)

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
        reason: str = "",
    ) -> Command:
        """Store a command (or find the one with the same key) and let the scheduler run it.
        ``reason`` (why it was asked, e.g. a prepaid rule) heads its audit trail.

        Raises InvalidRequestError, naming the field, when the parameters do not fit
        ``kind`` or the deadline is not a positive number of seconds up to 30 days, and
        IdempotencyConflictError when the key was used for another request; nothing is
        stored then.
        """
        checked = params.validate(kind, parameters or {})
        if not (math.isfinite(deadline_s) and 0 < deadline_s <= MAX_DEADLINE_S):
            raise InvalidRequestError(
                f"deadline_s: {deadline_s} is not between 0 and {MAX_DEADLINE_S:.0f} s (30 days)"
            )
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
        if reason:
            command.history[0] = replace(command.history[0], detail=reason)
        # queued before the one write that stores it: a command stored but not queued
        # would be left behind by a crash between two writes
        command.queue(
            now, "meter online" if self._presence.is_online(meter_id) else "meter offline: waiting"
        )
        stored = await self._store.run_sql(partial(rows.insert, command=command))
        if stored is not command:
            _same_request(stored, command)
            return self._open.get(stored.command_id) or self._unsaved.get(stored.command_id, stored)
        self._open[command.command_id] = command
        self._wake.set()
        return command

    async def wait(self, command_id: str) -> Command:
        """Until the command reaches a terminal state."""
        command = self._open.get(command_id)
        if command is None:
            ended = self._unsaved.get(command_id)  # its end not yet in the store
            if ended is not None:
                return ended
            found = await self._store.run_sql(partial(rows.load, command_id=command_id))
            if found is None:
                raise HesSimError(f"no command {command_id}")
            return found
        # shared by every waiter of the command: one cancelled leaves it to the others
        await self._finished.setdefault(command_id, asyncio.Event()).wait()
        return command

    # ---------------------------------------------------------------- scheduling

    async def _schedule(self) -> None:
        while True:
            # cleared before the scan, which awaits: a submit or a freed slot meanwhile
            # sets it again and is seen at once, not at the next idle wake
            self._wake.clear()
            now = self._clock.now()
            next_due = now + IDLE_WAKE_S
            for command in list(self._unsaved.values()):
                if not self._slots.is_running(command.command_id):  # saved at its next step
                    await self._save(command)
            if self._unsaved:
                next_due = min(next_due, now + STORE_RETRY_S)
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
                elif self._presence.is_online(command.meter_id):
                    due.append(command)
            # reconnects first, then by age, within the free slots: a reconnect submitted
            # after many reads does not wait behind them
            for command in self._slots.take(due):
                self._start(self._run(command), f"command:{command.command_id}")
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
                self._failed(command, FailureReason.INTERNAL, "internal error, see the log")
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
        relay = command.type in RELAY_COMMANDS
        look_first = relay and command.attempts > 0
        sent_at = self._clock.now()
        command.send(sent_at, "reading the relay first" if look_first else "")
        if not await self._save(command):
            # a restart would not know the meter was asked: do not ask it yet
            command.withdraw(self._clock.now(), sent_at + STORE_RETRY_S, "the store failed")
            return
        attempt = Attempt(
            command, self._clock, self._tz, self._store, self._bus,
            checkpoint=partial(self._save, command), fail=partial(self._failed, command),
            look_first=look_first, resumed=command.command_id in self._resumed,
        )  # fmt: skip
        try:
            async with self._sessions.associate(command.meter_id) as meter:
                if relay:
                    await self._relay.switch(attempt, meter)
                else:
                    await executors.execute(attempt, meter, parameters)
            if relay:
                await self._relay.await_late_event(attempt)
        except TimeoutError:
            self._failed(command, FailureReason.TIMEOUT, "no answer in time")
        except BrokerError as exc:
            self._failed(command, FailureReason.LINK_DOWN, str(exc))
        except (HesSimError, RuntimeError) as exc:
            # refused, undecipherable, or not the answer expected: worth another attempt
            self._failed(command, FailureReason.BAD_ANSWER, str(exc))
        finally:
            self._relay.forget(command.meter_id)

    # ---------------------------------------------------------------- bookkeeping

    def _failed(self, command: Command, reason: FailureReason, detail: str) -> None:
        if command.done:
            return
        log.warning("command_attempt_failed", command_id=command.command_id,
                    meter_id=command.meter_id, reason=reason, detail=detail)  # fmt: skip
        command.fail(self._clock.now(), reason, self._retry, self._rng, detail)

    async def _save(self, command: Command) -> bool:
        """Write the command; on a store error keep it for another try. False: not saved."""
        try:
            await self._store.run_sql(partial(rows.save, command=command))
        except StoreError as exc:
            log.warning("command_save_failed", command_id=command.command_id,
                        meter_id=command.meter_id, state=command.state, error=str(exc))  # fmt: skip
            self._unsaved[command.command_id] = command
            return False
        self._unsaved.pop(command.command_id, None)
        return True

    async def _finish(self, command: Command) -> None:
        if self._open.pop(command.command_id, None) is None:
            return  # finished already
        self._resumed.discard(command.command_id)
        await self._save(command)  # when it fails, the end is stored later; it happened
        end = command.history[-1].at
        self._bus.emit(
            CommandFinished(command.command_id, command.meter_id, command.type.value,
                            command.state.value, end - command.created_at)
        )  # fmt: skip
        if command.state is S.CONFIRMED:
            log.info("command_confirmed", command_id=command.command_id, meter_id=command.meter_id)
        waiting = self._finished.pop(command.command_id, None)
        if waiting is not None:
            waiting.set()


def _same_request(stored: Command, asked: Command) -> None:
    """An idempotency key names one request: the same meter, type and parameters."""
    if (stored.meter_id, stored.type, stored.parameters) != (
        asked.meter_id,
        asked.type,
        asked.parameters,
    ):
        raise IdempotencyConflictError(
            f"idempotency_key: {asked.idempotency_key!r} was used for command"
            f" {stored.command_id} ({stored.type} to {stored.meter_id}, parameters"
            f" {stored.parameters}), not this request",
            command_id=stored.command_id,
        )
