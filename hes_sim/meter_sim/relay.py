"""The disconnect control (COSEM class 70, 0.0.96.3.10.255) as a table-driven state machine.

States: 0 disconnected, 1 connected, 2 ready-for-reconnection. The output (the relay) is
closed only when connected. Transitions, named as in the DLMS Blue Book (4.5.8):

    a remote reconnect    disconnected -> ready-for-reconnection
    b remote disconnect   connected -> disconnected
    c remote disconnect   ready-for-reconnection -> disconnected
    d remote reconnect    disconnected -> connected
    e manual reconnect    ready-for-reconnection -> connected
    f manual disconnect   connected -> ready-for-reconnection
    g local disconnect    connected -> ready-for-reconnection
    h local reconnect     ready-for-reconnection -> connected

The control mode (0-6) says which transitions are enabled; it is what decides whether a
remote reconnect closes the relay at once (d) or waits for the consumer's button (a, e).
Pure: no I/O; the caller supplies the time of each change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class ControlState(IntEnum):
    DISCONNECTED = 0
    CONNECTED = 1
    READY_FOR_RECONNECTION = 2


class Trigger(StrEnum):
    REMOTE_DISCONNECT = "remote_disconnect"
    REMOTE_RECONNECT = "remote_reconnect"
    MANUAL_DISCONNECT = "manual_disconnect"
    MANUAL_RECONNECT = "manual_reconnect"
    LOCAL_DISCONNECT = "local_disconnect"
    LOCAL_RECONNECT = "local_reconnect"


class Outcome(StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"  # already in the state the trigger leads to, or no edge applies
    NOT_ENABLED = "not_enabled"  # the control mode forbids this trigger


S = ControlState
# (trigger, from) -> (transition letter, to)
TRANSITIONS: dict[tuple[Trigger, ControlState], tuple[str, ControlState]] = {
    (Trigger.REMOTE_RECONNECT, S.DISCONNECTED): ("a", S.READY_FOR_RECONNECTION),
    (Trigger.REMOTE_DISCONNECT, S.CONNECTED): ("b", S.DISCONNECTED),
    (Trigger.REMOTE_DISCONNECT, S.READY_FOR_RECONNECTION): ("c", S.DISCONNECTED),
    (Trigger.MANUAL_RECONNECT, S.READY_FOR_RECONNECTION): ("e", S.CONNECTED),
    (Trigger.MANUAL_DISCONNECT, S.CONNECTED): ("f", S.READY_FOR_RECONNECTION),
    (Trigger.LOCAL_DISCONNECT, S.CONNECTED): ("g", S.READY_FOR_RECONNECTION),
    (Trigger.LOCAL_RECONNECT, S.READY_FOR_RECONNECTION): ("h", S.CONNECTED),
}
# remote reconnect from disconnected goes straight to connected where "d" is enabled
DIRECT_RECONNECT = ("d", S.CONNECTED)

ENABLED: dict[int, frozenset[str]] = {
    0: frozenset(),
    1: frozenset("bcfgde"),
    2: frozenset("bcfgae"),
    3: frozenset("bcgde"),
    4: frozenset("bcgae"),
    5: frozenset("bcfgdeh"),
    6: frozenset("bcgdh"),
}
TRIGGER_LETTERS: dict[Trigger, frozenset[str]] = {
    Trigger.REMOTE_DISCONNECT: frozenset("bc"),
    Trigger.REMOTE_RECONNECT: frozenset("ad"),
    Trigger.MANUAL_DISCONNECT: frozenset("f"),
    Trigger.MANUAL_RECONNECT: frozenset("e"),
    Trigger.LOCAL_DISCONNECT: frozenset("g"),
    Trigger.LOCAL_RECONNECT: frozenset("h"),
}


@dataclass(frozen=True, slots=True)
class RelayChange:
    transition: str
    trigger: Trigger
    before: ControlState
    after: ControlState
    at: float  # simulated Unix seconds


class DisconnectControl:
    def __init__(self, control_mode: int = 1, state: ControlState = S.CONNECTED) -> None:
        if control_mode not in ENABLED:
            raise ValueError(f"control mode {control_mode} is not 0-6")
        self.control_mode = control_mode
        self.state = S.CONNECTED if control_mode == 0 else state

    @property
    def output_state(self) -> bool:
        """True when the relay is closed and the consumer has supply."""
        return self.state is S.CONNECTED

    def fire(self, trigger: Trigger, at: float) -> tuple[Outcome, RelayChange | None]:
        enabled = ENABLED[self.control_mode]
        if not enabled & TRIGGER_LETTERS[trigger]:
            return Outcome.NOT_ENABLED, None
        edge = TRANSITIONS.get((trigger, self.state))
        if trigger is Trigger.REMOTE_RECONNECT and self.state is S.DISCONNECTED and "d" in enabled:
            edge = DIRECT_RECONNECT
        if edge is None or edge[0] not in enabled:
            return Outcome.UNCHANGED, None
        letter, after = edge
        change = RelayChange(letter, trigger, self.state, after, at)
        self.state = after
        return Outcome.CHANGED, change
