"""The operator's desk: ``Operations`` over the real head-end (store, presence, commands).

Relay states are learnt from what the head-end sees — confirmed commands and the control
events meters push — never by asking a meter just to fill in a screen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial

from hes_sim.clock import Clock
from hes_sim.events import CommandFinished, Event, EventBus, MeterEventReceived
from hes_sim.hes.commands import store as command_rows
from hes_sim.hes.commands.lifecycle import (
    TERMINAL,
    Command,
    CommandState,
    CommandSubmitter,
    CommandType,
)
from hes_sim.hes.inventory import Inventory, MeterInfo
from hes_sim.hes.operations import (
    AccountStep,
    AccountView,
    BalanceAlert,
    Connectivity,
    Health,
    InvalidRequestError,
    LinkStats,
    MeterDetail,
    MeterFilter,
    MeterSummary,
    NotFoundError,
    RechargeView,
    RelayState,
    SilentMeter,
)
from hes_sim.hes.prepaid.account import InvalidTransition, RechargeConflict
from hes_sim.hes.prepaid.engine import PrepaidEngine
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.sql import Connection
from hes_sim.hes.store import SqlStore, read_from_row
from hes_sim.meter_sim.event_logs import EventCode
from hes_sim.stats import percentile

RELAY_EVENTS: dict[int, RelayState] = {
    EventCode.LOAD_SWITCH_DISCONNECTED: RelayState.DISCONNECTED,
    EventCode.LOAD_SWITCH_CONNECTED: RelayState.CONNECTED,
}
RELAY_COMMANDS = {"disconnect": RelayState.DISCONNECTED, "reconnect": RelayState.CONNECTED}
_OPEN = tuple(s.value for s in CommandState if s not in TERMINAL)


class OperatorDesk:
    def __init__(
        self,
        *,
        store: SqlStore,
        inventory: Inventory,
        presence: MeterPresence,
        dispatcher: CommandSubmitter,
        clock: Clock,
        bus: EventBus,
        broker_connected: Callable[[], bool],
        ingest_queue_depth: Callable[[], int],
    ) -> None:
        self._store = store
        self._inventory = inventory
        self._presence = presence
        self._dispatcher = dispatcher
        self._clock = clock
        self._broker_connected = broker_connected
        self._queue_depth = ingest_queue_depth
        self._relays: dict[str, RelayState] = {}
        self.prepaid: PrepaidEngine | None = None  # set when the head-end runs prepaid rules
        bus.subscribe(self._on_event, self.EVENT_KINDS)

    EVENT_KINDS = (MeterEventReceived, CommandFinished)  # what _on_event looks at

    def _on_event(self, event: Event) -> None:
        match event:
            case MeterEventReceived(meter_id=meter_id, code=code) if code in RELAY_EVENTS:
                self._relays[meter_id] = RELAY_EVENTS[code]
            case CommandFinished(meter_id=meter_id, type=kind, outcome="confirmed") if (
                kind in RELAY_COMMANDS
            ):
                self._relays[meter_id] = RELAY_COMMANDS[kind]
            case _:
                pass

    # ---------------------------------------------------------------- meters

    def _known(self) -> list[MeterInfo]:
        """The register, plus meters heard from that it does not list (kind unknown)."""
        listed = self._inventory.all()
        strangers = [
            MeterInfo(meter_id, "unknown")
            for meter_id in self._presence.known()
            if meter_id not in self._inventory
        ]
        return listed + strangers

    def _summary(self, info: MeterInfo) -> MeterSummary:
        presence = self._presence.get(info.meter_id)
        if presence is None or not presence.state_known:
            state = Connectivity.UNKNOWN
        else:
            state = Connectivity(presence.state.value)
        return MeterSummary(
            meter_id=info.meter_id,
            kind=info.kind,
            cell=info.cell,
            feeder=info.feeder,
            dt=info.dt,
            state=state,
            last_seen=None if presence is None else presence.last_seen,
            relay=self._relays.get(info.meter_id, RelayState.UNKNOWN),
        )

    def _info(self, meter_id: str) -> MeterInfo:
        info = self._inventory.get(meter_id)
        if info is None and self._presence.get(meter_id) is not None:
            info = MeterInfo(meter_id, "unknown")
        if info is None:
            raise NotFoundError(f"no meter {meter_id}")
        return info

    async def meters(self, where: MeterFilter) -> list[MeterSummary]:
        chosen = [
            self._summary(info)
            for info in self._known()
            if (where.cell is None or info.cell == where.cell)
            and (where.feeder is None or info.feeder == where.feeder)
            and (where.dt is None or info.dt == where.dt)
        ]
        if where.state is not None:
            chosen = [m for m in chosen if m.state is where.state]
        chosen.sort(key=lambda m: m.meter_id)
        return chosen[where.offset : where.offset + where.limit]

    async def meter(self, meter_id: str) -> MeterDetail:
        summary = self._summary(self._info(meter_id))
        figures = await self._store.run_sql(partial(_meter_figures, meter_id=meter_id))
        presence = self._presence.get(meter_id)
        now = self._clock.now()
        link = LinkStats(
            state_since=None if presence is None else presence.since,
            uptime_share=None if presence is None else presence.uptime_share(now),
            transitions=0 if presence is None else presence.transitions,
            reads_stored=figures.reads_stored,
            delivery_delay_p95_s=percentile(figures.delivery_delays, 95),
            command_round_trip_p95_s=percentile(figures.round_trips, 95),
        )
        return MeterDetail(summary, figures.last_read, link, figures.open_commands)

    async def reads(self, meter_id: str, start: float, end: float, limit: int) -> list[ReadRecord]:
        self._info(meter_id)
        query = partial(_reads_between, meter_id=meter_id, start=start, end=end, limit=limit)
        return await self._store.run_sql(query)

    async def non_communicating(self, silent_for_s: float) -> list[SilentMeter]:
        return sorted(self._silent(silent_for_s), key=lambda s: (-s.silent_for_s, s.meter_id))

    def silent_count(self, silent_for_s: float) -> int:
        return sum(1 for _ in self._silent(silent_for_s))

    def _silent(self, silent_for_s: float) -> Iterator[SilentMeter]:
        """Meters not heard from for ``silent_for_s``; never heard from counts from the
        head-end's start (or from what the store remembered of an earlier one)."""
        now = self._clock.now()
        for info in self._known():
            presence = self._presence.get(info.meter_id)
            last_seen = None if presence is None else presence.last_seen
            since = self._presence.started_at if last_seen is None else last_seen
            if now - since >= silent_for_s:
                yield SilentMeter(info.meter_id, last_seen, now - since)

    def meters_known(self) -> int:
        return len(self._known())

    # ---------------------------------------------------------------- commands

    async def submit(
        self,
        meter_id: str,
        kind: CommandType,
        *,
        idempotency_key: str | None,
        deadline_s: float,
        parameters: dict[str, object],
    ) -> Command:
        self._info(meter_id)
        if deadline_s <= 0:
            raise InvalidRequestError("deadline_s must be positive")
        return await self._dispatcher.submit(
            meter_id,
            kind,
            idempotency_key=idempotency_key,
            deadline_s=deadline_s,
            parameters=parameters,
        )

    async def command(self, command_id: str) -> Command:
        found = await self._store.run_sql(partial(command_rows.load, command_id=command_id))
        if found is None:
            raise NotFoundError(f"no command {command_id}")
        return found

    async def commands(
        self, meter_id: str | None, state: CommandState | None, limit: int
    ) -> list[Command]:
        query = partial(_find_commands, meter_id=meter_id, state=state, limit=limit)
        return await self._store.run_sql(query)

    # ---------------------------------------------------------------- accounts

    def _accounts(self) -> PrepaidEngine:
        if self.prepaid is None:
            raise NotFoundError("this head-end keeps no consumer accounts (no prepaid rules)")
        return self.prepaid

    async def account(self, meter_id: str) -> AccountView:
        account = self._accounts().account(meter_id)
        return AccountView(
            meter_id=meter_id,
            consumer_id=account.consumer_id,
            mode=account.mode.value,
            state=account.state.value,
            balance=account.balance,
            supply_on=account.supply_on,
            grace_until=account.grace_until,
            history=[AccountStep(t.state.value, t.at, t.reason) for t in account.history],
            alerts=[
                BalanceAlert(a.threshold, a.level, a.balance, a.at)
                for a in self._accounts().alerts(meter_id)
            ],
        )

    async def recharge(self, meter_id: str, amount: Decimal, reference: str) -> RechargeView:
        engine = self._accounts()
        try:
            done = await engine.recharge(meter_id, amount, reference)
        except (InvalidTransition, RechargeConflict, ValueError) as exc:
            raise InvalidRequestError(str(exc)) from exc
        return RechargeView(meter_id, done.balance, done.state.value, done.reconnect_command)

    def health(self) -> Health:
        connected = self._broker_connected()
        return Health(
            healthy=connected,
            broker_connected=connected,
            sim_time=self._clock.now(),
            meters_known=self.meters_known(),
            meters_online=self._presence.online,
            ingest_queue_depth=self._queue_depth(),
            open_commands=self._dispatcher.open_count,
        )


