"""The billing month: a calendar month of the local time zone. Pure.

A block-load interval belongs to the month its middle falls in, so the block ending at
00:00 on the 1st is the last block of the month before. That is where the meter makes its
billing reset (``meter_sim.billing``), so head-end and meter agree on every month.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, tzinfo


@dataclass(frozen=True, slots=True, order=True)
class BillingMonth:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"month must be 1-12, not {self.month}")
        if not 1970 <= self.year <= 9998:
            raise ValueError(f"year {self.year} is out of range")

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @classmethod
    def of_instant(cls, at: float, tz: tzinfo) -> BillingMonth:
        local = datetime.fromtimestamp(at, tz)
        return cls(local.year, local.month)

    @classmethod
    def of_interval(cls, interval_end: float, interval_s: float, tz: tzinfo) -> BillingMonth:
        """The month of the interval ending at ``interval_end`` (by its middle)."""
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        return cls.of_instant(interval_end - interval_s / 2, tz)

    @property
    def days(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    def next(self) -> BillingMonth:
        if self.month == 12:
            return BillingMonth(self.year + 1, 1)
        return BillingMonth(self.year, self.month + 1)

    def start(self, tz: tzinfo) -> float:
        """Unix seconds of local 00:00 on the 1st."""
        return datetime(self.year, self.month, 1, tzinfo=tz).timestamp()

    def end(self, tz: tzinfo) -> float:
        """Unix seconds of local 00:00 on the 1st of the next month."""
        return self.next().start(tz)
