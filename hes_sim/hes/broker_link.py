"""The head-end's connection to one broker, over the project's own MQTT 3.1.1 codec.

Why not aiomqtt here: at fleet scale the head-end takes every push of every meter, and
paho's per-message work (MQTT 5 properties, its inflight bookkeeping, a callback hop per
message into asyncio) held ingest near 5,000 messages a second. This protocol parses
the broker's bytes in place, hands each PUBLISH to one callback, and acknowledges all
the messages of one read from the socket in one write.

Inbound messages are acknowledged once the callback has taken them (the head-end queues
them for ingest); when that queue is full the head-end pauses reading, so the broker
keeps the backlog, not this process. The session is persistent (``clean_session`` off):
what the broker queued while the head-end was away is delivered when it is back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, NoReturn, Self, TypeVar, cast

import structlog

from hes_sim.backoff import Backoff
from hes_sim.broker_address import BrokerAddress
from hes_sim.errors import BrokerError, CodecError
from hes_sim.protocols import mqtt_codec
from hes_sim.protocols.mqtt_codec import (
    DISCONNECT,
    PINGREQ,
    ConnAck,
    Connect,
    ConnectReturnCode,
    PingResp,
    PubAck,
    SubAck,
    encode_puback,
    parse_publish,
)

log = structlog.get_logger(__name__)

KEEPALIVE_S = 30
MAX_PACKET = 64 * 1024  # a push or an answer is a few hundred bytes; a block read, some KB
CONNECT_TIMEOUT_S = 10.0
_HEADER_MAX = 5  # type byte and at most four bytes of remaining length
_PUBLISH = 3

T = TypeVar("T")

# topic, payload, retained
OnMessage = Callable[[str, bytes, bool], None]


class BrokerLink(asyncio.Protocol):
    """One MQTT connection: CONNECT, SUBSCRIBE, QoS 1 both ways, PINGREQ on demand."""

    def __init__(self, on_message: OnMessage, name: str) -> None:
        self.name = name  # the broker, for messages
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()  # the start of a packet not yet whole
        self._connack: asyncio.Future[ConnAck] | None = None
        self._subacks: dict[int, asyncio.Future[SubAck]] = {}
        self._pubacks: dict[int, asyncio.Future[None]] = {}
        self._next_id = 0
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._error: str | None = None
        self.last_heard = time.monotonic()

    @classmethod
    async def open(
        cls,
        broker: BrokerAddress,
        client_id: str,
        on_message: OnMessage,
        *,
        keepalive_s: int,
    ) -> Self:
        """Connect and hold a persistent session; BrokerError when the broker says no."""
        loop = asyncio.get_running_loop()
        link = cls(on_message, str(broker))
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await loop.create_connection(lambda: link, broker.host, broker.port)
                link._connack = loop.create_future()
                link._write(mqtt_codec.encode(Connect(client_id, keepalive_s, clean_session=False)))
                connack = await link._connack
        except (OSError, TimeoutError) as exc:
            link.close()
            raise BrokerError(f"cannot connect to {broker}: {exc or 'timed out'}") from exc
        except BaseException:
            link.close()
            raise
        if connack.return_code != ConnectReturnCode.ACCEPTED:
            link.close()
            raise BrokerError(f"{broker} refused the connection (code {connack.return_code})")
        return link

    async def subscribe(self, filters: tuple[tuple[str, int], ...]) -> None:
        packet_id = self._new_packet_id()
        future: asyncio.Future[SubAck] = asyncio.get_running_loop().create_future()
        self._subacks[packet_id] = future
        try:
            self._write(mqtt_codec.encode_subscribe(packet_id, filters))
            suback = await self._until(future)
        finally:
            del self._subacks[packet_id]
        refused = [f for (f, _), code in zip(filters, suback.return_codes, strict=False) if
                   code == mqtt_codec.SUBACK_FAILURE]  # fmt: skip
        if refused or len(suback.return_codes) != len(filters):
            raise BrokerError(f"{self.name} refused the subscription to {refused or filters}")

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and return once the broker has acknowledged it."""
        packet_id = self._new_packet_id()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pubacks[packet_id] = future
        try:
            self._write(mqtt_codec.encode_publish(topic, payload, qos=1, packet_id=packet_id))
            await self._until(future)
        finally:
            del self._pubacks[packet_id]

    async def serve(self, keepalive_s: int) -> None:
        """Keep the connection alive until it ends; BrokerError says why it ended."""
        while not self._closed.done():
            with_margin = keepalive_s / 2
            done, _ = await asyncio.wait([self._closed], timeout=with_margin)
            if done:
                break
            if time.monotonic() - self.last_heard > 1.5 * keepalive_s:
                self._fail("no answer to keep-alives")
                break
            self._write(PINGREQ)
        raise BrokerError(f"connection to {self.name} {self._error or 'closed'}")

    def pause(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def close(self) -> None:
        """Leave politely (the session stays at the broker) and drop the connection."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(DISCONNECT)
            self._transport.close()
        self._end("closed by the head-end")

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream socket's transport

    def data_received(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        acks: list[bytes] = []
        try:
            end = self._dispatch(data, acks)
        except CodecError as exc:
            log.warning("broker_sent_bad_packet", broker=self.name, error=str(exc))
            self._fail(f"sent a bad packet: {exc}")
            return
        finally:
            if acks and self._transport is not None:
                self._transport.write(b"".join(acks))
        self._buffer += data[end:]

    def eof_received(self) -> None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._end("closed by the broker" if exc is None else f"lost: {exc}")

    # ------------------------------------------------------------ internals

    def _dispatch(self, data: bytes, acks: list[bytes]) -> int:
        """Handle every whole packet in ``data``; the offset of the first incomplete one."""
        at, end = 0, len(data)
        while at < end:
            size = mqtt_codec.packet_size(data[at : at + _HEADER_MAX], MAX_PACKET)
            if size is None or end - at < size:
                break
            if data[at] >> 4 == _PUBLISH:
                topic, payload, packet_id, retain = parse_publish(data[at : at + size])
                self._on_message(topic, payload, retain)
                if packet_id is not None:
                    acks.append(encode_puback(packet_id))
            else:
                self._on_control(mqtt_codec.decode(data[at : at + size]))
            at += size
        return at

    def _on_control(self, packet: mqtt_codec.Packet) -> None:
        match packet:
            case ConnAck() if self._connack is not None and not self._connack.done():
                self._connack.set_result(packet)
            case PubAck(packet_id) if packet_id in self._pubacks:
                _settle(self._pubacks[packet_id], None)
            case SubAck(packet_id) if packet_id in self._subacks:
                _settle(self._subacks[packet_id], packet)
            case PingResp():
                pass
            case _:
                raise CodecError("unexpected", f"{type(packet).__name__} not expected here")

    async def _until(self, future: asyncio.Future[T]) -> T:
        """The result of ``future``, or BrokerError as soon as the connection ends."""
        either: list[asyncio.Future[Any]] = [future, self._closed]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        future.cancel()
        raise BrokerError(f"connection to {self.name} {self._error or 'closed'}")

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise BrokerError(f"connection to {self.name} {self._error or 'closed'}")
        self._transport.write(data)

    def _new_packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self._pubacks and self._next_id not in self._subacks:
                return self._next_id

    def _fail(self, why: str) -> None:
        self._end(why)
        if self._transport is not None:
            self._transport.abort()

    def _end(self, why: str) -> None:
        if self._error is None:
            self._error = why
        if not self._closed.done():
            self._closed.set_result(None)
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(BrokerError(f"connection to {self.name} {why}"))


async def hold_link(
    broker: BrokerAddress,
    client_id: str,
    filters: tuple[tuple[str, int], ...],
    on_message: OnMessage,
    *,
    on_up: Callable[[BrokerLink, int], None],
    on_down: Callable[[BrokerLink], None],
) -> NoReturn:
    """Hold a subscribed connection to ``broker`` for good: reconnect with jittered
    back-off whenever it ends. ``on_up`` learns of each session (and how many there have
    been), ``on_down`` of its end."""
    # a head-end is one client a broker: retrying every two seconds costs nothing, and it
    # must be subscribed again before the meters, whose pushes a restarted broker without
    # the head-end's session would drop (a time-scaled run counts ten seconds in minutes)
    backoff = Backoff(random.Random(), base=0.2, cap=2.0)
    sessions = 0
    while True:
        try:
            link = await BrokerLink.open(broker, client_id, on_message, keepalive_s=KEEPALIVE_S)
            try:
                await link.subscribe(filters)
                sessions += 1
                backoff.reset()
                on_up(link, sessions)
                await link.serve(KEEPALIVE_S)
            finally:
                on_down(link)
                link.close()
        except BrokerError as exc:
            delay = backoff.next_delay()
            log.warning(
                "hes_broker_lost",
                broker=str(broker),
                client_id=client_id,
                error=str(exc),
                retry_in_s=round(delay, 2),
            )
            await asyncio.sleep(delay)


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)
