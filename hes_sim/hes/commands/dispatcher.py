"""Carrying commands to meters and following each to its end.

An async context manager owning a TaskGroup: ``commands:scheduler`` wakes when a command
is submitted, when a meter comes online, or when the next retry or deadline is due, and
starts each due command in its own task, bounded by a semaphore, one at a time per meter.
Every step is written to the store before the next, so a restarted head-end resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Coroutine
from datetime import datetime, timedelta, timezone
from functools import partial
from types import TracebackType
from typing import Any, Self

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError, HesSimError
from hes_sim.events import CommandFinished, Event, EventBus, MeterOnline
from hes_sim.hes.commands import store as rows
from hes_sim.hes.commands.lifecycle import (
    Command,
    CommandState,
    CommandType,
    FailureReason,
    RetryPolicy,
)
from hes_sim.hes.meter_sessions import MeterConnection, MeterSessions
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.store import SqliteStore
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.topics import MeterState
from hes_sim.protocols.xdlms import DataAccessResult, Reference

log = structlog.get_logger(__name__)

RELAY = bytes([0, 0, 96, 3, 10, 255])
CLOCK = bytes([0, 0, 1, 0, 0, 255])
RELAY_METHOD = {CommandType.DISCONNECT: 1, CommandType.RECONNECT: 2}
SUPPORTED = frozenset({CommandType.DISCONNECT, CommandType.RECONNECT, CommandType.TIME_SYNC})
INDIA = timezone(timedelta(hours=5, minutes=30))
IDLE_WAKE_S = 60.0  # simulated: the scheduler looks again at least this often


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
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._presence = presence
        self._clock = clock
        self._bus = bus
        self._concurrency = concurrency
        self._retry = retry or RetryPolicy()
        self._rng = random.Random(seed)
        self._tz = tz
        self._open: dict[str, Command] = {}
        self._busy_meters: set[str] = set()
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        bus.subscribe(self._on_event)

    async def __aenter__(self) -> Self:
        for command in await self._store.run_sql(rows.open_commands):
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
        """Store a command (or find the one with the same key) and let the scheduler run it."""
        now = self._clock.now()
        command = Command(
            command_id=uuid.uuid4().hex,
            meter_id=meter_id,
            type=kind,
            idempotency_key=idempotency_key or uuid.uuid4().hex,
            created_at=now,
            deadline=now + deadline_s,
            parameters=parameters or {},
        )
        stored = await self._store.run_sql(partial(rows.insert, command=command))
        if stored is not command:
            return self._open.get(stored.command_id, stored)
        if kind not in SUPPORTED:
            command.fail(now, FailureReason.REJECTED, self._retry, self._rng, "not supported")
        else:
            online = self._online(meter_id)
            command.queue(now, "meter online" if online else "meter offline: waiting")
        await self._save(command)
        if not command.done:
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
                if command.done or command.command_id in self._running:
                    continue  # a running attempt looks at the deadline when it ends
                if command.expire_if_due(now):
                    await self._finish(command)
                    continue
                next_due = min(next_due, command.deadline)
                if command.next_attempt_at > now:
                    next_due = min(next_due, command.next_attempt_at)
                elif self._online(command.meter_id):
                    due.append(command)
            # reconnects first, then by age; start only what the free slots allow, so a
            # reconnect submitted after many reads does not wait behind them
            due.sort(key=lambda c: (c.priority, c.created_at))
            for command in due:
                if len(self._running) >= self._concurrency:
                    break
                if command.meter_id in self._busy_meters:
                    continue
                self._busy_meters.add(command.meter_id)
                self._running.add(command.command_id)
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
            self._busy_meters.discard(command.meter_id)
            self._running.discard(command.command_id)
        command.expire_if_due(self._clock.now())
        if command.done:
            await self._finish(command)
        else:
            await self._save(command)
        self._wake.set()

    async def _execute(self, command: Command) -> None:
        command.send(self._clock.now())
        await self._save(command)
        try:
            async with self._sessions.associate(command.meter_id) as meter:
                await self._carry_out(command, meter)
        except TimeoutError:
            self._failed(command, FailureReason.TIMEOUT, "no answer in time")
        except BrokerError as exc:
            self._failed(command, FailureReason.LINK_DOWN, str(exc))
        except (HesSimError, RuntimeError) as exc:
            # refused, undecipherable, or not the answer expected: worth another attempt
            self._failed(command, FailureReason.BAD_ANSWER, str(exc))

    async def _carry_out(self, command: Command, meter: MeterConnection) -> None:
        now = self._clock.now
        if command.type is CommandType.TIME_SYNC:
            stamp = cosem_datetime.encode(datetime.fromtimestamp(now(), tz=self._tz))
            result = await meter.set(Reference(8, CLOCK, 2), axdr.octets(stamp))
            if result is not DataAccessResult.SUCCESS:
                self._failed(command, FailureReason.NEGATIVE_RESPONSE, result.name)
                return
            command.acknowledge(now(), "clock set")
            command.confirm(now(), "clock set")
            return
        method = Reference(70, RELAY, RELAY_METHOD[command.type])
        answer = await meter.action(method, Data(Tag.INTEGER, 0))
        if answer.result is not DataAccessResult.SUCCESS:
            self._failed(command, FailureReason.NEGATIVE_RESPONSE, answer.result.name)
            return
        command.acknowledge(now(), "action-result success")
        await self._save(command)
        closed = (await meter.get(Reference(70, RELAY, 2))).value is True
        if closed is (command.type is CommandType.RECONNECT):
            command.confirm(now(), f"output_state read back: {closed}")
        else:
            self._failed(command, FailureReason.NOT_CONFIRMED, f"output_state is {closed}")

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
