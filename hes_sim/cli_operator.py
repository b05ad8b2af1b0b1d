"""``hes-sim meter …`` and ``hes-sim command …``: the operator CLI over the operator API.

A thin client: the API validates and answers, this module finds the API (``--api`` or
``HES_API_URL``), sends the token (``--token-file`` or ``HES_API_TOKEN``) and prints the
answer as aligned text, or as the API's own JSON with ``--json``.

Exit codes: 0 done, 1 not found (or, with ``--wait``, the command ended failed or
expired), 2 a usage error, an API that cannot be reached, a refused token or a refused
request; 130 interrupted. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from hes_sim.errors import HesSimError
from hes_sim.hes.commands.lifecycle import CommandState, CommandType
from hes_sim.hes.operations import Connectivity
from hes_sim.scenario.model import parse_duration
from hes_sim.settings import Settings

OPERATOR_COMMANDS = frozenset({"meter", "command"})
EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
HTTP_TIMEOUT_S = 10.0
POLL_FIRST_S, POLL_MAX_S = 0.25, 2.0  # --wait: poll quickly at first, never slower than 2 s
Json = dict[str, Any]
LOCATIONS = frozenset({"body", "query", "path", "header"})  # where FastAPI found a bad value


class OperatorError(HesSimError):
    """Ends an operator command with ``exit_code`` and one line for the operator."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- the command line -------------------------------------------------------------------


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


def run_operator(args: argparse.Namespace, settings: Settings) -> int:
    try:
        with ApiClient(_api_url(args, settings), _token(args, settings)) as api:
            return ACTIONS[(args.command, args.action)](api, args)
    except OperatorError as exc:
        print(f"hes-sim: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hes-sim: interrupted (a submitted command goes on)", file=sys.stderr)
        return EXIT_INTERRUPTED


