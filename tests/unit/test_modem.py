import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.meter_sim.network.cells import TokenBucket
from hes_sim.meter_sim.network.histogram import Histogram
from hes_sim.meter_sim.network.link_model import Direction
from hes_sim.meter_sim.network.modem import (
    TRANSITIONS,
    InvalidTransitionError,
    Modem,
    ModemEvent,
    ModemState,
)
from hes_sim.meter_sim.network.specs import (
    CellSpec,
    CoverageHoles,
    LinkProfile,
    RadioSettings,
    SignalClass,
)

M = ModemState
E = ModemEvent
SETTINGS = RadioSettings(
    attach_delay_mean_s=2.0,
    attach_delay_spread_s=1.0,
    rrc_inactivity_s=10.0,
    rrc_promotion_s=0.2,
    paging_drx_s=1.28,
    rto_base_s=1.0,
    max_retransmissions=3,
    link_bps=1e12,  # serialisation out of the way
)
STEADY = LinkProfile(latency_s=0.05, jitter_s=0.0, loss=0.0)


def attached_modem(settings: RadioSettings = SETTINGS, seed: int = 1) -> tuple[Modem, float]:
    modem = Modem(random.Random(seed), settings)
    delay = modem.attach(0.0)
    assert modem.advance(delay) is M.CONNECTED
    return modem, delay


def test_every_state_and_event_has_a_defined_answer_or_is_refused():
    modem = Modem(random.Random(0), SETTINGS)
    assert modem.state is M.DETACHED
    with pytest.raises(InvalidTransitionError, match="traffic is not possible when detached"):
        modem.fire(E.TRAFFIC)
    assert (E.ATTACH, M.CONNECTED) not in TRANSITIONS
    assert all(TRANSITIONS[(E.POWER_OFF, s)] is M.OFF for s in M)
    modem.power_off()
    with pytest.raises(InvalidTransitionError):
        modem.attach(1.0)
    modem.power_on(2.0)
    assert modem.state is M.DETACHED


def test_attach_takes_a_drawn_delay_within_the_spread():
    delays = []
    for seed in range(300):
        modem = Modem(random.Random(seed), SETTINGS)
        delay = modem.attach(100.0)
        assert modem.advance(100.0 + delay - 1e-9) is M.ATTACHING
        assert modem.advance(100.0 + delay) is M.CONNECTED
        delays.append(delay)
    assert min(delays) >= 1.0
    assert max(delays) <= 3.0
    assert statistics.fmean(delays) == pytest.approx(2.0, abs=0.1)


def test_a_chunk_during_the_attach_waits_for_its_end():
    modem = Modem(random.Random(0), SETTINGS)
    delay = modem.attach(0.0)
    modem.advance(0.5)
    assert modem.setup_delay(Direction.UP, 0.5) == pytest.approx(delay - 0.5)


def test_promotion_is_paid_once_then_not_within_the_inactivity_timer():
    modem, start = attached_modem()
    idle_at = start + 10.0
    assert modem.advance(idle_at - 0.01) is M.CONNECTED
    assert modem.advance(idle_at) is M.IDLE
    now = idle_at + 50
    modem.advance(now)
    assert modem.setup_delay(Direction.UP, now) == pytest.approx(0.2)
    carried = modem.carry(STEADY, 100)
    assert carried == pytest.approx(0.05)
    modem.touched(now + 0.2 + carried)
    for later in (now + 1, now + 9):  # the timer restarts with each chunk
        assert modem.advance(later) is M.CONNECTED
        assert modem.setup_delay(Direction.UP, later) == 0.0
        modem.touched(later + 0.05)
    assert modem.advance(now + 9.05 + 10) is M.IDLE


def test_downlink_to_an_idle_modem_waits_for_paging():
    waits = []
    for seed in range(200):
        modem, start = attached_modem(seed=seed)
        modem.advance(start + 60)
        waits.append(modem.setup_delay(Direction.DOWN, start + 60))
    assert all(0.2 <= w <= 0.2 + 1.28 for w in waits)
    assert statistics.fmean(waits) == pytest.approx(0.2 + 0.64, abs=0.1)


def test_no_loss_means_no_retransmission():
    modem, _ = attached_modem()
    assert all(modem.carry(STEADY, 100) == pytest.approx(0.05) for _ in range(500))


def test_total_loss_breaks_the_link():
    modem, _ = attached_modem()
    assert modem.carry(LinkProfile(0.05, 0.01, loss=1.0), 100) is None
    no_retries = RadioSettings(max_retransmissions=0)
    modem, _ = attached_modem(no_retries)
    assert modem.carry(LinkProfile(0.05, 0.0, loss=1.0), 100) is None


