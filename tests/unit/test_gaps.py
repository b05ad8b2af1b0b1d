"""Missing block-load intervals as contiguous, bounded gaps; the queries behind them."""

from __future__ import annotations

import itertools
from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from hes_sim.hes.gaps import Gap, Window, completeness, find_gaps, incomplete_meters
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store import SqlStore

H = 900  # a 15-minute interval
T0 = 1_800_000_000  # on the grid: T0 % 900 == 0


def ends(*k: int) -> list[int]:
    """Interval ends T0 + k * H."""
    return [T0 + i * H for i in k]


def window(last_k: int, first_k: int = 1) -> Window:
    return Window(T0 + first_k * H, T0 + last_k * H, H)


def test_no_gap_when_every_interval_is_stored():
    assert find_gaps("M", ends(1, 2, 3, 4), window(4), max_intervals=96) == []


def test_one_missing_interval_spans_exactly_that_interval():
    [gap] = find_gaps("M", ends(1, 2, 4), window(4), max_intervals=96)
    assert gap == Gap("M", T0 + 2 * H, T0 + 3 * H, 1)
    assert gap.read_from == gap.end == T0 + 3 * H  # the range read asks for that entry only
    assert gap.ends() == ends(3)


def test_two_separate_gaps_are_two_ranges_oldest_first():
    gaps = find_gaps("M", ends(1, 4, 5, 8), window(8), max_intervals=96)
    assert gaps == [Gap("M", T0 + H, T0 + 3 * H, 2), Gap("M", T0 + 5 * H, T0 + 7 * H, 2)]
    assert [g.read_from for g in gaps] == ends(2, 6)


def test_a_long_gap_is_split_at_the_cap():
    gaps = find_gaps("M", ends(1, 12), window(12), max_intervals=4)
    assert [(g.start, g.end, g.intervals) for g in gaps] == [
        (T0 + 1 * H, T0 + 5 * H, 4),
        (T0 + 5 * H, T0 + 9 * H, 4),
        (T0 + 9 * H, T0 + 11 * H, 2),
    ]


def test_the_grace_period_leaves_the_newest_intervals_alone():
    now = T0 + 10 * H + 100
    grace = 2 * H + 300  # randomisation window plus two intervals
    settled = Window.settled(T0 + H, H, now - grace)
    assert settled.last_end == T0 + 7 * H  # 8, 9 and 10 may still arrive by push
    assert find_gaps("M", ends(1, 2, 3, 4, 5, 6, 7), settled, max_intervals=96) == []
    [gap] = find_gaps("M", ends(1, 2, 3, 4, 5, 6), settled, max_intervals=96)
    assert gap.end == T0 + 7 * H


def test_nothing_is_settled_before_the_first_interval_plus_grace():
    settled = Window.settled(T0 + H, H, T0 + H - 1)
    assert settled.count == 0
    assert find_gaps("M", [], settled, max_intervals=96) == []


def test_the_lookback_starts_the_window_on_the_grid():
    settled = Window.settled(T0 + H, H, T0 + 20 * H, not_before=T0 + 5 * H + 1)
    assert (settled.first_end, settled.last_end, settled.count) == (T0 + 6 * H, T0 + 20 * H, 15)


def test_a_meter_with_no_reads_at_all_misses_the_whole_window():
    assert find_gaps("M", [], window(5), max_intervals=96) == [Gap("M", T0, T0 + 5 * H, 5)]


def test_reads_off_the_grid_or_outside_the_window_do_not_fill_it():
    stored = [T0 + H + 1, T0, T0 + 9 * H, *ends(2, 3)]
    assert find_gaps("M", stored, window(3), max_intervals=96) == [Gap("M", T0, T0 + H, 1)]


@given(
    missing=st.sets(st.integers(min_value=1, max_value=60)),
    cap=st.integers(min_value=1, max_value=10),
)
def test_the_gaps_are_exactly_the_expected_minus_the_stored(missing: set[int], cap: int):
    w = window(60)
    stored = [e for e in w.ends() if (e - T0) // H not in missing]
    gaps = find_gaps("M", stored, w, max_intervals=cap)
    covered = [e for g in gaps for e in g.ends()]
    assert sorted(covered) == sorted(set(w.ends()) - set(stored))
    assert len(covered) == len(set(covered))  # no interval asked for twice
    assert all(1 <= g.intervals <= cap and g.end - g.start == g.intervals * H for g in gaps)
    assert all(a.end <= b.start for a, b in itertools.pairwise(gaps))
    # contiguous runs are merged: two gaps touch only where the cap split them
    assert all(a.intervals == cap for a, b in itertools.pairwise(gaps) if a.end == b.start)


# ------------------------------------------------------------------ the queries


async def store(db: SqlStore, meter_id: str, interval_ends: list[int]) -> None:
    reads = [ReadRecord(meter_id, end, "sp", 230, 1, 10, 0, 11, 0, {}, 0) for end in interval_ends]
    await db.add_reads(reads, 0)


async def test_incomplete_meters_returns_the_stored_ends_of_meters_missing_some(any_store):
    await store(any_store, "A", ends(1, 2, 3, 4))  # complete
    await store(any_store, "B", ends(1, 3, 9))  # misses 2 and 4; 9 is outside the window
    await store(any_store, "C", ends(2))  # not asked about
    query = partial(incomplete_meters, meter_ids=["A", "B", "D"], window=window(4))
    assert await any_store.run_sql(query) == {"B": ends(1, 3), "D": []}


async def test_completeness_counts_reads_on_the_grid_inside_the_window(any_store):
    await store(any_store, "A", ends(1, 2, 3, 4))
    await store(any_store, "B", [*ends(1, 3), T0 + H + 7])
    query = partial(completeness, meter_ids=["A", "B", "C"], window=window(4))
    figure = await any_store.run_sql(query)
    assert (figure.stored, figure.expected) == (6, 12)
    assert figure.ratio == 0.5
    empty = await any_store.run_sql(partial(completeness, meter_ids=[], window=window(4)))
    assert empty.ratio == 1.0
