"""`make bench`: figures for the foundation, printed, never asserted.

1. Fleet: meters connected per fleet process, wall time to connect them, RSS per meter
   (fleet process) and per connection (mosquitto), at 1k and 5k meters. Each size runs
   in a fresh process against a fresh private mosquitto.
2. Codec: per push, in microseconds: encode and decode by gurux-dlms (the reference) and
   by the precompiled fast path the meters and the head-end use; suite-0 cipher and
   decipher through ``cryptography``.
3. Ingest: a burst of suite-0 ciphered pushes queued at the broker for a persistent
   session, then taken by (a) the head-end (decipher + decode + validate + store) and
   (b) mosquitto_sub alone, same stream (the two take turns, three runs each, and
   mosquitto_sub once more; the fastest of each compared, every run printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from math import nan
from pathlib import Path

import psutil
from bench_figures import record  # scripts/, beside this file
from bench_store import DEFAULT_DSN, pg_database

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import EventBus, ReadStored
from hes_sim.hes.ingest import PushPolicy
from hes_sim.hes.ingest_workers.pool import IngestWorkers
from hes_sim.hes.service import HeadEnd
from hes_sim.hes.store_factory import open_store
from hes_sim.keyring import FleetKeyring
from hes_sim.logging import configure_logging
from hes_sim.meter_sim.cosem.objects import object_model
from hes_sim.meter_sim.cosem.server import DlmsSession, Identity
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.transport import aiomqtt_link_factory
from hes_sim.protocols import frame, mqtt_codec, push, security, wrapper
from hes_sim.protocols.topics import Channel, topic
from hes_sim.runner.broker import PrivateMosquitto, find_mosquitto

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, tzinfo=IST).timestamp()
BENCH_KEYRING = FleetKeyring(b"bench fleet secret, not a real one")
STORE = "sqlite"  # or "postgresql": the head-end's store in the ingest bench (--store)
PUBLISH_WINDOW = 1000  # QoS 1 publishes written before their PUBACKs are read


def rss() -> int:
    return psutil.Process().memory_info().rss


# ---------------------------------------------------------------- 1. fleet connect


async def fleet_connect(meters: int, broker_url: str) -> dict[str, float]:
    broker = BrokerAddress.parse(broker_url)
    before = rss()
    fleet_meters = build_meters({MeterKind.SINGLE_PHASE: meters}, 1, IST)
    started = time.perf_counter()
    async with Fleet(
        fleet_meters,
        aiomqtt_link_factory(broker),
        EventBus(),
        seed=1,
        time_scale=1,
        push_randomisation_s=0,
        clock=SimClock(START, 1),
    ) as fleet:
        await asyncio.wait_for(fleet.wait_connected(), 600)
        connect_s = time.perf_counter() - started
        await asyncio.sleep(2)  # let connection housekeeping settle before reading RSS
        after = rss()
        connected = fleet.connected
    return {
        "meters": meters,
        "connected": connected,
        "connect_s": connect_s,
        "rss_per_meter_kb": (after - before) / meters / 1024,
    }


async def bench_fleet(sizes: list[int]) -> list[dict[str, float]]:
    rows = []
    for size in sizes:
        async with PrivateMosquitto() as broker:
            broker_proc = psutil.Process(broker.pid)
            broker_before = broker_proc.memory_info().rss
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "fleet-child",
                str(size),
                str(broker.address),
                stdout=asyncio.subprocess.PIPE,
            )
            # sample the broker while the child holds its connections
            out_task = asyncio.ensure_future(child.communicate())
            broker_peak = broker_before
            while not out_task.done():
                broker_peak = max(broker_peak, broker_proc.memory_info().rss)
                await asyncio.wait({out_task}, timeout=0.5)
            stdout, _ = out_task.result()
            row = json.loads(stdout.decode().strip().splitlines()[-1])
            row["broker_kb_per_connection"] = (broker_peak - broker_before) / size / 1024
            rows.append(row)
    return rows


# ---------------------------------------------------------------- memory per idle meter


def bench_memory(meters: int = 5000) -> dict[str, float]:
    """tracemalloc bytes: the shared object model once, then each idle meter's own state
    (values, relay, logs, ledger, a day of closed intervals; no connection, no session)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    models = [object_model(kind) for kind in MeterKind]
    model_bytes = tracemalloc.get_traced_memory()[0] - before
    before = tracemalloc.get_traced_memory()[0]
    fleet = build_meters({MeterKind.SINGLE_PHASE: meters}, 1, IST)
    for meter in fleet:
        for k in range(1, 97):
            meter.close_interval(START + 900 * k, 900)
    per_meter = (tracemalloc.get_traced_memory()[0] - before) / meters
    before = tracemalloc.get_traced_memory()[0]
    keyring = FleetKeyring(b"bench fleet secret, not a real one")
    sessions = [
        DlmsSession(
            m,
            object_model(m.kind),
            Identity(keyring.system_title_for(m.meter_id), keyring.keys_for(m.meter_id)),
        )
        for m in fleet[:1000]
    ]
    per_session = (tracemalloc.get_traced_memory()[0] - before) / len(sessions)
    tracemalloc.stop()
    del models, sessions
    return {"model_bytes": model_bytes, "meter_bytes": per_meter, "session_bytes": per_session}


