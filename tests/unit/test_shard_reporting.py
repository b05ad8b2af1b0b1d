"""A fleet process reports its meters' events as they come, and counts its meters only
when something changed (or now and then): an idle fleet costs no scan four times a
second. Its dialer's sockets do not wait on delayed ACKs."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import pytest

from hes_sim.broker_address import BrokerAddress
from hes_sim.events import MeterConnected
from hes_sim.meter_sim.lean.dialer import Dialer
from hes_sim.pipe_frames import frame
from hes_sim.runner.shards import worker
from hes_sim.runner.shards.messages import Events, Status


@dataclass
class Pipe:
    written: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False


class CountedFleet:
    """Counts how often the reporter looks at its meters."""

    def __init__(self) -> None:
        self.runtimes = [object()] * 3
        self.looks = 0

    @property
    def connected(self) -> int:
        self.looks += 1
        return 3

    finished = 0

    def powered(self) -> int:
        return 3

    def wire_totals(self) -> None:
        return None  # aiomqtt links count nothing of their own


def test_an_idle_fleet_is_counted_only_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: now[0])
    pipe, fleet = Pipe(), CountedFleet()
    reporter = worker.Reporter(pipe)  # type: ignore[arg-type]
    reporter.fleet = fleet  # type: ignore[assignment]
    reporter.flush()  # the first status
    assert fleet.looks == 1
    for _ in range(10):  # two and a half idle seconds
        now[0] += 0.25
        reporter.flush()
    assert fleet.looks == 1
    assert pipe.written == [frame(Status(3, 3, 0, 3))]
    event = MeterConnected("SP0000001", 0.01, 0)
    reporter(event)
    reporter.flush()  # an event: sent, with a fresh status
    assert fleet.looks == 2
    assert pipe.written[-2:] == [frame(Events((event,))), frame(Status(3, 3, 0, 3))]
    now[0] += worker.STATUS_EVERY_WALL_S
    reporter.flush()  # a heartbeat while idle
    assert fleet.looks == 3
    reporter.flush(status=True)  # the final one, always
    assert fleet.looks == 4


async def test_dialed_sockets_send_small_writes_at_once() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        transport = await Dialer(BrokerAddress("127.0.0.1", port)).connect(asyncio.Protocol())
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        transport.close()
        await asyncio.sleep(0)
