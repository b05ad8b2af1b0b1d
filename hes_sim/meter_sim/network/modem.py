"""A meter's 4G modem as a table-driven state machine over simulated time. Pure.

    POWER_ON     off -> detached
    POWER_OFF    any -> off
    ATTACH       detached -> attaching        (an accepted admission; takes a drawn delay)
    ATTACHED     attaching -> connected       (the delay has passed)
    TRAFFIC      idle -> connected            (a chunk pays the RRC promotion)
    INACTIVITY   connected -> idle            (rrc_inactivity_s without traffic)
    LINK_LOST    attaching/idle/connected -> detached   (cell down, out of coverage,
                                                         connection released)

Timer-driven transitions (ATTACHED, INACTIVITY) are applied lazily when the modem is next
asked about a time, so nothing has to tick. Every draw comes from the modem's own
``random.Random``, so a meter's delays do not depend on other meters' traffic.
"""

from __future__ import annotations

import random
from enum import StrEnum

from hes_sim.meter_sim.network.link_model import Direction
from hes_sim.meter_sim.network.specs import LinkProfile, RadioSettings


class ModemState(StrEnum):
    OFF = "off"  # no power
    DETACHED = "detached"  # powered, not registered with the network
    ATTACHING = "attaching"
    IDLE = "idle"  # registered, RRC idle: the next chunk pays a promotion
    CONNECTED = "connected"  # registered, RRC connected


class ModemEvent(StrEnum):
    POWER_ON = "power_on"
    POWER_OFF = "power_off"
    ATTACH = "attach"
    ATTACHED = "attached"
    TRAFFIC = "traffic"
    INACTIVITY = "inactivity"
    LINK_LOST = "link_lost"


class InvalidTransitionError(ValueError):
    pass


M = ModemState
E = ModemEvent
REGISTERED = frozenset({M.ATTACHING, M.IDLE, M.CONNECTED})
TRANSITIONS: dict[tuple[ModemEvent, ModemState], ModemState] = {
    (E.POWER_ON, M.OFF): M.DETACHED,
    **{(E.POWER_ON, s): s for s in M if s is not M.OFF},  # already on: nothing happens
    **{(E.POWER_OFF, s): M.OFF for s in M},
    (E.ATTACH, M.DETACHED): M.ATTACHING,
    (E.ATTACHED, M.ATTACHING): M.CONNECTED,
    (E.TRAFFIC, M.IDLE): M.CONNECTED,
    (E.TRAFFIC, M.CONNECTED): M.CONNECTED,
    (E.INACTIVITY, M.CONNECTED): M.IDLE,
    **{(E.LINK_LOST, s): M.DETACHED for s in REGISTERED | {M.DETACHED}},
    (E.LINK_LOST, M.OFF): M.OFF,
}


class Modem:
    def __init__(self, rng: random.Random, settings: RadioSettings) -> None:
        self._rng = rng
        self.settings = settings
        self.state = M.DETACHED  # meters start powered
        self.attached_at = 0.0  # when ATTACHING completes
        self.last_activity = 0.0  # end of the last chunk (or attach): the RRC timer's start

    def fire(self, event: ModemEvent) -> ModemState:
        after = TRANSITIONS.get((event, self.state))
        if after is None:
            raise InvalidTransitionError(f"{event.value} is not possible when {self.state.value}")
        self.state = after
        return after

    def advance(self, now: float) -> ModemState:
        """Apply the timers that have run out by ``now``."""
        if self.state is M.ATTACHING and now >= self.attached_at:
            self.fire(E.ATTACHED)
        if self.state is M.CONNECTED and now >= self.last_activity + self.settings.rrc_inactivity_s:
            self.fire(E.INACTIVITY)
        return self.state

    @property
    def registered(self) -> bool:
        return self.state in REGISTERED

    def attach(self, now: float) -> float:
        """An accepted connection at ``now``: seconds until the modem can carry it.

        A detached modem attaches (a drawn delay); a registered one only needs its RRC
        connection: the rest of an attach under way, a promotion from idle, or nothing.
        """
        state = self.advance(now)
        if state is M.DETACHED:
            settings = self.settings
            delay = self._rng.uniform(
                settings.attach_delay_mean_s - settings.attach_delay_spread_s,
                settings.attach_delay_mean_s + settings.attach_delay_spread_s,
            )
            self.fire(E.ATTACH)
        elif state is M.ATTACHING:
            delay = self.attached_at - now
        elif state is M.IDLE:
            delay = self.settings.rrc_promotion_s
            self.fire(E.TRAFFIC)
        elif state is M.CONNECTED:
            delay = 0.0
        else:
            raise InvalidTransitionError(f"cannot attach a modem that is {state.value}")
        if self.state is M.ATTACHING:
            self.attached_at = now + delay
        self.last_activity = max(self.last_activity, now + delay)
        return delay

    def setup_delay(self, direction: Direction, now: float) -> float:
        """What a chunk waits before the radio can carry it: the rest of an attach, or
        an RRC promotion (with paging first, for downlink) when idle. Call ``advance``
        first; the modem must be registered."""
        state = self.state
        if state is M.ATTACHING:
            return self.attached_at - now
        if state is M.IDLE:
            self.fire(E.TRAFFIC)
            paging = self._rng.uniform(0, self.settings.paging_drx_s)
            promotion = self.settings.rrc_promotion_s
            return promotion + (paging if direction is Direction.DOWN else 0.0)
        if state is M.CONNECTED:
            return 0.0
        raise InvalidTransitionError(f"no radio link when {state.value}")

    def carry(self, profile: LinkProfile, size: int) -> float | None:
        """Seconds for one chunk once the radio is up: serialisation, latency with jitter,
        and TCP's retransmissions (each lost attempt waits out a doubling timeout). None
        when every attempt up to the limit is lost: the link broke on this chunk."""
        settings = self.settings
        retransmitting = 0.0
        for attempt in range(settings.max_retransmissions + 1):
            if self._rng.random() >= profile.loss:
                break
            retransmitting += settings.rto_base_s * 2**attempt
        else:
            return None
        return size * 8 / settings.link_bps + self.latency(profile) + retransmitting

    def latency(self, profile: LinkProfile) -> float:
        """A gamma draw with the profile's mean and deviation: never negative, and with
        the long right tail radio latency has."""
        mean, sd = profile.latency_s, profile.jitter_s
        # below a nanosecond of either, the other is all there is (and the ratio overflows)
        if mean < 1e-9 or sd < 1e-9:
            return mean
        scale = sd * sd / mean
        return self._rng.gammavariate(mean / scale, scale)

    def touched(self, until: float) -> None:
        """Traffic ran until ``until``: the RRC inactivity timer restarts from there."""
        self.last_activity = max(self.last_activity, until)

    def lose_link(self) -> None:
        self.fire(E.LINK_LOST)

    def power_off(self) -> None:
        self.fire(E.POWER_OFF)

    def power_on(self, now: float) -> None:
        self.fire(E.POWER_ON)
        self.last_activity = max(self.last_activity, now)
