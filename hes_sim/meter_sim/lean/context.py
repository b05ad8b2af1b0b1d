"""What all lean links of one factory share: options, counters, keep-alive, dialer.

Held once per factory and referenced by each link, so that a link carries one pointer
instead of a copy of its settings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from hes_sim.broker_address import BrokerAddress
from hes_sim.meter_sim.lean.dialer import Dialer
from hes_sim.meter_sim.lean.keepalive import KeepAliveScheduler


@dataclass(frozen=True, slots=True)
class LeanOptions:
    keepalive_s: int = 60
    connect_timeout_s: float = 30.0  # wall: TCP connect and CONNACK
    ack_timeout_s: float = 30.0  # wall: a PUBACK or SUBACK, and a clean close
    pingresp_timeout_s: float | None = None  # wall; None: one keep-alive
    max_inflight: int = 16  # QoS 1 publishes of one link awaiting their PUBACK
    max_queued: int = 64  # down frames a link holds for a slow reader before pausing
    max_packet: int = 256 * 1024  # larger packets from the broker close the link
    source_hosts: tuple[str, ...] = ()  # loopback sources to spread connections over

    def __post_init__(self) -> None:
        if not 0 < self.keepalive_s <= 0xFFFF:
            raise ValueError(f"keep-alive {self.keepalive_s} s is not in 1..65535")
        if self.max_inflight < 1 or self.max_queued < 1:
            raise ValueError("max_inflight and max_queued must be at least 1")


@dataclass(slots=True)
class LeanStats:
    """Counters over the factory's life, for benchmarks, logs and metrics."""

    connects: int = 0
    refused: int = 0  # CONNACK with a non-zero return code
    connect_failures: int = 0  # TCP refused, reset or timed out before CONNACK
    lost: int = 0  # links that ended without being closed by their meter
    errors: Counter[str] = field(default_factory=Counter)  # malformed, protocol, keepalive

    def totals(self) -> WireTotals:
        return WireTotals(
            self.connects,
            self.refused,
            self.connect_failures,
            self.lost,
            tuple(sorted(self.errors.items())),
        )


@dataclass(frozen=True, slots=True)
class WireTotals:
    """:class:`LeanStats` at one moment: what a fleet process reports, and what the run
    adds up over its processes for the fleet's metrics."""

    connects: int = 0
    refused: int = 0
    connect_failures: int = 0
    lost: int = 0
    errors: tuple[tuple[str, int], ...] = ()  # (reason, count), by reason

    def __add__(self, other: WireTotals) -> WireTotals:
        errors = Counter(dict(self.errors))
        errors.update(dict(other.errors))
        return WireTotals(
            self.connects + other.connects,
            self.refused + other.refused,
            self.connect_failures + other.connect_failures,
            self.lost + other.lost,
            tuple(sorted(errors.items())),
        )


@runtime_checkable
class CountsWire(Protocol):
    """A link factory that counts what its links met on the wire (the lean ones do)."""

    def wire_totals(self) -> WireTotals | None: ...


def wire_totals_of(links: object) -> WireTotals | None:
    """What ``links`` (a link factory) counted on the wire; None if it counts nothing."""
    return links.wire_totals() if isinstance(links, CountsWire) else None


@dataclass(frozen=True, slots=True)
class LinkContext:
    broker: BrokerAddress
    options: LeanOptions
    stats: LeanStats
    keepalive: KeepAliveScheduler
    dialer: Dialer
