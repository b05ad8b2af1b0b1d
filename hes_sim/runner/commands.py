"""The scenario's command events: which meters, when, and what came of each command."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import ScenarioError
from hes_sim.events import CommandFinished, Event
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.commands.lifecycle import Command, CommandType
from hes_sim.meter_sim.meter import CONSUMER_KINDS, VirtualMeter
from hes_sim.scenario.model import CommandEvent

log = structlog.get_logger(__name__)


def seeded_share(population: list[str], share: float, salt: int) -> list[str]:
    """A seeded sample of ``share`` of ``population`` (at least one), sorted."""
    count = max(1, round(share * len(population)))
    return sorted(random.Random(salt).sample(population, count))


def choose_meters(
    events: list[CommandEvent], meters: list[VirtualMeter], seed: int
) -> list[list[str]]:
    """The meter ids of each event; a share is a seeded sample of the consumer meters."""
    consumers = [m.meter_id for m in meters if m.kind in CONSUMER_KINDS]
    known = {m.meter_id for m in meters}
    chosen: list[list[str]] = []
    for index, event in enumerate(events):
        if event.share is not None:
            chosen.append(seeded_share(consumers, event.share, seed ^ (index + 1)))
        elif event.meters is not None:
            unknown = sorted(set(event.meters) - known)
            if unknown:
                raise ScenarioError(f"commands.{index}.meters: not in the fleet: {unknown[:5]}")
            chosen.append(list(event.meters))
        else:
            assert event.same_as is not None  # noqa: S101 - the model validates it
            chosen.append(chosen[event.same_as])
    return chosen


@dataclass(slots=True)
class CommandTally:
    """What came of the scenario's commands (not of the head-end's own, such as backfill)."""

    submitted: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    durations: dict[str, list[float]] = field(default_factory=dict)  # confirmed, by type
    reconnections: list[float] = field(default_factory=list)
    ours: set[str] = field(default_factory=set)
    _finished: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: Event) -> None:
        if not isinstance(event, CommandFinished) or event.command_id not in self.ours:
            return
        self.ours.discard(event.command_id)
        self.outcomes[event.outcome] = self.outcomes.get(event.outcome, 0) + 1
        outcomes = self.by_type.setdefault(event.type, {})
        outcomes[event.outcome] = outcomes.get(event.outcome, 0) + 1
        if event.outcome == "confirmed":
            self.durations.setdefault(event.type, []).append(event.duration)
            if event.type == CommandType.RECONNECT:
                self.reconnections.append(event.duration)
        self._finished.set()

    def submitted_one(self, command: Command) -> None:
        self.submitted += 1
        if command.done:  # an earlier run's command under the same key, or refused at once
            self.outcomes[command.state.value] = self.outcomes.get(command.state.value, 0) + 1
            outcomes = self.by_type.setdefault(command.type.value, {})
            outcomes[command.state.value] = outcomes.get(command.state.value, 0) + 1
        else:
            self.ours.add(command.command_id)

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())

    async def all_finished(self) -> None:
        while self.finished < self.submitted:
            self._finished.clear()
            await self._finished.wait()


async def issue_commands(
    events: list[CommandEvent],
    targets: list[list[str]],
    *,
    start: float,
    clock: SimClock,
    dispatcher: CommandDispatcher,
    tally: CommandTally,
) -> None:
    """Submit each event's commands at its simulated time."""
    for index, (event, meter_ids) in enumerate(zip(events, targets, strict=True)):
        await clock.sleep_until(start + event.at)
        for meter_id in meter_ids:
            command = await dispatcher.submit(
                meter_id,
                CommandType(event.action),
                idempotency_key=f"scenario-{index}-{meter_id}",
                deadline_s=event.deadline,
                parameters=dict(event.parameters),
            )
            tally.submitted_one(command)
        log.info("scenario_commands_issued", event_index=index, action=event.action,
                 meters=len(meter_ids))  # fmt: skip
