from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import ScenarioError
from hes_sim.hes.billing import Tariff, daily_fixed_charge, load_tariff, to_paise

ROOT = Path(__file__).resolve().parents[2]
UP_LMV1 = ROOT / "config" / "tariffs" / "up-lmv1-domestic-urban.yaml"
D = Decimal

VALID = """
name: t
energy_slabs:
  - {from_kwh: 0, to_kwh: 100, rate: "5.50"}
  - {from_kwh: 100, to_kwh: 150, rate: "5.50"}
  - {from_kwh: 150, to_kwh: 300, rate: "6.00"}
  - {from_kwh: 300, to_kwh: null, rate: "6.50"}
fixed_charge_per_kw_month: "110.00"
"""


@pytest.fixture(scope="module")
def up() -> Tariff:
    return load_tariff(UP_LMV1)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tariff.yaml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_tariff(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message


def test_shipped_tariffs_are_valid():
    paths = sorted((ROOT / "config" / "tariffs").glob("*.yaml"))
    assert UP_LMV1 in paths
    for path in paths:
        load_tariff(path)


def test_up_lmv1_as_published(up: Tariff):
    assert [(s.from_kwh, s.to_kwh, s.rate) for s in up.energy_slabs] == [
        (0, 100, D("5.50")),
        (100, 150, D("5.50")),
        (150, 300, D("6.00")),
        (300, None, D("6.50")),
    ]
    assert up.fixed_charge_per_kw_month == D("110.00")
    assert up.zone_factors == (1, 1, 1, 1)
    assert not up.has_tod
    assert "check" in UP_LMV1.read_text().lower()
    assert "tariff order" in UP_LMV1.read_text()


@pytest.mark.parametrize(
    ("kwh", "charge"),
    [
        ("0", "0.00"),
        ("100", "550.00"),  # 100 x 5.50
        ("150", "825.00"),  # + 50 x 5.50
        ("250", "1425.00"),  # 100 x 5.50 + 50 x 5.50 + 100 x 6.00
        ("300", "1725.00"),  # + 150 x 6.00
        ("301", "1731.50"),  # + 1 x 6.50
        ("1000", "6275.00"),  # 1725 + 700 x 6.50
        ("100.001", "550.01"),  # 0.001 x 5.50 = 0.0055, rounded half up
    ],
)
def test_energy_charge_hand_worked(up: Tariff, kwh: str, charge: str):
    assert up.energy_charge(D(kwh)) == D(charge)


def test_each_kwh_at_the_rate_of_its_slab(up: Tariff):
    lines = up.slab_charges(D("301"))
    assert [(line.slab, line.kwh, line.amount) for line in lines] == [
        (0, 100, D("550.00")),
        (1, 50, D("275.00")),
        (2, 150, D("900.00")),
        (3, 1, D("6.50")),
    ]
    assert up.slab_charges(D(0)) == ()
    assert [line.slab for line in up.slab_charges(D(100))] == [0]


def test_each_slab_line_is_rounded_on_its_own(tmp_path: Path):
    tariff = load_tariff(
        write(
            tmp_path,
            """
name: halves
energy_slabs:
  - {from_kwh: 0, to_kwh: 0.001, rate: "5.50"}
  - {from_kwh: 0.001, to_kwh: null, rate: "5.50"}
fixed_charge_per_kw_month: 0
""",
        )
    )
    # 0.0055 + 0.0055 rounded line by line is 0.02; rounded once it would be 0.01
    assert tariff.energy_charge(D("0.002")) == D("0.02")


def test_rounding_is_half_up_to_the_paisa():
    assert to_paise(D("0.005")) == D("0.01")
    assert to_paise(D("0.025")) == D("0.03")  # half-even would give 0.02
    assert to_paise(D("0.0049999")) == D("0.00")
    assert to_paise(D("-0.005")) == D("-0.01")  # halves away from zero


@given(st.decimals(min_value=0, max_value=5000, places=3))
def test_energy_charge_is_monotonic_and_in_paise(kwh: Decimal):
    tariff = Tariff.model_validate_json(
        '{"name": "t", "fixed_charge_per_kw_month": "110", "energy_slabs": ['
        '{"from_kwh": 0, "to_kwh": 100, "rate": "5.50"},'
        '{"from_kwh": 100, "to_kwh": null, "rate": "6.50"}]}'
    )
    charge = tariff.energy_charge(kwh)
    assert charge == charge.quantize(D("0.01"))
    assert tariff.energy_charge(kwh + D("0.001")) >= charge
    exact = min(kwh, D(100)) * D("5.50") + max(kwh - 100, D(0)) * D("6.50")
    assert abs(charge - exact) <= D("0.01")  # at most half a paisa off on each of two lines


def test_fixed_charge_monthly_and_pro_rata(up: Tariff):
    assert up.fixed_charge(D(2), 30, 30) == D("220.00")
    assert up.fixed_charge(D(2), 31, 31) == D("220.00")
    assert up.fixed_charge(D(2), 1, 30) == D("7.33")  # 220 / 30 = 7.333...
    assert up.fixed_charge(D("1.5"), 15, 31) == D("79.84")  # 2475 / 31 = 79.838...
    assert up.fixed_charge(D(2), 0, 30) == D("0.00")
    with pytest.raises(ValueError, match="days must be"):
        up.fixed_charge(D(2), 31, 30)
    with pytest.raises(ValueError, match="days_in_month"):
        up.fixed_charge(D(2), 1, 27)
    with pytest.raises(ValueError, match="sanctioned_kw"):
        up.fixed_charge(D(-1), 1, 30)


@given(
    st.decimals(min_value=0, max_value=100, places=2),
    st.sampled_from([28, 29, 30, 31]),
)
def test_daily_fixed_charges_sum_to_the_month(kw: Decimal, days_in_month: int):
    tariff = load_tariff(UP_LMV1)
    days = [daily_fixed_charge(tariff, kw, day, days_in_month) for day in range(1, 29)]
    days += [daily_fixed_charge(tariff, kw, d, days_in_month) for d in range(29, days_in_month + 1)]
    assert sum(days) == tariff.fixed_charge(kw, days_in_month, days_in_month)
    assert all(day >= 0 for day in days)


TOD = """
name: tod
energy_slabs:
  - {from_kwh: 0, to_kwh: 100, rate: "5.00"}
  - {from_kwh: 100, to_kwh: null, rate: "10.00"}
fixed_charge_per_kw_month: 0
time_of_day:
  - {name: night, start_hour: 0, end_hour: 6, factor: "0.85"}
  - {name: day, start_hour: 6, end_hour: 18, factor: 1}
  - {name: peak, start_hour: 18, end_hour: 24, factor: "1.20"}
"""


def test_tod_zones_map_onto_the_meter_zones(tmp_path: Path):
    tariff = load_tariff(write(tmp_path, TOD))
    # meter zones start at 0, 6, 10, 18 h: the tariff's 6-18 zone is two of them
    assert tariff.zone_factors == (D("0.85"), 1, 1, D("1.20"))
    assert tariff.has_tod


def test_tod_adjustment_hand_worked(tmp_path: Path, up: Tariff):
    tariff = load_tariff(write(tmp_path, TOD))
    # 200 kWh: 100 x 5 + 100 x 10 = 1500, slab-average 7.50 a kWh;
    # 40 kWh at night x -0.15 + 100 kWh at peak x +0.20 = 14 kWh more -> 105.00
    assert tariff.tod_adjustment([D(40), D(20), D(40), D(100)]) == D("105.00")
    # 150 kWh: 1000 / 150 = 6.666... a kWh; 10 peak kWh x 0.20 = 2 -> 13.333... -> 13.33
    assert tariff.tod_adjustment([D(0), D(100), D(40), D(10)]) == D("13.33")
    # all at night: 100 x 5 x -0.15
    assert tariff.tod_adjustment([D(100), D(0), D(0), D(0)]) == D("-75.00")
    assert tariff.tod_adjustment([D(0)] * 4) == D("0.00")
    assert up.tod_adjustment([D(40), D(20), D(40), D(100)]) == D("0.00")
    with pytest.raises(ValueError, match="4 TOU zones"):
        tariff.tod_adjustment([D(1)])


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (  # overlapping slabs
            ("{from_kwh: 100, to_kwh: 150", "{from_kwh: 90, to_kwh: 150"),
            ["energy_slabs", "1.from_kwh 90 overlaps slab 0"],
        ),
        (
            ("{from_kwh: 150, to_kwh: 300", "{from_kwh: 160, to_kwh: 300"),
            ["energy_slabs", "2.from_kwh 160 leaves a gap after slab 1"],
        ),
        (
            ('{from_kwh: 300, to_kwh: null, rate: "6.50"}', '{from_kwh: 300, rate: "-6.50"}'),
            ["energy_slabs.3.rate", "greater than or equal to 0"],
        ),
        (("name: t", "name: t\ncurrency: INR"), ["currency", "Extra inputs are not permitted"]),
        (
            ("{from_kwh: 0, to_kwh: 100, rate", "{from_kwh: 0, to_kwh: 100, rates: 1, rate"),
            ["energy_slabs.0.rates", "Extra inputs"],
        ),
        (("to_kwh: null", "to_kwh: 400"), ["energy_slabs", "3.to_kwh must be null"]),
        (
            ("{from_kwh: 0, to_kwh: 100,", "{from_kwh: 0, to_kwh: null,"),
            ["energy_slabs", "0.to_kwh is null but only the last slab is open-ended"],
        ),
        (
            ("{from_kwh: 100, to_kwh: 150", "{from_kwh: 100, to_kwh: 100"),
            ["energy_slabs", "1.to_kwh 100 is not above from_kwh"],
        ),
        (("{from_kwh: 0,", "{from_kwh: 10,"), ["energy_slabs", "the first slab starts at 0"]),
        (('"5.50"}\n  - {from_kwh: 100', '"5.505"}\n  - {from_kwh: 100'), ["energy_slabs.0.rate"]),
        (('"110.00"', "-1"), ["fixed_charge_per_kw_month", "greater than or equal to 0"]),
        (('"110.00"', ".nan"), ["fixed_charge_per_kw_month", "finite"]),
        (('fixed_charge_per_kw_month: "110.00"', ""), ["fixed_charge_per_kw_month", "required"]),
    ],
)
def test_bad_slabs_and_charges_are_refused_naming_the_field(
    tmp_path: Path, change: tuple[str, str], names: list[str]
):
    old, new = change
    assert old in VALID
    message = refused(tmp_path, VALID.replace(old, new, 1))
    for name in names:
        assert name in message


