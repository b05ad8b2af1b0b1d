"""The meter's DLMS server against gurux-dlms's client, in memory."""

from datetime import datetime, timedelta, timezone

import pytest
from gurux_dlms import GXByteBuffer, GXDateTime, GXReplyData
from gurux_dlms.enums import DataType
from gurux_dlms.GXDLMSException import GXDLMSException
from gurux_dlms.GXDLMSExceptionResponse import GXDLMSExceptionResponse
from gurux_dlms.objects import (
    GXDLMSClock,
    GXDLMSData,
    GXDLMSDisconnectControl,
    GXDLMSLimiter,
    GXDLMSProfileGeneric,
    GXDLMSPushSetup,
    GXDLMSRegister,
)

from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.cosem.objects import object_model
from hes_sim.meter_sim.cosem.server import DlmsSession, Identity, SessionState
from hes_sim.meter_sim.event_logs import EventLog
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.meter_sim.relay import ControlState
from hes_sim.protocols import wrapper, xdlms
from tests.gurux_peer import GuruxSession, public_client, secure_client

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, tzinfo=IST).timestamp()
KEYRING = FleetKeyring(b"cosem server test fleet secret")
HES_TITLE = b"HES00001"


class Rig:
    def __init__(self, kind: MeterKind = MeterKind.SINGLE_PHASE, intervals: int = 10) -> None:
        self.meter = VirtualMeter.create("SP0000042", kind, 7, IST)
        for k in range(1, intervals + 1):
            self.meter.close_interval(START + 900 * k, 900)
        self.now = START + 900 * intervals + 30
        identity = Identity(
            KEYRING.system_title_for(self.meter.meter_id), KEYRING.keys_for(self.meter.meter_id)
        )
        self.session = DlmsSession(self.meter, object_model(kind), identity)
        self.sent: list[bytes] = []
        self.answers: list[bytes] = []  # APDUs the meter sent back

    def transport(self, frame: bytes) -> bytes:
        self.sent.append(frame)
        header, apdu = wrapper.unwrap(frame)
        answer = self.session.handle(apdu, self.now)
        assert answer is not None
        self.answers.append(answer)
        return wrapper.wrap(answer, header.destination_wport, header.source_wport)

    def hes(self, **kwargs) -> GuruxSession:
        client = secure_client(KEYRING.keys_for(self.meter.meter_id), HES_TITLE, **kwargs)
        return GuruxSession(client, self.transport)


def test_hls_association_then_clock_register_profile_range_and_relay():
    rig = Rig()
    hes = rig.hes()
    hes.associate()
    assert rig.session.state is SessionState.ASSOCIATED

    clock = GXDLMSClock("0.0.1.0.0.255")
    value = hes.read(clock, 2)
    assert isinstance(value, GXDateTime)
    assert value.value.timestamp() == pytest.approx(rig.now)

    energy = GXDLMSRegister("1.0.1.8.0.255")
    hes.read(energy, 3)
    assert hes.read(energy, 2) == rig.meter.registers.wh_import > 0

    profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
    hes.read(profile, 3)
    assert len(profile.captureObjects) == 7
    low = datetime.fromtimestamp(START + 900 * 4, tz=IST)
    high = datetime.fromtimestamp(START + 900 * 6, tz=IST)
    reply = hes.request(hes.client.readRowsByRange(profile, low, high))
    hes.client.updateValue(profile, 2, reply.value)
    assert [row[0].value.timestamp() for row in profile.buffer] == [
        START + 900 * k for k in (4, 5, 6)
    ]
    expected = rig.meter.entry_for(START + 900 * 5, 900)
    assert list(profile.buffer[1][1:]) == list(expected.values)

    relay = GXDLMSDisconnectControl("0.0.96.3.10.255")
    assert hes.request(relay.remoteDisconnect(hes.client)).error == 0
    assert rig.meter.relay.state is ControlState.DISCONNECTED
    assert hes.read(relay, 2) is False
    status_word = hes.read(GXDLMSData("0.0.94.91.18.255"), 2)
    assert str(status_word)[1] == "1"  # bit 1: load switch disconnected
    assert hes.request(relay.remoteReconnect(hes.client)).error == 0
    assert hes.read(relay, 2) is True
    control = rig.meter.events.entries(EventLog.CONTROL)
    assert [event.code for event in control] == [201, 202]
    hes.release()
    assert rig.session.state is SessionState.IDLE


