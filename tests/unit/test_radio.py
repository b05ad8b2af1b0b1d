import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hes_sim.meter_sim.network.link_model import Direction, LinkModel, RejectReason
from hes_sim.meter_sim.network.modem import ModemState
from hes_sim.meter_sim.network.radio import RadioNetwork
from hes_sim.meter_sim.network.specs import (
    DEFAULT_PROFILES,
    CellSpec,
    CoverageHoles,
    LinkProfile,
    RadioSettings,
    SignalClass,
)

UP, DOWN = Direction.UP, Direction.DOWN
R = RejectReason
T0 = 1_700_000_000.0
SETTINGS = RadioSettings(
    attach_delay_mean_s=2.0,
    attach_delay_spread_s=0.0,  # exact attach delays
    rrc_inactivity_s=10.0,
    rrc_promotion_s=0.2,
    max_retransmissions=3,
    link_bps=1e12,
)
# every class the same, no jitter, no loss: transit times are exact
STEADY = dict.fromkeys(SignalClass, LinkProfile(0.05, 0.0, 0.0))


def network(
    meters: int = 10,
    max_attached: int = 100,
    rate: float = 1000.0,
    profiles=STEADY,
    holes: CoverageHoles | None = None,
    radio: RadioSettings = SETTINGS,
) -> RadioNetwork:
    cells = [CellSpec("C1", 0, 0, max_attached, rate), CellSpec("C2", 2, 0, max_attached, rate)]
    cell_of = {f"M{i}": "C1" for i in range(meters)} | {"OTHER": "C2"}
    return RadioNetwork(cells, cell_of, settings=radio, seed=42, holes=holes, profiles=profiles)


def connect(net: RadioNetwork, meter: str, now: float = T0) -> float:
    admission = net.admit(meter, now)
    assert admission.accepted, admission
    return now + admission.delay_s


def test_it_is_a_link_model():
    model: LinkModel = network()
    assert model.admit("M0", T0).accepted


def test_admit_attaches_then_transit_carries():
    net = network()
    admission = net.admit("M0", T0)
    assert admission == type(admission)(accepted=True, delay_s=2.0, reason=None)
    assert net.modem_state("M0", T0 + 1) is ModemState.ATTACHING
    assert net.transit("M0", UP, 100, T0 + 2) == pytest.approx(0.05)
    assert net.attached("C1") == 1
    assert net.accepted("C1") == 1


def test_transit_without_an_admission_is_lost():
    assert network().transit("M0", UP, 100, T0) is None


def test_unknown_meters_and_cells_are_refused():
    net = network()
    with pytest.raises(KeyError, match="NOPE"):
        net.admit("NOPE", T0)
    with pytest.raises(KeyError, match="C9"):
        net.cell_down("C9", T0)
    with pytest.raises(ValueError, match="unknown cell"):
        RadioNetwork([CellSpec("C1", 0, 0, 1, 1)], {"M": "C2"})
    with pytest.raises(ValueError, match="twice"):
        RadioNetwork([CellSpec("C1", 0, 0, 1, 1)] * 2, {})
    with pytest.raises(ValueError, match="lack signal classes"):
        RadioNetwork([], {}, profiles={SignalClass.GOOD: LinkProfile(0, 0, 0)})


def test_power_off_refuses_admission_and_black_holes_transit():
    net = network()
    ready = connect(net, "M0")
    net.power_off(["M0"], ready + 1)
    assert net.transit("M0", UP, 100, ready + 2) is None
    refused = net.admit("M0", ready + 3)
    assert (refused.accepted, refused.reason, refused.delay_s) == (False, R.NO_POWER, 0.0)
    net.power_on(["M0"], ready + 4)
    assert net.transit("M0", UP, 100, ready + 5) is None  # the old connection stays dead
    again = connect(net, "M0", ready + 6)
    assert again - (ready + 6) == pytest.approx(2.0)  # a full attach
    assert net.transit("M0", UP, 100, again) == pytest.approx(0.05)
    assert net.rejects("C1") == {R.NO_POWER: 1}


