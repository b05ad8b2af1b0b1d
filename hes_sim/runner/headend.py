"""The composition root of ``hes-sim headend``: a head-end on its own, serving until stopped.

With a scenario it knows the fleet (its asset register), the time model and the head-end
settings of that scenario, and its simulated clock is anchored on the wall clock at
``wall_anchor`` so that a fleet started elsewhere with the same anchor agrees on the
time. Without one it runs on real time and learns meters from their traffic.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.hes.commands.lifecycle import INDIA
from hes_sim.hes.inventory import MeterInfo
from hes_sim.hes.node import ApiOptions, HeadEndNode, NodeOptions
from hes_sim.keyring import FleetKeyring
from hes_sim.runner.fleet_register import scenario_grid, scenario_register
from hes_sim.scenario.model import Scenario

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HeadEndProcessOptions:
    broker: BrokerAddress
    db_path: str | Path  # a SQLite file, or a postgresql:// URL
    fleet_secret: bytes
    api: ApiOptions
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    scenario: Scenario | None = None
    wall_anchor: float | None = None  # wall time of the scenario's start; None: now
    ingest_workers: int | None = None  # None: the scenario's, or none without one


def _clock(options: HeadEndProcessOptions) -> SimClock:
    anchor = options.wall_anchor if options.wall_anchor is not None else time.time()
    if options.scenario is None:
        return SimClock(anchor, 1.0, wall_anchor=anchor)  # simulated time is real time
    scenario = options.scenario
    return SimClock(scenario.start.timestamp(), scenario.time_scale, wall_anchor=anchor)


def _register(scenario: Scenario | None) -> list[MeterInfo]:
    if scenario is None:
        return []
    return scenario_register(scenario, scenario_grid(scenario))


def node_options(options: HeadEndProcessOptions) -> NodeOptions:
    base = NodeOptions(
        broker=options.broker,
        db_path=options.db_path,
        keyring=FleetKeyring(options.fleet_secret),
        tz=INDIA,
        metrics_host=options.metrics_host,
        metrics_port=options.metrics_port,
        api=options.api,
        ingest_workers=options.ingest_workers or 0,
    )
    scenario = options.scenario
    if scenario is None:
        return base
    return replace(
        base,
        tz=scenario.tz,
        require_ciphered=scenario.security.pushes == "ciphered",
        silence_s=scenario.silence_s,
        command_concurrency=scenario.headend.command_concurrency,
        per_cell_command_limit=scenario.headend.per_cell_command_limit,
        non_communicating_after_s=scenario.headend.non_communicating_after,
        schedule=scenario.schedule(),
        backfill=scenario.backfill_settings(),
        seed=scenario.seed,
        ingest_workers=(
            scenario.headend.ingest_workers
            if options.ingest_workers is None
            else options.ingest_workers
        ),
    )


async def serve_headend(options: HeadEndProcessOptions) -> None:
    """Run until cancelled (Ctrl-C or SIGTERM through the caller)."""
    node = HeadEndNode(
        node_options(options), _clock(options), EventBus(), _register(options.scenario)
    )
    async with node:
        await node.wait_subscribed()
        metrics = f"http://{options.metrics_host}:{node.hes.metrics.port}/metrics"
        sys.stderr.write(f"head-end ready: operator API on {node.api_url}, metrics on {metrics}\n")
        sys.stderr.flush()
        await asyncio.Event().wait()
