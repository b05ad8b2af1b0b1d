"""The export outbox: what the head-end owes the billing side, kept in the read store.

A record enters the outbox in the same transaction as the data it describes (a read, a
bill), so a crash can never leave a stored read that no export will ever carry; the
exporter then delivers from here at least once, and sinks make that exactly once by key.

Plain functions on a ``hes_sim.hes.sql.Connection`` (SQLite or PostgreSQL), run on the
store's thread through ``store.run_sql`` (as ``hes_sim.hes.commands.store`` does). Each is
atomic: it opens its own transaction, or joins the caller's when one is open, which is how
the store enqueues reads in the transaction that stores them::

    with db.transaction():
        stored = db.insert_new("block_load_reads", COLUMNS, KEY, rows)
        outbox.enqueue_reads(db, [r for r, new in zip(reads, stored) if new], stored_at)

A record's life: pending (``next_attempt_at`` set, ``delivered_at`` NULL) -> delivered
(``delivered_at`` set), or parked (both NULL: the sink refused it for good; it stays here
for an operator, who can ``requeue_parked`` once the cause is fixed). Nothing is deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hes_sim.hes.records import ReadRecord
from hes_sim.hes.sql import Connection

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS export_outbox (
    key             TEXT PRIMARY KEY,  -- what the record is, e.g. read:{meter_id}:{interval_end}
    kind            TEXT NOT NULL,     -- interval_read, monthly_bill, ...
    meter_id        TEXT,              -- for reconciliation per meter
    payload         TEXT NOT NULL,     -- JSON
    created_at      DOUBLE PRECISION NOT NULL,  -- simulated Unix seconds
    attempts        INTEGER NOT NULL DEFAULT 0,  -- deliveries tried, the successful one too
    next_attempt_at DOUBLE PRECISION,  -- NULL once delivered or parked
    delivered_at    DOUBLE PRECISION,
    last_error      TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS export_outbox_due ON export_outbox (next_attempt_at, created_at)
    WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS export_outbox_meter ON export_outbox (meter_id, kind);
"""

_ENQUEUED = ("key", "kind", "meter_id", "payload", "created_at", "attempts", "next_attempt_at")

INTERVAL_READ = "interval_read"
MONTHLY_BILL = "monthly_bill"


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """One thing to export, as the sinks see it."""

    key: str
    kind: str
    payload: dict[str, Any]
    created_at: float  # simulated Unix seconds
    meter_id: str | None = None
    attempts: int = 0  # deliveries tried before this one (0 for a new record)


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int  # waiting for a (first or next) delivery
    delivered: int
    parked: int  # refused for good by the sink: kept, not retried
    failed_attempts: int  # deliveries tried that did not deliver, over every record
    oldest_pending_at: float | None  # created_at of the oldest pending record

    def oldest_pending_age(self, now: float) -> float:
        """Simulated seconds the oldest pending record has waited (0 when none)."""
        return 0.0 if self.oldest_pending_at is None else max(0.0, now - self.oldest_pending_at)


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    next_due_at: float | None  # None when nothing is pending


@dataclass(frozen=True, slots=True)
class Failure:
    key: str
    error: str
    next_attempt_at: float | None  # None: not worth retrying, park it


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a delivery attempt came to, recorded in one transaction."""

    delivered: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def read_key(meter_id: str, interval_end: int) -> str:
    return f"read:{meter_id}:{interval_end}"


def read_record(read: ReadRecord, created_at: float, interval_s: int = 900) -> ExportRecord:
    """The ``interval_read`` export of a stored block-load read."""
    return ExportRecord(
        key=read_key(read.meter_id, read.interval_end),
        kind=INTERVAL_READ,
        meter_id=read.meter_id,
        created_at=created_at,
        payload={
            "meter_id": read.meter_id,
            "interval_end": read.interval_end,
            "interval_s": interval_s,  # ReadRecord does not say; the block-load period does
            "wh_import": read.wh_import,
            "wh_export": read.wh_export,
            "vah_import": read.vah_import,
            "vah_export": read.vah_export,
            "voltage_v": read.voltage_v,
            "current_a": read.current_a,
            "received_at": read.received_at,
        },
    )


def enqueue(db: Connection, records: Sequence[ExportRecord]) -> int:
    """Add records, each once by key (one already there is left as it is); how many are
    new. One transaction, or the caller's."""
    rows = [
        (r.key, r.kind, r.meter_id, _dumps(r.payload), r.created_at, 0, r.created_at)
        for r in records
    ]
    return sum(db.insert_new("export_outbox", _ENQUEUED, ("key",), rows))


