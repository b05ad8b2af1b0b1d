"""The composition root of ``hes-sim run``: broker, store, head-end, fleet, report."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError, ScenarioError
from hes_sim.events import EventBus
from hes_sim.hes.billing import load_tariff
from hes_sim.hes.node import CONSUMERS, ApiOptions, HeadEndNode, NodeOptions, PrepaidOptions
from hes_sim.hes.service import HeadEnd
from hes_sim.hes.store import ReadStore, SqlStore
from hes_sim.hes.tally import IngestTally
from hes_sim.http_metrics import MetricsServer
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.fleet import Fleet
from hes_sim.meter_sim.metrics import FleetMetrics, RadioCollector, WireCollector
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.runner.billing_endpoint import BillingEndpoint
from hes_sim.runner.broker import PrivateMosquitto
from hes_sim.runner.commands import CommandTally, choose_meters, issue_commands
from hes_sim.runner.export import (
    billing_endpoint,
    drained,
    endpoint_outages,
    export_options,
    export_report,
    write_reconciliation,
)
from hes_sim.runner.fleet_register import (
    routed_link_factory,
    scenario_fleet,
    scenario_grid,
    scenario_register,
)
from hes_sim.runner.lag import LoopLagMonitor
from hes_sim.runner.loop_errors import LoopErrors
from hes_sim.runner.network import SimulatedNetwork, simulated_network
from hes_sim.runner.network_tally import NetworkTally
from hes_sim.runner.prepaid import drive_prepaid, prepaid_figures
from hes_sim.runner.progress import ProgressLine, connecting_text
from hes_sim.runner.reporting import EndState, Tallies, build_report
from hes_sim.runner.shards.fleet import ShardedFleet
from hes_sim.runner.tally import RunTally
from hes_sim.runner.timeline import Timeline
from hes_sim.scenario.model import DEFAULT_SANCTIONED_KW, Scenario
from hes_sim.scenario.report import Report

log = structlog.get_logger(__name__)

FDS_PER_PROCESS_SPARE = 200  # store, broker probe, metrics, logs
CONNECT_WALL_S_PER_METER = 0.005
CONNECT_WALL_S_MIN = 30.0
RECONCILIATION_FILE = "reconciliation.csv"  # beside the report
INCOMPLETE_LISTED = 100  # meters not fully exported, named in the report
BROKER_PROBE_TIMEOUT_S = 5.0
METERS_PER_BROKER = 19_500  # a private mosquitto: 20,000 files, less its own and the HES


@dataclass(frozen=True, slots=True)
class RunOptions:
    report_dir: Path
    scenario_path: Path | None = None  # where fleet processes read the scenario from
    broker: BrokerAddress | None = None
    db_path: str | Path | None = None  # a SQLite file, or a postgresql:// URL
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    progress: bool = True
    fleet_secret: bytes | None = None  # None: a random secret for this run only
    api: ApiOptions | None = None  # the operator API of the run's head-end; None: none
    api_token_given: bool = False  # False: the run made the token up, and prints it
    fleet_metrics_port: int = 0  # the meters' side of the metrics; 0 picks a free port
    # called once the run is drained, before the fleet and head-end shut down (tests use it)
    before_shutdown: Callable[[HeadEnd, ReadStore], Awaitable[None]] | None = None


def connect_budget_s(meters: int, start_spread_wall_s: float) -> float:
    """How long the run waits for every meter's first connect before its clock starts:
    what the processes need to connect them, on top of the scenario's start spread (the
    window the meters' first connects are spread over, in wall seconds)."""
    return max(CONNECT_WALL_S_MIN, CONNECT_WALL_S_PER_METER * meters) + start_spread_wall_s


