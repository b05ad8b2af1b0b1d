"""Opening a link's TCP connection, optionally spread over several loopback sources.

Tens of thousands of connections from one source address to one broker make the
kernel's search for a free ephemeral port slow (seconds of CPU past ~14k here), and the
port range caps them near 28k. Each extra source address (127.0.0.x: all of 127/8 is
loopback on Linux) has a port range of its own. ``IP_BIND_ADDRESS_NO_PORT`` lets the
kernel pick the port at connect time, by the whole 4-tuple, instead of at bind time,
where it would look for a port unused by every connection of that source.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from collections.abc import Sequence

from hes_sim.broker_address import BrokerAddress

# Linux's value; Python exposes the name from 3.12 on
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class Dialer:
    """Connects sockets to one broker, each from the next source address in turn."""

    def __init__(self, broker: BrokerAddress, source_hosts: Sequence[str] = ()) -> None:
        for host in source_hosts:
            address = ipaddress.ip_address(host)  # ValueError names a bad one
            if not address.is_loopback:
                raise ValueError(f"source address {host} is not a loopback address")
        self.broker = broker
        self._sources = tuple(source_hosts)
        self._next = 0
        self._target: tuple[socket.AddressFamily, tuple[str, int]] | None = None

    async def connect(self, protocol: asyncio.Protocol) -> asyncio.Transport:
        """A transport whose protocol is ``protocol``; raises OSError if it cannot."""
        loop = asyncio.get_running_loop()
        family, sockaddr = self._target or await self._resolve(loop)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            # asyncio sets TCP_NODELAY only on sockets it makes itself: without it a
            # meter's small writes (a PUBACK, then its answer) wait on delayed ACKs, ~40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._sources:
                source = self._sources[self._next % len(self._sources)]
                self._next += 1
                if sys.platform.startswith("linux"):
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            await loop.sock_connect(sock, sockaddr)
            transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
        except BaseException:
            sock.close()  # the transport never took it: cancelled or failed, it is ours
            raise
        return transport

    async def _resolve(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[socket.AddressFamily, tuple[str, int]]:
        """The broker's address, looked up once for all links (an IP needs no lookup)."""
        host, port = self.broker.host, self.broker.port
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"{host} has no address") from None
            family, _type, _proto, _name, sockaddr = infos[0]
            self._target = family, (str(sockaddr[0]), int(sockaddr[1]))
        else:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            self._target = family, (host, port)
        return self._target