def enqueue_reads(
    db: Connection, reads: Iterable[ReadRecord], created_at: float, interval_s: int = 900
) -> int:
    """Enqueue the ``interval_read`` export of each read, keyed ``read:{meter_id}:{interval_end}``;
    meant to run inside the transaction that stores the reads (see the module docstring)."""
    return enqueue(db, [read_record(r, created_at, interval_s) for r in reads])


def due(db: Connection, now: float, limit: int) -> list[ExportRecord]:
    """Up to ``limit`` pending records whose next attempt is due, the longest due first."""
    rows = db.execute(
        "SELECT key, kind, payload, created_at, meter_id, attempts FROM export_outbox"
        " WHERE delivered_at IS NULL AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at, created_at, key LIMIT ?",
        (now, limit),
    )
    return [
        ExportRecord(str(key), str(kind), json.loads(payload), float(created), meter, int(n))
        for key, kind, payload, created, meter, n in rows
    ]


def backlog(db: Connection) -> Backlog:
    """The pending records and when the earliest is due (cheap: the partial index)."""
    count, first = db.execute(
        "SELECT count(next_attempt_at), min(next_attempt_at) FROM export_outbox"
        " WHERE delivered_at IS NULL"
    ).fetchone()
    return Backlog(int(count), None if first is None else float(first))


def delivered(db: Connection, keys: Sequence[str], at: float) -> int:
    """Mark records delivered at ``at``; how many were not delivered before (a second
    delivery keeps the first time)."""
    with db.transaction():
        cursor = db.executemany(
            "UPDATE export_outbox SET delivered_at = ?, attempts = attempts + 1,"
            " next_attempt_at = NULL, last_error = NULL"
            " WHERE key = ? AND delivered_at IS NULL",
            [(at, key) for key in keys],
        )
        return max(0, cursor.rowcount)


def failed(db: Connection, key: str, at: float, error: str, next_attempt_at: float | None) -> None:
    """Record a failed attempt at ``at``: retried from ``next_attempt_at``, or parked when
    it is None. A record delivered meanwhile is left alone."""
    with db.transaction():
        db.execute(
            "UPDATE export_outbox SET attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = ? WHERE key = ? AND delivered_at IS NULL",
            (f"{error} (at {at:.3f})", next_attempt_at, key),
        )


def settle(db: Connection, at: float, settlement: Settlement) -> None:
    """Record a whole delivery attempt, in one transaction."""
    with db.transaction():
        delivered(db, settlement.delivered, at)
        for f in settlement.failures:
            failed(db, f.key, at, f.error, f.next_attempt_at)


def requeue_parked(db: Connection, now: float) -> int:
    """Make every parked record due again (once the sink's refusal has been dealt with)."""
    with db.transaction():
        return db.execute(
            "UPDATE export_outbox SET next_attempt_at = ?"
            " WHERE delivered_at IS NULL AND next_attempt_at IS NULL",
            (now,),
        ).rowcount


def counts(db: Connection) -> OutboxCounts:
    pending, delivered_n, parked, attempts, oldest = db.execute(
        "SELECT"
        " count(*) FILTER (WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL),"
        " count(delivered_at),"
        " count(*) FILTER (WHERE delivered_at IS NULL AND next_attempt_at IS NULL),"
        " coalesce(sum(attempts), 0),"
        " min(created_at) FILTER (WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL)"
        " FROM export_outbox"
    ).fetchone()
    return OutboxCounts(
        pending=int(pending),
        delivered=int(delivered_n),
        parked=int(parked),
        failed_attempts=int(attempts) - int(delivered_n),  # each delivery took one attempt
        oldest_pending_at=None if oldest is None else float(oldest),
    )


def last_error(db: Connection, key: str) -> str | None:
    row = db.execute("SELECT last_error FROM export_outbox WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)
