"""From raw push frames to stored reads: decode, validate, store once, report each outcome."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from hes_sim.backoff import Backoff
from hes_sim.clock import Clock
from hes_sim.errors import CodecError, StoreError
from hes_sim.events import DecodeFailed, EventBus, MeterEventReceived, ReadDuplicate, ReadStored
from hes_sim.hes.records import EventRecord, ReadRecord
from hes_sim.hes.replay import InvocationCounters
from hes_sim.hes.store import ReadStore
from hes_sim.hes.validation import validate_entry, validate_interval_end
from hes_sim.keyring import FleetKeyring
from hes_sim.protocols import frame, push_fast, security, topics, wrapper
from hes_sim.protocols.push import EventEntry
from hes_sim.protocols.push import decode as decode_notification
from hes_sim.protocols.security import Keys
from hes_sim.protocols.topics import Channel

log = structlog.get_logger(__name__)


# not frozen: a frozen dataclass's __init__ costs ~3 us against ~0.6 us, and the
# head-end builds one of these for every push it takes
@dataclass(slots=True)
class InboundPush:
    meter_id: str
    payload: bytes
    received_at: float  # simulated Unix seconds


@dataclass(frozen=True, slots=True)
class PushPolicy:
    """How pushes must be protected: with ``keyring`` set, ciphered pushes are deciphered
    and checked; with ``require_ciphered``, plain ones are refused."""

    keyring: FleetKeyring | None = None
    require_ciphered: bool = False


@dataclass(frozen=True, slots=True)
class Decoded:
    reads: list[ReadRecord]
    events: list[EventRecord]


# reads just stored, and when: how a head-end learns of them
ReportStored = Callable[[Sequence[ReadRecord], float], None]


class Ingest:
    def __init__(
        self,
        store: ReadStore,
        clock: Clock,
        bus: EventBus,
        policy: PushPolicy | None = None,
        *,
        report_stored: ReportStored | None = None,
    ) -> None:
        """``report_stored``: where the reads each stored batch added go; by default a
        ``ReadStored`` event each, on ``bus``."""
        self._store = store
        self._clock = clock
        self._bus = bus
        self._policy = policy or PushPolicy()
        self._report_stored = report_stored or self._emit_stored
        self._counters = InvocationCounters()
        # each meter's system title and keys, derived once (two HMACs and a hash a push)
        self._senders: dict[str, tuple[bytes, Keys]] = {}
        self._store_backoff = Backoff(random.Random(), base=0.1, cap=5.0)

    def open(self, push: InboundPush) -> bytes:
        """Unwrap, and decipher and check when ciphered, the notification APDU in ``push``."""
        keyring = self._policy.keyring
        if keyring is not None and (sealed := frame.split_sealed_push(push.payload)):
            # the usual push, its headers read by one struct
            title, counter, body = sealed
            control = security.SECURITY_AUTHENTICATED_ENCRYPTED
            return self._decipher(
                keyring, push.meter_id, title, counter, control=control, sealed=body
            )
        _header, apdu = wrapper.unwrap(push.payload)
        if not frame.is_ciphered(apdu):
            if self._policy.require_ciphered:
                raise CodecError("security_policy", "plain push refused: suite 0 is required")
            return apdu
        if keyring is None:
            raise CodecError("security_policy", "ciphered push, but no fleet secret is set")
        ciphered = security.parse(apdu)
        if ciphered.system_title is None:  # pragma: no cover - general-glo-ciphering has one
            raise CodecError("system_title", "a ciphered push without a system title")
        return self._decipher(
            keyring,
            push.meter_id,
            ciphered.system_title,
            ciphered.invocation_counter,
            control=ciphered.security_control,
            sealed=ciphered.payload,
        )

    def _decipher(
        self,
        keyring: FleetKeyring,
        meter_id: str,
        title: bytes,
        counter: int,
        *,
        control: int,
        sealed: bytes,
    ) -> bytes:
        """The plaintext, once the title is the meter's, the tag verifies and the counter is
        fresh; CodecError naming which check failed otherwise."""
        sender = self._senders.get(meter_id)
        if sender is None:
            sender = keyring.system_title_for(meter_id), keyring.keys_for(meter_id)
        own_title, keys = sender
        if title != own_title:
            raise CodecError("system_title", "the push's system title is not this meter's")
        plain = security.open_sealed(sealed, own_title, counter, control, keys)
        self._senders[meter_id] = sender  # kept once genuine, so forged ids cannot fill it
        if not self._counters.is_fresh(meter_id, counter):
            raise CodecError(
                "replayed",
                f"invocation counter {counter} is not above {self._counters.last(meter_id)}",
            )
        self._counters.accept(meter_id, counter)
        return plain

    def decode(
        self, push: InboundPush, now: float | None = None
    ) -> ReadRecord | EventRecord | None:
        """The read or event in ``push``, or None after counting why it was rejected.
        ``now``: the head-end's time, when the caller has it (once for a batch)."""
        try:
            apdu = self.open(push)
            now = self._clock.now() if now is None else now
            # the usual push, a block-load entry of a known shape, read into a record at
            # once; any other goes through the notification and its entry
            fields = push_fast.decode_block_load(apdu)
            if fields is not None:
                layout, clock, unix_time, values = fields
                interval_end = validate_interval_end(clock, unix_time, now)
                return ReadRecord.from_values(
                    push.meter_id, layout, values, interval_end, push.received_at
                )
            entry = decode_notification(apdu).entry
            if isinstance(entry, EventEntry):
                return EventRecord(
                    push.meter_id,
                    int(entry.clock.timestamp()),
                    ".".join(str(b) for b in entry.log),
                    entry.code,
                    push.received_at,
                    entry.status_word.hex(),
                )
            interval_end = validate_entry(entry, now)
        except CodecError as exc:
            self._bus.emit(DecodeFailed(exc.reason, push.meter_id))
            log.warning("push_rejected", meter_id=push.meter_id, reason=exc.reason, error=str(exc))
            return None
        return ReadRecord.from_entry(push.meter_id, entry, push.received_at, interval_end)

    async def process(self, batch: Sequence[InboundPush]) -> None:
        await self.store(self.decode_batch(batch))

    def decode_batch(self, batch: Sequence[InboundPush]) -> Decoded:
        """The reads and events in ``batch``; the rejected pushes counted and logged."""
        reads: list[ReadRecord] = []
        events: list[EventRecord] = []
        now = self._clock.now()
        for push in batch:
            record = self.decode(push, now)
            if isinstance(record, ReadRecord):
                reads.append(record)
            elif record is not None:
                events.append(record)
        return Decoded(reads, events)

    async def store(self, decoded: Decoded) -> None:
        """Store a decoded batch (retrying while the store fails) and report each outcome."""
        reads, events = decoded.reads, decoded.events
        if reads:
            stored_at, flags = await self._with_retry(
                lambda at: self._store.add_reads(reads, at), len(reads)
            )
            fresh = [read for read, stored in zip(reads, flags, strict=True) if stored]
            if len(fresh) < len(reads):
                for read, stored in zip(reads, flags, strict=True):
                    if not stored:
                        self._bus.emit(ReadDuplicate(read.meter_id, read.interval_end))
            self._report_stored(fresh, stored_at)
        if events:
            _at, flags = await self._with_retry(
                lambda at: self._store.add_events(events, at), len(events)
            )
            for event, new in zip(events, flags, strict=True):
                self._bus.emit(MeterEventReceived(event.meter_id, event.code, event.at, new))

    def _emit_stored(self, reads: Sequence[ReadRecord], stored_at: float) -> None:
        emit = self._bus.emit
        for read in reads:
            delay = stored_at - read.interval_end
            emit(ReadStored(read.meter_id, read.interval_end, delay, read.wh_import))

    async def _with_retry(
        self, write: Callable[[float], Awaitable[list[bool]]], rows: int
    ) -> tuple[float, list[bool]]:
        """Keep the batch until the store takes it: ingest stalls, the broker queues."""
        while True:
            stored_at = self._clock.now()
            try:
                flags = await write(stored_at)
            except StoreError as exc:
                delay = self._store_backoff.next_delay()
                log.error(  # noqa: TRY400 - a traceback per retried write adds nothing
                    "store_write_failed", rows=rows, retry_in_s=delay, error=str(exc)
                )
                await asyncio.sleep(delay)
            else:
                self._store_backoff.reset()
                return stored_at, flags


def is_response(frame: bytes) -> bool:
    """Pushes are addressed to the push wPort; answers to requests to the client's."""
    return (
        len(frame) >= wrapper.HEADER_SIZE
        and int.from_bytes(frame[4:6], "big") == wrapper.HES_CLIENT_WPORT
    )


def parse_topic(topic_name: str, bus: EventBus) -> tuple[str, Channel] | None:
    """The meter and channel a message came on; None, counted and logged, for a topic
    outside the scheme."""
    try:
        return topics.parse(topic_name)
    except CodecError as exc:
        bus.emit(DecodeFailed(exc.reason, None))
        log.warning("message_rejected", topic=topic_name, error=str(exc))
        return None
