"""A broker restart on the timeline restarts every broker the run started, not the first
only, and counts every meter lost and restored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError, ScenarioError
from hes_sim.hes.inventory import MeterInfo
from hes_sim.runner.broker import find_mosquitto
from hes_sim.runner.network_tally import NetworkTally
from hes_sim.runner.run import RunOptions, _brokers
from hes_sim.runner.timeline import Timeline
from hes_sim.scenario.model import BrokerRestart

START = 1_795_000_500.0


class FakeBroker:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.running = True

    async def stop(self) -> None:
        await asyncio.sleep(0)
        self.running = False
        self.log.append(f"stop {self.name}")

    async def start(self) -> None:
        await asyncio.sleep(0)
        self.running = True
        self.log.append(f"start {self.name}")


def timeline(brokers: list[FakeBroker], meters: int = 6) -> tuple[Timeline, NetworkTally]:
    register = [MeterInfo(f"SP{n:07d}", "single_phase") for n in range(1, meters + 1)]
    clock = SimClock(START, 600.0)
    clock.start()
    tally = NetworkTally(clock, {})
    events = [BrokerRestart(at=60.0, kind="broker_restart", downtime=30.0)]
    built = Timeline(
        events, register, fleet=None, network=None, brokers=brokers,  # type: ignore[arg-type]
        tally=tally, clock=clock,
    )  # fmt: skip
    return built, tally


async def test_a_broker_restart_restarts_every_broker_of_the_run() -> None:
    log: list[str] = []
    brokers = [FakeBroker(name, log) for name in ("a", "b", "c")]
    line, tally = timeline(brokers)
    [step] = line.steps
    assert step.text == "broker restart (3 brokers, 30 s down)"
    await step.act()
    # all down together (so no meter hops onto a broker still up), then all back
    assert sorted(log[:3]) == ["stop a", "stop b", "stop c"]
    assert sorted(log[3:]) == ["start a", "start b", "start c"]
    assert all(broker.running for broker in brokers)
    assert tally.restored == 6  # every meter, whichever broker it was on
    figures = tally.figures(None)
    assert figures.meters_not_back == 6  # none reconnected yet: all are waited for
    assert figures.meters_restored == 6


async def test_one_broker_keeps_its_text_and_none_is_refused() -> None:
    log: list[str] = []
    line, _tally = timeline([FakeBroker("a", log)])
    assert [step.text for step in line.steps] == ["broker restart (30 s down)"]
    await line.steps[0].act()
    assert log == ["stop a", "start a"]
    with pytest.raises(ScenarioError, match="private broker"):
        timeline([])


def have_mosquitto() -> bool:
    try:
        find_mosquitto()
    except BrokerError:
        return False
    return True


@pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")
async def test_the_run_hands_the_timeline_every_broker_it_started(tmp_path: Path) -> None:
    async with _brokers(RunOptions(report_dir=tmp_path), 2) as (addresses, started):
        assert len(started) == 2
        assert [broker.address for broker in started] == addresses
        assert len({address.port for address in addresses}) == 2  # each on its own port
