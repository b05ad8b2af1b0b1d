"""What the run and its fleet processes say to each other, framed on a pipe.

Both ends are this program: the frames are pickles (events are frozen dataclasses) behind
a 4-byte length. A frame that does not decode is a :class:`ShardError`, never a crash of
the reader's loop.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
import zlib
from dataclasses import dataclass

from hes_sim.errors import HesSimError
from hes_sim.events import Event

_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


class ShardError(HesSimError):
    """A fleet process failed, or said something that does not decode."""


def shard_of(meter_id: str, shards: int) -> int:
    """The shard a meter belongs to: by its id, stable across runs and machines."""
    return zlib.crc32(meter_id.encode()) % shards


@dataclass(frozen=True, slots=True)
class Hello:
    """The run to a new fleet process: which meters, which broker, which secret."""

    scenario_path: str
    shard: int
    shards: int
    broker_url: str
    fleet_secret: bytes
    transport: str  # aiomqtt | lean


@dataclass(frozen=True, slots=True)
class Start:
    wall_anchor: float  # the run clock's anchor: every process keeps the same simulated time


@dataclass(frozen=True, slots=True)
class Power:
    meter_ids: tuple[str, ...]
    on: bool


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    """A fleet process's meters: how many there are, connected once, finished, powered."""

    meters: int
    connected: int
    finished: int
    powered: int


@dataclass(frozen=True, slots=True)
class Events:
    events: tuple[Event, ...]


ToWorker = Hello | Start | Power | Stop
FromWorker = Status | Events


def frame(message: ToWorker | FromWorker) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> ToWorker | FromWorker | None:
    """The next message, or None at the end of the stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ShardError("a fleet pipe ended inside a frame header") from exc
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME:
        raise ShardError(f"a fleet frame of {length} bytes is over the limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ShardError("a fleet pipe ended inside a frame") from exc
    try:
        message = pickle.loads(body)  # noqa: S301 - both ends are this program, on a pipe
    except Exception as exc:  # a damaged pickle raises errors of many kinds
        raise ShardError(f"a fleet frame did not decode: {exc!r}") from exc
    if not isinstance(message, Hello | Start | Power | Stop | Status | Events):
        raise ShardError(f"a fleet frame held a {type(message).__name__}")
    return message
