"""Figures for the link proxy, printed, never asserted.

N aiomqtt clients connect to a private mosquitto, first directly, then through a
LinkProxy with a zero-delay model; then each publishes one QoS 1 message. The proxy runs
in a child process of its own, so its RSS growth is the proxy's cost per connection and
not the clients'. ``measure`` is what ``make bench`` can call; ``main`` prints it.

    .venv/bin/python scripts/bench_proxy.py --meters 2000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiomqtt
import psutil

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.logging import configure_logging
from hes_sim.meter_sim.network.link_model import Admission, Direction
from hes_sim.meter_sim.network.proxy import LinkProxy
from hes_sim.runner.broker import PrivateMosquitto

SCRIPT = Path(__file__).resolve()
CONNECT_WINDOW = 200  # clients connecting at once, as a fleet's connect slots would


@dataclass(frozen=True, slots=True)
class ProxyFigures:
    meters: int
    direct_connect_s: float
    proxy_connect_s: float
    direct_publish_s: float
    proxy_publish_s: float
    proxy_rss_per_connection_kib: float
    proxy_cpu_s: float  # the proxy process's CPU time over connect and publish


class ZeroDelayModel:
    def admit(self, meter_id: str, now: float) -> Admission:
        return Admission(True, 0.0)

    def transit(self, meter_id: str, direction: Direction, size: int, now: float) -> float:
        return 0.0

    def released(self, meter_id: str, now: float) -> None:
        pass


async def serve_proxy(upstream_port: int) -> None:
    """The child: a proxy until stdin closes; its port is the first line on stdout."""
    configure_logging("warning", "console")  # stdout carries the port only
    clock = SimClock(time.time(), 1.0)
    clock.start()
    upstream = BrokerAddress("127.0.0.1", upstream_port)
    async with LinkProxy(upstream, ZeroDelayModel(), clock, EventBus()) as proxy:
        print(proxy.address.port, flush=True)
        await asyncio.to_thread(sys.stdin.read)


async def connect_all(address: BrokerAddress, meters: int, tag: str) -> list[aiomqtt.Client]:
    slots = asyncio.Semaphore(CONNECT_WINDOW)
    clients = [
        aiomqtt.Client(address.host, address.port, identifier=f"{tag}{i:06d}", timeout=60)
        for i in range(meters)
    ]

    async def connect(client: aiomqtt.Client) -> None:
        async with slots:
            await client.__aenter__()

    await asyncio.gather(*(connect(c) for c in clients))
    return clients


async def publish_all(clients: list[aiomqtt.Client]) -> None:
    await asyncio.gather(
        *(c.publish(f"bench/{i}", b"x" * 64, qos=1) for i, c in enumerate(clients))
    )


async def disconnect_all(clients: list[aiomqtt.Client]) -> None:
    await asyncio.gather(*(c.__aexit__(None, None, None) for c in clients))


async def timed_run(address: BrokerAddress, meters: int, tag: str) -> tuple[float, float]:
    started = time.perf_counter()
    clients = await connect_all(address, meters, tag)
    connected = time.perf_counter()
    await publish_all(clients)
    published = time.perf_counter()
    await disconnect_all(clients)
    return connected - started, published - connected


async def measure(meters: int = 2000) -> ProxyFigures:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 3 sockets a meter, at least
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    try:
        async with PrivateMosquitto() as broker:
            direct_connect, direct_publish = await timed_run(broker.address, meters, "D")
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SCRIPT),
                "--serve-proxy",
                str(broker.address.port),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            if child.stdout is None or child.stdin is None:
                raise RuntimeError("the proxy child has no pipes")
            try:
                port = int(await child.stdout.readline())
                proxy = psutil.Process(child.pid)
                rss_before, cpu_before = proxy.memory_info().rss, sum(proxy.cpu_times()[:2])
                started = time.perf_counter()
                clients = await connect_all(BrokerAddress("127.0.0.1", port), meters, "P")
                proxy_connect = time.perf_counter() - started
                rss_after = proxy.memory_info().rss
                started = time.perf_counter()
                await publish_all(clients)
                proxy_publish = time.perf_counter() - started
                cpu_after = sum(proxy.cpu_times()[:2])
                await disconnect_all(clients)
            finally:
                child.stdin.close()
                await child.wait()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return ProxyFigures(
        meters=meters,
        direct_connect_s=round(direct_connect, 3),
        proxy_connect_s=round(proxy_connect, 3),
        direct_publish_s=round(direct_publish, 3),
        proxy_publish_s=round(proxy_publish, 3),
        proxy_rss_per_connection_kib=round((rss_after - rss_before) / meters / 1024, 1),
        proxy_cpu_s=round(cpu_after - cpu_before, 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--serve-proxy", type=int, metavar="UPSTREAM_PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_proxy:
        asyncio.run(serve_proxy(args.serve_proxy))
        return
    figures = asyncio.run(measure(args.meters))
    for name, value in asdict(figures).items():
        print(f"{name:32} {value}")


if __name__ == "__main__":
    main()
