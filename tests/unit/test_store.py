"""The read store's interface, the same on SQLite and on PostgreSQL (each test runs on
both): each read and event once, in batches, with its export in the same transaction."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from functools import partial

import pytest

from hes_sim.errors import StoreError
from hes_sim.hes import inventory
from hes_sim.hes.export import outbox
from hes_sim.hes.export.reconcile import reconcile
from hes_sim.hes.pg_store import PgStore, pg_sql
from hes_sim.hes.records import EventRecord, ReadRecord
from hes_sim.hes.store import SqliteStore, SqlStore
from hes_sim.hes.store_factory import open_store

T0 = 1_800_000_000


def read(meter_id: str, k: int, received: float | None = None) -> ReadRecord:
    end = T0 + k * 900
    at = end + 61.125 if received is None else received
    return ReadRecord(meter_id, end, "single_phase", 230.17, 1.234, 100 + k, 1, 110 + k, 2,
                      {"wh_import": 100 + k}, at)  # fmt: skip


def event(meter_id: str, at: int, code: int) -> EventRecord:
    return EventRecord(meter_id, at, "0.0.99.98.0.255", code, at + 5.5, "00ff")


async def test_each_read_once_and_duplicates_in_one_batch_too(any_store: SqlStore):
    first = await any_store.add_reads([read("SP1", 1), read("SP1", 2), read("SP1", 1)], T0 + 4000)
    assert first == [True, True, False]
    again = await any_store.add_reads([read("SP1", 2), read("SP2", 2)], T0 + 5000)
    assert again == [False, True]
    assert await any_store.add_reads([], T0) == []
    assert await any_store.count_reads() == 3
    assert [r.interval_end for r in await any_store.reads_for("SP1")] == [T0 + 900, T0 + 1800]


async def test_a_read_comes_back_as_it_went_in_seconds_and_all(any_store: SqlStore):
    # fractions of a second on a 1.8e9 clock: a 4-byte float would round them away
    sent = read("SP1", 1, received=T0 + 900 + 0.123456)
    await any_store.add_reads([sent], T0 + 1000.5)
    assert await any_store.reads_for("SP1") == [sent]
    assert await any_store.delivery_delays() == [100.5]


async def test_batches_larger_than_one_statement(any_store: SqlStore):
    reads = [read(f"SP{k % 7}", k) for k in range(2500)]
    stored = await any_store.add_reads(reads, T0)
    assert stored == [True] * 2500
    assert await any_store.add_reads(reads[1000:1010], T0) == [False] * 10
    assert await any_store.count_reads() == 2500


async def test_recovered_reads_are_counted_and_not_delays(any_store: SqlStore):
    await any_store.add_reads([read("SP1", 1)], T0 + 1000)
    await any_store.add_reads([read("SP1", 2), read("SP1", 3)], T0 + 9000, recovered=True)
    assert await any_store.count_recovered() == 2
    assert await any_store.delivery_delays() == [100.0]


async def test_events_once_by_meter_time_and_code(any_store: SqlStore):
    events = [event("SP1", T0 + 10, 201), event("SP1", T0 + 10, 202), event("SP1", T0 + 10, 201)]
    assert await any_store.add_events(events, T0 + 20) == [True, True, False]
    assert await any_store.add_events([event("SP1", T0 + 5, 201)], T0 + 30) == [True]
    got = await any_store.events_for("SP1")
    assert [(e.at, e.code) for e in got] == [(T0 + 5, 201), (T0 + 10, 201), (T0 + 10, 202)]
    assert got[1] == events[0]


async def test_new_reads_are_enqueued_for_export_in_their_transaction(store_location: str):
    async with open_store(store_location, export_interval_s=900) as store:
        await store.add_reads([read("SP1", 1), read("SP1", 2)], T0 + 5000)
        await store.add_reads([read("SP1", 2), read("SP1", 3)], T0 + 6000)
        due = await store.run_sql(partial(outbox.due, now=T0 + 9000, limit=10))
        assert [r.key for r in due] == [f"read:SP1:{T0 + k * 900}" for k in (1, 2, 3)]
        assert [r.created_at for r in due] == [T0 + 5000, T0 + 5000, T0 + 6000]
        [only] = await store.run_sql(reconcile)
    assert (only.stored, only.enqueued, only.exported, only.orphaned) == (3, 3, 0, 0)


async def test_a_failed_batch_stores_nothing(any_store: SqlStore):
    def half_then_fail(db) -> None:
        with db.transaction():
            db.insert_new("meters", ("meter_id", "kind"), ("meter_id",), [("SP1", "sp")])
            db.execute("SELECT no_such_function()")

    with pytest.raises(StoreError):
        await any_store.run_sql(half_then_fail)
    assert await any_store.run_sql(inventory.load) == []
    await any_store.add_reads([read("SP1", 1)], T0)  # the store goes on
    assert await any_store.count_reads() == 1


async def test_text_comes_back_byte_for_byte(any_store: SqlStore):
    awkward = "tab\t newline\n backslash\\ quote' double\" \\N null-ish, ünïcode"
    record = outbox.ExportRecord("k\t1", "monthly_bill", {"note": awkward}, T0, "SP'1")
    assert await any_store.run_sql(partial(outbox.enqueue, records=[record])) == 1
    [due] = await any_store.run_sql(partial(outbox.due, now=T0, limit=5))
    assert due == record
    await any_store.add_events([EventRecord("SP\\1", T0, awkward, 7, T0 + 0.5, "\\N")], T0)
    [stored] = await any_store.events_for("SP\\1")
    assert (stored.log, stored.status_word) == (awkward, "\\N")


async def test_last_seen_over_reads_and_events(any_store: SqlStore):
    await any_store.add_reads([read("SP1", 1, received=T0 + 50.5)], T0 + 60)
    await any_store.add_events([event("SP1", T0 + 70, 201), event("SP2", T0, 201)], T0 + 80)
    seen = await any_store.run_sql(inventory.last_seen)
    assert seen == {"SP1": T0 + 75.5, "SP2": T0 + 5.5}


async def test_the_store_outlives_a_restart(store_location: str):
    async with open_store(store_location) as store:
        await store.add_reads([read("SP1", 1)], T0)
    async with open_store(store_location) as store:  # the schema is there: made once
        assert await store.add_reads([read("SP1", 1), read("SP1", 2)], T0) == [False, True]


@pytest.mark.parametrize("on_loop", [False, True])
async def test_on_loop_runs_the_sql_on_the_loops_thread(store_location: str, on_loop: bool):
    async with open_store(store_location, export_interval_s=900, on_loop=on_loop) as store:
        ran_on = await store.run_sql(lambda _db: threading.get_ident())
        assert (ran_on == threading.get_ident()) is on_loop
        # and it is the same store: reads go in once, with their export
        assert await store.add_reads([read("SP1", 1), read("SP1", 1)], T0) == [True, False]
        due = await store.run_sql(partial(outbox.due, now=T0 + 9000, limit=10))
        assert [r.key for r in due] == [f"read:SP1:{T0 + 900}"]


# ---------------------------------------------------------------- which store, and errors


def test_the_location_chooses_the_store(tmp_path):
    assert isinstance(open_store("postgresql://u@h/db"), PgStore)
    assert isinstance(open_store("postgres://u@h/db"), PgStore)
    assert isinstance(open_store(tmp_path / "hes.sqlite"), SqliteStore)
    assert isinstance(open_store(str(tmp_path / "postgresql.sqlite")), SqliteStore)


async def test_a_server_that_is_not_there_is_a_store_error_without_the_password():
    store = PgStore("postgresql://hes:secret@127.0.0.1:1/hes?connect_timeout=2")
    with pytest.raises(StoreError, match="cannot open postgresql store") as raised:
        async with store:
            pass
    assert "secret" not in str(raised.value)


def test_placeholders_become_psycopg_ones_outside_literals():
    assert pg_sql("SELECT ? % ?, '?%' FROM t WHERE a = ?") == (
        "SELECT %s %% %s, '?%' FROM t WHERE a = %s"
    )


@pytest.mark.parametrize("store_location", ["postgresql"], indirect=True)
async def test_postgresql_reconnects_after_losing_its_connection(store_location: str, request):
    async with open_store(store_location) as store:
        await store.add_reads([read("SP1", 1)], T0)
        database = request.getfixturevalue("pg_database")
        database.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'hes-sim' AND datname = current_database()"
        )
        with pytest.raises(StoreError):
            await store.count_reads()  # the call that meets the broken link fails
        assert await store.count_reads() == 1  # the next reconnects


async def test_on_the_loop_a_write_waits_briefly_for_another_process_then_fails(
    tmp_path, monkeypatch
):
    """The loop waits with it, so a locked database fails the write soon (the ingest
    retries it after an awaited back-off) and the store goes on once the lock is gone."""
    monkeypatch.setattr("hes_sim.hes.store.BUSY_TIMEOUT_ON_LOOP_S", 0.05)
    path = tmp_path / "reads.sqlite"
    async with SqliteStore(path, on_loop=True, upkeep=False) as store:
        busy = await store.run_sql(lambda db: db.execute("PRAGMA busy_timeout").fetchone()[0])
        assert busy == 50  # ms, where a store on its own thread waits BUSY_TIMEOUT_S
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(StoreError, match="locked"):
                await store.add_reads([read("SP1", 1)], T0)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await store.add_reads([read("SP1", 1)], T0) == [True]


@pytest.mark.parametrize("upkeep", [True, False])
async def test_only_the_keeper_of_a_sqlite_store_checkpoints_it(tmp_path, upkeep: bool):
    """An ingest worker writes into its head-end's store: the head-end checkpoints it."""
    async with SqliteStore(tmp_path / "reads.sqlite", upkeep=upkeep) as store:
        await store.add_reads([read("SP0000001", 1)], 1.0)
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert ("sqlite-store:wal" in names) is upkeep


async def test_sqlite_checkpoints_its_wal_off_the_writer(tmp_path, monkeypatch):
    """The writer never checkpoints (a checkpoint's fsync would stall whichever write met
    it); the store's own checkpointer moves the WAL into the database file meanwhile."""
    monkeypatch.setattr("hes_sim.hes.store.CHECKPOINT_EVERY_S", 0.05)
    path = tmp_path / "reads.sqlite"

    def in_database_file() -> int:
        # immutable: the main file alone, as if the WAL were not there
        with contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as db:
            try:
                return int(db.execute("SELECT count(*) FROM block_load_reads").fetchone()[0])
            except sqlite3.DatabaseError:
                # not even the schema has reached the file yet, or a checkpoint is writing
                # it as it is read ("malformed"): look again
                return -1

    async with SqliteStore(path) as store:
        autocheckpoint = await store.run_sql(
            lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        )
        assert autocheckpoint == 0
        await store.add_reads([read("SP0000001", k) for k in range(1, 41)], 1.0)
        async with asyncio.timeout(5):
            while in_database_file() != 40:  # noqa: ASYNC110 - a file has no event to await
                await asyncio.sleep(0.05)