# ---------------------------------------------------------------- 2. codec


CODEC_RUNS = 2000  # calls per timing; the best of CODEC_REPEATS timings is kept
CODEC_REPEATS = 5


def per_call_us(call: Callable[[], object]) -> float:
    return min(timeit.repeat(call, number=CODEC_RUNS, repeat=CODEC_REPEATS)) / CODEC_RUNS * 1e6


def bench_codec() -> tuple[list[tuple[str, dict[str, float]]], dict[str, float]]:
    """Per push: the gurux-dlms reference codec, the precompiled fast path that ``push.encode``
    and ``push.decode`` take, and suite-0 ciphering through ``cryptography``."""
    clock = datetime.fromtimestamp(START + 900, tz=IST)
    pushes = {
        f"{kind} block load": push.DataNotification(
            1, None, build_meters({kind: 1}, 1, IST)[0].close_interval(START + 900, 900)
        )
        for kind in (MeterKind.SINGLE_PHASE, MeterKind.THREE_PHASE)
    }
    event = push.EventEntry(bytes([0, 0, 99, 98, 6, 255]), clock, 201)
    pushes["event"] = push.DataNotification(1, None, event)
    rows = []
    for name, notification in pushes.items():
        apdu = push.encode(notification)
        row = {
            "apdu_bytes": len(apdu),
            "encode_gurux_us": per_call_us(lambda n=notification: push.encode_gurux(n)),
            "encode_fast_us": per_call_us(lambda n=notification: push.encode(n)),
            "decode_gurux_us": per_call_us(lambda a=apdu: push.decode_gurux(a)),
            "decode_fast_us": per_call_us(lambda a=apdu: push.decode(a)),
        }
        rows.append((name, row))

    meter_id = build_meters({MeterKind.SINGLE_PHASE: 1}, 1, IST)[0].meter_id
    title, keys = BENCH_KEYRING.system_title_for(meter_id), BENCH_KEYRING.keys_for(meter_id)
    plain = push.encode(pushes[f"{MeterKind.SINGLE_PHASE} block load"])
    tag = security.CipheredTag.GENERAL_GLO_CIPHERING
    sent = wrapper.wrap(
        security.encrypt(plain, tag, title, keys, 1), wrapper.METER_WPORT, wrapper.HES_WPORT
    )

    def decipher() -> bytes:  # what the head-end does before decoding
        return security.decrypt(security.parse(wrapper.unwrap(sent)[1]), title, keys)

    return rows, {
        "plain_bytes": len(plain),
        "frame_bytes": len(sent),
        "cipher_us": per_call_us(lambda: security.encrypt(plain, tag, title, keys, 1)),
        "decipher_us": per_call_us(decipher),
        "derive_keys_us": per_call_us(lambda: BENCH_KEYRING.keys_for(meter_id)),
    }


def print_codec(rows: list[tuple[str, dict[str, float]]], codec: dict[str, float]) -> None:
    print(f"\ncodec, us per push (APDU only; best of {CODEC_REPEATS} x {CODEC_RUNS:,} calls)")
    print(
        f"  {'push':<28} {'bytes':>5} {'encode gurux':>12} {'fast':>6} {'x':>4}"
        f" {'decode gurux':>12} {'fast':>6} {'x':>4}"
    )
    for name, row in rows:
        print(
            f"  {name:<28} {row['apdu_bytes']:>5.0f}"
            f" {row['encode_gurux_us']:>12.1f} {row['encode_fast_us']:>6.2f}"
            f" {row['encode_gurux_us'] / row['encode_fast_us']:>4.0f}"
            f" {row['decode_gurux_us']:>12.1f} {row['decode_fast_us']:>6.2f}"
            f" {row['decode_gurux_us'] / row['decode_fast_us']:>4.0f}"
        )
    print(
        f"  suite 0 with cryptography's AES-GCM, a {codec['plain_bytes']:.0f}-byte APDU in a"
        f" {codec['frame_bytes']:.0f}-byte frame: cipher {codec['cipher_us']:.2f} us,"
        f" decipher {codec['decipher_us']:.2f} us (unwrap and parse included)"
    )
    print(f"  derive a meter's keys from the fleet secret: {codec['derive_keys_us']:.2f} us")


