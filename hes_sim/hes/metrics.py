"""Prometheus metrics of the head-end, fed by domain events."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hes_sim.events import (
    BackfillRequested,
    CommandFinished,
    DecodeFailed,
    Event,
    ExportDelivered,
    ExportFailed,
    HeadEndSubscribed,
    LateAnswer,
    LightBack,
    LowBalance,
    MeterEventReceived,
    MeterOffline,
    MeterOnline,
    PrepaidDisconnected,
    ReadDuplicate,
    ReadsRecovered,
    ReadStored,
)

# simulated seconds; spans a prompt push (seconds) to a day-late one
DELAY_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


class StoredReads(Collector):
    """``hes_reads_stored`` and ``hes_read_delivery_delay_seconds``, counted per read.

    Every read the head-end stores passes here. A prometheus-client counter and histogram
    take a lock each and walk the buckets in Python (about a microsecond a read); these
    are plain counts, summed when scraped."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._bounds = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last: above every bound
        self._sum = 0.0

    def observe(self, delay: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, delay)] += 1
        self._sum += delay

    def collect(self) -> Iterator[Metric]:
        counts, total = list(self._counts), self._sum
        stored = sum(counts)
        yield CounterMetricFamily(
            "hes_reads_stored", "Block-load reads stored (first copy)", value=stored
        )
        cumulative, buckets = 0, []
        bounds = (*map(floatToGoString, self._bounds), "+Inf")
        for bound, count in zip(bounds, counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "hes_read_delivery_delay_seconds",
            "Interval end to read stored, in simulated seconds",
            buckets=buckets,
            sum_value=total,
        )


