"""The MQTT side of a lean link: bytes in and out of one socket, packets, acknowledgements.

:class:`MqttWire` is an ``asyncio.Protocol`` that turns the broker's bytes into packets
and the waits on them into futures: CONNACK and SUBACK, a PUBACK per QoS 1 publish (at
most ``max_inflight`` at once), down frames queued for the reader (at most
``max_queued``, then reading pauses), PINGRESP for the shared keep-alive. It never owns
a task or a timer. Whatever the broker sends that is not valid, or not expected, ends
the connection, logged and counted; everything waiting learns of it at once.

Instead of a reader, a link can have a listener (the meter runtime): told of each
queued frame and of the link's end, it takes frames with ``take()``, so an idle meter
needs no task waiting on its link.

:class:`~hes_sim.meter_sim.lean.link.LeanLink` builds the meter's side on it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Self, cast

import structlog

from hes_sim.errors import BrokerError, CodecError
from hes_sim.meter_sim.lean.context import LinkContext
from hes_sim.protocols.mqtt_codec import (
    PINGREQ,
    ConnAck,
    Packet,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    decode,
    encode_puback,
    encode_publish,
    packet_size,
)
from hes_sim.protocols.topics import Channel, topic

if TYPE_CHECKING:
    from hes_sim.meter_sim.transport import LinkListener

log = structlog.get_logger(__name__)

_HEADER_MAX = 5  # type byte and at most four bytes of remaining length


class MqttWire(asyncio.Protocol):
    __slots__ = (
        "_buffer",
        "_closed",
        "_connack",
        "_ctx",
        "_ended",
        "_inbox",
        "_inflight",
        "_listener",
        "_lost",
        "_next_id",
        "_paused",
        "_reader",
        "_scheduled",
        "_suback",
        "_transport",
        "_window",
        "last_sent",
        "meter_id",
        "ping_sent_at",
    )

    def __init__(self, meter_id: str, context: LinkContext) -> None:
        self.meter_id = meter_id
        self.last_sent = 0.0
        self.ping_sent_at: float | None = None
        self._ctx = context
        self._transport: asyncio.Transport | None = None
        self._buffer: bytearray | None = None  # the start of a packet not yet whole
        self._connack: asyncio.Future[ConnAck] | None = None
        self._suback: asyncio.Future[SubAck] | None = None
        self._inflight: dict[int, asyncio.Future[None]] | None = None
        self._window: deque[asyncio.Future[None]] | None = None  # sends waiting for a slot
        self._inbox: deque[tuple[int | None, bytes]] | None = None  # (packet id, frame)
        self._reader: asyncio.Future[bytes] | None = None
        self._next_id = 0
        self._paused = False
        self._scheduled = False
        self._ended = False  # the connection is gone or going: nothing more is written
        self._lost: str | None = None  # why it ended, when the meter did not end it
        self._closed: asyncio.Future[None] | None = None  # made by whoever awaits the end
        self._listener: LinkListener | None = None  # told of frames instead of a reader

    # ------------------------------------------------------------ the reader

    def __aiter__(self) -> Self:
        return self

    def __anext__(self) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if self._inbox:
            future.set_result(self._pop())
        elif self._ended:
            # the meter's own close ends the stream quietly; a lost link is an error
            future.set_exception(self._error() if self._lost else StopAsyncIteration())
        else:
            if self._reader is not None and not self._reader.done():
                raise RuntimeError(f"{self.meter_id}: a link has one reader at a time")
            self._reader = future
        return future

    def _pop(self) -> bytes:
        """The oldest queued frame, acknowledged now that the meter takes it."""
        assert self._inbox  # noqa: S101 - callers look first
        packet_id, frame = self._inbox.popleft()
        self._ack(packet_id)
        if not self._inbox:
            self._inbox = None
        if self._paused and len(self._inbox or ()) <= self._ctx.options.max_queued // 2:
            self._resume()
        return frame

    # ------------------------------------------------------------ the listener (ListeningLink)

    def listen(self, listener: LinkListener | None) -> None:
        self._listener = listener

    def take(self) -> bytes | None:
        if self._inbox:
            return self._pop()
        if self._ended and self._lost is not None:
            raise self._error()
        return None

    # ------------------------------------------------------------ publishing

    async def _publish(self, name: str, payload: bytes, *, retain: bool) -> None:
        self._check_open()
        limit = self._ctx.options.max_inflight
        while self._inflight is not None and len(self._inflight) >= limit:
            slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._window is None:
                self._window = deque()
            self._window.append(slot)
            await slot
            self._check_open()
        packet_id, acked = self._start_publish(name, payload, retain=retain)
        await self._until_acked(name, packet_id, acked)

    def _start_publish(
        self, name: str, payload: bytes, *, retain: bool
    ) -> tuple[int, asyncio.Future[None]]:
        packet_id = self._new_packet_id()
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._inflight is None:
            self._inflight = {}
        self._inflight[packet_id] = acked
        self._write(encode_publish(name, payload, qos=1, packet_id=packet_id, retain=retain))
        return packet_id, acked

    async def _until_acked(self, name: str, packet_id: int, acked: asyncio.Future[None]) -> None:
        timeout_s = self._ctx.options.ack_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await acked
        except TimeoutError:
            raise BrokerError(
                f"{self.meter_id}: no PUBACK for {name} within {timeout_s:g} s"
            ) from None
        finally:
            if self._inflight is not None:
                self._inflight.pop(packet_id, None)
                if not self._inflight:
                    self._inflight = None
            self._wake_one_sender()

    def _wake_one_sender(self) -> None:
        while self._window:
            slot = self._window.popleft()
            if not slot.done():
                slot.set_result(None)
                break
        if not self._window:
            self._window = None

    def _new_packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % 0xFFFF + 1
            if self._inflight is None or self._next_id not in self._inflight:
                return self._next_id

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream socket's transport

    def data_received(self, data: bytes) -> None:
        if self._buffer is not None:
            self._buffer += data
            self._process(self._buffer)
        else:
            self._process(data)

    def eof_received(self) -> None:
        return None  # the broker closed its side: close ours, connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._ended:
            self._lost = "closed by the broker" if exc is None else f"connection lost: {exc}"
            log.info("lean_link_lost", meter_id=self.meter_id, error=self._lost)
        self._end()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    # ------------------------------------------------------------ the down stream

    def _process(self, data: bytes | bytearray) -> None:
        """Dispatch every whole packet in ``data``; keep the tail, bounded by max_packet."""
        at, end = 0, len(data)
        max_packet = self._ctx.options.max_packet
        try:
            while at < end and not self._paused and not self._ended:
                size = packet_size(data[at : at + _HEADER_MAX], max_packet)
                if size is None or end - at < size:
                    break
                packet = decode(data[at : at + size])
                at += size
                self._dispatch(packet)
        except CodecError as exc:
            self._fail("malformed", str(exc))
        if self._ended or at == end:
            self._buffer = None
        elif data is self._buffer:
            del data[:at]
        else:
            self._buffer = bytearray(data[at:])

    def _dispatch(self, packet: Packet) -> None:
        match packet:
            case Publish(topic=name, payload=frame, packet_id=packet_id):
                if name == topic(self.meter_id, Channel.DOWN):
                    self._deliver(packet_id, frame)
                else:  # not subscribed: acknowledged and dropped
                    self._ctx.stats.errors["unexpected_topic"] += 1
                    self._ack(packet_id)
            case PubAck(packet_id=packet_id):
                acked = self._inflight.get(packet_id) if self._inflight else None
                if acked is not None and not acked.done():
                    acked.set_result(None)  # an unknown id is the late ack of a timed-out send
            case PingResp():
                self.ping_sent_at = None
            case ConnAck() if self._connack is not None and not self._connack.done():
                self._connack.set_result(packet)
            case SubAck() if self._suback is not None and not self._suback.done():
                self._suback.set_result(packet)
            case _:
                self._fail("protocol", f"unexpected {type(packet).__name__} from the broker")

    def _deliver(self, packet_id: int | None, frame: bytes) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            self._reader = None
            self._ack(packet_id)
            reader.set_result(frame)
            return
        self._reader = None
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append((packet_id, frame))
        if len(self._inbox) >= self._ctx.options.max_queued and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        if self._listener is not None:
            self._listener.link_event()

    def _resume(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._transport.resume_reading()
        if self._buffer:
            self._process(self._buffer)  # packets read before the pause come first

    def _ack(self, packet_id: int | None) -> None:
        if packet_id is not None and not self._ended:
            self._write(encode_puback(packet_id))

    # ------------------------------------------------------------ keep-alive (KeepAliveLink)

    @property
    def closed(self) -> bool:
        return self._ended

    def send_ping(self, now: float) -> None:
        if self._transport is not None and not self._ended:
            self._transport.write(PINGREQ)
            self.last_sent = self.ping_sent_at = now

    def keepalive_lost(self) -> None:
        timeout_s = self._ctx.keepalive.pingresp_timeout_s
        self._fail("keepalive", f"no PINGRESP within {timeout_s:g} s")

    # ------------------------------------------------------------ ending

    def _write(self, data: bytes) -> None:
        self._check_open().write(data)
        self.last_sent = self._ctx.keepalive.now()

    def _check_open(self) -> asyncio.Transport:
        if self._ended:
            raise self._error()
        if self._transport is None:
            raise BrokerError(f"{self.meter_id}: link is not connected")
        return self._transport

    def _error(self) -> BrokerError:
        if self._lost is None:
            return BrokerError(f"{self.meter_id}: link closed")
        return BrokerError(f"{self.meter_id}: link lost: {self._lost}")

    def _fail(self, reason: str, message: str) -> None:
        """The broker sent what this link cannot take: count it, log it, drop the link."""
        if self._ended:
            return
        self._ctx.stats.errors[reason] += 1
        log.warning("lean_link_error", meter_id=self.meter_id, reason=reason, error=message)
        self._lost = f"{reason}: {message}"
        self._abort()

    def _abort(self) -> None:
        """Drop the socket now, no DISCONNECT: to the broker the meter went silent."""
        if self._transport is not None:
            self._transport.abort()  # connection_lost follows on the next loop turn
        self._end()

    def _end(self) -> None:
        """Everything waiting on the link learns now that it ended (idempotent)."""
        if self._ended:
            return
        self._ended = True
        if self._scheduled:
            self._scheduled = False
            self._ctx.keepalive.discard(self)
        if self._lost is not None:
            self._ctx.stats.lost += 1
        for waiter in (self._connack, self._suback):
            if waiter is not None and not waiter.done():
                waiter.set_exception(self._error())
        for acked in (self._inflight or {}).values():
            if not acked.done():
                acked.set_exception(self._error())
        for slot in self._window or ():
            if not slot.done():
                slot.set_exception(self._error())
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.set_exception(self._error() if self._lost else StopAsyncIteration())
        self._inbox = None
        self._buffer = None
        if self._listener is not None:
            self._listener.link_event()
