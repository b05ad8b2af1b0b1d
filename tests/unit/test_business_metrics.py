"""Prepaid and export metrics follow their domain events."""

from prometheus_client import CollectorRegistry

from hes_sim.events import ExportDelivered, ExportFailed, LightBack, LowBalance, PrepaidDisconnected
from hes_sim.hes.metrics import BusinessMetrics


def test_prepaid_and_export_events_move_their_metrics():
    registry = CollectorRegistry()
    metrics = BusinessMetrics(registry)
    for event in (
        LightBack("SP1", 120.0),
        LightBack("SP2", 400.0),
        PrepaidDisconnected("SP1"),
        LowBalance("SP1", "0.30"),
        LowBalance("SP1", "0.30"),
        ExportDelivered("webhook", 500, 30.0),
        ExportFailed("webhook", 200, True, "connect", 10.0),
    ):
        metrics(event)
    sample = registry.get_sample_value
    assert sample("hes_recharge_to_light_seconds_count") == 2
    assert sample("hes_recharge_to_light_seconds_sum") == 520.0
    assert sample("hes_prepaid_disconnections_total") == 1
    assert sample("hes_low_balance_alerts_total", {"threshold": "0.30"}) == 2
    assert sample("hes_export_records_total", {"sink": "webhook"}) == 500
    assert (
        sample("hes_export_failed_records_total", {"sink": "webhook", "retriable": "true"}) == 200
    )
