"""Daily and monthly (billing) values of one meter, accumulated as intervals close. Pure.

Every value is built from the same block energies as the block-load profile, so the
billing kWh of a month is exactly the sum of that month's blocks, and the TOU zones add
up to the total.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

# time-of-day zones by local start hour: off-peak night, morning, day, evening peak
TOU_ZONE_STARTS = (0, 6, 10, 18)
BILLING_HISTORY = 13  # months kept, as IS 15959 asks for the last twelve and the current
DAILY_HISTORY = 62


def tou_zone(local: datetime) -> int:
    """0-based zone of a local time."""
    zone = 0
    for index, start in enumerate(TOU_ZONE_STARTS):
        if local.hour >= start:
            zone = index
    return zone


@dataclass(frozen=True, slots=True)
class BillingRecord:
    """The billing profile row written at a billing reset (the 1st of a month, 00:00)."""

    reset_at: float
    cumulative_wh: int
    cumulative_vah: int
    tou_wh: tuple[int, ...]  # cumulative per zone
    md_w: int
    md_w_at: float
    md_va: int
    md_va_at: float
    average_pf: float  # kWh / kVAh of the month
    power_on_minutes: int


@dataclass(frozen=True, slots=True)
class DailyRecord:
    """The daily load profile row captured at local midnight."""

    at: float
    cumulative_wh: int
    cumulative_vah: int


@dataclass(slots=True)
class _Period:
    wh: int = 0
    vah: int = 0
    md_w: int = 0
    md_w_at: float = 0.0
    md_va: int = 0
    md_va_at: float = 0.0
    supplied_s: float = 0.0


@dataclass(slots=True)
class MeterLedger:
    cumulative_wh: int = 0
    cumulative_vah: int = 0
    tou_wh: list[int] = field(default_factory=lambda: [0] * len(TOU_ZONE_STARTS))
    period: _Period = field(default_factory=_Period)
    # made at the first record: an empty deque is about 760 bytes, and a meter of a short
    # run (or a fresh one) has neither a midnight nor a billing reset behind it
    _billing: deque[BillingRecord] | None = None
    _daily: deque[DailyRecord] | None = None

    @property
    def billing(self) -> Sequence[BillingRecord]:
        """Billing profile rows, oldest first (the last BILLING_HISTORY)."""
        return () if self._billing is None else self._billing

    @property
    def daily(self) -> Sequence[DailyRecord]:
        """Daily profile rows, oldest first (the last DAILY_HISTORY)."""
        return () if self._daily is None else self._daily

    def add_block(
        self, end: datetime, interval_s: float, wh: int, vah: int, supplied_s: float
    ) -> None:
        """Account one closed interval ending at the local time ``end``."""
        middle_zone = tou_zone(datetime.fromtimestamp(end.timestamp() - interval_s / 2, end.tzinfo))
        self.cumulative_wh += wh
        self.cumulative_vah += vah
        self.tou_wh[middle_zone] += wh
        period = self.period
        period.wh += wh
        period.vah += vah
        period.supplied_s += supplied_s
        demand_w = round(wh * 3600 / interval_s)
        demand_va = round(vah * 3600 / interval_s)
        if demand_w > period.md_w:
            period.md_w, period.md_w_at = demand_w, end.timestamp()
        if demand_va > period.md_va:
            period.md_va, period.md_va_at = demand_va, end.timestamp()
        if end.hour == 0 and end.minute == 0:
            if self._daily is None:
                self._daily = deque(maxlen=DAILY_HISTORY)
            record = DailyRecord(end.timestamp(), self.cumulative_wh, self.cumulative_vah)
            self._daily.append(record)
            if end.day == 1:
                self._reset(end.timestamp())

    def _reset(self, at: float) -> None:
        period = self.period
        if self._billing is None:
            self._billing = deque(maxlen=BILLING_HISTORY)
        self._billing.append(
            BillingRecord(
                reset_at=at,
                cumulative_wh=self.cumulative_wh,
                cumulative_vah=self.cumulative_vah,
                tou_wh=tuple(self.tou_wh),
                md_w=period.md_w,
                md_w_at=period.md_w_at,
                md_va=period.md_va,
                md_va_at=period.md_va_at,
                average_pf=round(period.wh / period.vah, 3) if period.vah else 1.0,
                power_on_minutes=round(period.supplied_s / 60),
            )
        )
        self.period = _Period()
