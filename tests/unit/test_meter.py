from datetime import datetime, timedelta, timezone

import pytest

from hes_sim.meter_sim.fleet import build_meters
from hes_sim.meter_sim.load_model import daily_shape
from hes_sim.meter_sim.meter import CONSUMER_KINDS, MeterKind, VirtualMeter
from hes_sim.meter_sim.relay import Trigger
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.protocols.block_load import Quantity

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, tzinfo=IST).timestamp()
DAY = IntervalSchedule(START, START + 86_400, 900)


def run_day(meter: VirtualMeter):
    return [meter.close_interval(end, 900) for end in DAY.interval_ends()]


@pytest.mark.parametrize("kind", CONSUMER_KINDS)
def test_blocks_add_up_to_the_monotonic_register(kind: MeterKind):
    meter = VirtualMeter.create("M1", kind, fleet_seed=7, tz=IST)
    register_before = meter.registers.wh_import
    previous = 0.0
    total_blocks = 0
    for entry in run_day(meter):
        assert meter.registers.wh_import >= previous
        previous = meter.registers.wh_import
        total_blocks += entry.raw(Quantity.WH_IMPORT)
        assert entry.raw(Quantity.VAH_IMPORT) >= entry.raw(Quantity.WH_IMPORT) - 1
    assert total_blocks == int(meter.registers.wh_import - register_before)


def test_same_seed_same_readings_other_seed_other_readings():
    first = run_day(VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 42, IST))
    again = run_day(VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 42, IST))
    other = run_day(VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 43, IST))
    assert first == again
    assert first != other


def test_household_consumption_is_plausible():
    meters = build_meters({MeterKind.SINGLE_PHASE: 50}, fleet_seed=1, tz=IST)
    daily_kwh = [sum(e.raw(Quantity.WH_IMPORT) for e in run_day(m)) / 1000 for m in meters]
    mean = sum(daily_kwh) / len(daily_kwh)
    assert 3 < mean < 20  # Indian urban households: a few to a dozen or so kWh a day
    assert max(daily_kwh) > min(daily_kwh) * 1.5  # consumers differ


def test_evening_peak_exceeds_night():
    assert daily_shape(20.5) > 3 * daily_shape(3.0)
    meters = build_meters({MeterKind.SINGLE_PHASE: 30}, fleet_seed=3, tz=IST)
    by_hour: dict[int, float] = {}
    for meter in meters:
        for entry in run_day(meter):
            hour = (entry.clock - timedelta(seconds=1)).hour
            by_hour[hour] = by_hour.get(hour, 0) + entry.raw(Quantity.WH_IMPORT)
    assert by_hour[20] > 2 * by_hour[3]


def test_voltages_and_currents_are_in_range():
    for kind in (MeterKind.SINGLE_PHASE, MeterKind.THREE_PHASE, MeterKind.LT_CT):
        meter = VirtualMeter.create("M9", kind, 5, IST)
        for entry in run_day(meter):
            assert 200 < entry.average_voltage() < 260
            assert 0 <= entry.average_current() < 100


def test_meter_ids_by_kind():
    meters = build_meters({MeterKind.SINGLE_PHASE: 2, MeterKind.THREE_PHASE: 1}, 1, IST)
    assert [m.meter_id for m in meters] == ["SP0000001", "SP0000002", "TP0000001"]


def test_any_interval_can_be_computed_again_with_the_same_result():
    meter = VirtualMeter.create("SP0000009", MeterKind.SINGLE_PHASE, 3, IST)
    live = run_day(meter)
    again = [meter.entry_for(end, 900) for end in reversed(DAY.interval_ends())]
    assert live == list(reversed(again))


def test_an_open_relay_stops_consumption_for_the_part_of_the_interval_it_was_open():
    meter = VirtualMeter.create("SP0000010", MeterKind.SINGLE_PHASE, 3, IST)
    ends = DAY.interval_ends()
    before = meter.entry_for(ends[40], 900).raw(Quantity.WH_IMPORT)
    assert before > 0
    meter.operate_relay(Trigger.REMOTE_DISCONNECT, at=ends[40] - 450)  # half-way through
    half = meter.entry_for(ends[40], 900)
    assert half.raw(Quantity.WH_IMPORT) == pytest.approx(before / 2, abs=1)
    off = meter.entry_for(ends[41], 900)
    assert off.raw(Quantity.WH_IMPORT) == off.raw(Quantity.VAH_IMPORT) == 0
    assert off.average_current() == 0
    assert off.average_voltage() > 200  # the line side still has supply
    meter.operate_relay(Trigger.REMOTE_RECONNECT, at=ends[45])
    assert meter.entry_for(ends[46], 900).raw(Quantity.WH_IMPORT) > 0
    assert meter.supplied_fraction(ends[40] - 900, ends[46]) == pytest.approx(
        (450 + 900) / (7 * 900)  # 450 s before the disconnect, 900 s after the reconnect
    )


def test_network_meters_are_built_over_children_only():
    with pytest.raises(ValueError, match="network"):
        VirtualMeter.create("DT0000001", MeterKind.DT, 1, IST)


def test_a_power_outage_stops_consumption_and_logs_failure_and_restoration():
    meter = VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 7, IST)
    end = START + 12 * 3600  # noon, some load
    full = meter.entry_for(end, 900).raw(Quantity.WH_IMPORT)
    assert full > 0
    meter.power_off(end - 600)  # off for the last 10 minutes, relay closed throughout
    meter.power_off(end - 500)  # already off: nothing more
    assert meter.entry_for(end, 900).raw(Quantity.WH_IMPORT) == pytest.approx(full / 3, abs=1)
    assert meter.entry_for(end + 900, 900).raw(Quantity.WH_IMPORT) == 0
    meter.power_on(end + 900)
    assert meter.powered
    assert [e.code for e in meter.events.take_pending()] == [101, 102]
    # relay open for the first 5 minutes and mains off for the last 10: nothing drawn
    meter.operate_relay(Trigger.REMOTE_DISCONNECT, end - 900)
    meter.operate_relay(Trigger.REMOTE_RECONNECT, end - 600)
    assert meter.entry_for(end, 900).raw(Quantity.WH_IMPORT) == 0