@pytest.mark.parametrize(
    ("zones", "names"),
    [
        (
            "[{name: a, start_hour: 0, end_hour: 7}, {name: b, start_hour: 7, end_hour: 24}]",
            ["time_of_day", "0.end_hour 7 splits a meter TOU zone"],
        ),
        (
            "[{name: a, start_hour: 0, end_hour: 6}, {name: b, start_hour: 10, end_hour: 24}]",
            ["time_of_day", "1.start_hour is 10, expected 6"],
        ),
        ("[{name: a, start_hour: 0, end_hour: 18}]", ["time_of_day", "ends at 18 h, not 24"]),
        ("[]", ["time_of_day", "at least one zone"]),
        (
            "[{name: a, start_hour: 0, end_hour: 24, factor: -1}]",
            ["time_of_day.0.factor", "greater than or equal to 0"],
        ),
        (
            "[{name: a, start_hour: 0, end_hour: 24, hours: 3}]",
            ["time_of_day.0.hours", "Extra inputs"],
        ),
    ],
)
def test_bad_tod_zones_are_refused_naming_the_field(tmp_path: Path, zones: str, names: list[str]):
    message = refused(tmp_path, f"{VALID}time_of_day: {zones}\n")
    for name in names:
        assert name in message


def test_unreadable_files_are_refused(tmp_path: Path):
    assert "cannot read" in refused_path(tmp_path / "missing.yaml")
    assert "not valid YAML" in refused(tmp_path, "name: [unclosed")
    assert "mapping of tariff fields" in refused(tmp_path, "- a list\n")


def refused_path(path: Path) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_tariff(path)
    return str(caught.value)


def test_tariff_is_frozen(up: Tariff):
    with pytest.raises(ValueError, match="frozen"):
        up.name = "other"  # type: ignore[misc]
