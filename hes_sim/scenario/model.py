"""The scenario file: a pydantic model that refuses unknown fields and names bad ones.

Every duration is in simulated seconds; a number, or a string such as ``"15m"``,
``"4h"``, ``"1d"``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from hes_sim.config_files import load_yaml_model
from hes_sim.hes.backfill import BackfillSettings
from hes_sim.hes.billing import load_tariff
from hes_sim.hes.commands import parameters as command_parameters
from hes_sim.hes.commands.lifecycle import CommandType
from hes_sim.hes.operations import InvalidRequestError
from hes_sim.meter_sim.grid import GridSpec
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.scenario.base import Figure, SimSeconds, SlaCheck, Strict
from hes_sim.scenario.billing import (
    DEFAULT_SANCTIONED_KW,
    DEFAULT_TARIFF,
    EndpointOutage,
    ExportSpec,
    PrepaidSpec,
    PrepaidSwitch,
    RechargeRush,
)
from hes_sim.scenario.network import (
    RADIO_EVENTS,
    BrokerRestart,
    CellOutage,
    CongestionSpike,
    CoverageHolesSpec,
    DtOutage,
    FeederOutage,
    NetworkSpec,
    SignalDegradation,
    SignalMix,
    TimelineEvent,
)

# the scenario file's parts, importable from here as before
__all__ = [
    "DEFAULT_SANCTIONED_KW",
    "RADIO_EVENTS",
    "BrokerRestart",
    "CellOutage",
    "CommandEvent",
    "CongestionSpike",
    "CoverageHolesSpec",
    "DtOutage",
    "EndpointOutage",
    "ExportSpec",
    "FeederOutage",
    "Figure",
    "FleetSpec",
    "GridModel",
    "HeadEndSpec",
    "NetworkSpec",
    "PrepaidSpec",
    "PrepaidSwitch",
    "RechargeRush",
    "Scenario",
    "SignalDegradation",
    "SignalMix",
    "SimSeconds",
    "SlaCheck",
    "Strict",
    "TimelineEvent",
    "load_scenario",
]


class GridModel(Strict):
    """Feeders and DTs above the consumers; each gets its own meter."""

    feeders: int = Field(ge=1)
    dts_per_feeder: int = Field(ge=1)
    technical_loss: float = Field(default=0.04, ge=0, le=0.5)

    def spec(self) -> GridSpec:
        return GridSpec(self.feeders, self.dts_per_feeder, self.technical_loss)


# a process holds at most 20,000 sockets here; the rest is headroom for its other files
METERS_PER_FLEET_PROCESS = 15_000


class FleetSpec(Strict):
    """Consumer meters by kind (DT and feeder meters come from ``grid``)."""

    single_phase: int = Field(default=0, ge=0)
    three_phase: int = Field(default=0, ge=0)
    lt_ct: int = Field(default=0, ge=0)
    ht_ct: int = Field(default=0, ge=0)
    processes: int | None = Field(
        default=None,
        ge=1,
        description="fleet processes, meters assigned by id; default: the run's own process "
        f"up to {METERS_PER_FLEET_PROCESS:,} meters, else one per {METERS_PER_FLEET_PROCESS:,}",
    )

    transport: Literal["aiomqtt", "lean"] = Field(
        default="aiomqtt",
        description="the meters' MQTT client: aiomqtt, or lean (a bare protocol per meter, "
        "about 3 KiB and no idle CPU a link; for large fleets)",
    )
    start_spread: SimSeconds = Field(
        default=0.0,
        description="the cold start's randomisation: each meter's first connect at a seeded "
        "random point of [0, start_spread) after its fleet process starts, as when a whole "
        "area is powered on (0: every meter at once, as fast as the processes connect them)",
    )

    @property
    def process_count(self) -> int:
        """Fleet processes to start (1: the meters run in the run's own process)."""
        if self.processes is not None:
            return self.processes
        return max(1, -(-self.consumers // METERS_PER_FLEET_PROCESS))

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
    ingest_workers: int = Field(
        default=0,
        ge=0,
        le=32,
        description="processes that take the pushes from the brokers' shared subscription "
        "and store them (0: the head-end's own process does)",
    )


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


class Scenario(Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    seed: int = 1
    time_scale: float = Field(gt=0, le=10_000)
    start: datetime = Field(description="simulated start; must carry a UTC offset")
    duration: SimSeconds = Field(gt=0)
    interval: Literal[900, 1800] = 900
    fleet: FleetSpec
    brokers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="private mosquitto instances the run starts, meters assigned by id "
        "(one holds about 19,990 connections here); unused with --broker",
    )
    grid: GridModel | None = None
    push: PushSpec = PushSpec()
    network: NetworkSpec = NetworkSpec()
    headend: HeadEndSpec = HeadEndSpec()
    security: SecuritySpec = SecuritySpec()
    drain_timeout: SimSeconds = Field(
        default=600.0, description="how long after the end to wait for late reads"
    )
    commands: list[CommandEvent] = Field(default_factory=list)
    timeline: list[TimelineEvent] = Field(default_factory=list)
    prepaid: PrepaidSpec | None = None
    export: ExportSpec | None = None
    slas: list[SlaCheck] = Field(default_factory=list)

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
        if self.brokers > 1 and self.network.radio:
            raise ValueError(
                "brokers: the 4G proxy leads to one broker; several need network.radio: false"
            )
        if self.fleet.process_count > 1 and self.network.radio:
            raise ValueError(
                "fleet.processes: the 4G model runs in the run's own process; a fleet over "
                "several processes needs network.radio: false (or fleet.processes: 1)"
            )
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


# the shipped UP LMV-1 tariff, for monthly bills of a scenario that names none
SHIPPED_TARIFF = Path(__file__).resolve().parents[2] / "config" / "tariffs" / DEFAULT_TARIFF.name


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; every problem names its field."""
    scenario = load_yaml_model(path, Scenario, "scenario")

    def resolved(tariff: Path) -> Path:
        if not tariff.is_absolute():
            tariff = (path.parent / tariff).resolve()
        load_tariff(tariff)  # a bad tariff fails here, naming its file and field
        return tariff

    if scenario.prepaid is not None:
        prepaid = scenario.prepaid.model_copy(update={"tariff": resolved(scenario.prepaid.tariff)})
        scenario = scenario.model_copy(update={"prepaid": prepaid})
    if scenario.export is not None and scenario.export.with_bills:
        tariff = scenario.export.tariff
        if tariff is None and scenario.prepaid is not None:
            tariff = scenario.prepaid.tariff
        if tariff is None:  # beside the shipped scenarios, else the project's own copy
            nearby = path.parent / DEFAULT_TARIFF
            tariff = nearby if nearby.is_file() else SHIPPED_TARIFF
        export = scenario.export.model_copy(update={"tariff": resolved(tariff)})
        scenario = scenario.model_copy(update={"export": export})
    return scenario