def test_a_cell_outage_refuses_admission_and_kills_links_until_reattached():
    net = network()
    ready = connect(net, "M0")
    other = connect(net, "OTHER")
    net.cell_down("C1", ready + 1)
    assert net.transit("M0", UP, 100, ready + 2) is None
    assert net.transit("OTHER", UP, 100, other + 2) == pytest.approx(0.05)
    refused = net.admit("M1", ready + 3)
    assert (refused.accepted, refused.reason) == (False, R.CELL_DOWN)
    assert refused.delay_s == SETTINGS.search_timeout_s
    net.cell_up("C1", ready + 10)
    assert net.transit("M0", UP, 100, ready + 11) is None  # registration was lost
    assert net.attached("C1") == 1  # its place is held until the proxy releases it
    net.released("M0", ready + 12)
    assert net.attached("C1") == 0
    back = connect(net, "M0", ready + 13)
    assert net.transit("M0", UP, 100, back) == pytest.approx(0.05)
    assert net.rejects_by_cell() == {"C1": {R.CELL_DOWN: 1}, "C2": {}}


def test_a_meter_in_a_hole_is_refused_out_of_service_and_loses_its_link():
    holes = CoverageHoles(share=1.0, mean_in_service_s=600.0, mean_out_of_service_s=300.0)
    net = network(holes=holes)
    start, gap_at, back = service_runs(net, "M0", T0)
    ready = connect(net, "M0", start)
    assert ready < gap_at  # attached before the gap
    assert net.transit("M0", UP, 100, ready) is not None
    refused = net.admit("M0", gap_at)  # a second connection, in the gap
    assert (refused.accepted, refused.reason) == (False, R.NO_COVERAGE)
    assert net.transit("M0", UP, 100, gap_at) is None
    assert net.transit("M0", UP, 100, back) is None  # back in service, but the link is gone
    assert connect(net, "M0", back) - back == pytest.approx(2.0)  # a full attach again


def service_runs(net: RadioNetwork, meter: str, t: float) -> tuple[float, float, float]:
    """From t: the start of the next in-service run, its end (a gap opens), the gap's end."""
    while not net.in_service(meter, t):
        t += 1
    start = t
    while net.in_service(meter, t):
        t += 1
    gap_at = t
    while not net.in_service(meter, t):
        t += 1
    return start, gap_at, t


def test_a_hole_that_opens_and_closes_between_chunks_still_kills_the_link():
    holes = CoverageHoles(share=1.0, mean_in_service_s=600.0, mean_out_of_service_s=300.0)
    net = network(holes=holes)
    start, gap_at, back = service_runs(net, "M0", T0)
    ready = connect(net, "M0", start)
    assert ready < gap_at
    assert net.transit("M0", UP, 100, ready) is not None  # nothing asked during the gap
    assert net.transit("M0", UP, 100, back + 0.5) is None
    assert net.modem_state("M0", back + 1) is ModemState.DETACHED


def test_no_coverage_refusal_is_counted():
    holes = CoverageHoles(share=1.0, mean_in_service_s=600.0, mean_out_of_service_s=300.0)
    net = network(holes=holes)
    t = T0
    while net.in_service("M3", t):
        t += 1
    refused = net.admit("M3", t)
    assert (refused.accepted, refused.reason) == (False, R.NO_COVERAGE)
    assert net.rejects("C1") == {R.NO_COVERAGE: 1}


def test_a_full_cell_refuses_and_frees_a_place_on_release():
    net = network(max_attached=3)
    for meter in ("M0", "M1", "M2"):
        connect(net, meter)
    refused = net.admit("M3", T0)
    assert (refused.accepted, refused.reason) == (False, R.CONGESTED)
    assert refused.delay_s == SETTINGS.reject_delay_s
    assert net.admit("M0", T0 + 1).accepted  # a meter already holding a place keeps it
    assert net.attached("C1") == 3
    net.released("M0", T0 + 5)
    assert net.attached("C1") == 3  # M0 still has its second connection
    net.released("M0", T0 + 5)
    assert net.attached("C1") == 2
    net.released("M0", T0 + 5)  # once too often: nothing more to free
    assert net.attached("C1") == 2
    assert net.admit("M3", T0 + 6).accepted
    assert net.rejects("C1") == {R.CONGESTED: 1}
    assert net.accepted("C1") == 5


