"""The head-end associates with a meter of a running fleet over MQTT (HLS GMAC, suite 0),
reads it, and switches its relay; the meter's pushes show the consumer off supply."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from hes_sim.events import DecodeFailed, MeterEventReceived, ReadStored
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.xdlms import DataAccessResult, Reference, Selection
from hes_sim.runner.broker import PrivateMosquitto
from tests.integration.conftest import live_fleet

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, 18, tzinfo=IST).timestamp()
RELAY = bytes([0, 0, 96, 3, 10, 255])
CLOCK = bytes([0, 0, 1, 0, 0, 255])
BLOCK_LOAD = bytes([1, 0, 99, 1, 0, 255])
TARGET = "SP0000002"


async def test_disconnect_and_reconnect_a_meter_over_mqtt(
    tmp_path: Path, mosquitto: PrivateMosquitto
):
    async with live_fleet(tmp_path, mosquitto, START, time_scale=600, hours=3) as live:
        clock, events, store, sessions = live.clock, live.events, live.store, live.sessions

        def stored(meter_id: str) -> list[ReadStored]:
            return [e for e in events.of(ReadStored) if e.meter_id == meter_id]  # type: ignore[misc]

        await events.until(lambda _: len(stored(TARGET)) >= 2, 30)

        async with sessions.associate(TARGET) as meter:
            now = cosem_datetime.decode((await meter.get(Reference(8, CLOCK, 2))).bytes_value)
            assert abs(now.timestamp() - clock.now()) < 600
            assert (await meter.get(Reference(70, RELAY, 2))).value is True

            off = await meter.action(Reference(70, RELAY, 1), Data(Tag.INTEGER, 0))
            assert off.result is DataAccessResult.SUCCESS
            assert (await meter.get(Reference(70, RELAY, 2))).value is False
            disconnected_at = clock.now()

            low = datetime.fromtimestamp(START, tz=IST)
            high = datetime.fromtimestamp(clock.now(), tz=IST)
            selection = Selection(
                1,
                axdr.structure(
                    axdr.structure(
                        Data(Tag.LONG_UNSIGNED, 8),
                        axdr.octets(CLOCK),
                        Data(Tag.INTEGER, 2),
                        Data(Tag.LONG_UNSIGNED, 0),
                    ),
                    axdr.octets(cosem_datetime.encode(low)),
                    axdr.octets(cosem_datetime.encode(high)),
                    axdr.array(),
                ),
            )
            rows = (await meter.get(Reference(7, BLOCK_LOAD, 2), selection)).items
            assert len(rows) >= 2

        # the first interval that ends a whole interval after the disconnection
        first_dark = (disconnected_at // 900 + 2) * 900
        await events.until(lambda _: any(e.interval_end >= first_dark for e in stored(TARGET)), 30)
        dark = [r for r in await store.reads_for(TARGET) if r.interval_end >= first_dark]
        assert dark
        assert all(r.wh_import == 0 for r in dark)
        lit = [r for r in await store.reads_for("SP0000001") if r.interval_end >= first_dark]
        assert all(r.wh_import > 0 for r in lit)

        async with sessions.associate(TARGET) as meter:
            on = await meter.action(Reference(70, RELAY, 2), Data(Tag.INTEGER, 0))
            assert on.result is DataAccessResult.SUCCESS
            assert (await meter.get(Reference(70, RELAY, 2))).value is True

        # each switch was pushed as a control event as it happened
        await events.until(lambda _: len(events.of(MeterEventReceived)) >= 2, 30)
        pushed = [e.code for e in events.of(MeterEventReceived) if e.meter_id == TARGET]  # type: ignore[attr-defined]
        assert pushed == [201, 202]
        stored_events = await store.events_for(TARGET)
        assert [e.code for e in stored_events] == [201, 202]
        # the status word pushed with each event: bit 1 set while disconnected
        assert [e.status_word[:2] for e in stored_events] == ["40", "00"]

    # pushes and answers share the meter's counter: nothing was taken for a replay
    assert not events.of(DecodeFailed)
