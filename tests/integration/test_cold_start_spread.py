"""A cold start spread over ``fleet.start_spread``, against a real mosquitto: each meter
begins to connect at its seeded turn, on either transport, and a run (its fleet over
processes) waits the spread out before its clock starts. Only lower bounds of time are
asserted (a turn is never early); how late a loaded machine is never fails a test."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.meter_sim.fleet import Fleet, build_meters, first_connect_delay
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.transport import MeterLink
from hes_sim.runner import run as run_module
from hes_sim.runner.broker import PrivateMosquitto
from hes_sim.runner.fleet_register import link_factory, scenario_grid
from hes_sim.runner.run import RunOptions, ScenarioRun
from hes_sim.scenario.model import load_scenario

IST = timezone(timedelta(hours=5, minutes=30))
SCALE = 600.0
SPREAD_S = 600.0  # simulated: one wall second at x600


@pytest.mark.parametrize("transport", ["aiomqtt", "lean"])
async def test_each_meter_begins_to_connect_at_its_turn_on_either_transport(
    mosquitto: PrivateMosquitto, transport: str
) -> None:
    links = link_factory(mosquitto.address, transport)
    began: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    def noting(meter_id: str) -> AbstractAsyncContextManager[MeterLink]:
        began.append((meter_id, loop.time()))
        return links(meter_id)

    meters = build_meters({MeterKind.SINGLE_PHASE: 12}, 3, IST)
    fleet = Fleet(meters, noting, EventBus(), seed=3, time_scale=SCALE,
                  push_randomisation_s=0, start_spread_s=SPREAD_S,
                  clock=SimClock(time.time(), SCALE))  # fmt: skip
    entering = loop.time()
    async with fleet:
        async with asyncio.timeout(30):
            await fleet.wait_connected()
    turns = {m.meter_id: entering + first_connect_delay(3, m.meter_id, SPREAD_S) / SCALE
             for m in meters}  # fmt: skip
    assert [meter_id for meter_id, _ in began] == sorted(turns, key=turns.__getitem__)
    for meter_id, at in began:
        assert at >= turns[meter_id]  # never before its turn


SHARDED = """
name: spread-run
seed: 21
time_scale: 600
start: 2026-11-28T00:00:00+05:30
duration: 30m
fleet: {single_phase: 20, processes: 2, transport: lean, start_spread: 1h}
push: {randomisation_start_interval: 1m}
slas:
  - {name: complete, figure: read_completeness, op: ">=", target: 1.0}
"""


async def test_a_sharded_run_waits_out_its_start_spread_before_its_clock_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "spread-run.yaml"
    path.write_text(SHARDED)
    scenario = load_scenario(path)
    last_turn = max(
        first_connect_delay(21, m.meter_id, 3600) for m in scenario_grid(scenario).meters
    )
    last_turn_wall = last_turn / scenario.time_scale  # of a window of 6 wall s at x600
    # the processes' own time is less than the last turn: only the spread on top of it
    # keeps the wait long enough for the meters of the last turns
    monkeypatch.setattr(run_module, "CONNECT_WALL_S_MIN", last_turn_wall - 0.25)
    monkeypatch.setattr(run_module, "CONNECT_WALL_S_PER_METER", 0.0)
    run = ScenarioRun(
        scenario, RunOptions(report_dir=tmp_path / "r", scenario_path=path, progress=False)
    )
    launched = time.time()
    with capture_logs() as logs:
        report = await run.execute()
    assert not [e for e in logs if e["event"] == "fleet_not_all_connected"]
    assert report.meters_connected == 20
    assert report.passed
    # every process connected its meters at their turns, all before the run's clock started
    assert run.clock.wall_anchor is not None
    assert run.clock.wall_anchor >= launched + last_turn_wall
    # and the report says how long that took: at least until the last meter's turn
    assert last_turn_wall <= report.cold_start_wall_seconds < run.clock.wall_anchor - launched