def test_congestion_leaves_a_share_of_the_places():
    net = network(max_attached=10)
    net.congest("C1", 0.2, T0)
    admitted = [net.admit(f"M{i}", T0).accepted for i in range(10)]
    assert admitted == [True, True] + [False] * 8
    assert net.report(T0)[0].capacity == 2
    net.congest("C1", 1.0, T0 + 60)
    assert all(net.admit(f"M{i}", T0 + 61).accepted for i in range(2, 10))
    with pytest.raises(ValueError, match="capacity_factor"):
        net.congest("C1", 0.0, T0)


def test_a_burst_over_the_cells_rate_queues_and_drains():
    # ten chunks a second, a one-second bucket: chunk k of a burst waits (k - 9) / 10 s
    net = network(meters=60, rate=10.0, radio=SETTINGS)
    ready = max(connect(net, f"M{i}") for i in range(60))
    burst = ready + 100  # the attaches' tokens have long been paid back
    for i in range(60):
        net.transit(f"M{i}", UP, 100, burst)  # all idle: each pays the promotion
    waits = [net.transit(f"M{i}", UP, 100, burst + 0.5) for i in range(60)]
    assert waits == sorted(waits)  # the backlog grows through the burst
    assert waits[-1] is not None
    assert waits[-1] > 8
    assert net.queue_s("C1", burst + 0.5) > 8
    assert net.queue_s("C1", burst + 20) == 0.0
    # drained: only the promotion of a modem that went idle meanwhile is left
    assert net.transit("M0", UP, 100, burst + 20) == pytest.approx(0.25)


def test_a_congestion_spike_slows_the_queue():
    net = network(meters=5, rate=10.0)
    ready = max(connect(net, f"M{i}") for i in range(5))
    net.congest("C1", 0.2, ready)  # two chunks a second
    times = [net.transit(f"M{i % 5}", UP, 100, ready + 0.1) for i in range(20)]
    assert times[-1] is not None
    assert times[-1] > 5


def test_promotion_is_paid_after_inactivity_only():
    net = network()
    ready = connect(net, "M0")
    assert net.transit("M0", UP, 100, ready + 5) == pytest.approx(0.05)
    assert net.transit("M0", DOWN, 100, ready + 14) == pytest.approx(0.05)  # timer restarted
    assert net.modem_state("M0", ready + 14.05 + 10) is ModemState.IDLE
    later = ready + 60
    assert net.transit("M0", UP, 100, later) == pytest.approx(0.25)
    assert net.transit("M0", UP, 100, later + 1) == pytest.approx(0.05)


def test_total_loss_breaks_the_link_and_is_counted():
    lossy = dict.fromkeys(SignalClass, LinkProfile(0.05, 0.0, 1.0))
    net = network(profiles=lossy)
    ready = connect(net, "M0")
    assert net.transit("M0", UP, 100, ready) is None
    assert net.report(ready)[0].broken_links == 1


def test_degradation_lengthens_transit_and_restores():
    net = network()
    ready = connect(net, "M0")
    net.degrade("C1", latency_factor=4.0, extra_loss=0.0, now=ready)
    assert net.transit("M0", UP, 100, ready + 1) == pytest.approx(0.2)
    net.restore_signal("C1", ready + 2)
    assert net.transit("M0", UP, 100, ready + 3) == pytest.approx(0.05)
    net.degrade("C1", latency_factor=1.0, extra_loss=1.0, now=ready + 4)
    assert net.transit("M0", UP, 100, ready + 5) is None


def test_degradation_raises_loss_and_so_retransmissions():
    net = network(meters=1)
    ready = connect(net, "M0")
    clean = [net.transit("M0", UP, 100, ready + k) for k in range(200)]
    net.degrade("C1", latency_factor=1.0, extra_loss=0.3, now=ready + 200)
    lossy = [net.transit("M0", UP, 100, ready + 200 + k) for k in range(200)]
    assert all(t == pytest.approx(0.05) for t in clean)
    assert sum(t is not None and t > 1 for t in lossy) > 30


