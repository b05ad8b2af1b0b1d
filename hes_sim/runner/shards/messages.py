"""What the run and its fleet processes say to each other, framed on a pipe.

Framed by :mod:`hes_sim.pipe_frames`; a frame that does not decode is a
:class:`ShardError`, never a crash of the reader's loop.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import cast

from hes_sim import pipe_frames
from hes_sim.errors import HesSimError
from hes_sim.events import Event
from hes_sim.meter_sim.lean.context import WireTotals


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
    wire: WireTotals | None = None  # what its lean links met on the wire


@dataclass(frozen=True, slots=True)
class Events:
    events: tuple[Event, ...]


ToWorker = Hello | Start | Power | Stop
FromWorker = Status | Events


_KINDS = (Hello, Start, Power, Stop, Status, Events)


def frame(message: ToWorker | FromWorker) -> bytes:
    return pipe_frames.frame(message)


async def read_message(reader: asyncio.StreamReader) -> ToWorker | FromWorker | None:
    """The next message, or None at the end of the stream."""
    message = await pipe_frames.read_frame(reader, _KINDS, ShardError, "fleet")
    return cast(ToWorker | FromWorker | None, message)
