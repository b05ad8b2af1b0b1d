from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from hes_sim.hes.billing import (
    BillingMonth,
    LineKind,
    MonthlyDeterminants,
    Tariff,
    load_tariff,
    monthly_determinants,
    postpaid_bill,
)
from hes_sim.hes.records import ReadRecord
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter

ROOT = Path(__file__).resolve().parents[2]
IST = timezone(timedelta(hours=5, minutes=30))
NOV = BillingMonth(2026, 11)
NOV_1 = datetime(2026, 11, 1, tzinfo=IST).timestamp()
D = Decimal


@pytest.fixture(scope="module")
def up() -> Tariff:
    return load_tariff(ROOT / "config" / "tariffs" / "up-lmv1-domestic-urban.yaml")


def read(end: float, wh: int, vah: int | None = None, meter: str = "SP0000001") -> ReadRecord:
    vah = wh + 10 if vah is None else vah
    return ReadRecord(
        meter,
        int(end),
        "block_load_single_phase",
        230.0,
        1.0,
        wh,
        0,
        vah,
        0,
        {"wh_import": wh, "vah_import": vah},
        end + 60,
    )


def ends(start: float, count: int) -> list[float]:
    return [start + 900 * (i + 1) for i in range(count)]


def determinants(kwh: str, month: BillingMonth = NOV) -> MonthlyDeterminants:
    quarter = D(kwh) / 4
    return MonthlyDeterminants(
        "SP0000001", month, D(kwh), D(kwh), D(0), None, D(0), None, (quarter,) * 4, 0, 2880
    )


def test_250_kwh_at_2_kw_is_1645_rupees(up: Tariff):
    # a month of reads adding up to exactly 250 kWh: 2320 blocks of 87 Wh, 560 of 86 Wh
    reads = [read(end, 87 if i < 2320 else 86) for i, end in enumerate(ends(NOV_1, 2880))]
    month = monthly_determinants("SP0000001", reads, NOV, IST)
    assert month.kwh_import == D(250)
    bill = postpaid_bill(month, up, D(2))
    assert [(line.kind, line.quantity, line.rate, line.amount) for line in bill.lines] == [
        (LineKind.ENERGY, 100, D("5.50"), D("550.00")),
        (LineKind.ENERGY, 50, D("5.50"), D("275.00")),
        (LineKind.ENERGY, 100, D("6.00"), D("600.00")),
        (LineKind.FIXED, 2, D("110.00"), D("220.00")),
    ]
    assert bill.energy_charge == D("1425.00")
    assert bill.fixed_charge == D("220.00")
    assert bill.tod_adjustment == D("0.00")  # and no TOD line: every factor is 1
    assert bill.total == D("1645.00")
    assert bill.lines[0].description == "energy 0-100 kWh"
    assert bill.lines[-1].description == "fixed charge, 2 kW sanctioned"


@pytest.mark.parametrize(
    ("kwh", "energy", "total"),
    [
        ("0", "0.00", "220.00"),
        ("100", "550.00", "770.00"),
        ("150", "825.00", "1045.00"),
        ("300", "1725.00", "1945.00"),
        ("301", "1731.50", "1951.50"),
        ("1000", "6275.00", "6495.00"),
    ],
)
def test_bills_at_the_slab_edges(up: Tariff, kwh: str, energy: str, total: str):
    bill = postpaid_bill(determinants(kwh), up, D(2))
    assert bill.energy_charge == D(energy)
    assert bill.total == D(total)
    assert bill.total == sum(line.amount for line in bill.lines)


def test_zero_kwh_bill_is_the_fixed_charge_only(up: Tariff):
    bill = postpaid_bill(determinants("0", BillingMonth(2027, 2)), up, D("1.5"))
    assert [line.kind for line in bill.lines] == [LineKind.FIXED]
    assert bill.total == D("165.00")  # a whole month, however short: 1.5 x 110


def test_tod_line_when_a_factor_is_not_one(tmp_path: Path):
    path = tmp_path / "tod.yaml"
    path.write_text(
        (ROOT / "config" / "tariffs" / "up-lmv1-domestic-urban.yaml")
        .read_text()
        .replace(
            'evening peak, start_hour: 18, end_hour: 24, factor: "1.00"',
            'evening peak, start_hour: 18, end_hour: 24, factor: "1.20"',
        )
    )
    tariff = load_tariff(path)
    month = replace(determinants("250"), tou_kwh=(D(50), D(50), D(50), D(100)))
    bill = postpaid_bill(month, tariff, D(2))
    # slab-average rate 1425 / 250 = 5.70; 100 peak kWh x 0.20 x 5.70 = 114.00
    assert bill.tod_adjustment == D("114.00")
    assert bill.lines[-1].kind is LineKind.TOD
    assert "evening peak x1.20" in bill.lines[-1].description
    assert bill.total == D("1759.00")


def test_a_bill_must_add_up(up: Tariff):
    bill = postpaid_bill(determinants("250"), up, D(2))
    with pytest.raises(ValueError, match="not the sum of the lines"):
        replace(bill, total=D("1645.01"))
    with pytest.raises(ValueError, match="sanctioned_kw"):
        postpaid_bill(determinants("250"), up, D(-2))


