"""Which block-load reads are missing, as ranges a profile read can fetch.

Pure arithmetic on simulated Unix seconds (interval ends, as the reads are keyed), plus
two queries run on the store's thread through ``store.run_sql`` (SQLite or PostgreSQL).

A meter's range selective access returns the entries whose time stamp (the interval's
end) lies in ``[from, to]``, both bounds included. A :class:`Gap` therefore spans
``(start, end]`` — the first missing interval's beginning to the last one's end — and is
read as ``[read_from, end]``: asking from ``start`` would also return the entry stamped
``start``, the interval just before the gap, which is already stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from hes_sim.hes.sql import Connection, Dialect


@dataclass(frozen=True, slots=True)
class Window:
    """The interval ends every meter should have: ``first_end``, ``first_end +
    interval_s``, … up to ``last_end`` included (empty when ``last_end < first_end``)."""

    first_end: int
    last_end: int
    interval_s: int

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {self.interval_s}")
        if self.last_end >= self.first_end and (self.last_end - self.first_end) % self.interval_s:
            raise ValueError(f"last_end {self.last_end} is not on the grid of {self.first_end}")

    @classmethod
    def settled(
        cls,
        first_end: float,
        interval_s: int,
        settled_until: float,
        *,
        not_before: float | None = None,
    ) -> Window:
        """The expected ends from ``first_end`` up to ``settled_until`` (a read newer than
        that may still be on its way: push randomisation, a retry, a flushed outbox),
        starting no earlier than ``not_before`` (how far back a scan looks)."""
        first = int(first_end)
        if not_before is not None and not_before > first:
            first += math.ceil((not_before - first) / interval_s) * interval_s
        steps = math.floor((settled_until - first) / interval_s)
        return cls(first, first + steps * interval_s, interval_s)

    @property
    def count(self) -> int:
        return max(0, (self.last_end - self.first_end) // self.interval_s + 1)

    def ends(self) -> range:
        return range(self.first_end, self.last_end + 1, self.interval_s)

    def __contains__(self, end: object) -> bool:
        return (
            isinstance(end, int | float)
            and self.first_end <= end <= self.last_end
            and (end - self.first_end) % self.interval_s == 0
        )


@dataclass(frozen=True, slots=True)
class Gap:
    """Contiguous missing intervals of one meter: ``(start, end]``, ``intervals`` of them."""

    meter_id: str
    start: float  # the first missing interval's beginning
    end: float  # the last missing interval's end
    intervals: int

    @property
    def interval_s(self) -> float:
        return (self.end - self.start) / self.intervals

    @property
    def read_from(self) -> float:
        """The first missing entry's time stamp: the lower bound of a range read."""
        return self.start + self.interval_s

    def ends(self) -> list[float]:
        return [self.start + k * self.interval_s for k in range(1, self.intervals + 1)]


def find_gaps(
    meter_id: str, stored: Iterable[float], window: Window, *, max_intervals: int
) -> list[Gap]:
    """The window's missing intervals as contiguous gaps, oldest first, none longer than
    ``max_intervals`` (a long outage becomes several reads of bounded size)."""
    if max_intervals < 1:
        raise ValueError(f"max_intervals must be at least 1, got {max_intervals}")
    have = {int(end) for end in stored if end in window}
    gaps: list[Gap] = []
    for first, count in _runs(window, have, max_intervals):
        start = first - window.interval_s
        gaps.append(Gap(meter_id, float(start), float(start + count * window.interval_s), count))
    return gaps


def _runs(window: Window, have: set[int], cap: int) -> Iterator[tuple[int, int]]:
    """(first missing end, how many) for each run of missing ends, split at ``cap``."""
    first: int | None = None
    count = 0
    for end in window.ends():
        if end in have:
            if first is not None:
                yield first, count
            first, count = None, 0
            continue
        if first is None:
            first = end
        count += 1
        if count == cap:
            yield first, count
            first, count = None, 0
    if first is not None:
        yield first, count


# ------------------------------------------------------------------ queries


@dataclass(frozen=True, slots=True)
class Completeness:
    stored: int
    expected: int

    @property
    def ratio(self) -> float:
        return self.stored / self.expected if self.expected else 1.0


# The meters come in as one parameter (a JSON array in SQLite, an array in PostgreSQL), so
# a fleet of any size is one statement (no host-parameter limit) and each meter is a range
# scan of the primary key (meter_id, interval_end) rather than a pass over the whole table.
_MEMBER: dict[Dialect, str] = {
    "sqlite": "meter_id IN (SELECT value FROM json_each(?))",
    "postgresql": "meter_id = ANY(?)",
}
_ENDS: dict[Dialect, str] = {  # a meter's stored ends, comma separated
    "sqlite": "group_concat(interval_end)",
    "postgresql": "string_agg(CAST(interval_end AS TEXT), ',')",
}


def _on_grid(dialect: Dialect) -> str:
    return f"""
FROM block_load_reads
WHERE {_MEMBER[dialect]}
  AND interval_end BETWEEN ? AND ?
  AND (interval_end - ?) % ? = 0
"""


_INCOMPLETE = {
    dialect: f"SELECT meter_id, count(*), CASE WHEN count(*) < ? THEN {_ENDS[dialect]} END"
    f"{_on_grid(dialect)}GROUP BY meter_id"
    for dialect in _MEMBER
}
_STORED = {dialect: f"SELECT count(*){_on_grid(dialect)}" for dialect in _MEMBER}


def _parameters(db: Connection, meter_ids: Collection[str], window: Window) -> list[object]:
    """The parameters of ``_on_grid``."""
    meters = sorted(set(meter_ids))
    listed = json.dumps(meters) if db.dialect == "sqlite" else meters
    first, last, step = window.first_end, window.last_end, window.interval_s
    return [listed, first, last, first, step]


def incomplete_meters(
    db: Connection, meter_ids: Collection[str], window: Window
) -> dict[str, list[int]]:
    """The stored interval ends, within the window, of each of ``meter_ids`` that misses
    any (a meter with none stored maps to an empty list). Complete meters are left out:
    the database counts them and their ends never leave it. One statement for the whole fleet."""
    if not meter_ids or window.count == 0:
        return {}
    found: dict[str, list[int]] = {meter_id: [] for meter_id in meter_ids}
    parameters = [window.count, *_parameters(db, meter_ids, window)]
    for meter_id, _count, ends in db.execute(_INCOMPLETE[db.dialect], parameters):
        if ends is None:
            del found[meter_id]
        else:
            found[meter_id] = sorted(int(end) for end in str(ends).split(","))
    return found


def completeness(db: Connection, meter_ids: Collection[str], window: Window) -> Completeness:
    """Reads stored over reads expected, for these meters over the window."""
    expected = len(set(meter_ids)) * window.count
    if expected == 0:
        return Completeness(0, 0)
    parameters = _parameters(db, meter_ids, window)
    stored = db.execute(_STORED[db.dialect], parameters).fetchone()[0]
    return Completeness(int(stored), expected)
