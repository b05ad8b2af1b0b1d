"""Bytes per idle meter in one fleet process of a scenario (lean transport), printed.

One shard of the scenario runs as ``hes-sim fleet SCENARIO --shard K/N`` in a subprocess
against a private mosquitto, its run's start an hour away so that no meter pushes while
it is measured. Once every meter of the shard is online (counted from the retained state
messages at the broker) and the process has gone idle, its RSS is read. With
``--pushed`` the run started just long enough ago that every meter pushes its first
interval at once; RSS is read once all have (counted on their up topics) and the
process is idle again, minutes before the second push.

The baseline is the same command for a tiny shard of the same scenario (``--shard
0/BASE``, a few dozen meters), not the RSS before the meters are built: the tiny shard
runs the same code paths, so the interpreter, every module imported on the way to a
connected meter (the codec, the cipher, the event loop's selector), the allocator's
first arenas and the one-off caches land in the baseline instead of being charged to
the meters. Its few meters are subtracted from the shard's count.

    python scripts/bench_idle.py                         # shard 0/7 of scale-100k.yaml
    python scripts/bench_idle.py --shard 0/14            # about 7,000 meters
    python scripts/bench_idle.py --pushed                # idle again after a push
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import psutil
from bench_figures import record  # scripts/, beside this file

from hes_sim.broker_address import BrokerAddress
from hes_sim.logging import configure_logging
from hes_sim.protocols.topics import Channel, MeterState, parse, subscription
from hes_sim.runner.broker import PrivateMosquitto
from hes_sim.scenario.model import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "config/scenarios/scale-100k.yaml"
ANCHOR_AHEAD_S = 3600.0  # the run starts an hour from now: nobody pushes while measured
IDLE_WINDOW_S = 0.5  # a CPU sample; the process is idle when one stays under IDLE_CPU
IDLE_CPU = 0.02  # share of a core
SECRET = "bench idle fleet secret, not a real one"  # noqa: S105 - a throwaway fleet
SHARD_LINE = re.compile(r"shard \d+/\d+: (\d+) meters")


@dataclass(frozen=True, slots=True)
class Sample:
    meters: int
    rss: int
    connect_s: float


def raise_fd_limit() -> None:
    """The fleet process and mosquitto inherit it: each side holds a descriptor a meter."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class BrokerView:
    """Meters whose retained state is ``online`` now, and meters that pushed, as the
    broker sees them (their state and up topics)."""

    def __init__(self) -> None:
        self.online: set[str] = set()
        self.pushed: set[str] = set()
        self.changed = asyncio.Event()

    async def follow(self, broker: BrokerAddress, subscribed: asyncio.Event) -> None:
        async with aiomqtt.Client(broker.host, broker.port, identifier="bench-idle") as client:
            await client.subscribe(subscription(Channel.STATE), qos=1)
            await client.subscribe(subscription(Channel.UP), qos=0)
            subscribed.set()
            async for message in client.messages:
                meter_id, channel = parse(message.topic.value)
                if channel is Channel.UP:
                    self.pushed.add(meter_id)
                elif message.payload == MeterState.ONLINE.encode():
                    self.online.add(meter_id)
                else:
                    self.online.discard(meter_id)
                self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()


async def shard_meters(stderr: asyncio.StreamReader, lines: list[str]) -> int:
    """The shard's size, from the command's first line; later lines are kept for errors."""
    while line := (await stderr.readline()).decode():
        lines.append(line)
        if found := SHARD_LINE.search(line):
            return int(found.group(1))
    raise RuntimeError("the fleet process ended before naming its meters:\n" + "".join(lines))


async def drain(stderr: asyncio.StreamReader, lines: list[str]) -> None:
    """Keep reading the child's log, so that a full pipe never stalls it."""
    while line := (await stderr.readline()).decode():
        lines.append(line)


