"""The scenario file: a pydantic model that refuses unknown fields and names bad ones.

Every duration is in simulated seconds; a number, or a string such as ``"15m"``,
``"4h"``, ``"1d"``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hes_sim.durations import Seconds
from hes_sim.errors import ScenarioError
from hes_sim.hes.backfill import BackfillSettings
from hes_sim.hes.billing import load_tariff
from hes_sim.hes.commands import parameters as command_parameters
from hes_sim.hes.commands.lifecycle import CommandType
from hes_sim.hes.operations import InvalidRequestError
from hes_sim.hes.prepaid.policy import DisconnectionPolicy
from hes_sim.meter_sim.grid import GridSpec
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.schedule import IntervalSchedule

SimSeconds = Seconds


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Figure(StrEnum):
    """Report figures an SLA check can name."""

    READ_COMPLETENESS = "read_completeness"
    DELIVERY_DELAY_P50 = "delivery_delay_p50"
    DELIVERY_DELAY_P95 = "delivery_delay_p95"
    DELIVERY_DELAY_P99 = "delivery_delay_p99"
    DELIVERY_DELAY_MAX = "delivery_delay_max"
    DECODE_ERRORS = "decode_errors"
    READS_DUPLICATE = "reads_duplicate"
    LOOP_LAG_MAX = "loop_lag_max"
    RECONNECTION_P50 = "reconnection_p50"
    RECONNECTION_P95 = "reconnection_p95"
    RECONNECTION_MAX = "reconnection_max"
    COMMANDS_FAILED = "commands_failed"
    COMMANDS_EXPIRED = "commands_expired"
    READ_COMPLETENESS_BEFORE_BACKFILL = "read_completeness_before_backfill"
    READS_BACKFILLED = "reads_backfilled"
    METERS_NON_COMMUNICATING = "meters_non_communicating"
    METER_RECONNECT_P50 = "meter_reconnect_p50"  # link or power restored -> online again
    METER_RECONNECT_P95 = "meter_reconnect_p95"
    METER_RECONNECT_P99 = "meter_reconnect_p99"
    METER_RECONNECT_MAX = "meter_reconnect_max"
    METERS_NOT_BACK = "meters_not_back"  # restored but not online again by the end
    PEAK_CONNECTS_PER_S = "peak_connects_per_s"
    ATTACH_REJECTS = "attach_rejects"
    LINK_RTT_P95 = "link_rtt_p95"
    RECHARGE_TO_LIGHT_P50 = "recharge_to_light_p50"  # recharge accepted -> relay closed
    RECHARGE_TO_LIGHT_P95 = "recharge_to_light_p95"
    RECHARGE_TO_LIGHT_P99 = "recharge_to_light_p99"
    RECHARGE_TO_LIGHT_MAX = "recharge_to_light_max"
    PREPAID_DISCONNECTIONS = "prepaid_disconnections"
    RECHARGES_STILL_DARK = "recharges_still_dark"  # recharged, not reconnected by the end
    EXPORT_COMPLETENESS = "export_completeness"  # reads exported / reads stored
    EXPORT_PENDING = "export_pending"
    EXPORT_LAG_MAX = "export_lag_max"
    EXPORT_APPLIED_TWICE = "export_applied_twice"  # at the run's own endpoint: must be 0


class SlaCheck(Strict):
    name: str = Field(min_length=1)
    figure: Figure
    op: Literal[">=", "<=", ">", "<", "=="]
    target: float

    def holds(self, measured: float | None) -> bool:
        if measured is None:
            return False
        match self.op:
            case ">=":
                return measured >= self.target
            case "<=":
                return measured <= self.target
            case ">":
                return measured > self.target
            case "<":
                return measured < self.target
            case "==":
                return measured == self.target


class GridModel(Strict):
    """Feeders and DTs above the consumers; each gets its own meter."""

    feeders: int = Field(ge=1)
    dts_per_feeder: int = Field(ge=1)
    technical_loss: float = Field(default=0.04, ge=0, le=0.5)

    def spec(self) -> GridSpec:
        return GridSpec(self.feeders, self.dts_per_feeder, self.technical_loss)


class FleetSpec(Strict):
    """Consumer meters by kind (DT and feeder meters come from ``grid``)."""

    single_phase: int = Field(default=0, ge=0)
    three_phase: int = Field(default=0, ge=0)
    lt_ct: int = Field(default=0, ge=0)
    ht_ct: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> FleetSpec:
        if self.consumers == 0:
            raise ValueError(
                "the fleet has no meters: set single_phase, three_phase, lt_ct or ht_ct"
            )
        return self

    @property
    def consumers(self) -> int:
        return self.single_phase + self.three_phase + self.lt_ct + self.ht_ct

    @property
    def counts(self) -> dict[MeterKind, int]:
        return {
            MeterKind.SINGLE_PHASE: self.single_phase,
            MeterKind.THREE_PHASE: self.three_phase,
            MeterKind.LT_CT: self.lt_ct,
            MeterKind.HT_CT: self.ht_ct,
        }


class PushSpec(Strict):
    """Push setup (class 40) attributes that spread pushes after an interval end."""

    randomisation_start_interval: SimSeconds = 60.0


class SecuritySpec(Strict):
    """DLMS security of the run. ``ciphered``: pushes in general-glo-ciphering, suite 0
    (AES-GCM-128, per-meter keys from the fleet secret), and the head-end refuses plain
    ones. ``plain``: no ciphering (for looking at the bytes with a DLMS tool)."""

    pushes: Literal["ciphered", "plain"] = "ciphered"


class SignalMix(Strict):
    """Shares of meters per signal class (RSRP/SINR band); they must sum to 1."""

    excellent: float = Field(default=0.20, ge=0, le=1)
    good: float = Field(default=0.35, ge=0, le=1)
    fair: float = Field(default=0.30, ge=0, le=1)
    poor: float = Field(default=0.10, ge=0, le=1)
    very_poor: float = Field(default=0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SignalMix:
        total = sum(self.model_dump().values())
        if abs(total - 1) > 1e-6:
            raise ValueError(f"the shares sum to {total:g}, not 1")
        return self


class CoverageHolesSpec(Strict):
    share: float = Field(default=0.0, ge=0, le=0.5, description="of the meters")
    mean_in_service: SimSeconds = Field(default=4 * 3600.0, gt=0)
    mean_out_of_service: SimSeconds = Field(default=900.0, gt=0)


class NetworkSpec(Strict):
    """The 4G network the meters sit on. Cells fill in DT order: a DT's meters share its
    cell. With ``radio``, every meter's MQTT bytes cross a simulated radio link (attach,
    RRC states, latency, loss, congestion, outages); without, they go straight to the
    broker."""

    radio: bool = False
    cells: int | None = Field(
        default=None, ge=1, description="this many cells; default: cells of meters_per_cell"
    )
    meters_per_cell: int = Field(default=400, ge=1)
    max_attached_per_cell: int | None = Field(
        default=None, ge=1, description="default: twice the meters of the cell"
    )
    max_messages_per_s_per_cell: float = Field(default=500.0, gt=0)
    signal_mix: SignalMix = SignalMix()
    coverage_holes: CoverageHolesSpec = CoverageHolesSpec()
    keepalive: SimSeconds = Field(default=300.0, gt=0, description="the meters' MQTT keep-alive")


class BackfillSpec(Strict):
    """Finding missing block-load intervals and reading them from the meters' profiles."""

    enabled: bool = True
    scan_every: SimSeconds = Field(default=900.0, gt=0)
    max_requests_per_scan: int = Field(default=50, ge=1)


