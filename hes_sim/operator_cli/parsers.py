"""The operator commands' arguments: ``meter list|show|reads|silent`` and
``command submit|show|list``, each with ``--api``, ``--token-file`` and ``--json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hes_sim.durations import parse_duration
from hes_sim.hes.commands.lifecycle import CommandState, CommandType
from hes_sim.hes.operations import Connectivity

OPERATOR_COMMANDS = frozenset({"meter", "command", "account"})


def add_operator_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", metavar="URL", help="the operator API (default: HES_API_URL)")
    common.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="read the API token from FILE (default: HES_API_TOKEN)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")

    meter = commands.add_parser("meter", help="meters, their reads and silence (operator API)")
    meters = meter.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = meters.add_parser("list", parents=[common], help="meters, filtered")
    listing.add_argument("--state", choices=[c.value for c in Connectivity])
    listing.add_argument("--cell")
    listing.add_argument("--feeder")
    listing.add_argument("--dt")
    listing.add_argument("--limit", type=int, help="1 to 1000 (default 100)")
    listing.add_argument("--offset", type=int)
    show = meters.add_parser("show", parents=[common], help="one meter in detail")
    show.add_argument("meter_id", metavar="METER")
    reads = meters.add_parser("reads", parents=[common], help="a meter's block-load reads")
    reads.add_argument("meter_id", metavar="METER")
    reads.add_argument("--start", help="ISO 8601 (default: 24 h before --end)")
    reads.add_argument("--end", help="ISO 8601, exclusive (default: the simulated now)")
    reads.add_argument("--limit", type=int, help="1 to 10000 (default 1000)")
    silent = meters.add_parser(
        "silent", parents=[common], help="non-communicating meters (not heard from for a while)"
    )
    silent.add_argument(
        "--for", dest="silent_for", metavar="DURATION", help="e.g. 90m, 24h, 3600 (default 24h)"
    )

    command = commands.add_parser("command", help="head-end commands (operator API)")
    actions = command.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = actions.add_parser("submit", parents=[common], help="submit a command to a meter")
    submit.add_argument("meter_id", metavar="METER")
    types = [t.value for t in CommandType]
    submit.add_argument("type", choices=types, metavar="TYPE", help=", ".join(types))
    submit.add_argument("--key", help="idempotency key: a repeat with it acts once")
    submit.add_argument(
        "--deadline",
        type=_duration_arg,
        metavar="DURATION",
        help="simulated time to expire after: 900, 15m, 1h (default 1h)",
    )
    submit.add_argument(
        "--param",
        action="append",
        type=_param_arg,
        default=[],
        metavar="NAME=VALUE",
        help="a command parameter; VALUE is read as JSON when it parses, else as text",
    )
    submit.add_argument(
        "--wait", action="store_true", help="follow the command to its end, printing each step"
    )
    show_command = actions.add_parser("show", parents=[common], help="a command and its history")
    show_command.add_argument("command_id", metavar="ID")
    list_commands = actions.add_parser("list", parents=[common], help="commands, filtered")
    list_commands.add_argument("--meter", dest="meter_id")
    list_commands.add_argument("--state", choices=[s.value for s in CommandState])
    list_commands.add_argument("--limit", type=int, help="1 to 1000 (default 100)")

    account = commands.add_parser("account", help="consumer accounts and recharges (operator API)")
    accounts = account.add_subparsers(dest="action", required=True, metavar="ACTION")
    show_account = accounts.add_parser("show", parents=[common], help="balance, state, history")
    show_account.add_argument("meter_id", metavar="METER")
    recharge = accounts.add_parser(
        "recharge",
        parents=[common],
        help="credit a recharge; a disconnected consumer is reconnected",
    )
    recharge.add_argument("meter_id", metavar="METER")
    recharge.add_argument("--amount", required=True, help="rupees, e.g. 500 or 199.50")
    recharge.add_argument(
        "--reference", required=True, help="the payment's id: the same one credits once"
    )


def _duration_arg(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _param_arg(value: str) -> tuple[str, object]:
    name, sep, raw = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME=VALUE")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw  # plain text needs no quotes on the command line
