from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hes_sim.hes.billing import (
    BillingMonth,
    MonthToDate,
    Tariff,
    load_tariff,
    month_to_date_charge,
    monthly_determinants,
    postpaid_bill,
)
from hes_sim.hes.records import ReadRecord

ROOT = Path(__file__).resolve().parents[2]
IST = timezone(timedelta(hours=5, minutes=30))
NOV = BillingMonth(2026, 11)
DEC_1 = datetime(2026, 12, 1, tzinfo=IST).timestamp()
D = Decimal
UP = load_tariff(ROOT / "config" / "tariffs" / "up-lmv1-domestic-urban.yaml")
TOD = Tariff.model_validate(
    {
        "name": "tod",
        "energy_slabs": [
            {"from_kwh": 0, "to_kwh": 100, "rate": "5.50"},
            {"from_kwh": 100, "to_kwh": 150, "rate": "5.50"},
            {"from_kwh": 150, "to_kwh": 300, "rate": "6.00"},
            {"from_kwh": 300, "to_kwh": None, "rate": "6.50"},
        ],
        "fixed_charge_per_kw_month": "110.00",
        "time_of_day": [
            {"name": "night", "start_hour": 0, "end_hour": 6, "factor": "0.85"},
            {"name": "day", "start_hour": 6, "end_hour": 18, "factor": "1"},
            {"name": "peak", "start_hour": 18, "end_hour": 24, "factor": "1.175"},
        ],
    }
)


def charge_all(tariff: Tariff, deltas: list[tuple[Decimal, int]]) -> tuple[Decimal, MonthToDate]:
    state, total = MonthToDate(NOV), D(0)
    for kwh, zone in deltas:
        charge = state.charge(tariff, kwh, zone)
        total += charge.amount
        state = charge.state
    return total, state


def test_deltas_across_slab_edges_hand_worked():
    state = MonthToDate(NOV)
    amounts = []
    for kwh in ("90", "20", "30", "20", "135", "10"):
        charge = state.charge(UP, D(kwh))
        amounts.append(charge.amount)
        state = charge.state
    assert amounts == [
        D("495.00"),  # 90 x 5.50
        D("110.00"),  # 10 x 5.50 + 10 x 5.50 (100-150 is 5.50 too)
        D("165.00"),  # 30 x 5.50, to 140
        D("115.00"),  # 10 x 5.50 + 10 x 6.00, to 160
        D("810.00"),  # 135 x 6.00, to 295
        D("62.50"),  # 5 x 6.00 + 5 x 6.50, to 305
    ]
    assert state.kwh == D(305)
    assert sum(amounts) == state.charged == UP.energy_charge(D(305)) == D("1757.50")


def test_the_running_total_is_rounded_not_each_delta():
    state, amounts = MonthToDate(NOV), []
    for _ in range(3):  # 0.001 kWh at 5.50: exactly 0.0055, 0.011, 0.0165 to date
        charge = state.charge(UP, D("0.001"))
        amounts.append(charge.amount)
        state = charge.state
    assert amounts == [D("0.01"), D("0.00"), D("0.01")]
    assert sum(amounts) == UP.energy_charge(D("0.003")) == D("0.02")


kwh_deltas = st.lists(
    st.tuples(st.decimals(min_value=0, max_value=60, places=3), st.integers(0, 3)),
    max_size=120,
)


@given(kwh_deltas)
def test_charging_by_deltas_sums_to_the_monthly_energy_charge(deltas: list[tuple[Decimal, int]]):
    total, state = charge_all(UP, deltas)
    kwh = sum((k for k, _ in deltas), D(0))
    assert state.kwh == kwh
    assert total == state.charged == UP.energy_charge(kwh)
    assert all(state.charge(UP, D("0.001"), z).amount >= 0 for z in range(4))


@given(kwh_deltas)
def test_with_tod_the_deltas_sum_to_the_energy_and_tod_lines(deltas: list[tuple[Decimal, int]]):
    total, state = charge_all(TOD, deltas)
    zones = [sum((k for k, z in deltas if z == zone), D(0)) for zone in range(4)]
    kwh = sum(zones, D(0))
    assert total == TOD.energy_charge(kwh) + TOD.tod_adjustment(zones)
    assert total == month_to_date_charge(TOD, zones) == state.charged
    assert total == total.quantize(D("0.01"))


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=0, max_value=2 * 96 - 1),  # first interval: within 2 days of the edge
    st.lists(st.integers(min_value=0, max_value=2500), min_size=1, max_size=400),
    st.sampled_from([UP, TOD]),
)
def test_prepaid_intervals_sum_to_each_months_postpaid_bill(
    offset: int, wh: list[int], tariff: Tariff
):
    first_end = DEC_1 - 2 * 86_400 + 900 * (offset + 1)
    reads = [
        ReadRecord("SP1", int(first_end + 900 * i), "l", 230.0, 1.0, w, 0, w, 0, {}, 0.0)
        for i, w in enumerate(wh)
    ]
    charged: dict[BillingMonth, Decimal] = {}
    state = MonthToDate(NOV)
    for r in reads:
        charge = state.charge_interval(tariff, r.interval_end, r.wh_import, IST)
        state = charge.state
        charged[state.month] = charged.get(state.month, D(0)) + charge.amount
    for month, amount in charged.items():
        bill = postpaid_bill(monthly_determinants("SP1", reads, month, IST), tariff, D(2))
        assert amount == bill.energy_charge + bill.tod_adjustment


def test_a_new_month_starts_from_the_first_slab():
    state = MonthToDate(NOV).charge(UP, D(400)).state
    # the block ending at 00:00 on 1 December is November's: charged at 6.50
    at_midnight = state.charge_interval(UP, DEC_1, 2000, IST)
    assert (at_midnight.state.month, at_midnight.amount) == (NOV, D("13.00"))
    december = at_midnight.state.charge_interval(UP, DEC_1 + 900, 2000, IST)
    assert december.state.month == BillingMonth(2026, 12)
    assert december.amount == D("11.00")  # 2 kWh at 5.50
    assert december.state.kwh == 2
    with pytest.raises(ValueError, match="is of 2026-11, not 2026-12"):
        december.state.charge_interval(UP, DEC_1, 100, IST)


def test_interval_goes_to_the_meter_tou_zone_of_its_middle():
    evening = datetime(2026, 11, 5, 18, 15, tzinfo=IST).timestamp()  # 18:00-18:15
    state = MonthToDate(NOV).charge_interval(TOD, evening, 1000, IST).state
    assert state.zone_kwh == (0, 0, 0, 1)
    before = datetime(2026, 11, 5, 18, 0, tzinfo=IST).timestamp()  # 17:45-18:00
    assert state.charge_interval(TOD, before, 1000, IST).state.zone_kwh == (0, 0, 1, 1)


def test_bad_deltas_are_refused():
    state = MonthToDate(NOV)
    with pytest.raises(ValueError, match="delta_kwh"):
        state.charge(UP, D(-1))
    with pytest.raises(ValueError, match="delta_kwh"):
        state.charge(UP, D("NaN"))
    with pytest.raises(ValueError, match="zone must be 0-3"):
        state.charge(UP, D(1), 4)
    with pytest.raises(ValueError, match="wh must be"):
        state.charge_interval(UP, DEC_1, -1, IST)
    with pytest.raises(ValueError, match="zone_kwh needs 4 zones"):
        MonthToDate(NOV, (D(0),))