def test_a_meters_draws_do_not_depend_on_other_meters():
    profiles = DEFAULT_PROFILES
    alone, crowded = network(profiles=profiles), network(profiles=profiles)
    ready = connect(alone, "M0")
    assert connect(crowded, "M1") <= ready + 3
    assert connect(crowded, "M0") == ready
    mine, theirs = [], []
    for k in range(100):
        mine.append(alone.transit("M0", UP, 200, ready + k))
        crowded.transit("M1", DOWN, 300, ready + k)
        theirs.append(crowded.transit("M0", UP, 200, ready + k))
    assert mine == theirs


def test_rtt_pairs_a_chunk_with_the_reply_and_stays_bounded():
    net = network(meters=2)
    ready = connect(net, "M0")
    net.transit("M0", UP, 100, ready)
    net.transit("M0", UP, 100, ready + 0.1)  # no reply yet: replaces the first
    net.transit("M0", DOWN, 100, ready + 0.2)
    assert net.rtt.count == 1
    assert net.rtt.max == pytest.approx(0.1)
    for k in range(20_000):
        net.transit("M0", UP if k % 2 else DOWN, 100, ready + 1 + k * 0.5)
    assert net.rtt.count == 10_001
    assert len(net.rtt.counts) == len(net.rtt.bounds) + 1
    assert net.rtt.quantile(0.99) == pytest.approx(0.1, rel=0.15)
    assert net.one_way[UP].count + net.one_way[DOWN].count == 20_003


def test_report_gathers_the_cells_figures():
    net = network(max_attached=1)
    connect(net, "M0")
    net.admit("M1", T0)
    net.degrade("C1", 2.0, 0.1, T0)
    report = {r.cell_id: r for r in net.report(T0)}
    c1 = report["C1"]
    assert (c1.up, c1.meters, c1.attached, c1.capacity, c1.accepted) == (True, 10, 1, 1, 1)
    assert c1.rejects == {R.CONGESTED: 1}
    assert (c1.latency_factor, c1.extra_loss) == (2.0, 0.1)
    assert report["C2"].meters == 1


METERS = [f"M{i}" for i in range(6)]
STEP = st.tuples(
    st.sampled_from(
        ["admit"] * 4 + ["release", "transit", "power_off", "power_on", "down", "up", "congest"]
    ),
    st.sampled_from(METERS),
    st.floats(0, 30),
    st.sampled_from([0.2, 0.5, 1.0]),
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(STEP, max_size=60))
def test_places_never_exceed_capacity_and_transit_is_never_negative(steps):
    holes = CoverageHoles(share=0.5, mean_in_service_s=20.0, mean_out_of_service_s=10.0)
    net = RadioNetwork(
        [CellSpec("C1", 0, 0, 3, 5.0)],
        dict.fromkeys(METERS, "C1"),
        settings=RadioSettings(max_retransmissions=2),
        seed=1,
        holes=holes,
        profiles=DEFAULT_PROFILES,
    )
    open_connections = dict.fromkeys(METERS, 0)
    now = T0
    for op, meter, dt, factor in steps:
        now += dt
        if op == "admit":
            if net.admit(meter, now).accepted:
                open_connections[meter] += 1
        elif op == "release" and open_connections[meter]:
            net.released(meter, now)
            open_connections[meter] -= 1
        elif op == "transit":
            carried = net.transit(meter, DOWN if dt > 15 else UP, 100, now)
            assert carried is None or carried >= 0
        elif op == "power_off":
            net.power_off([meter], now)
        elif op == "power_on":
            net.power_on([meter], now)
        elif op == "down":
            net.cell_down("C1", now)
        elif op == "up":
            net.cell_up("C1", now)
        elif op == "congest":
            net.congest("C1", factor, now)
        holding = sum(1 for n in open_connections.values() if n)
        assert net.attached("C1") == holding
        assert holding <= 3
