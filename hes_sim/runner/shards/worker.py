"""A fleet process: ``python -m hes_sim.runner.shards.worker``, started by a run.

It reads a :class:`Hello` on stdin, builds the meters of its shard from the scenario (the
same scenario and seed give the same meters in every process), connects them, and then
follows the run: ``Start`` with the run clock's anchor, ``Power`` for outages, ``Stop``.
Every event of its fleet goes back on stdout in batches, with a status of its meters;
logs go to stderr. A run that vanishes (stdin closed) stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import structlog

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import Event, EventBus
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.fleet import Fleet
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.pipe_frames import run_child
from hes_sim.runner.fleet_register import link_factory, scenario_fleet, shard_meters
from hes_sim.runner.shards.messages import (
    Events,
    FromWorker,
    Hello,
    Power,
    ShardError,
    Start,
    Status,
    Stop,
    frame,
    read_message,
)
from hes_sim.scenario.model import load_scenario

log = structlog.get_logger(__name__)

REPORT_EVERY_WALL_S = 0.25
STATUS_EVERY_WALL_S = 5.0  # when nothing happens; a status counts every meter, ~1 ms/1,000
EVENTS_PER_FRAME = 5_000


class Reporter:
    """Events of the fleet, batched to the run; a status with each batch."""

    def __init__(self, out: asyncio.WriteTransport) -> None:
        self._out = out
        self._events: list[Event] = []
        self._status_at = 0.0  # monotonic time of the last status sent
        self.changed = True  # something (an event, a power change) since the last status
        self.fleet: Fleet | None = None

    def __call__(self, event: Event) -> None:
        self._events.append(event)
        self.changed = True

    def flush(self, *, status: bool = False) -> None:
        """Send the events gathered; a status with them when anything changed, when asked,
        or now and then: an idle fleet is not counted four times a second."""
        while self._events:
            batch, self._events = self._events[:EVENTS_PER_FRAME], self._events[EVENTS_PER_FRAME:]
            self._send(Events(tuple(batch)))
        fleet = self.fleet
        now = time.monotonic()
        if fleet is None or not (
            status or self.changed or now - self._status_at >= STATUS_EVERY_WALL_S
        ):
            return
        self.changed, self._status_at = False, now
        self._send(Status(len(fleet.runtimes), fleet.connected, fleet.finished,
                          fleet.powered(), fleet.wire_totals()))  # fmt: skip

    def _send(self, message: FromWorker) -> None:
        if not self._out.is_closing():
            self._out.write(frame(message))

    async def run(self) -> None:
        while True:
            self.flush()
            await asyncio.sleep(REPORT_EVERY_WALL_S)


async def serve(reader: asyncio.StreamReader, out: asyncio.WriteTransport) -> None:
    hello = await read_message(reader)
    if not isinstance(hello, Hello):
        raise ShardError(f"a fleet process must be greeted first, got {hello!r}")
    scenario = load_scenario(Path(hello.scenario_path))
    meters = shard_meters(scenario, hello.shard, hello.shards)
    clock = SimClock(scenario.start.timestamp(), scenario.time_scale)
    bus, reporter = EventBus(), Reporter(out)
    bus.subscribe(reporter)
    links = link_factory(BrokerAddress.parse(hello.broker_url), hello.transport)
    keyring = FleetKeyring(hello.fleet_secret)
    fleet = scenario_fleet(scenario, meters, links, bus, clock, keyring=keyring)
    reporter.fleet = fleet
    log.info("fleet_shard_starting", shard=hello.shard, shards=hello.shards, meters=len(meters))
    async with fleet, asyncio.TaskGroup() as group:
        reporting = group.create_task(reporter.run(), name="shard:report")
        try:
            while (message := await read_message(reader)) is not None:
                match message:
                    case Start(wall_anchor=anchor):
                        clock.start(anchor)
                        fleet.start(RunPlan(scenario.schedule()))
                    case Power(meter_ids=ids, on=True):
                        fleet.power_on(ids)
                        reporter.changed = True
                    case Power(meter_ids=ids, on=False):
                        fleet.power_off(ids)
                        reporter.changed = True
                    case Stop():
                        break
                    case _:
                        log.warning("fleet_shard_unexpected", message=type(message).__name__)
        finally:
            reporting.cancel()
    reporter.flush(status=True)  # the last events and the final status


def main() -> int:
    return run_child(serve, ShardError, "fleet_shard_failed")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
