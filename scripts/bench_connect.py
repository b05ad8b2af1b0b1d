"""How long a fleet takes to connect, from cold and after a mass restoration; printed,
never asserted.

For each size (``--sizes 20000,100000``) the fleet of ``config/scenarios/scale-100k.yaml``
is rebuilt with that many meters (92 % single-phase, 8 % three-phase, as the scenario)
in a scenario file of a temporary directory, and run as a large ``hes-sim run`` runs it:
``ShardedFleet`` starts one fleet process (``hes_sim.runner.shards.worker``) per 15,000
meters, meters assigned by CRC-32 of their id, the lean transport, one private mosquitto
per fleet process (127.0.0.1 only). No head-end: only the meters and the brokers.

Each size is run twice, in two fresh sets of processes:

* **capacity** -- connect randomisation and start spread 0 and the time scale at its
  maximum (10,000), so that the reconnect back-off (60 s of simulated time, the push
  setup's repetition delay) and the modem's 20 s boot shrink to milliseconds: what is
  measured is how fast the processes and brokers connect meters;
* **configured** -- the scenario's own time scale (1: real time), start spread (60 s)
  and push randomisation (5 min): what an operator would see.

And each run measures, one after the other:

1. **cold start**: from launching the fleet processes until every meter is connected
   (the processes start and build their meters; then each meter connects at its seeded
   point of the scenario's ``fleet.start_spread`` after its process started: uniform in
   [0, 60 s) configured, all at once in capacity mode; 200 at a time each);
2. **broker restart**: every mosquitto killed (SIGKILL, a crash) and started again on its
   port; every meter sees its link drop and reconnects after its back-off (uniform in
   [0, 60 s] simulated at the first retry, doubling to 300 s while the broker refuses);
3. **power restoration**: mains off for every meter at once (the timeline's feeder
   outage, applied to the whole fleet: a last gasp, then the link dropped without
   goodbye), and once every broker has seen every link go, mains back for all at once:
   each meter boots (20 s simulated) and waits a random part of the push randomisation
   window before it connects -- the restoration storm.

The fleet is started (the run's clock and plan sent to every process, as a run does once
its meters are connected) on a schedule that ends before its first interval, so the
meters stay idle and never push. (It had to be with the meter runtime of commit 3522ffd,
where a meter whose link dropped while it waited for the start cancelled the plan future
every meter shared, and nothing reconnected; since 5fe0993 a waiting meter only looks
whether the plan is set, and the start is kept so that the steps run as in a run.)

"Connected" is the meter's own ``MeterConnected`` event (CONNACK, SUBACK and the retained
``online`` state acknowledged), which the fleet processes batch to this process every
0.25 s: times are good to about a quarter of a second. The links dropped by a power cut
are counted at the brokers (their open descriptors). For each step the table shows the
wall time, meters per second, the window that paces it (start spread, back-off, boot and
randomisation) in its note, and the CPU seconds used meanwhile by the fleet processes,
by the mosquittos, by this process (it receives every event), in interrupts (``irq``:
loopback TCP is largely softirq work, charged to no process) and by every other process
of the machine (``others``: a shared machine skews the figures, and that column says by
how much); with two cores, 2 x wall seconds is all the CPU there is.

    .venv/bin/python scripts/bench_connect.py                       # 20k and 100k
    .venv/bin/python scripts/bench_connect.py --sizes 20000 --modes capacity
    .venv/bin/python scripts/bench_connect.py --sizes 20000 --steps "" --idle-s 130  # idle CPU

The 100k size needs about 3 GB of RAM and several minutes (the configured power
restoration alone lasts the randomisation window, 5 min, and the cold start its start
spread, 1 min). Every process this starts is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml
from bench_figures import record  # scripts/, beside this file
from bench_signals import stop_on_sigterm

from hes_sim.clock import SimClock
from hes_sim.events import Event, EventBus, MeterConnected, MeterLinkLost
from hes_sim.logging import configure_logging
from hes_sim.meter_sim.grid import meter_id
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.runner.broker import PrivateMosquitto
from hes_sim.runner.fleet_register import scenario_grid
from hes_sim.runner.run import METERS_PER_BROKER
from hes_sim.runner.shards.fleet import ShardedFleet
from hes_sim.runner.shards.messages import shard_of
from hes_sim.scenario.model import METERS_PER_FLEET_PROCESS, Scenario, load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "config" / "scenarios" / "scale-100k.yaml"
CAPACITY_TIME_SCALE = 10_000.0  # the scenario model's maximum
THREE_PHASE_SHARE = 0.08  # as in scale-100k.yaml: 92,000 single-phase, 8,000 three-phase
BOOT_SIM_S = 20.0  # hes_sim.meter_sim.runtime.BOOT_S
WORKER_MODULE = "hes_sim.runner.shards.worker"
POLL_S = 0.25  # how often the brokers' descriptors are counted while links drop
MODES = ("capacity", "configured")
STEPS = ("restart", "power")  # after the cold start, which every run has
NO_INTERVAL_S = 60  # a run shorter than its first interval: the meters never push


# ---------------------------------------------------------------- what we watch


class ConnectWatch:
    """Subscribed to the run's bus: meters connected since the last ``mark``, and when
    the first and the ``target``-th of them were heard of (on this process's clock)."""

    def __init__(self) -> None:
        self.connected: set[str] = set()
        self.links_lost = 0
        self.target = 0
        self.first_at: float | None = None
        self.done_at: float | None = None
        self.done = asyncio.Event()
        self.on_first: Callable[[], None] | None = None

    def mark(self, target: int, on_first: Callable[[], None] | None = None) -> None:
        self.connected = set()
        self.links_lost = 0
        self.target = target
        self.first_at = self.done_at = None
        self.done.clear()
        self.on_first = on_first

    def __call__(self, event: Event) -> None:
        if isinstance(event, MeterConnected):
            self.connected.add(event.meter_id)
            if self.first_at is None:
                self.first_at = time.perf_counter()
                if self.on_first is not None:
                    self.on_first()
            if self.done_at is None and len(self.connected) >= self.target:
                self.done_at = time.perf_counter()
                self.done.set()
        elif isinstance(event, MeterLinkLost):
            self.links_lost += 1


def cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds of the whole machine: in processes, and in interrupts (loopback TCP
    is mostly softirq work, charged to no process)."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system), float(times.irq + times.softirq)


@dataclass(frozen=True, slots=True)
class CpuSample:
    fleet: float
    brokers: float
    bench: float
    machine: float  # every process of the machine
    irq: float  # interrupts, softirq included


class Processes:
    """The fleet processes and mosquittos of one run, and their CPU seconds. A broker
    that is killed takes its CPU seconds with it: they are banked just before."""

    def __init__(self, brokers: list[PrivateMosquitto]) -> None:
        self.brokers = brokers
        self.fleet: list[psutil.Process] = []
        self._broker_procs: dict[int, psutil.Process] = {}
        self._banked = 0.0  # CPU seconds of brokers since killed
        self.me = psutil.Process()
        self.refresh_brokers()

    def find_fleet(self) -> None:
        self.fleet = []
        for child in self.me.children():
            with contextlib.suppress(psutil.Error):
                if WORKER_MODULE in " ".join(child.cmdline()):
                    self.fleet.append(child)

    def refresh_brokers(self) -> None:
        self._broker_procs = {b.pid: psutil.Process(b.pid) for b in self.brokers}

    def bank_brokers(self) -> None:
        self._banked += sum(cpu_s(p) for p in self._broker_procs.values())

    def sample(self) -> CpuSample:
        machine, irq = machine_cpu_s()
        return CpuSample(
            fleet=sum(cpu_s(p) for p in self.fleet),
            brokers=self._banked + sum(cpu_s(p) for p in self._broker_procs.values()),
            bench=cpu_s(self.me),
            machine=machine,
            irq=irq,
        )

    def pids(self) -> list[int]:
        return [p.pid for p in self.fleet] + list(self._broker_procs)

    def broker_links(self, baseline: dict[int, int]) -> int:
        """Connections the brokers hold now: their open descriptors past those they held
        before any meter connected."""
        held = 0
        for pid, process in self._broker_procs.items():
            with contextlib.suppress(psutil.Error):
                held += process.num_fds() - baseline.get(pid, 0)
        return held

    def broker_fds(self) -> dict[int, int]:
        fds = {}
        for pid, process in self._broker_procs.items():
            with contextlib.suppress(psutil.Error):
                fds[pid] = process.num_fds()
        return fds


# ---------------------------------------------------------------- the figures


@dataclass(slots=True)
class Row:
    meters: int
    mode: str
    step: str
    reached: int
    wall_s: float  # the trigger until the last meter connected (or the timeout)
    first_s: float | None  # the trigger until the first meter connected
    cpu: CpuSample  # used during wall_s
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.reached / self.wall_s if self.wall_s > 0 else 0.0


def delta(after: CpuSample, before: CpuSample) -> CpuSample:
    return CpuSample(
        after.fleet - before.fleet,
        after.brokers - before.brokers,
        after.bench - before.bench,
        after.machine - before.machine,
        after.irq - before.irq,
    )


def print_row(row: Row) -> None:
    cpu = row.cpu
    others = max(0.0, cpu.machine - cpu.fleet - cpu.brokers - cpu.bench)
    first = "-" if row.first_s is None else f"{row.first_s:6.1f}"
    reached = f"{row.reached:,}" if row.reached == row.meters else f"{row.reached:,} (!)"
    print(
        f"{row.meters:>8,} {row.mode:<10} {row.step:<17} {reached:>10} {first:>7} "
        f"{row.wall_s:8.1f} {row.rate:9,.0f} {cpu.fleet:8.1f} {cpu.brokers:8.1f} "
        f"{cpu.bench:6.1f} {cpu.irq:6.1f} {others:7.1f}  {row.note}",
        flush=True,
    )


HEADER = (
    f"{'meters':>8} {'mode':<10} {'step':<17} {'connected':>10} {'first':>7} {'wall s':>8} "
    f"{'meters/s':>9} {'fleet':>8} {'brokers':>8} {'bench':>6} {'irq':>6} {'others':>7}  note\n"
    f"{'':>8} {'':<10} {'':<17} {'':>10} {'s':>7} {'':>8} {'':>9} "
    f"{'CPU s':>8} {'CPU s':>8} {'CPU s':>6} {'CPU s':>6} {'CPU s':>7}"
)


# ---------------------------------------------------------------- one run


def write_scenario(directory: Path, meters: int, mode: str) -> Path:
    """scale-100k.yaml with ``meters`` meters, one fleet process per 15,000 and one
    broker per process; ``capacity`` also sets the randomisation and the start spread to
    0 and the time scale to its top."""
    spec = yaml.safe_load(SCENARIO.read_text())
    three = round(meters * THREE_PHASE_SHARE)
    processes = max(1, math.ceil(meters / METERS_PER_FLEET_PROCESS))
    spec["name"] = f"bench-connect-{meters}-{mode}"
    spec["fleet"].update(single_phase=meters - three, three_phase=three, processes=processes)
    spec["brokers"] = processes
    spec["duration"] = NO_INTERVAL_S
    if mode == "capacity":
        spec["time_scale"] = CAPACITY_TIME_SCALE
        spec["push"]["randomisation_start_interval"] = 0
        spec["fleet"]["start_spread"] = 0
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def fleet_ids(scenario: Scenario) -> list[str]:
    if scenario.grid is not None:
        return [m.meter_id for m in scenario_grid(scenario).meters]
    return [
        meter_id(kind, number)
        for kind, count in scenario.fleet.counts.items()
        for number in range(1, count + 1)
    ]


@contextlib.asynccontextmanager
async def private_brokers(count: int) -> AsyncIterator[list[PrivateMosquitto]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(PrivateMosquitto()) for _ in range(count)]


async def wait_done(watch: ConnectWatch, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await watch.done.wait()


class Run:
    """One set of brokers and fleet processes for one size and mode, and its steps."""

    def __init__(
        self,
        meters: int,
        mode: str,
        *,
        scenario: Scenario,
        path: Path,
        timeout_s: float,
        started: set[int],
        idle_s: float = 0.0,
        steps: tuple[str, ...] = STEPS,
    ) -> None:
        self.idle_s = idle_s
        self.steps = steps
        self.meters = meters
        self.mode = mode
        self.scenario = scenario
        self.path = path
        self.timeout_s = timeout_s
        self.started = started  # every pid this bench started, for the last clean-up
        self.ids = fleet_ids(scenario)
        self.watch = ConnectWatch()
        self.bus = EventBus()
        self.bus.subscribe(self.watch)
        self.rows: list[Row] = []

    def row(
        self,
        step: str,
        trigger: float,
        before: CpuSample,
        after: CpuSample,
        note: str,
    ) -> Row:
        watch = self.watch
        end = watch.done_at or time.perf_counter()
        first = None if watch.first_at is None else watch.first_at - trigger
        result = Row(self.meters, self.mode, step, len(watch.connected), end - trigger, first,
                     delta(after, before), note)  # fmt: skip
        self.rows.append(result)
        print_row(result)
        record(f"{self.meters // 1000}k meters connected, {step}, {self.mode}", result.wall_s,
               "s", target="randomisation-bound",
               note=f"fleet {result.cpu.fleet:.0f} CPU s, brokers {result.cpu.brokers:.0f} CPU s"
               f"; {note}")  # fmt: skip
        return result

    async def execute(self) -> list[Row]:
        scenario = self.scenario
        processes = scenario.fleet.process_count
        heaviest = math.ceil(self.meters / processes) * 1.1  # CRC-32 spreads within a few %
        if heaviest > METERS_PER_BROKER:
            raise SystemExit(f"{self.meters} meters: too many for {processes} brokers")
        async with private_brokers(scenario.brokers) as brokers:
            procs = Processes(brokers)
            self.started.update(b.pid for b in brokers)
            baseline = procs.broker_fds()
            clock = SimClock(scenario.start.timestamp(), scenario.time_scale)
            fleet = ShardedFleet(
                self.path,
                self.ids,
                processes=processes,
                brokers=[b.address for b in brokers],
                fleet_secret=secrets.token_bytes(32),
                bus=self.bus,
                clock=clock,
                transport=scenario.fleet.transport,
            )
            before = procs.sample()
            self.watch.mark(self.meters)
            launched = time.perf_counter()
            async with fleet:
                procs.find_fleet()
                self.started.update(p.pid for p in procs.fleet)
                await wait_done(self.watch, self.timeout_s + self._spread_s())
                after = procs.sample()
                held = procs.broker_links(baseline)
                spread = (
                    f"start spread uniform 0-{self._spread_s():g} s"
                    if self._spread_s() > 0
                    else "no start spread"
                )
                self.row("cold start", launched, before, after,
                         f"{processes} fleet processes, {len(brokers)} brokers; "
                         f"{held:,} links at the brokers; {spread}")  # fmt: skip
                try:
                    # started on a schedule of no interval: every meter is past its wait
                    # for the start (see the module's doc) and idle
                    clock.start()
                    fleet.start(RunPlan(scenario.schedule()))
                    async with asyncio.timeout(self.timeout_s):
                        await fleet.wait_finished()
                    if self.idle_s > 0:
                        await self.idle(procs)
                    if self.watch.done_at is not None and "restart" in self.steps:
                        await self.broker_restart(brokers, procs)
                    if self.watch.done_at is not None and "power" in self.steps:
                        await self.power_restoration(fleet, procs)
                finally:
                    # the meters' goodbyes would take a minute: the brokers go first
                    await asyncio.gather(*(b.stop(kill=True) for b in brokers))
        return self.rows

    async def idle(self, procs: Processes) -> None:
        """CPU of the connected, idle fleet (a lean link pings every 60 s when idle)."""
        before = procs.sample()
        await asyncio.sleep(self.idle_s)  # a measuring window, not a wait for a state
        cpu = delta(procs.sample(), before)
        share = (cpu.fleet + cpu.brokers) / self.idle_s
        print(f"{self.meters:>8,} {self.mode:<10} idle {self.idle_s:g} s: fleet {cpu.fleet:.1f} "
              f"CPU s, brokers {cpu.brokers:.1f} CPU s, irq {cpu.irq:.1f} CPU s: "
              f"{share:.1%} of a core", flush=True)  # fmt: skip

    async def broker_restart(self, brokers: list[PrivateMosquitto], procs: Processes) -> None:
        before = procs.sample()
        self.watch.mark(self.meters)
        killed = time.perf_counter()
        procs.bank_brokers()
        await asyncio.gather(*(b.stop(kill=True) for b in brokers))
        await asyncio.gather(*(b.start() for b in brokers))
        back = time.perf_counter() - killed
        procs.refresh_brokers()
        self.started.update(b.pid for b in brokers)
        await wait_done(self.watch, self.timeout_s)
        after = procs.sample()
        window = (
            "back-off ~0"
            if self.mode == "capacity"
            else f"back-off uniform 0-{self._backoff_s():g} s"
        )
        self.row("broker restart", killed, before, after,
                 f"brokers listening again {back:.2f} s after the kill; {window}")  # fmt: skip

    async def power_restoration(self, fleet: ShardedFleet, procs: Processes) -> None:
        # every meter is connected now: what a broker holds with none is its descriptors
        # less the meters it was given
        fds, shares = procs.broker_fds(), self._per_broker()
        baseline = {b.pid: fds.get(b.pid, 0) - shares[i] for i, b in enumerate(procs.brokers)}
        cut = time.perf_counter()
        fleet.power_off(self.ids)
        while True:  # the brokers learn of each cut link from its socket
            if procs.broker_links(baseline) <= 0 or time.perf_counter() - cut > self.timeout_s:
                break
            await asyncio.sleep(POLL_S)
        dropped_s = time.perf_counter() - cut
        left = procs.broker_links(baseline)
        before = procs.sample()
        self.watch.mark(self.meters)
        restored = time.perf_counter()
        fleet.power_on(self.ids)
        await wait_done(self.watch, self.timeout_s + self._window_s())
        after = procs.sample()
        if self.mode == "capacity":
            window = "boot + randomisation ~0"
        else:
            boot = BOOT_SIM_S / self.scenario.time_scale
            window = f"boot {boot:g} s + randomisation uniform 0-{self._window_s():g} s"
        gone = f"{self.meters - left:,} links dropped in {dropped_s:.1f} s"
        self.row("power restoration", restored, before, after, f"{gone}; {window}")

    def _per_broker(self) -> list[int]:
        """Meters per broker (fleet process n on broker n), as the fleet assigns them."""
        shares = [0] * self.scenario.fleet.process_count
        for meter in self.ids:
            shares[shard_of(meter, len(shares))] += 1
        return shares

    def _window_s(self) -> float:
        return self.scenario.push.randomisation_start_interval / self.scenario.time_scale

    def _spread_s(self) -> float:
        """The cold start's window, wall seconds: each process's meters connect over it."""
        return self.scenario.fleet.start_spread / self.scenario.time_scale

    def _backoff_s(self) -> float:
        return 60.0 / self.scenario.time_scale  # the push setup's repetition delay


# ---------------------------------------------------------------- main


def kill_leftovers(pids: set[int]) -> None:
    """The last safety net: anything this bench started and is still alive."""
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if process.ppid() == os.getpid():
                process.kill()


async def main(options: argparse.Namespace, started: set[int]) -> None:
    cores = psutil.cpu_count()
    memory = psutil.virtual_memory().total / 2**30
    print(f"machine: {cores} cores, {memory:.0f} GiB; scenario {SCENARIO.name}, lean transport; "
          f"times are wall seconds from the trigger", flush=True)  # fmt: skip
    print(HEADER, flush=True)
    with stop_on_sigterm(), tempfile.TemporaryDirectory(prefix="bench-connect-") as tmp:
        for meters in options.sizes:
            for mode in options.modes:
                path = write_scenario(Path(tmp), meters, mode)
                scenario = load_scenario(path)
                run = Run(meters, mode, scenario=scenario, path=path, timeout_s=options.timeout_s,
                          started=started, idle_s=options.idle_s,
                          steps=tuple(options.steps))  # fmt: skip
                await run.execute()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[20_000, 100_000],
        help="comma-separated fleet sizes (default: 20000,100000)",
    )
    parser.add_argument(
        "--modes",
        type=lambda text: [m for m in text.split(",") if m],
        default=list(MODES),
        help="capacity, configured, or both (default: capacity,configured)",
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=600.0,
        help="longest wait for every meter at each step, past the randomisation window",
    )
    parser.add_argument(
        "--idle-s",
        type=float,
        default=0.0,
        help="also measure the CPU of the connected, idle fleet over this window (0: not)",
    )
    parser.add_argument(
        "--steps",
        type=lambda text: [m for m in text.split(",") if m],
        default=list(STEPS),
        help="after the cold start: restart (brokers), power (restoration); default both",
    )
    options = parser.parse_args()
    for name, chosen, known in (("modes", options.modes, MODES), ("steps", options.steps, STEPS)):
        unknown = set(chosen) - set(known)
        if unknown:
            parser.error(f"--{name}: unknown {sorted(unknown)}")
    return options


if __name__ == "__main__":
    configure_logging("warning", "console")
    arguments = parse_args()
    pids: set[int] = set()
    try:
        asyncio.run(main(arguments, pids))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM
        print("stopped", file=sys.stderr)
    finally:
        kill_leftovers(pids)
