"""Prepaid charging, interval by interval, that adds up to the monthly bill. Pure.

Slabs are monthly, so the price of a kWh depends on how much came before it in the month.
The state of a month is kept exactly (kWh per TOU zone) and the month-to-date charge is
the monthly rule applied to it: the rounded slab lines plus the rounded TOD line, as a
postpaid bill would have them. Each delta is charged as the difference of that rounded
running total, so the charges of a month always sum, to the paisa, to the bill of the
month's total consumption, however the consumption was split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from hes_sim.hes.billing.money import ZERO_RUPEES, check_quantity, kwh_from_wh
from hes_sim.hes.billing.period import BillingMonth
from hes_sim.hes.billing.tariff import Tariff
from hes_sim.meter_sim.billing import TOU_ZONE_STARTS, tou_zone

_NO_KWH = tuple(Decimal(0) for _ in TOU_ZONE_STARTS)


def month_to_date_charge(tariff: Tariff, zone_kwh: Sequence[Decimal]) -> Decimal:
    """Energy and TOD charge of a month's consumption so far (rounded line by line)."""
    return tariff.energy_charge(sum(zone_kwh, Decimal(0))) + tariff.tod_adjustment(zone_kwh)


def daily_fixed_charge(
    tariff: Tariff, sanctioned_kw: Decimal, day: int, days_in_month: int
) -> Decimal:
    """Fixed charge for day ``day`` (1-based) of a month, charged day by day.

    The difference of the pro-rata charge to date, so a month's daily charges sum to the
    monthly fixed charge exactly (7.33 a day would not: 30 x 7.33 is 219.90, not 220).
    """
    if not 1 <= day <= days_in_month:
        raise ValueError(f"day must be 1-{days_in_month}, not {day}")
    return tariff.fixed_charge(sanctioned_kw, day, days_in_month) - tariff.fixed_charge(
        sanctioned_kw, day - 1, days_in_month
    )


@dataclass(frozen=True, slots=True)
class PrepaidCharge:
    amount: Decimal  # rupees to debit; below zero only when a TOD factor under 1 lowers
    # the month's average, which a later delta can do
    state: MonthToDate  # the month after this charge


@dataclass(frozen=True, slots=True)
class MonthToDate:
    """What a prepaid account has consumed and been charged for energy this month."""

    month: BillingMonth
    zone_kwh: tuple[Decimal, ...] = _NO_KWH  # per meter TOU zone
    charged: Decimal = ZERO_RUPEES  # month_to_date_charge of zone_kwh

    def __post_init__(self) -> None:
        if len(self.zone_kwh) != len(TOU_ZONE_STARTS):
            raise ValueError(f"zone_kwh needs {len(TOU_ZONE_STARTS)} zones")

    @property
    def kwh(self) -> Decimal:
        return sum(self.zone_kwh, Decimal(0))

    def charge(self, tariff: Tariff, delta_kwh: Decimal, zone: int = 0) -> PrepaidCharge:
        """Charge ``delta_kwh`` consumed in meter TOU ``zone`` of this month."""
        check_quantity("delta_kwh", delta_kwh)
        if not 0 <= zone < len(self.zone_kwh):
            raise ValueError(f"zone must be 0-{len(self.zone_kwh) - 1}, not {zone}")
        zones = list(self.zone_kwh)
        zones[zone] += delta_kwh
        total = month_to_date_charge(tariff, zones)
        return PrepaidCharge(total - self.charged, MonthToDate(self.month, tuple(zones), total))

    def charge_interval(
        self, tariff: Tariff, interval_end: float, wh: int, tz: tzinfo, interval_s: float = 900
    ) -> PrepaidCharge:
        """Charge one block-load interval; an interval of a later month opens that month.

        An interval of an earlier month (a late backfill) is refused: it must be charged
        against that month's state, not this one's slabs.
        """
        if wh < 0:
            raise ValueError(f"wh must be >= 0, not {wh}")
        month = BillingMonth.of_interval(interval_end, interval_s, tz)
        if month < self.month:
            raise ValueError(
                f"the interval ending at {interval_end} is of {month}, not {self.month}"
            )
        state = self if month == self.month else MonthToDate(month)
        middle = datetime.fromtimestamp(interval_end - interval_s / 2, tz)
        return state.charge(tariff, kwh_from_wh(wh), tou_zone(middle))
