"""The head-end's overhead on a command round trip, beyond the link and the meter;
printed, never asserted.

A real head-end (``HeadEndNode``: store, ingest, presence, the command dispatcher) runs in
this process against a private mosquitto on 127.0.0.1, with a SQLite store in a temporary
directory. The meters (``--meters``, 200 by default, lean transport, no 4G model: no link
delay but loopback) run in a fleet process of their own, ``hes-sim fleet``, as on a fleet
host, so that none of their work runs on the head-end's event loop. They push their
15-minute reads on a time-scaled clock (``--time-scale``, 60 by default: a push from
every meter each 15 wall seconds), which is the head-end's background ingest.

Commands are submitted as the operator API submits them (``OperatorDesk.submit``, which
checks the meter and hands the command to the dispatcher) and awaited to their final
state with ``CommandDispatcher.wait`` (the API's client would poll ``GET /commands/{id}``;
the poll interval is not the head-end's cost). Per command:

* **total**: wall time from the submit call to the final state;
* **wire + meter**: the sum of its DLMS exchanges, each timed around the ``Exchange``
  callable the node gives its ``MeterSessions`` (from the head-end publishing the
  request to its answer being handed back: MQTT both ways, the broker, the meter's
  work; association, the request, read-back and release);
* **overhead** = total - wire + meter: the store's writes, the scheduler, the
  association's crypto, the control-event matching, the event loop's waits;
* **to 1st request**: submit until the first exchange starts (part of the overhead).

Relay commands alternate disconnect and reconnect on each meter (confirmed by the relay
read back or by the meter's control event, whichever comes first); ``read`` is
``read_instantaneous``. Each kind runs one command at a time (``sequential``), then with
``--concurrency`` commands in flight at once (32: the node's default dispatcher limit),
each worker on meters of its own. The dispatcher is given twice that many slots (it keeps
half of them for relay commands, so reads would otherwise queue at half the number), and
the register gives the meters no cell, so the per-cell limit does not apply.

The first ``--warmup`` commands of each run are not counted. The head-end's CPU per
command (this process's CPU over the run, background ingest included) is shown too.

    .venv/bin/python scripts/bench_command.py
    .venv/bin/python scripts/bench_command.py --commands 1000 --concurrency 1,8,32 --kinds relay
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml
from bench_figures import record  # scripts/, beside this file
from bench_signals import stop_on_sigterm

from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.hes.commands.lifecycle import CommandState, CommandType
from hes_sim.hes.inventory import MeterInfo
from hes_sim.hes.meter_sessions import Exchange
from hes_sim.hes.node import HeadEndNode, NodeOptions
from hes_sim.keyring import FleetKeyring
from hes_sim.logging import configure_logging
from hes_sim.pipe_frames import end_children
from hes_sim.runner.broker import PrivateMosquitto
from hes_sim.runner.fleet_register import scenario_grid
from hes_sim.scenario.model import Scenario, load_scenario

START = "2026-11-28T10:00:00+05:30"
ONLINE_TIMEOUT_S = 60.0
KINDS = {
    "relay": (CommandType.DISCONNECT, CommandType.RECONNECT),
    "read": (CommandType.READ_INSTANTANEOUS,),
}


# ---------------------------------------------------------------- timing the exchanges


@dataclass(slots=True)
class Wire:
    """One command's exchanges with its meter (one command per meter at a time)."""

    seconds: float = 0.0
    count: int = 0
    first_at: float | None = None


class WireClock:
    def __init__(self) -> None:
        self._by_meter: dict[str, Wire] = {}

    def begin(self, meter_id: str) -> None:
        self._by_meter[meter_id] = Wire()

    def take(self, meter_id: str) -> Wire:
        return self._by_meter.pop(meter_id, Wire())

    def wrap(self, exchange: Exchange) -> Exchange:
        async def timed(meter_id: str, apdu: bytes) -> bytes:
            started = time.perf_counter()
            try:
                return await exchange(meter_id, apdu)
            finally:
                wire = self._by_meter.get(meter_id)
                if wire is not None:
                    wire.seconds += time.perf_counter() - started
                    wire.count += 1
                    if wire.first_at is None:
                        wire.first_at = started

        return timed


class TimedNode(HeadEndNode):
    """The head-end node, with its meter sessions' exchanges timed."""

    wire: WireClock

    def _exchange(self) -> Exchange:
        return self.wire.wrap(super()._exchange())


# ---------------------------------------------------------------- figures


