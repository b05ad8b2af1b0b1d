"""Store write throughput, printed, never asserted: reads/s that ``add_reads`` takes in
batches (500 by default, as the ingest batches them) on SQLite and on PostgreSQL.

Three passes each over the same reads: new reads, new reads with their export enqueued
in the same transaction (as a head-end with an export sink runs), and the same reads
again (all duplicates, as after a meter's outbox flush).

PostgreSQL: the server at HES_PG_DSN (default: the local one); the bench makes its own
database there and drops it. No server: only SQLite is measured.

    .venv/bin/python scripts/bench_store.py [--reads 100000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store import SqlStore
from hes_sim.hes.store_factory import open_store

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
T0 = 1_800_000_000
METERS = 1000


def make_reads(count: int) -> list[ReadRecord]:
    """``count`` reads, interval after interval of a fleet of ``METERS`` (as pushes come)."""
    reads = []
    for n in range(count):
        interval, meter = divmod(n, METERS)
        end = T0 + (interval + 1) * 900
        registers = {"voltage": 2301, "current": 15, "wh_import": 100 + interval}
        wh = 100 + interval
        read = ReadRecord(f"SP{meter:07d}", end, "single_phase", 230.1, 1.5, wh, 0, wh + 10, 0,
                          registers, end + 42.5)  # fmt: skip
        reads.append(read)
    return reads


@contextlib.contextmanager
def pg_database(dsn: str) -> Iterator[str | None]:
    """A fresh database's URL, dropped afterwards; None when no server answers."""
    try:
        server = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        print(f"postgresql: not measured ({exc})".strip())
        yield None
        return
    name = sql.Identifier(f"hes_sim_bench_{secrets.token_hex(4)}")
    with server:
        server.execute(sql.SQL("CREATE DATABASE {}").format(name))
        try:
            parts = urlsplit(dsn)
            yield urlunsplit(parts._replace(path=f"/{name.as_string(server)[1:-1]}"))
        finally:
            server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@contextlib.asynccontextmanager
async def fresh(location: str, export: bool) -> AsyncIterator[SqlStore]:
    async with open_store(location, export_interval_s=900 if export else None) as store:
        await store.run_sql(
            lambda db: db.executescript("DELETE FROM block_load_reads; DELETE FROM export_outbox;")
        )
        yield store


async def rate(store: SqlStore, reads: list[ReadRecord], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(reads), batch):
        await store.add_reads(reads[start : start + batch], T0 + 1e6)
    return len(reads) / (time.perf_counter() - started)


async def measure(kind: str, location: str, reads: list[ReadRecord], batch: int) -> None:
    async with fresh(location, export=False) as store:
        new = await rate(store, reads, batch)
        again = await rate(store, reads, batch)
    async with fresh(location, export=True) as store:
        exported = await rate(store, reads, batch)
    print(
        f"{kind:>10}: {new:9,.0f} reads/s new, {exported:9,.0f} with export,"
        f" {again:9,.0f} duplicates  ({len(reads):,} reads, batches of {batch})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    options = parser.parse_args()
    reads = make_reads(options.reads)
    with tempfile.TemporaryDirectory() as directory:
        await measure("sqlite", str(Path(directory) / "bench.sqlite"), reads, options.batch)
    with pg_database(os.environ.get("HES_PG_DSN", DEFAULT_DSN)) as url:
        if url is not None:
            await measure("postgresql", url, reads, options.batch)


if __name__ == "__main__":
    asyncio.run(main())
