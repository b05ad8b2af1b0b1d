"""A few hundred meters over a real mosquitto, through the same runner as `hes-sim run`."""

from __future__ import annotations

import json
from pathlib import Path

from hes_sim.hes.service import HeadEnd
from hes_sim.hes.store import ReadStore
from hes_sim.runner.broker import PrivateMosquitto
from hes_sim.runner.run import RunOptions, run_scenario
from hes_sim.scenario.model import load_scenario
from tests.integration.conftest import scrape, write_scenario

SCENARIO = """
name: integration
seed: 11
time_scale: 900            # one 15-minute interval per wall second
start: 2026-11-28T06:00:00+05:30
duration: 45m
fleet: {single_phase: 200, three_phase: 100}
push: {randomisation_start_interval: 30}
slas:
  - {name: complete, figure: read_completeness, op: ">=", target: 1.0}
"""


async def test_every_read_stored_once_and_metrics_agree_with_the_store(
    tmp_path: Path, mosquitto: PrivateMosquitto
):
    scenario = load_scenario(write_scenario(tmp_path, SCENARIO))
    seen: dict[str, object] = {}

    async def inspect(hes: HeadEnd, store: ReadStore) -> None:
        seen["metrics"] = await scrape(hes.metrics.port)
        seen["stored"] = await store.count_reads()
        seen["per_meter"] = {
            meter: [r.interval_end for r in await store.reads_for(meter)]
            for meter in ("SP0000001", "SP0000200", "TP0000001", "TP0000100")
        }
        seen["online"] = hes.presence.online

    report = await run_scenario(
        scenario,
        RunOptions(
            report_dir=tmp_path / "report",
            broker=mosquitto.address,
            progress=False,
            before_shutdown=inspect,
        ),
    )

    assert report.reads_expected == 300 * 3
    assert report.reads_stored == report.reads_expected
    assert report.reads_duplicate == 0
    assert report.decode_errors == 0
    assert report.read_completeness == 1.0
    assert report.passed

    start = scenario.start.timestamp()
    expected_ends = [int(start) + 900 * k for k in (1, 2, 3)]
    for meter, ends in seen["per_meter"].items():  # type: ignore[union-attr]
        assert ends == expected_ends, meter

    metrics = seen["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["hes_reads_stored_total"] == seen["stored"] == 900
    assert metrics["hes_read_delivery_delay_seconds_count"] == 900
    assert metrics["hes_reads_duplicate_total"] == 0
    assert metrics["hes_meters_online"] == seen["online"] == 300
    # delays include the push randomisation (0-30 s) plus transport
    assert 0 < report.delivery_delay_seconds.p50 < report.delivery_delay_seconds.max  # type: ignore[operator]

    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["reads_stored"] == 900
    assert written["passed"] is True


WAVE = """
name: wave
seed: 3
time_scale: 600
start: 2026-11-28T09:00:00+05:30
duration: 1h
fleet: {single_phase: 50, three_phase: 10}
push: {randomisation_start_interval: 30}
commands:
  - {at: 10m, action: disconnect, share: 0.2, deadline: 20m}
  - {at: 35m, action: reconnect, same_as: 0, deadline: 20m}
slas:
  - {name: lights back, figure: reconnection_p95, op: "<=", target: 600}
  - {name: none failed, figure: commands_failed, op: "==", target: 0}
"""


async def test_a_disconnect_reconnect_wave_is_measured(tmp_path: Path, mosquitto: PrivateMosquitto):
    scenario = load_scenario(write_scenario(tmp_path, WAVE))
    report = await run_scenario(
        scenario, RunOptions(report_dir=tmp_path / "r", broker=mosquitto.address, progress=False)
    )
    assert report.commands_submitted == 24  # 20% of 60, twice
    assert report.commands_confirmed == 24
    assert report.commands_failed == report.commands_expired == 0
    assert report.reconnection_seconds.p50 is not None
    assert 0 < report.reconnection_seconds.p50 <= report.reconnection_seconds.max  # type: ignore[operator]
    assert report.read_completeness == 1.0
    assert report.passed
