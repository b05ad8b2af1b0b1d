"""Which meters are online, since when, and how much of the time. Pure, clock injected.

A meter's state comes from its retained state topic and last will; ``touch`` records
every other message from it (pushes, answers), and ``sweep`` turns a meter that has been
silent past a threshold offline — the backstop for a link that died without the broker
noticing yet. Times are simulated Unix seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from hes_sim.clock import Clock
from hes_sim.protocols.topics import MeterState


class OfflineCause(StrEnum):
    STATE_TOPIC = "state_topic"  # the meter said so, or the broker published its last will
    SILENCE = "silence"  # nothing heard from it for longer than the threshold


@dataclass(slots=True)
class Presence:
    state: MeterState
    since: float  # when the current state began
    first_seen: float
    last_seen: float
    online_s: float = 0.0  # time online before ``since`` (the current spell is added live)
    transitions: int = 0
    cause: OfflineCause | None = None
    state_known: bool = True  # False while only heard from, before its state topic arrived

    def uptime_share(self, now: float) -> float | None:
        observed = now - self.first_seen
        if observed <= 0:
            return None
        online = self.online_s + (now - self.since if self.state is MeterState.ONLINE else 0.0)
        return min(1.0, online / observed)


class MeterPresence:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._meters: dict[str, Presence] = {}
        self.started_at = clock.now()
        self.online = 0

    def update(
        self,
        meter_id: str,
        state: MeterState,
        cause: OfflineCause = OfflineCause.STATE_TOPIC,
        *,
        heard: bool = True,
    ) -> bool:
        """Record ``state`` for the meter; True when it is a change. ``heard`` False: the
        broker replayed a retained state, which says nothing of when the meter last spoke."""
        now = self._clock.now()
        current = self._meters.get(meter_id)
        if current is None:
            last_seen = now if heard else self.started_at
            self._meters[meter_id] = Presence(state, now, now, last_seen)
            self.online += state is MeterState.ONLINE
            return True
        if state is MeterState.ONLINE and heard:
            current.last_seen = now
        if current.state is state and current.state_known:
            return False
        if current.state is MeterState.ONLINE:
            self.online -= 1
            current.online_s += now - current.since
        if state is MeterState.ONLINE:
            self.online += 1
        if current.state_known:
            current.transitions += 1
        else:
            current.first_seen = now  # uptime counts from the first state we know
        current.state, current.since, current.state_known = state, now, True
        current.cause = None if state is MeterState.ONLINE else cause
        return True

    def touch(self, meter_id: str) -> bool:
        """A message came from the meter. True when that brings it back online (it had
        been declared offline for silence only)."""
        return bool(self.touch_all((meter_id,)))

    def touch_all(self, meter_ids: Iterable[str]) -> list[str]:
        """Messages came from these meters, now: those that this brings back online."""
        now = self._clock.now()
        meters = self._meters
        back: list[str] = []
        for meter_id in meter_ids:
            current = meters.get(meter_id)
            if current is None:
                # heard from, but its state is not known yet: the retained state decides
                meters[meter_id] = Presence(MeterState.OFFLINE, now, now, now, state_known=False)
                continue
            current.last_seen = now
            if current.cause is OfflineCause.SILENCE and self.update(meter_id, MeterState.ONLINE):
                back.append(meter_id)
        return back

    def seen_before(self, meter_id: str, last_seen: float) -> None:
        """Seed what an earlier head-end knew (from the store) so silence survives restarts."""
        current = self._meters.get(meter_id)
        if current is None:
            self._meters[meter_id] = Presence(
                MeterState.OFFLINE, last_seen, last_seen, last_seen, state_known=False
            )
        elif current.last_seen < last_seen:
            current.last_seen = last_seen

    def sweep(self, silence_s: float) -> list[str]:
        """Turn offline every online meter silent for ``silence_s``; their ids."""
        now = self._clock.now()
        silent = [
            meter_id
            for meter_id, p in self._meters.items()
            if p.state is MeterState.ONLINE and now - p.last_seen >= silence_s
        ]
        for meter_id in silent:
            self.update(meter_id, MeterState.OFFLINE, OfflineCause.SILENCE)
        return silent

    def get(self, meter_id: str) -> Presence | None:
        return self._meters.get(meter_id)

    def is_online(self, meter_id: str) -> bool:
        current = self._meters.get(meter_id)
        return current is not None and current.state is MeterState.ONLINE

    def known(self) -> list[str]:
        return list(self._meters)
