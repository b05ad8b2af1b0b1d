"""`hes-sim headend`: where its ingest workers come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from hes_sim.broker_address import BrokerAddress
from hes_sim.errors import ScenarioError
from hes_sim.hes.node import ApiOptions
from hes_sim.runner.headend import HeadEndProcessOptions, node_options
from hes_sim.scenario.model import load_scenario

DEMO = Path(__file__).parents[2] / "config" / "scenarios" / "demo.yaml"


def _options(
    tmp_path: Path, workers_in_file: int | None, flag: int | None
) -> HeadEndProcessOptions:
    text = DEMO.read_text()
    if workers_in_file is not None:
        text = text.replace("headend:\n", f"headend:\n  ingest_workers: {workers_in_file}\n", 1)
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return HeadEndProcessOptions(
        broker=BrokerAddress.parse("mqtt://127.0.0.1:1883"),
        db_path=tmp_path / "hes.sqlite",
        fleet_secret=b"a fleet secret of enough bytes",
        api=ApiOptions("a-token-long-enough-for-the-api"),
        scenario=load_scenario(path),
        ingest_workers=flag,
    )


@pytest.mark.parametrize(
    ("in_file", "flag", "expected"),
    [(None, None, 0), (3, None, 3), (3, 1, 1), (None, 2, 2), (2, 0, 0)],
)
def test_the_flag_overrides_the_scenario(
    tmp_path: Path, in_file: int | None, flag: int | None, expected: int
) -> None:
    assert node_options(_options(tmp_path, in_file, flag)).ingest_workers == expected


def test_a_scenario_asking_for_too_many_workers_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"headend\.ingest_workers"):
        _options(tmp_path, 99, None)