def _api_url(args: argparse.Namespace, settings: Settings) -> str:
    url: str | None = args.api or settings.api_url
    if not url:
        raise OperatorError(
            EXIT_UNUSABLE,
            "where is the operator API? pass --api http://HOST:PORT or set HES_API_URL "
            "(the head-end prints its URL when it starts)",
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise OperatorError(EXIT_UNUSABLE, f"{url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise OperatorError(EXIT_UNUSABLE, f"{url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def _token(args: argparse.Namespace, settings: Settings) -> str:
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise OperatorError(EXIT_UNUSABLE, f"cannot read the token file: {exc}") from exc
        source = str(args.token_file)
    elif settings.api_token is not None:
        token, source = settings.api_token.get_secret_value().strip(), "HES_API_TOKEN"
    else:
        raise OperatorError(
            EXIT_UNUSABLE,
            "no API token: set HES_API_TOKEN to the head-end's operator API token "
            "(or pass --token-file FILE)",
        )
    if not token or not token.isascii() or not token.isprintable():
        raise OperatorError(EXIT_UNUSABLE, f"the token in {source} is empty or not printable ASCII")
    return token


# --- talking to the API ---------------------------------------------------------------


class ApiClient:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self._http.close()

    def get(self, path: str, params: Mapping[str, object] | None = None) -> Json:
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        return self._send(self._http.build_request("GET", f"/api/v1{path}", params=query))

    def post(self, path: str, body: Json, headers: Mapping[str, str]) -> Json:
        request = self._http.build_request(
            "POST", f"/api/v1{path}", json=body, headers=dict(headers)
        )
        return self._send(request)

    def _send(self, request: httpx.Request) -> Json:
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise OperatorError(
                EXIT_UNUSABLE, f"cannot reach the operator API at {self.base_url}: {exc}"
            ) from exc
        if response.status_code == 401:
            raise OperatorError(
                EXIT_UNUSABLE,
                "the operator API refused the token (401): set HES_API_TOKEN (or --token-file) "
                "to the token the head-end was started with",
            )
        body = _json(response)
        if response.status_code == 404:
            raise OperatorError(EXIT_FAILED, f"not found: {_detail(body)}")
        if response.status_code == 422:
            raise OperatorError(EXIT_UNUSABLE, f"refused: {_detail(body)}")
        if response.status_code >= 400:
            raise OperatorError(
                EXIT_UNUSABLE,
                f"the operator API answered {response.status_code}: {_detail(body)}",
            )
        if not isinstance(body, dict):
            raise OperatorError(EXIT_UNUSABLE, f"unexpected answer from {self.base_url}")
        return body


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text[:200] or response.reason_phrase}


def _detail(body: object) -> str:
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors: name the field of each
        parts = []
        for error in detail:
            where = [str(p) for p in error.get("loc", []) if p not in LOCATIONS]
            message = str(error.get("msg", error))
            parts.append(f"{'.'.join(where)}: {message}" if where else message)
        return "; ".join(parts)
    return str(detail)


# --- the actions ------------------------------------------------------------------------


def meter_list(api: ApiClient, args: argparse.Namespace) -> int:
    filters = {"state": args.state, "cell": args.cell, "feeder": args.feeder, "dt": args.dt}
    page = api.get("/meters", {**filters, "limit": args.limit, "offset": args.offset})
    if args.json:
        return _print_json(page)
    meters = page["meters"]
    if not meters:
        print("no meters match")
        return EXIT_OK
    print(_table(METER_COLUMNS, meters))
    print(f"{len(meters)} meter{_s(meters)} (offset {page['offset']}, limit {page['limit']})")
    return EXIT_OK


def meter_show(api: ApiClient, args: argparse.Namespace) -> int:
    meter = api.get(f"/meters/{_segment(args.meter_id)}")
    if args.json:
        return _print_json(meter)
    link, read = meter["link"], meter["last_read"]
    since = f" since {_when(link['state_since'])}" if link["state_since"] else ""
    share = link["uptime_share"]
    rows = [
        ("meter", f"{meter['meter_id']} ({meter['kind']})"),
        ("state", f"{meter['state']}{since}"),
        ("relay", meter["relay"]),
        ("last seen", _when(meter["last_seen"])),
        ("cell / feeder / dt", " / ".join(_cell(meter[k]) for k in ("cell", "feeder", "dt"))),
        ("uptime share", "-" if share is None else f"{share:.1%}"),
        ("transitions", link["transitions"]),
        ("reads stored", link["reads_stored"]),
        ("delivery p95", _seconds(link["delivery_delay_p95_s"])),
        ("command rtt p95", _seconds(link["command_round_trip_p95_s"])),
        ("last read", "none" if read is None else _read_line(read)),
        ("open commands", ", ".join(meter["open_commands"]) or "none"),
    ]
    print(_pairs(rows))
    return EXIT_OK


def meter_reads(api: ApiClient, args: argparse.Namespace) -> int:
    page = api.get(
        f"/meters/{_segment(args.meter_id)}/reads",
        {"start": args.start, "end": args.end, "limit": args.limit},
    )
    if args.json:
        return _print_json(page)
    reads = page["reads"]
    window = f"from {_when(page['start'])} to {_when(page['end'])}"
    if not reads:
        print(f"no reads of {page['meter_id']} {window}")
        return EXIT_OK
    print(_table(READ_COLUMNS, reads))
    full = " (the limit: narrow the window or raise --limit)" if len(reads) == page["limit"] else ""
    print(f"{len(reads)} read{_s(reads)} of {page['meter_id']} {window}{full}")
    return EXIT_OK


def meter_silent(api: ApiClient, args: argparse.Namespace) -> int:
    report = api.get("/reports/non-communicating", {"silent_for": args.silent_for})
    if args.json:
        return _print_json(report)
    meters = report["meters"]
    what = f"silent for {_duration(report['silent_for_s'])} or more as of {_when(report['as_of'])}"
    if not meters:
        print(f"no meter {what}")
        return EXIT_OK
    print(_table(SILENT_COLUMNS, meters))
    print(f"{len(meters)} meter{_s(meters)} {what}")
    return EXIT_OK


def command_submit(api: ApiClient, args: argparse.Namespace) -> int:
    body: Json = {"meter_id": args.meter_id, "type": args.type, "parameters": dict(args.param)}
    if args.deadline is not None:
        body["deadline_s"] = args.deadline
    headers = {} if args.key is None else {"Idempotency-Key": args.key}
    command = api.post("/commands", body, headers)
    if not args.wait:
        if args.json:
            return _print_json(command)
        print(_command_text(command))
        return EXIT_OK
    if not args.json:
        print(f"command {command['command_id']}: {command['type']} {command['meter_id']}")
    command = _follow(api, command, echo=not args.json)
    if args.json:
        _print_json(command)
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
    path = f"/commands/{_segment(command['command_id'])}"
    while True:
        history = command["history"]
        if echo:
            for step in history[shown:]:
                line = f"  {_when(step['at'])}  {step['state']:<12}  {step['detail']}"
                print(line.rstrip(), flush=True)
        delay = POLL_FIRST_S if len(history) > shown else min(delay * 2, POLL_MAX_S)
        shown = len(history)
        if command["done"]:
            return command
        time.sleep(delay)
        command = api.get(path)


def command_show(api: ApiClient, args: argparse.Namespace) -> int:
    command = api.get(f"/commands/{_segment(args.command_id)}")
    if args.json:
        return _print_json(command)
    print(_command_text(command))
    return EXIT_OK


def command_list(api: ApiClient, args: argparse.Namespace) -> int:
    listing = api.get(
        "/commands", {"meter_id": args.meter_id, "state": args.state, "limit": args.limit}
    )
    if args.json:
        return _print_json(listing)
    commands = listing["commands"]
    if not commands:
        print("no commands match")
        return EXIT_OK
    print(_table(COMMAND_COLUMNS, commands))
    print(f"{len(commands)} command{_s(commands)}")
    return EXIT_OK


ACTIONS: dict[tuple[str, str], Callable[[ApiClient, argparse.Namespace], int]] = {
    ("meter", "list"): meter_list,
    ("meter", "show"): meter_show,
    ("meter", "reads"): meter_reads,
    ("meter", "silent"): meter_silent,
    ("command", "submit"): command_submit,
    ("command", "show"): command_show,
    ("command", "list"): command_list,
}


# --- rendering --------------------------------------------------------------------------

Columns = Sequence[tuple[str, Callable[[Json], object]]]


def _field(name: str) -> Callable[[Json], object]:
    return lambda item: item[name]


def _time_field(name: str) -> Callable[[Json], object]:
    return lambda item: _when(item[name])


METER_COLUMNS: Columns = [
    ("METER", _field("meter_id")),
    ("KIND", _field("kind")),
    ("STATE", _field("state")),
    ("RELAY", _field("relay")),
    ("LAST SEEN", _time_field("last_seen")),
    ("CELL", _field("cell")),
    ("FEEDER", _field("feeder")),
    ("DT", _field("dt")),
]
READ_COLUMNS: Columns = [
    ("INTERVAL END", _time_field("interval_end")),
    ("V", _field("voltage_v")),
    ("A", _field("current_a")),
    ("WH IMP", _field("wh_import")),
    ("WH EXP", _field("wh_export")),
    ("VAH IMP", _field("vah_import")),
    ("VAH EXP", _field("vah_export")),
    ("DELAY S", _field("delivery_delay_s")),
]
SILENT_COLUMNS: Columns = [
    ("METER", _field("meter_id")),
    ("LAST SEEN", lambda m: _when(m["last_seen"]) if m["last_seen"] else "never"),
    ("SILENT FOR", lambda m: _duration(m["silent_for_s"])),
]
COMMAND_COLUMNS: Columns = [
    ("ID", _field("command_id")),
    ("METER", _field("meter_id")),
    ("TYPE", _field("type")),
    ("STATE", _field("state")),
    ("ATTEMPTS", _field("attempts")),
    ("CREATED", _time_field("created_at")),
    ("DEADLINE", _time_field("deadline")),
    ("FAILURE", _field("failure")),
]
HISTORY_COLUMNS: Columns = [
    ("AT", _time_field("at")),
    ("STATE", _field("state")),
    ("DETAIL", _field("detail")),
]


def _command_text(command: Json) -> str:
    rows = [
        ("command", command["command_id"]),
        ("meter", command["meter_id"]),
        ("type", command["type"]),
        ("state", command["state"]),
        ("failure", command["failure"]),
        ("attempts", command["attempts"]),
        ("created", _when(command["created_at"])),
        ("deadline", _when(command["deadline"])),
        ("idempotency key", command["idempotency_key"]),
        ("parameters", json.dumps(command["parameters"]) if command["parameters"] else "none"),
    ]
    if command.get("result") is not None:
        rows.append(("result", json.dumps(command["result"])))
    history = _table(HISTORY_COLUMNS, command["history"])
    return f"{_pairs(rows)}\nhistory:\n" + "\n".join(f"  {line}" for line in history.splitlines())


def _read_line(read: Json) -> str:
    return (
        f"interval ending {_when(read['interval_end'])}: {read['voltage_v']} V, "
        f"{read['current_a']} A, {read['wh_import']} Wh import"
    )


def _print_json(body: object) -> int:
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return EXIT_OK


def _table(columns: Columns, items: Sequence[Json]) -> str:
    cells = [[_cell(render(item)) for _, render in columns] for item in items]
    headers = [name for name, _ in columns]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *cells]
    )


def _pairs(rows: Sequence[tuple[str, object]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {_cell(value)}" for name, value in rows)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _when(iso: str | None) -> str:
    """An API time for a person: to the second, a space before the time of day."""
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).replace(microsecond=0).isoformat(sep=" ")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:g}s"


def _segment(value: str) -> str:
    """An id as one path segment, so that an id holding '/' or '?' cannot change the route."""
    return quote(value, safe="")


def _s(items: Sequence[object]) -> str:
    return "" if len(items) == 1 else "s"
