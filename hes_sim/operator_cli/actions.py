"""Each operator command: ask the API, print the answer (or its JSON), return the exit
code."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from hes_sim.hes.commands.lifecycle import CommandState
from hes_sim.operator_cli.client import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ApiClient,
    Json,
    OperatorError,
    api_url_of,
    segment,
    token_of,
)
from hes_sim.operator_cli.render import (
    COMMAND_COLUMNS,
    METER_COLUMNS,
    READ_COLUMNS,
    SILENT_COLUMNS,
    cell,
    command_text,
    duration,
    pairs,
    plural,
    print_json,
    read_line,
    seconds,
    table,
    when,
)
from hes_sim.settings import Settings

POLL_FIRST_S, POLL_MAX_S = 0.25, 2.0  # --wait: poll quickly at first, never slower than 2 s


def run_operator(args: argparse.Namespace, settings: Settings) -> int:
    try:
        with ApiClient(api_url_of(args, settings), token_of(args, settings)) as api:
            return ACTIONS[(args.command, args.action)](api, args)
    except OperatorError as exc:
        print(f"hes-sim: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hes-sim: interrupted (a submitted command goes on)", file=sys.stderr)
        return EXIT_INTERRUPTED


def meter_list(api: ApiClient, args: argparse.Namespace) -> int:
    filters = {"state": args.state, "cell": args.cell, "feeder": args.feeder, "dt": args.dt}
    page = api.get("/meters", {**filters, "limit": args.limit, "offset": args.offset})
    if args.json:
        return print_json(page)
    meters = page["meters"]
    if not meters:
        print("no meters match")
        return EXIT_OK
    print(table(METER_COLUMNS, meters))
    print(f"{len(meters)} meter{plural(meters)} (offset {page['offset']}, limit {page['limit']})")
    return EXIT_OK


def meter_show(api: ApiClient, args: argparse.Namespace) -> int:
    meter = api.get(f"/meters/{segment(args.meter_id)}")
    if args.json:
        return print_json(meter)
    link, read = meter["link"], meter["last_read"]
    since = f" since {when(link['state_since'])}" if link["state_since"] else ""
    share = link["uptime_share"]
    rows = [
        ("meter", f"{meter['meter_id']} ({meter['kind']})"),
        ("state", f"{meter['state']}{since}"),
        ("relay", meter["relay"]),
        ("last seen", when(meter["last_seen"])),
        ("cell / feeder / dt", " / ".join(cell(meter[k]) for k in ("cell", "feeder", "dt"))),
        ("uptime share", "-" if share is None else f"{share:.1%}"),
        ("transitions", link["transitions"]),
        ("reads stored", link["reads_stored"]),
        ("delivery p95", seconds(link["delivery_delay_p95_s"])),
        ("command rtt p95", seconds(link["command_round_trip_p95_s"])),
        ("last read", "none" if read is None else read_line(read)),
        ("open commands", ", ".join(meter["open_commands"]) or "none"),
    ]
    print(pairs(rows))
    return EXIT_OK


def meter_reads(api: ApiClient, args: argparse.Namespace) -> int:
    page = api.get(
        f"/meters/{segment(args.meter_id)}/reads",
        {"start": args.start, "end": args.end, "limit": args.limit},
    )
    if args.json:
        return print_json(page)
    reads = page["reads"]
    window = f"from {when(page['start'])} to {when(page['end'])}"
    if not reads:
        print(f"no reads of {page['meter_id']} {window}")
        return EXIT_OK
    print(table(READ_COLUMNS, reads))
    full = " (the limit: narrow the window or raise --limit)" if len(reads) == page["limit"] else ""
    print(f"{len(reads)} read{plural(reads)} of {page['meter_id']} {window}{full}")
    return EXIT_OK


def meter_silent(api: ApiClient, args: argparse.Namespace) -> int:
    report = api.get("/reports/non-communicating", {"silent_for": args.silent_for})
    if args.json:
        return print_json(report)
    meters = report["meters"]
    what = f"silent for {duration(report['silent_for_s'])} or more as of {when(report['as_of'])}"
    if not meters:
        print(f"no meter {what}")
        return EXIT_OK
    print(table(SILENT_COLUMNS, meters))
    print(f"{len(meters)} meter{plural(meters)} {what}")
    return EXIT_OK


def command_submit(api: ApiClient, args: argparse.Namespace) -> int:
    body: Json = {"meter_id": args.meter_id, "type": args.type, "parameters": dict(args.param)}
    if args.deadline is not None:
        body["deadline_s"] = args.deadline
    headers = {} if args.key is None else {"Idempotency-Key": args.key}
    command = api.post("/commands", body, headers)
    if not args.wait:
        if args.json:
            return print_json(command)
        print(command_text(command))
        return EXIT_OK
    if not args.json:
        print(f"command {command['command_id']}: {command['type']} {command['meter_id']}")
    command = _follow(api, command, echo=not args.json)
    if args.json:
        print_json(command)
    else:
        failure = f" ({command['failure']})" if command["failure"] else ""
        print(f"command {command['command_id']} {command['state']}{failure}")
    return EXIT_OK if command["state"] == CommandState.CONFIRMED else EXIT_FAILED


def _follow(api: ApiClient, command: Json, *, echo: bool) -> Json:
    """Polls until the command is terminal, printing each transition once as it appears.

    Quickly while it moves, backing off to ``POLL_MAX_S`` while it waits (for a meter
    offline, a retry, its deadline).
    """
    shown, delay = 0, POLL_FIRST_S
    path = f"/commands/{segment(command['command_id'])}"
    while True:
        history = command["history"]
        if echo:
            for step in history[shown:]:
                line = f"  {when(step['at'])}  {step['state']:<12}  {step['detail']}"
                print(line.rstrip(), flush=True)
        delay = POLL_FIRST_S if len(history) > shown else min(delay * 2, POLL_MAX_S)
        shown = len(history)
        if command["done"]:
            return command
        time.sleep(delay)
        command = api.get(path)


def command_show(api: ApiClient, args: argparse.Namespace) -> int:
    command = api.get(f"/commands/{segment(args.command_id)}")
    if args.json:
        return print_json(command)
    print(command_text(command))
    return EXIT_OK


def command_list(api: ApiClient, args: argparse.Namespace) -> int:
    listing = api.get(
        "/commands", {"meter_id": args.meter_id, "state": args.state, "limit": args.limit}
    )
    if args.json:
        return print_json(listing)
    commands = listing["commands"]
    if not commands:
        print("no commands match")
        return EXIT_OK
    print(table(COMMAND_COLUMNS, commands))
    print(f"{len(commands)} command{plural(commands)}")
    return EXIT_OK


def account_show(api: ApiClient, args: argparse.Namespace) -> int:
    account = api.get(f"/accounts/{segment(args.meter_id)}")
    if args.json:
        return print_json(account)
    rows = [
        ("meter / consumer", f"{account['meter_id']} / {account['consumer_id']}"),
        ("mode", account["mode"]),
        ("state", account["state"]),
        ("balance", f"₹{account['balance']}"),
        ("supply", "on" if account["supply_on"] else "off"),
    ]
    print(pairs(rows))
    for step in account["history"]:
        print(f"  {when(step['at'])}  {step['state']:<18} {step['reason']}")
    for alert in account["alerts"]:
        share = f"{float(alert['threshold']):.0%}"
        print(f"  {when(alert['at'])}  low balance: ₹{alert['balance']} at or under {share}"
              f" level ₹{alert['level']}")  # fmt: skip
    return EXIT_OK


def account_recharge(api: ApiClient, args: argparse.Namespace) -> int:
    body = {"amount": args.amount, "reference": args.reference}
    done = api.post(f"/accounts/{segment(args.meter_id)}/recharges", body, {})
    if args.json:
        return print_json(done)
    reconnect = done["reconnect_command"]
    tail = f"; reconnect command {reconnect}" if reconnect else ""
    print(f"{done['meter_id']}: balance ₹{done['balance']}, {done['state']}{tail}")
    return EXIT_OK


ACTIONS: dict[tuple[str, str], Callable[[ApiClient, argparse.Namespace], int]] = {
    ("meter", "list"): meter_list,
    ("meter", "show"): meter_show,
    ("meter", "reads"): meter_reads,
    ("meter", "silent"): meter_silent,
    ("command", "submit"): command_submit,
    ("command", "show"): command_show,
    ("command", "list"): command_list,
    ("account", "show"): account_show,
    ("account", "recharge"): account_recharge,
}
