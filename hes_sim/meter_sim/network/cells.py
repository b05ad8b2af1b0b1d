"""A cell's state over simulated time: up or down, signal degradation, congestion, the
places meters hold, and its message queue. Pure.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

from hes_sim.meter_sim.network.link_model import RejectReason
from hes_sim.meter_sim.network.specs import CellSpec, LinkProfile


@dataclass(frozen=True, slots=True)
class CellReport:
    """One cell's figures at a moment, for reports and metrics."""

    cell_id: str
    up: bool
    meters: int
    attached: int  # meters holding a place
    capacity: int  # places, after congestion
    accepted: int  # admissions so far
    rejects: dict[RejectReason, int]  # refused admissions so far, by reason
    broken_links: int  # chunks on which TCP's retransmissions ran out
    queue_s: float  # the wait a chunk arriving now would see in the cell's queue
    capacity_factor: float
    latency_factor: float
    extra_loss: float


class TokenBucket:
    """A shaping token bucket in virtual time (GCRA): ``burst_s`` seconds' worth of the
    rate pass at once (at least one message), then one per 1/rate seconds; a message over
    the rate waits for its token, so the delay grows with the backlog and drains at the
    rate once the burst ends."""

    def __init__(self, rate: float, burst_s: float) -> None:
        self.rate = rate
        self.burst_s = burst_s
        self._due = -math.inf  # when every token taken so far has been paid back

    @property
    def depth(self) -> float:
        return max(1.0, self.rate * self.burst_s)

    def _wait(self, due: float, now: float) -> float:
        return max(0.0, due - self.depth / self.rate - now)

    def delay(self, now: float) -> float:
        """Take a token at ``now``: seconds the message waits for it."""
        self._due = max(self._due, now) + 1 / self.rate
        return self._wait(self._due, now)

    def backlog_s(self, now: float) -> float:
        """The wait a message arriving at ``now`` would see (without taking a token)."""
        return self._wait(max(self._due, now) + 1 / self.rate, now)

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate at ``now``; the messages already queued stay queued."""
        if self._due > now:
            queued = (self._due - now) * self.rate
            self._due = now + queued / rate
        self.rate = rate

    def flush(self) -> None:
        self._due = -math.inf


class Cell:
    def __init__(self, spec: CellSpec, burst_s: float) -> None:
        self.spec = spec
        self.up = True
        self.latency_factor = 1.0
        self.extra_loss = 0.0
        self.capacity_factor = 1.0
        self.bucket = TokenBucket(spec.max_messages_per_s, burst_s)
        self._holds: Counter[str] = Counter()  # meter id -> connections admitted, not released
        self.accepted = 0
        self.rejects: Counter[RejectReason] = Counter()
        self.broken_links = 0  # chunks on which retransmissions ran out

    @property
    def capacity(self) -> int:
        # the epsilon keeps 0.29 * 100 at 29, not 28.999999999999996 -> 28
        return math.floor(self.spec.max_attached * self.capacity_factor + 1e-9)

    @property
    def attached(self) -> int:
        """Meters holding a place (one place per meter, however many connections)."""
        return len(self._holds)

    def holds(self, meter_id: str) -> bool:
        return meter_id in self._holds

    def has_room_for(self, meter_id: str) -> bool:
        return self.holds(meter_id) or self.attached < self.capacity

    def hold(self, meter_id: str) -> None:
        self._holds[meter_id] += 1
        self.accepted += 1

    def release(self, meter_id: str) -> bool:
        """One of the meter's connections ended; True when it no longer holds a place."""
        if meter_id not in self._holds:
            return False  # released twice, or never admitted: nothing held
        self._holds[meter_id] -= 1
        if self._holds[meter_id] <= 0:
            del self._holds[meter_id]
            return True
        return False

    def profile(self, base: LinkProfile) -> LinkProfile:
        if self.latency_factor == 1.0 and self.extra_loss == 0.0:
            return base
        return replace(
            base,
            latency_s=base.latency_s * self.latency_factor,
            jitter_s=base.jitter_s * self.latency_factor,
            loss=min(1.0, base.loss + self.extra_loss),
        )

    def go_down(self) -> None:
        self.up = False
        self.bucket.flush()  # what was queued in the cell is lost with it

    def congest(self, capacity_factor: float, now: float) -> None:
        self.capacity_factor = capacity_factor
        self.bucket.set_rate(self.spec.max_messages_per_s * capacity_factor, now)

    def report(self, meters: int, now: float) -> CellReport:
        return CellReport(
            cell_id=self.spec.cell_id,
            up=self.up,
            meters=meters,
            attached=self.attached,
            capacity=self.capacity,
            accepted=self.accepted,
            rejects=dict(self.rejects),
            broken_links=self.broken_links,
            queue_s=self.bucket.backlog_s(now),
            capacity_factor=self.capacity_factor,
            latency_factor=self.latency_factor,
            extra_loss=self.extra_loss,
        )