class HeadEndSpec(Strict):
    """How the head-end judges connectivity and paces its commands."""

    silence: SimSeconds | None = Field(
        default=None,
        description="no message for this long counts a meter offline "
        "(default: two intervals plus the push randomisation)",
    )
    non_communicating_after: SimSeconds = Field(default=86_400.0, gt=0)
    command_concurrency: int = Field(default=32, ge=1)
    per_cell_command_limit: int = Field(default=8, ge=1)
    backfill: BackfillSpec = BackfillSpec()


class CommandEvent(Strict):
    """Commands the head-end issues at a simulated time, to a share of the consumer meters
    (a seeded choice), to listed meters, or to the meters of an earlier event."""

    at: SimSeconds = Field(description="simulated seconds after the start")
    action: Literal["disconnect", "reconnect", "time_sync", "read_instantaneous", "push_setup"]
    parameters: dict[str, int | float | str] = Field(
        default_factory=dict, description="push_setup: the attributes to set"
    )
    share: float | None = Field(default=None, gt=0, le=1)
    meters: list[str] | None = None
    same_as: int | None = Field(default=None, ge=0, description="index of an earlier event")
    deadline: SimSeconds = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _one_selection(self) -> CommandEvent:
        chosen = [s for s in (self.share, self.meters, self.same_as) if s is not None]
        if len(chosen) != 1:
            raise ValueError("choose the meters with exactly one of share, meters or same_as")
        try:
            command_parameters.validate(CommandType(self.action), dict(self.parameters))
        except InvalidRequestError as exc:
            raise ValueError(str(exc)) from exc
        return self


