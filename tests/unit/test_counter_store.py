"""A restarted head-end keeps its DLMS invocation counter rising, so meters accept it."""

from datetime import datetime, timedelta, timezone

import pytest

from hes_sim.hes.counter_store import BLOCK, PersistentCounter
from hes_sim.hes.dlms_client import AssociationError
from hes_sim.hes.meter_sessions import MeterSessions
from hes_sim.hes.store_factory import open_store
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.cosem.objects import object_model
from hes_sim.meter_sim.cosem.server import DlmsSession, Identity
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.protocols.xdlms import Reference

IST = timezone(timedelta(hours=5, minutes=30))
NOW = datetime(2026, 11, 28, 12, tzinfo=IST).timestamp()
KEYRING = FleetKeyring(b"counter store test fleet secret")
RELAY_STATE = Reference(70, bytes([0, 0, 96, 3, 10, 255]), 2)


def meter_server() -> DlmsSession:
    meter = VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 1, IST)
    identity = Identity(KEYRING.system_title_for("SP0000001"), KEYRING.keys_for("SP0000001"))
    return DlmsSession(meter, object_model(MeterKind.SINGLE_PHASE), identity)


def exchange_with(server: DlmsSession):
    async def exchange(_meter_id: str, apdu: bytes) -> bytes:
        answer = server.handle(apdu, NOW)
        assert answer is not None
        return answer

    return exchange


async def read_relay(sessions: MeterSessions) -> bool:
    async with sessions.associate("SP0000001") as meter:
        return (await meter.get(RELAY_STATE)).value is True


async def test_a_restarted_head_end_is_accepted(store_location: str):
    server = meter_server()
    for _life in range(3):  # three head-end lives over the same store and the same meter
        async with open_store(store_location) as store:
            counter = PersistentCounter(store)
            await counter.load()
            assert await read_relay(MeterSessions(exchange_with(server), KEYRING, counter))
    assert server.refused == 0
    async with open_store(store_location) as store:
        counter = PersistentCounter(store)
        await counter.load()
        assert counter.counter.value >= 3 * BLOCK  # each life started beyond the last reserve


async def test_without_a_stored_counter_the_meter_refuses_a_restarted_head_end():
    server = meter_server()
    assert await read_relay(MeterSessions(exchange_with(server), KEYRING))
    with pytest.raises(AssociationError):
        await read_relay(MeterSessions(exchange_with(server), KEYRING))  # counts from 1 again
