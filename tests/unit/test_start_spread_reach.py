"""``fleet.start_spread`` reaches what it must: the fleet process built from the scenario
file (a sharded run's), the run's wait for every meter before its clock starts, and the
progress line while it waits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hes_sim.meter_sim.fleet import Fleet, first_connect_delay
from hes_sim.pipe_frames import frame
from hes_sim.runner.fleet_register import shard_meters
from hes_sim.runner.progress import connecting_text
from hes_sim.runner.run import (
    CONNECT_WALL_S_MIN,
    CONNECT_WALL_S_PER_METER,
    RunOptions,
    ScenarioRun,
    connect_budget_s,
)
from hes_sim.runner.shards import worker
from hes_sim.runner.shards.messages import Hello, Stop
from hes_sim.scenario.model import load_scenario
from tests.unit.test_shard_reporting import Pipe

SCENARIO = """
name: spread
seed: 11
time_scale: 600
start: 2026-11-28T00:00:00+05:30
duration: 1h
fleet: {single_phase: 30, processes: 2, transport: lean, start_spread: 1d}
"""
SHARD, SHARDS = 1, 2


async def test_a_fleet_process_spreads_its_cold_start_as_its_scenario_file_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "spread.yaml"
    path.write_text(SCENARIO)
    built: list[Fleet] = []
    real_fleet = worker.scenario_fleet

    def noting(*args: Any, **kwargs: Any) -> Fleet:
        built.append(real_fleet(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(worker, "scenario_fleet", noting)
    reader, pipe = asyncio.StreamReader(), Pipe()
    # no broker listens there: a meter that tried to connect now would be refused
    hello = Hello(str(path), SHARD, SHARDS, "mqtt://127.0.0.1:9", b"k" * 32, "lean")
    reader.feed_data(frame(hello))
    serving = asyncio.ensure_future(worker.serve(reader, pipe))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(10):
            # its first status goes out once its fleet is entered
            while not pipe.written:  # noqa: ASYNC110 - nothing to wait on but the pipe
                await asyncio.sleep(0.01)
        (fleet,) = built
        meters = shard_meters(load_scenario(path), SHARD, SHARDS)
        assert [r.meter.meter_id for r in fleet.runtimes] == [m.meter_id for m in meters]
        # each meter filed for its own turn in the day (144 wall s at x600), none working
        assert fleet._wakeups.pending == len(meters)
        assert all(runtime._worker is None for runtime in fleet.runtimes)
        turns = sorted(
            (float(runtime._wake_entry[0]), runtime.meter.meter_id)  # type: ignore[arg-type,index]
            for runtime in fleet.runtimes
        )
        draws = sorted((first_connect_delay(11, m.meter_id, 86_400), m.meter_id) for m in meters)
        assert [meter_id for _, meter_id in turns] == [meter_id for _, meter_id in draws]
        reader.feed_data(frame(Stop()))
        async with asyncio.timeout(10):
            await serving
    finally:
        serving.cancel()
    assert fleet.connected == 0  # stopped before any turn came: no meter ever connected


def test_the_run_waits_for_its_meters_the_start_spread_longer() -> None:
    assert connect_budget_s(10, 0.0) == CONNECT_WALL_S_MIN
    assert connect_budget_s(10, 60.0) == CONNECT_WALL_S_MIN + 60.0
    meters = 100_000
    assert connect_budget_s(meters, 60.0) == CONNECT_WALL_S_PER_METER * meters + 60.0


def test_the_run_takes_its_spread_from_the_scenario_in_wall_seconds(tmp_path: Path) -> None:
    path = tmp_path / "spread.yaml"
    path.write_text(SCENARIO.replace("start_spread: 1d", "start_spread: 10m"))
    run = ScenarioRun(load_scenario(path), RunOptions(report_dir=tmp_path / "out"))
    assert run.start_spread_wall_s == pytest.approx(1.0)  # 600 simulated s at x600
    fleet = SimpleNamespace(connected=12)
    text = run._progress_text(fleet, None)  # type: ignore[arg-type]
    assert text.startswith("connecting meters 12/30 | ")
    assert text.endswith("s into a 1.0 s start spread")


def test_the_connecting_line_says_how_far_into_the_spread_the_run_is() -> None:
    assert connecting_text(40, 100, 0.0, 12.0) == "connecting meters 40/100"
    assert (
        connecting_text(41_230, 100_000, 60.0, 25.34)
        == "connecting meters 41230/100000 | 25.3 s into a 60.0 s start spread"
    )
