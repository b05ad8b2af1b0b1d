from pathlib import Path

import pytest

from hes_sim.durations import parse_duration
from hes_sim.errors import ScenarioError
from hes_sim.scenario.model import Figure, SlaCheck, load_scenario

ROOT = Path(__file__).resolve().parents[2]
VALID = """
name: t
seed: 3
time_scale: 600
start: 2026-11-28T00:00:00+05:30
duration: 1h
fleet: {single_phase: 2}
slas:
  - {name: complete, figure: read_completeness, op: ">=", target: 1.0}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_shipped_scenarios_are_valid():
    paths = sorted((ROOT / "config" / "scenarios").glob("*.yaml"))
    assert paths
    for path in paths:
        load_scenario(path)


def test_durations_accept_units(tmp_path: Path):
    scenario = load_scenario(write(tmp_path, VALID))
    assert scenario.duration == 3600
    assert scenario.push.randomisation_start_interval == 60
    assert scenario.slas[0].figure is Figure.READ_COMPLETENESS


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("seed: 3", "seed: 3\ncolour: blue"), "colour"),
        (("duration: 1h", "duration: soon"), "duration"),
        (("fleet: {single_phase: 2}", "fleet: {single_phase: -1}"), "fleet.single_phase"),
        (("fleet: {single_phase: 2}", "fleet: {}"), "fleet"),
        (("fleet: {single_phase: 2}", "fleet: {single_phase: 2, polyphase: 1}"), "fleet.polyphase"),
        (("+05:30", ""), "start"),
        (("time_scale: 600", "time_scale: 0"), "time_scale"),
        (("figure: read_completeness", "figure: happiness"), "slas.0.figure"),
        (("seed: 3", "seed: 3\ninterval: 600"), "interval"),
    ],
)
def test_invalid_scenarios_name_the_field(tmp_path: Path, change: tuple[str, str], field: str):
    with pytest.raises(ScenarioError, match=rf"{field}\b"):
        load_scenario(write(tmp_path, VALID.replace(*change)))


def test_not_yaml_and_missing_files(tmp_path: Path):
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(write(tmp_path, "name: [unclosed"))
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(write(tmp_path, "- a list"))


@pytest.mark.parametrize(
    ("op", "measured", "holds"),
    [(">=", 1.0, True), (">=", 0.99, False), ("<=", 5, True), ("==", 0, False), ("<", None, False)],
)
def test_sla_check(op: str, measured: float | None, holds: bool):
    check = SlaCheck(name="x", figure=Figure.DECODE_ERRORS, op=op, target=1.0 if op != "<=" else 5)  # type: ignore[arg-type]
    assert check.holds(measured) is holds


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        ("[{at: 10m, action: disconnect}]", "exactly one of share"),
        ("[{at: 10m, action: disconnect, share: 0.1, meters: [SP0000001]}]", "exactly one"),
        ("[{at: 10m, action: reconnect, same_as: 0}]", "commands.0.same_as"),
        ("[{at: 2h, action: disconnect, share: 0.1}]", "commands.0.at"),
        ("[{at: 10m, action: explode, share: 0.1}]", "commands.0.action"),
    ],
)
def test_invalid_command_events_are_refused(tmp_path: Path, commands: str, message: str):
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write(tmp_path, VALID + f"commands: {commands}\n"))


def test_command_event_parameters_are_checked_at_load(tmp_path):
    body = """
name: p
time_scale: 60
start: 2026-11-28T00:00:00+05:30
duration: 1h
fleet: {single_phase: 2}
commands:
  - {at: 10m, action: push_setup, share: 0.5, parameters: {number_of_retries: 999}}
"""
    path = tmp_path / "s.yaml"
    path.write_text(body)
    with pytest.raises(ScenarioError, match=r"commands\.0.*number_of_retries"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("15m", 900), ("1.5h", 5400), ("1h30m", 5400), ("2m30s", 150), ("1d2h", 93600)],
)
def test_durations_parse_single_and_compound_units(text: str, seconds: float):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "1h 30", "-5m", "1h-30m"])
def test_bad_durations_are_refused(text: str):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_monthly_bills_follow_the_sink_and_a_reads_only_sink_refuses_them(tmp_path: Path):
    webhook = load_scenario(write(tmp_path, VALID + "export: {sink: webhook}\n"))
    cim = load_scenario(write(tmp_path, VALID + "export: {sink: cim}\n"))
    assert webhook.export is not None
    assert webhook.export.with_bills
    assert webhook.export.tariff is not None
    assert webhook.export.tariff.is_file()
    assert cim.export is not None
    assert not cim.export.with_bills
    with pytest.raises(ScenarioError, match=r"export\b.*cim sink carries interval reads only"):
        load_scenario(write(tmp_path, VALID + "export: {sink: cim, bills: true}\n"))
    with pytest.raises(ScenarioError, match=r"tariff"):
        load_scenario(write(tmp_path, VALID + "export: {sink: jsonl, tariff: nowhere.yaml}\n"))


def test_fleet_start_spread_is_a_duration_and_none_by_default(tmp_path: Path):
    assert load_scenario(write(tmp_path, VALID)).fleet.start_spread == 0  # all at once
    spread = VALID.replace("{single_phase: 2}", "{single_phase: 2, start_spread: 1m30s}")
    assert load_scenario(write(tmp_path, spread)).fleet.start_spread == 90
    shipped = load_scenario(ROOT / "config" / "scenarios" / "scale-100k.yaml")
    assert shipped.fleet.start_spread == 60  # the 100k cold start: a powered-on area


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", "greater than or equal to 0"),
        ("-1m", "not a duration"),
        ("soon", "not a duration"),
        (".nan", "greater than or equal to 0"),  # NaN is no duration either
        ("[60]", "valid number"),
    ],
)
def test_a_bad_fleet_start_spread_is_refused_naming_its_field(
    tmp_path: Path, value: str, message: str
):
    bad = VALID.replace("{single_phase: 2}", f"{{single_phase: 2, start_spread: {value}}}")
    with pytest.raises(ScenarioError, match=rf"fleet\.start_spread: .*{message}"):
        load_scenario(write(tmp_path, bad))
