"""A postpaid monthly bill from determinants and a tariff. Pure.

Line items are rounded to the paisa each (see ``tariff``); the total is their sum, so a
bill always adds up as printed. Energy and TOD lines are exactly what prepaid charging
(``prepaid``) sums to over the same month.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from hes_sim.hes.billing.determinants import MonthlyDeterminants
from hes_sim.hes.billing.money import ZERO_RUPEES, check_quantity
from hes_sim.hes.billing.tariff import Tariff


class LineKind(StrEnum):
    ENERGY = "energy"
    FIXED = "fixed"
    TOD = "tod"


@dataclass(frozen=True, slots=True)
class LineItem:
    kind: LineKind
    description: str
    amount: Decimal  # rupees, rounded to the paisa
    quantity: Decimal | None = None  # kWh of a slab, kW of a fixed charge
    rate: Decimal | None = None  # rupees per kWh, or per kW-month


@dataclass(frozen=True, slots=True)
class Bill:
    determinants: MonthlyDeterminants
    tariff_name: str
    sanctioned_kw: Decimal
    lines: tuple[LineItem, ...]
    total: Decimal

    def __post_init__(self) -> None:
        if self.total != self._sum():
            raise ValueError(f"total {self.total} is not the sum of the lines, {self._sum()}")

    def _sum(self, kind: LineKind | None = None) -> Decimal:
        return sum(
            (line.amount for line in self.lines if kind is None or line.kind is kind),
            ZERO_RUPEES,
        )

    @property
    def energy_charge(self) -> Decimal:
        return self._sum(LineKind.ENERGY)

    @property
    def fixed_charge(self) -> Decimal:
        return self._sum(LineKind.FIXED)

    @property
    def tod_adjustment(self) -> Decimal:
        return self._sum(LineKind.TOD)


def _slab_label(from_kwh: Decimal, to_kwh: Decimal | None) -> str:
    if to_kwh is None:
        return f"energy above {from_kwh:f} kWh"
    return f"energy {from_kwh:f}-{to_kwh:f} kWh"


def postpaid_bill(
    determinants: MonthlyDeterminants, tariff: Tariff, sanctioned_kw: Decimal
) -> Bill:
    """The month's bill: a line per slab reached, the fixed charge for the whole month,
    and a TOD line when the tariff has a factor other than 1."""
    check_quantity("sanctioned_kw", sanctioned_kw)
    lines = [
        LineItem(LineKind.ENERGY, _slab_label(s.from_kwh, s.to_kwh), s.amount, s.kwh, s.rate)
        for s in tariff.slab_charges(determinants.kwh_import)
    ]
    days = determinants.month.days
    lines.append(
        LineItem(
            LineKind.FIXED,
            f"fixed charge, {sanctioned_kw:f} kW sanctioned",
            tariff.fixed_charge(sanctioned_kw, days, days),
            sanctioned_kw,
            tariff.fixed_charge_per_kw_month,
        )
    )
    if tariff.has_tod:
        factors = ", ".join(f"{z.name} x{z.factor:f}" for z in tariff.time_of_day)
        lines.append(
            LineItem(
                LineKind.TOD,
                f"time-of-day adjustment ({factors})",
                tariff.tod_adjustment(determinants.tou_kwh),
            )
        )
    total = sum((line.amount for line in lines), ZERO_RUPEES)
    return Bill(determinants, tariff.name, sanctioned_kw, tuple(lines), total)
