"""One meter's MQTT 3.1.1 connection as one bare ``asyncio.Protocol`` (a ``MeterLink``).

Built for a hundred thousand idle meters in one process: a slotted object with no task,
no timer and no buffer while idle. The link is its own async context manager (connect
and CONNACK on enter, goodbye on exit) and its own ``receive()`` iterator (each step is
one future), so an open link is this object, its transport and its socket. The packets
and their acknowledgements are :class:`~hes_sim.meter_sim.lean.wire.MqttWire`'s.

- up: ``send`` publishes QoS 1 and waits for the PUBACK, at most ``max_inflight`` at once;
- down: the down topic is subscribed at QoS 1 on connect; frames wait in a queue of at
  most ``max_queued`` (then reading pauses: back-pressure to the broker), each PUBACKed
  when the meter takes it;
- keep-alive: the factory's shared :class:`KeepAliveScheduler` (PINGREQ only when idle);
- ``abandon`` (power lost) drops the socket without DISCONNECT, so the broker publishes
  the retained ``offline`` will; a clean exit publishes ``offline`` and says DISCONNECT;
- anything the broker sends that is not valid MQTT, or not expected, ends this link
  (logged and counted, the next use raises BrokerError); it never reaches the fleet.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import structlog

from hes_sim.errors import BrokerError
from hes_sim.meter_sim.lean.context import LinkContext
from hes_sim.meter_sim.lean.wire import MqttWire
from hes_sim.protocols.mqtt_codec import (
    DISCONNECT,
    SUBACK_FAILURE,
    ConnAck,
    Connect,
    ConnectReturnCode,
    SubAck,
    Will,
    encode_connect,
    encode_subscribe,
)
from hes_sim.protocols.topics import Channel, MeterState, topic

log = structlog.get_logger(__name__)


class LeanLink(MqttWire):
    """A :class:`MeterLink` and its own async context manager and ``receive()`` iterator."""

    __slots__ = ("abandoned", "connect_wall_s")

    def __init__(self, meter_id: str, context: LinkContext) -> None:
        topic(meter_id, Channel.UP)  # refuses a meter id that cannot be a topic level
        super().__init__(meter_id, context)
        self.connect_wall_s = 0.0
        self.abandoned = False

    # ------------------------------------------------------------ MeterLink

    async def send(self, frame: bytes) -> None:
        await self._publish(topic(self.meter_id, Channel.UP), frame, retain=False)

    def receive(self) -> LeanLink:
        return self  # an async iterator of down frames (MqttWire.__anext__)

    def abandon(self) -> None:
        self.abandoned = True
        self._abort()

    # ------------------------------------------------------------ connect and close

    async def __aenter__(self) -> LeanLink:
        ctx = self._ctx
        timeout_s = ctx.options.connect_timeout_s
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                await ctx.dialer.connect(self)
                connack = await self._handshake()
        except TimeoutError:
            self._abort()
            ctx.stats.connect_failures += 1
            raise BrokerError(
                f"{self.meter_id}: no CONNACK from {ctx.broker} within {timeout_s:g} s"
            ) from None
        except (OSError, BrokerError) as exc:
            self._abort()
            ctx.stats.connect_failures += 1
            raise BrokerError(f"{self.meter_id} could not connect to {ctx.broker}: {exc}") from exc
        except BaseException:
            self._abort()  # cancelled: the socket is not left behind
            raise
        if connack.return_code != ConnectReturnCode.ACCEPTED:
            self._abort()
            ctx.stats.refused += 1
            raise BrokerError(
                f"{self.meter_id} refused by {ctx.broker}: {_refusal(connack.return_code)}"
            )
        self.connect_wall_s = time.perf_counter() - started
        ctx.stats.connects += 1
        ctx.keepalive.add(self)
        self._scheduled = True
        try:
            await self._subscribe_and_announce()
        except BaseException:
            self._abort()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or self.abandoned or self._ended:
            # failing or cancelled: drop the socket, and the will tells the truth
            self._abort()
            return
        try:
            # a clean goodbye does not fire the last will, so say it ourselves
            offline = MeterState.OFFLINE.encode()
            await self._publish(topic(self.meter_id, Channel.STATE), offline, retain=True)
        finally:
            await self._close_cleanly()

    async def _handshake(self) -> ConnAck:
        state = topic(self.meter_id, Channel.STATE)
        connect = Connect(
            self.meter_id,
            self._ctx.options.keepalive_s,
            clean_session=True,
            will=Will(state, MeterState.OFFLINE.encode(), qos=1, retain=True),
        )
        self._connack = asyncio.get_running_loop().create_future()
        self._write(encode_connect(connect))
        try:
            return await self._connack
        finally:
            self._connack = None

    async def _subscribe_and_announce(self) -> None:
        """Subscribe to the down topic and publish ``online``, both in flight at once."""
        down = topic(self.meter_id, Channel.DOWN)
        self._suback = asyncio.get_running_loop().create_future()
        subscribe_id = self._new_packet_id()
        self._write(encode_subscribe(subscribe_id, ((down, 1),)))
        state = topic(self.meter_id, Channel.STATE)
        online_id, online = self._start_publish(state, MeterState.ONLINE.encode(), retain=True)
        try:
            async with asyncio.timeout(self._ctx.options.ack_timeout_s):
                _check_granted(await self._suback, subscribe_id, down)
        except TimeoutError:
            _forget(online)
            raise BrokerError(f"{self.meter_id}: no SUBACK for {down}") from None
        except BaseException:
            _forget(online)  # its outcome no longer matters, and must not be logged as lost
            raise
        finally:
            self._suback = None
        await self._until_acked(state, online_id, online)

    async def _close_cleanly(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if not self._ended:
            transport.write(DISCONNECT)
            transport.close()  # after what is buffered has gone out
            self._end()
        self._closed = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._ctx.options.ack_timeout_s):
                await self._closed
        except TimeoutError:
            log.warning("lean_link_close_timeout", meter_id=self.meter_id)
        finally:
            if self._transport is not None:
                self._transport.abort()  # a peer that stopped reading does not keep it open


def _check_granted(suback: SubAck, packet_id: int, down: str) -> None:
    if suback.packet_id != packet_id or SUBACK_FAILURE in suback.return_codes:
        raise BrokerError(f"subscription to {down} refused")


def _forget(future: asyncio.Future[None]) -> None:
    if future.done():
        if not future.cancelled():
            future.exception()  # retrieved: asyncio does not report it at collection
    else:
        future.cancel()


def _refusal(code: int) -> str:
    try:
        return f"{ConnectReturnCode(code).name.lower()} ({code})"
    except ValueError:
        return f"return code {code}"
