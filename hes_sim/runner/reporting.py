"""The run's report from what the run counted: reads, commands, lag, the state at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

from hes_sim.hes.tally import IngestTally
from hes_sim.runner.commands import CommandTally
from hes_sim.runner.tally import RunTally
from hes_sim.scenario.model import Scenario
from hes_sim.scenario.report import Percentiles, Report


@dataclass(frozen=True, slots=True)
class EndState:
    """How things stood when the run ended (before the fleet and head-end shut down)."""

    meters_connected: int
    meters_online: int
    cold_start_s: float  # the fleet's start until every meter connected (wall)
    meters_silent: int  # silent past headend.non_communicating_after
    reads_stored: int = 0
    reads_recovered: int = 0  # stored from profile reads (backfill), not pushed
    delivery_delays: list[float] = field(default_factory=list)  # pushed reads only
    wall_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Tallies:
    run: RunTally
    ingest: IngestTally
    commands: CommandTally
    loop_lag: list[float]


def build_report(
    scenario: Scenario, meters: int, reads_expected: int, end: EndState, tallies: Tallies
) -> Report:
    stored, backfilled = end.reads_stored, end.reads_recovered
    commands, ingest = tallies.commands, tallies.ingest
    return Report(
        scenario=scenario.name,
        seed=scenario.seed,
        time_scale=scenario.time_scale,
        meters=meters,
        meters_connected=end.meters_connected,
        cold_start_wall_seconds=round(end.cold_start_s, 2),
        sim_seconds=scenario.duration,
        wall_seconds=round(end.wall_s, 2),
        reads_expected=reads_expected,
        reads_produced=tallies.run.reads_produced,
        reads_stored=stored,
        reads_duplicate=ingest.reads_duplicate,
        decode_errors=sum(ingest.decode_errors.values()),
        decode_errors_by_reason=dict(ingest.decode_errors),
        meter_requests_refused=tallies.run.requests_refused,
        commands_submitted=commands.submitted,
        commands_confirmed=commands.outcomes.get("confirmed", 0),
        commands_failed=commands.outcomes.get("failed", 0),
        commands_expired=commands.outcomes.get("expired", 0),
        reconnection_seconds=Percentiles.of(commands.reconnections),
        commands_by_type=commands.by_type,
        command_duration_seconds={k: Percentiles.of(v) for k, v in commands.durations.items()},
        read_completeness=share(stored, reads_expected),
        reads_backfilled=backfilled,
        read_completeness_before_backfill=share(stored - backfilled, reads_expected),
        meters_online_at_end=end.meters_online,
        meters_non_communicating=end.meters_silent,
        delivery_delay_seconds=Percentiles.of(end.delivery_delays),
        loop_lag_seconds=Percentiles.of(tallies.loop_lag),
        slas=[],
        passed=False,
    ).with_verdicts(scenario)


def share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 1.0
