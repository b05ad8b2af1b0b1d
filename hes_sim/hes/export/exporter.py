"""Draining the export outbox into a sink, at least once, without hammering a sink that is down.

``export:drain`` takes the due records from the outbox (a bounded batch, the longest due
first), hands them to the sink and records what came of each in one transaction. It wakes
when ``notify()`` says records were enqueued, when the next retry falls due, and every
``poll_s`` in any case (records enqueued by another process, a notify forgotten).

A failure worth retrying puts the record back with its next attempt later, and pauses the
whole sink: one failing batch means the next is likely to fail too, so nothing is sent
before the pause ends, whatever else falls due. Both delays grow with the failures in a
row (capped) and are jittered so that head-ends restarting together do not retry in step.
A sink down for hours costs one attempt per ``retry_cap_s`` or so, and loses nothing: its
records stay pending. A failure not worth retrying parks the record (see ``outbox``).

Times are simulated seconds from the injected clock; sleeps are converted to wall time.
Shutdown is two-phase: the delivery under way may finish (so its outcome is recorded and
not repeated), for ``shutdown_grace_s`` wall seconds; then the drain is cancelled. A
delivery cut short is not lost either: its records are still pending, and go again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Protocol, Self

import structlog

from hes_sim.errors import StoreError
from hes_sim.events import EventBus, ExportDelivered, ExportFailed
from hes_sim.hes.export import outbox
from hes_sim.hes.export.outbox import ExportRecord, Failure, Settlement
from hes_sim.hes.export.policy import ExportSettings, retry_delay
from hes_sim.hes.export.reconcile import MeterReconciliation, reconcile
from hes_sim.hes.export.sinks import DeliveryResult, Sink
from hes_sim.hes.store import SqlStore
from hes_sim.stats import percentile

log = structlog.get_logger(__name__)

LAGS_KEPT = 10_000  # the most recent export lags, for percentiles


class ExportClock(Protocol):
    def now(self) -> float: ...

    def wall_seconds(self, sim_seconds: float) -> float: ...


@dataclass(frozen=True, slots=True)
class ExportFigures:
    exported: int  # records delivered by this exporter
    failed_attempts: int  # record deliveries that failed (each retry counts)
    sink_failures: int  # delivery attempts (batches) that failed and were backed off
    parked: int  # records in the outbox refused for good
    pending: int  # records in the outbox waiting for a delivery
    oldest_pending_age_s: float
    lag_p50_s: float | None  # simulated seconds from enqueued to delivered
    lag_p95_s: float | None
    lag_max_s: float | None

    def line(self) -> str:
        """One line for a run report."""
        lag = "n/a" if self.lag_max_s is None else (
            f"p50 {self.lag_p50_s} p95 {self.lag_p95_s} max {self.lag_max_s}"
        )  # fmt: skip
        return (
            f"export: {self.exported} delivered, {self.pending} pending"
            f" (oldest {self.oldest_pending_age_s:.0f} s), {self.parked} parked,"
            f" {self.failed_attempts} failed attempts in {self.sink_failures} back-offs;"
            f" lag (sim s) {lag}"
        )


class Exporter:
    def __init__(
        self,
        store: SqlStore,
        sink: Sink,
        clock: ExportClock,
        *,
        settings: ExportSettings | None = None,
        bus: EventBus | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._settings = settings or ExportSettings()
        self._bus = bus
        self._rng = rng or random.Random()
        self.exported = 0
        self.failed_attempts = 0
        self.sink_failures = 0
        self.parked = 0
        self.pending = 0  # as of the last look at the outbox
        self.lag_max_s: float | None = None
        self._lags: deque[float] = deque(maxlen=LAGS_KEPT)
        self._failures_in_row = 0
        self._resume_at = float("-inf")  # the sink is paused until then
        self._wake = asyncio.Event()
        self._draining = asyncio.Lock()
        self._stopping = False
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._task = group.create_task(self._drain_loop(), name="export:drain")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        try:
            if task is not None and not task.done():
                self._stopping = True
                self._wake.set()
                # phase one: the loop ends after the delivery under way, if quick enough
                await asyncio.wait({task}, timeout=self._settings.shutdown_grace_s)
        finally:
            # phase two, however phase one ended (a no-op once the loop has returned)
            if task is not None:
                task.cancel()
            await self._stack.__aexit__(exc_type, exc, tb)

    def notify(self) -> None:
        """Records were enqueued: look at the outbox now (unless the sink is paused)."""
        self._wake.set()

    @property
    def paused_until(self) -> float | None:
        """Until when the sink is left alone after a failure (None: not paused)."""
        return self._resume_at if self._resume_at > self._clock.now() else None

    # ---------------------------------------------------------------- figures

    def lag_percentile(self, q: float) -> float | None:
        return percentile(sorted(self._lags), q)

    async def figures(self) -> ExportFigures:
        counts = await self._store.run_sql(outbox.counts)
        self.pending = counts.pending
        return ExportFigures(
            exported=self.exported,
            failed_attempts=self.failed_attempts,
            sink_failures=self.sink_failures,
            parked=counts.parked,
            pending=counts.pending,
            oldest_pending_age_s=counts.oldest_pending_age(self._clock.now()),
            lag_p50_s=self.lag_percentile(50),
            lag_p95_s=self.lag_percentile(95),
            lag_max_s=None if self.lag_max_s is None else round(self.lag_max_s, 3),
        )

    async def reconcile(self, meter_ids: Iterable[str] | None = None) -> list[MeterReconciliation]:
        """Reads stored against reads exported, per meter."""
        return await self._store.run_sql(partial(reconcile, meter_ids=meter_ids))

    # ---------------------------------------------------------------- draining

    async def _drain_loop(self) -> None:
        while not self._stopping:
            # cleared before looking, so a notify from here on is not missed
            self._wake.clear()
            wake_at = await self._drain_step()
            if wake_at is None:
                continue  # a full batch went through: more may be due at once
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                delay = self._clock.wall_seconds(wake_at - self._clock.now())
                async with asyncio.timeout(max(0.0, delay)):
                    await self._wake.wait()

    async def _drain_step(self) -> float | None:
        """Deliver what is due, if the sink is not paused; when to look again (None: now)."""
        now = self._clock.now()
        if now < self._resume_at:
            return self._resume_at
        try:
            attempted = await self.drain_once()
            backlog = await self._store.run_sql(outbox.backlog)
        except StoreError:
            # the store busy or gone: the records are safe in it; look again later
            log.exception("export_drain_failed")
            return now + self._settings.retry_base_s
        self.pending = backlog.pending
        if attempted == self._settings.batch_size and self.paused_until is None:
            return None
        wake_at = now + self._settings.poll_s
        if backlog.next_due_at is not None:
            wake_at = min(wake_at, backlog.next_due_at)
        return max(wake_at, self._resume_at)

    async def drain_once(self) -> int:
        """Deliver one batch of due records (none while the sink is paused); how many
        were attempted."""
        async with self._draining:
            now = self._clock.now()
            if now < self._resume_at:
                return 0
            batch = await self._store.run_sql(
                partial(outbox.due, now=now, limit=self._settings.batch_size)
            )
            if not batch:
                return 0
            results = await self._deliver(batch)
            await self._settle(batch, results)
            return len(batch)

    async def _deliver(self, batch: Sequence[ExportRecord]) -> dict[str, DeliveryResult]:
        try:
            results = await self._sink.deliver(batch)
        except Exception as exc:
            # a sink's bug must not stop the export; the records stay pending
            log.exception("export_sink_raised", sink=self._sink.name)
            reason = f"sink raised {type(exc).__name__}: {exc}"
            return {r.key: DeliveryResult.failed(r.key, reason, retriable=True) for r in batch}
        by_key = {result.key: result for result in results}
        for record in batch:
            if record.key not in by_key:  # a sink that forgot one: it was not delivered
                by_key[record.key] = DeliveryResult.failed(
                    record.key, "no result from the sink", retriable=True
                )
        return by_key

    async def _settle(
        self, batch: Sequence[ExportRecord], results: dict[str, DeliveryResult]
    ) -> None:
        at = self._clock.now()
        outcome = _Outcome.of(batch, results)
        pause = 0.0
        if outcome.retriable:
            pause = self._delay(self._failures_in_row)
            self._failures_in_row += 1
            self.sink_failures += 1
        else:
            self._failures_in_row = 0
        self._resume_at = at + pause
        # never due before the sink's pause ends, and later if a record has failed more
        # often than the sink has (one the sink keeps failing on its own); one time for
        # the batch, so that it goes again as one batch
        retry_at = None
        if outcome.retriable:
            most = max(r.attempts for r, _why in outcome.retriable)
            retry_at = at + max(pause, self._delay(most))
        failures = [Failure(r.key, why, retry_at) for r, why in outcome.retriable]
        failures += [Failure(r.key, why, None) for r, why in outcome.refused]
        settlement = Settlement([r.key for r in outcome.delivered], failures)
        await self._store.run_sql(partial(outbox.settle, at=at, settlement=settlement))
        self._account(at, outcome, pause)

    def _delay(self, failures: int) -> float:
        s = self._settings
        return retry_delay(failures, s.retry_base_s, s.retry_cap_s, self._rng)

    def _account(self, at: float, outcome: _Outcome, pause: float) -> None:
        sink = self._sink.name
        if outcome.delivered:
            lags = [max(0.0, at - r.created_at) for r in outcome.delivered]
            self._lags.extend(lags)
            self.lag_max_s = max([*lags, self.lag_max_s or 0.0])
            self.exported += len(lags)
            self._emit(ExportDelivered(sink, len(lags), max(lags)))
        for failed, worth_retrying in ((outcome.retriable, True), (outcome.refused, False)):
            if failed:
                self.failed_attempts += len(failed)
                self._emit(ExportFailed(sink, len(failed), worth_retrying, failed[0][1], at))
        if outcome.refused:
            self.parked += len(outcome.refused)
            log.warning("export_records_parked", sink=sink, records=len(outcome.refused),
                        reason=outcome.refused[0][1])  # fmt: skip
        if outcome.retriable:
            log.warning("export_delivery_failed", sink=sink, records=len(outcome.retriable),
                        reason=outcome.retriable[0][1], pause_s=round(pause, 3),
                        failures_in_row=self._failures_in_row)  # fmt: skip
        log.debug("export_batch", sink=sink, delivered=len(outcome.delivered),
                  retriable=len(outcome.retriable), refused=len(outcome.refused))  # fmt: skip

    def _emit(self, event: ExportDelivered | ExportFailed) -> None:
        if self._bus is not None:
            self._bus.emit(event)


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivered: list[ExportRecord]
    retriable: list[tuple[ExportRecord, str]]  # with the reason
    refused: list[tuple[ExportRecord, str]]

    @classmethod
    def of(cls, batch: Sequence[ExportRecord], results: dict[str, DeliveryResult]) -> _Outcome:
        outcome = cls([], [], [])
        for record in batch:
            result = results[record.key]
            if result.ok:
                outcome.delivered.append(record)
            elif result.retriable:
                outcome.retriable.append((record, result.reason))
            else:
                outcome.refused.append((record, result.reason))
        return outcome
