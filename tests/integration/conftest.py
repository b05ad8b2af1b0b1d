"""Integration fixtures: a real mosquitto per test, on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hes_sim.events import Event, EventBus
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
