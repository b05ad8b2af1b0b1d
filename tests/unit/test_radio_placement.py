import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hes_sim.meter_sim.network.placement import HoleService, signal_class_of
from hes_sim.meter_sim.network.radio import RadioNetwork
from hes_sim.meter_sim.network.specs import CellSpec, CoverageHoles, SignalClass

SC = SignalClass
MIX = {SC.EXCELLENT: 0.1, SC.GOOD: 0.2, SC.FAIR: 0.4, SC.POOR: 0.2, SC.VERY_POOR: 0.1}
T0 = 1_700_000_000.0  # simulated Unix seconds, as the runs use


def ids(n: int) -> list[str]:
    return [f"SP{number:07d}" for number in range(1, n + 1)]


def test_signal_class_is_the_same_whatever_the_order_meters_are_listed():
    meters = ids(300)
    cells = [CellSpec("C1", 0, 0, 1000, 100, MIX), CellSpec("C2", 1, 1, 1000, 100, MIX)]
    shuffled = meters[:]
    random.Random(1).shuffle(shuffled)
    forward = RadioNetwork(cells, {m: "C1" if i % 2 else "C2" for i, m in enumerate(meters)})
    backward = RadioNetwork(cells[::-1], {m: forward.cell_of(m) for m in shuffled}, seed=0)
    assert [forward.signal_of(m) for m in meters] == [backward.signal_of(m) for m in meters]
    # one meter asked alone gets the same class as in a fleet
    assert signal_class_of(meters[7], MIX, 0) == forward.signal_of(meters[7])


def test_a_different_seed_gives_a_different_placement():
    meters = ids(200)
    first = [signal_class_of(m, MIX, 1) for m in meters]
    second = [signal_class_of(m, MIX, 2) for m in meters]
    assert first != second


def test_placement_follows_the_cells_mix():
    meters = ids(5000)
    network = RadioNetwork([CellSpec("C1", 0, 0, 10, 10, MIX)], dict.fromkeys(meters, "C1"), seed=7)
    counts = network.meters_per_signal_class("C1")
    assert sum(counts.values()) == 5000
    for signal, share in MIX.items():
        # three to four standard deviations at n = 5000
        assert counts[signal] / 5000 == pytest.approx(share, abs=0.025), signal


def test_classes_with_no_share_are_never_drawn():
    mix = {SC.GOOD: 0.5, SC.VERY_POOR: 0.5}
    drawn = {signal_class_of(m, mix, 3) for m in ids(500)}
    assert drawn == {SC.GOOD, SC.VERY_POOR}


def test_figures_per_cell_and_class():
    cell_of = {"A": "C1", "B": "C1", "C": "C2"}
    network = RadioNetwork(
        [CellSpec("C1", 0, 0, 5, 5), CellSpec("C2", 0, 0, 5, 5), CellSpec("C3", 0, 0, 5, 5)],
        cell_of,
    )
    assert network.meters_per_cell() == {"C1": 2, "C2": 1, "C3": 0}
    assert network.meters_in("C1") == ["A", "B"]
    assert sum(network.meters_per_signal_class().values()) == 3


HOLES = CoverageHoles(share=0.1, mean_in_service_s=3000.0, mean_out_of_service_s=1000.0)


def test_a_seeded_share_of_meters_sits_in_holes():
    service = HoleService(HOLES, seed=5)
    in_holes = [m for m in ids(5000) if service.in_hole(m)]
    assert len(in_holes) / 5000 == pytest.approx(0.1, abs=0.02)
    assert in_holes == [m for m in ids(5000) if HoleService(HOLES, seed=5).in_hole(m)]
    assert all(
        service.in_service(m, T0 + t) for m in ids(200) if m not in in_holes for t in (0, 1e5)
    )


def test_service_is_a_pure_function_of_seed_meter_and_time():
    holes = CoverageHoles(share=1.0, mean_in_service_s=600.0, mean_out_of_service_s=300.0)
    meters = ids(20)
    times = [T0 + random.Random(i).uniform(0, 7 * 86400) for i in range(200)]
    queries = [(m, t) for m in meters for t in times]
    first = HoleService(holes, seed=9)
    expected = {q: first.in_service(*q) for q in queries}
    random.Random(4).shuffle(queries)  # other order, and the cache thrashing between meters
    second = HoleService(holes, seed=9)
    assert {q: second.in_service(*q) for q in queries} == expected
    assert {q: second.in_service(*q) for q in queries} == expected  # asked again
    other_seed = HoleService(holes, seed=10)
    assert {q: other_seed.in_service(*q) for q in queries} != expected


def test_out_of_service_share_is_near_mean_out_over_the_cycle():
    holes = CoverageHoles(share=1.0, mean_in_service_s=3000.0, mean_out_of_service_s=1000.0)
    service = HoleService(holes, seed=11)
    rng = random.Random(0)
    samples = [
        service.in_service(m, T0 + rng.uniform(0, 60 * 86400)) for m in ids(500) for _ in range(40)
    ]
    out = samples.count(False) / len(samples)
    assert out == pytest.approx(holes.out_of_service_share, abs=0.02)
    assert holes.out_of_service_share == 0.25


def test_service_runs_have_the_mean_durations():
    holes = CoverageHoles(share=1.0, mean_in_service_s=3000.0, mean_out_of_service_s=1000.0)
    service = HoleService(holes, seed=12)
    runs: dict[bool, list[int]] = {True: [], False: []}
    step = 20.0
    for meter in ids(15):
        state, length = service.in_service(meter, T0), 0
        for k in range(1, 40_000):  # about nine days
            now = service.in_service(meter, T0 + k * step)
            if now == state:
                length += 1
                continue
            runs[state].append(length)
            state, length = now, 1
    mean_in = step * sum(runs[True][1:]) / len(runs[True][1:])
    mean_out = step * sum(runs[False][1:]) / len(runs[False][1:])
    assert mean_in == pytest.approx(3000, rel=0.15)
    assert mean_out == pytest.approx(1000, rel=0.15)


@settings(max_examples=200, deadline=None)
@given(
    meter=st.sampled_from(ids(30)),
    start=st.floats(0, 20 * 86400),
    span=st.floats(0, 3 * 86400),
)
def test_interrupted_agrees_with_sampling(meter, start, span):
    holes = CoverageHoles(share=1.0, mean_in_service_s=2000.0, mean_out_of_service_s=500.0)
    service = HoleService(holes, seed=13)  # windows of 160,000 s: spans cross them
    start += T0
    grid = [start + span * k / 200 for k in range(201)]
    seen_out = any(not service.in_service(meter, t) for t in grid)
    interrupted = service.interrupted(meter, start, start + span)
    if seen_out:
        assert interrupted
    if not interrupted:
        assert all(service.in_service(meter, t) for t in grid)


def test_a_meter_outside_holes_is_never_interrupted():
    service = HoleService(CoverageHoles(0.0, 10.0, 10.0), seed=1)
    assert not service.interrupted("SP0000001", T0, T0 + 1e7)
    assert service.in_service("SP0000001", T0)
