"""``hes-sim fleet``: shards of one scenario started as separate processes (as on separate
hosts) push the whole fleet, each meter from exactly one of them."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path

import aiomqtt

from hes_sim.protocols.topics import Channel, subscription
from hes_sim.runner.broker import PrivateMosquitto
from hes_sim.runner.fleet_register import scenario_grid
from hes_sim.scenario.model import load_scenario

SCENARIO = """
name: shards-on-hosts
seed: 8
time_scale: 600
start: 2026-11-28T00:00:00+05:30
duration: 30m
fleet: {single_phase: 36, three_phase: 4, transport: lean}
push:
  randomisation_start_interval: 1m
"""
ENV = os.environ | {"HES_FLEET_SECRET": "fleet command test secret", "HES_LOG_LEVEL": "warning"}


async def fleet(path: Path, shard: str, broker: str, anchor: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hes_sim.cli", "fleet", str(path), "--shard", shard,
        "--broker", broker, "--wall-anchor", repr(anchor),
        env=ENV, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_two_shards_push_every_meter_once_each_interval(
    tmp_path: Path, mosquitto: PrivateMosquitto
):
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    meters = {m.meter_id for m in scenario_grid(load_scenario(path)).meters}
    broker = str(mosquitto.address)
    pushes: Counter[str] = Counter()
    async with aiomqtt.Client("127.0.0.1", mosquitto.address.port) as listener:
        await listener.subscribe(subscription(Channel.UP), qos=1)
        anchor = time.time() + 2.0  # both shards start on the same instant
        shards = [await fleet(path, f"{k}/2", broker, anchor) for k in range(2)]
        outputs = await asyncio.wait_for(
            asyncio.gather(*(shard.communicate() for shard in shards)), timeout=60
        )

        async def collect() -> None:
            async for message in listener.messages:
                pushes[str(message.topic).split("/")[2]] += 1

        collecting = asyncio.create_task(collect())
        await asyncio.sleep(0.5)  # QoS 1 messages already at the broker arrive at once
        collecting.cancel()
    assert [shard.returncode for shard in shards] == [0, 0]
    said = [stderr.decode() for _out, stderr in outputs]
    counts = [int(text.split(": ", 1)[1].split(" meters", 1)[0]) for text in said]
    assert sum(counts) == len(meters) == 40  # the shards split the fleet between them
    assert min(counts) > 0
    assert set(pushes) == meters
    assert all(n == 2 for n in pushes.values()), pushes  # two intervals, each pushed once


async def test_a_bad_shard_is_refused(tmp_path: Path):
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    process = await fleet(path, "2/2", "mqtt://127.0.0.1:1", 0.0)
    _out, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "K must be 0 to N-1" in stderr.decode()
