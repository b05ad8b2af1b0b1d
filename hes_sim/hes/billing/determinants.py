"""Monthly billing determinants of a meter from its stored block-load reads. Pure.

Built the way the meter builds its billing profile (``meter_sim.billing``): an interval
belongs to the month and the TOU zone of its middle, maximum demand is the highest
block's energy over the interval (x4 for 15 minutes) with the end of that block, and ties
keep the earliest block. So determinants from complete reads equal the meter's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from hes_sim.hes.billing.money import kwh_from_wh
from hes_sim.hes.billing.period import BillingMonth
from hes_sim.hes.records import ReadRecord
from hes_sim.meter_sim.billing import TOU_ZONE_STARTS, tou_zone


@dataclass(frozen=True, slots=True)
class MonthlyDeterminants:
    meter_id: str
    month: BillingMonth
    kwh_import: Decimal
    kvah_import: Decimal
    md_kw: Decimal
    md_kw_at: int | None  # end of the block of maximum demand, simulated Unix seconds
    md_kva: Decimal
    md_kva_at: int | None
    tou_kwh: tuple[Decimal, ...]  # per meter TOU zone; sums to kwh_import
    intervals_present: int
    intervals_expected: int

    @property
    def complete(self) -> bool:
        """Every interval of the month read; a bill from fewer is an under-estimate."""
        return self.intervals_present >= self.intervals_expected

    @property
    def average_pf(self) -> Decimal | None:
        if self.kvah_import == 0:
            return None
        return (self.kwh_import / self.kvah_import).quantize(Decimal("0.001"))


def monthly_determinants(
    meter_id: str,
    reads: Iterable[ReadRecord],
    month: BillingMonth,
    tz: tzinfo,
    interval_s: int = 900,
) -> MonthlyDeterminants:
    """Determinants of ``month`` (local calendar of ``tz``) from one meter's reads.

    Reads of other months are skipped; a read of another meter is a caller's mistake and
    refused. A repeated interval counts once (the first seen), as the store keeps it.
    """
    if interval_s <= 0 or 3600 % interval_s:
        raise ValueError(f"interval_s must divide an hour, not {interval_s}")
    per_hour = 3600 // interval_s
    seen: set[int] = set()
    wh = vah = 0
    tou_wh = [0] * len(TOU_ZONE_STARTS)
    md_w = md_va = 0
    md_w_at: int | None = None
    md_va_at: int | None = None
    for read in sorted(reads, key=lambda r: r.interval_end):
        if read.meter_id != meter_id:
            raise ValueError(f"a read of {read.meter_id} among the reads of {meter_id}")
        end = read.interval_end
        if end in seen or BillingMonth.of_interval(end, interval_s, tz) != month:
            continue
        seen.add(end)
        wh += read.wh_import
        vah += read.vah_import
        tou_wh[tou_zone(datetime.fromtimestamp(end - interval_s / 2, tz))] += read.wh_import
        # strict > keeps the earliest of equal blocks, as the meter does
        if read.wh_import * per_hour > md_w:
            md_w, md_w_at = read.wh_import * per_hour, end
        if read.vah_import * per_hour > md_va:
            md_va, md_va_at = read.vah_import * per_hour, end
    expected = round(month.end(tz) - month.start(tz)) // interval_s
    return MonthlyDeterminants(
        meter_id=meter_id,
        month=month,
        kwh_import=kwh_from_wh(wh),
        kvah_import=kwh_from_wh(vah),
        md_kw=kwh_from_wh(md_w),
        md_kw_at=md_w_at,
        md_kva=kwh_from_wh(md_va),
        md_kva_at=md_va_at,
        tou_kwh=tuple(kwh_from_wh(z) for z in tou_wh),
        intervals_present=len(seen),
        intervals_expected=expected,
    )
