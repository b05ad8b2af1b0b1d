"""What an ingest worker tells its head-end after one turn of its loop: the meters heard,
one message per broker and in order, and the reads stored as plain tuples, each a
``ReadStored`` at the head-end."""

from __future__ import annotations

import asyncio

from hes_sim.events import DecodeFailed
from hes_sim.hes.ingest_workers.messages import Heard, Outcomes, read_message
from hes_sim.hes.ingest_workers.worker import Reporter
from hes_sim.hes.records import ReadRecord
from tests.unit.test_shard_reporting import Pipe


def read(meter_id: str, interval_end: int, wh_import: int) -> ReadRecord:
    return ReadRecord(meter_id, interval_end, "single_phase_block_load", 230.0, 1.0,
                      wh_import, 0, wh_import, 0, {}, interval_end + 5.0)  # fmt: skip


async def messages(pipe: Pipe) -> list[object]:
    reader = asyncio.StreamReader()
    reader.feed_data(b"".join(pipe.written))
    reader.feed_eof()
    found = []
    while (message := await read_message(reader)) is not None:
        found.append(message)
    return found


async def test_one_turn_is_told_once_heard_by_broker_then_outcomes():
    pipe = Pipe()
    reporter = Reporter(pipe)
    for meter_id, broker in (("SP1", 0), ("SP2", 1), ("SP3", 0), ("SP1", 0)):
        reporter.heard(meter_id, broker)
    reporter.stored([read("SP1", 900, 7), read("SP3", 900, 9)], 1000.0)
    reporter.event(DecodeFailed("auth_failed", "SP2"))
    assert not pipe.written  # nothing until the loop turns
    await asyncio.sleep(0)
    assert await messages(pipe) == [
        Heard(0, ("SP1", "SP3", "SP1")),
        Heard(1, ("SP2",)),
        Outcomes(
            (DecodeFailed("auth_failed", "SP2"),),
            0,
            (("SP1", 900, 100.0, 7), ("SP3", 900, 100.0, 9)),
        ),
    ]


async def test_each_turn_with_news_is_told_and_a_quiet_one_is_not():
    pipe = Pipe()
    reporter = Reporter(pipe)
    reporter.heard("SP1", 0)
    await asyncio.sleep(0)
    reporter.heard("SP2", 0)  # a new turn: told again, though broker 0 was heard before
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # nothing new: nothing written
    assert await messages(pipe) == [Heard(0, ("SP1",)), Heard(0, ("SP2",))]
