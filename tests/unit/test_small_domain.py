import asyncio
import random

import pytest

from hes_sim.backoff import Backoff
from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import ManualClock, SimClock
from hes_sim.hes.presence import MeterPresence
from hes_sim.protocols.topics import MeterState


def test_presence_counts_transitions_only():
    clock = ManualClock(100.0)
    presence = MeterPresence(clock)
    assert presence.update("A", MeterState.OFFLINE)  # first sight, already offline
    assert presence.online == 0
    assert presence.update("A", MeterState.ONLINE)
    assert not presence.update("A", MeterState.ONLINE)
    clock.advance(60)
    assert presence.update("B", MeterState.ONLINE)
    assert presence.online == 2
    assert presence.update("A", MeterState.OFFLINE)
    assert presence.online == 1
    record = presence.get("A")
    assert record is not None
    assert (record.state, record.since) == (MeterState.OFFLINE, 160.0)


def test_backoff_grows_capped_with_jitter_and_resets():
    backoff = Backoff(random.Random(1), base=1.0, cap=8.0)
    delays = [backoff.next_delay() for _ in range(20)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert max(delays[6:]) > 4.0  # the ceiling has grown to the cap
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_backoff_refuses_nonsense():
    with pytest.raises(ValueError, match="base"):
        Backoff(random.Random(), base=5, cap=1)


def test_sim_clock_stands_still_until_started():
    clock = SimClock(sim_start=1000.0, time_scale=60)
    assert clock.now() == 1000.0
    assert not clock.running
    clock.start()
    assert clock.running
    assert clock.now() >= 1000.0
    assert clock.wall_seconds(120) == 2.0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1884", BrokerAddress("127.0.0.1", 1884)),
        ("localhost", BrokerAddress("localhost", 1883)),
    ],
)
def test_broker_address(url: str, expected: BrokerAddress):
    assert BrokerAddress.parse(url) == expected


@pytest.mark.parametrize("url", ["http://x:1", "mqtt://:1883", "mqtt://h:99999"])
def test_bad_broker_address(url: str):
    with pytest.raises(ValueError, match="broker URL"):
        BrokerAddress.parse(url)


async def test_sleep_until_never_wakes_before_the_instant_even_on_a_clock_standing_still():
    clock = SimClock(1000.0, time_scale=100)  # not started: simulated time stands still
    sleeper = asyncio.ensure_future(clock.sleep_until(1001.0))  # 10 ms of wall, if running
    await asyncio.sleep(0.05)
    assert not sleeper.done()
    clock.start()
    async with asyncio.timeout(1):
        await sleeper
    assert clock.now() >= 1001.0
