"""One meter connection through the link proxy: the meter's socket, the broker's socket,
and the two directions between them, each delaying its chunks as the radio model says.

Callback based (``asyncio.Protocol``) so that a connection costs no task per chunk and
no task per direction: a direction is a FIFO of (due time, bytes) and one timer armed for
its head. Due times never decrease within a direction, so bytes keep their order without
relying on how the loop orders timers that fall due together.
"""

from __future__ import annotations

import asyncio
from collections import deque
from enum import Enum
from typing import Protocol, cast

from hes_sim.clock import SimClock
from hes_sim.meter_sim.network.link_model import Direction, LinkModel
from hes_sim.meter_sim.network.mqtt_connect import (
    MAX_CONNECT_SIZE,
    ConnectPacket,
    ConnectPacketError,
    packet_length,
    parse_connect,
)

# Bytes a direction may hold back (waiting for their due time) before the sender is paused:
# far above what a meter sends in a round trip, low enough to bound a runaway peer.
PENDING_HIGH = 256 * 1024
PENDING_LOW = 64 * 1024


class Side(Enum):
    METER = "meter"
    BROKER = "broker"


class LinkHooks(Protocol):
    """What a link tells its proxy."""

    def link_opened(self, link: Link) -> None: ...

    def link_black_holed(self, link: Link) -> None: ...


