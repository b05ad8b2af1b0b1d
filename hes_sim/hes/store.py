"""The read store: one interface, over SQLite (a file) or PostgreSQL (``pg_store``).

Each store keeps one connection on one dedicated thread: the event loop never waits on
the database, the connection is only ever touched by the thread that made it, and writes
happen in the order they were asked for. An ingest worker, whose loop does nothing else,
runs its store on the loop's own thread instead (``on_loop``). Everything above the
connection (the reads and events here, the repositories run through ``run_sql``) is
shared: it speaks ``hes_sim.hes.sql.Connection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, TypeVar

import structlog

from hes_sim.errors import StoreError
from hes_sim.hes.commands.store import COMMAND_SCHEMA
from hes_sim.hes.export import outbox
from hes_sim.hes.export.outbox import OUTBOX_SCHEMA
from hes_sim.hes.inventory import INVENTORY_SCHEMA
from hes_sim.hes.prepaid.journal import JOURNAL_SCHEMA
from hes_sim.hes.records import EventRecord, ReadRecord, Registers
from hes_sim.hes.sql import Connection, SqliteConnection

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


# Types both databases read alike: DOUBLE PRECISION (PostgreSQL's REAL is 4 bytes and would
# lose seconds), BIGINT for seconds. The primary keys serve per-meter time ranges.
SCHEMA = """
CREATE TABLE IF NOT EXISTS block_load_reads (
    meter_id     TEXT             NOT NULL,
    interval_end BIGINT           NOT NULL,  -- simulated Unix seconds
    layout       TEXT             NOT NULL,
    voltage_v    DOUBLE PRECISION NOT NULL,
    current_a    DOUBLE PRECISION NOT NULL,
    wh_import    BIGINT           NOT NULL,
    wh_export    BIGINT           NOT NULL,
    vah_import   BIGINT           NOT NULL,
    vah_export   BIGINT           NOT NULL,
    registers    TEXT             NOT NULL,  -- JSON: every captured register, raw
    received_at  DOUBLE PRECISION NOT NULL,
    stored_at    DOUBLE PRECISION NOT NULL,
    recovered    INTEGER          NOT NULL DEFAULT 0,  -- 1: read back by backfill, not pushed
    PRIMARY KEY (meter_id, interval_end)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_events (
    meter_id     TEXT             NOT NULL,
    at           BIGINT           NOT NULL,  -- simulated Unix seconds, the meter's time stamp
    log          TEXT             NOT NULL,  -- OBIS code of the event log
    code         INTEGER          NOT NULL,
    status_word  TEXT             NOT NULL,  -- hex of the event status word pushed with it
    received_at  DOUBLE PRECISION NOT NULL,
    stored_at    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (meter_id, at, code)
) WITHOUT ROWID;
"""
SCHEMAS = (SCHEMA, COMMAND_SCHEMA, INVENTORY_SCHEMA, OUTBOX_SCHEMA, JOURNAL_SCHEMA)

READ_COLUMNS = (
    "meter_id", "interval_end", "layout", "voltage_v", "current_a", "wh_import", "wh_export",
    "vah_import", "vah_export", "registers", "received_at", "stored_at", "recovered",
)  # fmt: skip
EVENT_COLUMNS = ("meter_id", "at", "code", "log", "status_word", "received_at", "stored_at")


log = structlog.get_logger(__name__)

CHECKPOINT_EVERY_S = 1.0  # wall; the WAL it leaves is what a second of writes adds
BUSY_TIMEOUT_S = 30.0  # how long a SQLite write waits for another process's to end
BUSY_TIMEOUT_ON_LOOP_S = 2.0


class SqlStore:
    """What the stores share: the thread (or the loop's, ``on_loop``), ``run_sql`` and the
    read store's queries. A subclass opens and closes the connection and names its
    driver's error class."""

    kind: ClassVar[str]
    driver_error: ClassVar[type[Exception]]

    def __init__(
        self, *, export_interval_s: int | None = None, on_loop: bool = False, upkeep: bool = True
    ) -> None:
        """``export_interval_s``: every new read is also put in the export outbox, in the
        same transaction (the reads' interval); None: no export.

        ``upkeep``: whether this process keeps the store (SQLite's WAL checkpoints); off in
        an ingest worker, which writes into a store its head-end keeps.

        ``on_loop``: run the SQL on the event loop's own thread, blocking it, not on the
        store's thread. For an ingest worker, whose loop does nothing else: sqlite3 gives
        up the GIL for every row it writes, and with the loop busy decoding the next batch
        the two threads traded it back and forth, which cost a worker ~3 us a read (about
        a sixth of its time). Anywhere else a write must not stall the loop. On the loop a
        SQLite write waits BUSY_TIMEOUT_ON_LOOP_S for another process's lock, then fails
        (the ingest retries it after an awaited back-off); opening a PostgreSQL store
        blocks the loop up to its connect timeout."""
        self._export_interval_s = export_interval_s
        self._upkeep = upkeep
        self._executor = (
            None
            if on_loop
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.kind}-store")
        )
        self._db: Connection | None = None

    def describe(self) -> str:
        """Where the store is, for messages (never a password)."""
        raise NotImplementedError

    def _connect(self) -> Connection:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self._run(self._open)
        except self.driver_error as exc:
            self._shutdown()
            raise StoreError(f"cannot open {self.kind} store {self.describe()}: {exc}") from exc
        except BaseException:
            self._shutdown()
            raise
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        try:
            await self._run(self._close)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _open(self) -> None:
        db = self._connect()
        try:
            for schema in SCHEMAS:
                db.executescript(schema)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    async def _run(self, call: Callable[[], T]) -> T:
        if self._executor is None:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _conn(self) -> Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    async def run_sql(self, work: Callable[[Connection], T], *, what: str = "store query") -> T:
        """Run ``work`` on the store's connection, on its thread or, ``on_loop``, the
        loop's (for repositories)."""
        try:
            return await self._run(lambda: work(self._conn()))
        except self.driver_error as exc:
            raise StoreError(f"{what} failed: {exc}") from exc

    async def add_reads(
        self, reads: Sequence[ReadRecord], stored_at: float, *, recovered: bool = False
    ) -> list[bool]:
        rows = [_row(r, stored_at, int(recovered)) for r in reads]

        def insert(db: Connection) -> list[bool]:
            # a read is stored with its export, or neither
            with db.transaction():
                stored = db.insert_new("block_load_reads", READ_COLUMNS, READ_COLUMNS[:2], rows)
                if self._export_interval_s is not None:
                    new = [read for read, fresh in zip(reads, stored, strict=True) if fresh]
                    outbox.enqueue_reads(db, new, stored_at, self._export_interval_s)
            return stored

        return await self.run_sql(insert, what=f"writing {len(reads)} reads")

    async def add_events(self, events: Sequence[EventRecord], stored_at: float) -> list[bool]:
        rows = [
            (e.meter_id, e.at, e.code, e.log, e.status_word, e.received_at, stored_at)
            for e in events
        ]

        def insert(db: Connection) -> list[bool]:
            with db.transaction():
                return db.insert_new("meter_events", EVENT_COLUMNS, EVENT_COLUMNS[:3], rows)

        return await self.run_sql(insert, what=f"writing {len(events)} events")

    async def events_for(self, meter_id: str) -> list[EventRecord]:
        def select(db: Connection) -> list[EventRecord]:
            rows = db.execute(
                "SELECT meter_id, at, log, code, received_at, status_word FROM meter_events"
                " WHERE meter_id = ? ORDER BY at, code",
                (meter_id,),
            )
            return [EventRecord(*row) for row in rows]

        return await self.run_sql(select)

    async def count_reads(self) -> int:
        return await self._count("SELECT count(*) FROM block_load_reads")

    async def count_recovered(self) -> int:
        """Reads stored from profile reads (backfill), not from pushes."""
        return await self._count("SELECT count(*) FROM block_load_reads WHERE recovered = 1")

    async def _count(self, query: str) -> int:
        return await self.run_sql(lambda db: int(db.execute(query).fetchone()[0]))

    async def delivery_delays(self) -> list[float]:
        def delays(db: Connection) -> list[float]:
            # a pushed read's delay; reads recovered by backfill are hours late by nature
            rows = db.execute(
                "SELECT stored_at - interval_end FROM block_load_reads WHERE recovered = 0"
            )
            return [float(row[0]) for row in rows]

        return await self.run_sql(delays)

    async def reads_for(self, meter_id: str) -> list[ReadRecord]:
        def select(db: Connection) -> list[ReadRecord]:
            rows = db.execute(
                "SELECT meter_id, interval_end, layout, voltage_v, current_a, wh_import,"
                " wh_export, vah_import, vah_export, registers, received_at"
                " FROM block_load_reads WHERE meter_id = ? ORDER BY interval_end",
                (meter_id,),
            )
            return [read_from_row(row) for row in rows]

        return await self.run_sql(select)


class SqliteStore(SqlStore):
    """SQLite in WAL mode. The WAL is checkpointed by a connection of its own, on another
    thread, every CHECKPOINT_EVERY_S, by the process that keeps the store (``upkeep``):
    left to the writer, a checkpoint (and its fsync) lands inside whichever write crosses
    the threshold, and a command's step waited ~15 ms behind it (the p99 of a command
    round trip)."""

    kind = "sqlite"
    driver_error = sqlite3.Error

    def __init__(
        self,
        path: Path | str,
        *,
        export_interval_s: int | None = None,
        on_loop: bool = False,
        upkeep: bool = True,
    ) -> None:
        super().__init__(export_interval_s=export_interval_s, on_loop=on_loop, upkeep=upkeep)
        self._path = str(path)
        self._checkpointer: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return self._path

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._upkeep:
            self._checkpointer = asyncio.create_task(self._checkpoints(), name="sqlite-store:wal")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        await super().__aexit__(*exc_info)

    def _connect(self) -> Connection:
        # several processes may write (ingest workers): wait for the lock, do not fail; on
        # the loop, only briefly, since the loop waits with it (the write fails, and the
        # ingest retries it after an awaited back-off)
        busy_timeout = BUSY_TIMEOUT_ON_LOOP_S if self._executor is None else BUSY_TIMEOUT_S
        db = sqlite3.connect(self._path, isolation_level=None, timeout=busy_timeout)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=0")  # see the class: _checkpoints does it
        return SqliteConnection(db)

    async def _checkpoints(self) -> None:
        def checkpoint() -> None:
            # PASSIVE: copies what it can without waiting for readers or writers
            with contextlib.closing(sqlite3.connect(self._path, timeout=1.0)) as db:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")

        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            try:
                await asyncio.to_thread(checkpoint)
            except sqlite3.Error as exc:  # busy, or the disk: the next one tries again
                log.warning("sqlite_checkpoint_failed", store=self._path, error=str(exc))


# one encoder for every row: json.dumps with options builds a new one a call
_json = json.JSONEncoder(separators=(",", ":")).encode


@functools.lru_cache(maxsize=64)
def _int_object_template(keys: tuple[str, ...]) -> str:
    return "{" + ",".join(f"{_json(key).replace('%', '%%')}:%d" for key in keys) + "}"


def _registers_json(registers: Mapping[str, int]) -> str:
    """``registers`` as compact JSON. Every read of a layout has the same keys and integer
    values, so a format string per key set does it in half the time of the encoder."""
    if type(registers) is Registers:  # a read as ingest makes it: the layout's keys, ints
        return _int_object_template(registers.layout.quantity_names) % registers.raw
    values = tuple(registers.values())
    if set(map(type, values)) == {int}:  # not bool, whose JSON is true/false
        return _int_object_template(tuple(registers)) % values
    return _json(registers)


def _row(r: ReadRecord, stored_at: float, recovered: int) -> tuple[object, ...]:
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
        _registers_json(r.registers),
        r.received_at,
        stored_at,
        recovered,
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