class PrepaidSwitch(Strict):
    """Consumers moved from postpaid to prepaid at a simulated time."""

    at: SimSeconds
    share: float | None = Field(default=None, gt=0, le=1, description="of the consumers")
    meters: list[str] | None = None
    opening_balance: Decimal = Field(default=Decimal("50"), decimal_places=2)
    grace: SimSeconds | None = Field(
        default=None, description="no prepaid disconnection before; default: the policy's"
    )

    @model_validator(mode="after")
    def _one_selection(self) -> PrepaidSwitch:
        if (self.share is None) == (self.meters is None):
            raise ValueError("choose the consumers with exactly one of share or meters")
        return self


class RechargeRush(Strict):
    """Many consumers recharge at once (a pay day, a counter opening): those disconnected
    at ``at`` (a share of them), spread over ``spread``."""

    at: SimSeconds
    share: float = Field(default=1.0, gt=0, le=1, description="of the consumers disconnected")
    amount: Decimal = Field(default=Decimal("200"), gt=0, decimal_places=2)
    spread: SimSeconds = 600.0


DEFAULT_SANCTIONED_KW = {"single_phase": 2, "three_phase": 5, "lt_ct": 25, "ht_ct": 200}


class PrepaidSpec(Strict):
    tariff: Path = Field(
        default=Path("../tariffs/up-lmv1-domestic-urban.yaml"),
        description="tariff file; a relative path is taken from the scenario file's folder",
    )
    policy: DisconnectionPolicy = DisconnectionPolicy()
    sanctioned_kw: dict[str, Decimal] = Field(
        default_factory=lambda: {k: Decimal(v) for k, v in DEFAULT_SANCTIONED_KW.items()},
        description="by meter kind",
    )
    switches: list[PrepaidSwitch] = []
    recharges: list[RechargeRush] = []


class EndpointOutage(Strict):
    at: SimSeconds
    duration: SimSeconds = Field(gt=0)


class ExportSpec(Strict):
    """Reads exported to billing through the transactional outbox."""

    sink: Literal["webhook", "csv", "jsonl", "cim"] = "webhook"
    url: str | None = Field(
        default=None, description="webhook: None runs a billing endpoint of the run's own"
    )
    path: Path | None = Field(default=None, description="file sinks: default REPORT_DIR/export")
    batch_size: int = Field(default=500, ge=1)
    retry_base: SimSeconds = Field(default=60.0, gt=0)
    retry_cap: SimSeconds = Field(default=3600.0, gt=0)
    endpoint_outages: list[EndpointOutage] = Field(
        default_factory=list, description="the run's own endpoint goes down (webhook, no url)"
    )

    @model_validator(mode="after")
    def _outages_need_our_endpoint(self) -> ExportSpec:
        if self.endpoint_outages and (self.sink != "webhook" or self.url is not None):
            raise ValueError("endpoint_outages need sink: webhook and no url")
        return self


class _TimelineEvent(Strict):
    at: SimSeconds = Field(description="simulated seconds after the start")


class CellOutage(_TimelineEvent):
    kind: Literal["cell_down", "cell_up"]
    cell: str


class FeederOutage(_TimelineEvent):
    kind: Literal["feeder_outage", "feeder_restore"]
    feeder: str


class DtOutage(_TimelineEvent):
    kind: Literal["dt_outage", "dt_restore"]
    dt: str


class SignalDegradation(_TimelineEvent):
    kind: Literal["signal_degradation"]
    cell: str
    latency_factor: float = Field(default=3.0, ge=1)
    extra_loss: float = Field(default=0.02, ge=0, le=1)
    duration: SimSeconds = Field(gt=0)


