"""The scenario file: a pydantic model that refuses unknown fields and names bad ones.

Every duration is in simulated seconds; a number, or a string such as ``"15m"``,
``"4h"``, ``"1d"``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from hes_sim.errors import ScenarioError
from hes_sim.meter_sim.grid import GridSpec
from hes_sim.meter_sim.meter import MeterKind

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: object) -> object:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration such as 900, '15m', '4h' or '1d'")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


def parse_duration(value: str) -> float:
    """``"90"``, ``"15m"``, ``"4h"``, ``"1d"`` -> seconds."""
    seconds = _parse_duration(value)
    if not isinstance(seconds, float):  # pragma: no cover - a str always parses to float
        raise TypeError(value)
    return seconds


SimSeconds = Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)]


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


class CommandEvent(Strict):
    """Commands the head-end issues at a simulated time, to a share of the consumer meters
    (a seeded choice), to listed meters, or to the meters of an earlier event."""

    at: SimSeconds = Field(description="simulated seconds after the start")
    action: Literal["disconnect", "reconnect", "time_sync"]
    share: float | None = Field(default=None, gt=0, le=1)
    meters: list[str] | None = None
    same_as: int | None = Field(default=None, ge=0, description="index of an earlier event")
    deadline: SimSeconds = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _one_selection(self) -> CommandEvent:
        chosen = [s for s in (self.share, self.meters, self.same_as) if s is not None]
        if len(chosen) != 1:
            raise ValueError("choose the meters with exactly one of share, meters or same_as")
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
    grid: GridModel | None = None
    push: PushSpec = PushSpec()
    security: SecuritySpec = SecuritySpec()
    drain_timeout: SimSeconds = Field(
        default=600.0, description="how long after the end to wait for late reads"
    )
    commands: list[CommandEvent] = []
    slas: list[SlaCheck] = []

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
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ScenarioError(f"{path}: {problems}") from exc
