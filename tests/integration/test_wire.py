"""What crosses the wire: last wills, the down channel, bad input, a broker that restarts."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiomqtt
import pytest

from hes_sim.clock import ManualClock, SimClock
from hes_sim.errors import BrokerError
from hes_sim.events import (
    DecodeFailed,
    EventBus,
    HeadEndSubscribed,
    MeterConnected,
    MeterLinkLost,
    MeterOffline,
    MeterOnline,
    PushSent,
    ReadProduced,
    ReadStored,
)
from hes_sim.hes.service import HeadEnd
from hes_sim.hes.store import SqliteStore
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.meter_sim.transport import MeterLink, aiomqtt_link_factory
from hes_sim.protocols import frame, push
from hes_sim.protocols.topics import Channel, topic
from hes_sim.runner.broker import PrivateMosquitto
from tests.integration.conftest import EventWaiter

IST = timezone(timedelta(hours=5, minutes=30))
END = datetime(2026, 11, 28, 0, 15, tzinfo=IST).timestamp()


@dataclass
class RunningHeadEnd:
    hes: HeadEnd
    store: SqliteStore
    events: EventWaiter


@pytest.fixture
async def head_end(tmp_path: Path, mosquitto: PrivateMosquitto) -> AsyncIterator[RunningHeadEnd]:
    bus = EventBus()
    events = EventWaiter(bus)
    async with (
        SqliteStore(tmp_path / "reads.sqlite") as store,
        HeadEnd(mosquitto.address, store, ManualClock(END + 60), bus) as hes,
    ):
        await asyncio.wait_for(hes.subscribed.wait(), 10)
        yield RunningHeadEnd(hes, store, events)


def a_push(meter_id: str = "SP0000001", end: float = END) -> bytes:
    meter = VirtualMeter.create(meter_id, MeterKind.SINGLE_PHASE, 1, IST)
    return frame.encode_push_frame(push.DataNotification(1, None, meter.close_interval(end, 900)))


async def publish(broker: PrivateMosquitto, topic_name: str, payload: bytes) -> None:
    async with aiomqtt.Client(broker.address.host, broker.address.port) as client:
        await client.publish(topic_name, payload, qos=1)


METER_PROCESS = """
import asyncio, sys
from hes_sim.broker_address import BrokerAddress
from hes_sim.meter_sim.transport import MeterLink, aiomqtt_link_factory

async def main():
    open_link = aiomqtt_link_factory(BrokerAddress.parse(sys.argv[1]), keepalive_s=5)
    async with open_link(sys.argv[2]):
        print("connected", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_meter_that_dies_goes_offline_by_its_last_will(
    mosquitto: PrivateMosquitto, head_end: RunningHeadEnd
):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        METER_PROCESS,
        str(mosquitto.address),
        "SP0000077",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 20) == b"connected\n"
        await head_end.events.until(lambda ev: any(isinstance(e, MeterOnline) for e in ev))
        assert head_end.hes.presence.online == 1
        process.kill()  # no DISCONNECT is sent: only the broker's last will tells
    finally:
        await process.wait()
    await head_end.events.until(lambda ev: any(isinstance(e, MeterOffline) for e in ev))
    assert head_end.hes.presence.online == 0


async def test_frames_on_the_down_channel_reach_the_meter(mosquitto: PrivateMosquitto):
    open_link = aiomqtt_link_factory(mosquitto.address)
    async with open_link("SP0000005") as link:
        received = link.receive()
        first = asyncio.ensure_future(anext(received))
        # the link subscribes on first use; publish until the request gets through
        async with aiomqtt.Client(mosquitto.address.host, mosquitto.address.port) as hes:
            while not first.done():
                await hes.publish(topic("SP0000005", Channel.DOWN), b"\x00\x01request", qos=1)
                await asyncio.wait({first}, timeout=0.2)
        assert first.result() == b"\x00\x01request"
        await received.aclose()


