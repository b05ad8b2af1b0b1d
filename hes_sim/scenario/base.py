"""The scenario file's common parts: the strict base model and the SLA checks."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hes_sim.durations import Seconds

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
    EXPORT_BILLS_PENDING = "export_bills_pending"  # monthly bill records not yet delivered
    EXPORT_BILLS_EXPORTED = "export_bills_exported"


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