class HesMetrics:
    # the events this counts (the bus hands it no others)
    KINDS: ClassVar[tuple[type[Event], ...]] = (
        ReadStored, ReadDuplicate, DecodeFailed, HeadEndSubscribed, LateAnswer,
        CommandFinished, MeterEventReceived, BackfillRequested, ReadsRecovered,
        MeterOnline, MeterOffline,
    )  # fmt: skip

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        queue_depth: Callable[[], int],
        meters_online: Callable[[], int],
    ) -> None:
        self.registry = registry
        online = Gauge(
            "hes_meters_online", "Meters whose state topic says online", registry=registry
        )
        online.set_function(meters_online)
        self.stored_reads = StoredReads(DELAY_BUCKETS)
        registry.register(self.stored_reads)
        self.reads_duplicate = Counter(
            "hes_reads_duplicate",
            "Block-load reads received again and not stored",
            registry=registry,
        )
        self.decode_errors = Counter(
            "hes_decode_errors",
            "Messages rejected before storage, by reason",
            ["reason"],
            registry=registry,
        )
        self.meter_events = Counter(
            "hes_meter_events",
            "Events meters pushed as they happened (first copies), by IS 15959 code",
            ["code"],
            registry=registry,
        )
        self.command_duration = Histogram(
            "hes_command_duration_seconds",
            "Command created to its end, in simulated seconds, by type and outcome",
            ["type", "outcome"],
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.reconnection = Histogram(
            "hes_reconnection_seconds",
            "Reconnect requested to relay confirmed closed, in simulated seconds",
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.late_answers = Counter(
            "hes_late_answers",
            "Meter answers that came after the head-end gave up on the request (dropped, "
            "or refused by their invoke id)",
            registry=registry,
        )
        self.broker_sessions = Counter(
            "hes_broker_sessions",
            "Subscriptions made to the broker (more than one means reconnects)",
            registry=registry,
        )
        self.backfill_requests = Counter(
            "hes_backfill_requests",
            "Profile reads asked of meters to fill missing block-load intervals",
            registry=registry,
        )
        self.backfill_intervals = Counter(
            "hes_backfill_intervals_requested",
            "Missing block-load intervals covered by those requests",
            registry=registry,
        )
        self.reads_recovered = Counter(
            "hes_backfill_reads_recovered",
            "Block-load reads stored from profile reads that had not arrived by push",
            registry=registry,
        )
        self.presence_changes = Counter(
            "hes_meter_presence_changes",
            "Meters going online or offline, by new state",
            ["state"],
            registry=registry,
        )
        queue = Gauge("hes_ingest_queue_depth", "Messages waiting to be decoded", registry=registry)
        queue.set_function(queue_depth)

    def __call__(self, event: Event) -> None:
        if type(event) is ReadStored:  # first, and without a pattern: the commonest by far
            if not event.recovered:
                self.stored_reads.observe(event.delivery_delay)
            return
        self._count(event)

    def _count(self, event: Event) -> None:
        match event:
            case ReadDuplicate():
                self.reads_duplicate.inc()
            case DecodeFailed(reason=reason):
                self.decode_errors.labels(reason=reason).inc()
            case HeadEndSubscribed():
                self.broker_sessions.inc()
            case LateAnswer():
                self.late_answers.inc()
            case CommandFinished(type=kind, outcome=outcome, duration=duration):
                self.command_duration.labels(type=kind, outcome=outcome).observe(duration)
                if kind == "reconnect" and outcome == "confirmed":
                    self.reconnection.observe(duration)
            case MeterEventReceived(code=code, new=True):
                self.meter_events.labels(code=str(code)).inc()
            case BackfillRequested(intervals=intervals):
                self.backfill_requests.inc()
                self.backfill_intervals.inc(intervals)
            case ReadsRecovered(count_new=count):
                self.reads_recovered.inc(count)
            case MeterOnline() | MeterOffline():
                state = "online" if isinstance(event, MeterOnline) else "offline"
                self.presence_changes.labels(state=state).inc()
            case _:
                pass


class NodeGauges(Collector):
    """Gauges read when scraped: open commands by state, meters known, non-communicating."""

    def __init__(
        self,
        *,
        open_commands: Callable[[], Mapping[str, int]],
        meters_known: Callable[[], int],
        meters_online: Callable[[], int],
        meters_silent: Callable[[], int],
        silent_after_s: float,
        export_pending: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._export_pending = export_pending
        self._open_commands = open_commands
        self._meters_online = meters_online
        self._meters_known = meters_known
        self._meters_silent = meters_silent
        self._silent_after_s = silent_after_s

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "hes_commands_open",
            "Commands not yet finished, by state (queued ones wait for their meter)",
            labels=["state"],
        )
        for state, count in sorted(self._open_commands().items()):
            by_state.add_metric([state], count)
        yield by_state
        known = self._meters_known()
        yield GaugeMetricFamily(
            "hes_meters_known", "Meters in the asset register or heard from", value=known
        )
        yield GaugeMetricFamily(
            "hes_meters_offline",
            "Meters known but not online (offline, or not heard from since the start)",
            value=max(0, known - self._meters_online()),
        )
        pending = self._export_pending()
        if pending is not None:
            yield GaugeMetricFamily(
                "hes_export_pending", "Records in the export outbox not yet delivered",
                value=pending,
            )  # fmt: skip
        yield GaugeMetricFamily(
            "hes_meters_non_communicating",
            f"Meters silent for at least {self._silent_after_s:.0f} simulated seconds",
            value=self._meters_silent(),
        )


class BusinessMetrics:
    """Prepaid and billing-export metrics, fed by domain events."""

    KINDS: ClassVar[tuple[type[Event], ...]] = (
        LightBack,
        PrepaidDisconnected,
        LowBalance,
        ExportDelivered,
        ExportFailed,
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.recharge_to_light = Histogram(
            "hes_recharge_to_light_seconds",
            "Prepaid recharge accepted to relay confirmed closed, in simulated seconds",
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.prepaid_disconnections = Counter(
            "hes_prepaid_disconnections",
            "Automatic prepaid disconnections confirmed",
            registry=registry,
        )
        self.low_balance = Counter(
            "hes_low_balance_alerts",
            "Low-balance alerts, by threshold (share of the last recharge; 0: balance zero)",
            ["threshold"],
            registry=registry,
        )
        self.exported = Counter(
            "hes_export_records", "Records the billing sink acknowledged", ["sink"],
            registry=registry,
        )  # fmt: skip
        self.export_failures = Counter(
            "hes_export_failed_records",
            "Records a delivery attempt did not deliver (each attempt counts)",
            ["sink", "retriable"],
            registry=registry,
        )
        self.export_lag = Histogram(
            "hes_export_lag_seconds",
            "Oldest record of a delivered batch: enqueued to delivered, simulated seconds",
            buckets=DELAY_BUCKETS,
            registry=registry,
        )

    def __call__(self, event: Event) -> None:
        match event:
            case LightBack(recharge_to_light_s=seconds):
                self.recharge_to_light.observe(seconds)
            case PrepaidDisconnected():
                self.prepaid_disconnections.inc()
            case LowBalance(threshold=threshold):
                self.low_balance.labels(threshold=threshold).inc()
            case ExportDelivered(sink=sink, count=count, lag_max_s=lag):
                self.exported.labels(sink=sink).inc(count)
                self.export_lag.observe(lag)
            case ExportFailed(sink=sink, count=count, retriable=retriable):
                self.export_failures.labels(sink=sink, retriable=str(retriable).lower()).inc(count)
            case _:
                pass