@dataclass(slots=True)
class Sample:
    total_s: float
    wire_s: float
    first_request_s: float
    exchanges: int
    state: str


@dataclass(slots=True)
class Result:
    kind: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    hes_cpu_s: float = 0.0


def quantiles(values: list[float]) -> tuple[float, float, float, float]:
    if len(values) < 2:
        only = values[0] if values else 0.0
        return only, only, only, only
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98], max(values)


def show(result: Result) -> None:
    samples = result.samples
    confirmed = sum(1 for s in samples if s.state == CommandState.CONFIRMED)
    count = len(samples)
    rate = count / result.wall_s if result.wall_s else 0.0
    exchanges = statistics.mean(s.exchanges for s in samples) if samples else 0.0
    cpu_ms = 1000 * result.hes_cpu_s / count if count else 0.0
    mode = "sequential" if result.concurrency == 1 else f"{result.concurrency} at once"
    print(
        f"\n{result.kind}, {mode}: {count} commands ({confirmed} confirmed), "
        f"{rate:,.1f} commands/s, {exchanges:.1f} exchanges each, "
        f"head-end CPU {cpu_ms:.2f} ms a command"
    )
    print(f"  {'ms':<16} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    rows = (
        ("total", [s.total_s for s in samples]),
        ("wire + meter", [s.wire_s for s in samples]),
        ("overhead", [s.total_s - s.wire_s for s in samples]),
        ("to 1st request", [s.first_request_s for s in samples]),
    )
    for label, values in rows:
        cells = " ".join(f"{1000 * v:8.2f}" for v in quantiles(values))
        print(f"  {label:<16} {cells}", flush=True)
    overhead_p99 = quantiles([s.total_s - s.wire_s for s in samples])[2]
    record(f"HES command overhead p99, {result.kind}, {mode}", 1000 * overhead_p99, "ms",
           target="<= 5 ms", note=f"{count} commands, total - (wire + meter)")  # fmt: skip
    others = [s.state for s in samples if s.state != CommandState.CONFIRMED]
    if others:
        print(f"  not confirmed: {sorted(set(others))}")


# ---------------------------------------------------------------- the commands


class Bench:
    def __init__(self, node: TimedNode, meters: list[str], deadline_s: float) -> None:
        self.node = node
        self.meters = meters
        self.deadline_s = deadline_s
        self.turn: dict[str, int] = dict.fromkeys(meters, 0)  # the next of the kind's types

    async def one(self, meter_id: str, kind: str) -> Sample:
        types = KINDS[kind]
        command_type = types[self.turn[meter_id] % len(types)]
        self.turn[meter_id] += 1
        wire = self.node.wire
        wire.begin(meter_id)
        started = time.perf_counter()
        command = await self.node.desk.submit(
            meter_id,
            command_type,
            idempotency_key=None,
            deadline_s=self.deadline_s,
            parameters={},
        )
        done = await self.node.dispatcher.wait(command.command_id)
        total = time.perf_counter() - started
        spent = wire.take(meter_id)
        first = (spent.first_at - started) if spent.first_at is not None else total
        return Sample(total, spent.seconds, first, spent.count, str(done.state))

    async def run(self, kind: str, concurrency: int, commands: int, warmup: int) -> Result:
        result = Result(kind, concurrency)
        # each worker has meters of its own: one command per meter at a time
        lanes = [self.meters[lane::concurrency] for lane in range(concurrency)]
        queue = list(range(warmup + commands))
        me = psutil.Process()
        started_at: list[float] = []
        cpu_at: list[float] = []

        async def worker(lane: list[str]) -> None:
            visit = 0
            while queue:
                number = queue.pop(0)
                if number == warmup:  # the first counted command: start the clocks
                    started_at.append(time.perf_counter())
                    cpu_at.append(_cpu(me))
                sample = await self.one(lane[visit % len(lane)], kind)
                visit += 1
                if number >= warmup:
                    result.samples.append(sample)

        async with asyncio.TaskGroup() as group:
            for lane in lanes:
                group.create_task(worker(lane))
        result.wall_s = time.perf_counter() - (started_at or [time.perf_counter()])[0]
        result.hes_cpu_s = _cpu(me) - (cpu_at or [_cpu(me)])[0]
        if result.samples and all(s.exchanges == 0 for s in result.samples):
            raise SystemExit("no exchange was timed: HeadEndNode no longer calls _exchange")
        return result


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


# ---------------------------------------------------------------- set-up


