"""Monthly bill records: determinants and the postpaid bill from the stored reads, put in
the outbox once per consumer and month."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from hes_sim.hes.billing import BillingMonth, load_tariff, monthly_determinants, postpaid_bill
from hes_sim.hes.commands.lifecycle import INDIA
from hes_sim.hes.export import outbox
from hes_sim.hes.export.bills import BillingOptions, bill_counts, bill_month
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store import SqlStore
from hes_sim.hes.store_factory import open_store

ROOT = Path(__file__).resolve().parents[2]
UP = load_tariff(ROOT / "config" / "tariffs" / "up-lmv1-domestic-urban.yaml")
NOVEMBER = BillingMonth(2026, 11)
MIDNIGHT = int(datetime(2026, 12, 1, tzinfo=INDIA).timestamp())
OPTIONS = BillingOptions(UP, lambda _meter: Decimal(2))


def read(meter_id: str, interval_end: int, wh: int) -> ReadRecord:
    return ReadRecord(
        meter_id, interval_end, "single_phase", 230.0, 1.0, wh, 0, wh + 50, 0, {}, 0.0
    )


@pytest.fixture
async def store(store_location: str) -> AsyncIterator[SqlStore]:
    async with open_store(store_location, export_interval_s=900) as opened:  # both stores
        yield opened


async def test_a_month_is_billed_from_its_own_reads_once(store: SqlStore) -> None:
    # four intervals up to midnight are November's; the one ending at 00:15 is December's
    ends = [MIDNIGHT + 900 * k for k in range(-3, 2)]
    reads = [read("SP01", end, 1_000 * (k + 1)) for k, end in enumerate(ends)]
    reads.append(read("SP02", MIDNIGHT - 900, 700))
    await store.add_reads(reads, MIDNIGHT + 3_600)
    bill = partial(bill_month, meter_ids=["SP01", "SP02", "SP03"], month=NOVEMBER, tz=INDIA,
                   interval_s=900, options=OPTIONS, postpaid=lambda m: m != "SP02",
                   created_at=MIDNIGHT + 3_600)  # fmt: skip
    assert await store.run_sql(bill) == 2  # SP03 has no read in November: no record
    assert await store.run_sql(bill) == 0  # billed again (a restart): the first stands
    due = await store.run_sql(partial(outbox.due, now=MIDNIGHT + 7_200, limit=100))
    bills = {r.meter_id: r for r in due if r.kind == outbox.MONTHLY_BILL}
    assert set(bills) == {"SP01", "SP02"}
    assert bills["SP01"].key == "bill:SP01:2026-11"
    payload = json.loads(json.dumps(bills["SP01"].payload))  # what a sink sends
    november = [r for r in reads if r.meter_id == "SP01" and r.interval_end <= MIDNIGHT]
    expected = postpaid_bill(
        monthly_determinants("SP01", november, NOVEMBER, INDIA), UP, Decimal(2)
    )
    assert Decimal(payload["determinants"]["kwh_import"]) == Decimal(10)  # 1+2+3+4 kWh
    assert payload["determinants"]["intervals_present"] == 4
    assert payload["determinants"]["complete"] is False
    assert Decimal(payload["bill"]["total"]) == expected.total
    assert [line["amount"] for line in payload["bill"]["lines"]] == [
        str(line.amount) for line in expected.lines
    ]
    assert bills["SP02"].payload["mode"] == "prepaid"
    assert "bill" not in bills["SP02"].payload  # charged as the reads arrived
    assert await store.run_sql(bill_counts) == (2, 0)
