"""The exporter against a real HTTP endpoint that goes away mid-run and comes back.

The endpoint is a small HTTP/1.1 server on 127.0.0.1 that applies each record once by its
key, as a billing adapter's idempotent endpoint does: a key it has applied before is
accepted again (200) but not applied twice. It applies the third batch and dies before
answering, stays down while the exporter backs off, then comes back on the same port.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from hes_sim.clock import SimClock
from hes_sim.events import EventBus, ExportDelivered, ExportFailed
from hes_sim.hes.export import outbox
from hes_sim.hes.export.exporter import Exporter
from hes_sim.hes.export.outbox import OUTBOX_SCHEMA
from hes_sim.hes.export.policy import ExportSettings
from hes_sim.hes.export.webhook import WebhookSink
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store import SqliteStore

from .conftest import EventWaiter

T0 = 1_800_000_000
METERS, INTERVALS, BATCH = 6, 10, 10
BASE_S, CAP_S = 30.0, 300.0  # simulated seconds; x600: 0.05 and 0.5 wall seconds


class IdempotentEndpoint:
    """POST with a JSON batch ``{"keys", "records"}``: applies each record once by key."""

    def __init__(self, hang_on_batch: int) -> None:
        self.applied: dict[str, dict[str, Any]] = {}
        self.applications: Counter[str] = Counter()  # what a naive endpoint would have done
        self.redelivered: set[str] = set()  # keys received again after being applied
        self.batches = 0
        self.idempotency_keys: list[str] = []
        self.hang_on_batch = hang_on_batch
        self.hung = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Gone at once, as a crashed process is: no answer to what is in flight."""
        if self._server is None:
            return
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            self._connections.discard(task)
            writer.transport.abort()  # no graceful close: a crash, or the client gone

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, _target, _version = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:] if h)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method != "POST" or "idempotency-key" not in headers:
            await _answer(writer, 400, {"error": "POST a batch with an Idempotency-Key"})
            return True
        self.batches += 1
        self.idempotency_keys.append(headers["idempotency-key"])
        batch = json.loads(body)
        assert batch["keys"] == [r["key"] for r in batch["records"]]
        for record in batch["records"]:
            if record["key"] in self.applied:
                self.redelivered.add(record["key"])
            else:
                self.applied[record["key"]] = record
                self.applications[record["key"]] += 1
        if self.batches == self.hang_on_batch:
            self.hung.set()
            await asyncio.Event().wait()  # applied, but the answer never leaves: stop() ends it
        await _answer(writer, 200, {"applied": len(batch["records"])})
        return True


async def _answer(writer: asyncio.StreamWriter, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    reason = {200: "OK", 400: "Bad Request"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()


def reads() -> list[ReadRecord]:
    return [
        ReadRecord(
            f"SP{m:07d}",
            T0 + k * 900,
            "single_phase",
            230.0,
            1.0,
            100 + k,
            0,
            105 + k,
            0,
            {"wh_import": 100 + k},
            T0 + k * 900 + 60.0,
        )
        for m in range(1, METERS + 1)
        for k in range(1, INTERVALS + 1)
    ]


def most_attempts(down_s: float) -> int:
    """The most failed attempts a down sink may see in ``down_s``: the first, then one
    per back-off, each at least half its ceiling."""
    attempts, waited = 1, 0.0
    for i in itertools.count():
        waited += min(CAP_S, BASE_S * 2**i) / 2
        if waited > down_s:
            return attempts
        attempts += 1
    raise AssertionError("unreachable")


async def test_every_record_reaches_the_endpoint_once_across_its_outage(tmp_path: Path):
    bus = EventBus()
    events = EventWaiter(bus)
    clock = SimClock(T0 + 11 * 900, time_scale=600.0)
    all_reads = reads()
    keys = {outbox.read_key(r.meter_id, r.interval_end) for r in all_reads}
    endpoint = IdempotentEndpoint(hang_on_batch=3)
    await endpoint.start()
    settings = ExportSettings(batch_size=BATCH, retry_base_s=BASE_S, retry_cap_s=CAP_S)

    def delivered() -> int:
        return sum(e.count for e in events.events if isinstance(e, ExportDelivered))

    def failures() -> list[ExportFailed]:
        return [e for e in events.events if isinstance(e, ExportFailed)]

    try:
        async with SqliteStore(tmp_path / "hes.sqlite") as store:
            await store.run_sql(lambda db: db.executescript(OUTBOX_SCHEMA))
            await store.add_reads(all_reads, stored_at=clock.now())
            await store.run_sql(
                partial(outbox.enqueue_reads, reads=all_reads, created_at=clock.now())
            )
            clock.start()
            url = f"http://127.0.0.1:{endpoint.port}/readings"
            async with (
                WebhookSink(url, timeout_s=30.0) as sink,
                Exporter(store, sink, clock, settings=settings, bus=bus) as exporter,
            ):
                async with asyncio.timeout(10):
                    await endpoint.hung.wait()
                # mid-run: two batches delivered, the third applied but not answered
                assert delivered() == 2 * BATCH
                assert len(endpoint.applied) == 3 * BATCH < len(keys)
                down_at = clock.now()
                await endpoint.stop()
                await events.until(lambda _: len(failures()) >= 4)
                assert delivered() == 2 * BATCH  # nothing got through while it was down
                await endpoint.start(port=endpoint.port)  # back, on the same port
                down_s = clock.now() - down_at
                down_failures = len(failures())
                await events.until(lambda _: delivered() == len(keys))
                figures = await exporter.figures()
            stored_vs_exported = await exporter.reconcile()
            counts = await store.run_sql(outbox.counts)
    finally:
        await endpoint.stop()

    # every record applied exactly once by key, none lost
    assert set(endpoint.applied) == keys
    assert set(endpoint.applications.values()) == {1}
    # the batch whose answer was lost came again, whole, under the same idempotency key,
    # and was accepted without being applied again
    assert len(endpoint.redelivered) == BATCH
    assert len(set(endpoint.idempotency_keys)) == endpoint.batches - 1
    assert (counts.delivered, counts.pending, counts.parked) == (len(keys), 0, 0)
    assert all(m.complete for m in stored_vs_exported)
    assert len(stored_vs_exported) == METERS

    # failed attempts counted, and backed off rather than retried in a tight loop
    failed = failures()
    assert all(f.retriable for f in failed)
    assert figures.sink_failures == len(failed) >= 4
    assert figures.failed_attempts == sum(f.count for f in failed) == counts.failed_attempts
    for i, (a, b) in enumerate(itertools.pairwise(failed)):
        assert b.at - a.at >= min(CAP_S, BASE_S * 2**i) / 2, f"retry {i + 1} came too soon"
    assert down_failures <= most_attempts(down_s)
    assert figures.exported == len(keys)
    assert figures.pending == 0
    assert figures.lag_max_s is not None
    assert figures.lag_max_s >= down_s  # records waited out the outage
