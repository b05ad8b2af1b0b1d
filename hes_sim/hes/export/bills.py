"""Monthly bill records for billing: each consumer's determinants of a closed month from
the stored reads, and for a postpaid consumer the bill computed with the tariff.

A month is billed ``delay_s`` after it closes (local midnight on the 1st), so reads that
backfill recovers in that time count. Each record's key is ``bill:{meter}:{month}``: a
head-end restarted after the billing time bills the month again and the outbox keeps the
first record, so a bill is exported once. A consumer with no read in the month gets none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import Any, Self

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import StoreError
from hes_sim.hes.billing import (
    Bill,
    BillingMonth,
    MonthlyDeterminants,
    Tariff,
    monthly_determinants,
    postpaid_bill,
)
from hes_sim.hes.export import outbox
from hes_sim.hes.export.outbox import MONTHLY_BILL, ExportRecord
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.sql import Connection
from hes_sim.hes.store import SqlStore, read_from_row

log = structlog.get_logger(__name__)

METERS_PER_TRANSACTION = 200
DEFAULT_BILL_DELAY_S = 3600.0  # simulated: an hour for backfill after the month closes


@dataclass(frozen=True, slots=True)
class BillingOptions:
    tariff: Tariff
    sanctioned_kw: Callable[[str], Decimal]  # by meter id
    delay_s: float = DEFAULT_BILL_DELAY_S


def bill_key(meter_id: str, month: BillingMonth) -> str:
    return f"bill:{meter_id}:{month}"


def bill_record(
    determinants: MonthlyDeterminants, bill: Bill | None, created_at: float
) -> ExportRecord:
    """The ``monthly_bill`` export: determinants always, the bill for a postpaid consumer
    (None: prepaid, charged as the reads arrived)."""
    d = determinants
    payload: dict[str, Any] = {
        "meter_id": d.meter_id,
        "month": str(d.month),
        "mode": "postpaid" if bill is not None else "prepaid",
        "determinants": {
            "kwh_import": str(d.kwh_import),
            "kvah_import": str(d.kvah_import),
            "md_kw": str(d.md_kw),
            "md_kw_at": d.md_kw_at,
            "md_kva": str(d.md_kva),
            "md_kva_at": d.md_kva_at,
            "tou_kwh": [str(z) for z in d.tou_kwh],
            "intervals_present": d.intervals_present,
            "intervals_expected": d.intervals_expected,
            "complete": d.complete,
        },
    }
    if bill is not None:
        payload["bill"] = {
            "tariff": bill.tariff_name,
            "sanctioned_kw": str(bill.sanctioned_kw),
            "lines": [
                {
                    "kind": line.kind.value,
                    "description": line.description,
                    "quantity": None if line.quantity is None else str(line.quantity),
                    "rate": None if line.rate is None else str(line.rate),
                    "amount": str(line.amount),
                }
                for line in bill.lines
            ],
            "total": str(bill.total),
        }
    return ExportRecord(
        key=bill_key(d.meter_id, d.month),
        kind=MONTHLY_BILL,
        meter_id=d.meter_id,
        created_at=created_at,
        payload=payload,
    )


def month_reads(db: Connection, meter_id: str, start: float, end: float) -> list[ReadRecord]:
    """The meter's stored reads whose interval ends in (start, end]."""
    rows = db.execute(
        "SELECT meter_id, interval_end, layout, voltage_v, current_a, wh_import, wh_export,"
        " vah_import, vah_export, registers, received_at FROM block_load_reads"
        " WHERE meter_id = ? AND interval_end > ? AND interval_end <= ? ORDER BY interval_end",
        (meter_id, int(start), int(end)),
    )
    return [read_from_row(row) for row in rows]


def bill_counts(db: Connection) -> tuple[int, int]:
    """(bills in the outbox, of them delivered)."""
    row = db.execute(
        "SELECT count(*), count(delivered_at) FROM export_outbox WHERE kind = ?", (MONTHLY_BILL,)
    ).fetchone()
    return int(row[0]), int(row[1])


def bill_month(
    db: Connection,
    meter_ids: Sequence[str],
    month: BillingMonth,
    *,
    tz: tzinfo,
    interval_s: int,
    options: BillingOptions,
    postpaid: Callable[[str], bool],
    created_at: float,
) -> int:
    """Enqueue the month's records for these meters (one transaction); how many are new."""
    start, end = month.start(tz), month.end(tz)
    records = []
    for meter_id in meter_ids:
        # an interval belongs to the month of its middle: ends in (start, end]
        reads = month_reads(db, meter_id, start, end)
        if not reads:
            continue
        determinants = monthly_determinants(meter_id, reads, month, tz, interval_s)
        bill = None
        if postpaid(meter_id):
            bill = postpaid_bill(determinants, options.tariff, options.sanctioned_kw(meter_id))
        records.append(bill_record(determinants, bill, created_at))
    return outbox.enqueue(db, records)


class MonthlyBilling:
    """Bills each closed month once its delay has passed: an async context manager owning
    a ``billing:monthly`` task."""

    def __init__(
        self,
        store: SqlStore,
        clock: SimClock,
        *,
        tz: tzinfo,
        interval_s: int,
        options: BillingOptions,
        consumers: Callable[[], list[str]],
        postpaid: Callable[[str], bool],
        notify: Callable[[], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._tz = tz
        self._interval_s = interval_s
        self._options = options
        self._consumers = consumers
        self._postpaid = postpaid
        self._notify = notify
        self.billed: dict[str, int] = {}  # month -> records enqueued by this head-end
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._task = group.create_task(self._monthly(), name="billing:monthly")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._task.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _monthly(self) -> None:
        # the month before the one now running is billed at start if its time has passed
        # (a restart: the outbox keeps the first record of each)
        month = self._previous(BillingMonth.of_instant(self._clock.now(), self._tz))
        while True:
            due = month.end(self._tz) + self._options.delay_s
            await self._clock.sleep_until(due)
            await self.bill(month)
            month = month.next()

    async def bill(self, month: BillingMonth) -> int:
        """Enqueue the month's records for every consumer; a store error is logged and
        the month tried again a little later (the keys make a retry harmless)."""
        meters = self._consumers()
        new = 0
        for first in range(0, len(meters), METERS_PER_TRANSACTION):
            chunk = meters[first : first + METERS_PER_TRANSACTION]
            work = partial(bill_month, meter_ids=chunk, month=month, tz=self._tz,
                           interval_s=self._interval_s, options=self._options,
                           postpaid=self._postpaid, created_at=self._clock.now())  # fmt: skip
            while True:
                try:
                    new += await self._store.run_sql(work)
                    break
                except StoreError as exc:
                    log.warning("bills_not_enqueued", month=str(month), error=str(exc))
                    await asyncio.sleep(1.0)  # wall: the store's trouble, not the simulation's
        self.billed[str(month)] = self.billed.get(str(month), 0) + new
        log.info("month_billed", month=str(month), records=new, consumers=len(meters))
        if new:
            self._notify()
        return new

    @staticmethod
    def _previous(month: BillingMonth) -> BillingMonth:
        if month.month == 1:
            return BillingMonth(month.year - 1, 12)
        return BillingMonth(month.year, month.month - 1)