def write_scenario(directory: Path, meters: int, time_scale: float) -> Path:
    spec = {
        "name": "bench-command",
        "seed": 11,
        "time_scale": time_scale,
        "start": START,
        "duration": "7d",  # longer than the bench: the fleet process keeps its meters
        "interval": 900,
        "fleet": {"single_phase": meters, "processes": 1, "transport": "lean"},
        "push": {"randomisation_start_interval": "1m"},
    }
    path = directory / "bench-command.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def fleet_process(
    path: Path, broker: str, secret: str, anchor: float, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``hes-sim fleet`` for the whole fleet (shard 0/1), stopped with SIGTERM at the end."""
    env = {**os.environ, "HES_FLEET_SECRET": secret}
    program = ["-m", "hes_sim.cli"]
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *program, "fleet", str(path), "--shard", "0/1",
            "--broker", broker, "--wall-anchor", f"{anchor:.3f}",
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await end_children([process], 30)


async def wait_online(node: TimedNode, meters: int, fleet: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    while node.hes.presence.online < meters:
        if fleet.returncode is not None:
            raise SystemExit(f"the fleet process ended with code {fleet.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{node.hes.presence.online}/{meters} meters online after "
                             f"{ONLINE_TIMEOUT_S:g} s")  # fmt: skip
        await asyncio.sleep(0.1)  # presence has no event to wait on


def register(scenario: Scenario) -> list[MeterInfo]:
    """Every meter, without a cell (no per-cell command limit)."""
    return [MeterInfo(m.meter_id, m.kind.value) for m in scenario_grid(scenario).meters]


async def main(options: argparse.Namespace) -> None:
    secret = secrets.token_hex(32)
    with stop_on_sigterm(), tempfile.TemporaryDirectory(prefix="bench-command-") as tmp:
        directory = Path(tmp)
        path = write_scenario(directory, options.meters, options.time_scale)
        scenario = load_scenario(path)
        meters = register(scenario)
        async with PrivateMosquitto() as broker:
            anchor = time.time()
            clock = SimClock(scenario.start.timestamp(), scenario.time_scale, wall_anchor=anchor)
            node_options = NodeOptions(
                broker=broker.address,
                db_path=directory / "hes.sqlite",
                keyring=FleetKeyring(secret.encode()),
                tz=scenario.tz,
                # routine commands (reads) get half the slots: twice the most in flight
                # lets every kind run that many at once
                command_concurrency=2 * max(options.concurrency),
                per_cell_command_limit=2 * max(options.concurrency),
                seed=scenario.seed,
            )
            node = TimedNode(node_options, clock, EventBus(), meters)
            node.wire = WireClock()
            fleet_log = directory / "fleet.log"
            async with (
                node,
                fleet_process(
                    path,
                    str(broker.address),
                    secret,
                    anchor,
                    fleet_log,
                ) as fleet,  # fmt: skip
            ):
                await node.wait_subscribed()
                await wait_online(node, len(meters), fleet)
                print(
                    f"{len(meters)} meters online (lean, hes-sim fleet process), time scale "
                    f"{scenario.time_scale:g}: each meter pushes every "
                    f"{900 / scenario.time_scale:g} wall s; mosquitto on {broker.address}; "
                    f"SQLite store",
                    flush=True,
                )
                bench = Bench(node, [m.meter_id for m in meters], options.deadline_s)
                for kind in options.kinds:
                    for concurrency in options.concurrency:
                        show(await bench.run(kind, concurrency, options.commands, options.warmup))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--commands", type=int, default=500, help="counted commands a run")
    parser.add_argument("--warmup", type=int, default=20, help="uncounted commands first")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 32],
        help="commands in flight at once, one run each (default: 1,32)",
    )
    parser.add_argument(
        "--kinds",
        type=lambda text: [k for k in text.split(",") if k],
        default=["relay", "read"],
        help="relay (disconnect/reconnect), read (read_instantaneous); default both",
    )
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument(
        "--deadline-s", type=float, default=3600.0, help="simulated deadline of each command"
    )
    options = parser.parse_args()
    if set(options.kinds) - set(KINDS):
        parser.error(f"--kinds: choose from {sorted(KINDS)}")
    if max(options.concurrency) > options.meters:
        parser.error("--concurrency: at most one command per meter at a time")
    return options


if __name__ == "__main__":
    configure_logging("warning", "console")
    arguments = parse_args()
    try:
        asyncio.run(main(arguments))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM
        print("stopped", file=sys.stderr)