def test_large_buffer_read_goes_in_blocks():
    rig = Rig(MeterKind.THREE_PHASE, intervals=40)
    hes = rig.hes(max_pdu=256)
    hes.associate()
    profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
    hes.read(profile, 3)
    before = hes.exchanges
    hes.read(profile, 2)
    assert len(profile.buffer) == 40
    assert hes.exchanges - before > 5  # one request, then GET-Request-Next per block
    assert max(len(apdu) for apdu in rig.answers) <= 256  # ciphered blocks fit the client's PDU


def test_set_push_setup_and_clock():
    rig = Rig()
    hes = rig.hes()
    hes.associate()
    push = GXDLMSPushSetup("0.0.25.9.0.255")
    push.randomisationStartInterval = 300
    assert hes.request(hes.client.write(push, 5)).error == 0
    assert rig.meter.push.randomisation_start_interval == 300
    clock = GXDLMSClock("0.0.1.0.0.255")
    clock.time = GXDateTime(datetime.fromtimestamp(rig.now + 120, tz=IST))
    assert hes.request(hes.client.write(clock, 2)).error == 0
    assert rig.meter.clock_offset_s == pytest.approx(120, abs=1)


def test_errors_get_dlms_result_codes():
    rig = Rig()
    hes = rig.hes()
    hes.associate()
    assert hes.read(GXDLMSData("0.0.96.99.99.255"), 2) == 4  # object-undefined
    assert hes.read(GXDLMSClock("0.0.1.0.0.255"), 9) == 11  # object-unavailable
    serial = GXDLMSData("0.0.96.1.0.255")
    assert hes.read(serial, 2) == "SP0000042"
    serial.value = "X"
    assert hes.request(hes.client.write(serial, 2)).error == 3  # read-write-denied


def test_public_client_reads_public_objects_only():
    rig = Rig()
    public = GuruxSession(public_client(), rig.transport)
    public.associate()
    assert isinstance(public.read(GXDLMSClock("0.0.1.0.0.255"), 2), GXDateTime)
    relay = GXDLMSDisconnectControl("0.0.96.3.10.255")
    assert public.read(relay, 2) == 3
    assert public.request(relay.remoteDisconnect(public.client)).error == 3
    assert rig.meter.relay.output_state


def test_wrong_keys_are_refused_at_association():
    rig = Rig()
    stranger = GuruxSession(
        secure_client(KEYRING.keys_for("another meter"), HES_TITLE), rig.transport
    )
    with pytest.raises(GXDLMSException):
        stranger.associate()
    assert rig.session.state is SessionState.IDLE


def test_a_replayed_request_is_refused_with_the_expected_counter():
    rig = Rig()
    hes = rig.hes()
    hes.associate()
    relay = GXDLMSDisconnectControl("0.0.96.3.10.255")
    hes.request(relay.remoteDisconnect(hes.client))
    hes.request(relay.remoteReconnect(hes.client))
    replayed_disconnect = rig.sent[-2]
    answer = rig.transport(replayed_disconnect)
    with pytest.raises(GXDLMSExceptionResponse):
        hes.client.getData(GXByteBuffer(bytearray(answer)), GXReplyData())
    refusal = xdlms.decode(rig.answers[-1])
    assert isinstance(refusal, xdlms.ExceptionResponse)
    assert refusal.service_error is xdlms.ServiceError.INVOCATION_COUNTER_ERROR
    last = rig.meter.client_counters[HES_TITLE]
    assert refusal.invocation_counter == last + 1
    assert rig.meter.relay.output_state  # the replay did not disconnect
    assert rig.session.refused == 1


def test_requests_before_association_are_refused():
    rig = Rig()
    hes = rig.hes()
    with pytest.raises(GXDLMSExceptionResponse):
        hes.request(hes.client.read(GXDLMSClock("0.0.1.0.0.255"), 2))


