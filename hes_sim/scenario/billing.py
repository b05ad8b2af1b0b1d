"""The scenario's prepaid accounts and billing export (see README, "Prepaid")."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from hes_sim.hes.prepaid.policy import DisconnectionPolicy
from hes_sim.scenario.base import SimSeconds, Strict


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


READS_ONLY_SINKS = frozenset({"csv", "cim"})  # fixed read columns / MeterReadings
DEFAULT_TARIFF = Path("../tariffs/up-lmv1-domestic-urban.yaml")  # from the scenario's folder
DEFAULT_SANCTIONED_KW = {"single_phase": 2, "three_phase": 5, "lt_ct": 25, "ht_ct": 200}


class PrepaidSpec(Strict):
    tariff: Path = Field(
        default=DEFAULT_TARIFF,
        description="tariff file; a relative path is taken from the scenario file's folder",
    )
    policy: DisconnectionPolicy = DisconnectionPolicy()
    sanctioned_kw: dict[str, Decimal] = Field(
        default_factory=lambda: {k: Decimal(v) for k, v in DEFAULT_SANCTIONED_KW.items()},
        description="by meter kind",
    )
    switches: list[PrepaidSwitch] = Field(default_factory=list)
    recharges: list[RechargeRush] = Field(default_factory=list)


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
    bills: bool | None = Field(
        default=None,
        description="monthly bill records beside the reads; default: yes for webhook and "
        "jsonl (csv and cim carry interval reads only)",
    )
    bill_delay: SimSeconds = Field(
        default=3600.0, ge=0, description="after a month closes, before it is billed"
    )
    tariff: Path | None = Field(
        default=None,
        description="the bills' tariff; default: the prepaid section's, else UP LMV-1",
    )

    @model_validator(mode="after")
    def _outages_need_our_endpoint(self) -> ExportSpec:
        if self.endpoint_outages and (self.sink != "webhook" or self.url is not None):
            raise ValueError("endpoint_outages need sink: webhook and no url")
        if self.bills and self.sink in READS_ONLY_SINKS:
            raise ValueError(f"bills: the {self.sink} sink carries interval reads only")
        return self

    @property
    def with_bills(self) -> bool:
        return self.bills if self.bills is not None else self.sink not in READS_ONLY_SINKS
