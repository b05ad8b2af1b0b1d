"""What the radio network is made of: signal classes, link profiles, cells, settings. Pure.

Signal classes are the usual drive-test bands for LTE (operators' planning guides use
the same cut-offs, give or take a dB); a class is decided by the worse of the two:

    class       RSRP (dBm)         SINR (dB)
    excellent   >= -80             >= 20
    good        -80 .. -90         13 .. 20
    fair        -90 .. -100        0 .. 13
    poor        -100 .. -110       -3 .. 0
    very_poor   < -110             < -3      (Cat-M coverage-enhancement territory)

Every duration is in simulated seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class SignalClass(StrEnum):
    EXCELLENT = "excellent"
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    VERY_POOR = "very_poor"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _finite(value: float) -> bool:
    return math.isfinite(value)


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """One direction of a radio link as TCP sees it."""

    latency_s: float  # one-way latency, mean
    jitter_s: float  # standard deviation of the one-way latency
    loss: float  # probability that one transmission of a chunk is lost (TCP must resend)

    def __post_init__(self) -> None:
        _check(
            _finite(self.latency_s) and self.latency_s >= 0,
            f"latency_s must be finite and >= 0, got {self.latency_s}",
        )
        _check(
            _finite(self.jitter_s) and self.jitter_s >= 0,
            f"jitter_s must be finite and >= 0, got {self.jitter_s}",
        )
        _check(0 <= self.loss <= 1, f"loss must be in [0, 1], got {self.loss}")


# Assumptions, not measurements. Latency: LTE Cat-1 user-plane RTT to a core-hosted broker
# is typically 40-80 ms with good radio; Cat-M1 and cell-edge links with HARQ repetitions
# reach several hundred ms (3GPP TR 36.888 / TR 45.820 coverage-enhancement budgets).
# Loss is the residual loss TCP sees after HARQ/RLC, which rises steeply at the cell edge.
DEFAULT_PROFILES: Mapping[SignalClass, LinkProfile] = {
    SignalClass.EXCELLENT: LinkProfile(latency_s=0.030, jitter_s=0.005, loss=0.001),
    SignalClass.GOOD: LinkProfile(latency_s=0.050, jitter_s=0.010, loss=0.005),
    SignalClass.FAIR: LinkProfile(latency_s=0.090, jitter_s=0.025, loss=0.01),
    SignalClass.POOR: LinkProfile(latency_s=0.160, jitter_s=0.050, loss=0.03),
    SignalClass.VERY_POOR: LinkProfile(latency_s=0.300, jitter_s=0.100, loss=0.08),
}

# Meters sit in meter boxes, basements and stairwells, so their mix is worse than a
# handset survey's. An assumption; scenarios set their own.
DEFAULT_SIGNAL_MIX: Mapping[SignalClass, float] = {
    SignalClass.EXCELLENT: 0.20,
    SignalClass.GOOD: 0.35,
    SignalClass.FAIR: 0.30,
    SignalClass.POOR: 0.10,
    SignalClass.VERY_POOR: 0.05,
}


def check_profiles(profiles: Mapping[SignalClass, LinkProfile]) -> None:
    missing = [c.value for c in SignalClass if c not in profiles]
    _check(not missing, f"profiles lack signal classes {missing}")


@dataclass(frozen=True, slots=True)
class RadioSettings:
    """Timers of the modem and the network, shared by every meter."""

    # EPS attach + default bearer: ~1-2 s on Cat-1, longer on Cat-M; drawn uniformly in
    # mean +- spread.
    attach_delay_mean_s: float = 2.0
    attach_delay_spread_s: float = 1.0
    # how long the network takes to answer an attach with a reject (cell full)
    reject_delay_s: float = 0.5
    # how long a modem searches before it gives up on finding a cell (down or no coverage)
    search_timeout_s: float = 10.0
    rrc_inactivity_s: float = 10.0  # operators set 5-20 s; connected -> idle after it
    rrc_promotion_s: float = 0.1  # idle -> connected (3GPP target for control plane: 100 ms)
    # downlink to an idle modem waits for its paging occasion: uniform in [0, DRX cycle]
    paging_drx_s: float = 1.28
    rto_base_s: float = 1.0  # first TCP retransmission timeout (RFC 6298's minimum)
    # retransmissions after which the link is broken: 1+2+4+8+16 = 31 s of doubling
    # timeouts, half of a 60 s MQTT keep-alive
    max_retransmissions: int = 5
    link_bps: float = 1_000_000.0  # serialisation rate of a chunk (Cat-M1 peak; Cat-1 ~5x)
    cell_burst_s: float = 1.0  # a cell's token bucket holds this many seconds of its rate

    def __post_init__(self) -> None:
        for name in (
            "attach_delay_mean_s",
            "attach_delay_spread_s",
            "reject_delay_s",
            "search_timeout_s",
            "rrc_inactivity_s",
            "rrc_promotion_s",
            "paging_drx_s",
        ):
            value = getattr(self, name)
            _check(_finite(value) and value >= 0, f"{name} must be finite and >= 0, got {value}")
        _check(
            self.attach_delay_spread_s <= self.attach_delay_mean_s,
            "attach_delay_spread_s must not exceed attach_delay_mean_s "
            f"({self.attach_delay_spread_s} > {self.attach_delay_mean_s})",
        )
        for name in ("rto_base_s", "link_bps", "cell_burst_s"):
            value = getattr(self, name)
            _check(_finite(value) and value > 0, f"{name} must be finite and > 0, got {value}")
        _check(
            self.max_retransmissions >= 0,
            f"max_retransmissions must be >= 0, got {self.max_retransmissions}",
        )


@dataclass(frozen=True, slots=True)
class CellSpec:
    cell_id: str
    x_km: float
    y_km: float
    max_attached: int  # meters the cell admits at once
    max_messages_per_s: float  # chunks per second (both directions) before they queue
    signal_mix: Mapping[SignalClass, float] = field(
        default_factory=lambda: dict(DEFAULT_SIGNAL_MIX)
    )

    def __post_init__(self) -> None:
        _check(bool(self.cell_id), "cell_id must not be empty")
        _check(
            _finite(self.x_km) and _finite(self.y_km),
            f"cell {self.cell_id}: position must be finite",
        )
        _check(
            self.max_attached >= 0,
            f"cell {self.cell_id}: max_attached must be >= 0, got {self.max_attached}",
        )
        _check(
            _finite(self.max_messages_per_s) and self.max_messages_per_s > 0,
            f"cell {self.cell_id}: max_messages_per_s must be > 0, got {self.max_messages_per_s}",
        )
        unknown = [k for k in self.signal_mix if not isinstance(k, SignalClass)]
        _check(not unknown, f"cell {self.cell_id}: unknown signal classes {unknown}")
        negative = {k.value: v for k, v in self.signal_mix.items() if not 0 <= v <= 1}
        _check(not negative, f"cell {self.cell_id}: shares must be in [0, 1], got {negative}")
        total = sum(self.signal_mix.values())
        _check(
            math.isclose(total, 1.0, abs_tol=1e-6),
            f"cell {self.cell_id}: signal_mix shares sum to {total}, not 1",
        )


@dataclass(frozen=True, slots=True)
class CoverageHoles:
    """A share of meters whose service comes and goes (a basement, a dead spot)."""

    share: float  # of all meters, drawn per meter
    mean_in_service_s: float  # exponential durations, alternating
    mean_out_of_service_s: float

    def __post_init__(self) -> None:
        _check(0 <= self.share <= 1, f"share must be in [0, 1], got {self.share}")
        for name in ("mean_in_service_s", "mean_out_of_service_s"):
            value = getattr(self, name)
            _check(_finite(value) and value > 0, f"{name} must be finite and > 0, got {value}")

    @property
    def out_of_service_share(self) -> float:
        """The long-run share of time a meter in a hole is out of service."""
        return self.mean_out_of_service_s / (self.mean_in_service_s + self.mean_out_of_service_s)
