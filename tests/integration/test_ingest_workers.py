"""A head-end whose pushes are taken by ingest worker processes on the shared subscription:
every read stored once and reported on the head-end's bus, requests still answered, a
worker that dies started again."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

from hes_sim.events import DecodeFailed, HeadEndSubscribed, ReadStored
from hes_sim.protocols.xdlms import Reference
from hes_sim.runner.broker import PrivateMosquitto
from tests.integration.conftest import live_fleet

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, 6, tzinfo=IST).timestamp()
RELAY = bytes([0, 0, 96, 3, 10, 255])
WORKER_MODULE = "hes_sim.hes.ingest_workers.worker"


def _workers() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(os.getpid()).children()
        if WORKER_MODULE in " ".join(child.cmdline())
    ]


async def test_workers_store_every_read_once_and_the_head_end_hears_of_it(
    tmp_path: Path, mosquitto: PrivateMosquitto
):
    async with live_fleet(
        tmp_path, mosquitto, START, time_scale=600, hours=2, ingest_workers=2
    ) as live:
        events, store = live.events, live.store
        assert len(_workers()) == 2
        # each worker holds its own session with the broker, besides the head-end's
        assert len(events.of(HeadEndSubscribed)) == 3

        def stored() -> list[ReadStored]:
            return events.of(ReadStored)  # type: ignore[return-value]

        await events.until(lambda _: len(stored()) >= 3 * 4, 60)
        await live.fleet.wait_finished()
        await live.hes.drained()
        reads = await store.count_reads()
        assert reads == len(stored()) == 3 * 8  # three meters, two hours of 15 minutes
        keys = {(e.meter_id, e.interval_end) for e in stored()}
        assert len(keys) == len(stored())
        assert live.hes.presence.online == 3
        assert not events.of(DecodeFailed)

        # an answer reaches a worker, which hands it to the head-end waiting for it
        async with live.sessions.associate("SP0000001") as meter:
            assert (await meter.get(Reference(70, RELAY, 2))).value is True


async def test_a_worker_that_dies_is_started_again_and_ingest_goes_on(
    tmp_path: Path, mosquitto: PrivateMosquitto
):
    async with live_fleet(
        tmp_path, mosquitto, START, time_scale=600, hours=2, ingest_workers=2
    ) as live:
        events = live.events
        await events.until(lambda _: len(events.of(ReadStored)) >= 3, 60)
        victim = _workers()[0]
        victim.send_signal(signal.SIGKILL)
        await events.until(lambda _: live.hes.ingest_worker_restarts == 1, 30)
        await events.until(lambda _: len(_workers()) == 2, 30)
        await live.fleet.wait_finished()
        await live.hes.drained()
        # nothing lost: what the dead worker had not acknowledged the broker sends again
        assert await live.store.count_reads() == 3 * 8
