"""The simulated 4G network acting on real MQTT traffic, through whole runs on a real
mosquitto: a cell outage takes exactly its meters offline within 1.5 keep-alives and
brings them all back; the push setup's randomisation window flattens the reconnection
storm; a worse radio shows in command round trips and delivery delay."""

from __future__ import annotations

import sqlite3
import statistics
from pathlib import Path

from hes_sim.events import Event, MeterLinkLost, MeterOffline, MeterOnline
from hes_sim.runner.run import RunOptions, ScenarioRun
from hes_sim.scenario.model import load_scenario
from tests.integration.conftest import write_scenario

SCALE = 300
KEEPALIVE_S = 300  # one wall second at x300: mosquitto gives up on a meter after 1.5 of them


def scenario_text(body: str, *, name: str = "net", duration: str = "1h") -> str:
    return f"""
name: {name}
seed: 11
time_scale: {SCALE}
start: 2026-11-28T10:00:00+05:30
duration: {duration}
drain_timeout: 15m
{body}
"""


def prepare(directory: Path, text: str) -> ScenarioRun:
    directory.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario(write_scenario(directory, text))
    return ScenarioRun(scenario, RunOptions(report_dir=directory / "report", progress=False))


def record(execution: ScenarioRun) -> list[tuple[float, Event]]:
    """Every domain event of the run, with the simulated time it was seen."""
    seen: list[tuple[float, Event]] = []
    execution.bus.subscribe(lambda event: seen.append((execution.clock.now(), event)))
    return seen


CELL_OUTAGE = f"""
fleet: {{single_phase: 56}}
grid: {{feeders: 1, dts_per_feeder: 4}}
push: {{randomisation_start_interval: 2m}}
network: {{radio: true, cells: 2, keepalive: {KEEPALIVE_S}}}
timeline:
  - {{at: 15m, kind: cell_down, cell: CELL0001}}
  - {{at: 35m, kind: cell_up, cell: CELL0001}}
"""


async def test_a_cell_outage_takes_exactly_its_meters_offline_and_all_come_back(tmp_path: Path):
    execution = prepare(tmp_path, scenario_text(CELL_OUTAGE))
    seen = record(execution)
    report = await execution.execute()
    assert report.network is not None
    in_cell = {m.meter_id for m in execution.register if m.cell == "CELL0001"}
    assert 0 < len(in_cell) < report.meters
    assert report.network.timeline[0] == f"00:15:00 cell CELL0001 down ({len(in_cell)} meters)"
    down_at = execution.schedule.sim_start + 15 * 60
    up_at = down_at + 20 * 60
    offline = [(at, e.meter_id) for at, e in seen if isinstance(e, MeterOffline)]
    during = [(at, meter) for at, meter in offline if down_at <= at < up_at]
    went = {meter for _at, meter in during}
    assert went == in_cell  # every meter of the cell, and no other
    # mosquitto gives up 1.5 keep-alives after the last packet it got, which came before
    # the cut; it keeps time in whole seconds, so allow one wall second more, and a
    # quarter for the will to reach the head-end. The median, not the latest: on a busy
    # machine one will may reach the head-end a wall second late (a second is five
    # simulated minutes here), while a keep-alive that failed would make them all late.
    delays = [at - down_at for at, _m in during]
    assert statistics.median(delays) <= 1.5 * KEEPALIVE_S + 1.25 * SCALE
    back = {e.meter_id for at, e in seen if isinstance(e, MeterOnline) and at >= up_at}
    assert back == in_cell
    assert report.network.meters_restored == len(in_cell)
    assert report.network.meters_not_back == 0
    assert report.meters_online_at_end == report.meters
    assert report.read_completeness == 1.0  # the outbox kept what the black hole ate
    cell = next(c for c in report.network.cells if c.cell == "CELL0001")
    assert min(cell.online) == 0  # the samples saw the cell empty
    assert cell.online[-1] == len(in_cell)


def storm(randomisation: str) -> str:
    return f"""
fleet: {{single_phase: 120}}
push: {{randomisation_start_interval: {randomisation}}}
network: {{radio: true, cells: 1, keepalive: {KEEPALIVE_S}}}
timeline:
  - {{at: 10m, kind: cell_down, cell: CELL0001}}
  - {{at: 25m, kind: cell_up, cell: CELL0001}}
"""


