"""``hes-sim headend``: a head-end on its own, against a broker its meters already use."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from hes_sim.broker_address import BrokerAddress
from hes_sim.cli_errors import EXIT_UNUSABLE, run_until_stopped
from hes_sim.errors import HesSimError, ScenarioError
from hes_sim.hes.node import ApiOptions
from hes_sim.keyring import FleetKeyring
from hes_sim.runner.headend import HeadEndProcessOptions, serve_headend
from hes_sim.scenario.model import Scenario, load_scenario
from hes_sim.settings import Settings

STOPPED = "hes-sim headend: stopped; open commands stay in the store"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    headend = commands.add_parser(
        "headend",
        help="run a head-end on its own (ingest, commands, backfill, operator API) until stopped",
    )
    headend.add_argument("--broker", help="mqtt://host:port (default: HES_BROKER_URL)")
    headend.add_argument(
        "--db",
        help="SQLite file or postgresql:// URL, kept across restarts (default: HES_DB_PATH)",
    )
    headend.add_argument(
        "--scenario", type=Path, help="know this scenario's fleet, time model and settings"
    )
    headend.add_argument(
        "--wall-anchor",
        type=float,
        help="Unix time at which the scenario's start was on the wall clock (default: now); "
        "give a fleet started elsewhere the same anchor so both agree on simulated time",
    )
    headend.add_argument("--api-port", type=int, help="operator API port (default: HES_API_PORT)")
    headend.add_argument("--metrics-port", type=int, help="/metrics port (default: free)")
    headend.add_argument(
        "--ingest-workers",
        type=int,
        choices=range(33),
        metavar="N",
        help="processes that take and store the pushes, on the brokers' shared subscription "
        "(default: the scenario's headend.ingest_workers, else 0: this process)",
    )


def headend_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        options = _options(args, settings)
    except (HesSimError, ValueError) as exc:
        print(f"hes-sim headend: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    return run_until_stopped("headend", lambda: serve_headend(options), STOPPED)


def _options(args: argparse.Namespace, settings: Settings) -> HeadEndProcessOptions:
    broker_url = args.broker or settings.broker_url
    if not broker_url:
        raise ScenarioError("give --broker mqtt://host:port or set HES_BROKER_URL")
    db_path = args.db or settings.db_path
    if db_path is None:
        raise ScenarioError("give --db FILE or set HES_DB_PATH: the head-end keeps its state there")
    if settings.fleet_secret is None:
        raise ScenarioError("set HES_FLEET_SECRET to the secret the meters' keys derive from")
    fleet_secret = settings.fleet_secret.get_secret_value().encode()
    FleetKeyring(fleet_secret)  # refuses a secret too short (ValueError) before anything starts
    token = settings.api_token.get_secret_value() if settings.api_token else None
    if token is None:
        token = secrets.token_urlsafe(24)
        sys.stderr.write(f"HES_API_TOKEN was not set; this head-end's API token: {token}\n")
    scenario: Scenario | None = None if args.scenario is None else load_scenario(args.scenario)
    return HeadEndProcessOptions(
        broker=BrokerAddress.parse(broker_url),
        db_path=db_path,
        fleet_secret=fleet_secret,
        api=ApiOptions(
            token=token,
            host=settings.api_host,
            port=settings.api_port if args.api_port is None else args.api_port,
        ),
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port if args.metrics_port is None else args.metrics_port,
        scenario=scenario,
        wall_anchor=args.wall_anchor,
        ingest_workers=args.ingest_workers,
    )
