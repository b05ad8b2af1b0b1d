"""The connection every repository is written against: DB-API shaped, ``?`` placeholders.

Repositories (commands, inventory, outbox, gaps, ...) are plain functions taking a
:class:`Connection`, run on a store's own thread (or, in an ingest worker, its loop's)
through ``store.run_sql``. Their SQL is written once, in the syntax SQLite and PostgreSQL
share (``ON CONFLICT ... DO NOTHING``, ``FILTER``, ``||``, ``RETURNING``); the PostgreSQL
adapter turns ``?`` into its own placeholders. Where the two must differ (JSON functions,
aggregating into a list) a repository looks at ``db.dialect``.

The adapters run in autocommit mode: a statement on its own commits; ``transaction()``
groups several, or joins the transaction already open (how the ingest stores reads and
enqueues their exports in one).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    """A statement's result; rows are tuples."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any:  # noqa: ANN401 - a row or None; DB-API callers index it directly
        ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> Cursor:
        """``rowcount`` of the result: the rows changed by all executions together."""
        ...

    def executescript(self, script: str) -> None:
        """Statements separated by ``;``, without parameters (schemas)."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def insert_new(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[object]],
    ) -> list[bool]:
        """Insert each row once by ``key`` (the leading ``columns``); True where stored
        now, False where the key was stored already (or came earlier in ``rows``). The
        bulk write of each adapter; joins the caller's transaction."""
        ...

    def close(self) -> None:
        """For the store that opened it; a repository never closes the connection."""
        ...


@contextlib.contextmanager
def transaction(db: Connection) -> Iterator[None]:
    """All or nothing; inside a transaction the caller opened, part of it (the caller
    commits or rolls back the whole)."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteConnection:
    """:class:`Connection` over ``sqlite3`` (opened in autocommit mode)."""

    dialect: Dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection) -> None:
        self.raw = db

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> Cursor:
        return self.raw.executemany(sql, rows)

    def executescript(self, script: str) -> None:
        self.raw.executescript(script)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return transaction(self)

    def insert_new(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[object]],
    ) -> list[bool]:
        check_key(columns, key)
        statement = (
            f"INSERT INTO {table} ({', '.join(columns)})"  # noqa: S608 - callers' names
            f" VALUES ({', '.join('?' for _ in columns)})"
            f" ON CONFLICT ({', '.join(key)}) DO NOTHING"
        )
        raw = self.raw
        with self.transaction():
            # Duplicates are rare: the whole batch in one executemany, and only when some
            # row did not go in, undone and done again a row at a time to learn which.
            raw.execute("SAVEPOINT insert_new")
            before = raw.total_changes
            raw.executemany(statement, rows)
            if raw.total_changes - before != len(rows):
                raw.execute("ROLLBACK TO insert_new")
                stored = [raw.execute(statement, row).rowcount == 1 for row in rows]
            else:
                stored = [True] * len(rows)
            raw.execute("RELEASE insert_new")
            return stored

    def close(self) -> None:
        self.raw.close()


def check_key(columns: Sequence[str], key: Sequence[str]) -> None:
    if list(columns[: len(key)]) != list(key):
        raise ValueError(f"the key {key} must lead the columns {columns}")
