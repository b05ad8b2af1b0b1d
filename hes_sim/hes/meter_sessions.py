"""Talking to one meter from the head-end: associate (HLS GMAC), GET / SET / ACTION,
release, over whatever carries APDUs to the meter and back (``Exchange``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol

import structlog

from hes_sim.errors import HesSimError
from hes_sim.hes.dlms_client import (
    ClientAssociation,
    ClientCounter,
    LateAnswerError,
    MeterServiceError,
)
from hes_sim.keyring import HES_SYSTEM_TITLE, FleetKeyring
from hes_sim.protocols import axdr, xdlms
from hes_sim.protocols.axdr import Data
from hes_sim.protocols.xdlms import DataAccessResult, Reference, Selection

log = structlog.get_logger(__name__)
Exchange = Callable[[str, bytes], Awaitable[bytes]]  # meter id, request APDU -> answer APDU
MAX_BLOCKS = 10_000


@contextmanager
def counting_late(meter_id: str, on_late: Callable[[str], None] | None) -> Iterator[None]:
    """An answer the head-end's matching took for this request's, refused by its invoke
    id, is counted as late (as those the matching drops itself); the attempt fails."""
    try:
        yield
    except LateAnswerError:
        if on_late is not None:
            on_late(meter_id)
        raise


class MeterConnection:
    def __init__(
        self,
        meter_id: str,
        association: ClientAssociation,
        exchange: Exchange,
        on_late: Callable[[str], None] | None = None,
    ) -> None:
        self.meter_id = meter_id
        self._association = association
        self._exchange = exchange
        self._on_late = on_late

    async def _ask(self, request: xdlms.Request) -> xdlms.Response:
        answer = await self._exchange(self.meter_id, self._association.protect(request))
        with counting_late(self.meter_id, self._on_late):
            return self._association.unprotect(answer, request)

    async def get(self, ref: Reference, selection: Selection | None = None) -> Data:
        invoke_id = self._association.next_invoke_id()  # the blocks of one GET share it
        response = await self._ask(xdlms.GetRequest(invoke_id, ref, selection))
        if isinstance(response, xdlms.GetResponse):
            if isinstance(response.result, DataAccessResult):
                raise MeterServiceError(f"GET {ref} refused: {response.result.name}")
            return response.result
        raw = b""
        for _ in range(MAX_BLOCKS):
            if not isinstance(response, xdlms.GetBlockResponse):
                raise MeterServiceError(f"unexpected answer to GET: {response}")
            if isinstance(response.result, DataAccessResult):
                raise MeterServiceError(f"GET {ref} block refused: {response.result.name}")
            raw += response.result
            if response.last:
                return axdr.decode(raw)
            response = await self._ask(xdlms.GetNextRequest(invoke_id, response.block_number))
        raise MeterServiceError(f"GET {ref} did not end within {MAX_BLOCKS} blocks")

    async def set(self, ref: Reference, value: Data) -> DataAccessResult:
        response = await self._ask(xdlms.SetRequest(self._association.next_invoke_id(), ref, value))
        if not isinstance(response, xdlms.SetResponse):
            raise MeterServiceError(f"unexpected answer to SET: {response}")
        return response.result

    async def action(self, ref: Reference, parameters: Data | None = None) -> xdlms.ActionResponse:
        request = xdlms.ActionRequest(self._association.next_invoke_id(), ref, parameters)
        response = await self._ask(request)
        if not isinstance(response, xdlms.ActionResponse):
            raise MeterServiceError(f"unexpected answer to ACTION: {response}")
        return response


class CounterReservation(Protocol):
    """Where the head-end's counter lives between restarts (see counter_store)."""

    counter: ClientCounter

    async def reserve(self) -> None: ...


class MeterSessions:
    def __init__(
        self,
        exchange: Exchange,
        keyring: FleetKeyring,
        counter: CounterReservation | None = None,
        *,
        on_late: Callable[[str], None] | None = None,
    ) -> None:
        """``on_late``: told the meter of each answer refused as late by its invoke id."""
        self._exchange = exchange
        self._keyring = keyring
        self._on_late = on_late
        self._reservation = counter
        self.counter = counter.counter if counter is not None else ClientCounter()

    @asynccontextmanager
    async def associate(self, meter_id: str) -> AsyncIterator[MeterConnection]:
        if self._reservation is not None:
            await self._reservation.reserve()
        association = ClientAssociation(
            HES_SYSTEM_TITLE,
            self._keyring.system_title_for(meter_id),
            self._keyring.keys_for(meter_id),
            self.counter,
        )
        hls = association.on_aare(await self._exchange(meter_id, association.aarq()))
        reply = await self._exchange(meter_id, hls)
        with counting_late(meter_id, self._on_late):
            association.on_hls_reply(reply)
        try:
            yield MeterConnection(meter_id, association, self._exchange, self._on_late)
        finally:
            # a courtesy: the meter ends a silent association on its own
            try:
                await self._exchange(meter_id, association.release())
            except (TimeoutError, HesSimError) as exc:
                log.info("release_unanswered", meter_id=meter_id, error=str(exc))
