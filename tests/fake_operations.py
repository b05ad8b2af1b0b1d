"""An in-memory ``Operations`` for the operator API and CLI tests: three meters, a few
reads, commands that move one lifecycle step each time they are looked at (when asked
to), and a record of every call so tests can see what reached the head-end."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hes_sim.hes.commands.lifecycle import (
    Command,
    CommandState,
    CommandType,
    FailureReason,
    RetryPolicy,
)
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
from hes_sim.hes.records import ReadRecord

TZ = timezone(timedelta(hours=5, minutes=30))
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=TZ).timestamp()
TOKEN = "operator-token-for-tests-0123456789"  # noqa: S105 - a test token
HISTORY_ID = "cmd-history"
S = CommandState


def _read(meter_id: str, interval_end: float, wh: int) -> ReadRecord:
    return ReadRecord(
        meter_id=meter_id,
        interval_end=int(interval_end),
        layout="single_phase",
        voltage_v=231.5,
        current_a=1.25,
        wh_import=wh,
        wh_export=0,
        vah_import=wh + 10,
        vah_export=0,
        registers={"wh_import": wh},
        received_at=interval_end + 95.5,
    )


@dataclass
class FakeOperations:
    now: float = T0
    healthy: bool = True
    advance: bool = False  # every command() call moves a live command one step
    refusing: set[str] = field(default_factory=lambda: {"SP0000003"})  # answer "no"
    failure: Exception | None = None  # raised by meters(), for the 500 path
    hold: asyncio.Event | None = None  # meters() waits for it, for the shutdown path
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[tuple[str, object]] = field(default_factory=list)
    summaries: list[MeterSummary] = field(default_factory=list)
    stored: dict[str, Command] = field(default_factory=dict)
    read_list: list[ReadRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.summaries = [
            MeterSummary(
                "SP0000001", "single_phase", "C01", "F01", "DT01", Connectivity.ONLINE,
                T0 - 60, RelayState.CONNECTED,
            ),
            MeterSummary(
                "SP0000002", "single_phase", "C01", "F01", "DT02", Connectivity.OFFLINE,
                T0 - 2 * 86400, RelayState.DISCONNECTED,
            ),
            MeterSummary(
                "SP0000003", "three_phase", None, None, None, Connectivity.UNKNOWN, None,
                RelayState.UNKNOWN,
            ),
        ]  # fmt: skip
        self.read_list = [_read("SP0000001", T0 - 900 * n, 100 + n) for n in (3, 2, 1)]
        history = Command(
            HISTORY_ID, "SP0000001", CommandType.RECONNECT, "key-h", T0 - 600, T0 + 3000
        )
        history.queue(T0 - 590, "meter online")
        history.send(T0 - 580)
        history.fail(T0 - 460, FailureReason.TIMEOUT, RetryPolicy(), random.Random(1), "no answer")
        history.send(history.next_attempt_at)
        history.acknowledge(history.next_attempt_at + 5, "action-result success")
        history.confirm(history.next_attempt_at + 9, "relay read back: connected")
        self.stored[HISTORY_ID] = history

    def _meter(self, meter_id: str) -> MeterSummary:
        for summary in self.summaries:
            if summary.meter_id == meter_id:
                return summary
        raise NotFoundError(f"no meter {meter_id!r}")

    async def meters(self, where: MeterFilter) -> list[MeterSummary]:
        self.calls.append(("meters", where))
        if self.failure is not None:
            raise self.failure
        if self.hold is not None:
            self.entered.set()
            await self.hold.wait()
        chosen = [m for m in self.summaries if where.state in (None, m.state)]
        return chosen[where.offset : where.offset + where.limit]

    async def meter(self, meter_id: str) -> MeterDetail:
        self.calls.append(("meter", meter_id))
        summary = self._meter(meter_id)
        mine = [r for r in self.read_list if r.meter_id == meter_id]
        return MeterDetail(
            summary=summary,
            last_read=mine[-1] if mine else None,
            link=LinkStats(T0 - 3600, 0.975, 4, len(mine), 101.25, 12.5),
            open_commands=[c.command_id for c in self.stored.values()
                           if c.meter_id == meter_id and not c.done],
        )  # fmt: skip

    async def submit(
        self,
        meter_id: str,
        kind: CommandType,
        *,
        idempotency_key: str | None,
        deadline_s: float,
        parameters: dict[str, object],
    ) -> Command:
        self.calls.append(
            ("submit", (meter_id, kind, idempotency_key, deadline_s, dict(parameters)))
        )
        self._meter(meter_id)
        if "bogus" in parameters:
            raise InvalidRequestError(f"{kind} takes no parameter 'bogus'")
        for command in self.stored.values():
            if idempotency_key is not None and command.idempotency_key == idempotency_key:
                return command
        command_id = f"cmd-{len(self.stored):04d}"
        command = Command(
            command_id,
            meter_id,
            kind,
            idempotency_key or command_id,
            self.now,
            self.now + deadline_s,
            parameters=dict(parameters),
        )
        self.stored[command_id] = command
        return command

    async def command(self, command_id: str) -> Command:
        self.calls.append(("command", command_id))
        try:
            command = self.stored[command_id]
        except KeyError:
            raise NotFoundError(f"no command {command_id!r}") from None
        if self.advance and not command.done:
            self._step(command)
        return command

    def _step(self, command: Command) -> None:
        self.now += 30
        if command.state is S.CREATED:
            command.queue(self.now, "meter online")
        elif command.state is S.QUEUED:
            command.send(self.now)
        elif command.state is S.SENT and command.meter_id in self.refusing:
            policy, rng = RetryPolicy(), random.Random(0)
            command.fail(self.now, FailureReason.NEGATIVE_RESPONSE, policy, rng, "refused")
        elif command.state is S.SENT:
            command.acknowledge(self.now, "action-result success")
        else:
            command.confirm(self.now, "relay read back")

    async def commands(
        self, meter_id: str | None, state: CommandState | None, limit: int
    ) -> list[Command]:
        self.calls.append(("commands", (meter_id, state, limit)))
        chosen = [
            c
            for c in self.stored.values()
            if meter_id in (None, c.meter_id) and state in (None, c.state)
        ]
        return chosen[:limit]

    async def reads(self, meter_id: str, start: float, end: float, limit: int) -> list[ReadRecord]:
        self.calls.append(("reads", (meter_id, start, end, limit)))
        self._meter(meter_id)
        chosen = [
            r for r in self.read_list if r.meter_id == meter_id and start <= r.interval_end < end
        ]
        return chosen[:limit]

    async def non_communicating(self, silent_for_s: float) -> list[SilentMeter]:
        self.calls.append(("non_communicating", silent_for_s))
        silent = []
        for m in self.summaries:
            if m.last_seen is None:
                silent.append(SilentMeter(m.meter_id, None, self.now - (T0 - 86400 * 3)))
            elif self.now - m.last_seen >= silent_for_s:
                silent.append(SilentMeter(m.meter_id, m.last_seen, self.now - m.last_seen))
        return silent

    def health(self) -> Health:
        return Health(
            healthy=self.healthy,
            broker_connected=self.healthy,
            sim_time=self.now,
            meters_known=len(self.summaries),
            meters_online=1,
            ingest_queue_depth=0,
            open_commands=sum(1 for c in self.stored.values() if not c.done),
        )

    async def account(self, meter_id: str) -> AccountView:
        self.calls.append(("account", meter_id))
        if meter_id != "SP0000002":
            raise NotFoundError(f"no account for meter {meter_id}")
        return AccountView(
            meter_id, "C-SP0000002", "prepaid", "disconnected", Decimal("-3.50"), False, None,
            [AccountStep("postpaid", T0 - 7200, "opened"),
             AccountStep("disconnected", T0 - 600, "disconnect confirmed")],
            [BalanceAlert(Decimal("0.30"), Decimal("60.00"), Decimal("58.10"), T0 - 3600)],
        )  # fmt: skip

    async def recharge(self, meter_id: str, amount: Decimal, reference: str) -> RechargeView:
        self.calls.append(("recharge", (meter_id, amount, reference)))
        if amount > Decimal(100_000):
            raise InvalidRequestError("amount: over the limit of this counter")
        await self.account(meter_id)
        return RechargeView(meter_id, amount - Decimal("3.50"), "reconnect_pending", "cmd-on-1")
