from datetime import datetime, timedelta, timezone
from itertools import pairwise

import pytest

from hes_sim.meter_sim.billing import tou_zone
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.meter_sim.relay import Trigger
from hes_sim.protocols.block_load import Quantity

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 10, 25, tzinfo=IST).timestamp()
END = datetime(2026, 12, 2, tzinfo=IST).timestamp()


def run(meter: VirtualMeter) -> dict[float, int]:
    blocks = {}
    end = START + 900
    while end <= END:
        blocks[end] = meter.close_interval(end, 900).raw(Quantity.WH_IMPORT)
        end += 900
    return blocks


def test_billing_month_is_the_sum_of_its_blocks_and_tou_adds_up():
    meter = VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 9, IST)
    blocks = run(meter)
    november, december = meter.ledger.billing
    nov_1 = datetime(2026, 11, 1, tzinfo=IST).timestamp()
    dec_1 = datetime(2026, 12, 1, tzinfo=IST).timestamp()
    assert (november.reset_at, december.reset_at) == (nov_1, dec_1)
    in_november = sum(wh for end, wh in blocks.items() if nov_1 < end <= dec_1)
    assert december.cumulative_wh - november.cumulative_wh == in_november
    assert december.cumulative_wh == sum(wh for end, wh in blocks.items() if end <= dec_1)
    assert sum(december.tou_wh) == december.cumulative_wh
    assert meter.registers.wh_import == sum(blocks.values()) == meter.ledger.cumulative_wh
    month_blocks = [wh for end, wh in blocks.items() if nov_1 < end <= dec_1]
    assert december.md_w == max(month_blocks) * 4
    assert 0.85 < december.average_pf < 1.0
    assert december.power_on_minutes == 30 * 24 * 60


def test_daily_snapshots_at_midnight():
    meter = VirtualMeter.create("TP0000001", MeterKind.THREE_PHASE, 9, IST)
    run(meter)
    days = list(meter.ledger.daily)
    assert len(days) == 38
    assert all(datetime.fromtimestamp(d.at, IST).hour == 0 for d in days)
    assert all(a.cumulative_wh <= b.cumulative_wh for a, b in pairwise(days))


def test_power_on_duration_counts_supply_only():
    meter = VirtualMeter.create("SP0000002", MeterKind.SINGLE_PHASE, 9, IST)
    meter.operate_relay(Trigger.REMOTE_DISCONNECT, datetime(2026, 11, 10, tzinfo=IST).timestamp())
    meter.operate_relay(Trigger.REMOTE_RECONNECT, datetime(2026, 11, 11, tzinfo=IST).timestamp())
    run(meter)
    assert meter.ledger.billing[-1].power_on_minutes == 29 * 24 * 60


@pytest.mark.parametrize(
    ("hour", "zone"), [(0, 0), (5, 0), (6, 1), (9, 1), (10, 2), (18, 3), (23, 3)]
)
def test_tou_zones(hour: int, zone: int):
    assert tou_zone(datetime(2026, 1, 1, hour, tzinfo=IST)) == zone
