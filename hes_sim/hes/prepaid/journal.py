"""The prepaid accounts' journal: every input that moved an account, in order, so a
restarted head-end replays its accounts exactly (the accounts are pure and deterministic).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from hes_sim.hes.prepaid.book import Entry
from hes_sim.hes.sql import Connection

JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS prepaid_journal (
    meter_id TEXT             NOT NULL,
    n        INTEGER          NOT NULL,  -- the account's own sequence, from 0
    at       DOUBLE PRECISION NOT NULL,  -- simulated Unix seconds
    kind     TEXT             NOT NULL,
    body     TEXT             NOT NULL,  -- JSON
    PRIMARY KEY (meter_id, n)
);
"""

# Each runs on the store's connection, on its thread (``store.run_sql``).


def append(db: Connection, entries: Sequence[Entry]) -> None:
    """Add entries in one transaction; an entry already there (same meter and sequence)
    is left as it was, so a flush retried after an error never writes twice."""
    rows = [(e.meter_id, e.n, e.at, e.kind, json.dumps(e.body, separators=(",", ":")))
            for e in entries]  # fmt: skip
    with db.transaction():
        db.executemany(
            "INSERT INTO prepaid_journal (meter_id, n, at, kind, body) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (meter_id, n) DO NOTHING",
            rows,
        )


def load(db: Connection) -> list[Entry]:
    """Every entry, each account's in its order."""
    rows = db.execute(
        "SELECT meter_id, n, at, kind, body FROM prepaid_journal ORDER BY meter_id, n"
    ).fetchall()
    return [Entry(m, n, at, kind, json.loads(body)) for m, n, at, kind, body in rows]


def reads_since(db: Connection, meter_id: str, after: float) -> list[tuple[int, int]]:
    """(interval end, Wh imported) of the meter's stored reads ending after ``after``."""
    rows = db.execute(
        "SELECT interval_end, wh_import FROM block_load_reads"
        " WHERE meter_id = ? AND interval_end > ? ORDER BY interval_end",
        (meter_id, after),
    ).fetchall()
    return [(int(end), int(wh)) for end, wh in rows]
