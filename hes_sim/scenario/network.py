"""The scenario's 4G network and its timeline of outages (see README, "4G network")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from hes_sim.scenario.base import SimSeconds, Strict


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
