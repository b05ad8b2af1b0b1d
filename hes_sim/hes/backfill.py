"""Finding block-load reads that never arrived and asking the meters for them again.

A push lost on the way (a dropped 4G session, a broker restart) leaves a hole the meter
can still fill: it keeps 30 days of block-load entries. ``backfill:scanner`` looks at the
store every ``scan_period_s`` simulated seconds, finds the missing intervals of the
meters that are online (an offline meter's gaps wait: a meter coming back online is looked
at ``online_delay_s`` later, once its outbox has flushed) and submits a READ_PROFILE
command per gap — a bounded number per scan and in flight, so a backfill never floods the
meters or crowds out commands that matter more (reads run after everything else).

Each gap's command carries an idempotency key made of the meter, the range and the
attempt, so a rescan never asks twice while one is pending; a failed or expired read is
asked again (up to ``max_attempts``); a range still missing after a read that succeeded
is not in the meter's buffer any more, and is given up.

For a report: ``figures()`` gives completeness before backfill (the last measurement
taken before the first request, so nothing the backfill brought is in it), completeness
now over that same window and meters, and the reads the backfill recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Protocol, Self

import structlog

from hes_sim.errors import HesSimError
from hes_sim.events import (
    BackfillRequested,
    CommandFinished,
    Event,
    EventBus,
    MeterOnline,
    ReadsRecovered,
)
from hes_sim.hes.commands.lifecycle import CommandState, CommandSubmitter, CommandType
from hes_sim.hes.gaps import Completeness, Gap, Window, completeness, find_gaps, incomplete_meters
from hes_sim.hes.store import SqlStore
from hes_sim.meter_sim.schedule import IntervalSchedule

log = structlog.get_logger(__name__)

PROFILE = "block_load"
GapKey = tuple[str, float, float]  # meter, start, end


class PresenceView(Protocol):
    def is_online(self, meter_id: str) -> bool: ...


class BackfillClock(Protocol):
    def now(self) -> float: ...

    def wall_seconds(self, sim_seconds: float) -> float: ...


@dataclass(frozen=True, slots=True)
class BackfillSettings:
    """Times in simulated seconds."""

    scan_period_s: float = 900.0
    # a read newer than this may still arrive by push: the push randomisation window, a
    # retry, a meter flushing its outbox; only older intervals count as missing
    grace_s: float = 2 * 900 + 300
    max_requests_per_scan: int = 50
    max_in_flight: int = 200
    max_intervals_per_gap: int = 96  # one day of 15-minute entries per read
    deadline_s: float = 6 * 3600
    max_attempts: int = 3  # reads of one range that failed or expired before giving up
    online_delay_s: float = 300.0
    # how far back a scan looks; each scan costs about meters x lookback / interval rows
    lookback_s: float = 2 * 86_400

    def __post_init__(self) -> None:
        if self.scan_period_s <= 0 or self.max_requests_per_scan < 1 or self.max_in_flight < 1:
            raise ValueError("scan period, requests per scan and reads in flight must be > 0")


@dataclass(frozen=True, slots=True)
class BackfillFigures:
    gaps_found: int  # distinct missing ranges seen
    requests: int  # READ_PROFILE commands submitted
    reads_recovered: int  # reads stored new by those commands
    gaps_given_up: int  # still missing after a successful read, or attempts used up
    in_flight: int
    # stored / expected over ``window``: before the backfill's reads (None until a scan
    # has measured it), and now
    completeness_before: float | None
    completeness_after: float | None
    window: Window | None

    def line(self) -> str:
        """One line for a run report."""
        before = "n/a" if self.completeness_before is None else f"{self.completeness_before:.4f}"
        after = "n/a" if self.completeness_after is None else f"{self.completeness_after:.4f}"
        return (
            f"backfill: completeness before {before}, after {after};"
            f" {self.gaps_found} gaps found, {self.requests} requests,"
            f" {self.reads_recovered} reads recovered, {self.gaps_given_up} given up"
        )


@dataclass(frozen=True, slots=True)
class _Baseline:
    window: Window
    meters: frozenset[str]
    before: Completeness


@dataclass(frozen=True, slots=True)
class _Request:
    gap: Gap
    command_id: str
    attempt: int

    @property
    def key(self) -> GapKey:
        return _key(self.gap)


class Backfill:
    def __init__(
        self,
        store: SqlStore,
        dispatcher: CommandSubmitter,
        presence: PresenceView,
        clock: BackfillClock,
        bus: EventBus,
        *,
        schedule: IntervalSchedule,
        settings: BackfillSettings | None = None,
        meters: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        """``meters``: the fleet (the inventory); without it, the meters seen coming online."""
        self._store = store
        self._dispatcher = dispatcher
        self._presence = presence
        self._clock = clock
        self._schedule = schedule
        self._settings = settings or BackfillSettings()
        self._meters = meters
        self._bus = bus
        self._heard: set[str] = set()  # meters seen coming online
        self._due: dict[str, float] = {}  # meter -> when to look at it (back online)
        self._pending: dict[str, _Request] = {}  # by command id
        self._ours: dict[str, Gap] = {}  # every command the backfill submitted: its gap
        self._recovered: list[tuple[Gap, int]] = []  # reads stored new, by the gap read
        self._failures: defaultdict[GapKey, int] = defaultdict(int)
        self._read_once: set[GapKey] = set()  # a read of the range succeeded
        self._given_up: set[GapKey] = set()
        self._seen: set[GapKey] = set()
        self._baseline: _Baseline | None = None
        self.requests = 0
        self.reads_recovered = 0
        self._scanning = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._scanner: asyncio.Task[None] | None = None
        bus.subscribe(self._on_event, self.EVENT_KINDS)

    async def __aenter__(self) -> Self:
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        first_scan = self._clock.now() + self._settings.scan_period_s
        self._scanner = group.create_task(self._scan_loop(first_scan), name="backfill:scanner")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # requests already submitted live on in the dispatcher (and its store)
        if self._scanner is not None:
            self._scanner.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)

    # ---------------------------------------------------------------- figures

    @property
    def gaps_found(self) -> int:
        return len(self._seen)

    @property
    def completeness_before(self) -> Completeness | None:
        """The last measurement before the first backfill request: nothing recovered in it."""
        return None if self._baseline is None else self._baseline.before

    def run_window(self) -> Window:
        """Every interval of the schedule (for a report at the end of a run)."""
        schedule = self._schedule
        return Window.settled(schedule.first_end, schedule.interval_s, schedule.sim_end)

    async def figures(self, over: Window | None = None) -> BackfillFigures:
        """The figures for a report. Without ``over``: completeness as measured before the
        first request, and now, over that measurement's window and meters. With ``over``
        (e.g. ``run_window()``): completeness now over it for the whole fleet, and before
        as now less the reads the backfill stored in it — what the pushes alone achieved."""
        if over is not None:
            meters = self._fleet()
            after = await self._store.run_sql(partial(completeness, meter_ids=meters, window=over))
            recovered = sum(n for gap, n in self._recovered if _within(gap, over))
            before: Completeness | None = Completeness(after.stored - recovered, after.expected)
            return self._figures(before, after, over)
        baseline = self._baseline
        if baseline is None:
            return self._figures(None, None, None)
        after = await self._store.run_sql(
            partial(completeness, meter_ids=baseline.meters, window=baseline.window)
        )
        return self._figures(baseline.before, after, baseline.window)

    def _figures(
        self, before: Completeness | None, after: Completeness | None, window: Window | None
    ) -> BackfillFigures:
        return BackfillFigures(
            gaps_found=self.gaps_found,
            requests=self.requests,
            reads_recovered=self.reads_recovered,
            gaps_given_up=len(self._given_up),
            in_flight=len(self._pending),
            completeness_before=None if before is None else before.ratio,
            completeness_after=None if after is None else after.ratio,
            window=window,
        )

    # ---------------------------------------------------------------- events

    EVENT_KINDS = (MeterOnline, CommandFinished, ReadsRecovered)  # what _on_event looks at

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MeterOnline):
            self._heard.add(event.meter_id)
            self._due[event.meter_id] = self._clock.now() + self._settings.online_delay_s
            self._wake.set()
        elif isinstance(event, CommandFinished):
            request = self._pending.pop(event.command_id, None)
            if request is not None:
                self._ended(request, event.outcome)
        elif isinstance(event, ReadsRecovered) and event.command_id in self._ours:
            self.reads_recovered += event.count_new
            self._recovered.append((self._ours[event.command_id], event.count_new))

    def _ended(self, request: _Request, outcome: str) -> None:
        if outcome == CommandState.CONFIRMED:
            # if the range is still missing at the next scan, the meter no longer has it
            self._read_once.add(request.key)
            return
        self._failures[request.key] += 1
        log.info("backfill_read_failed", meter_id=request.gap.meter_id, outcome=outcome,
                 start=request.gap.start, end=request.gap.end, attempt=request.attempt)  # fmt: skip

    # ---------------------------------------------------------------- scanning

    def window(self, now: float) -> Window:
        """The intervals settled by ``now``: expected, and missing unless stored."""
        schedule = self._schedule
        settled_until = min(now - self._settings.grace_s, schedule.sim_end)
        return Window.settled(
            schedule.first_end,
            schedule.interval_s,
            settled_until,
            not_before=now - self._settings.lookback_s,
        )

    async def _scan_loop(self, next_scan: float) -> None:
        period = self._settings.scan_period_s
        while True:
            now = self._clock.now()
            try:
                if now >= next_scan:
                    next_scan = now + period
                    await self.scan_once()
                elif due := [m for m, at in self._due.items() if at <= now]:
                    await self.scan_once(due)
            except Exception:
                # a failed scan (the store busy, a bug) must not stop the head-end; the
                # next one runs on time
                log.exception("backfill_scan_failed")
            wake_at = min([next_scan, *self._due.values()])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                delay = self._clock.wall_seconds(wake_at - self._clock.now())
                async with asyncio.timeout(max(0.0, delay)):
                    await self._wake.wait()

    async def scan_once(self, meter_ids: Iterable[str] | None = None) -> list[Gap]:
        """Look for gaps (of ``meter_ids``, or every meter) and request what is allowed
        now; the gaps requested."""
        async with self._scanning:
            return await self._scan(None if meter_ids is None else set(meter_ids))

    async def _scan(self, only: set[str] | None) -> list[Gap]:
        now = self._clock.now()
        meters = self._fleet() if only is None else only
        for meter_id in meters:
            self._due.pop(meter_id, None)
        window = self.window(now)
        if window.count == 0:
            return []
        if only is None and self.requests == 0:
            # nothing asked yet, so nothing recovered: this is completeness before backfill
            before = await self._store.run_sql(
                partial(completeness, meter_ids=meters, window=window)
            )
            self._baseline = _Baseline(window, frozenset(meters), before)
        online = [m for m in meters if self._presence.is_online(m)]
        stored = await self._store.run_sql(
            partial(incomplete_meters, meter_ids=online, window=window)
        )
        wanted = self._wanted(stored, window)
        room = min(
            self._settings.max_requests_per_scan, self._settings.max_in_flight - len(self._pending)
        )
        requested = [gap for gap in wanted[: max(0, room)] if await self._request(gap)]
        log.info("backfill_scan", meters=len(meters), online=len(online), incomplete=len(stored),
                 gaps=len(wanted), requested=len(requested), in_flight=len(self._pending),
                 window_first=window.first_end, window_last=window.last_end)  # fmt: skip
        return requested

    def _fleet(self) -> set[str]:
        fleet = set(self._heard)
        if self._meters is not None:
            fleet.update(self._meters())
        return fleet

    def _wanted(self, stored: dict[str, list[int]], window: Window) -> list[Gap]:
        """The gaps to ask for, one per meter in turn (oldest first), so a meter with a
        long outage does not take every slot of a scan."""
        rounds: defaultdict[int, list[Gap]] = defaultdict(list)
        in_flight: defaultdict[str, list[Gap]] = defaultdict(list)
        for request in self._pending.values():
            in_flight[request.gap.meter_id].append(request.gap)
        cap = self._settings.max_intervals_per_gap
        for meter_id in sorted(stored):
            turn = len(in_flight[meter_id])  # a meter with a read in flight waits its turn
            for gap in find_gaps(meter_id, stored[meter_id], window, max_intervals=cap):
                key = _key(gap)
                self._seen.add(key)
                failures = self._failures.get(key, 0)
                if key in self._read_once or failures >= self._settings.max_attempts:
                    if key not in self._given_up:
                        self._given_up.add(key)
                        log.warning("backfill_gap_given_up", meter_id=meter_id, start=gap.start,
                                    end=gap.end, failed_reads=failures)  # fmt: skip
                    continue
                if any(_overlap(gap, other) for other in in_flight[meter_id]):
                    continue  # asked already; the answer may still fill it
                rounds[turn].append(gap)
                turn += 1
        oldest_first = partial(sorted, key=lambda gap: (gap.start, gap.meter_id))
        return [gap for turn in sorted(rounds) for gap in oldest_first(rounds[turn])]

    async def _request(self, gap: Gap) -> bool:
        attempt = self._failures.get(_key(gap), 0) + 1
        try:
            command = await self._dispatcher.submit(
                gap.meter_id,
                CommandType.READ_PROFILE,
                idempotency_key=f"backfill:{gap.meter_id}:{gap.start:.0f}-{gap.end:.0f}:{attempt}",
                deadline_s=self._settings.deadline_s,
                parameters={"profile": PROFILE, "start": gap.read_from, "end": gap.end},
            )
        except HesSimError as exc:
            # refused before anything was stored (parameters, the store): an attempt used
            self._failures[_key(gap)] += 1
            log.warning("backfill_request_refused", meter_id=gap.meter_id, error=str(exc))
            return False
        self.requests += 1
        self._ours[command.command_id] = gap
        self._bus.emit(BackfillRequested(gap.meter_id, gap.start, gap.end, gap.intervals))
        request = _Request(gap, command.command_id, attempt)
        if command.done:
            # refused at once, or a read this key made before a restart: settled already
            self._ended(request, command.state.value)
            return False
        self._pending[command.command_id] = request
        log.info("backfill_requested", meter_id=gap.meter_id, start=gap.start, end=gap.end,
                 intervals=gap.intervals, command_id=command.command_id,
                 attempt=attempt)  # fmt: skip
        return True


def _key(gap: Gap) -> GapKey:
    return (gap.meter_id, gap.start, gap.end)


def _within(gap: Gap, window: Window) -> bool:
    return window.first_end <= gap.read_from and gap.end <= window.last_end


def _overlap(a: Gap, b: Gap) -> bool:
    return a.start < b.end and b.start < a.end
