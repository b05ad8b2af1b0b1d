"""The head-end's DLMS invocation counter survives restarts: it is reserved in blocks.

Meters refuse any APDU whose counter is not above the last one they accepted from the
head-end, so a restarted head-end must never count from 1 again. Before the counter
enters a new block, the block's end is written to the store; after a crash the head-end
starts from the last reserved end, skipping at most one block, never reusing a value.
"""

from __future__ import annotations

import time
from functools import partial

from hes_sim.hes.dlms_client import ClientCounter
from hes_sim.hes.sql import Connection
from hes_sim.hes.store import SqlStore

BLOCK = 10_000
HEADROOM = 1_000  # an association uses a handful of counters; reserve well before the end
COUNTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS hes_counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL  -- a 32-bit unsigned counter: past INTEGER in PostgreSQL
);
"""


def _read(db: Connection, name: str) -> int:
    db.executescript(COUNTER_SCHEMA)
    row = db.execute("SELECT value FROM hes_counters WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _write(db: Connection, name: str, value: int) -> None:
    db.execute(
        "INSERT INTO hes_counters (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


class PersistentCounter:
    """A ``ClientCounter`` whose values are reserved in the store before they are used."""

    def __init__(self, store: SqlStore, name: str = "dlms_invocation_counter") -> None:
        self._store = store
        self._name = name
        self.counter = ClientCounter()
        self._reserved = 0

    async def load(self) -> None:
        stored = await self._store.run_sql(partial(_read, name=self._name))
        # never below the wall clock's seconds: a store lost between runs (the default run
        # store is fresh) still cannot make the counter go back (32 bits last until 2106)
        self.counter.value = max(stored, int(time.time()))
        self._reserved = self.counter.value
        await self.reserve()

    async def reserve(self) -> None:
        """Reserve the next block when the counter is near the end of the reserved one."""
        if self.counter.value + HEADROOM < self._reserved:
            return
        reserved = self.counter.value + BLOCK
        await self._store.run_sql(partial(_write, name=self._name, value=reserved))
        self._reserved = self.counter.limit = reserved
