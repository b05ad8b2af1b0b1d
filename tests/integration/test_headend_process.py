"""A head-end in its own process, killed with SIGKILL mid-command and started again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.event_logs import EventLog
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.meter_sim.transport import aiomqtt_link_factory
from hes_sim.runner.broker import PrivateMosquitto, free_port

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, 18, tzinfo=IST)
SECRET = "process test fleet secret"  # noqa: S105 - the test fleet's own
TOKEN = "process-test-token"  # noqa: S105 - the test head-end's own
SCENARIO = f"""
name: headend-process
seed: 5
time_scale: 60
start: {START.isoformat()}
duration: 4h
fleet: {{single_phase: 3}}
"""
READY = "operator API on "


@contextlib.asynccontextmanager
async def headend(
    broker: PrivateMosquitto, directory: Path, anchor: float
) -> AsyncIterator[tuple[asyncio.subprocess.Process, httpx.AsyncClient]]:
    env = os.environ | {
        "HES_API_TOKEN": TOKEN,
        "HES_FLEET_SECRET": SECRET,
        "HES_LOG_LEVEL": "warning",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hes_sim.cli", "headend",
        "--broker", f"mqtt://127.0.0.1:{broker.address.port}",
        "--db", str(directory / "hes.sqlite"),
        "--scenario", str(directory / "scenario.yaml"),
        "--wall-anchor", repr(anchor),
        env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        url = ""
        async with asyncio.timeout(30):
            while not url:
                line = (await process.stderr.readline()).decode()
                assert line, "the head-end exited before it was ready"
                if READY in line:
                    url = line.split(READY, 1)[1].split(",", 1)[0].strip()
        drain = asyncio.create_task(_drain(process.stderr))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as client:
            yield process, client
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        with contextlib.suppress(NameError):
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def command_state(client: httpx.AsyncClient, command_id: str) -> dict:
    response = await client.get(f"/api/v1/commands/{command_id}")
    response.raise_for_status()
    return response.json()


async def test_a_killed_head_end_resumes_its_command_after_restart(
    tmp_path: Path, mosquitto: PrivateMosquitto
):
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    anchor = time.time()
    async with headend(mosquitto, tmp_path, anchor) as (first, client):
        submitted = await client.post(
            "/api/v1/commands",
            json={"meter_id": "SP0000001", "type": "disconnect", "deadline_s": 7200},
            headers={"Idempotency-Key": "kill-test-1"},
        )
        assert submitted.status_code == 202, submitted.text
        command_id = submitted.json()["command_id"]
        assert submitted.json()["state"] == "queued"  # the meter has not come online yet
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL

    keyring = FleetKeyring(SECRET.encode())
    clock = SimClock(START.timestamp(), 60, wall_anchor=anchor)
    meters = build_meters({MeterKind.SINGLE_PHASE: 3}, 5, IST)
    fleet = Fleet(meters, aiomqtt_link_factory(mosquitto.address), EventBus(), seed=5,
                  time_scale=60, push_randomisation_s=30, clock=clock, keyring=keyring)  # fmt: skip
    async with fleet:
        async with asyncio.timeout(20):
            await fleet.wait_connected()
        fleet.start(RunPlan(IntervalSchedule(START.timestamp(), START.timestamp() + 4 * 3600, 900)))
        async with headend(mosquitto, tmp_path, anchor) as (second, client):
            again = await client.post(
                "/api/v1/commands",
                json={"meter_id": "SP0000001", "type": "disconnect"},
                headers={"Idempotency-Key": "kill-test-1"},
            )
            assert again.json()["command_id"] == command_id  # the store remembered the key
            async with asyncio.timeout(60):
                # the head-end is another process: its API is all there is to watch
                while not (command := await command_state(client, command_id))["done"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            second.send_signal(signal.SIGTERM)
            assert await second.wait() == 0
    assert command["state"] == "confirmed"
    states = [step["state"] for step in command["history"]]
    assert states[:2] == ["created", "queued"]  # written by the head-end that was killed
    assert states[-3:] == ["sent", "acknowledged", "confirmed"]
    meter = next(r.meter for r in fleet.runtimes if r.meter.meter_id == "SP0000001")
    assert not meter.relay.output_state
    assert [e.code for e in meter.events.entries(EventLog.CONTROL)] == [201]  # switched once


async def test_the_head_end_command_refuses_to_start_without_its_settings(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HES_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hes_sim.cli", "headend", "--broker", "mqtt://127.0.0.1:1",
        "--db", str(tmp_path / "x.sqlite"),
        env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    _out, err = await process.communicate()
    assert process.returncode == 2
    assert b"HES_FLEET_SECRET" in err


async def test_an_unreachable_broker_is_one_line_and_exit_2(tmp_path: Path):
    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("HES_")} | {
        "HES_API_TOKEN": TOKEN,
        "HES_FLEET_SECRET": SECRET,
        "HES_LOG_LEVEL": "error",  # the retries' warnings are not what is checked here
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hes_sim.cli", "headend", "--broker", f"mqtt://127.0.0.1:{port}",
        "--db", str(tmp_path / "hes.sqlite"),
        env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(60):  # the head-end gives the broker 15 s to answer
        _out, err = await process.communicate()
    text = err.decode()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    assert text.strip().splitlines() == [
        f"hes-sim headend: stopped: the head-end could not subscribe at mqtt://127.0.0.1:{port}"
    ]


async def test_a_fleet_secret_too_short_is_one_line_and_exit_2(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HES_")} | {
        "HES_API_TOKEN": TOKEN,
        "HES_FLEET_SECRET": "short",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hes_sim.cli", "headend", "--broker", "mqtt://127.0.0.1:1",
        "--db", str(tmp_path / "hes.sqlite"),
        env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _out, err = await process.communicate()
    assert process.returncode == 2
    assert err.decode().strip().splitlines() == [
        "hes-sim headend: the fleet secret needs at least 16 bytes"
    ]
