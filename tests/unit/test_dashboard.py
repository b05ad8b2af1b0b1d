"""The Grafana dashboard queries only metrics the head-end exports, and is up to date."""

import importlib.util
import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from hes_sim.hes.metrics import BusinessMetrics, HesMetrics, NodeGauges

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "config" / "grafana" / "hes-sim.json"


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    HesMetrics(registry, queue_depth=lambda: 0, meters_online=lambda: 0)
    BusinessMetrics(registry)
    registry.register(
        NodeGauges(open_commands=dict, meters_known=lambda: 0, meters_online=lambda: 0,
                   meters_silent=lambda: 0, export_pending=lambda: 0,
                   silent_after_s=86_400)
    )  # fmt: skip
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")  # labelled counters have no samples yet
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
    return names


def test_every_queried_metric_is_exported():
    board = json.loads(DASHBOARD.read_text())
    queried = set()
    for panel in board["panels"]:
        for target in panel["targets"]:
            queried.update(re.findall(r"\bhes_[a-z_]+", target["expr"]))
    assert queried
    assert queried <= exported_names(), queried - exported_names()


def test_committed_dashboard_matches_its_generator():
    spec = importlib.util.spec_from_file_location(
        "make_dashboard", ROOT / "scripts" / "make_dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(DASHBOARD.read_text()) == module.dashboard()
