"""The shipped regression scenarios, end to end through the CLI (`make test-slow`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_reconnect_wave_scenario_passes(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "hes_sim.cli", "run", str(ROOT / "config/scenarios/reconnect.yaml"),
         "--report-dir", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["commands_confirmed"] == report["commands_submitted"] > 0
    assert report["read_completeness"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", ["feeder-outage", "tower-outage"])
def test_network_scenarios_pass_and_report_the_storm(tmp_path: Path, name: str):
    result = subprocess.run(
        [sys.executable, "-m", "hes_sim.cli", "run", str(ROOT / f"config/scenarios/{name}.yaml"),
         "--report-dir", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=380, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    network = json.loads((tmp_path / "report.json").read_text())["network"]
    assert network["meters_restored"] > 0
    assert network["meters_not_back"] == 0
    assert network["peak_connects_per_s"] > 0
    assert network["meter_reconnect_seconds"]["p95"] is not None


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_recharge_rush_and_billing_outage_scenarios_pass(tmp_path: Path):
    for name in ("recharge-rush", "billing-outage"):
        out = tmp_path / name
        result = subprocess.run(
            [sys.executable, "-m", "hes_sim.cli", "run",
             str(ROOT / f"config/scenarios/{name}.yaml"), "--report-dir", str(out),
             "--no-progress"],
            capture_output=True, text=True, timeout=190, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((out / "report.json").read_text())
        if name == "recharge-rush":
            assert report["prepaid"]["recharge_to_light_seconds"]["p95"] is not None
        else:
            assert report["export"]["completeness"] == 1.0
            assert report["export"]["meters_incomplete"] == 0
            rows = (out / "reconciliation.csv").read_text().splitlines()
            assert len(rows) == 1 + 400
            assert all(row.endswith(",yes") for row in rows[1:])