class CongestionSpike(_TimelineEvent):
    kind: Literal["congestion_spike"]
    cell: str
    capacity_factor: float = Field(gt=0, le=1, description="the share of capacity left")
    duration: SimSeconds = Field(gt=0)


class BrokerRestart(_TimelineEvent):
    kind: Literal["broker_restart"]
    downtime: SimSeconds = Field(default=30.0, ge=0)


TimelineEvent = Annotated[
    CellOutage | FeederOutage | DtOutage | SignalDegradation | CongestionSpike | BrokerRestart,
    Field(discriminator="kind"),
]
# a dead modem must be a black hole to the broker, which only the radio model's proxy makes
RADIO_EVENTS = (
    "cell_down", "cell_up", "signal_degradation", "congestion_spike",
    "feeder_outage", "feeder_restore", "dt_outage", "dt_restore",
)  # fmt: skip


class Scenario(Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    seed: int = 1
    time_scale: float = Field(gt=0, le=10_000)
    start: datetime = Field(description="simulated start; must carry a UTC offset")
    duration: SimSeconds = Field(gt=0)
    interval: Literal[900, 1800] = 900
    fleet: FleetSpec
    grid: GridModel | None = None
    push: PushSpec = PushSpec()
    network: NetworkSpec = NetworkSpec()
    headend: HeadEndSpec = HeadEndSpec()
    security: SecuritySpec = SecuritySpec()
    drain_timeout: SimSeconds = Field(
        default=600.0, description="how long after the end to wait for late reads"
    )
    commands: list[CommandEvent] = []
    timeline: list[TimelineEvent] = []
    prepaid: PrepaidSpec | None = None
    export: ExportSpec | None = None
    slas: list[SlaCheck] = []

    @property
    def tz(self) -> timezone:
        """The time zone of the scenario's start: meter clocks and reports use it."""
        return timezone(self.start.utcoffset() or timedelta(0))

    @property
    def silence_s(self) -> float:
        if self.headend.silence is not None:
            return self.headend.silence
        return 2 * self.interval + self.push.randomisation_start_interval

    def backfill_settings(self) -> BackfillSettings | None:
        spec = self.headend.backfill
        if not spec.enabled:
            return None
        return BackfillSettings(
            scan_period_s=spec.scan_every,
            # newer intervals may still arrive by push (randomisation, retries, a flush)
            grace_s=2 * self.interval + self.push.randomisation_start_interval,
            max_requests_per_scan=spec.max_requests_per_scan,
        )

    def schedule(self) -> IntervalSchedule:
        start = self.start.timestamp()
        return IntervalSchedule(start, start + self.duration, self.interval)

    @property
    def meter_count(self) -> int:
        network = 0 if self.grid is None else self.grid.feeders * (1 + self.grid.dts_per_feeder)
        return self.fleet.consumers + network

    @model_validator(mode="after")
    def _aware_start(self) -> Scenario:
        if self.start.utcoffset() is None:
            raise ValueError("start needs a UTC offset, e.g. 2026-11-28T00:00:00+05:30")
        for index, event in enumerate(self.commands):
            if event.same_as is not None and event.same_as >= index:
                raise ValueError(f"commands.{index}.same_as must name an earlier event")
            if event.at > self.duration:
                raise ValueError(f"commands.{index}.at is after the end of the run")
        for index, happening in enumerate(self.timeline):
            if happening.at > self.duration:
                raise ValueError(f"timeline.{index}.at is after the end of the run")
            if happening.kind in RADIO_EVENTS and not self.network.radio:
                raise ValueError(
                    f"timeline.{index}: {happening.kind} needs the radio model "
                    "(network.radio: true)"
                )
            if isinstance(happening, FeederOutage | DtOutage) and self.grid is None:
                raise ValueError(f"timeline.{index}: {happening.kind} needs a grid")
        return self


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; every problem names its field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping of scenario fields at the top level")
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ScenarioError(f"{path}: {problems}") from exc
    if scenario.prepaid is not None:
        tariff = scenario.prepaid.tariff
        if not tariff.is_absolute():
            tariff = (path.parent / tariff).resolve()
        load_tariff(tariff)  # a bad tariff fails here, naming its file and field
        prepaid = scenario.prepaid.model_copy(update={"tariff": tariff})
        scenario = scenario.model_copy(update={"prepaid": prepaid})
    return scenario