def synthetic_month() -> tuple[list[ReadRecord], dict[int, int]]:
    """November 2026, Wh by local start hour, one spike each in kW and kVA, and reads of
    the days either side; returns the reads and the expected Wh per meter TOU zone."""
    spike_w_end = datetime(2026, 11, 17, 19, 45, tzinfo=IST).timestamp()
    spike_va_end = datetime(2026, 11, 3, 8, 15, tzinfo=IST).timestamp()
    reads, zone_wh = [], {0: 0, 1: 0, 2: 0, 3: 0}
    for end in ends(NOV_1 - 86_400, 96 * 32):  # 31 October to 1 December
        start_hour = datetime.fromtimestamp(end - 900, IST).hour
        wh = 900 if end == spike_w_end else 40 + 10 * start_hour
        vah = 1200 if end == spike_va_end else wh + 15
        reads.append(read(end, wh, vah))
        if NOV_1 < end <= NOV_1 + 30 * 86_400:
            zone = 0 if start_hour < 6 else 1 if start_hour < 10 else 2 if start_hour < 18 else 3
            zone_wh[zone] += wh
    return reads, zone_wh


def test_determinants_of_a_synthetic_month():
    reads, zone_wh = synthetic_month()
    month = monthly_determinants("SP0000001", reversed(reads), NOV, IST)
    in_month = [r for r in reads if NOV_1 < r.interval_end <= NOV_1 + 30 * 86_400]
    assert len(in_month) == 2880
    assert month.kwh_import == D(sum(r.wh_import for r in in_month)) / 1000
    assert month.kvah_import == D(sum(r.vah_import for r in in_month)) / 1000
    # the 900 Wh block, x4, not a 270 Wh block of the 23rd hour nor of another month
    assert month.md_kw == D("3.6")
    assert month.md_kw_at == int(datetime(2026, 11, 17, 19, 45, tzinfo=IST).timestamp())
    assert month.md_kva == D("4.8")
    assert month.md_kva_at == int(datetime(2026, 11, 3, 8, 15, tzinfo=IST).timestamp())
    assert month.tou_kwh == tuple(D(zone_wh[z]) / 1000 for z in range(4))
    assert sum(month.tou_kwh) == month.kwh_import
    assert (month.intervals_present, month.intervals_expected) == (2880, 2880)
    assert month.complete
    assert month.average_pf == (month.kwh_import / month.kvah_import).quantize(D("0.001"))


def test_the_block_ending_at_midnight_on_the_1st_closes_the_month():
    last = NOV_1 + 30 * 86_400  # 1 December 00:00
    month = monthly_determinants("SP0000001", [read(last, 5), read(last + 900, 7)], NOV, IST)
    assert month.kwh_import == D("0.005")
    december = monthly_determinants("SP0000001", [read(last, 5)], NOV.next(), IST)
    assert december.kwh_import == 0
    assert december.intervals_expected == 31 * 96


def test_missing_and_repeated_reads_and_ties():
    reads = [read(end, 100) for end in ends(NOV_1, 2880)]
    month = monthly_determinants("SP0000001", [*reads[10:], reads[500]], NOV, IST)
    assert (month.intervals_present, month.intervals_expected) == (2870, 2880)
    assert not month.complete
    assert month.kwh_import == D("287")  # the repeated read counted once
    assert month.md_kw == D("0.4")
    assert month.md_kw_at == reads[10].interval_end  # the earliest of equal blocks


def test_empty_month_and_other_meters():
    month = monthly_determinants("SP0000001", [], NOV, IST)
    assert (month.kwh_import, month.md_kw, month.md_kw_at) == (0, 0, None)
    assert month.average_pf is None
    with pytest.raises(ValueError, match="a read of SP0000002"):
        monthly_determinants("SP0000001", [read(NOV_1 + 900, 1, meter="SP0000002")], NOV, IST)
    with pytest.raises(ValueError, match="interval_s"):
        monthly_determinants("SP0000001", [], NOV, IST, interval_s=700)


def test_determinants_agree_with_the_meters_billing_profile():
    meter = VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 9, IST)
    reads = [
        ReadRecord.from_entry("SP0000001", meter.close_interval(end, 900), end)
        for end in ends(NOV_1, 2880)
    ]
    profile = meter.ledger.billing[-1]  # written at the reset of 1 December 00:00
    month = monthly_determinants("SP0000001", reads, NOV, IST)
    assert month.kwh_import == D(profile.cumulative_wh) / 1000
    assert month.kvah_import == D(profile.cumulative_vah) / 1000
    assert month.tou_kwh == tuple(D(wh) / 1000 for wh in profile.tou_wh)
    assert month.md_kw == D(profile.md_w) / 1000
    assert month.md_kw_at == profile.md_w_at
    assert month.md_kva == D(profile.md_va) / 1000
    assert month.md_kva_at == profile.md_va_at