# ---------------------------------------------------------------- queries (store thread)


class _Figures:
    def __init__(self) -> None:
        self.reads_stored = 0
        self.delivery_delays: list[float] = []
        self.round_trips: list[float] = []
        self.last_read: ReadRecord | None = None
        self.open_commands: list[str] = []


RECENT_READS = 2880  # a month of 15-minute intervals: enough for a meter's delay figure


def _meter_figures(db: Connection, meter_id: str) -> _Figures:
    figures = _Figures()
    figures.reads_stored = int(
        db.execute(
            "SELECT count(*) FROM block_load_reads WHERE meter_id = ?", (meter_id,)
        ).fetchone()[0]
    )
    figures.delivery_delays = sorted(
        float(delay)
        for (delay,) in db.execute(
            "SELECT stored_at - interval_end FROM block_load_reads WHERE meter_id = ?"
            " ORDER BY interval_end DESC LIMIT ?",
            (meter_id, RECENT_READS),
        )
    )
    newest = _reads_between(db, meter_id, float("-inf"), float("inf"), 1, newest_first=True)
    figures.last_read = newest[0] if newest else None
    # a command's round trip: its last send to the meter's positive answer
    sent_at: dict[str, float] = {}
    for command_id, state, at in db.execute(
        "SELECT t.command_id, t.state, t.at FROM command_transitions t"
        " JOIN commands c USING (command_id) WHERE c.meter_id = ? ORDER BY t.command_id, t.seq",
        (meter_id,),
    ):
        if state == CommandState.SENT:
            sent_at[command_id] = at
        elif state == CommandState.ACKNOWLEDGED and command_id in sent_at:
            figures.round_trips.append(at - sent_at[command_id])
    figures.round_trips.sort()
    figures.open_commands = [
        str(command_id)
        for (command_id,) in db.execute(
            f"SELECT command_id FROM commands WHERE meter_id = ? AND state IN ({_marks(_OPEN)})"  # noqa: S608 - placeholders only
            " ORDER BY created_at",
            (meter_id, *_OPEN),
        )
    ]
    return figures


