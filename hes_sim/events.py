"""Domain events and the bus that carries them to metrics, logs and reports.

Components emit each event once; whoever needs to count or log it subscribes. Handlers
run synchronously in the emitter's task and must be quick (update a counter, append to
a list); a failing handler is logged and does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import get_args

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class MeterConnected:
    meter_id: str
    connect_wall_s: float  # wall seconds the MQTT connect took (a bench figure)
    attempt: int


@dataclass(frozen=True, slots=True)
class MeterLinkLost:
    meter_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReadProduced:
    meter_id: str
    interval_end: float


@dataclass(frozen=True, slots=True)
class PushSent:
    meter_id: str
    interval_end: float


@dataclass(frozen=True, slots=True)
class ReadStored:
    meter_id: str
    interval_end: float
    delivery_delay: float  # simulated seconds, interval end -> stored
    wh_import: int = 0  # the interval's active energy: what prepaid charges for
    recovered: bool = False  # read back from the profile by backfill, not pushed


@dataclass(frozen=True, slots=True)
class ReadDuplicate:
    meter_id: str
    interval_end: float


@dataclass(frozen=True, slots=True)
class DecodeFailed:
    reason: str
    meter_id: str | None


@dataclass(frozen=True, slots=True)
class MeterOnline:
    meter_id: str


@dataclass(frozen=True, slots=True)
class MeterOffline:
    meter_id: str


@dataclass(frozen=True, slots=True)
class MeterRequestRefused:
    """A meter refused a request: outside an association, forged, or replayed."""

    meter_id: str


@dataclass(frozen=True, slots=True)
class MeterEventReceived:
    meter_id: str
    code: int  # IS 15959 event code, e.g. 201 load switch disconnected
    at: float  # the meter's time stamp of the event
    new: bool  # False when the same event was received before


@dataclass(frozen=True, slots=True)
class CommandFinished:
    command_id: str
    meter_id: str
    type: str
    outcome: str  # confirmed, failed or expired
    duration: float  # simulated seconds, created -> terminal


@dataclass(frozen=True, slots=True)
class HeadEndSubscribed:
    broker: str
    session: int  # 1 for the first subscription, then one more after each reconnect


@dataclass(frozen=True, slots=True)
class BackfillRequested:
    """Missing block-load reads asked of a meter: the intervals ending in (start, end]."""

    meter_id: str
    start: float
    end: float
    intervals: int


@dataclass(frozen=True, slots=True)
class ReadsRecovered:
    """Block-load reads a read_profile command brought back; ``count_new`` were not stored yet."""

    meter_id: str
    command_id: str
    count_new: int


@dataclass(frozen=True, slots=True)
class LinkAttached:
    """A meter's connection got through the simulated 4G link to the broker."""

    meter_id: str
    attach_s: float  # simulated seconds, TCP accept at the proxy -> broker connected


@dataclass(frozen=True, slots=True)
class AttachRejected:
    """The simulated network refused a meter's connection (no bearer): it was dropped."""

    meter_id: str
    reason: str  # a RejectReason value: no_power, cell_down, no_coverage, congested


@dataclass(frozen=True, slots=True)
class LinkBlackHoled:
    """A meter's connection went dead: no bytes pass either way, no close is seen."""

    meter_id: str


@dataclass(frozen=True, slots=True)
class ExportDelivered:
    """Records a sink acknowledged, one event per delivery attempt."""

    sink: str
    count: int
    lag_max_s: float  # simulated seconds from enqueued to delivered, the batch's oldest


@dataclass(frozen=True, slots=True)
class ExportFailed:
    """Records a delivery attempt did not deliver, one event per attempt."""

    sink: str
    count: int
    retriable: bool  # False: parked in the outbox until an operator requeues them
    reason: str
    at: float  # simulated seconds


@dataclass(frozen=True, slots=True)
class LateAnswer:
    """A meter's answer that came after the head-end gave up waiting for it: dropped, or
    refused by its invoke id when it came while the next request waited."""

    meter_id: str


@dataclass(frozen=True, slots=True)
class PrepaidDisconnected:
    """A prepaid rule's disconnect confirmed: the consumer is in the dark."""

    meter_id: str


@dataclass(frozen=True, slots=True)
class LightBack:
    """A recharged consumer's reconnect confirmed: the headline figure of the field case."""

    meter_id: str
    recharge_to_light_s: float  # simulated seconds, recharge accepted -> relay closed


@dataclass(frozen=True, slots=True)
class LowBalance:
    meter_id: str
    threshold: str  # the share of the last recharge it crossed ("0": the balance hit zero)


Event = (
    MeterConnected
    | MeterLinkLost
    | ReadProduced
    | PushSent
    | ReadStored
    | ReadDuplicate
    | DecodeFailed
    | MeterOnline
    | MeterOffline
    | HeadEndSubscribed
    | MeterEventReceived
    | MeterRequestRefused
    | CommandFinished
    | ReadsRecovered
    | PrepaidDisconnected
    | LateAnswer
    | LightBack
    | LowBalance
    | BackfillRequested
    | LinkAttached
    | AttachRejected
    | LinkBlackHoled
    | ExportDelivered
    | ExportFailed
)
Handler = Callable[[Event], None]


def _reduce_by_fields(event: Event) -> tuple[type[Event], tuple[object, ...]]:
    return type(event), tuple(getattr(event, name) for name in type(event).__slots__)


# Events cross the pipes of fleet processes and ingest workers by the thousand. Pickled by
# their constructor's arguments, each costs a third of what dataclasses' own slot state
# costs, which looks up every field of the class for every event.
for _kind in get_args(Event):
    setattr(_kind, "__reduce__", _reduce_by_fields)  # noqa: B010 - a method of every kind


class EventBus:
    """Handlers subscribe to every event, or to some kinds only: an event is handed to the
    handlers of its kind, so a read stored is not offered to every handler of commands,
    prepaid and exports (a hundred thousand reads an interval pass through here)."""

    def __init__(self) -> None:
        self._handlers: list[tuple[Handler, frozenset[type[Event]] | None]] = []
        self._routes: dict[type[Event], tuple[Handler, ...]] = {}  # by kind, made on first use

    def subscribe(self, handler: Handler, kinds: Iterable[type[Event]] | None = None) -> None:
        """Call ``handler`` with every event, or with those of ``kinds`` only."""
        self._handlers.append((handler, None if kinds is None else frozenset(kinds)))
        self._routes.clear()

    def unsubscribe(self, handler: Handler) -> None:
        """Stop calling ``handler`` (nothing if it was not subscribed)."""
        for at, (subscribed, _kinds) in enumerate(self._handlers):
            if subscribed == handler:
                del self._handlers[at]
                self._routes.clear()
                return

    def emit(self, event: Event) -> None:
        kind = type(event)
        handlers = self._routes.get(kind)
        if handlers is None:
            handlers = self._routes[kind] = tuple(
                handler for handler, kinds in self._handlers if kinds is None or kind in kinds
            )
        for handler in handlers:
            try:
                handler(event)
            except Exception:  # a broken subscriber must not stop ingest or the fleet
                log.exception("event_handler_failed", kind=kind.__name__)
