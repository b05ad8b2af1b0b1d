"""Stores for the store-centric tests: each such test runs once on SQLite, once on
PostgreSQL.

PostgreSQL is the server at ``HES_PG_DSN`` (default: the local one, user postgres). The
session makes its own database there (a random name, C collation so text sorts as in
SQLite) and drops it at the end; each test gets a fresh schema in it, so tests never see
each other's rows and no test waits for a database to be made. A session killed before
its end leaves its database: the next session drops it. No server: the PostgreSQL
variants are skipped, unless ``HES_REQUIRE_PG=1`` (CI), which fails them.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from hes_sim.hes.pg_store import describe
from hes_sim.hes.store import SqlStore
from hes_sim.hes.store_factory import open_store

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", "postgresql"]
PREFIX = "hes_sim_test_"
OURS = re.compile(rf"{PREFIX}p(\d+)_[0-9a-f]+")  # the pid of the session that made it


@dataclass
class PgDatabase:
    url: str
    admin: psycopg.Connection  # to the test database, in autocommit mode


def with_url(url: str, *, dbname: str | None = None, search_path: str | None = None) -> str:
    """``url`` naming another database, or with its tables looked up in one schema."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if search_path is not None:
        query["options"] = f"-c search_path={search_path}"
    path = parts.path if dbname is None else f"/{dbname}"
    return urlunsplit(parts._replace(path=path, query=urlencode(query, quote_via=quote)))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    dsn = os.environ.get("HES_PG_DSN", DEFAULT_DSN)
    try:
        server = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        reason = f"PostgreSQL not reachable at HES_PG_DSN ({describe(dsn)}): {exc}"
        if os.environ.get("HES_REQUIRE_PG") == "1":
            pytest.fail(f"{reason} (HES_REQUIRE_PG=1)")
        pytest.skip(reason)
    name = f"{PREFIX}p{os.getpid()}_{secrets.token_hex(4)}"
    with server:
        drop_orphans(server)
        server.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
        try:
            url = with_url(dsn, dbname=name)
            with psycopg.connect(url, autocommit=True) as admin:
                yield PgDatabase(url, admin)
        finally:
            # FORCE: a store a failed test left open does not keep the database alive
            server.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def drop_orphans(server: psycopg.Connection) -> None:
    """Drop the databases of sessions that died before dropping theirs: no connection to
    them (a live session keeps one all along) and their process is gone."""
    idle = server.execute(
        "SELECT datname FROM pg_database AS d WHERE starts_with(datname, %s)"
        " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.datname = d.datname)",
        (PREFIX,),
    ).fetchall()
    for (name,) in idle:
        made_by = OURS.fullmatch(name)
        if made_by is not None and not alive(int(made_by.group(1))):
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            server.execute(drop.format(sql.Identifier(name)))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True


@pytest.fixture(params=BACKENDS)
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a test's store lives: a SQLite file, or a PostgreSQL URL whose tables live in
    a schema of the test's own. Open it (again, for a restart) with ``open_store``."""
    if request.param == "sqlite":
        yield str(tmp_path / "hes.sqlite")
        return
    database: PgDatabase = request.getfixturevalue("pg_database")
    schema = f"t_{secrets.token_hex(6)}"
    database.admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_url(database.url, search_path=schema)
    finally:
        database.admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
async def any_store(store_location: str) -> AsyncIterator[SqlStore]:
    """An open store, SQLite or PostgreSQL (the test runs once with each)."""
    async with open_store(store_location) as store:
        yield store
