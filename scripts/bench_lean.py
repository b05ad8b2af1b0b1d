"""Figures for the lean meter transport, printed, never asserted.

1. Idle links: N lean links (and, for comparison, fewer aiomqtt links) connect to a
   private mosquitto and stay idle: connect wall time, connects/s, RSS per idle link
   (after gc), CPU share of the link process and of mosquitto while idle.
2. Idle meters: the whole meter in a Fleet (build_meters + Fleet, as bench.py's
   section 1) with the lean factory and with the aiomqtt factory: RSS per meter, and the
   share of it that the meters' own state (VirtualMeter) takes.
3. Where a lean meter's memory goes: tracemalloc, the top allocation sites per meter.

Each measurement runs in a fresh process against a fresh mosquitto. Examples:

    python scripts/bench_lean.py                      # 5,000 lean links, 2,000 aiomqtt
    python scripts/bench_lean.py --links 10000 19000 --sources 4 --skip-fleet
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta, timezone

import psutil

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.logging import configure_logging
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.lean import lean_link_factory, loopback_sources
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.transport import LinkFactory, MeterLink, aiomqtt_link_factory
from hes_sim.runner.broker import PrivateMosquitto

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, tzinfo=IST).timestamp()
CONNECT_CONCURRENCY = 200  # as the Fleet's default
KEEPALIVE_S = 60


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def raise_fd_limit() -> int:
    """Children and mosquitto inherit it: each side holds one descriptor per link."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def factory_for(kind: str, broker: BrokerAddress, sources: int) -> LinkFactory:
    if kind == "lean":
        spread = loopback_sources(sources) if sources else ()
        return lean_link_factory(broker, KEEPALIVE_S, source_hosts=spread)
    return aiomqtt_link_factory(broker, KEEPALIVE_S)


# ---------------------------------------------------------------- 1. idle links (child)


async def idle_links(
    kind: str,
    count: int,
    broker: BrokerAddress,
    *,
    sources: int,
    idle_s: float,
    broker_pid: int,
) -> dict[str, float]:
    factory = factory_for(kind, broker, sources)
    before = rss()
    slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    opened: list[tuple[AbstractAsyncContextManager[MeterLink], MeterLink]] = []

    async def open_one(meter_id: str) -> None:
        async with slots:
            context = factory(meter_id)
            opened.append((context, await context.__aenter__()))

    started = time.perf_counter()
    # one task per connect, all gone once connected: the idle links hold none
    await asyncio.gather(*(open_one(f"SP{n:07d}") for n in range(1, count + 1)))
    connect_s = time.perf_counter() - started
    await asyncio.sleep(2)  # connection housekeeping settles before RSS is read
    after = rss()
    me, mosquitto = psutil.Process(), psutil.Process(broker_pid)
    cpu_before, broker_before = cpu_s(me), cpu_s(mosquitto)
    await asyncio.sleep(idle_s)
    idle_cpu = (cpu_s(me) - cpu_before) / idle_s
    broker_cpu = (cpu_s(mosquitto) - broker_before) / idle_s
    closing = time.perf_counter()
    await asyncio.gather(*(context.__aexit__(None, None, None) for context, _ in opened))
    return {
        "links": count,
        "connected": len(opened),
        "connect_s": connect_s,
        "connects_per_s": count / connect_s,
        "rss_per_link_b": (after - before) / count,
        "idle_cpu_share": idle_cpu,
        "broker_idle_cpu_share": broker_cpu,
        "close_s": time.perf_counter() - closing,
    }


# ---------------------------------------------------------------- 2. idle meters (child)


@contextlib.asynccontextmanager
async def connected_fleet(
    kind: str, count: int, broker: BrokerAddress, sources: int
) -> AsyncIterator[tuple[Fleet, float]]:
    meters = build_meters({MeterKind.SINGLE_PHASE: count}, 1, IST)
    started = time.perf_counter()
    async with Fleet(
        meters,
        factory_for(kind, broker, sources),
        EventBus(),
        seed=1,
        time_scale=1,
        push_randomisation_s=0,
        clock=SimClock(START, 1),
        connect_concurrency=CONNECT_CONCURRENCY,
    ) as fleet:
        await asyncio.wait_for(fleet.wait_connected(), 600)
        connect_s = time.perf_counter() - started
        await asyncio.sleep(2)
        yield fleet, connect_s