def check_file_limit(meters: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = meters + FDS_PER_PROCESS_SPARE
    if needed > soft and needed <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    elif needed > hard:
        raise ScenarioError(
            f"fleet: {meters} meters need {needed} open files in one process, the limit is "
            f"{hard}; split the fleet over several runs (sharding comes with the scale work)"
        )


@contextlib.asynccontextmanager
async def _brokers(
    options: RunOptions, count: int
) -> AsyncIterator[tuple[list[BrokerAddress], list[PrivateMosquitto]]]:
    """The brokers' addresses, and the brokers themselves when the run started its own
    (``count`` private brokers, which the scenario's timeline restarts; none otherwise)."""
    if options.broker is not None:
        await probe(options.broker)
        yield [options.broker], []
        return
    async with contextlib.AsyncExitStack() as stack:
        started = [await stack.enter_async_context(PrivateMosquitto()) for _ in range(count)]
        yield [broker.address for broker in started], started


async def probe(broker: BrokerAddress) -> None:
    """Fail at once, with a clear message, when nothing listens at ``broker``."""
    try:
        async with asyncio.timeout(BROKER_PROBE_TIMEOUT_S):
            _reader, writer = await asyncio.open_connection(broker.host, broker.port)
    except (OSError, TimeoutError) as exc:
        raise BrokerError(f"cannot reach the broker at {broker}: {exc or 'timed out'}") from exc
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def check_broker_load(scenario: Scenario, options: RunOptions) -> None:
    """The run's own brokers must each hold their meters: a mosquitto here holds at most
    about 19,990 connections (a process's file limit). A fleet process's meters all use
    one broker (process n uses broker n mod brokers)."""
    if options.broker is not None:
        return  # someone else's broker (or cluster): its limits are its own
    meters, brokers = scenario.meter_count, scenario.brokers
    processes = scenario.fleet.process_count
    heaviest = -(-meters // brokers) if processes == 1 else (
        -(-processes // brokers) * -(-meters // processes)
    )  # fmt: skip
    if heaviest > METERS_PER_BROKER:
        raise ScenarioError(
            f"brokers: {brokers} brokers for {meters} meters in {processes} fleet processes "
            f"put up to {heaviest} meters on one broker, over the {METERS_PER_BROKER} a "
            f"mosquitto holds here; raise brokers (to {processes} or more with processes)"
        )


async def run_scenario(scenario: Scenario, options: RunOptions) -> Report:
    check_broker_load(scenario, options)
    if scenario.fleet.process_count == 1:
        check_file_limit(scenario.meter_count)  # else each fleet process holds its share
    return await ScenarioRun(scenario, options).execute()


class ScenarioRun:
    """One run of one scenario: wires the parts, drives the timeline, builds the report."""

    def __init__(self, scenario: Scenario, options: RunOptions) -> None:
        self.scenario = scenario
        self.options = options
        sim_start = scenario.start.timestamp()
        self.schedule = scenario.schedule()
        self.clock = SimClock(sim_start, scenario.time_scale)
        self.bus = EventBus()
        self.ingest_tally, self.run_tally = IngestTally(), RunTally()
        self.bus.subscribe(self.ingest_tally)
        self.bus.subscribe(self.run_tally)
        self.lag = LoopLagMonitor(scenario.time_scale)
        self.tz = scenario.tz
        grid = scenario_grid(scenario)
        self.meters = grid.meters
        self.register = scenario_register(scenario, grid)
        self.reads_expected = self.schedule.count * len(self.meters)
        self.command_targets = choose_meters(scenario.commands, self.meters, scenario.seed)
        self.command_tally = CommandTally()
        self.billing: BillingEndpoint | None = None  # the run's own, for a webhook without URL
        # what the network and the grid did, when the run models them
        self.network_tally: NetworkTally | None = None
        if scenario.network.radio or scenario.timeline:
            cells = {m.meter_id: m.cell for m in self.register if m.cell is not None}
            self.network_tally = NetworkTally(self.clock, cells)
            self.bus.subscribe(self.network_tally)
        self.bus.subscribe(self.command_tally)
        ciphered = scenario.security.pushes == "ciphered"
        secret = options.fleet_secret or secrets.token_bytes(32)
        self.fleet_secret = secret  # for fleet processes, which derive the same keys
        self.keyring = FleetKeyring(secret)
        self.cipher_pushes = ciphered
        # wall seconds over which the meters' first connects are spread (0: all at once)
        self.start_spread_wall_s = self.clock.wall_seconds(scenario.fleet.start_spread)
        self.connecting_since = time.monotonic()  # set again as the fleet starts
        self.cold_start_s = 0.0  # until every meter connected, once the fleet started

    def _db_path(self) -> str | Path:
        if self.options.db_path is not None:
            return self.options.db_path
        path = self.options.report_dir / "reads.sqlite"
        for stale in (path, path.with_name(path.name + "-wal")):
            stale.unlink(missing_ok=True)  # the report dir's store belongs to this run only
        return path

    async def _check_store_empty(self, store: SqlStore) -> None:
        """A run's figures come from its store: a database given by URL must be empty
        (the run's own SQLite file is made fresh)."""
        if self.options.db_path is None:
            return
        held = await store.count_reads()
        if held:
            raise ScenarioError(
                f"the store {store.describe()} already holds {held} reads: give a run an "
                "empty database (its figures are counted from the store)"
            )

    def _node_options(self, brokers: list[BrokerAddress]) -> NodeOptions:
        scenario, options = self.scenario, self.options
        return NodeOptions(
            broker=tuple(brokers),
            db_path=self._db_path(),
            keyring=self.keyring,
            tz=self.tz,
            require_ciphered=self.cipher_pushes,
            metrics_host=options.metrics_host,
            metrics_port=options.metrics_port,
            api=options.api,
            silence_s=scenario.silence_s,
            command_concurrency=scenario.headend.command_concurrency,
            per_cell_command_limit=scenario.headend.per_cell_command_limit,
            non_communicating_after_s=scenario.headend.non_communicating_after,
            schedule=self.schedule,
            backfill=scenario.backfill_settings(),
            prepaid=self._prepaid_options(),
            export=(
                None
                if scenario.export is None
                else export_options(
                    scenario.export,
                    self.billing,
                    options.report_dir,
                    scenario.interval,
                    self._sanctioned_kw(),
                )
            ),
            seed=scenario.seed,
            ingest_workers=scenario.headend.ingest_workers,
        )

    def _prepaid_options(self) -> PrepaidOptions | None:
        spec = self.scenario.prepaid
        if spec is None:
            return None
        return PrepaidOptions(load_tariff(spec.tariff), spec.policy, self._sanctioned_kw())

    def _sanctioned_kw(self) -> Callable[[str], Decimal]:
        """Each consumer's sanctioned load, by its meter's kind (the prepaid section's
        table, else the defaults)."""
        spec = self.scenario.prepaid
        table = (
            {k: Decimal(v) for k, v in DEFAULT_SANCTIONED_KW.items()}
            if spec is None
            else spec.sanctioned_kw
        )
        kind_of = {m.meter_id: m.kind for m in self.register}
        return lambda meter_id: table.get(kind_of.get(meter_id, ""), Decimal(2))

    async def execute(self) -> Report:
        self.options.report_dir.mkdir(parents=True, exist_ok=True)
        wall_started = time.monotonic()
        LoopErrors().install(asyncio.get_running_loop())
        spec = self.scenario.export
        brokers_wanted = self.scenario.brokers
        async with (
            _brokers(self.options, brokers_wanted) as (brokers, private),
            billing_endpoint(spec) as billing,
        ):
            self.billing = billing
            node = HeadEndNode(self._node_options(brokers), self.clock, self.bus, self.register)
            async with node, self._network(brokers[0]) as network:
                await self._check_store_empty(node.store)
                await node.wait_subscribed()
                self._announce(node)
                hes, store = node.hes, node.store
                fleet = self._fleet(brokers, network)
                fleet_metrics = self._fleet_metrics(fleet, network)
                self.connecting_since = time.monotonic()
                async with fleet_metrics, asyncio.TaskGroup() as helpers, fleet:
                    self._announce_fleet(fleet_metrics)
                    watchers = self._watchers(helpers, node, fleet, network, private)
                    try:
                        await self._drive(fleet, hes)
                        if node.exporter is not None:
                            drain = self.scenario.drain_timeout
                            await drained(node.exporter, self.clock, drain)
                        if self.options.before_shutdown is not None:
                            await self.options.before_shutdown(hes, store)
                        at_end = EndState(
                            meters_connected=fleet.connected,
                            cold_start_s=self.cold_start_s,
                            meters_online=hes.presence.online,
                            meters_silent=node.desk.silent_count(
                                self.scenario.headend.non_communicating_after
                            ),
                        )
                    finally:
                        for task in watchers:
                            task.cancel()
                reads_stored = await store.count_reads()
                at_end = replace(
                    at_end,
                    reads_stored=reads_stored,
                    reads_recovered=await store.count_recovered(),
                    delivery_delays=await store.delivery_delays(),
                )
                prepaid_report = None if node.prepaid is None else prepaid_figures(node.prepaid)
                export = None
                if spec is not None and node.exporter is not None:
                    export = await export_report(spec, node.exporter, billing, reads_stored, store)
                    incomplete = await write_reconciliation(
                        node.exporter,
                        self.run_tally.produced_by,
                        self.options.report_dir / RECONCILIATION_FILE,
                    )
                    export = export.model_copy(
                        update={
                            "meters_incomplete": len(incomplete),
                            "incomplete_meter_ids": incomplete[:INCOMPLETE_LISTED],
                            "reconciliation_file": RECONCILIATION_FILE,
                        }
                    )
                network_figures = (
                    None
                    if self.network_tally is None
                    else self.network_tally.figures(None if network is None else network.radio)
                )
        at_end = replace(at_end, wall_s=time.monotonic() - wall_started)
        tallies = Tallies(self.run_tally, self.ingest_tally, self.command_tally, self.lag.samples)
        report = build_report(self.scenario, len(self.meters), self.reads_expected, at_end, tallies)
        extra = {"network": network_figures, "prepaid": prepaid_report, "export": export}
        report = report.model_copy(update=extra).with_verdicts(self.scenario)
        report.write(self.options.report_dir)
        return report

    def _network(
        self, broker: BrokerAddress
    ) -> contextlib.AbstractAsyncContextManager[SimulatedNetwork | None]:
        if not self.scenario.network.radio:
            return contextlib.nullcontext(None)
        return simulated_network(
            self.scenario.network,
            self.register,
            broker=broker,
            clock=self.clock,
            bus=self.bus,
            seed=self.scenario.seed,
            time_scale=self.scenario.time_scale,
        )

    def _fleet(
        self, brokers: list[BrokerAddress], network: SimulatedNetwork | None
    ) -> Fleet | ShardedFleet:
        processes = self.scenario.fleet.process_count
        if processes > 1:
            if self.options.scenario_path is None:
                raise ScenarioError("a fleet over several processes needs the scenario's file")
            return ShardedFleet(
                self.options.scenario_path,
                (m.meter_id for m in self.meters),
                processes=processes,
                brokers=brokers,
                fleet_secret=self.fleet_secret,
                transport=self.scenario.fleet.transport,
                bus=self.bus,
                clock=self.clock,
            )
        return scenario_fleet(
            self.scenario,
            self.meters,
            (
                routed_link_factory(brokers, self.scenario.fleet.transport)
                if network is None
                else network.link_factory()
            ),
            self.bus,
            self.clock,
            keyring=self.keyring,
            service=None if network is None else network.gate,
            on_power_loss=None if network is None else network.proxy.cut,
        )

    def _fleet_metrics(
        self, fleet: Fleet | ShardedFleet, network: SimulatedNetwork | None
    ) -> MetricsServer:
        """The meters' side of the metrics, on a port of their own (as a fleet process
        of its own would serve them)."""
        registry = CollectorRegistry()
        self.bus.subscribe(FleetMetrics(registry, meters_powered=fleet.powered))
        registry.register(WireCollector(fleet.wire_totals))
        if network is not None:
            registry.register(RadioCollector(network.radio, self.clock.now))
        return MetricsServer(
            registry, self.options.metrics_host, self.options.fleet_metrics_port, lambda: True
        )

    def _announce_fleet(self, server: MetricsServer) -> None:
        if self.options.progress:
            host = self.options.metrics_host
            sys.stderr.write(f"fleet metrics on http://{host}:{server.port}/metrics\n")

    def _watchers(
        self,
        helpers: asyncio.TaskGroup,
        node: HeadEndNode,
        fleet: Fleet | ShardedFleet,
        network: SimulatedNetwork | None,
        private: list[PrivateMosquitto],
    ) -> list[asyncio.Task[None]]:
        """The run's helper tasks beside the fleet: lag, commands, timeline, progress."""
        start = self.schedule.sim_start
        watchers = [helpers.create_task(self.lag.run(), name="run:loop-lag")]
        if self.scenario.commands:
            commands = issue_commands(
                self.scenario.commands,
                self.command_targets,
                start=start,
                clock=self.clock,
                dispatcher=node.dispatcher,
                tally=self.command_tally,
            )
            watchers.append(helpers.create_task(commands, name="run:commands"))
        if self.network_tally is not None:
            timeline = Timeline(
                self.scenario.timeline,
                self.register,
                fleet=fleet,
                network=network,
                brokers=private,
                tally=self.network_tally,
                clock=self.clock,
            )
            samples = self.network_tally.sample(
                node.hes.presence.is_online, start, self.scenario.duration
            )
            watchers.append(helpers.create_task(timeline.run(start), name="run:timeline"))
            watchers.append(helpers.create_task(samples, name="run:online-samples"))
        if self.scenario.prepaid is not None and node.prepaid is not None:
            consumers = [m.meter_id for m in self.register if m.kind in CONSUMERS]
            prepaid = drive_prepaid(
                self.scenario.prepaid, consumers, node.prepaid,
                clock=self.clock, start=start, seed=self.scenario.seed,
            )  # fmt: skip
            watchers.append(helpers.create_task(prepaid, name="run:prepaid"))
        spec = self.scenario.export
        if spec is not None and spec.endpoint_outages and self.billing is not None:
            outages = endpoint_outages(spec, self.billing, self.clock, start)
            watchers.append(helpers.create_task(outages, name="run:billing-outages"))
        if self.options.progress:
            progress = ProgressLine(lambda: self._progress_text(fleet, node.hes))
            watchers.append(helpers.create_task(progress.run(), name="run:progress"))
        return watchers

    def _announce(self, node: HeadEndNode) -> None:
        if not self.options.progress:
            return
        host = self.options.metrics_host
        sys.stderr.write(f"head-end metrics on http://{host}:{node.hes.metrics.port}/metrics\n")
        if node.api_url is not None and self.options.api is not None:
            # the token is printed only when the run made it up (HES_API_TOKEN unset)
            token = (
                "" if self.options.api_token_given else f" (HES_API_TOKEN={self.options.api.token})"
            )
            sys.stderr.write(f"operator API on {node.api_url}{token}\n")

    async def _drive(self, fleet: Fleet | ShardedFleet, hes: HeadEnd) -> None:
        scenario, clock = self.scenario, self.clock
        connect_budget = connect_budget_s(len(self.meters), self.start_spread_wall_s)
        try:
            async with asyncio.timeout(connect_budget):
                await fleet.wait_connected()
        except TimeoutError:
            log.warning(
                "fleet_not_all_connected",
                connected=fleet.connected,
                meters=len(self.meters),
                waited_s=connect_budget,
            )
        self.cold_start_s = time.monotonic() - self.connecting_since
        log.info("fleet_connected", connected=fleet.connected, meters=len(self.meters),
                 wall_s=round(self.cold_start_s, 2),
                 start_spread_wall_s=round(self.start_spread_wall_s, 2))  # fmt: skip
        if fleet.connected == 0:
            raise BrokerError("no meter could connect to the broker")
        clock.start()
        fleet.start(RunPlan(self.schedule))
        last_push = scenario.duration + scenario.push.randomisation_start_interval
        try:
            async with asyncio.timeout(clock.wall_seconds(last_push + scenario.drain_timeout)):
                await fleet.wait_finished()
        except TimeoutError:
            log.warning("fleet_not_finished", finished=fleet.finished, meters=len(self.meters))
        try:
            async with asyncio.timeout(clock.wall_seconds(scenario.drain_timeout)):
                await self.run_tally.head_end_caught_up()
        except TimeoutError:
            log.warning(
                "head_end_behind",
                sent=self.run_tally.pushes_sent,
                processed=self.run_tally.pushes_processed,
            )
        if self.command_tally.submitted:
            longest = max(event.deadline for event in scenario.commands)
            try:
                async with asyncio.timeout(clock.wall_seconds(longest)):
                    await self.command_tally.all_finished()
            except TimeoutError:
                log.warning("commands_unfinished", submitted=self.command_tally.submitted,
                            finished=self.command_tally.finished)  # fmt: skip
        await hes.drained()

    def _progress_text(self, fleet: Fleet | ShardedFleet, hes: HeadEnd) -> str:
        total = len(self.meters)
        if not self.clock.running:
            waited = time.monotonic() - self.connecting_since
            return connecting_text(fleet.connected, total, self.start_spread_wall_s, waited)
        duration = self.scenario.duration
        tally = self.ingest_tally
        return (
            f"sim {_hms(min(self.clock.elapsed(), duration))}/{_hms(duration)}"
            f" | online {hes.presence.online}/{total}"
            f" | reads {tally.reads_stored}/{self.reads_expected}"
            f" | dup {tally.reads_duplicate} | rejected {sum(tally.decode_errors.values())}"
            f" | queue {hes.queue_depth}"
        )


def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
