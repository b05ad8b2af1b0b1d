"""The meter's link to the head-end: frames (bytes) up, frames down.

The meter runtime only sees :class:`MeterLink`; the MQTT client behind it is a detail.
The 4G modem model and a lean transport for very large fleets plug in here by providing
another :data:`LinkFactory`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol, runtime_checkable

import aiomqtt

from hes_sim.broker_address import BrokerAddress
from hes_sim.errors import BrokerError
from hes_sim.protocols.topics import Channel, MeterState, topic


class MeterLink(Protocol):
    """An open connection of one meter."""

    connect_wall_s: float

    async def send(self, frame: bytes) -> None:
        """Send one frame on the meter's up channel; raises BrokerError if the link is gone."""
        ...

    def receive(self) -> AsyncIterator[bytes]:
        """Frames arriving on the meter's down channel."""
        ...

    def abandon(self) -> None:
        """The meter lost power: leave without a goodbye (no offline state, no waiting)."""
        ...


LinkFactory = Callable[[str], AbstractAsyncContextManager[MeterLink]]


class LinkListener(Protocol):
    def link_event(self) -> None:
        """A down frame is waiting, or the link ended: ``take`` says which. It must not
        block (start work, don't do it); it is called from the link's own callbacks."""
        ...


@runtime_checkable
class ListeningLink(MeterLink, Protocol):
    """A link that tells its meter when a frame came, instead of being read by a task
    that waits on ``receive()``: what lets an idle meter hold no task at all."""

    def listen(self, listener: LinkListener | None) -> None:
        """From now on tell ``listener`` of each frame and of the link's end (None: stop)."""
        ...

    def take(self) -> bytes | None:
        """The next waiting down frame, None if there is none now (or the meter closed
        the link); raises BrokerError if the link was lost."""
        ...


class AiomqttMeterLink:
    def __init__(self, client: aiomqtt.Client, meter_id: str, connect_wall_s: float) -> None:
        self._client = client
        self._up = topic(meter_id, Channel.UP)
        self._down = topic(meter_id, Channel.DOWN)
        self.connect_wall_s = connect_wall_s
        self.abandoned = False

    async def send(self, frame: bytes) -> None:
        try:
            await self._client.publish(self._up, frame, qos=1)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"publish on {self._up} failed: {exc}") from exc

    async def receive(self) -> AsyncIterator[bytes]:
        try:
            async for message in self._client.messages:
                if isinstance(message.payload, bytes | bytearray):
                    yield bytes(message.payload)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"link on {self._down} lost: {exc}") from exc

    def abandon(self) -> None:
        self.abandoned = True


def aiomqtt_link_factory(
    broker: BrokerAddress, keepalive_s: int = 60, timeout_s: float = 30.0
) -> LinkFactory:
    """Links over one aiomqtt client per meter, with ``offline`` as the retained last will.

    ``timeout_s`` (wall) bounds each publish's wait for its acknowledgement: on a link
    that went silent it is what ends the wait, with the keep-alive that ends the link.
    """

    @asynccontextmanager
    async def open_link(meter_id: str) -> AsyncIterator[MeterLink]:
        state = topic(meter_id, Channel.STATE)
        will = aiomqtt.Will(state, MeterState.OFFLINE.encode(), qos=1, retain=True)
        client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=meter_id,
            will=will,
            keepalive=keepalive_s,
            protocol=aiomqtt.ProtocolVersion.V311,
            timeout=timeout_s,
        )
        started = time.perf_counter()
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"{meter_id} could not connect to {broker}: {exc}") from exc
        try:
            elapsed = time.perf_counter() - started
            # subscribed before saying "online": a request sent on hearing it is not lost
            await client.subscribe(topic(meter_id, Channel.DOWN), qos=1)
            await client.publish(state, MeterState.ONLINE.encode(), qos=1, retain=True)
            link = AiomqttMeterLink(client, meter_id, elapsed)
            yield link
            if not link.abandoned:
                # a clean goodbye does not fire the last will, so say it ourselves
                await client.publish(state, MeterState.OFFLINE.encode(), qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"{meter_id} lost its link: {exc}") from exc
        finally:
            # the connection may already be gone; then there is nothing left to close
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    return open_link
