"""A meter link that loses chosen pushes on the wire.

Wraps the links of a real :data:`LinkFactory`: the meter sends as usual and believes
every frame went out (it still records the interval in its profile and moves on), but
the DATA-NOTIFICATIONs of one meter whose block-load entry falls in a window never reach
the broker. Answers to the head-end's requests and event pushes always pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.transport import LinkFactory, MeterLink
from hes_sim.protocols import frame, push, security, wrapper
from hes_sim.protocols.block_load import BlockLoadEntry


class LossyPushes:
    """Drops ``meter_id``'s block-load pushes stamped in [first_end, last_end]."""

    def __init__(
        self, keyring: FleetKeyring, meter_id: str, first_end: float, last_end: float
    ) -> None:
        self._keyring = keyring
        self.meter_id = meter_id
        self.first_end = first_end
        self.last_end = last_end
        self.dropped: list[float] = []  # interval ends of the pushes lost, in order
        self.passed: list[float] = []  # interval ends of the meter's pushes sent on

    def factory(self, inner: LinkFactory) -> LinkFactory:
        @asynccontextmanager
        async def open_link(meter_id: str) -> AsyncIterator[MeterLink]:
            async with inner(meter_id) as link:
                yield link if meter_id != self.meter_id else _LossyLink(link, self)

        return open_link

    def lose(self, data: bytes) -> bool:
        """True when this frame is a block-load push of the window (and so is lost)."""
        header, apdu = wrapper.unwrap(data)
        if header.destination_wport != wrapper.HES_WPORT:
            return False  # an answer to the head-end's client, not a push
        if frame.is_ciphered(apdu):
            title = self._keyring.system_title_for(self.meter_id)
            apdu = security.decrypt(
                security.parse(apdu), title, self._keyring.keys_for(self.meter_id)
            )
        entry = push.decode(apdu).entry
        if not isinstance(entry, BlockLoadEntry):
            return False
        end = entry.clock.timestamp()
        if self.first_end <= end <= self.last_end:
            self.dropped.append(end)
            return True
        self.passed.append(end)
        return False


class _LossyLink:
    def __init__(self, link: MeterLink, losses: LossyPushes) -> None:
        self._link = link
        self._losses = losses
        self.connect_wall_s = link.connect_wall_s

    async def send(self, data: bytes) -> None:
        if not self._losses.lose(data):
            await self._link.send(data)

    def receive(self) -> AsyncIterator[bytes]:
        return self._link.receive()

    def abandon(self) -> None:
        self._link.abandon()