# ---------------------------------------------------------------- 3. ingest burst


def burst(meters: int, intervals: int) -> list[tuple[str, bytes]]:
    frames = []
    for meter in build_meters({MeterKind.SINGLE_PHASE: meters}, 1, IST):
        for k in range(1, intervals + 1):
            entry = meter.close_interval(START + 900 * k, 900)
            sender = frame.Sender(
                BENCH_KEYRING.system_title_for(meter.meter_id),
                BENCH_KEYRING.keys_for(meter.meter_id),
                k,
            )
            notification = push.DataNotification(k, None, entry)
            frames.append((meter.meter_id, frame.encode_push_frame(notification, sender)))
    return frames


def publish_burst(broker: BrokerAddress, frames: list[tuple[str, bytes]]) -> float:
    """QoS 1 publishes over one plain socket, a window at a time, each window's PUBACKs
    read back before the next: the broker has queued them all when this returns."""
    started = time.perf_counter()
    with socket.create_connection((broker.host, broker.port)) as sock:
        sock.sendall(mqtt_codec.encode(mqtt_codec.Connect("bench-publisher", 60)))
        _receive_exactly(sock, 4)  # CONNACK
        for first in range(0, len(frames), PUBLISH_WINDOW):
            window = frames[first : first + PUBLISH_WINDOW]
            sock.sendall(
                b"".join(
                    mqtt_codec.encode_publish(
                        topic(meter_id, Channel.UP), payload, qos=1, packet_id=1 + n
                    )
                    for n, (meter_id, payload) in enumerate(window)
                )
            )
            _receive_exactly(sock, 4 * len(window))  # a PUBACK is 4 bytes
    return len(frames) / (time.perf_counter() - started)


def _receive_exactly(sock: socket.socket, count: int) -> None:
    while count:
        chunk = sock.recv(count)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        count -= len(chunk)


async def publish_all(broker: PrivateMosquitto, frames: list[tuple[str, bytes]]) -> float:
    return await asyncio.to_thread(publish_burst, broker.address, frames)


def cpu_seconds(broker: PrivateMosquitto) -> dict[str, float]:
    """CPU time so far of this process (the head-end), its ingest workers and the broker."""
    me = psutil.Process()
    own = me.cpu_times()
    workers = [child.cpu_times() for child in me.children() if child.pid != broker.pid]
    broker_times = psutil.Process(broker.pid).cpu_times()
    return {
        "head_end": own.user + own.system,
        "workers": sum(t.user + t.system for t in workers),
        "broker": broker_times.user + broker_times.system,
    }