async def test_bad_input_is_counted_and_ingest_keeps_going(
    mosquitto: PrivateMosquitto, head_end: RunningHeadEnd
):
    await publish(mosquitto, "mtr/v1/SP0000009/up", b"\xde\xad\xbe\xef")
    await publish(mosquitto, "mtr/v1/SP0000009/up", a_push("SP0000009")[:-4])
    await publish(mosquitto, "mtr/v1/SP0000009/state", b"sleepy")
    await publish(mosquitto, "mtr/v1/SP0000009/up", a_push("SP0000009"))
    await head_end.events.until(lambda ev: any(isinstance(e, ReadStored) for e in ev))
    reasons = sorted(e.reason for e in head_end.events.of(DecodeFailed))  # type: ignore[attr-defined]
    assert reasons == ["state_payload", "wrapper", "wrapper"]
    assert await head_end.store.count_reads() == 1


async def test_head_end_rides_out_a_broker_restart(
    mosquitto: PrivateMosquitto, head_end: RunningHeadEnd
):
    await publish(mosquitto, "mtr/v1/SP0000001/up", a_push("SP0000001", END))
    await head_end.events.until(lambda ev: len(head_end.events.of(ReadStored)) == 1)
    await mosquitto.restart()
    # what the broker held during the restart is gone (backfill recovers such gaps);
    # once the head-end has subscribed again, ingest carries on
    await head_end.events.until(
        lambda ev: any(isinstance(e, HeadEndSubscribed) and e.session == 2 for e in ev), 30
    )
    await publish(mosquitto, "mtr/v1/SP0000001/up", a_push("SP0000001", END - 900))
    await head_end.events.until(lambda ev: len(head_end.events.of(ReadStored)) == 2, 30)
    assert head_end.hes.subscribed.is_set()
    assert await head_end.store.count_reads() == 2


async def test_sending_on_a_lost_link_raises_broker_error(mosquitto: PrivateMosquitto):
    async def send_until_refused(link: MeterLink) -> None:
        # the client learns of the dead socket from its read loop, a moment after the kill
        for _ in range(100):
            await link.send(a_push("SP0000006"))
            await asyncio.sleep(0.05)

    async def kill_the_broker_while_connected() -> None:
        async with aiomqtt_link_factory(mosquitto.address)("SP0000006") as link:
            await mosquitto.stop(kill=True)
            await send_until_refused(link)

    with pytest.raises(BrokerError):
        await kill_the_broker_while_connected()


async def test_meters_ride_out_a_broker_outage_and_push_every_interval(
    mosquitto: PrivateMosquitto,
):
    bus = EventBus()
    events = EventWaiter(bus)
    meters = build_meters({MeterKind.SINGLE_PHASE: 5}, 1, IST)
    clock = SimClock(END - 900, time_scale=900)  # one interval per wall second
    schedule = IntervalSchedule(END - 900, END + 3 * 900, 900)

    def count(kind: type) -> int:
        return len(events.of(kind))

    async with Fleet(
        meters,
        aiomqtt_link_factory(mosquitto.address),
        bus,
        seed=1,
        time_scale=900,
        push_randomisation_s=0,
        reconnect_base_s=5,
        reconnect_cap_s=60,
        clock=clock,
    ) as fleet:
        await asyncio.wait_for(fleet.wait_connected(), 20)
        clock.start()
        fleet.start(RunPlan(schedule))
        await events.until(lambda _: count(PushSent) >= 5)
        await mosquitto.stop()
        await events.until(lambda _: count(MeterLinkLost) >= 5)  # noticed on the next push
        await mosquitto.start()
        await asyncio.wait_for(fleet.wait_finished(), 30)

    assert count(ReadProduced) == count(PushSent) == 5 * schedule.count
    assert count(MeterConnected) >= 10  # every meter connected again
    ends = [e.interval_end for e in events.of(PushSent) if e.meter_id == "SP0000001"]  # type: ignore[attr-defined]
    assert ends == schedule.interval_ends()