async def idle_meters(
    kind: str, count: int, broker: BrokerAddress, sources: int, idle_s: float
) -> dict[str, float]:
    before = rss()
    # the meters' own state, measured apart by building (and dropping) the same fleet
    alone = build_meters({MeterKind.SINGLE_PHASE: count}, 1, IST)
    meters_only = rss() - before
    del alone
    before = rss()
    async with connected_fleet(kind, count, broker, sources) as (fleet, connect_s):
        after = rss()
        me = psutil.Process()
        cpu_before = cpu_s(me)
        await asyncio.sleep(idle_s)
        idle_cpu = (cpu_s(me) - cpu_before) / idle_s
        tasks = len(asyncio.all_tasks())
        connected = fleet.connected
    return {
        "meters": count,
        "connected": connected,
        "connect_s": connect_s,
        "rss_per_meter_b": (after - before) / count,
        "meter_state_b": meters_only / count,
        "tasks_per_meter": tasks / count,
        "idle_cpu_share": idle_cpu,
    }


# ---------------------------------------------------------------- 3. tracemalloc (child)


async def trace_meters(count: int, broker: BrokerAddress, top: int) -> dict[str, object]:
    gc.collect()
    tracemalloc.start(12)  # deep enough to reach our code under asyncio's internals
    baseline = tracemalloc.take_snapshot()
    async with connected_fleet("lean", count, broker, 0) as (_fleet, _connect_s):
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    sites = snapshot.compare_to(baseline, "lineno")
    by_file = snapshot.compare_to(baseline, "filename")

    def row(stat: tracemalloc.StatisticDiff) -> dict[str, object]:
        frame = stat.traceback[0]
        return {
            "site": f"{_short(frame.filename)}:{frame.lineno}",
            "bytes_per_meter": stat.size_diff / count,
            "blocks_per_meter": stat.count_diff / count,
        }

    return {
        "meters": count,
        "traced_per_meter_b": traced / count,
        "sites": [row(s) for s in sites[:top]],
        "owners": owners(snapshot.compare_to(baseline, "traceback"), count)[:top],
        "files": [
            {"file": _short(s.traceback[0].filename), "bytes_per_meter": s.size_diff / count}
            for s in by_file[:top]
        ],
    }


def owners(stats: list[tracemalloc.StatisticDiff], count: int) -> list[dict[str, object]]:
    """Each allocation charged to the innermost line of this project that led to it (a
    future made by asyncio for a meter's sleep is charged to the meter's sleep)."""
    charged: dict[str, list[float]] = {}
    for stat in stats:
        frames = list(stat.traceback)  # oldest first
        ours = [f for f in frames if "/hes_sim/" in f.filename]
        frame = ours[-1] if ours else frames[-1]
        site = f"{_short(frame.filename)}:{frame.lineno}"
        sizes = charged.setdefault(site, [0.0, 0.0])
        sizes[0] += stat.size_diff / count
        sizes[1] += stat.count_diff / count
    ranked = sorted(charged.items(), key=lambda item: -item[1][0])
    return [{"site": s, "bytes_per_meter": b, "blocks_per_meter": n} for s, (b, n) in ranked]


