"""The run's export to billing: the sink the scenario names, the billing endpoint of the
run's own when a webhook has no URL, its outages, and the export figures."""

from __future__ import annotations

import asyncio
import contextlib
import csv
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from pathlib import Path

import structlog

from hes_sim.clock import SimClock
from hes_sim.hes.billing import load_tariff
from hes_sim.hes.export.bills import BillingOptions, bill_counts
from hes_sim.hes.export.cim import CimXmlSink
from hes_sim.hes.export.exporter import Exporter
from hes_sim.hes.export.files import CsvSink, JsonLinesSink
from hes_sim.hes.export.policy import ExportSettings
from hes_sim.hes.export.sinks import Sink
from hes_sim.hes.export.webhook import WebhookSink
from hes_sim.hes.node import ExportOptions
from hes_sim.hes.store import SqlStore
from hes_sim.runner.billing_endpoint import BillingEndpoint
from hes_sim.scenario.model import ExportSpec
from hes_sim.scenario.report import ExportReport, Percentiles

log = structlog.get_logger(__name__)
DRAIN_CHECK_WALL_S = 0.2


@contextlib.asynccontextmanager
async def billing_endpoint(spec: ExportSpec | None) -> AsyncIterator[BillingEndpoint | None]:
    """The run's own billing endpoint, when the export is a webhook without a URL."""
    if spec is None or spec.sink != "webhook" or spec.url is not None:
        yield None
        return
    endpoint = BillingEndpoint()
    await endpoint.start()
    try:
        yield endpoint
    finally:
        await endpoint.stop()


def export_options(
    spec: ExportSpec,
    endpoint: BillingEndpoint | None,
    report_dir: Path,
    interval_s: int,
    sanctioned_kw: Callable[[str], Decimal],
) -> ExportOptions:
    def sink() -> contextlib.AbstractAsyncContextManager[Sink]:
        match spec.sink:
            case "webhook":
                return WebhookSink(spec.url or (endpoint.url if endpoint else ""))
            case "csv":
                return contextlib.nullcontext(CsvSink(spec.path or report_dir / "export.csv"))
            case "jsonl":
                return contextlib.nullcontext(
                    JsonLinesSink(spec.path or report_dir / "export.jsonl")
                )
            case _:
                return contextlib.nullcontext(CimXmlSink(spec.path or report_dir / "export-cim"))

    settings = ExportSettings(
        batch_size=spec.batch_size, retry_base_s=spec.retry_base, retry_cap_s=spec.retry_cap
    )
    bills = None
    if spec.with_bills and spec.tariff is not None:  # load_scenario resolves the tariff
        bills = BillingOptions(load_tariff(spec.tariff), sanctioned_kw, spec.bill_delay)
    return ExportOptions(sink, settings, interval_s, bills)


async def endpoint_outages(
    spec: ExportSpec, endpoint: BillingEndpoint, clock: SimClock, start: float
) -> None:
    """Take the run's billing endpoint down and bring it back at the scenario's times."""
    for outage in sorted(spec.endpoint_outages, key=lambda o: o.at):
        await clock.sleep_until(start + outage.at)
        await endpoint.stop()
        log.info("billing_endpoint_down", duration_s=outage.duration)
        await clock.sleep_until(start + outage.at + outage.duration)
        await endpoint.start()
        log.info("billing_endpoint_back")


async def drained(exporter: Exporter, clock: SimClock, within_sim_s: float) -> None:
    """Until nothing is pending, or ``within_sim_s`` has passed (the report says which)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(clock.wall_seconds(within_sim_s)):
            # another component's queue, in the store: nothing to await but its count
            while (await exporter.figures()).pending:  # noqa: ASYNC110
                await asyncio.sleep(DRAIN_CHECK_WALL_S)


async def export_report(
    spec: ExportSpec,
    exporter: Exporter,
    endpoint: BillingEndpoint | None,
    reads_stored: int,
    store: SqlStore,
) -> ExportReport:
    figures = await exporter.figures()
    reconciliation = await exporter.reconcile()
    lags = Percentiles(
        p50=figures.lag_p50_s, p95=figures.lag_p95_s, p99=None, max=figures.lag_max_s
    )
    exported = sum(m.exported for m in reconciliation)
    bills_enqueued, bills_exported = await store.run_sql(bill_counts)
    return ExportReport(
        sink=spec.sink if spec.url or spec.sink != "webhook" else "webhook (the run's own)",
        reads_stored=reads_stored,
        exported=exported,
        pending=figures.pending,
        parked=figures.parked,
        failed_attempts=figures.failed_attempts,
        lag_seconds=lags,
        completeness=round(exported / reads_stored, 6) if reads_stored else 1.0,
        applied_at_sink=None if endpoint is None else len(endpoint.applied),
        applied_twice=(
            None if endpoint is None else sum(1 for n in endpoint.applications.values() if n > 1)
        ),
        redelivered=None if endpoint is None else endpoint.redelivered,
        meters_incomplete=sum(1 for m in reconciliation if m.exported < m.stored),
        bills_enqueued=bills_enqueued,
        bills_exported=bills_exported,
    )


async def write_reconciliation(
    exporter: Exporter, produced_by: Mapping[str, int], path: Path
) -> list[str]:
    """Per meter: reads the meter produced, stored, put in the outbox, exported. Writes
    ``path`` (CSV) and returns the meters not fully exported."""
    rows = await exporter.reconcile()
    meters = sorted(set(produced_by) | {m.meter_id for m in rows})
    by_meter = {m.meter_id: m for m in rows}
    incomplete: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["meter_id", "produced", "stored", "enqueued", "exported", "complete"])
        for meter_id in meters:
            row = by_meter.get(meter_id)
            stored, enqueued, exported = (0, 0, 0) if row is None else (
                row.stored, row.enqueued, row.exported
            )  # fmt: skip
            complete = exported == stored == produced_by.get(meter_id, stored)
            if not complete:
                incomplete.append(meter_id)
            writer.writerow([meter_id, produced_by.get(meter_id, 0), stored, enqueued, exported,
                             "yes" if complete else "no"])  # fmt: skip
    return incomplete
