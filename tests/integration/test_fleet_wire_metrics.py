"""The lean links' own counters reach the fleet's metrics, summed over fleet processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.meter_sim.metrics import WireCollector
from hes_sim.runner.broker import PrivateMosquitto
from hes_sim.runner.fleet_register import scenario_grid
from hes_sim.runner.shards.fleet import ShardedFleet
from hes_sim.scenario.model import load_scenario

SCENARIO = """
name: wire-metrics
seed: 9
time_scale: 600
start: 2026-11-28T00:00:00+05:30
duration: 1h
fleet: {single_phase: 24, processes: 2, transport: lean}
"""


async def test_two_fleet_processes_report_their_lean_connects_to_one_metric(tmp_path: Path):
    path = tmp_path / "wire.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    meter_ids = [meter.meter_id for meter in scenario_grid(scenario).meters]
    clock = SimClock(scenario.start.timestamp(), scenario.time_scale)
    registry = CollectorRegistry()
    async with PrivateMosquitto() as broker:
        fleet = ShardedFleet(path, meter_ids, processes=2, brokers=[broker.address],
                             fleet_secret=b"wire metrics test", bus=EventBus(), clock=clock,
                             transport="lean")  # fmt: skip
        registry.register(WireCollector(fleet.wire_totals))
        assert generate_latest(registry) == b""  # nothing reported yet: no series at all
        async with fleet:
            await asyncio.wait_for(fleet.wait_connected(), 60)
            totals = fleet.wire_totals()
            assert totals is not None
            assert totals.connects == 24  # both processes' meters, each connected once
            assert totals.lost == totals.refused == totals.connect_failures == 0
            scraped = generate_latest(registry).decode()
    assert "fleet_lean_connects_total 24.0" in scraped
    assert "fleet_lean_links_lost_total 0.0" in scraped