async def bench_head_end(
    broker: PrivateMosquitto, frames: list[tuple[str, bytes]], workers: int = 0
) -> tuple[float, dict[str, float]]:
    """Reads stored per second by a head-end (``workers`` ingest processes, or none: its
    own process) draining the burst queued at the broker for its persistent session(s),
    and the CPU microseconds per read its processes and the broker spent meanwhile."""
    with contextlib.ExitStack() as stack:
        if STORE == "postgresql":
            location = stack.enter_context(pg_database(os.environ.get("HES_PG_DSN", DEFAULT_DSN)))
            if location is None:
                return float("nan"), {}
        else:
            location = str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "r.sqlite")
        async with open_store(location) as store:
            # a month after the burst, so that no read is refused as from the future
            clock = SimClock(START + 86_400 * 30, 1, wall_anchor=time.time())
            pool = IngestWorkers(workers, location, BENCH_KEYRING.secret) if workers else None
            policy = PushPolicy(keyring=BENCH_KEYRING, require_ciphered=True)

            def head_end(bus: EventBus) -> HeadEnd:
                return HeadEnd(broker.address, store, clock, bus, policy=policy,
                               client_id="bench-hes", workers=pool)  # fmt: skip

            async with head_end(EventBus()) as hes:
                await asyncio.wait_for(hes.subscribed.wait(), 30)  # makes the session(s)
            await publish_all(broker, frames)  # queued at the broker for the session(s)
            bus = EventBus()
            done = asyncio.Event()
            stored = 0
            # the rate over all but the first 5 % of the burst: how fast reads go in once
            # ingest runs, not how long processes take to start
            warm = max(1, len(frames) // 20)
            warmed_at = 0.0
            cpu_warm: dict[str, float] = {}
            cpu_done: dict[str, float] = {}

            def count(event: object) -> None:
                nonlocal stored, warmed_at
                if isinstance(event, ReadStored):
                    stored += 1
                    if stored == warm:
                        warmed_at = time.perf_counter()
                        cpu_warm.update(cpu_seconds(broker))
                    if stored == len(frames):
                        cpu_done.update(cpu_seconds(broker))
                        done.set()

            bus.subscribe(count)
            async with head_end(bus):
                await asyncio.wait_for(done.wait(), 600)
                reads = len(frames) - warm
                rate = reads / (time.perf_counter() - warmed_at)
            us_per_read = {k: 1e6 * (cpu_done[k] - cpu_warm[k]) / reads for k in cpu_done}
            return rate, us_per_read


async def bench_mosquitto_sub(broker: PrivateMosquitto, frames: list[tuple[str, bytes]]) -> float:
    sub = shutil.which("mosquitto_sub")
    if sub is None:
        return float("nan")
    common = [
        sub,
        "-h",
        broker.address.host,
        "-p",
        str(broker.address.port),
        "-q",
        "1",
        "-c",
        "-i",
        "bench-sub",
        "-t",
        "mtr/v1/+/up",
    ]
    # create the persistent session, then leave
    maker = await asyncio.create_subprocess_exec(
        *common,
        "-C",
        "1",
        "-W",
        "1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await maker.wait()
    await publish_all(broker, frames)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *common,
        "-C",
        str(len(frames)),
        "-N",
        stdout=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(proc.wait(), 600)
    return len(frames) / (time.perf_counter() - started)


async def bench_ingest(meters: int, intervals: int, workers: list[int], repeats: int) -> dict:
    frames = burst(meters, intervals)
    async with PrivateMosquitto() as broker:
        publish_rate = await publish_all(broker, frames[: min(5000, len(frames))])
    # mosquitto_sub and the head-end take turns, ``repeats`` runs each, then mosquitto_sub
    # once more; the fastest run of each is compared. On a shared machine one run can be
    # far slower than the next, either way: a slow yardstick would flatter the head-end, a
    # slow head-end run would wrong it. Every run is printed.
    sub_rates: list[float] = []
    hes_runs: dict[int, list[tuple[float, dict[str, float]]]] = {count: [] for count in workers}
    for _ in range(repeats):
        for count in workers:
            async with PrivateMosquitto() as broker:
                sub_rates.append(await bench_mosquitto_sub(broker, frames))
            async with PrivateMosquitto() as broker:
                hes_runs[count].append(await bench_head_end(broker, frames, count))
    async with PrivateMosquitto() as broker:
        sub_rates.append(await bench_mosquitto_sub(broker, frames))
    result = {
        "pushes": len(frames),
        "publisher_per_s": publish_rate,
        "mosquitto_sub_per_s": max(sub_rates),
        "mosquitto_sub_runs": sub_rates,
    }
    for count, runs in hes_runs.items():
        rate, us_per_read = max(runs, key=lambda run: run[0])
        result[f"head_end_{count}_per_s"] = rate
        result[f"head_end_{count}_runs"] = [run[0] for run in runs]
        result |= {f"head_end_{count}_cpu_us_{k}": v for k, v in us_per_read.items()}
    return result


def print_ingest(result: dict, workers: list[int], repeats: int) -> None:
    print(
        f"\ningest burst: {result['pushes']:,} suite-0 pushes queued at the broker, then"
        " drained (decipher, check, decode, validate, store in " + STORE + "); the"
        " fastest run of each"
    )

    def runs(key: str) -> str:
        return "runs: " + ", ".join(f"{rate:.0f}" for rate in result[key])

    raw = result["mosquitto_sub_per_s"]
    label = "mosquitto_sub alone, same stream"
    print(f"  {label:<46} {raw:>9.0f} msgs/s   {runs('mosquitto_sub_runs')}")
    for count in workers:
        rate = result[f"head_end_{count}_per_s"]
        label = f"head-end, {count} ingest workers" if count else "head-end, in its own process"
        print(
            f"  {label:<46} {rate:>9.0f} reads/s  {rate / raw:.3f} x mosquitto_sub   "
            f"{runs(f'head_end_{count}_runs')}"
        )
        spent = ", ".join(
            f"{part.replace('_', '-')} {result.get(f'head_end_{count}_cpu_us_{part}', nan):.1f}"
            for part in ("workers", "head_end", "broker")
            if count or part != "workers"
        )
        print(f"  {'':<46} CPU us a read (fastest run): {spent}")
        record(
            f"HES ingest / mosquitto_sub, {STORE}, {count} workers" if count else
            f"HES ingest / mosquitto_sub, {STORE}, in process",
            rate / raw, "ratio", target=">= 0.5",
            note=f"{rate:,.0f} reads/s against {raw:,.0f} msgs/s (fastest of "
            f"{repeats} and {repeats + 1}), {result['pushes']:,} "
            f"pushes, {STORE}",
        )  # fmt: skip
    print(f"  {'(publisher: one socket, QoS 1)':<46} {result['publisher_per_s']:>9.0f} msgs/s")


# ---------------------------------------------------------------- main


def main() -> None:
    configure_logging("warning", "console")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "fleet", "codec", "memory", "ingest", "proxy", "fleet-child"],
    )
    parser.add_argument("args", nargs="*")
    parser.add_argument("--sizes", default="1000,5000", help="fleet sizes to connect")
    parser.add_argument(
        "--store", default="sqlite", choices=["sqlite", "postgresql"], help="ingest bench store"
    )
    parser.add_argument(
        "--ingest-workers", default="0,2", help="head-end ingest worker counts to compare"
    )
    parser.add_argument(
        "--burst", default="10000x10", help="meters x intervals of the ingest burst"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="ingest runs of each, the fastest compared"
    )
    options = parser.parse_args()
    global STORE  # noqa: PLW0603 - a command-line choice, read by the ingest bench
    STORE = options.store

    if options.what == "fleet-child":
        size, broker_url = int(options.args[0]), options.args[1]
        print(json.dumps(asyncio.run(fleet_connect(size, broker_url))))
        return

    find_mosquitto()
    print(f"hes-sim bench on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if options.what in ("all", "codec"):
        print_codec(*bench_codec())
    if options.what in ("all", "memory"):
        memory = bench_memory()
        print("\nmemory (tracemalloc)")
        model_kb = memory["model_bytes"] / 1024
        print(f"  object model, every kind, shared by all meters: {model_kb:.0f} KB")
        print(
            f"  per idle meter (values, relay, logs, ledger, a day of intervals): "
            f"{memory['meter_bytes']:.0f} bytes"
        )
        print(
            f"  per DLMS session, made only while the head-end talks to a meter: "
            f"{memory['session_bytes']:.0f} bytes"
        )
    if options.what in ("all", "fleet"):
        sizes = [int(s) for s in options.sizes.split(",")]
        print("\nfleet connect (one fleet process, aiomqtt link per meter, private mosquitto)")
        print(
            f"  {'meters':>7} {'connected':>9} {'connect s':>9} {'meters/s':>9} "
            f"{'RSS/meter KB':>12} {'broker KB/conn':>14}"
        )
        for row in asyncio.run(bench_fleet(sizes)):
            print(
                f"  {row['meters']:>7} {row['connected']:>9} {row['connect_s']:>9.2f} "
                f"{row['meters'] / row['connect_s']:>9.0f} {row['rss_per_meter_kb']:>12.1f} "
                f"{row['broker_kb_per_connection']:>14.2f}"
            )
    if options.what in ("all", "ingest"):
        meters, intervals = (int(x) for x in options.burst.split("x"))
        workers = [int(x) for x in options.ingest_workers.split(",")]
        result = asyncio.run(bench_ingest(meters, intervals, workers, options.repeats))
        print_ingest(result, workers, options.repeats)
    if options.what in ("all", "proxy"):
        print("\n4G link proxy (2,000 aiomqtt clients, zero-delay radio, proxy in its own process)")
        proxy = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("bench_proxy.py")), "--meters", "2000"],
            capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        for line in proxy.stdout.splitlines():
            print(f"  {line}")


if __name__ == "__main__":
    main()