_READS_BETWEEN = (
    "SELECT meter_id, interval_end, layout, voltage_v, current_a, wh_import, wh_export,"
    " vah_import, vah_export, registers, received_at FROM block_load_reads"
    " WHERE meter_id = ? AND interval_end >= ? AND interval_end < ?"
    " ORDER BY interval_end LIMIT ?"
)
_NEWEST_READS = _READS_BETWEEN.replace("ORDER BY interval_end", "ORDER BY interval_end DESC")


def _reads_between(
    db: Connection,
    meter_id: str,
    start: float,
    end: float,
    limit: int,
    *,
    newest_first: bool = False,
) -> list[ReadRecord]:
    if math.isnan(start) or math.isnan(end):
        return []  # nothing lies between NaN and anything
    query = _NEWEST_READS if newest_first else _READS_BETWEEN
    rows = db.execute(query, (meter_id, _whole(start), _whole(end), limit))
    return [read_from_row(row) for row in rows]


_FAR = 2**62  # beyond any interval end, inside a bigint


def _whole(bound: float) -> int:
    """A bound on whole-second interval ends as an integer (the same rows: ``end >= 899.5``
    is ``end >= 900``), so PostgreSQL compares bigint with bigint and scans the primary
    key's range rather than every read of the meter; infinite bounds clamp far away."""
    if math.isinf(bound):
        return _FAR if bound > 0 else -_FAR
    return math.ceil(bound)


def _find_commands(
    db: Connection, meter_id: str | None, state: CommandState | None, limit: int
) -> list[Command]:
    where, arguments = [], []
    if meter_id is not None:
        where.append("meter_id = ?")
        arguments.append(meter_id)
    if state is not None:
        where.append("state = ?")
        arguments.append(state.value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    ids = db.execute(
        f"SELECT command_id FROM commands {clause} ORDER BY created_at DESC LIMIT ?",  # noqa: S608
        (*arguments, limit),
    ).fetchall()
    found = (command_rows.load(db, str(command_id)) for (command_id,) in ids)
    return [command for command in found if command is not None]


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in values)
