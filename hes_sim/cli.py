"""``hes-sim``: the command line.

Exit codes of ``run``: 0 every SLA passed, 1 an SLA failed, 2 the scenario is invalid or
the run could not start, 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError

from hes_sim import __version__, cli_fleet, cli_headend
from hes_sim.broker_address import BrokerAddress
from hes_sim.cli_errors import start_failures
from hes_sim.durations import parse_duration
from hes_sim.errors import HesSimError, ScenarioError
from hes_sim.hes.node import ApiOptions
from hes_sim.keyring import FleetKeyring
from hes_sim.logging import configure_logging
from hes_sim.meter_sim.meter import CONSUMER_KINDS, MeterKind
from hes_sim.operator_cli import OPERATOR_COMMANDS, add_operator_parsers, run_operator
from hes_sim.protocols.topics import Channel, topic
from hes_sim.runner.gateway import run_gateway
from hes_sim.runner.run import RunOptions, run_scenario
from hes_sim.scenario.model import Scenario, load_scenario
from hes_sim.settings import Settings

EXIT_PASSED, EXIT_SLA_FAILED, EXIT_UNUSABLE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM
T = TypeVar("T")
log = structlog.get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hes-sim",
        description="Head-end system simulator for 4G smart meters (DLMS/COSEM over MQTT).",
    )
    parser.add_argument("--version", action="version", version=f"hes-sim {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a scenario end to end and write its report")
    run.add_argument("scenario", type=Path, help="scenario YAML file")
    run.add_argument("--report-dir", type=Path, required=True, help="where report.json goes")
    run.add_argument(
        "--broker",
        help="mqtt://host:port of an existing broker "
        "(default: a private mosquitto on a free loopback port)",
    )
    run.add_argument("--metrics-port", type=int, help="head-end /metrics port (default: free)")
    run.add_argument(
        "--db",
        help="SQLite file, or postgresql://user@host/db of an empty database "
        "(default: REPORT_DIR/reads.sqlite, fresh for each run)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress line")

    check = commands.add_parser("validate", help="check a scenario file and exit")
    check.add_argument("scenario", type=Path)

    gateway = commands.add_parser(
        "gateway", help="expose one virtual meter to DLMS clients on a loopback TCP port"
    )
    gateway.add_argument("--meter", required=True, help="meter id, e.g. SP0000001")
    gateway.add_argument("--port", type=int, default=4059, help="TCP port on 127.0.0.1")
    gateway.add_argument(
        "--kind", choices=[k.value for k in CONSUMER_KINDS], default="single_phase"
    )
    gateway.add_argument("--seed", type=int, default=1, help="fleet seed of the meter's load")
    gateway.add_argument("--history", default="1d", help="block-load history to start with")

    keys = commands.add_parser(
        "keys", help="print a meter's system title and suite-0 keys (from HES_FLEET_SECRET)"
    )
    keys.add_argument("--meter", required=True)
    add_operator_parsers(commands)
    cli_headend.add_parser(commands)
    cli_fleet.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"hes-sim: bad HES_* setting: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    configure_logging(settings.log_level, settings.log_format)
    if args.command in OPERATOR_COMMANDS:
        return run_operator(args, settings)
    without_scenario = {
        "headend": cli_headend.headend_command,
        "fleet": cli_fleet.fleet_command,
        "gateway": meter_command,
        "keys": meter_command,
    }
    if args.command in without_scenario:
        return without_scenario[args.command](args, settings)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"hes-sim: invalid scenario: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.command == "validate":
        print(f"{args.scenario}: valid scenario {scenario.name!r}, {scenario.meter_count} meters")
        return EXIT_PASSED
    return run_command(args, settings, scenario)


def meter_command(args: argparse.Namespace, settings: Settings) -> int:
    if settings.fleet_secret is None:
        print(
            "hes-sim: set HES_FLEET_SECRET: the meter's keys derive from it, and a DLMS "
            "client needs them (hes-sim keys --meter ID prints them)",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    try:
        keyring = FleetKeyring(settings.fleet_secret.get_secret_value().encode())
        topic(args.meter, Channel.UP)  # validates the meter id
    except ValueError as exc:
        print(f"hes-sim: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.command == "keys":
        keys = keyring.keys_for(args.meter)
        print(f"meter {args.meter}")
        print(f"system title           {keyring.system_title_for(args.meter).hex()}")
        print(f"block cipher key       {keys.block_cipher_key.hex()}")
        print(f"authentication key     {keys.authentication_key.hex()}")
        return EXIT_PASSED
    return serve_gateway(args, keyring)


def serve_gateway(args: argparse.Namespace, keyring: FleetKeyring) -> int:
    try:
        history = parse_duration(args.history)
        run = run_gateway(
            args.meter, MeterKind(args.kind), args.port, keyring, seed=args.seed, history_s=history
        )
        asyncio.run(_stoppable(run))
    except ValueError as exc:
        print(f"hes-sim: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:
        print(f"hes-sim: the gateway could not start: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except (KeyboardInterrupt, asyncio.CancelledError):
        return EXIT_PASSED
    return EXIT_PASSED


def run_command(args: argparse.Namespace, settings: Settings, scenario: Scenario) -> int:
    broker_url = args.broker or settings.broker_url
    try:
        broker = BrokerAddress.parse(broker_url) if broker_url else None
    except ValueError as exc:
        print(f"hes-sim: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    options = RunOptions(
        report_dir=args.report_dir,
        scenario_path=args.scenario.resolve(),
        broker=broker,
        db_path=args.db or settings.db_path,
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port if args.metrics_port is None else args.metrics_port,
        progress=not args.no_progress,
        fleet_secret=(
            settings.fleet_secret.get_secret_value().encode() if settings.fleet_secret else None
        ),
        api=ApiOptions(
            token=(
                settings.api_token.get_secret_value()
                if settings.api_token
                else secrets.token_urlsafe(24)
            ),
            host=settings.api_host,
            port=settings.api_port,
        ),
        api_token_given=settings.api_token is not None,
    )
    try:
        report = asyncio.run(_stoppable(run_scenario(scenario, options)))
    except (HesSimError, OSError, ExceptionGroup) as exc:
        # errors raised inside a TaskGroup arrive wrapped in an ExceptionGroup
        reasons = start_failures(exc)
        if reasons is None:
            raise
        print(f"hes-sim: the run could not start or finish: {reasons}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print("hes-sim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        print("hes-sim: stopped by SIGTERM; everything was shut down", file=sys.stderr)
        return EXIT_TERMINATED
    print(report.summary())
    print(f"report: {args.report_dir / 'report.json'}")
    return EXIT_PASSED if report.passed else EXIT_SLA_FAILED


async def _stoppable(run: Coroutine[Any, Any, T]) -> T:
    """Run ``run`` so that SIGTERM (a CI timeout, a service stop) shuts it down cleanly,
    stopping the fleet, the head-end and the private broker, as Ctrl-C does."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    if main_task is None:  # pragma: no cover - asyncio.run always runs a task
        return await run
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        return await run
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
