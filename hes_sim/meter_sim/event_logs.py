"""The seven IS 15959 event logs (profile generic 0.0.99.98.0-6.255) of one meter. Pure."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

LOG_DEPTH = 50  # each log is a ring of this many entries (non-rollover: first ones kept)


class EventLog(IntEnum):
    """The log's index: its OBIS code is 0.0.99.98.<index>.255."""

    VOLTAGE = 0
    CURRENT = 1
    POWER = 2
    TRANSACTION = 3
    OTHER = 4
    NON_ROLLOVER = 5
    CONTROL = 6


class EventCode(IntEnum):
    """The event codes this simulator writes (IS 15959 Part 2, annex on event codes)."""

    POWER_FAILURE = 101
    POWER_RESTORED = 102
    REAL_TIME_CLOCK_SET = 151
    LOAD_LIMIT_SET = 158
    LOAD_SWITCH_DISCONNECTED = 201
    LOAD_SWITCH_CONNECTED = 202


LOG_OF = {
    EventCode.POWER_FAILURE: EventLog.POWER,
    EventCode.POWER_RESTORED: EventLog.POWER,
    EventCode.REAL_TIME_CLOCK_SET: EventLog.TRANSACTION,
    EventCode.LOAD_LIMIT_SET: EventLog.TRANSACTION,
    EventCode.LOAD_SWITCH_DISCONNECTED: EventLog.CONTROL,
    EventCode.LOAD_SWITCH_CONNECTED: EventLog.CONTROL,
}


@dataclass(frozen=True, slots=True)
class MeterEvent:
    at: float  # simulated Unix seconds
    code: EventCode

    @property
    def log(self) -> EventLog:
        return LOG_OF[self.code]


PUSHED_LOGS = frozenset({EventLog.CONTROL, EventLog.POWER})  # alerts sent as they happen


@dataclass(slots=True)
class EventLogs:
    logs: dict[EventLog, deque[MeterEvent]] = field(default_factory=dict)
    pending: list[MeterEvent] = field(default_factory=list)  # to push, oldest first

    def take_pending(self) -> list[MeterEvent]:
        pending, self.pending = self.pending, []
        return pending

    def record(self, code: EventCode, at: float) -> MeterEvent:
        event = MeterEvent(at, code)
        if event.log in PUSHED_LOGS:
            self.pending.append(event)
        log = self.logs.setdefault(event.log, deque(maxlen=LOG_DEPTH))
        if event.log is EventLog.NON_ROLLOVER and len(log) == LOG_DEPTH:
            return event  # a full non-rollover log keeps its first entries
        log.append(event)
        return event

    def entries(self, log: EventLog) -> list[MeterEvent]:
        return list(self.logs.get(log, ()))


def event_log_name(log: EventLog) -> bytes:
    """The logical name 0.0.99.98.<log>.255."""
    return bytes([0, 0, 99, 98, int(log), 255])
