"""One virtual meter on a loopback TCP port, speaking the IEC 62056-47 wrapper (port 4059
style), so that any DLMS client can associate with it and read it.

Each connection gets its own association; the meter (its registers, relay, buffers and
counters) is shared by all of them and keeps measuring on the simulated clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import CodecError
from hes_sim.meter_sim.cosem.objects import object_model
from hes_sim.meter_sim.cosem.server import DlmsSession, Identity
from hes_sim.meter_sim.meter import VirtualMeter
from hes_sim.protocols import wrapper

log = structlog.get_logger(__name__)
LOOPBACK = "127.0.0.1"
IDLE_TIMEOUT_S = 120.0  # a silent client is dropped, as a meter's inactivity timeout does


class MeterGateway:
    def __init__(
        self, meter: VirtualMeter, identity: Identity, clock: SimClock, port: int = 0
    ) -> None:
        self.meter = meter
        self._identity = identity
        self._clock = clock
        self._port = port
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("gateway not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self._port)
        self._ticker = asyncio.create_task(self._measure(), name="gateway:measure")
        log.info("gateway_listening", meter_id=self.meter.meter_id, port=self.port)
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in (self._ticker, *self._connections):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._ticker, *self._connections) if t is not None),
            return_exceptions=True,
        )
        if self._server is not None:
            await self._server.wait_closed()

    def fill_history(self, since: float) -> None:
        """Close every interval from ``since`` up to now, as if the meter had been running."""
        interval = self.meter.interval_s
        end = (since // interval + 1) * interval
        while end <= self._clock.now():
            self.meter.close_interval(end, interval)
            end += interval

    async def _measure(self) -> None:
        interval = self.meter.interval_s
        while True:
            last = self.meter.last_closed_end or (self._clock.now() // interval) * interval
            await self._clock.sleep_until(last + interval)
            self.meter.close_interval(last + interval, interval)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        session = DlmsSession(self.meter, object_model(self.meter.kind), self._identity)
        peer = writer.get_extra_info("peername")
        log.info("gateway_client_connected", meter_id=self.meter.meter_id, peer=str(peer))
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    header = await reader.readexactly(wrapper.HEADER_SIZE)
                    length = int.from_bytes(header[6:8], "big")
                    frame = header + await reader.readexactly(length)
                try:
                    wrapped, apdu = wrapper.unwrap(frame)
                except CodecError as exc:
                    log.warning("gateway_bad_frame", meter_id=self.meter.meter_id, error=str(exc))
                    break
                answer = session.handle(apdu, self._clock.now())
                if answer is not None:
                    writer.write(
                        wrapper.wrap(answer, wrapped.destination_wport, wrapped.source_wport)
                    )
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass  # the client went away or fell silent
        finally:
            log.info("gateway_client_gone", meter_id=self.meter.meter_id, refused=session.refused)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)