class Pipe:
    """One direction of a link: chunks waiting for their delivery time, in order."""

    __slots__ = (
        "_closing",
        "_dest_paused",
        "_last_due",
        "_link",
        "_pending",
        "_queue",
        "_timer",
        "dest",
        "direction",
        "source",
    )

    def __init__(self, link: Link, direction: Direction) -> None:
        self._link = link
        self.direction = direction
        self.source: asyncio.Transport | None = None
        self.dest: asyncio.Transport | None = None
        self._queue: deque[tuple[float, bytes]] = deque()
        self._pending = 0
        self._last_due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False  # the source closed: close dest once the queue is delivered
        self._dest_paused = False

    def push(self, data: bytes) -> None:
        link = self._link
        if self.dest is None or self._closing:
            return
        delay = link.model.transit(link.meter_id, self.direction, len(data), link.clock.now())
        if delay is None:
            link.black_hole()
            return
        loop = link.loop
        now = loop.time()
        due = max(now + link.clock.wall_seconds(max(delay, 0.0)), self._last_due)
        self._last_due = due
        if not self._queue and due <= now:
            self.dest.write(data)  # nothing ahead of it: the zero-delay path queues nothing
            return
        self._queue.append((due, data))
        self._pending += len(data)
        if self._timer is None:
            self._timer = loop.call_at(self._queue[0][0], self._deliver)
        self.update_flow()

    def _deliver(self) -> None:
        self._timer = None
        if self.dest is None:
            return
        now = self._link.loop.time()
        # the timer was armed for the head, so it goes even if the loop woke a hair early
        while self._queue:
            _due, data = self._queue.popleft()
            self._pending -= len(data)
            self.dest.write(data)
            if self._queue and self._queue[0][0] > now:
                self._timer = self._link.loop.call_at(self._queue[0][0], self._deliver)
                break
        if not self._queue and self._closing:
            self.dest.close()
        self.update_flow()

    def finish(self) -> None:
        """The source closed: close the destination once what is queued has been delivered."""
        self._closing = True
        if not self._queue and self.dest is not None:
            self.dest.close()

    def abandon(self) -> None:
        """Drop whatever is queued: the destination is gone, or the link died."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._pending = 0
        self.update_flow()

    def set_dest_paused(self, paused: bool) -> None:
        self._dest_paused = paused
        self.update_flow()

    def update_flow(self) -> None:
        source = self.source
        if source is None:
            return
        if self._link.black_holed:
            source.resume_reading()  # a black hole keeps reading, and drops what it reads
        elif self._dest_paused or self._pending > PENDING_HIGH:
            source.pause_reading()
        elif self._pending <= PENDING_LOW:
            source.resume_reading()


class Link:
    """One TCP connection of a meter and, once attached, its connection to the broker."""

    __slots__ = (
        "_handshake",
        "black_holed",
        "broker",
        "broker_opened",
        "clock",
        "connect",
        "down",
        "ended",
        "hooks",
        "loop",
        "max_connect_size",
        "meter",
        "meter_gone",
        "meter_id",
        "model",
        "peer",
        "relaying",
        "shutting_down",
        "up",
    )

    def __init__(
        self,
        model: LinkModel,
        clock: SimClock,
        hooks: LinkHooks,
        max_connect_size: int = MAX_CONNECT_SIZE,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.model = model
        self.clock = clock
        self.hooks = hooks
        self.max_connect_size = max_connect_size
        self.meter_id = ""  # known once the CONNECT is parsed
        self.peer = ""
        self.meter: asyncio.Transport | None = None
        self.broker: asyncio.Transport | None = None
        self.broker_opened = False
        self.up = Pipe(self, Direction.UP)
        self.down = Pipe(self, Direction.DOWN)
        self._handshake = bytearray()
        self.connect: asyncio.Future[ConnectPacket] = self.loop.create_future()
        self.meter_gone = asyncio.Event()
        self.ended = asyncio.Event()  # every socket this link opened is closed
        self.relaying = False
        self.black_holed = False
        self.shutting_down = False

    # -- what the proxy does with it ------------------------------------------------------

    def start_relay(self) -> None:
        """The broker is connected: send the CONNECT (and anything after it) on its way."""
        self.relaying = True
        self.up.source, self.up.dest = self.meter, self.broker
        self.down.source, self.down.dest = self.broker, self.meter
        held, self._handshake = bytes(self._handshake), bytearray()
        if held:
            self.up.push(held)
        self.up.update_flow()
        self.down.update_flow()

    def black_hole(self) -> None:
        """No byte passes either way from now on; the sockets stay open."""
        if self.black_holed:
            return
        self.black_holed = True
        self.up.abandon()
        self.down.abandon()
        if self.meter is not None:
            self.meter.resume_reading()
        if self.broker_opened and self.broker is None and self.meter is not None:
            self.meter.close()  # the broker already let go: nothing is left to keep open
        self.hooks.link_black_holed(self)

    def close(self) -> None:
        """Shutdown: close both sides now, without delivering what is still queued."""
        self.shutting_down = True
        self.up.abandon()
        self.down.abandon()
        for transport in (self.meter, self.broker):
            if transport is not None:
                transport.close()

    def abort(self) -> None:
        for transport in (self.meter, self.broker):
            if transport is not None:
                transport.abort()

    # -- what the sockets tell it ---------------------------------------------------------

    def opened(self, side: Side, transport: asyncio.Transport) -> None:
        if side is Side.METER:
            self.meter = transport
            peer = transport.get_extra_info("peername")
            self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
            self.hooks.link_opened(self)
        else:
            self.broker = transport
            self.broker_opened = True

    def received(self, side: Side, data: bytes) -> None:
        if self.black_holed:
            return
        if side is Side.BROKER:
            self.down.push(data)
        elif self.relaying:
            self.up.push(data)
        else:
            self._handshake_received(data)

    def lost(self, side: Side) -> None:
        if side is Side.METER:
            self.meter = None
            self.meter_gone.set()
            self.down.dest = self.up.source = None
            self.down.abandon()
            if not self.connect.done():
                self.connect.set_exception(ConnectionError("closed before its CONNECT"))
            if self.relaying and not self.black_holed:
                self.up.finish()
            # black hole: a dead modem sends no FIN, so the broker is not told
        else:
            self.broker = None
            self.up.dest = self.down.source = None
            self.up.abandon()
            if self.black_holed or not self.relaying:
                if self.meter is not None:
                    self.meter.close()
            else:
                self.down.finish()
        if self.meter is None and self.broker is None:
            self.ended.set()

    def _handshake_received(self, data: bytes) -> None:
        self._handshake += data
        if not self.connect.done():
            try:
                size = packet_length(bytes(self._handshake[:5]), self.max_connect_size)
                if size is None or len(self._handshake) < size:
                    return
                packet = parse_connect(bytes(self._handshake[:size]), self.max_connect_size)
            except ConnectPacketError as exc:
                self.connect.set_exception(exc)
                return
            self.connect.set_result(packet)
        # bytes after the CONNECT wait, held, for the broker; reading goes on (a meter
        # giving up during the attach must be seen) unless a client sends far too much
        if len(self._handshake) > self.max_connect_size and self.meter is not None:
            self.meter.pause_reading()


class SideProtocol(asyncio.Protocol):
    """The socket of one side of a link, reporting to the link."""

    __slots__ = ("link", "side")

    def __init__(self, link: Link, side: Side) -> None:
        self.link = link
        self.side = side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.link.opened(self.side, cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self.link.received(self.side, data)

    def eof_received(self) -> bool | None:
        # a half-close means nothing to MQTT: the transport closes, connection_lost follows
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost(self.side)

    def pause_writing(self) -> None:
        self._pipe_into().set_dest_paused(True)

    def resume_writing(self) -> None:
        self._pipe_into().set_dest_paused(False)

    def _pipe_into(self) -> Pipe:
        return self.link.down if self.side is Side.METER else self.link.up
