"""Prometheus metrics of the fleet process (the meters' side), fed by domain events and,
with the radio model, read from it when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hes_sim.events import AttachRejected, Event, LinkAttached, MeterConnected, MeterLinkLost
from hes_sim.meter_sim.lean.context import WireTotals
from hes_sim.meter_sim.network.radio import RadioNetwork

# simulated seconds: an attach takes seconds, a storm's queue minutes
ATTACH_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600)


class FleetMetrics:
    def __init__(self, registry: CollectorRegistry, *, meters_powered: Callable[[], int]) -> None:
        self._connected: set[str] = set()
        self.connects = Counter(
            "fleet_mqtt_connects", "MQTT connections the meters made", registry=registry
        )
        self.links_lost = Counter(
            "fleet_links_lost", "Meter connections that broke or could not be made",
            registry=registry,
        )  # fmt: skip
        self.rejects = Counter(
            "fleet_attach_rejects",
            "Connections the simulated network refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.attach = Histogram(
            "fleet_attach_seconds",
            "TCP accept to broker connected through the radio model, simulated seconds",
            buckets=ATTACH_BUCKETS,
            registry=registry,
        )
        connected = Gauge(
            "fleet_meters_connected", "Meters with a live MQTT connection", registry=registry
        )
        connected.set_function(lambda: len(self._connected))
        powered = Gauge("fleet_meters_powered", "Meters with mains on", registry=registry)
        powered.set_function(meters_powered)

    def __call__(self, event: Event) -> None:
        match event:
            case MeterConnected(meter_id=meter_id):
                self.connects.inc()
                self._connected.add(meter_id)
            case MeterLinkLost(meter_id=meter_id):
                self.links_lost.inc()
                self._connected.discard(meter_id)
            case AttachRejected(reason=reason):
                self.rejects.labels(reason=reason).inc()
            case LinkAttached(attach_s=seconds):
                self.attach.observe(seconds)
            case _:
                pass


class WireCollector(Collector):
    """The lean links' own counters (summed over the fleet processes), read when scraped:
    what the meters met on the wire that no domain event says."""

    def __init__(self, totals: Callable[[], WireTotals | None]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        totals = self._totals()
        if totals is None:  # aiomqtt links: their client keeps no such counters
            return
        for name, help_text, value in (
            ("fleet_lean_connects", "MQTT connections the lean links made", totals.connects),
            ("fleet_lean_connect_refused", "CONNACKs refusing a lean link", totals.refused),
            ("fleet_lean_connect_failures", "Lean connects that failed before CONNACK",
             totals.connect_failures),
            ("fleet_lean_links_lost", "Lean links ended without their meter closing them",
             totals.lost),
        ):  # fmt: skip
            yield CounterMetricFamily(name, help_text, value=value)
        errors = CounterMetricFamily(
            "fleet_lean_wire_errors",
            "What the lean links refused on the wire (and mostly closed for), by reason",
            labels=["reason"],
        )
        for reason, count in totals.errors:
            errors.add_metric([reason], count)
        yield errors


class RadioCollector(Collector):
    """The radio model's state per cell, and its link round-trip histogram."""

    def __init__(self, radio: RadioNetwork, now: Callable[[], float]) -> None:
        self._radio = radio
        self._now = now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("fleet_cell_up", "1 while the cell is in service", labels=["cell"])
        attached = GaugeMetricFamily(
            "fleet_cell_attached", "Meters holding a place in the cell", labels=["cell"]
        )
        queue = GaugeMetricFamily(
            "fleet_cell_queue_seconds",
            "The wait a chunk arriving now sees in the cell's queue (simulated s)",
            labels=["cell"],
        )
        for cell in self._radio.report(self._now()):
            up.add_metric([cell.cell_id], 1.0 if cell.up else 0.0)
            attached.add_metric([cell.cell_id], cell.attached)
            queue.add_metric([cell.cell_id], cell.queue_s)
        yield from (up, attached, queue)
        rtt = self._radio.rtt
        buckets = [(_bound(bound), float(count)) for bound, count in rtt.buckets()]
        histogram = HistogramMetricFamily(
            "fleet_link_rtt_seconds", "Radio link round trips, simulated seconds"
        )
        histogram.add_metric([], buckets, sum_value=rtt.total)
        yield histogram


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:.6g}"