async def test_a_wide_randomisation_window_flattens_the_reconnection_storm(tmp_path: Path):
    spike = await prepare(tmp_path / "none", scenario_text(storm("0"))).execute()
    spread = await prepare(tmp_path / "wide", scenario_text(storm("15m"))).execute()
    assert spike.network is not None
    assert spread.network is not None
    assert spike.network.meters_not_back == spread.network.meters_not_back == 0
    ratio = spike.network.peak_connects_per_s / spread.network.peak_connects_per_s
    assert ratio >= 3, (spike.network.peak_connects_per_s, spread.network.peak_connects_per_s)
    # the window shows in how long the meters took to be back, too
    assert spread.network.meter_reconnect_seconds.p50 > spike.network.meter_reconnect_seconds.p50


RADIO_QUALITY = """
name: radio-quality
seed: 11
time_scale: 60
start: 2026-11-28T10:00:00+05:30
duration: 20m
drain_timeout: 5m
fleet: {single_phase: 40}
push: {randomisation_start_interval: 0}
network: {radio: true, cells: 2, keepalive: 120}
commands:
  - {at: 5m, action: read_instantaneous, share: 0.5, deadline: 10m}
timeline:  # one cell's latency band twenty times wider, the other as it was
  - {at: 0, kind: signal_degradation, cell: CELL0001, latency_factor: 20, extra_loss: 0,
     duration: 1h}
"""


async def test_a_slower_radio_shows_in_command_round_trips_and_delivery_delay(tmp_path: Path):
    execution = prepare(tmp_path, RADIO_QUALITY)
    await execution.execute()
    cell_of = {m.meter_id: m.cell for m in execution.register}
    db = sqlite3.connect(tmp_path / "report" / "reads.sqlite")
    delays: dict[str, list[float]] = {"CELL0001": [], "CELL0002": []}
    for meter_id, delay in db.execute(
        "SELECT meter_id, stored_at - interval_end FROM block_load_reads"
    ):
        delays[cell_of[meter_id]].append(delay)
    trips: dict[str, list[float]] = {"CELL0001": [], "CELL0002": []}
    for meter_id, took in db.execute(
        "SELECT c.meter_id, max(t.at) - min(t.at) FROM commands c JOIN command_transitions t"
        " USING (command_id) WHERE c.state = 'confirmed' AND t.state IN ('sent', 'confirmed')"
        " GROUP BY c.command_id"
    ):
        trips[cell_of[meter_id]].append(took)
    db.close()
    slow, fast = statistics.median(trips["CELL0001"]), statistics.median(trips["CELL0002"])
    assert len(trips["CELL0001"]) >= 5
    assert len(trips["CELL0002"]) >= 5
    # at least four exchanges of two legs, each at least 19 x 30 ms longer: 4.6 s
    assert slow >= fast + 4.0, (slow, fast)
    # one uplink leg, 19 x 30-300 ms longer: about 1.5 s on average over the signal mix
    late, prompt = statistics.mean(delays["CELL0001"]), statistics.mean(delays["CELL0002"])
    assert late >= prompt + 0.5, (late, prompt)


BROKERS_RESTART = """
fleet: {single_phase: 40}
brokers: 2
push: {randomisation_start_interval: 1m}
timeline:
  - {at: 20m, kind: broker_restart, downtime: 2m}
"""


async def test_a_broker_restart_restarts_every_broker_and_every_meter_comes_back(tmp_path: Path):
    execution = prepare(tmp_path, scenario_text(BROKERS_RESTART))
    seen = record(execution)
    report = await execution.execute()
    assert report.network is not None
    restart, back = report.network.timeline[:2]
    assert restart == "00:20:00 broker restart (2 brokers, 120 s down)"
    assert back.endswith(" broker back")  # two minutes on, and the brokers' start up
    restart_at = execution.schedule.sim_start + 20 * 60
    lost = {e.meter_id for at, e in seen if isinstance(e, MeterLinkLost) and at >= restart_at}
    assert len(lost) == report.meters  # the meters of both brokers lost their link
    assert report.network.meters_restored == report.meters
    assert report.network.meters_not_back == 0  # and each came back, to its own broker
    assert report.meters_online_at_end == report.meters
    assert report.read_completeness == 1.0
