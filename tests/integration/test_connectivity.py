"""Connectivity seen through the whole head-end (HeadEndNode) over a real mosquitto: a
meter whose pushes never arrive goes offline for silence and is the one, and the only
one, the non-communicating report lists; the operator API refuses callers without the
token."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from hes_sim.clock import SimClock
from hes_sim.events import EventBus, MeterOffline, ReadStored
from hes_sim.hes.node import ApiOptions, HeadEndNode, NodeOptions
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.meter_sim.transport import aiomqtt_link_factory
from hes_sim.runner.broker import PrivateMosquitto
from tests.integration.conftest import EventWaiter
from tests.lossy_link import LossyPushes

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, 18, tzinfo=IST).timestamp()
H = 900
SCALE = 900  # one interval a wall second
SILENT = "SP0000002"
TOKEN = "connectivity-test-token"  # noqa: S105 - the test head-end's own
SILENCE_S = 2 * H + 60


async def test_a_silent_meter_goes_offline_and_is_the_only_one_reported(
    tmp_path: Path, mosquitto: PrivateMosquitto
):
    keyring = FleetKeyring(b"integration test fleet secret")
    bus = EventBus()
    events = EventWaiter(bus)
    clock = SimClock(START, time_scale=SCALE)
    meters = build_meters({MeterKind.SINGLE_PHASE: 3}, 5, IST)
    losses = LossyPushes(keyring, SILENT, START, START + 10 * H)  # every push it makes
    options = NodeOptions(
        broker=mosquitto.address,
        db_path=tmp_path / "hes.sqlite",
        keyring=keyring,
        tz=IST,
        api=ApiOptions(TOKEN),
        silence_s=SILENCE_S,
    )
    fleet = Fleet(meters, losses.factory(aiomqtt_link_factory(mosquitto.address)), bus,
                  seed=5, time_scale=SCALE, push_randomisation_s=30, clock=clock,
                  keyring=keyring)  # fmt: skip
    async with HeadEndNode(options, clock, bus) as node, fleet:
        await node.wait_subscribed()
        await events.until(lambda _: node.hes.presence.online == 3, 20)
        clock.start()
        fleet.start(RunPlan(IntervalSchedule(START, START + 6 * H, H)))
        # the others push on; the silent one is dropped from presence for silence
        await events.until(
            lambda ev: (
                any(isinstance(e, MeterOffline) and e.meter_id == SILENT for e in ev)
                and sum(isinstance(e, ReadStored) for e in ev) >= 2 * 4
            ),
            30,
        )
        assert node.hes.presence.online == 2
        assert losses.dropped  # it did push; nothing arrived
        async with httpx.AsyncClient(base_url=node.api_url or "") as api:
            refused = await api.get("/api/v1/reports/non-communicating")
            assert refused.status_code == 401
            auth = {"Authorization": f"Bearer {TOKEN}"}
            report = await api.get(
                "/api/v1/reports/non-communicating", params={"silent_for": "1h"}, headers=auth
            )
            listed = await api.get("/api/v1/meters", params={"state": "offline"}, headers=auth)
    assert report.status_code == 200, report.text
    silent = [m["meter_id"] for m in report.json()["meters"]]
    assert silent == [SILENT]
    assert [m["meter_id"] for m in listed.json()["meters"]] == [SILENT]
