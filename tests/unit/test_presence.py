"""Presence: last seen, uptime share, transitions, silence sweep."""

from hes_sim.clock import ManualClock
from hes_sim.hes.presence import MeterPresence, OfflineCause
from hes_sim.protocols.topics import MeterState


def test_uptime_share_counts_online_spells_only():
    clock = ManualClock(1000.0)
    presence = MeterPresence(clock)
    presence.update("A", MeterState.ONLINE)
    clock.advance(300)
    presence.update("A", MeterState.OFFLINE)
    clock.advance(100)
    presence.update("A", MeterState.ONLINE)
    clock.advance(100)
    record = presence.get("A")
    assert record is not None
    assert record.transitions == 2
    assert record.uptime_share(clock.now()) == 400 / 500


def test_silence_past_the_threshold_turns_a_meter_offline_and_a_message_brings_it_back():
    clock = ManualClock(0.0)
    presence = MeterPresence(clock)
    presence.update("quiet", MeterState.ONLINE)
    presence.update("chatty", MeterState.ONLINE)
    clock.advance(500)
    presence.touch("chatty")
    clock.advance(500)
    assert presence.sweep(silence_s=900) == ["quiet"]
    assert presence.online == 1
    record = presence.get("quiet")
    assert record is not None
    assert record.cause is OfflineCause.SILENCE
    assert presence.touch("quiet")  # a push arrives: alive after all
    assert presence.is_online("quiet")
    presence.update("quiet", MeterState.OFFLINE)  # the last will: stays offline on touch
    assert not presence.touch("quiet")
    assert not presence.is_online("quiet")


def test_a_meter_heard_before_its_state_arrives_counts_no_transition():
    clock = ManualClock(0.0)
    presence = MeterPresence(clock)
    presence.seen_before("old", last_seen=-86_400.0)  # what the store remembered
    presence.touch("new")
    clock.advance(10)
    assert presence.update("new", MeterState.ONLINE)
    assert presence.online == 1
    new = presence.get("new")
    old = presence.get("old")
    assert new is not None
    assert new.transitions == 0
    assert new.first_seen == 10
    assert old is not None
    assert old.last_seen == -86_400.0
    assert not old.state_known


def test_a_retained_state_replayed_after_a_restart_does_not_count_as_hearing_the_meter():
    clock = ManualClock(100_000.0)
    presence = MeterPresence(clock)
    presence.seen_before("quiet", last_seen=100_000.0 - 3 * 86_400)  # from the store
    assert presence.update("quiet", MeterState.ONLINE, heard=False)  # the broker's replay
    assert presence.update("never", MeterState.ONLINE, heard=False)
    quiet, never = presence.get("quiet"), presence.get("never")
    assert quiet is not None
    assert quiet.last_seen == 100_000.0 - 3 * 86_400
    assert never is not None
    assert never.last_seen == presence.started_at
    clock.advance(60)
    assert presence.sweep(silence_s=3600) == ["quiet"]  # still silent: offline again
