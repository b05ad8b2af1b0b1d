"""Lean links' counters: snapshots add up over processes and are scraped as counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from hes_sim.meter_sim.lean.context import LeanStats, WireTotals, wire_totals_of
from hes_sim.meter_sim.metrics import WireCollector


def test_a_snapshot_is_the_counters_with_errors_by_reason_in_order():
    stats = LeanStats(connects=5, refused=1, connect_failures=2, lost=3)
    stats.errors["keepalive"] += 2
    stats.errors["malformed"] += 1
    assert stats.totals() == WireTotals(5, 1, 2, 3, (("keepalive", 2), ("malformed", 1)))


def test_snapshots_add_field_by_field_and_reason_by_reason():
    a = WireTotals(5, 1, 2, 3, (("keepalive", 2), ("malformed", 1)))
    b = WireTotals(7, 0, 1, 1, (("malformed", 4), ("protocol", 1)))
    total = sum((a, b), WireTotals())
    assert total == WireTotals(12, 1, 3, 4, (("keepalive", 2), ("malformed", 5), ("protocol", 1)))


def test_only_a_factory_that_counts_has_totals():
    class Counting:
        def wire_totals(self) -> WireTotals:
            return WireTotals(connects=1)

    assert wire_totals_of(Counting()) == WireTotals(connects=1)
    assert wire_totals_of(lambda meter_id: meter_id) is None


def test_the_collector_scrapes_counters_and_errors_by_reason():
    registry = CollectorRegistry()
    registry.register(WireCollector(lambda: WireTotals(4, 1, 2, 3, (("keepalive", 2),))))
    text = generate_latest(registry).decode()
    assert "fleet_lean_connects_total 4.0" in text
    assert "fleet_lean_connect_refused_total 1.0" in text
    assert "fleet_lean_connect_failures_total 2.0" in text
    assert "fleet_lean_links_lost_total 3.0" in text
    assert 'fleet_lean_wire_errors_total{reason="keepalive"} 2.0' in text


def test_without_lean_links_the_collector_has_nothing_to_say():
    registry = CollectorRegistry()
    registry.register(WireCollector(lambda: None))
    assert generate_latest(registry) == b""
