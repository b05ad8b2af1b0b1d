"""`hes-sim` as a user runs it: exit codes, messages, report on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from hes_sim.keyring import FleetKeyring
from hes_sim.runner.broker import free_port
from tests.integration.conftest import write_scenario

SMALL = """
name: cli
seed: 5
time_scale: 900
start: 2026-11-28T10:00:00+05:30
duration: 30m
fleet: {single_phase: 15, three_phase: 5}
push: {randomisation_start_interval: 10}
slas:
  - {name: complete, figure: read_completeness, op: ">=", target: 1.0}
"""


def hes_sim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hes_sim.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_passing_run_exits_0_and_writes_its_report(tmp_path: Path):
    scenario = write_scenario(tmp_path, SMALL)
    result = hes_sim("run", scenario, "--report-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["reads_expected"] == 40
    assert report["read_completeness"] == 1.0
    assert "verdict: PASSED" in result.stdout
    assert "report.json" in result.stdout


def test_failing_sla_exits_1(tmp_path: Path):
    scenario = write_scenario(
        tmp_path,
        SMALL + '  - {name: impossible, figure: delivery_delay_max, op: "<", target: 0}\n',
    )
    result = hes_sim("run", scenario, "--report-dir", tmp_path / "out", "--no-progress")
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["passed"] for s in report["slas"]] == [True, False]
    assert report["passed"] is False
    assert "[FAIL] impossible" in result.stdout


def test_invalid_scenario_exits_2_and_names_the_field(tmp_path: Path):
    scenario = write_scenario(tmp_path, SMALL.replace("seed: 5", "seed: 5\nmeters: 10"))
    result = hes_sim("run", scenario, "--report-dir", tmp_path / "out")
    assert result.returncode == 2
    assert "meters" in result.stderr
    assert "Extra inputs are not permitted" in result.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_unreachable_broker_exits_2(tmp_path: Path):
    scenario = write_scenario(tmp_path, SMALL)
    result = hes_sim(
        "run",
        scenario,
        "--report-dir",
        tmp_path / "out",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
    )
    assert result.returncode == 2
    assert "cannot reach the broker" in result.stderr


def test_validate(tmp_path: Path):
    good = hes_sim("validate", write_scenario(tmp_path, SMALL))
    assert good.returncode == 0
    assert "20 meters" in good.stdout


def test_sigterm_stops_the_run_and_its_private_broker(tmp_path: Path):
    long_run = write_scenario(tmp_path, SMALL.replace("duration: 30m", "duration: 30d"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hes_sim.cli",
            "run",
            str(long_run),
            "--report-dir",
            str(tmp_path / "out"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the metrics line comes once the head-end subscribed
            if "head-end metrics on" in line:
                break
        brokers = [p for p in psutil.Process(process.pid).children() if "mosquitto" in p.name()]
        assert len(brokers) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
        assert "stopped by SIGTERM" in process.stderr.read()
        psutil.wait_procs(brokers, timeout=10)
        assert not brokers[0].is_running()
    finally:
        process.kill()
        process.wait()


def test_keys_never_appear_in_logs_or_reports(tmp_path: Path):
    secret = "test-fleet-secret-0123456789"  # noqa: S105 - a test secret, the point of the test
    scenario = write_scenario(tmp_path, SMALL)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hes_sim.cli",
            "run",
            str(scenario),
            "--report-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HES_FLEET_SECRET": secret, "HES_LOG_LEVEL": "debug"},
    )
    assert result.returncode == 0, result.stderr
    keys = FleetKeyring(secret.encode()).keys_for("SP0000001")
    report = (tmp_path / "out" / "report.json").read_text()
    assert "hes_subscribed" in result.stderr  # debug logs were on
    for text in (result.stdout, result.stderr, report):
        for needle in (secret, keys.block_cipher_key.hex(), keys.authentication_key.hex()):
            assert needle not in text


def test_commands_to_meters_outside_the_fleet_exit_2(tmp_path: Path):
    body = SMALL + "commands:\n  - {at: 10m, action: disconnect, meters: [SP0009999]}\n"
    result = hes_sim("run", write_scenario(tmp_path, body), "--report-dir", tmp_path / "out")
    assert result.returncode == 2
    assert "commands.0.meters" in result.stderr
