"""The run report: figures in simulated seconds, SLA verdicts, written as report.json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from hes_sim.scenario.model import Figure, Scenario
from hes_sim.stats import percentile


class Percentiles(BaseModel):
    model_config = ConfigDict(frozen=True)

    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        ordered = sorted(values)
        return cls(
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
            p99=percentile(ordered, 99),
            max=round(ordered[-1], 3) if ordered else None,
        )


class CellFigures(BaseModel):
    model_config = ConfigDict(frozen=True)

    cell: str
    meters: int
    attach_rejects: dict[str, int]  # by reason
    meter_reconnect_seconds: Percentiles
    online: list[int]  # meters online at each sample of NetworkFigures.sample_times


class NetworkFigures(BaseModel):
    """What the 4G link and the grid did to the run (present with the radio model or
    a grid outage in the timeline)."""

    model_config = ConfigDict(frozen=True)

    timeline: list[str]  # what happened, when (simulated), as run
    meter_reconnect_seconds: Percentiles  # link or power restored -> online at the head-end
    meters_restored: int  # meters a restoration concerned
    meters_not_back: int  # of those, not online again by the end
    peak_connects_per_s: float  # the busiest second of MQTT connects (simulated)
    connects: int
    attach_rejects: dict[str, int]  # by reason
    attach_seconds: Percentiles  # TCP accept -> upstream connected, through the radio model
    link_rtt_seconds: Percentiles  # sampled round trips of the radio link
    power_failures_logged: int  # power-failure events the head-end received (last gasps)
    sample_times: list[float]  # simulated seconds after the start
    online: list[int]  # meters online at the head-end at each sample
    cells: list[CellFigures]


class PrepaidReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    accounts_prepaid: int
    accounts_by_state: dict[str, int]
    disconnections: int  # automatic, confirmed
    recharges: int
    recharge_to_light_seconds: Percentiles  # recharge accepted -> relay confirmed closed
    still_dark_after_recharge: int  # recharged, reconnect not confirmed by the end
    low_balance_alerts: dict[str, int]  # by threshold (share of the last recharge)


class ExportReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    sink: str
    reads_stored: int
    exported: int
    pending: int
    parked: int  # refused by the sink for good
    failed_attempts: int
    lag_seconds: Percentiles  # enqueued -> delivered, simulated
    completeness: float  # exported / stored
    applied_at_sink: int | None  # the run's own endpoint: records applied (once each)
    applied_twice: int | None  # ... and applied more than once (must stay 0)
    redelivered: int | None  # ... received again after being applied (accepted, ignored)
    meters_incomplete: int  # reconciliation: meters whose reads are not all exported
    incomplete_meter_ids: list[str] = []  # the first of them (reconciliation_file: all meters)
    reconciliation_file: str | None = None  # per meter: produced, stored, enqueued, exported
    bills_enqueued: int = 0  # monthly bill records put in the outbox
    bills_exported: int = 0


class SlaResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    figure: Figure
    op: str
    target: float
    measured: float | None
    passed: bool


class Report(BaseModel):
    model_config = ConfigDict(frozen=True)

    scenario: str
    seed: int
    time_scale: float
    meters: int
    meters_connected: int
    # wall seconds from the fleet's start until every meter had connected (or the run
    # stopped waiting), before the run's clock started: the cold start, start spread included
    cold_start_wall_seconds: float = 0.0
    sim_seconds: float
    wall_seconds: float
    reads_expected: int
    reads_produced: int
    reads_stored: int
    reads_duplicate: int
    decode_errors: int
    decode_errors_by_reason: dict[str, int]
    meter_requests_refused: int
    read_completeness: float
    delivery_delay_seconds: Percentiles
    loop_lag_seconds: Percentiles
    commands_submitted: int
    commands_confirmed: int
    commands_failed: int
    commands_expired: int
    reconnection_seconds: Percentiles  # reconnect submitted -> relay confirmed closed
    commands_by_type: dict[str, dict[str, int]]  # type -> outcome -> count
    command_duration_seconds: dict[str, Percentiles]  # confirmed commands, by type
    reads_backfilled: int  # stored from profile reads after the push was lost
    read_completeness_before_backfill: float
    meters_online_at_end: int
    meters_non_communicating: int  # silent past headend.non_communicating_after at the end
    network: NetworkFigures | None = None
    prepaid: PrepaidReport | None = None
    export: ExportReport | None = None
    slas: list[SlaResult]
    passed: bool

    def figure(self, figure: Figure) -> float | None:
        delay, lag = self.delivery_delay_seconds, self.loop_lag_seconds
        figures: dict[Figure, float | None] = {
            Figure.READ_COMPLETENESS: self.read_completeness,
            Figure.DELIVERY_DELAY_P50: delay.p50,
            Figure.DELIVERY_DELAY_P95: delay.p95,
            Figure.DELIVERY_DELAY_P99: delay.p99,
            Figure.DELIVERY_DELAY_MAX: delay.max,
            Figure.DECODE_ERRORS: float(self.decode_errors),
            Figure.READS_DUPLICATE: float(self.reads_duplicate),
            Figure.LOOP_LAG_MAX: lag.max,
            Figure.RECONNECTION_P50: self.reconnection_seconds.p50,
            Figure.RECONNECTION_P95: self.reconnection_seconds.p95,
            Figure.RECONNECTION_MAX: self.reconnection_seconds.max,
            Figure.COMMANDS_FAILED: float(self.commands_failed),
            Figure.COMMANDS_EXPIRED: float(self.commands_expired),
            Figure.READ_COMPLETENESS_BEFORE_BACKFILL: self.read_completeness_before_backfill,
            Figure.READS_BACKFILLED: float(self.reads_backfilled),
            Figure.METERS_NON_COMMUNICATING: float(self.meters_non_communicating),
        }
        net = self.network
        reconnect = None if net is None else net.meter_reconnect_seconds
        figures |= {
            Figure.METER_RECONNECT_P50: None if reconnect is None else reconnect.p50,
            Figure.METER_RECONNECT_P95: None if reconnect is None else reconnect.p95,
            Figure.METER_RECONNECT_P99: None if reconnect is None else reconnect.p99,
            Figure.METER_RECONNECT_MAX: None if reconnect is None else reconnect.max,
            Figure.METERS_NOT_BACK: None if net is None else float(net.meters_not_back),
            Figure.PEAK_CONNECTS_PER_S: None if net is None else net.peak_connects_per_s,
            Figure.ATTACH_REJECTS: None if net is None else float(sum(net.attach_rejects.values())),
            Figure.LINK_RTT_P95: None if net is None else net.link_rtt_seconds.p95,
        }
        pre = self.prepaid
        light = None if pre is None else pre.recharge_to_light_seconds
        figures |= {
            Figure.RECHARGE_TO_LIGHT_P50: None if light is None else light.p50,
            Figure.RECHARGE_TO_LIGHT_P95: None if light is None else light.p95,
            Figure.RECHARGE_TO_LIGHT_P99: None if light is None else light.p99,
            Figure.RECHARGE_TO_LIGHT_MAX: None if light is None else light.max,
            Figure.PREPAID_DISCONNECTIONS: None if pre is None else float(pre.disconnections),
            Figure.RECHARGES_STILL_DARK: (
                None if pre is None else float(pre.still_dark_after_recharge)
            ),
        }
        out = self.export
        twice = None if out is None or out.applied_twice is None else float(out.applied_twice)
        figures |= {
            Figure.EXPORT_COMPLETENESS: None if out is None else out.completeness,
            Figure.EXPORT_PENDING: None if out is None else float(out.pending),
            Figure.EXPORT_LAG_MAX: None if out is None else out.lag_seconds.max,
            Figure.EXPORT_APPLIED_TWICE: twice,
            Figure.EXPORT_BILLS_EXPORTED: None if out is None else float(out.bills_exported),
            Figure.EXPORT_BILLS_PENDING: (
                None if out is None else float(out.bills_enqueued - out.bills_exported)
            ),
        }
        return figures[figure]

    def with_verdicts(self, scenario: Scenario) -> Report:
        results = []
        for sla in scenario.slas:
            measured = self.figure(sla.figure)
            results.append(
                SlaResult(
                    name=sla.name,
                    figure=sla.figure,
                    op=sla.op,
                    target=sla.target,
                    measured=measured,
                    passed=sla.holds(measured),
                )
            )
        return self.model_copy(update={"slas": results, "passed": all(r.passed for r in results)})

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "report.json"
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    def summary(self) -> str:
        d = self.delivery_delay_seconds
        lines = [
            (
                f"scenario {self.scenario!r} (seed {self.seed}, x{self.time_scale:g}): "
                f"{self.meters_connected}/{self.meters} meters "
                f"(connected in {self.cold_start_wall_seconds:.1f} wall s), "
                f"{self.sim_seconds:.0f} sim s in {self.wall_seconds:.1f} wall s"
            ),
            (
                f"reads: {self.reads_stored}/{self.reads_expected} stored "
                f"(completeness {self.read_completeness:.4f}, "
                f"{self.read_completeness_before_backfill:.4f} before backfill recovered "
                f"{self.reads_backfilled}), "
                f"{self.reads_duplicate} duplicate, {self.decode_errors} rejected"
            ),
            (
                f"meters at the end: {self.meters_online_at_end} online, "
                f"{self.meters_non_communicating} non-communicating"
            ),
            (
                f"delivery delay (sim s): p50 {d.p50} p95 {d.p95} p99 {d.p99} max {d.max}; "
                f"event-loop lag max {self.loop_lag_seconds.max} sim s"
            ),
        ]
        if self.commands_submitted:
            r = self.reconnection_seconds
            lines.append(
                f"commands: {self.commands_submitted} submitted, {self.commands_confirmed} "
                f"confirmed, {self.commands_failed} failed, {self.commands_expired} expired; "
                f"reconnection (sim s): p50 {r.p50} p95 {r.p95} max {r.max}"
            )
            for kind, outcomes in sorted(self.commands_by_type.items()):
                counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
                took = self.command_duration_seconds.get(kind)
                timing = "" if took is None else f"; confirmed in p50 {took.p50} p95 {took.p95}"
                lines.append(f"  {kind}: {counts}{timing}")
        if self.network is not None:
            lines.extend(_network_lines(self.network))
        if self.export is not None:
            e = self.export
            lines.append(
                f"export ({e.sink}): {e.exported}/{e.reads_stored} reads exported "
                f"(completeness {e.completeness:.4f}), {e.pending} pending, {e.parked} parked, "
                f"{e.failed_attempts} failed attempts; lag (sim s) p50 {e.lag_seconds.p50} "
                f"max {e.lag_seconds.max}; at the sink {e.applied_at_sink} applied, "
                f"{e.applied_twice} twice, {e.redelivered} redelivered; monthly bills "
                f"{e.bills_exported}/{e.bills_enqueued} exported"
            )
            if e.meters_incomplete:
                shown = ", ".join(e.incomplete_meter_ids[:10])
                lines.append(f"  {e.meters_incomplete} meters not fully exported: {shown}"
                             f" (per meter: {e.reconciliation_file})")  # fmt: skip
        if self.prepaid is not None:
            p, light = self.prepaid, self.prepaid.recharge_to_light_seconds
            lines.append(
                f"prepaid: {p.accounts_prepaid} accounts, {p.disconnections} disconnected, "
                f"{p.recharges} recharges, recharge-to-light (sim s) p50 {light.p50} "
                f"p95 {light.p95} p99 {light.p99} max {light.max}; "
                f"{p.still_dark_after_recharge} still dark; alerts {p.low_balance_alerts}"
            )
        for sla in self.slas:
            mark = "PASS" if sla.passed else "FAIL"
            lines.append(
                f"  [{mark}] {sla.name}: {sla.figure} {sla.measured} {sla.op} {sla.target:g}"
            )
        lines.append("verdict: " + ("PASSED" if self.passed else "FAILED"))
        return "\n".join(lines)


def _network_lines(net: NetworkFigures) -> list[str]:
    r, a = net.meter_reconnect_seconds, net.attach_seconds
    lines = [
        (
            f"network: {net.meters_restored} meters restored, {net.meters_not_back} not back; "
            f"meter reconnect (sim s) p50 {r.p50} p95 {r.p95} p99 {r.p99} max {r.max}"
        ),
        (
            f"  connects {net.connects}, peak {net.peak_connects_per_s:g}/s; attach (sim s) "
            f"p50 {a.p50} p95 {a.p95} max {a.max}; rejects {net.attach_rejects or 0}; "
            f"link RTT p95 {net.link_rtt_seconds.p95}; last gasps {net.power_failures_logged}"
        ),
    ]
    lines.extend(f"  {line}" for line in net.timeline)
    return lines
