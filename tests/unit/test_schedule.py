from hes_sim.meter_sim.schedule import IntervalSchedule


def test_aligned_start():
    schedule = IntervalSchedule(9_000, 9_000 + 3_600, 900)
    assert schedule.interval_ends() == [9_900, 10_800, 11_700, 12_600]
    assert schedule.count == 4


def test_unaligned_start_and_end():
    schedule = IntervalSchedule(9_100, 11_000, 900)
    assert schedule.interval_ends() == [9_900, 10_800]
    assert schedule.count == 2


def test_shorter_than_one_interval():
    schedule = IntervalSchedule(9_100, 9_800, 900)
    assert schedule.interval_ends() == []
    assert schedule.count == 0