def _short(path: str) -> str:
    """A path from its package on, so no machine's directories are printed."""
    for marker in ("/hes_sim/", "/site-packages/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return f"hes_sim/{tail}" if marker == "/hes_sim/" else tail.split("/", 1)[-1]
    return path


# ---------------------------------------------------------------- orchestration (parent)


async def in_child(args: list[str], broker: PrivateMosquitto) -> dict[str, object]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "child",
        *args,
        str(broker.address),
        str(broker.pid),
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await child.communicate()
    lines = stdout.decode().strip().splitlines()
    if child.returncode != 0 or not lines:
        return {"error": f"child exited {child.returncode}"}
    result: dict[str, object] = json.loads(lines[-1])
    return result


async def run_child(argv: list[str]) -> None:
    section, kind, count, sources, idle_s, top = argv[:6]
    broker, broker_pid = BrokerAddress.parse(argv[6]), int(argv[7])
    result: dict[str, object]
    if section == "links":
        result = dict(
            await idle_links(
                kind,
                int(count),
                broker,
                sources=int(sources),
                idle_s=float(idle_s),
                broker_pid=broker_pid,
            )
        )
    elif section == "fleet":
        result = dict(await idle_meters(kind, int(count), broker, int(sources), float(idle_s)))
    else:
        result = await trace_meters(int(count), broker, int(top))
    print(json.dumps(result))


def show(
    title: str, row: dict[str, object], fields: list[tuple[str, str, Callable[..., str]]]
) -> None:
    if "error" in row:
        print(f"{title}: {row['error']}")
        return
    cells = [f"{label} {fmt(row[key])}" for key, label, fmt in fields]
    print(f"{title}: " + ", ".join(cells))


LINK_FIELDS: list[tuple[str, str, Callable[..., str]]] = [
    ("connected", "connected", lambda v: f"{v:,}"),
    ("connect_s", "connect", lambda v: f"{v:.2f} s"),
    ("connects_per_s", "rate", lambda v: f"{v:,.0f}/s"),
    ("rss_per_link_b", "RSS/link", lambda v: f"{v / 1024:.2f} KiB"),
    ("idle_cpu_share", "idle CPU", lambda v: f"{v:.1%}"),
    ("broker_idle_cpu_share", "mosquitto idle CPU", lambda v: f"{v:.1%}"),
]
FLEET_FIELDS: list[tuple[str, str, Callable[..., str]]] = [
    ("connected", "connected", lambda v: f"{v:,}"),
    ("connect_s", "connect", lambda v: f"{v:.2f} s"),
    ("rss_per_meter_b", "RSS/meter", lambda v: f"{v / 1024:.2f} KiB"),
    ("meter_state_b", "of which meter state", lambda v: f"{v / 1024:.2f} KiB"),
    ("tasks_per_meter", "tasks/meter", lambda v: f"{v:.2f}"),
    ("idle_cpu_share", "idle CPU", lambda v: f"{v:.1%}"),
]


async def main(options: argparse.Namespace) -> None:
    limit = raise_fd_limit()
    print(f"descriptors per process: {limit:,}; idle window {options.idle_s:g} s")
    idle = str(options.idle_s)
    print("\n1. idle links")
    runs = [("lean", n) for n in options.links] + [("aiomqtt", n) for n in options.aiomqtt_links]
    for kind, count in runs:
        sources = options.sources if kind == "lean" else 0
        async with PrivateMosquitto() as broker:
            row = await in_child(["links", kind, str(count), str(sources), idle, "0"], broker)
        spread = f", {sources} sources" if sources else ""
        show(f"  {kind} x{count:,}{spread}", row, LINK_FIELDS)
    if options.skip_fleet:
        return
    print("\n2. idle meters in a Fleet")
    for kind, count in (("lean", options.fleet), ("aiomqtt", options.fleet_aiomqtt)):
        async with PrivateMosquitto() as broker:
            row = await in_child(["fleet", kind, str(count), "0", idle, "0"], broker)
        show(f"  {kind} x{count:,}", row, FLEET_FIELDS)
    print(f"\n3. where a lean meter's memory goes (tracemalloc, {options.trace:,} meters)")
    async with PrivateMosquitto() as broker:
        trace = await in_child(["trace", "lean", str(options.trace), "0", "0", "25"], broker)
    if "error" in trace:
        print(f"  {trace['error']}")
        return
    print(f"  traced Python memory per meter: {float(trace['traced_per_meter_b']):,.0f} B")  # type: ignore[arg-type]
    print("  top sites (bytes per meter, blocks per meter):")
    for site in trace["sites"]:  # type: ignore[attr-defined]
        print(
            f"    {site['bytes_per_meter']:8,.0f} B {site['blocks_per_meter']:6.1f}  {site['site']}"
        )
    print("  charged to the innermost hes_sim line (bytes per meter, blocks per meter):")
    for site in trace["owners"]:  # type: ignore[attr-defined]
        print(
            f"    {site['bytes_per_meter']:8,.0f} B {site['blocks_per_meter']:6.1f}  {site['site']}"
        )
    print("  by file:")
    for entry in trace["files"][:12]:  # type: ignore[index]
        print(f"    {entry['bytes_per_meter']:8,.0f} B  {entry['file']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, nargs="*", default=[5000])
    parser.add_argument("--aiomqtt-links", type=int, nargs="*", default=[2000])
    parser.add_argument(
        "--sources", type=int, default=0, help="spread lean links over 127.0.0.1..N"
    )
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--fleet", type=int, default=5000, help="lean meters in the Fleet")
    parser.add_argument("--fleet-aiomqtt", type=int, default=2000)
    parser.add_argument("--trace", type=int, default=2000, help="meters traced by tracemalloc")
    parser.add_argument("--skip-fleet", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    configure_logging("warning", "console")
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        asyncio.run(run_child(sys.argv[2:]))
    else:
        asyncio.run(main(parse_args()))
