"""A retail tariff file (energy slabs, fixed charge, time-of-day factors) and its
arithmetic. Pure, apart from ``load_tariff``.

Rules, the same for a postpaid bill and for prepaid charging:

* energy: each kWh of the month is charged at the rate of the slab it falls in; one line
  per slab, each rounded to the paisa (ROUND_HALF_UP). The energy charge is the sum of
  the rounded slab lines.
* fixed charge: rate x sanctioned kW x days / days in the month, rounded once; a monthly
  bill is days = days in the month.
* time of day: the month's slab-average rate (the unrounded slab charge / kWh) times
  sum over zones of (zone kWh x (factor - 1)), rounded once. A zone with factor 1.20 thus
  costs 20% more than the slabs alone would charge on average, and with every factor 1
  the adjustment is nil. The slab-average rate is used because a monthly bill only knows
  each zone's kWh, not in which slab each of them fell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hes_sim.config_files import load_yaml_model
from hes_sim.hes.billing.money import EXACT, ZERO_RUPEES, check_quantity, to_paise
from hes_sim.meter_sim.billing import TOU_ZONE_STARTS

ONE = Decimal(1)
# rates in rupees to the paisa, as tariff orders publish them
Rate = Annotated[Decimal, Field(ge=0, decimal_places=2)]
Kwh = Annotated[Decimal, Field(ge=0, decimal_places=3)]
# the meter's zones end at these hours: a tariff zone must be whole meter zones
_MeterBoundaries = (*TOU_ZONE_STARTS, 24)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnergySlab(_Strict):
    """Consumption above ``from_kwh`` up to and including ``to_kwh`` in a month.

    A published slab "101-150 kWh" is from_kwh 100, to_kwh 150: meters count in Wh, so
    the slab takes everything above 100 kWh.
    """

    from_kwh: Kwh
    to_kwh: Kwh | None = Field(default=None, description="null: open-ended (the last slab)")
    rate: Rate = Field(description="rupees per kWh")

    def kwh_within(self, kwh: Decimal) -> Decimal:
        """How much of a month's ``kwh`` falls in this slab."""
        above = max(kwh - self.from_kwh, Decimal(0))
        return above if self.to_kwh is None else min(above, self.to_kwh - self.from_kwh)


class TodZone(_Strict):
    """Local hours [start_hour, end_hour) and the factor on the energy rate there."""

    name: str = Field(min_length=1)
    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=1, le=24)
    factor: Decimal = Field(default=ONE, ge=0, decimal_places=3)


ALL_DAY = (TodZone(name="all day", start_hour=0, end_hour=24),)


@dataclass(frozen=True, slots=True)
class SlabCharge:
    """One energy line: the kWh of the month in one slab, at its rate."""

    slab: int  # index in the tariff's energy_slabs
    from_kwh: Decimal
    to_kwh: Decimal | None
    kwh: Decimal
    rate: Decimal
    amount: Decimal  # rounded to the paisa


