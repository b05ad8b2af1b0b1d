"""The API's answers for a person: aligned tables, name/value pairs, times to the second."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from hes_sim.operator_cli.client import EXIT_OK, Json

Columns = Sequence[tuple[str, Callable[[Json], object]]]


def _field(name: str) -> Callable[[Json], object]:
    return lambda item: item[name]


def _time_field(name: str) -> Callable[[Json], object]:
    return lambda item: when(item[name])


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
    ("LAST SEEN", lambda m: when(m["last_seen"]) if m["last_seen"] else "never"),
    ("SILENT FOR", lambda m: duration(m["silent_for_s"])),
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


def command_text(command: Json) -> str:
    rows = [
        ("command", command["command_id"]),
        ("meter", command["meter_id"]),
        ("type", command["type"]),
        ("state", command["state"]),
        ("failure", command["failure"]),
        ("attempts", command["attempts"]),
        ("created", when(command["created_at"])),
        ("deadline", when(command["deadline"])),
        ("idempotency key", command["idempotency_key"]),
        ("parameters", json.dumps(command["parameters"]) if command["parameters"] else "none"),
    ]
    if command.get("result") is not None:
        rows.append(("result", json.dumps(command["result"])))
    history = table(HISTORY_COLUMNS, command["history"])
    return f"{pairs(rows)}\nhistory:\n" + "\n".join(f"  {line}" for line in history.splitlines())


def read_line(read: Json) -> str:
    return (
        f"interval ending {when(read['interval_end'])}: {read['voltage_v']} V, "
        f"{read['current_a']} A, {read['wh_import']} Wh import"
    )


def print_json(body: object) -> int:
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return EXIT_OK


def table(columns: Columns, items: Sequence[Json]) -> str:
    cells = [[cell(render(item)) for _, render in columns] for item in items]
    headers = [name for name, _ in columns]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *cells]
    )


def pairs(rows: Sequence[tuple[str, object]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {cell(value)}" for name, value in rows)


def cell(value: object) -> str:
    return "-" if value is None else str(value)


def when(iso: str | None) -> str:
    """An API time for a person: to the second, a space before the time of day."""
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).replace(microsecond=0).isoformat(sep=" ")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:g}s"


def plural(items: Sequence[object]) -> str:
    return "" if len(items) == 1 else "s"
