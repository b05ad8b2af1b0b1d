"""Frames between a run and its fleet processes: round trip, and garbage refused cleanly."""

from __future__ import annotations

import asyncio
import pickle
import struct

import pytest

from hes_sim.events import PushSent, ReadProduced
from hes_sim.runner.shards.messages import (
    Events,
    Hello,
    ShardError,
    Start,
    Status,
    frame,
    read_message,
)


def stream(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_messages_come_out_as_they_went_in_then_the_end():
    sent = [
        Hello("s.yaml", 1, 3, "mqtt://127.0.0.1:1883", b"x" * 32, "aiomqtt"),
        Start(1_795_000_000.5),
        Events((ReadProduced("SP01", 900.0), PushSent("SP01", 900.0))),
        Status(10, 9, 0, 10),
    ]
    reader = stream(b"".join(frame(m) for m in sent))
    received = [await read_message(reader) for _ in sent]
    assert received == sent
    assert await read_message(reader) is None


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00",  # a header cut short
        struct.pack(">I", 10) + b"short",  # a body cut short
        struct.pack(">I", 5) + b"\x80junk",  # not a pickle
        struct.pack(">I", 0xFFFF_FFF0),  # over the limit
        frame(Status(1, 1, 1, 1))[:4] + pickle.dumps(Status(1, 1, 1, 1))[:-3],
    ],
)
async def test_a_garbled_frame_is_a_shard_error(data: bytes):
    with pytest.raises(ShardError):
        await read_message(stream(data))


async def test_a_frame_of_something_else_is_refused():
    body = pickle.dumps({"not": "a message"})
    with pytest.raises(ShardError, match="dict"):
        await read_message(stream(struct.pack(">I", len(body)) + body))