class Tariff(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    energy_slabs: tuple[EnergySlab, ...] = Field(min_length=1)
    fixed_charge_per_kw_month: Rate
    time_of_day: tuple[TodZone, ...] = ALL_DAY

    @field_validator("energy_slabs")
    @classmethod
    def _contiguous(cls, slabs: tuple[EnergySlab, ...]) -> tuple[EnergySlab, ...]:
        if slabs[0].from_kwh != 0:
            raise ValueError(f"0.from_kwh is {slabs[0].from_kwh}: the first slab starts at 0")
        for index, slab in enumerate(slabs):
            last = index == len(slabs) - 1
            if slab.to_kwh is None and not last:
                raise ValueError(f"{index}.to_kwh is null but only the last slab is open-ended")
            if slab.to_kwh is not None and last:
                raise ValueError(f"{index}.to_kwh must be null: the last slab is open-ended")
            if slab.to_kwh is not None and slab.to_kwh <= slab.from_kwh:
                raise ValueError(f"{index}.to_kwh {slab.to_kwh} is not above from_kwh")
            if index > 0:
                before = slabs[index - 1].to_kwh
                if slab.from_kwh != before:
                    how = (
                        "overlaps"
                        if before is not None and slab.from_kwh < before
                        else "leaves a gap after"
                    )
                    raise ValueError(
                        f"{index}.from_kwh {slab.from_kwh} {how} slab {index - 1}, "
                        f"which ends at {before}"
                    )
        return slabs

    @field_validator("time_of_day")
    @classmethod
    def _whole_day(cls, zones: tuple[TodZone, ...]) -> tuple[TodZone, ...]:
        if not zones:
            raise ValueError("give at least one zone (0 to 24 h)")
        expected_start = 0
        for index, zone in enumerate(zones):
            if zone.start_hour != expected_start:
                raise ValueError(
                    f"{index}.start_hour is {zone.start_hour}, expected {expected_start}: "
                    "zones run in order from 0 h to 24 h without gaps or overlaps"
                )
            if zone.end_hour <= zone.start_hour:
                raise ValueError(f"{index}.end_hour {zone.end_hour} is not after start_hour")
            if zone.end_hour not in _MeterBoundaries:
                raise ValueError(
                    f"{index}.end_hour {zone.end_hour} splits a meter TOU zone; zones must "
                    f"end at one of {_MeterBoundaries} h (the meter's zone boundaries)"
                )
            expected_start = zone.end_hour
        if expected_start != 24:
            raise ValueError(f"the last zone ends at {expected_start} h, not 24")
        return zones

    # ---- arithmetic -----------------------------------------------------------------

    @property
    def zone_factors(self) -> tuple[Decimal, ...]:
        """The factor of each meter TOU zone (``meter_sim.billing.TOU_ZONE_STARTS``)."""
        return tuple(
            next(z.factor for z in self.time_of_day if z.start_hour <= start < z.end_hour)
            for start in TOU_ZONE_STARTS
        )

    @property
    def has_tod(self) -> bool:
        return any(zone.factor != ONE for zone in self.time_of_day)

    def slab_charges(self, kwh_in_month: Decimal) -> tuple[SlabCharge, ...]:
        """The energy lines of a month's consumption: slabs it reaches, each rounded."""
        check_quantity("kwh_in_month", kwh_in_month)
        lines = []
        with localcontext(EXACT):
            for index, slab in enumerate(self.energy_slabs):
                within = slab.kwh_within(kwh_in_month)
                if within > 0:
                    amount = to_paise(within * slab.rate)
                    lines.append(
                        SlabCharge(index, slab.from_kwh, slab.to_kwh, within, slab.rate, amount)
                    )
        return tuple(lines)

    def energy_charge(self, kwh_in_month: Decimal) -> Decimal:
        """Sum of the rounded slab lines."""
        return sum((line.amount for line in self.slab_charges(kwh_in_month)), ZERO_RUPEES)

    def _exact_energy(self, kwh_in_month: Decimal) -> Decimal:
        with localcontext(EXACT):
            return sum((s.kwh_within(kwh_in_month) * s.rate for s in self.energy_slabs), Decimal(0))

    def average_rate(self, kwh_in_month: Decimal) -> Decimal:
        """Unrounded slab charge per kWh (the first slab's rate at 0 kWh)."""
        check_quantity("kwh_in_month", kwh_in_month)
        if kwh_in_month == 0:
            return self.energy_slabs[0].rate
        with localcontext(EXACT):
            return self._exact_energy(kwh_in_month) / kwh_in_month

    def fixed_charge(self, sanctioned_kw: Decimal, days: int, days_in_month: int) -> Decimal:
        """Fixed charge for ``days`` of a month: pro rata per day, whole month when equal."""
        check_quantity("sanctioned_kw", sanctioned_kw)
        if not 28 <= days_in_month <= 31:
            raise ValueError(f"days_in_month must be 28-31, not {days_in_month}")
        if not 0 <= days <= days_in_month:
            raise ValueError(f"days must be 0-{days_in_month}, not {days}")
        with localcontext(EXACT):
            return to_paise(self.fixed_charge_per_kw_month * sanctioned_kw * days / days_in_month)

    def tod_adjustment(self, zone_kwh: Sequence[Decimal]) -> Decimal:
        """TOD line for a month's kWh per meter TOU zone; nil when every factor is 1."""
        factors = self.zone_factors
        if len(zone_kwh) != len(factors):
            raise ValueError(f"expected kWh for {len(factors)} TOU zones, got {len(zone_kwh)}")
        for index, kwh in enumerate(zone_kwh):
            check_quantity(f"zone_kwh[{index}]", kwh)
        with localcontext(EXACT):
            weighted = sum(
                (kwh * (factor - ONE) for kwh, factor in zip(zone_kwh, factors, strict=True)),
                Decimal(0),
            )
            if weighted == 0:  # every factor 1, or no kWh where a factor is not
                return ZERO_RUPEES
            total = sum(zone_kwh, Decimal(0))
            # one division, last, so the only inexact step is far below the paisa
            return to_paise(self._exact_energy(total) * weighted / total)


def load_tariff(path: Path) -> Tariff:
    """Read and validate a tariff file; every problem names its file and field."""
    return load_yaml_model(path, Tariff, "tariff")
