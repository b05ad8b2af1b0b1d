"""The read store on PostgreSQL, for fleets a SQLite file cannot keep up with.

Same interface and same repositories as ``SqliteStore`` (both are ``SqlStore``): one
psycopg connection, in autocommit mode, on the store's one thread (or its loop's, for an
ingest worker), so writes stay in the order they were asked for. Reads, events and
exports go in by COPY (``insert_new``): a batch of 500 is a few round trips, and psycopg
does not adapt 6,500 parameters one by one; ``executemany`` runs in psycopg's pipeline
mode.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.pq import TransactionStatus

from hes_sim.hes.sql import Connection, Cursor, Dialect, check_key, transaction
from hes_sim.hes.store import SqlStore

URL_SCHEMES = ("postgresql://", "postgres://")
# unless the URL says otherwise; the timeout: a server that is not there fails the start
_CONNECT_DEFAULTS = {"connect_timeout": "10", "application_name": "hes-sim"}
# SQLite's table option (keep the rows in the primary key's b-tree) means nothing to
# PostgreSQL, whose tables are heaps beside a primary-key index anyway
_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (and a literal ``%`` doubled), outside
    string literals."""
    parts = sql.split("'")
    for outside in range(0, len(parts), 2):  # even parts lie between the literals
        parts[outside] = parts[outside].replace("%", "%%").replace("?", "%s")
    return "'".join(parts)


class PgConnection:
    """:class:`~hes_sim.hes.sql.Connection` over a psycopg connection in autocommit mode."""

    dialect: Dialect = "postgresql"

    def __init__(self, db: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.raw = db

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        # always with parameters (even none): psycopg then reads the placeholders
        return self.raw.execute(pg_sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(pg_sql(sql), [tuple(row) for row in rows])
        return cursor

    def executescript(self, script: str) -> None:
        # no parameters: sent as one simple query, so several statements may go together
        self.raw.execute(_WITHOUT_ROWID.sub(")", script))

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return transaction(self)

    def insert_new(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[object]],
    ) -> list[bool]:
        """COPY into a staging table of this session, then one INSERT ... SELECT, whose
        RETURNING names the keys that went in."""
        check_key(columns, key)
        # the first of each key in the batch is the one that may be new, as row by row
        first: dict[tuple[object, ...], int] = {}
        for n, row in enumerate(rows):
            first.setdefault(tuple(row[: len(key)]), n)
        if not first:
            return []
        staging, names, keys = f"{table}_staging", ", ".join(columns), ", ".join(key)
        with self.transaction():
            # made on first use in each session (and again if a rollback took it back)
            self.raw.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging}"
                f" (LIKE {table} INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            )
            self.raw.execute(f"DELETE FROM {staging}")  # noqa: S608 - callers' names
            with self.raw.cursor().copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
                for n in first.values():
                    copy.write_row(rows[n])
            returned = self.raw.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging}"  # noqa: S608
                f" ON CONFLICT ({keys}) DO NOTHING RETURNING {keys}"
            ).fetchall()
        inserted = {tuple(found) for found in returned}
        return [
            first[row_key] == n and row_key in inserted
            for n, row_key in enumerate(tuple(row[: len(key)]) for row in rows)
        ]

    def close(self) -> None:
        self.raw.close()


class PgStore(SqlStore):
    """The store in a PostgreSQL database, at a ``postgresql://`` URL (the database must
    exist; the tables are made on open)."""

    kind = "postgresql"
    driver_error = psycopg.Error

    def __init__(
        self,
        url: str,
        *,
        export_interval_s: int | None = None,
        on_loop: bool = False,
        upkeep: bool = True,
    ) -> None:
        super().__init__(export_interval_s=export_interval_s, on_loop=on_loop, upkeep=upkeep)
        self._url = url

    def describe(self) -> str:
        return describe(self._url)

    def _connect(self) -> Connection:
        given = conninfo.conninfo_to_dict(self._url)
        defaults = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given}
        url = conninfo.make_conninfo(self._url, **defaults)
        return PgConnection(psycopg.connect(url, autocommit=True))

    def _conn(self) -> Connection:
        db = super()._conn()
        if isinstance(db, PgConnection) and (db.raw.broken or db.raw.closed):
            # the server restarted or the link broke: the call that met it failed; the
            # next reconnects, rather than every call failing until the head-end restarts
            fresh = self._connect()
            db.close()
            self._db = db = fresh
        return db


def describe(url: str) -> str:
    """The database a URL names, without its password."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable PostgreSQL URL)"
    host = params.get("host", "localhost")
    port = params.get("port", 5432)
    return f"postgresql://{params.get('user', '')}@{host}:{port}/{params.get('dbname', '')}"