def test_each_lost_attempt_adds_a_doubling_timeout():
    modem, _ = attached_modem()
    # up to 3 retransmissions: 0, 1, 1+2, 1+2+4 seconds on top of the latency
    allowed = {0.0, 1.0, 3.0, 7.0}
    extras = []
    broken = 0
    for _ in range(2000):
        carried = modem.carry(LinkProfile(0.05, 0.0, loss=0.5), 100)
        if carried is None:
            broken += 1
            continue
        extra = round(carried - 0.05, 6)
        assert extra in allowed
        extras.append(extra)
    assert set(extras) == allowed
    assert broken / 2000 == pytest.approx(0.5**4, abs=0.02)  # all four attempts lost


def test_serialisation_grows_with_the_chunk():
    modem, _ = attached_modem(RadioSettings(link_bps=8000))
    assert modem.carry(LinkProfile(0.0, 0.0, 0.0), 1000) == pytest.approx(1.0)


@given(
    mean=st.floats(0, 5),
    jitter=st.floats(0, 10),
    seed=st.integers(0, 2**32),
)
def test_latency_is_never_negative(mean, jitter, seed):
    modem = Modem(random.Random(seed), SETTINGS)
    assert modem.latency(LinkProfile(mean, jitter, 0.0)) >= 0


def test_latency_keeps_the_profiles_mean_and_jitter():
    modem = Modem(random.Random(3), SETTINGS)
    profile = LinkProfile(0.3, 0.1, 0.0)
    draws = [modem.latency(profile) for _ in range(20_000)]
    assert statistics.fmean(draws) == pytest.approx(0.3, rel=0.02)
    assert statistics.stdev(draws) == pytest.approx(0.1, rel=0.05)


def test_the_token_bucket_lets_a_burst_through_then_queues_and_drains():
    bucket = TokenBucket(rate=10.0, burst_s=1.0)  # ten at once, then ten a second
    delays = [bucket.delay(0.0) for _ in range(40)]
    assert delays[:10] == [0.0] * 10
    assert delays[10:] == pytest.approx([k / 10 for k in range(1, 31)])
    assert bucket.backlog_s(0.0) == pytest.approx(3.1)
    assert bucket.backlog_s(2.0) == pytest.approx(1.1)
    assert bucket.backlog_s(4.0) == 0.0  # drained
    assert bucket.delay(4.0) == 0.0


def test_a_lower_rate_keeps_the_queue_and_slows_its_drain():
    bucket = TokenBucket(rate=10.0, burst_s=1.0)
    for _ in range(30):
        bucket.delay(0.0)
    bucket.set_rate(2.0, 0.0)  # 20 messages beyond the burst now drain at 2 a second
    assert bucket.backlog_s(0.0) > 5.0
    bucket.flush()
    assert bucket.backlog_s(0.0) == 0.0


def test_histogram_is_bounded_and_estimates_quantiles():
    histogram = Histogram()
    rng = random.Random(0)
    values = [rng.uniform(0.05, 0.5) for _ in range(100_000)]
    for value in values:
        histogram.add(value)
    assert len(histogram.counts) == len(histogram.bounds) + 1
    values.sort()
    for q in (0.5, 0.95, 0.99):
        assert histogram.quantile(q) == pytest.approx(values[int(q * len(values))], rel=0.13)
    assert histogram.buckets()[-1][1] == 100_000
    assert histogram.max == max(values)
    histogram.add(5000.0)  # beyond the last bound: the overflow bucket
    assert histogram.quantile(1.0) == 5000.0
    assert Histogram().quantile(0.5) == 0.0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LinkProfile(-0.1, 0, 0), "latency_s"),
        (lambda: LinkProfile(0.1, 0, 1.5), "loss"),
        (lambda: RadioSettings(attach_delay_mean_s=1, attach_delay_spread_s=2), "spread"),
        (lambda: RadioSettings(rto_base_s=0), "rto_base_s"),
        (lambda: RadioSettings(max_retransmissions=-1), "max_retransmissions"),
        (lambda: CellSpec("C1", 0, 0, 10, 0), "max_messages_per_s"),
        (lambda: CellSpec("C1", 0, 0, -1, 5), "max_attached"),
        (lambda: CellSpec("", 0, 0, 1, 5), "cell_id"),
        (lambda: CellSpec("C1", 0, 0, 1, 5, {SignalClass.GOOD: 0.5}), "sum to 0.5"),
        (lambda: CoverageHoles(1.2, 10, 10), "share"),
        (lambda: CoverageHoles(0.1, 0, 10), "mean_in_service_s"),
    ],
)
def test_specs_refuse_nonsense(build, message):
    with pytest.raises(ValueError, match=message):
        build()
