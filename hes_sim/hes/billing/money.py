"""Money and energy as exact decimals. Pure.

Amounts are rupees as ``Decimal``; every line item of a bill (and every prepaid running
total) is rounded to the paisa with ROUND_HALF_UP once, at its end, never in between.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

PAISA = Decimal("0.01")
ZERO_RUPEES = Decimal("0.00")
# Enough digits that a division (a pro-rata day, a slab-average rate) carries no error
# that could move a half-paisa; the default context's 28 digits would do, but the default
# context is global and anyone may change it, so the arithmetic here names its own.
EXACT = Context(prec=50)


def to_paise(amount: Decimal) -> Decimal:
    """Round rupees to the paisa, halves away from zero (ROUND_HALF_UP)."""
    return amount.quantize(PAISA, rounding=ROUND_HALF_UP, context=EXACT)


def kwh_from_wh(wh: int) -> Decimal:
    """Exact kWh of a whole number of Wh (registers hold Wh with scaler 0)."""
    return Decimal(wh).scaleb(-3, context=EXACT)


def check_quantity(name: str, value: Decimal) -> None:
    """Refuse a quantity that is not a finite, non-negative number."""
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value}")
