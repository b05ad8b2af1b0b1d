"""The loopback proxy every meter's MQTT bytes pass through, so that the simulated 4G
link acts on the real traffic, keep-alives included.

Meters connect to :attr:`LinkProxy.address` instead of the broker. For each connection
the proxy reads the MQTT CONNECT (the client id is the meter id), asks the
:class:`LinkModel` whether and when the meter attaches, opens the broker connection, and
relays each chunk after the model's transit delay. A chunk the model loses turns the
connection into a black hole: nothing passes, nothing is closed, and the broker learns of
it only through keep-alive expiry, when it publishes the meter's last will.

An async context manager owning a TaskGroup with one named task per connection
(``proxy:link:<meter>``) that walks it through attach, relay and release; the bytes
themselves move in protocol callbacks (:mod:`relay`). Shutdown is two-phase: stop
accepting and close every connection, then cancel what has not ended after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections import Counter
from types import TracebackType
from typing import Self

import structlog

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import AttachRejected, EventBus, LinkAttached, LinkBlackHoled
from hes_sim.meter_sim.network.link_model import LinkModel
from hes_sim.meter_sim.network.mqtt_connect import (
    MAX_CONNECT_SIZE,
    ConnectPacket,
    ConnectPacketError,
)
from hes_sim.meter_sim.network.relay import Link, Side, SideProtocol

log = structlog.get_logger(__name__)

BACKLOG = 1024  # a fleet reconnecting after an outage arrives all at once


class LinkProxy:
    """``async with LinkProxy(broker, model, clock, bus) as proxy``: meters connect to
    ``proxy.address``."""

    def __init__(
        self,
        upstream: BrokerAddress,
        model: LinkModel,
        clock: SimClock,
        bus: EventBus,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        handshake_timeout_s: float = 10.0,  # wall: the CONNECT crosses loopback only
        upstream_timeout_s: float = 10.0,  # wall
        shutdown_grace_s: float = 5.0,
        max_connect_size: int = MAX_CONNECT_SIZE,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the link proxy listens on loopback only, not {host!r}")
        self._upstream = upstream
        self._model = model
        self._clock = clock
        self._bus = bus
        self._host = host
        self._port = port
        self._handshake_timeout_s = handshake_timeout_s
        self._upstream_timeout_s = upstream_timeout_s
        self._grace_s = shutdown_grace_s
        self._max_connect_size = max_connect_size
        self._server: asyncio.Server | None = None
        self._group = asyncio.TaskGroup()
        self._tasks: set[asyncio.Task[None]] = set()
        self._links: set[Link] = set()
        self._by_meter: dict[str, set[Link]] = {}
        self._closing = False
        self._accepted = 0
        # connections closed for a bad, oversize, late or missing CONNECT (reasons by label)
        self.bad_handshakes = 0
        self.bad_handshake_reasons: Counter[str] = Counter()
        self.upstream_failures = 0  # admitted connections the broker did not take
        self.address = BrokerAddress(host, port)

    @property
    def links_open(self) -> int:
        """Meter connections the proxy holds, in any state."""
        return len(self._links)

    def links_of(self, meter_id: str) -> int:
        return len(self._by_meter.get(meter_id, ()))

    async def __aenter__(self) -> Self:
        await self._group.__aenter__()
        try:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                self._new_protocol, self._host, self._port, backlog=BACKLOG
            )
        except BaseException as exc:
            await self._group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        port = int(self._server.sockets[0].getsockname()[1])
        self.address = BrokerAddress(self._host, port)
        log.info("proxy_listening", address=str(self.address), upstream=str(self._upstream))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _done, still_running = await asyncio.wait(pending, timeout=self._grace_s)
            if still_running:
                log.warning("proxy_shutdown_cancelling", links=len(still_running))
            for task in still_running:
                task.cancel()
        await self._group.__aexit__(exc_type, exc, tb)
        if self._server is not None:
            await self._server.wait_closed()
        log.info("proxy_stopped", accepted=self._accepted, bad_handshakes=self.bad_handshakes)

    def cut(self, meter_id: str) -> int:
        """Turn every open connection of the meter into a black hole at once (a sudden
        power loss: its next bytes, a clean DISCONNECT included, vanish). Returns how many."""
        links = list(self._by_meter.get(meter_id, ()))
        for link in links:
            link.black_hole()
        return len(links)

    # -- LinkHooks --------------------------------------------------------------------------

    def link_opened(self, link: Link) -> None:
        if self._closing:
            link.abort()  # accepted in the last moment before the listener closed
            return
        self._accepted += 1
        self._links.add(link)
        task = self._group.create_task(self._serve(link), name=f"proxy:link:{link.peer}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def link_black_holed(self, link: Link) -> None:
        log.info("proxy_link_black_holed", meter_id=link.meter_id)
        self._bus.emit(LinkBlackHoled(link.meter_id))

    # -- one connection ---------------------------------------------------------------------

    def _new_protocol(self) -> SideProtocol:
        return SideProtocol(
            Link(self._model, self._clock, self, self._max_connect_size), Side.METER
        )

    async def _serve(self, link: Link) -> None:
        accepted_at = self._clock.now()
        admitted = False
        try:
            connect = await self._handshake(link)
            if connect is None:
                return
            meter_id = link.meter_id = connect.client_id
            task = asyncio.current_task()
            if task is not None:
                task.set_name(f"proxy:link:{meter_id}")
            self._by_meter.setdefault(meter_id, set()).add(link)
            admission = self._model.admit(meter_id, self._clock.now())
            admitted = admission.accepted
            await self._until_meter_gone(link, self._clock.wall_seconds(admission.delay_s))
            if not admission.accepted:
                link.abort()  # a modem that cannot get a bearer: the connection just fails
                reason = str(admission.reason) if admission.reason else "unknown"
                log.info("proxy_attach_rejected", meter_id=meter_id, reason=reason)
                self._bus.emit(AttachRejected(meter_id, reason))
                return
            if link.meter is not None and not link.black_holed and not link.shutting_down:
                if not await self._open_upstream(link):
                    return
                attach_s = self._clock.now() - accepted_at
                log.debug("proxy_link_attached", meter_id=meter_id, attach_s=round(attach_s, 3))
                self._bus.emit(LinkAttached(meter_id, attach_s))
                link.start_relay()
            await link.ended.wait()
        except Exception:  # one link's failure (a model bug, say) must not stop the others
            log.exception("proxy_link_failed", meter_id=link.meter_id, peer=link.peer)
        finally:
            link.abort()
            self._forget(link)
            if admitted:
                self._model.released(link.meter_id, self._clock.now())

    async def _handshake(self, link: Link) -> ConnectPacket | None:
        reason = ""
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                connect = await link.connect
        except TimeoutError:
            reason = "timeout"
        except ConnectPacketError as exc:
            reason = exc.reason
        except ConnectionError:
            reason = "closed"
        else:
            if connect.client_id:
                return connect
            reason = "no_client_id"  # the client id is the meter id: it cannot be left out
        if link.shutting_down:
            return None
        self.bad_handshakes += 1
        self.bad_handshake_reasons[reason] += 1
        log.warning("proxy_bad_handshake", peer=link.peer, reason=reason)
        link.abort()
        return None

    async def _until_meter_gone(self, link: Link, wall_s: float) -> None:
        """Wait out the attach delay, or less if the meter gives up (or we shut down)."""
        if wall_s <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wall_s):
                await link.meter_gone.wait()

    async def _open_upstream(self, link: Link) -> bool:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._upstream_timeout_s):
                await loop.create_connection(
                    lambda: SideProtocol(link, Side.BROKER),
                    self._upstream.host,
                    self._upstream.port,
                )
        except (OSError, TimeoutError) as exc:
            self.upstream_failures += 1
            log.warning(
                "proxy_upstream_failed",
                meter_id=link.meter_id,
                upstream=str(self._upstream),
                error=str(exc) or type(exc).__name__,
            )
            return False
        # the meter may have given up, or we may be stopping, while the broker answered
        return link.meter is not None and not link.shutting_down

    def _forget(self, link: Link) -> None:
        self._links.discard(link)
        links = self._by_meter.get(link.meter_id)
        if links is not None:
            links.discard(link)
            if not links:
                del self._by_meter[link.meter_id]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
