"""Prepaid rules over a real mosquitto, a whole run: consumers switched to prepaid run out
of credit and are disconnected only inside the policy's window, each by a command whose
audit trail says why; a recharge of a disconnected consumer reconnects it and its
recharge-to-light time is recorded."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hes_sim.runner.run import RunOptions, ScenarioRun
from hes_sim.scenario.model import load_scenario
from tests.integration.conftest import write_scenario

ROOT = Path(__file__).resolve().parents[2]
IST = timezone(timedelta(hours=5, minutes=30))
SCENARIO = f"""
name: prepaid-run
seed: 4
time_scale: 300
start: 2026-11-27T10:00:00+05:30
duration: 2h30m
fleet: {{single_phase: 40}}
push: {{randomisation_start_interval: 1m}}
prepaid:
  tariff: {ROOT / "config/tariffs/up-lmv1-domestic-urban.yaml"}
  policy: {{emergency_credit_period: 20m, emergency_credit_amount: 2}}
  switches:
    - {{at: 5m, share: 0.5, opening_balance: 3, grace: 0}}
  recharges:
    - {{at: 2h, amount: 200, spread: 5m}}
"""


async def test_prepaid_disconnects_in_the_window_and_a_recharge_brings_the_light_back(
    tmp_path: Path,
):
    scenario = load_scenario(write_scenario(tmp_path, SCENARIO))
    report = await ScenarioRun(
        scenario, RunOptions(report_dir=tmp_path / "report", progress=False)
    ).execute()
    prepaid = report.prepaid
    assert prepaid is not None
    assert prepaid.accounts_prepaid == 20
    assert prepaid.disconnections > 0
    assert prepaid.recharges > 0
    # every recharge of a disconnected consumer put the light back, and was timed
    light = prepaid.recharge_to_light_seconds
    assert light.p50 is not None
    assert light.max is not None
    assert 0 < light.p50 <= light.max
    assert prepaid.still_dark_after_recharge == 0
    db = sqlite3.connect(tmp_path / "report" / "reads.sqlite")
    rows = db.execute(
        "SELECT c.type, c.state, c.created_at, t.detail FROM commands c"
        " JOIN command_transitions t USING (command_id) WHERE t.seq = 0"
    ).fetchall()
    db.close()
    disconnects = [(at, why) for kind, state, at, why in rows if kind == "disconnect"]
    reconnects = [(state, why) for kind, state, _at, why in rows if kind == "reconnect"]
    assert len(disconnects) >= prepaid.disconnections
    for at, why in disconnects:
        local = datetime.fromtimestamp(at, tz=IST)
        assert 11 <= local.hour < 16, local  # the policy's window, never outside
        assert local.weekday() != 6  # never on a Sunday
        assert why.startswith("prepaid: credit_exhausted"), why
    assert len(reconnects) == prepaid.recharges
    assert all(state == "confirmed" for state, _why in reconnects)
    assert all(why.startswith("prepaid: recharge rush-0-") for _state, why in reconnects)
