"""The contract between the radio model (cells, modems: pure, simulated time) and the
loopback proxy every meter's MQTT bytes pass through (I/O, wall time).

The proxy asks the model, for each TCP connection a meter opens, whether the meter can
attach and how long that takes; for each chunk of bytes, how long it takes to cross the
radio link, or that the link broke on it. A broken or unreachable link is a black hole:
the proxy drops bytes both ways and keeps the sockets open, so the broker only learns
of it through keep-alive expiry, as in the field. Times here are simulated seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Direction(StrEnum):
    UP = "up"  # meter -> broker
    DOWN = "down"  # broker -> meter


class RejectReason(StrEnum):
    NO_POWER = "no_power"  # the meter (and its modem) is off
    CELL_DOWN = "cell_down"
    NO_COVERAGE = "no_coverage"  # a coverage hole out of service just now
    CONGESTED = "congested"  # the cell is full: attach rejected, try again later


@dataclass(frozen=True, slots=True)
class Admission:
    """What becomes of a meter's new connection."""

    accepted: bool
    delay_s: float  # simulated seconds: attach/registration and RRC set-up, or until refused
    reason: RejectReason | None = None  # why it was refused


class LinkModel(Protocol):
    def admit(self, meter_id: str, now: float) -> Admission:
        """A meter opens a connection at ``now``. Accepted: it counts as attached (holds a
        place in its cell) until ``released``."""
        ...

    def transit(self, meter_id: str, direction: Direction, size: int, now: float) -> float | None:
        """Simulated seconds a chunk of ``size`` bytes takes across the radio link (RRC
        promotion when idle, latency with jitter, queueing in a congested cell,
        retransmissions); None when the link is unreachable or broke on this chunk — the
        connection is then a black hole for good."""
        ...

    def released(self, meter_id: str, now: float) -> None:
        """The meter's connection ended (closed, or found dead): it no longer holds a place."""
        ...
