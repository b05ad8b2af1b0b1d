"""The head-end's bounded buffer of pushes: order, back-pressure, drained."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from hes_sim.hes.ingest import Decoded, InboundPush
from hes_sim.hes.ingest_queue import IngestQueue


class SlowIngest:
    """Records each batch; the store write waits until the test lets it go."""

    def __init__(self) -> None:
        self.decoded: list[list[str]] = []
        self.stored: list[str] = []
        self.release = asyncio.Event()

    def decode_batch(self, batch: Sequence[InboundPush]) -> Decoded:
        self.decoded.append([push.meter_id for push in batch])
        return Decoded([push.meter_id for push in batch], [])  # type: ignore[arg-type]

    async def store(self, decoded: Decoded) -> None:
        await self.release.wait()
        self.stored.extend(decoded.reads)  # type: ignore[arg-type]


def _push(n: int) -> InboundPush:
    return InboundPush(f"M{n:04d}", b"", 0.0)


def _queue(ingest: SlowIngest, calls: list[str], size: int = 10, batch: int = 4) -> IngestQueue:
    return IngestQueue(
        ingest,  # type: ignore[arg-type]
        size=size,
        batch_size=batch,
        pause=lambda: calls.append("pause"),
        resume=lambda: calls.append("resume"),
    )


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_batches_keep_the_order_received_and_drained_waits_for_the_store() -> None:
    ingest, calls = SlowIngest(), []
    queue = _queue(ingest, calls)
    async with asyncio.TaskGroup() as group:
        runner = group.create_task(queue.run())
        for n in range(9):
            queue.put(_push(n))
        drained = group.create_task(queue.drained())
        await _settle()
        # one batch decoded while the store holds; the next decoded meanwhile, not written
        assert ingest.decoded[:2] == [[f"M{n:04d}" for n in range(4)],
                                      [f"M{n:04d}" for n in range(4, 8)]]  # fmt: skip
        assert not drained.done()
        ingest.release.set()
        await drained
        runner.cancel()
    assert ingest.stored == [f"M{n:04d}" for n in range(9)]
    assert calls == []


async def test_a_full_buffer_pauses_reading_until_it_is_half_empty() -> None:
    ingest, calls = SlowIngest(), []
    queue = _queue(ingest, calls, size=10, batch=2)
    for n in range(10):
        queue.put(_push(n))
    assert calls == ["pause"]
    assert queue.paused
    queue.put(_push(10))  # a read already on its way is still taken
    assert calls == ["pause"]
    async with asyncio.TaskGroup() as group:
        runner = group.create_task(queue.run())
        await _settle()
        # two batches taken (one writing, one decoded): 7 left of 11, over half of 10
        assert (len(queue), calls) == (7, ["pause"])
        ingest.release.set()
        await queue.drained()
        runner.cancel()
    assert calls == ["pause", "resume"]
    assert len(ingest.stored) == 11


async def test_cancelling_the_loop_cancels_the_write_in_flight() -> None:
    ingest, calls = SlowIngest(), []
    queue = _queue(ingest, calls)
    queue.put(_push(1))
    runner = asyncio.create_task(queue.run())
    await _settle()
    writes = [t for t in asyncio.all_tasks() if t.get_name() == "hes:store"]
    assert len(writes) == 1
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    await _settle()
    assert writes[0].cancelled()
