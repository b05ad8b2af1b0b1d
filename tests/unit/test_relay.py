import pytest

from hes_sim.meter_sim.relay import ControlState, DisconnectControl, Outcome, Trigger

S = ControlState
T = Trigger


def test_remote_disconnect_then_direct_reconnect_in_mode_1():
    relay = DisconnectControl(control_mode=1)
    outcome, change = relay.fire(T.REMOTE_DISCONNECT, at=10.0)
    assert outcome is Outcome.CHANGED
    assert change is not None
    assert (change.transition, change.before, change.after, change.at) == (
        "b",
        S.CONNECTED,
        S.DISCONNECTED,
        10.0,
    )
    assert not relay.output_state
    outcome, change = relay.fire(T.REMOTE_RECONNECT, at=20.0)
    assert change is not None
    assert change.transition == "d"
    assert relay.output_state


def test_mode_2_reconnect_waits_for_the_consumer():
    relay = DisconnectControl(control_mode=2)
    relay.fire(T.REMOTE_DISCONNECT, 0)
    _, change = relay.fire(T.REMOTE_RECONNECT, 1)
    assert change is not None
    assert change.transition == "a"
    assert relay.state is S.READY_FOR_RECONNECTION
    assert not relay.output_state
    _, change = relay.fire(T.MANUAL_RECONNECT, 2)
    assert change is not None
    assert change.transition == "e"
    assert relay.output_state


@pytest.mark.parametrize(
    ("mode", "trigger", "start", "outcome", "end"),
    [
        (0, T.REMOTE_DISCONNECT, S.CONNECTED, Outcome.NOT_ENABLED, S.CONNECTED),
        (1, T.REMOTE_DISCONNECT, S.DISCONNECTED, Outcome.UNCHANGED, S.DISCONNECTED),
        (1, T.REMOTE_RECONNECT, S.CONNECTED, Outcome.UNCHANGED, S.CONNECTED),
        (1, T.REMOTE_DISCONNECT, S.READY_FOR_RECONNECTION, Outcome.CHANGED, S.DISCONNECTED),
        (
            1,
            T.LOCAL_RECONNECT,
            S.READY_FOR_RECONNECTION,
            Outcome.NOT_ENABLED,
            S.READY_FOR_RECONNECTION,
        ),
        (3, T.MANUAL_DISCONNECT, S.CONNECTED, Outcome.NOT_ENABLED, S.CONNECTED),
        (5, T.LOCAL_RECONNECT, S.READY_FOR_RECONNECTION, Outcome.CHANGED, S.CONNECTED),
        (
            6,
            T.MANUAL_RECONNECT,
            S.READY_FOR_RECONNECTION,
            Outcome.NOT_ENABLED,
            S.READY_FOR_RECONNECTION,
        ),
        (6, T.LOCAL_DISCONNECT, S.CONNECTED, Outcome.CHANGED, S.READY_FOR_RECONNECTION),
        (4, T.REMOTE_RECONNECT, S.DISCONNECTED, Outcome.CHANGED, S.READY_FOR_RECONNECTION),
    ],
)
def test_transition_table(mode, trigger, start, outcome, end):
    relay = DisconnectControl(control_mode=mode, state=start)
    got, change = relay.fire(trigger, 0.0)
    assert got is outcome
    assert relay.state is end
    assert (change is not None) is (outcome is Outcome.CHANGED)


def test_mode_0_is_always_connected_and_bad_modes_are_refused():
    assert DisconnectControl(0, S.DISCONNECTED).output_state
    with pytest.raises(ValueError, match="control mode"):
        DisconnectControl(7)
