"""One head-end, whole: store, ingest, presence, commands, backfill, operator API.

The composition roots (``hes-sim run`` and ``hes-sim headend``) build one of these; it
is an async context manager that opens its parts in order and closes them in reverse,
so a head-end stopped at any point leaves its store consistent for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError
from hes_sim.events import EventBus, LateAnswer, ReadStored
from hes_sim.hes import inventory as register
from hes_sim.hes.api.server import ApiServer
from hes_sim.hes.backfill import Backfill, BackfillSettings
from hes_sim.hes.billing import Tariff
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.counter_store import PersistentCounter
from hes_sim.hes.desk import OperatorDesk
from hes_sim.hes.export.bills import BillingOptions, MonthlyBilling
from hes_sim.hes.export.exporter import Exporter
from hes_sim.hes.export.policy import ExportSettings
from hes_sim.hes.export.sinks import Sink
from hes_sim.hes.ingest import PushPolicy
from hes_sim.hes.ingest_workers.pool import IngestWorkers
from hes_sim.hes.inventory import Inventory, MeterInfo
from hes_sim.hes.meter_sessions import Exchange, MeterSessions
from hes_sim.hes.metrics import NodeGauges
from hes_sim.hes.operations import DEFAULT_SILENCE_S
from hes_sim.hes.prepaid.account import Mode
from hes_sim.hes.prepaid.engine import PrepaidEngine
from hes_sim.hes.prepaid.policy import DisconnectionPolicy
from hes_sim.hes.service import HeadEnd, SilencePolicy
from hes_sim.hes.store_factory import open_store
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.meter import CONSUMER_KINDS
from hes_sim.meter_sim.schedule import IntervalSchedule

log = structlog.get_logger(__name__)

SUBSCRIBE_TIMEOUT_S = 15.0
# consumers have accounts; DT and feeder meters do not
CONSUMERS = frozenset(kind.value for kind in CONSUMER_KINDS)
ANSWER_TIMEOUT_SIM_S = 120.0  # how long the head-end waits for a meter's answer
ANSWER_TIMEOUT_WALL_MIN_S = 2.0  # but never less than this on the wall clock


@dataclass(frozen=True, slots=True)
class ApiOptions:
    token: str
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True, slots=True)
class PrepaidOptions:
    tariff: Tariff
    policy: DisconnectionPolicy
    sanctioned_kw: Callable[[str], Decimal]  # by meter id


@dataclass(frozen=True, slots=True)
class ExportOptions:
    sink: Callable[[], contextlib.AbstractAsyncContextManager[Sink]]  # opened with the node
    settings: ExportSettings
    interval_s: int  # the reads' interval, for the exported records
    bills: BillingOptions | None = None  # None: reads only, no monthly bill records


@dataclass(frozen=True, slots=True)
class NodeOptions:
    broker: BrokerAddress | tuple[BrokerAddress, ...]  # several: a fleet spread over them
    db_path: str | Path  # a SQLite file, or a postgresql:// URL
    keyring: FleetKeyring
    tz: timezone
    require_ciphered: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    api: ApiOptions | None = None  # None: no operator API
    silence_s: float | None = None  # simulated; None: trust state topics and last wills only
    command_concurrency: int = 32
    per_cell_command_limit: int = 8
    non_communicating_after_s: float = DEFAULT_SILENCE_S
    # the meters' interval schedule: what backfill expects; None (or no settings): no backfill
    schedule: IntervalSchedule | None = None
    backfill: BackfillSettings | None = None
    prepaid: PrepaidOptions | None = None  # None: every consumer postpaid, no prepaid rules
    export: ExportOptions | None = None  # None: reads are not exported
    seed: int = 0
    client_id: str = "hes-ingest-1"
    ingest_workers: int = 0  # 0: pushes are stored by the head-end's own process


class HeadEndNode:
    def __init__(
        self,
        options: NodeOptions,
        clock: SimClock,
        bus: EventBus,
        meters: list[MeterInfo] | None = None,
    ) -> None:
        self.options = options
        self.clock = clock
        self.bus = bus
        self._meters = meters or []
        self.inventory = Inventory()
        self._stack = contextlib.AsyncExitStack()
        self._api: ApiServer | None = None
        self.backfill: Backfill | None = None
        self.prepaid: PrepaidEngine | None = None
        self.exporter: Exporter | None = None
        self.billing: MonthlyBilling | None = None

    @property
    def api_url(self) -> str | None:
        return None if self._api is None else self._api.url

    async def __aenter__(self) -> Self:
        options, clock, bus = self.options, self.clock, self.bus
        try:
            export_interval = None if options.export is None else options.export.interval_s
            store = open_store(options.db_path, export_interval_s=export_interval)
            self.store = await self._stack.enter_async_context(store)
            if self._meters:
                await self.store.run_sql(lambda db: register.register(db, self._meters))
            self.inventory.add(await self.store.run_sql(register.load))
            policy = PushPolicy(keyring=options.keyring, require_ciphered=options.require_ciphered)
            silence = None
            if options.silence_s is not None:
                # look a few times per threshold, on the wall clock of this run
                every = clock.wall_seconds(options.silence_s) / 4
                silence = SilencePolicy(options.silence_s, every)
            workers = None
            if options.ingest_workers:
                workers = IngestWorkers(
                    options.ingest_workers, str(options.db_path), options.keyring.secret,
                    export_interval_s=export_interval,
                )  # fmt: skip
            self.hes = HeadEnd(
                options.broker,
                self.store,
                clock,
                bus,
                policy=policy,
                client_id=options.client_id,
                metrics_host=options.metrics_host,
                metrics_port=options.metrics_port,
                silence=silence,
                workers=workers,
            )
            for meter_id, at in (await self.store.run_sql(register.last_seen)).items():
                self.hes.presence.seen_before(meter_id, at)
            await self._stack.enter_async_context(self.hes)
            counter = PersistentCounter(self.store)
            await counter.load()
            self.sessions = MeterSessions(
                self._exchange(),
                options.keyring,
                counter,
                on_late=lambda meter_id: bus.emit(LateAnswer(meter_id)),
            )
            self.dispatcher = CommandDispatcher(
                self.store,
                self.sessions,
                self.hes.presence,
                clock,
                bus,
                concurrency=options.command_concurrency,
                seed=options.seed,
                tz=options.tz,
                cell_of=self.inventory.cell_of,
                per_cell_limit=options.per_cell_command_limit,
            )
            self.desk = OperatorDesk(
                store=self.store,
                inventory=self.inventory,
                presence=self.hes.presence,
                dispatcher=self.dispatcher,
                clock=clock,
                bus=bus,
                broker_connected=self.hes.subscribed.is_set,
                ingest_queue_depth=lambda: self.hes.queue_depth,
            )
            await self._stack.enter_async_context(self.dispatcher)
            self.hes.registry.register(
                NodeGauges(
                    open_commands=self.dispatcher.open_by_state,
                    meters_known=self.desk.meters_known,
                    meters_online=lambda: self.hes.presence.online,
                    meters_silent=lambda: self.desk.silent_count(options.non_communicating_after_s),
                    silent_after_s=options.non_communicating_after_s,
                    export_pending=lambda: None if self.exporter is None else self.exporter.pending,
                )
            )
            if options.schedule is not None and options.backfill is not None:
                self.backfill = Backfill(
                    self.store, self.dispatcher, self.hes.presence, clock, bus,
                    schedule=options.schedule, settings=options.backfill,
                    meters=self._fleet,
                )  # fmt: skip
                await self._stack.enter_async_context(self.backfill)
            if options.prepaid is not None:
                self.prepaid = PrepaidEngine(
                    self.dispatcher, clock, bus, self.store,
                    tariff=options.prepaid.tariff, policy=options.prepaid.policy,
                    tz=options.tz, sanctioned_kw=options.prepaid.sanctioned_kw,
                )  # fmt: skip
                self.prepaid.open(self._consumers())
                self.desk.prepaid = self.prepaid
                await self._stack.enter_async_context(self.prepaid)
            if options.export is not None:
                sink = await self._stack.enter_async_context(options.export.sink())
                self.exporter = Exporter(
                    self.store, sink, clock, settings=options.export.settings, bus=bus
                )
                await self._stack.enter_async_context(self.exporter)
                exporter = self.exporter
                bus.subscribe(lambda _read: exporter.notify(), (ReadStored,))
                if options.export.bills is not None:
                    self.billing = MonthlyBilling(
                        self.store, clock, tz=options.tz, interval_s=options.export.interval_s,
                        options=options.export.bills, consumers=self._consumers,
                        postpaid=self._postpaid, notify=exporter.notify,
                    )  # fmt: skip
                    await self._stack.enter_async_context(self.billing)
            if options.api is not None:
                api = ApiServer(
                    self.desk, options.api.token, options.tz,
                    host=options.api.host, port=options.api.port,
                )  # fmt: skip
                self._api = await self._stack.enter_async_context(api)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def _consumers(self) -> list[str]:
        """Meters of consumers (with accounts and bills), from the register."""
        return [m.meter_id for m in self.inventory.all() if m.kind in CONSUMERS]

    def _postpaid(self, meter_id: str) -> bool:
        if self.prepaid is None or meter_id not in self.prepaid.accounts:
            return True
        return self.prepaid.accounts[meter_id].mode is Mode.POSTPAID

    def _fleet(self) -> list[str]:
        """The meters backfill looks after: the register, or those heard from without one."""
        if len(self.inventory):
            return [info.meter_id for info in self.inventory.all()]
        return self.hes.presence.known()

    async def wait_subscribed(self) -> None:
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await self.hes.subscribed.wait()
        except TimeoutError:
            raise BrokerError(f"the head-end could not subscribe at {self._broker_names}") from None

    @property
    def _broker_names(self) -> str:
        brokers = self.options.broker
        if isinstance(brokers, BrokerAddress):
            return str(brokers)
        return ", ".join(str(broker) for broker in brokers)

    def _exchange(self) -> Exchange:
        """Requests to meters through the head-end, answers awaited a bounded time."""
        timeout = max(ANSWER_TIMEOUT_WALL_MIN_S, self.clock.wall_seconds(ANSWER_TIMEOUT_SIM_S))

        async def exchange(meter_id: str, apdu: bytes) -> bytes:
            return await self.hes.exchange(meter_id, apdu, timeout)

        return exchange
