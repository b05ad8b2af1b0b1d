from datetime import datetime, timedelta, timezone

import pytest

from hes_sim.meter_sim.grid import GridSpec, build_grid
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.relay import Trigger
from hes_sim.protocols.block_load import Quantity

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 5, 15, tzinfo=IST).timestamp()
COUNTS = {
    MeterKind.SINGLE_PHASE: 40,
    MeterKind.THREE_PHASE: 8,
    MeterKind.LT_CT: 3,
    MeterKind.HT_CT: 2,
}
SPEC = GridSpec(feeders=2, dts_per_feeder=3, technical_loss=0.05)


def wh(meter, end: float) -> int:
    return meter.entry_for(end, 900).raw(Quantity.WH_IMPORT)


def test_topology():
    grid = build_grid(COUNTS, 3, IST, SPEC)
    kinds = [m.kind for m in grid.meters]
    assert kinds.count(MeterKind.DT) == 6
    assert kinds.count(MeterKind.FEEDER) == 2
    assert len(grid.dt_of) == 40 + 8 + 3  # every LT consumer is under one DT
    assert all(
        grid.feeder_of[m.meter_id].startswith("FD")
        for m in grid.meters
        if m.kind in (MeterKind.DT, MeterKind.HT_CT)
    )


def test_energy_balances_from_consumers_to_feeders():
    grid = build_grid(COUNTS, 3, IST, SPEC)
    by_id = {m.meter_id: m for m in grid.meters}
    end = START + 20 * 3600  # evening
    for dt in (m for m in grid.meters if m.kind is MeterKind.DT):
        children = [by_id[c] for c, parent in grid.dt_of.items() if parent == dt.meter_id]
        below = sum(wh(c, end) for c in children)
        assert wh(dt, end) == pytest.approx(below * 1.05, abs=len(children) + 1)
    for feeder in (m for m in grid.meters if m.kind is MeterKind.FEEDER):
        children = [by_id[c] for c, parent in grid.feeder_of.items() if parent == feeder.meter_id]
        below = sum(wh(c, end) for c in children)
        assert wh(feeder, end) == pytest.approx(below * 1.05, abs=len(children) + 1)


def test_a_disconnected_consumer_leaves_its_dt_reading():
    grid = build_grid(COUNTS, 3, IST, SPEC)
    by_id = {m.meter_id: m for m in grid.meters}
    end = START + 20 * 3600
    consumer = by_id["SP0000001"]
    dt = by_id[grid.dt_of["SP0000001"]]
    before = wh(dt, end)
    share = wh(consumer, end)
    consumer.operate_relay(Trigger.REMOTE_DISCONNECT, at=end - 900)
    assert wh(consumer, end) == 0
    assert wh(dt, end) == pytest.approx(before - share * 1.05, abs=2)


def test_categories_have_their_own_shape():
    grid = build_grid(COUNTS, 3, IST, None)
    commercial = next(m for m in grid.meters if m.kind is MeterKind.LT_CT)
    domestic = next(m for m in grid.meters if m.kind is MeterKind.SINGLE_PHASE)
    afternoon, night = START + 15 * 3600, START + 3 * 3600
    assert wh(commercial, afternoon) > 3 * wh(commercial, night)
    assert wh(domestic, START + 21 * 3600) > wh(domestic, afternoon)


def test_summer_draws_more_than_winter():
    summer = build_grid({MeterKind.SINGLE_PHASE: 30}, 3, IST, None).meters
    winter_start = datetime(2026, 1, 15, tzinfo=IST).timestamp()
    day = [START + 900 * k for k in range(1, 97)]
    winter_day = [winter_start + 900 * k for k in range(1, 97)]
    summer_kwh = sum(wh(m, end) for m in summer for end in day)
    winter_kwh = sum(wh(m, end) for m in summer for end in winter_day)
    assert summer_kwh > 1.3 * winter_kwh


def test_ht_consumers_see_11kv_and_same_seed_same_grid():
    first = build_grid(COUNTS, 3, IST, SPEC)
    again = build_grid(COUNTS, 3, IST, SPEC)
    assert first.dt_of == again.dt_of
    ht = next(m for m in first.meters if m.kind is MeterKind.HT_CT)
    assert 6000 < ht.entry_for(START + 900, 900).average_voltage() < 6600


def test_cells_keep_a_dt_with_its_consumers_and_respect_the_size():
    grid = build_grid(COUNTS, 3, IST, SPEC)
    cells = grid.place_in_cells(meters_per_cell=20, seed=3)
    assert set(cells) == {m.meter_id for m in grid.meters}
    for consumer, dt in grid.dt_of.items():
        assert cells[consumer] == cells[dt]
    sizes: dict[str, int] = {}
    for cell in cells.values():
        sizes[cell] = sizes.get(cell, 0) + 1
    largest_dt_group = max(list(grid.dt_of.values()).count(dt) + 1 for dt in grid.dt_of.values())
    assert max(sizes.values()) <= max(20, largest_dt_group)
    assert len(sizes) > 1
    assert grid.feeder_above(next(iter(grid.dt_of))) in {
        m.meter_id for m in grid.meters if m.kind is MeterKind.FEEDER
    }


def test_cells_without_a_grid_are_seeded():
    plain = build_grid(COUNTS, 3, IST, None)
    assert plain.place_in_cells(10, seed=1) == plain.place_in_cells(10, seed=1)
    assert plain.place_in_cells(10, seed=1) != plain.place_in_cells(10, seed=2)
    assert len(set(plain.place_in_cells(10, seed=1).values())) == 6  # 53 meters, 10 a cell


def test_a_given_number_of_cells_is_honoured_and_balanced():
    grid = build_grid(COUNTS, 3, IST, SPEC)
    cells = grid.place_in_cells(meters_per_cell=1, seed=3, cells=3)
    sizes: dict[str, int] = {}
    for cell in cells.values():
        sizes[cell] = sizes.get(cell, 0) + 1
    assert sorted(sizes) == ["CELL0001", "CELL0002", "CELL0003"]
    for consumer, dt in grid.dt_of.items():
        assert cells[consumer] == cells[dt]
    assert max(sizes.values()) - min(sizes.values()) <= 12  # a DT's group at most apart
