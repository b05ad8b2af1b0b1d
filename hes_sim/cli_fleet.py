"""``hes-sim fleet``: one shard of a scenario's fleet on its own, against a broker (or a
cluster) a head-end elsewhere reads — how a fleet spreads past one machine.

Every host runs ``hes-sim fleet SCENARIO --shard K/N`` with the same scenario, seed,
``HES_FLEET_SECRET`` and ``--wall-anchor``; meters are assigned by id exactly as the
run's own fleet processes assign them, so the N shards together are the whole fleet,
and ``hes-sim headend --scenario SCENARIO --wall-anchor T`` agrees with them on time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hes_sim.broker_address import BrokerAddress
from hes_sim.cli_errors import EXIT_UNUSABLE, run_until_stopped
from hes_sim.clock import SimClock
from hes_sim.errors import HesSimError, ScenarioError
from hes_sim.events import EventBus
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.runner.fleet_register import link_factory, scenario_fleet, shard_meters
from hes_sim.scenario.model import Scenario, load_scenario
from hes_sim.settings import Settings

PROGRESS_EVERY_WALL_S = 10.0


@dataclass(frozen=True, slots=True)
class ShardOptions:
    scenario: Scenario
    shard: int
    shards: int
    broker: BrokerAddress
    fleet_secret: bytes
    wall_anchor: float | None


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = commands.add_parser(
        "fleet", help="run one shard of a scenario's fleet against a broker, until it is done"
    )
    fleet.add_argument("scenario", type=Path, help="scenario YAML file (the same on every host)")
    fleet.add_argument("--shard", required=True, help="K/N: this host's shard K of N (0-based)")
    fleet.add_argument("--broker", help="mqtt://host:port (default: HES_BROKER_URL)")
    fleet.add_argument(
        "--wall-anchor",
        type=float,
        help="Unix time of the scenario's start on the wall clock, the same for every shard "
        "and the head-end (default: now, printed)",
    )


def parse_shard(text: str) -> tuple[int, int]:
    try:
        shard, shards = (int(part) for part in text.split("/"))
    except ValueError:
        raise ScenarioError(f"--shard {text!r}: give K/N, e.g. 0/4") from None
    if not 0 <= shard < shards:
        raise ScenarioError(f"--shard {text!r}: K must be 0 to N-1")
    return shard, shards


def fleet_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        options = _options(args, settings)
    except (HesSimError, ValueError) as exc:
        print(f"hes-sim fleet: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    return run_until_stopped("fleet", lambda: run_shard(options), "hes-sim fleet: stopped")


def _options(args: argparse.Namespace, settings: Settings) -> ShardOptions:
    shard, shards = parse_shard(args.shard)
    broker_url = args.broker or settings.broker_url
    if not broker_url:
        raise ScenarioError("give --broker mqtt://host:port or set HES_BROKER_URL")
    if settings.fleet_secret is None:
        raise ScenarioError("set HES_FLEET_SECRET: the head-end derives the same keys from it")
    secret = settings.fleet_secret.get_secret_value().encode()
    FleetKeyring(secret)  # refuses a secret too short before anything starts
    return ShardOptions(load_scenario(args.scenario), shard, shards,
                        BrokerAddress.parse(broker_url), secret, args.wall_anchor)  # fmt: skip


async def run_shard(options: ShardOptions) -> None:
    scenario = options.scenario
    meters = shard_meters(scenario, options.shard, options.shards)
    clock = SimClock(scenario.start.timestamp(), scenario.time_scale)
    links = link_factory(options.broker, scenario.fleet.transport)
    fleet = scenario_fleet(scenario, meters, links, EventBus(), clock,
                           keyring=FleetKeyring(options.fleet_secret))  # fmt: skip
    anchor = options.wall_anchor if options.wall_anchor is not None else time.time()
    sys.stderr.write(f"shard {options.shard}/{options.shards}: {len(meters)} meters, "
                     f"--wall-anchor {anchor:.3f}\n")  # fmt: skip
    async with fleet:
        clock.start(anchor)
        fleet.start(RunPlan(scenario.schedule()))
        finished = asyncio.ensure_future(fleet.wait_finished())
        try:
            while not finished.done():
                await asyncio.wait([finished], timeout=PROGRESS_EVERY_WALL_S)
                done = f"connected {fleet.connected}/{len(meters)}, finished {fleet.finished}"
                sys.stderr.write(f"shard {options.shard}/{options.shards}: {done}\n")
        finally:
            finished.cancel()
