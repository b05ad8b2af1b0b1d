"""Tariffs, billing determinants, postpaid bills and prepaid charging. Pure, apart from
``load_tariff``; money is ``Decimal`` rupees rounded to the paisa per line item."""

from hes_sim.hes.billing.bill import Bill, LineItem, LineKind, postpaid_bill
from hes_sim.hes.billing.determinants import MonthlyDeterminants, monthly_determinants
from hes_sim.hes.billing.money import PAISA, kwh_from_wh, to_paise
from hes_sim.hes.billing.period import BillingMonth
from hes_sim.hes.billing.prepaid import (
    MonthToDate,
    PrepaidCharge,
    daily_fixed_charge,
    month_to_date_charge,
)
from hes_sim.hes.billing.tariff import EnergySlab, SlabCharge, Tariff, TodZone, load_tariff

__all__ = [
    "PAISA",
    "Bill",
    "BillingMonth",
    "EnergySlab",
    "LineItem",
    "LineKind",
    "MonthToDate",
    "MonthlyDeterminants",
    "PrepaidCharge",
    "SlabCharge",
    "Tariff",
    "TodZone",
    "daily_fixed_charge",
    "kwh_from_wh",
    "load_tariff",
    "month_to_date_charge",
    "monthly_determinants",
    "postpaid_bill",
    "to_paise",
]
