"""Integration fixtures: a real mosquitto per test, on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hes_sim.clock import SimClock
from hes_sim.events import Event, EventBus
from hes_sim.hes.ingest import PushPolicy
from hes_sim.hes.ingest_workers.pool import IngestWorkers
from hes_sim.hes.meter_sessions import MeterSessions
from hes_sim.hes.service import HeadEnd
from hes_sim.hes.store import SqliteStore
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.meter_sim.transport import aiomqtt_link_factory
from hes_sim.runner.broker import PrivateMosquitto


@pytest.fixture
async def mosquitto() -> AsyncIterator[PrivateMosquitto]:
    async with PrivateMosquitto() as broker:
        yield broker


class EventWaiter:
    """Subscribes to a bus and lets a test wait for a condition over the events seen."""

    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, condition: Callable[[list[Event]], bool], within_s: float = 10) -> None:
        async with asyncio.timeout(within_s):
            while not condition(self.events):
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


async def scrape(port: int) -> dict[str, float]:
    """GET /metrics and return every sample as name{labels} -> value."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    body = raw.split(b"\r\n\r\n", 1)[1].decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def write_scenario(directory: Path, body: str) -> Path:
    path = directory / "scenario.yaml"
    path.write_text(body)
    return path


@dataclass
class LiveFleet:
    """A head-end and a small ciphered fleet on a real mosquitto, the clock running."""

    hes: HeadEnd
    fleet: Fleet
    store: SqliteStore
    clock: SimClock
    bus: EventBus
    events: EventWaiter
    sessions: MeterSessions


@contextlib.asynccontextmanager
async def live_fleet(
    directory: Path,
    broker: PrivateMosquitto,
    start: float,
    *,
    time_scale: float,
    hours: float,
    ingest_workers: int = 0,
) -> AsyncIterator[LiveFleet]:
    keyring = FleetKeyring(b"integration test fleet secret")
    bus = EventBus()
    events = EventWaiter(bus)
    clock = SimClock(start, time_scale=time_scale)
    tz = timezone(timedelta(hours=5, minutes=30))
    meters = build_meters({MeterKind.SINGLE_PHASE: 3}, 5, tz)
    store_path = directory / "hes.sqlite"
    workers = (
        IngestWorkers(ingest_workers, str(store_path), keyring.secret) if ingest_workers else None
    )
    async with (
        SqliteStore(store_path) as store,
        HeadEnd(
            broker.address, store, clock, bus, policy=PushPolicy(keyring, True), workers=workers
        ) as hes,
        Fleet(
            meters,
            aiomqtt_link_factory(broker.address),
            bus,
            seed=5,
            time_scale=time_scale,
            push_randomisation_s=30,
            clock=clock,
            keyring=keyring,
        ) as fleet,
    ):
        async with asyncio.timeout(20):
            await hes.subscribed.wait()
            await fleet.wait_connected()
        await events.until(lambda _: hes.presence.online == len(meters))
        clock.start()
        fleet.start(RunPlan(IntervalSchedule(start, start + hours * 3600, 900)))
        sessions = MeterSessions(lambda meter, apdu: hes.exchange(meter, apdu, 10.0), keyring)
        yield LiveFleet(hes, fleet, store, clock, bus, events, sessions)
