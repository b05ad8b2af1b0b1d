from datetime import datetime, timedelta, timezone

import pytest

from hes_sim.scenario.model import FleetSpec, Scenario, SlaCheck
from hes_sim.scenario.report import Percentiles, Report
from hes_sim.stats import percentile


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([], 50) is None
    assert Percentiles.of([3.0, 1.0, 2.0]) == Percentiles(p50=2.0, p95=3.0, p99=3.0, max=3.0)


def make_report(**changes) -> Report:
    base = {
        "scenario": "s",
        "seed": 1,
        "time_scale": 60.0,
        "meters": 10,
        "meters_connected": 10,
        "sim_seconds": 3600.0,
        "wall_seconds": 60.0,
        "reads_expected": 40,
        "reads_produced": 40,
        "reads_stored": 40,
        "reads_duplicate": 0,
        "decode_errors": 0,
        "decode_errors_by_reason": {},
        "meter_requests_refused": 0,
        "read_completeness": 1.0,
        "delivery_delay_seconds": Percentiles(p50=5, p95=10, p99=20, max=30),
        "loop_lag_seconds": Percentiles(p50=0, p95=0, p99=0, max=1),
        "commands_submitted": 0,
        "commands_confirmed": 0,
        "commands_failed": 0,
        "commands_expired": 0,
        "reconnection_seconds": Percentiles(p50=None, p95=None, p99=None, max=None),
        "commands_by_type": {},
        "command_duration_seconds": {},
        "reads_backfilled": 0,
        "read_completeness_before_backfill": 1.0,
        "meters_online_at_end": 10,
        "meters_non_communicating": 0,
        "slas": [],
        "passed": False,
    }
    return Report(**(base | changes))


def scenario(*checks: SlaCheck) -> Scenario:
    return Scenario(
        name="s",
        time_scale=60,
        duration=3600,
        fleet=FleetSpec(single_phase=10),
        start=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        slas=list(checks),
    )


@pytest.mark.parametrize(
    ("checks", "passed"),
    [
        ([], True),
        ([SlaCheck(name="c", figure="read_completeness", op=">=", target=1.0)], True),
        ([SlaCheck(name="d", figure="delivery_delay_p95", op="<=", target=9)], False),
        (
            [
                SlaCheck(name="c", figure="read_completeness", op=">=", target=1.0),
                SlaCheck(name="e", figure="decode_errors", op="==", target=1),
            ],
            False,
        ),
    ],
)
def test_verdicts(checks: list[SlaCheck], passed: bool):
    report = make_report().with_verdicts(scenario(*checks))
    assert report.passed is passed
    assert [s.passed for s in report.slas] == [c.holds(report.figure(c.figure)) for c in checks]


def test_missing_figure_fails_its_check():
    empty = Percentiles(p50=None, p95=None, p99=None, max=None)
    report = make_report(delivery_delay_seconds=empty).with_verdicts(
        scenario(SlaCheck(name="d", figure="delivery_delay_p95", op="<=", target=1e9))
    )
    assert not report.passed
    assert report.slas[0].measured is None


def test_written_report_has_the_promised_fields(tmp_path):
    path = make_report().with_verdicts(scenario()).write(tmp_path)
    text = path.read_text()
    for field in (
        "scenario",
        "seed",
        "meters",
        "sim_seconds",
        "reads_expected",
        "reads_stored",
        "reads_duplicate",
        "decode_errors",
        "read_completeness",
        "delivery_delay_seconds",
        "p50",
        "p95",
        "p99",
        "max",
        "slas",
        "passed",
    ):
        assert f'"{field}"' in text
