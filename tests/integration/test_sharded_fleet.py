"""A fleet spread over processes, against a real mosquitto: one run, one report."""

from __future__ import annotations

from pathlib import Path

import pytest

from hes_sim.runner.fleet_register import scenario_grid, shard_meters
from hes_sim.runner.run import RunOptions, run_scenario
from hes_sim.runner.shards.messages import shard_of
from hes_sim.scenario.model import load_scenario

SCENARIO = """
name: sharded
seed: 5
time_scale: 600
start: 2026-11-28T00:00:00+05:30
duration: 1h
fleet: {single_phase: 90, three_phase: 10, processes: 3}
brokers: 2
push:
  randomisation_start_interval: 1m
commands:
  - {at: 20m, action: disconnect, share: 0.1, deadline: 20m}
slas:
  - {name: complete, figure: read_completeness, op: ">=", target: 1.0}
"""


async def test_three_fleet_processes_on_two_brokers_make_one_run(
    tmp_path: Path, store_location: str
):
    path = tmp_path / "sharded.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    report = await run_scenario(
        scenario,
        RunOptions(
            report_dir=tmp_path / "r", scenario_path=path, db_path=store_location, progress=False
        ),
    )
    assert report.meters == report.meters_connected == 100
    assert report.reads_expected == 400
    # the processes' events reached the run's tallies: what the meters said they produced
    assert report.reads_produced == 400
    assert report.reads_stored == 400  # every process's meters pushed, once each
    assert report.reads_duplicate == 0
    # commands reach meters of both brokers: each goes out where its meter is heard
    assert report.commands_confirmed == report.commands_submitted == 10
    assert report.passed


def test_meters_are_assigned_by_id_stably_and_evenly():
    ids = [f"SP{n:07d}" for n in range(30_000)]
    shards = [shard_of(meter_id, 4) for meter_id in ids]
    assert shards == [shard_of(meter_id, 4) for meter_id in ids]
    counts = [shards.count(k) for k in range(4)]
    assert min(counts) > 0.9 * 30_000 / 4  # no process gets much more than its share


@pytest.mark.parametrize("grid", ["", "grid: {feeders: 1, dts_per_feeder: 2}\n"])
def test_the_shards_together_are_the_fleet(tmp_path: Path, grid: str):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + grid)
    scenario = load_scenario(path)
    whole = {m.meter_id: m for m in scenario_grid(scenario).meters}
    shards = [shard_meters(scenario, shard, 3) for shard in range(3)]
    ids = [m.meter_id for part in shards for m in part]
    assert sorted(ids) == sorted(whole)  # each meter in exactly one process
    first = scenario.start.timestamp() + 900
    for part in shards:
        for meter in part:  # built alike: the same kind and the same readings
            twin = whole[meter.meter_id]
            assert meter.kind == twin.kind
            assert meter.entry_for(first, 900) == twin.entry_for(first, 900)