async def until_either(
    waiting: Coroutine[Any, Any, None], following: asyncio.Task[None], timeout_s: float
) -> None:
    """Until ``waiting`` is done; the broker's follower failing ends the wait, loudly."""
    waiter = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait([waiter, following], timeout=timeout_s, return_when="FIRST_COMPLETED")
    finally:
        waiter.cancel()
    if following.done():
        following.result()  # raises what ended it
        raise RuntimeError("the broker's follower ended")
    if not waiter.done() or waiter.cancelled():
        raise TimeoutError(f"not every meter was online within {timeout_s:g} s")


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def until_idle(process: psutil.Process, timeout_s: float) -> None:
    """Until a whole sample window of the process stays under IDLE_CPU: the meters that
    came online last have finished their post-connect work (and nothing else runs)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_s(process)
        await asyncio.sleep(IDLE_WINDOW_S)  # a measuring window, not a wait for an event
        if (cpu_s(process) - before) / IDLE_WINDOW_S < IDLE_CPU:
            return
    raise TimeoutError(f"the fleet process did not go idle within {timeout_s:g} s")


def wall_anchor(scenario: Path, *, pushed: bool) -> float:
    """An hour ahead: nobody pushes while measured. With ``pushed``, far enough behind
    that every meter's first push is due at once and its second is minutes away."""
    if not pushed:
        return time.time() + ANCHOR_AHEAD_S
    loaded = load_scenario(scenario)
    schedule = loaded.schedule()
    window = loaded.push.randomisation_start_interval
    return time.time() - (schedule.first_end - schedule.sim_start + window + 1)


async def measure(scenario: Path, shard: str, timeout_s: float, *, pushed: bool) -> Sample:
    async with PrivateMosquitto() as broker:
        view, subscribed = BrokerView(), asyncio.Event()
        following = asyncio.create_task(view.follow(broker.address, subscribed))
        await asyncio.wait_for(subscribed.wait(), timeout_s)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hes_sim.cli", "fleet", str(scenario),
            "--shard", shard, "--broker", str(broker.address),
            "--wall-anchor", f"{wall_anchor(scenario, pushed=pushed):.3f}",
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env=os.environ | {"HES_FLEET_SECRET": SECRET, "HES_LOG_LEVEL": "warning"},
        )  # fmt: skip
        assert child.stderr is not None  # noqa: S101 - piped above
        lines: list[str] = []
        draining: asyncio.Task[None] | None = None
        try:
            started = time.perf_counter()
            meters = await asyncio.wait_for(shard_meters(child.stderr, lines), timeout_s)
            draining = asyncio.create_task(drain(child.stderr, lines))
            await until_either(view.until(lambda: len(view.online) >= meters), following, timeout_s)
            connect_s = time.perf_counter() - started
            if pushed:
                everyone = view.until(lambda: len(view.pushed) >= meters)
                await until_either(everyone, following, timeout_s)
            process = psutil.Process(child.pid)
            await until_idle(process, timeout_s)
            return Sample(meters, int(process.memory_info().rss), connect_s)
        except BaseException:
            sys.stderr.write("".join(lines[-20:]))
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                child.kill()  # its goodbyes are not measured
            await child.wait()
            for task in (following, draining):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task


async def main(options: argparse.Namespace) -> None:
    raise_fd_limit()
    tiny = f"0/{options.baseline_shards}"
    base = await measure(options.scenario, tiny, options.timeout_s, pushed=options.pushed)
    full = await measure(options.scenario, options.shard, options.timeout_s, pushed=options.pushed)
    meters = full.meters - base.meters
    per_meter = (full.rss - base.rss) / meters
    mib = 1024 * 1024
    after = "after each meter's first push" if options.pushed else "before any push"
    print(f"scenario {options.scenario.name}, shard {options.shard}, lean transport, {after}")
    spread = load_scenario(options.scenario).fleet.start_spread  # the cold start's window
    print(f"meters held by the fleet process: {full.meters:,} (online in {full.connect_s:.1f} s,"
          f" first connects spread over {spread:g} s)")  # fmt: skip
    print(f"RSS: {full.rss / mib:.1f} MiB")
    print(f"baseline: {base.rss / mib:.1f} MiB (shard 0/{options.baseline_shards}, "
          f"{base.meters} meters)")  # fmt: skip
    print(f"bytes per idle meter: {per_meter:,.0f} B ({per_meter / 1024:.2f} KiB)")
    how = f"shard {options.shard} of {options.scenario.name}, RSS less a {base.meters}-meter shard"
    record("meters held by one fleet process", full.meters, "meters", note=how)
    record("bytes per idle meter (fleet side)", per_meter, "B", target="<= 8 KB", note=how)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--shard", default="0/7", help="K/N: the shard measured (default 0/7)")
    parser.add_argument(
        "--baseline-shards", type=int, default=5000, help="the baseline is shard 0/THIS"
    )
    parser.add_argument("--timeout-s", type=float, default=600.0, help="each wait, wall")
    parser.add_argument(
        "--pushed",
        action="store_true",
        help="measure once every meter has pushed its first interval (the run started "
        "just long enough ago), instead of before the run's start",
    )
    return parser.parse_args()


if __name__ == "__main__":
    configure_logging("warning", "console")
    asyncio.run(main(parse_args()))
