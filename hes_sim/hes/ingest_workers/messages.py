"""What the head-end and its ingest workers say to each other (framed by ``pipe_frames``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from hes_sim import pipe_frames
from hes_sim.errors import HesSimError
from hes_sim.events import Event


class IngestWorkerError(HesSimError):
    """An ingest worker failed, or said something that does not decode."""


@dataclass(frozen=True, slots=True)
class Hello:
    """The head-end to a new worker: where to read, where to store, how to check."""

    worker: int
    brokers: tuple[str, ...]  # broker URLs; a meter's broker is its index here
    store: str  # a SQLite path or a postgresql:// URL, the head-end's own store
    fleet_secret: bytes
    require_ciphered: bool
    sim_start: float  # the head-end's clock, so that times stamped here are the same
    time_scale: float
    wall_anchor: float | None  # None: the clock has not started yet (see ClockStart)
    export_interval_s: int | None  # reads are enqueued for export as they are stored
    client_id: str
    queue_size: int
    batch_size: int


@dataclass(frozen=True, slots=True)
class ClockStart:
    wall_anchor: float


@dataclass(frozen=True, slots=True)
class Flush:
    """Answer :class:`Flushed` once every push received so far is stored."""

    token: int


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Subscribed:
    broker: int
    sessions: int  # how many sessions this worker has had with that broker


@dataclass(frozen=True, slots=True)
class Heard:
    """The meters of the up messages just received from one broker, in order: the
    head-end's presence and the route for its requests."""

    broker: int
    meters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    """A meter's answer to a head-end request: the head-end is waiting for it."""

    meter_id: str
    frame: bytes
    broker: int


# A pushed read stored: meter, interval end, delivery delay, Wh imported. Sent as a plain
# tuple: unpickling a slotted dataclass costs more than the rest of the trip.
StoredRead = tuple[str, float, float, int]


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Events of ingest (stored, duplicate, rejected) and the worker's queue depth; the
    commonest, a pushed read stored, in ``stored``, each meaning a ``ReadStored``."""

    events: tuple[Event, ...]
    queue_depth: int
    stored: tuple[StoredRead, ...] = ()


@dataclass(frozen=True, slots=True)
class Flushed:
    token: int


ToWorker = Hello | ClockStart | Flush | Stop
FromWorker = Subscribed | Heard | Answer | Outcomes | Flushed
_KINDS = (Hello, ClockStart, Flush, Stop, Subscribed, Heard, Answer, Outcomes, Flushed)


def frame(message: ToWorker | FromWorker) -> bytes:
    return pipe_frames.frame(message)


async def read_message(reader: asyncio.StreamReader) -> ToWorker | FromWorker | None:
    message = await pipe_frames.read_frame(reader, _KINDS, IngestWorkerError, "ingest worker")
    return cast(ToWorker | FromWorker | None, message)