def test_profiles_event_logs_and_scalers_over_dlms():
    rig = Rig(intervals=200)  # two days: two daily snapshots
    hes = rig.hes()
    hes.associate()
    daily = GXDLMSProfileGeneric("1.0.99.2.0.255")
    hes.read(daily, 3)
    hes.read(daily, 2)
    assert [row[1] for row in daily.buffer] == [d.cumulative_wh for d in rig.meter.ledger.daily]

    instantaneous = GXDLMSProfileGeneric("1.0.94.91.0.255")
    hes.read(instantaneous, 3)
    assert len(instantaneous.captureObjects) == 10
    hes.read(instantaneous, 2)
    [row] = instantaneous.buffer
    assert row[7] == rig.meter.registers.wh_import

    scalers = GXDLMSProfileGeneric("1.0.94.91.4.255")
    hes.read(scalers, 3)
    assert hes.read(scalers, 2)  # one row of {scaler, unit}

    clock = GXDLMSClock("0.0.1.0.0.255")
    clock.time = GXDateTime(datetime.fromtimestamp(rig.now + 60, tz=IST))
    hes.request(hes.client.write(clock, 2))
    transactions = GXDLMSProfileGeneric("0.0.99.98.3.255")
    hes.read(transactions, 3)
    hes.read(transactions, 2)
    assert [row[1] for row in transactions.buffer] == [151]
    for log in range(7):
        assert hes.read(GXDLMSProfileGeneric(f"0.0.99.98.{log}.255"), 3) is not None

    billing = GXDLMSProfileGeneric("1.0.98.1.0.255")
    hes.read(billing, 3)
    assert len(billing.captureObjects) == 13
    billing_scalers = GXDLMSProfileGeneric("1.0.94.91.6.255")
    hes.read(billing_scalers, 3)
    hes.read(billing_scalers, 2)
    assert len(billing_scalers.buffer[0]) == len(billing_scalers.captureObjects) == 10


def test_name_plate_is_public():
    rig = Rig()
    public = GuruxSession(public_client(), rig.transport)
    public.associate()
    plate = GXDLMSProfileGeneric("0.0.94.91.10.255")
    public.read(plate, 3)
    public.read(plate, 2)
    assert plate.buffer[0][0] == "SP0000042"


def test_load_limit_set_and_clock_shift_write_transaction_events():
    rig = Rig()
    hes = rig.hes()
    hes.associate()
    limiter = GXDLMSLimiter("0.0.17.0.0.255")
    limiter.thresholdActive = 3000
    limiter.setDataType(3, DataType.UINT32)
    assert hes.request(hes.client.write(limiter, 3)).error == 0
    assert rig.meter.load_limit_w == 3000
    clock = GXDLMSClock("0.0.1.0.0.255")
    reply = hes.request(hes.client.method(clock, 6, 120, DataType.INT16))
    assert reply.error == 0
    assert rig.meter.clock_offset_s == pytest.approx(120)
    reply = hes.request(hes.client.method(clock, 6, 5000, DataType.INT16))
    assert reply.error == 12  # type-unmatched: beyond the ±900 s a shift may move
    codes = [event.code for event in rig.meter.events.entries(EventLog.TRANSACTION)]
    assert codes == [158]


def test_junk_or_refused_aarq_does_not_end_the_current_association():
    rig = Rig()
    hes = rig.hes()
    hes.associate()
    for junk in (b"\x60\x01\x00", b"\x60\x03\xa1\x01\x00"):
        rig.session.handle(junk, rig.now)
    assert rig.session.state is SessionState.ASSOCIATED
    assert hes.read(GXDLMSDisconnectControl("0.0.96.3.10.255"), 2) is True


def test_a_clock_years_away_is_refused():
    rig = Rig()
    hes = rig.hes()
    hes.associate()
    clock = GXDLMSClock("0.0.1.0.0.255")
    clock.time = GXDateTime(datetime(2099, 1, 1, tzinfo=IST))
    assert hes.request(hes.client.write(clock, 2)).error == 250  # other-reason
    assert rig.meter.clock_offset_s == 0
    assert isinstance(hes.read(clock, 2), GXDateTime)
