"""Writes config/grafana/hes-sim.json, the Grafana dashboard over the head-end's metrics.

Run it after changing the panels: `python scripts/make_dashboard.py`. The test suite checks
that every metric the dashboard queries is one the head-end exports.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "config" / "grafana" / "hes-sim.json"
DS = {"type": "prometheus", "uid": "${datasource}"}

PANELS = [
    ("Meters online", "hes_meters_online", "stat", "short"),
    ("Reads stored per second", "rate(hes_reads_stored_total[5m])", "timeseries", "reqps"),
    ("Duplicate reads per second", "rate(hes_reads_duplicate_total[5m])", "timeseries", "reqps"),
    ("Rejected messages by reason",
     "sum by (reason) (rate(hes_decode_errors_total[5m]))", "timeseries", "reqps"),
    ("Read delivery delay p95 (simulated s)",
     "histogram_quantile(0.95, sum by (le) (rate(hes_read_delivery_delay_seconds_bucket[5m])))",
     "timeseries", "s"),
    ("Reconnection time p95 (simulated s)",
     "histogram_quantile(0.95, sum by (le) (rate(hes_reconnection_seconds_bucket[15m])))",
     "timeseries", "s"),
    ("Command duration p95 by type and outcome (simulated s)",
     ("histogram_quantile(0.95, sum by (le, type, outcome) "
      "(rate(hes_command_duration_seconds_bucket[15m])))"), "timeseries", "s"),
    ("Commands finished by outcome",
     "sum by (outcome) (increase(hes_command_duration_seconds_count[15m]))", "timeseries",
     "short"),
    ("Meter events by code", "sum by (code) (increase(hes_meter_events_total[15m]))",
     "timeseries", "short"),
    ("Ingest queue depth", "hes_ingest_queue_depth", "timeseries", "short"),
    ("Open commands by state (queued: waiting for the meter)",
     "sum by (state) (hes_commands_open)", "timeseries", "short"),
    ("Meters non-communicating", "hes_meters_non_communicating", "stat", "short"),
    ("Meters offline (known, not online)", "hes_meters_offline", "timeseries", "short"),
    ("Meters going online / offline",
     "sum by (state) (increase(hes_meter_presence_changes_total[15m]))", "timeseries", "short"),
    ("Backfill: intervals requested and reads recovered",
     ["increase(hes_backfill_intervals_requested_total[15m])",
      "increase(hes_backfill_reads_recovered_total[15m])"], "timeseries", "short"),
    ("Meters known", "hes_meters_known", "stat", "short"),
    ("Recharge to light p95 (simulated s)",
     "histogram_quantile(0.95, sum by (le) (rate(hes_recharge_to_light_seconds_bucket[15m])))",
     "timeseries", "s"),
    ("Prepaid disconnections and low-balance alerts",
     ["increase(hes_prepaid_disconnections_total[15m])",
      "sum by (threshold) (increase(hes_low_balance_alerts_total[15m]))"], "timeseries", "short"),
    ("Billing export: records delivered and failed",
     ["sum by (sink) (rate(hes_export_records_total[5m]))",
      "sum by (sink) (rate(hes_export_failed_records_total[5m]))"], "timeseries", "reqps"),
    ("Billing export: records waiting in the outbox", "hes_export_pending", "timeseries",
     "short"),
    ("Billing export lag p95 (simulated s)",
     "histogram_quantile(0.95, sum by (le) (rate(hes_export_lag_seconds_bucket[15m])))",
     "timeseries", "s"),
    ("Broker sessions (reconnects)", "hes_broker_sessions_total", "stat", "short"),
]  # fmt: skip


def dashboard() -> dict[str, object]:
    panels = []
    for index, (title, expr, kind, unit) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": kind,
                "title": title,
                "datasource": DS,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + n), "datasource": DS, "expr": one}
                    for n, one in enumerate([expr] if isinstance(expr, str) else expr)
                ],
            }
        )
    return {
        "title": "hes-sim head-end",
        "uid": "hes-sim-head-end",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT.name}")
