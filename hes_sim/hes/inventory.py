"""The head-end's asset register: which meters exist, what they are and where they sit.

A head-end knows its meters from the utility's records, not from their traffic; the run
registers its fleet here at start. Kept in the store (so a restarted head-end knows the
fleet) and in memory (so the operator API filters without a query per request).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hes_sim.hes.sql import Connection

INVENTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS meters (
    meter_id TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    cell     TEXT,
    feeder   TEXT,
    dt       TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS meters_cell ON meters (cell);
"""


@dataclass(frozen=True, slots=True)
class MeterInfo:
    meter_id: str
    kind: str
    cell: str | None = None
    feeder: str | None = None
    dt: str | None = None


class Inventory:
    def __init__(self, meters: Iterable[MeterInfo] = ()) -> None:
        self._meters = {m.meter_id: m for m in meters}

    def __contains__(self, meter_id: object) -> bool:
        return meter_id in self._meters

    def __len__(self) -> int:
        return len(self._meters)

    def get(self, meter_id: str) -> MeterInfo | None:
        return self._meters.get(meter_id)

    def all(self) -> list[MeterInfo]:
        return list(self._meters.values())

    def add(self, meters: Iterable[MeterInfo]) -> None:
        self._meters.update((m.meter_id, m) for m in meters)

    def cell_of(self, meter_id: str) -> str | None:
        info = self._meters.get(meter_id)
        return None if info is None else info.cell


def register(db: Connection, meters: list[MeterInfo]) -> None:
    """Add or update meters in the store, in one transaction."""
    with db.transaction():
        db.executemany(
            "INSERT INTO meters (meter_id, kind, cell, feeder, dt) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (meter_id) DO UPDATE SET kind = excluded.kind, cell = excluded.cell,"
            " feeder = excluded.feeder, dt = excluded.dt",
            [(m.meter_id, m.kind, m.cell, m.feeder, m.dt) for m in meters],
        )


def load(db: Connection) -> list[MeterInfo]:
    rows = db.execute("SELECT meter_id, kind, cell, feeder, dt FROM meters ORDER BY meter_id")
    return [MeterInfo(*row) for row in rows]


def last_seen(db: Connection) -> dict[str, float]:
    """When each meter's newest read or event arrived, as far as the store knows."""
    rows = db.execute(
        "SELECT meter_id, max(received_at) FROM ("
        " SELECT meter_id, received_at FROM block_load_reads"
        " UNION ALL SELECT meter_id, received_at FROM meter_events"
        ") AS heard GROUP BY meter_id"  # PostgreSQL before 16 wants the alias
    )
    return {meter_id: float(at) for meter_id, at in rows}
