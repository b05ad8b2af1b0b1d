"""Each request of an association carries its own invoke id, and an answer is taken only
for the request whose invoke id it echoes: an answer that comes after its request was
given up on is refused, not read as the answer to the next request (the real DLMS server
in memory, behind a ciphered HLS association)."""

from __future__ import annotations

import pytest

from hes_sim.hes.commands.executors import CLOCK
from hes_sim.hes.commands.relay_switch import RELAY_OUTPUT_STATE
from hes_sim.hes.dlms_client import (
    INVOKE_FLAGS,
    INVOKE_IDS,
    ClientAssociation,
    ClientCounter,
    LateAnswerError,
)
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.protocols import security, xdlms
from tests.unit.test_profile_read import KEYRING, InMemoryMeter


def test_each_request_takes_the_next_invoke_id_in_turn():
    title = KEYRING.system_title_for("SP0000007")
    association = ClientAssociation(title, title, KEYRING.keys_for("SP0000007"), ClientCounter())
    ids = [association.next_invoke_id() for _ in range(INVOKE_IDS + 1)]
    assert len(set(ids[:INVOKE_IDS])) == INVOKE_IDS  # all sixteen before any comes again
    assert ids[INVOKE_IDS] == ids[0]
    assert all(i & 0xF0 == INVOKE_FLAGS for i in ids)  # priority high, confirmed


def plain_invoke_id(meter: InMemoryMeter, answer: bytes) -> int:
    keys = KEYRING.keys_for(meter.meter.meter_id)
    title = KEYRING.system_title_for(meter.meter.meter_id)
    plain = security.decrypt(security.parse(answer), title, keys)
    response = xdlms.decode(plain)
    assert not isinstance(response, xdlms.ExceptionResponse | xdlms.Request)
    return response.invoke_id


async def test_the_meter_echoes_each_requests_own_invoke_id():
    meter = InMemoryMeter(MeterKind.SINGLE_PHASE, intervals=1)
    async with meter.connected() as connection:
        before = len(meter.answers)
        await connection.get(CLOCK)
        await connection.get(RELAY_OUTPUT_STATE)
        first, second = (plain_invoke_id(meter, a) for a in meter.answers[before:])
    assert first != second


async def test_a_late_answer_is_refused_not_taken_for_the_next_requests():
    meter = InMemoryMeter(MeterKind.SINGLE_PHASE, intervals=1)
    withheld: list[bytes] = []
    answer_late = False

    async def lossy_exchange(meter_id: str, apdu: bytes) -> bytes:
        answer = await meter.exchange(meter_id, apdu)
        if not answer_late:
            return answer
        if not withheld:
            withheld.append(answer)  # the answer to this request is held up in the network
            raise TimeoutError
        return withheld.pop()  # ... and comes while the next request waits

    late: list[str] = []
    meter.sessions._exchange = lossy_exchange  # the link under the session, made lossy
    meter.sessions._on_late = late.append  # as the head-end counts them
    async with meter.connected() as connection:
        answer_late = True
        with pytest.raises(TimeoutError):
            await connection.get(CLOCK)
        assert late == []
        with pytest.raises(LateAnswerError, match="late answer"):
            await connection.get(RELAY_OUTPUT_STATE)  # answered by the clock's answer
        assert late == [meter.meter.meter_id]  # counted as a late answer
        answer_late = False
        state = await connection.get(RELAY_OUTPUT_STATE)  # the association goes on
    assert state.value in (True, False)
    assert late == [meter.meter.meter_id]
