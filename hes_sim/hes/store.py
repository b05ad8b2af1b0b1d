"""The read store: one interface, SQLite by default (PostgreSQL arrives for scale).

SQLite calls run on one dedicated thread, so the event loop never waits on the disk
and the connection is only ever touched by the thread that made it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from hes_sim.errors import StoreError
from hes_sim.hes.commands.store import COMMAND_SCHEMA
from hes_sim.hes.export import outbox
from hes_sim.hes.export.outbox import OUTBOX_SCHEMA
from hes_sim.hes.inventory import INVENTORY_SCHEMA
from hes_sim.hes.records import EventRecord, ReadRecord

T = TypeVar("T")


class ReadStore(Protocol):
    async def add_reads(
        self, reads: Sequence[ReadRecord], stored_at: float, *, recovered: bool = False
    ) -> list[bool]:
        """Store each read once; True where stored now, False where it was a duplicate.
        ``recovered``: read back from the meter's profile after its push was lost."""
        ...

    async def add_events(self, events: Sequence[EventRecord], stored_at: float) -> list[bool]:
        """Store each event once; True where new."""
        ...

    async def events_for(self, meter_id: str) -> list[EventRecord]: ...

    async def count_reads(self) -> int: ...

    async def count_recovered(self) -> int: ...

    async def delivery_delays(self) -> list[float]:
        """Simulated seconds from interval end to stored, for every pushed read."""
        ...

    async def reads_for(self, meter_id: str) -> list[ReadRecord]: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS block_load_reads (
    meter_id     TEXT    NOT NULL,
    interval_end INTEGER NOT NULL,  -- simulated Unix seconds
    layout       TEXT    NOT NULL,
    voltage_v    REAL    NOT NULL,
    current_a    REAL    NOT NULL,
    wh_import    INTEGER NOT NULL,
    wh_export    INTEGER NOT NULL,
    vah_import   INTEGER NOT NULL,
    vah_export   INTEGER NOT NULL,
    registers    TEXT    NOT NULL,  -- JSON: every captured register, raw
    received_at  REAL    NOT NULL,
    stored_at    REAL    NOT NULL,
    recovered    INTEGER NOT NULL DEFAULT 0,  -- 1: read back by backfill, not pushed
    PRIMARY KEY (meter_id, interval_end)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_events (
    meter_id     TEXT    NOT NULL,
    at           INTEGER NOT NULL,  -- simulated Unix seconds, the meter's time stamp
    log          TEXT    NOT NULL,  -- OBIS code of the event log
    code         INTEGER NOT NULL,
    status_word  TEXT    NOT NULL,  -- hex of the event status word pushed with it
    received_at  REAL    NOT NULL,
    stored_at    REAL    NOT NULL,
    PRIMARY KEY (meter_id, at, code)
) WITHOUT ROWID;
"""

INSERT = """
INSERT INTO block_load_reads (meter_id, interval_end, layout, voltage_v, current_a,
    wh_import, wh_export, vah_import, vah_export, registers, received_at, stored_at, recovered)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (meter_id, interval_end) DO NOTHING
"""
INSERT_EVENT = """
INSERT INTO meter_events (meter_id, at, log, code, status_word, received_at, stored_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (meter_id, at, code) DO NOTHING
"""


class SqliteStore:
    def __init__(self, path: Path | str, *, export_interval_s: int | None = None) -> None:
        """``export_interval_s``: every new read is also put in the export outbox, in the
        same transaction (the reads' interval); None: no export."""
        self._path = str(path)
        self._export_interval_s = export_interval_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None

    async def __aenter__(self) -> Self:
        try:
            await self._run(self._open)
        except sqlite3.Error as exc:
            self._executor.shutdown(wait=True)
            raise StoreError(f"cannot open SQLite store {self._path}: {exc}") from exc
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=True)

    def _open(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        db.executescript(COMMAND_SCHEMA)
        db.executescript(INVENTORY_SCHEMA)
        db.executescript(OUTBOX_SCHEMA)
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def run_sql(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the store's connection, on its thread (for repositories)."""
        try:
            return await self._run(lambda: work(self._conn()))
        except sqlite3.Error as exc:
            raise StoreError(f"store query failed: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    async def add_reads(
        self, reads: Sequence[ReadRecord], stored_at: float, *, recovered: bool = False
    ) -> list[bool]:
        rows = [(*_row(r, stored_at), int(recovered)) for r in reads]

        def export(db: sqlite3.Connection, stored: list[bool]) -> None:
            # in the reads' own transaction: a read is stored with its export, or neither
            if self._export_interval_s is not None:
                new = [read for read, fresh in zip(reads, stored, strict=True) if fresh]
                outbox.enqueue_reads(db, new, stored_at, self._export_interval_s)

        try:
            return await self._run(lambda: self._insert(INSERT, rows, then=export))
        except sqlite3.Error as exc:
            raise StoreError(f"writing {len(reads)} reads failed: {exc}") from exc

    async def add_events(self, events: Sequence[EventRecord], stored_at: float) -> list[bool]:
        rows = [
            (e.meter_id, e.at, e.log, e.code, e.status_word, e.received_at, stored_at)
            for e in events
        ]
        try:
            return await self._run(lambda: self._insert(INSERT_EVENT, rows))
        except sqlite3.Error as exc:
            raise StoreError(f"writing {len(events)} events failed: {exc}") from exc

    async def events_for(self, meter_id: str) -> list[EventRecord]:
        def select() -> list[EventRecord]:
            rows = self._conn().execute(
                "SELECT meter_id, at, log, code, received_at, status_word FROM meter_events"
                " WHERE meter_id = ? ORDER BY at, code",
                (meter_id,),
            )
            return [EventRecord(*row) for row in rows]

        return await self._run(select)

    def _insert(
        self,
        statement: str,
        rows: Sequence[tuple[object, ...]],
        then: Callable[[sqlite3.Connection, list[bool]], None] | None = None,
    ) -> list[bool]:
        """Insert each row in one transaction (with ``then`` inside it); True where new."""
        db = self._conn()
        db.execute("BEGIN")
        try:
            stored = [db.execute(statement, row).rowcount == 1 for row in rows]
            if then is not None:
                then(db, stored)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return stored

    async def count_reads(self) -> int:
        def count() -> int:
            return int(self._conn().execute("SELECT count(*) FROM block_load_reads").fetchone()[0])

        return await self._run(count)

    async def count_recovered(self) -> int:
        """Reads stored from profile reads (backfill), not from pushes."""

        def count() -> int:
            query = "SELECT count(*) FROM block_load_reads WHERE recovered = 1"
            return int(self._conn().execute(query).fetchone()[0])

        return await self._run(count)

    async def delivery_delays(self) -> list[float]:
        def delays() -> list[float]:
            # a pushed read's delay; reads recovered by backfill are hours late by nature
            rows = self._conn().execute(
                "SELECT stored_at - interval_end FROM block_load_reads WHERE recovered = 0"
            )
            return [float(row[0]) for row in rows]

        return await self._run(delays)

    async def reads_for(self, meter_id: str) -> list[ReadRecord]:
        def select() -> list[ReadRecord]:
            rows = self._conn().execute(
                "SELECT meter_id, interval_end, layout, voltage_v, current_a, wh_import,"
                " wh_export, vah_import, vah_export, registers, received_at"
                " FROM block_load_reads WHERE meter_id = ? ORDER BY interval_end",
                (meter_id,),
            )
            return [read_from_row(row) for row in rows]

        return await self._run(select)


def _row(r: ReadRecord, stored_at: float) -> tuple[object, ...]:
    return (
        r.meter_id,
        r.interval_end,
        r.layout,
        r.voltage_v,
        r.current_a,
        r.wh_import,
        r.wh_export,
        r.vah_import,
        r.vah_export,
        json.dumps(r.registers, separators=(",", ":")),
        r.received_at,
        stored_at,
    )


def read_from_row(row: tuple[Any, ...]) -> ReadRecord:
    meter_id, interval_end, layout, voltage, current, wh_in, wh_out, vah_in, vah_out = row[:9]
    return ReadRecord(
        meter_id=meter_id,
        interval_end=interval_end,
        layout=layout,
        voltage_v=voltage,
        current_a=current,
        wh_import=wh_in,
        wh_export=wh_out,
        vah_import=vah_in,
        vah_export=vah_out,
        registers=json.loads(row[9]),
        received_at=row[10],
    )
