"""Prepaid rules at work: reads charged as they are stored, fixed charges daily, low-balance
alerts, automatic disconnections inside the policy's windows, reconnections on recharge.

An async context manager owning a TaskGroup: ``prepaid:rules`` judges, at the instants
the accounts name, whether a consumer is to be disconnected; ``prepaid:fixed`` posts the
fixed charges at each local midnight. Every disconnection and reconnection is a command
of the head-end, with the rule that asked for it heading its audit trail. The headline
figure, recharge-to-light, runs from a recharge accepted to the relay confirmed closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import TracebackType
from typing import Self

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import HesSimError
from hes_sim.events import (
    CommandFinished,
    Event,
    EventBus,
    LightBack,
    LowBalance,
    PrepaidDisconnected,
    ReadStored,
)
from hes_sim.hes.billing import BillingMonth, MonthToDate, Tariff, daily_fixed_charge
from hes_sim.hes.commands.lifecycle import CommandSubmitter, CommandType
from hes_sim.hes.operations import NotFoundError
from hes_sim.hes.prepaid.account import Account, AccountState, Mode
from hes_sim.hes.prepaid.alerts import Alert
from hes_sim.hes.prepaid.policy import DisconnectionPolicy

log = structlog.get_logger(__name__)

RECONNECT_DEADLINE_S = 6 * 3600.0  # a recharged consumer's reconnect keeps trying this long
DISCONNECT_DEADLINE_S = 3600.0  # past it, the next allowed window is judged afresh
IDLE_WAKE_S = 3600.0  # simulated: the rules look again at least this often


@dataclass(frozen=True, slots=True)
class RechargeResult:
    meter_id: str
    balance: Decimal
    state: AccountState
    reconnect_command: str | None  # the reconnect it asked for, if supply was off


@dataclass(slots=True)
class PrepaidFigures:
    recharges: int = 0
    recharge_to_light: list[float] = field(default_factory=list)  # simulated seconds
    disconnections: int = 0  # confirmed automatic disconnections
    alerts: Counter[str] = field(default_factory=Counter)  # by threshold


class PrepaidEngine:
    def __init__(
        self,
        dispatcher: CommandSubmitter,
        clock: SimClock,
        bus: EventBus,
        *,
        tariff: Tariff,
        policy: DisconnectionPolicy,
        tz: timezone,
        sanctioned_kw: Callable[[str], Decimal],
        interval_s: int = 900,
    ) -> None:
        self._dispatcher = dispatcher
        self._clock = clock
        self._bus = bus
        self._tariff = tariff
        self._policy = policy
        self._tz = tz
        self._sanctioned_kw = sanctioned_kw
        self._interval_s = interval_s
        self.accounts: dict[str, Account] = {}  # by meter id
        self._months: dict[str, MonthToDate] = {}
        self._switched_at: dict[str, float] = {}
        self._judge_at: dict[str, float] = {}  # meter -> when its account is judged next
        self._disconnecting: dict[str, str] = {}  # command id -> meter
        self._reconnecting: dict[str, tuple[str, float]] = {}  # command id -> meter, recharged at
        self.figures = PrepaidFigures()
        self._wake = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        bus.subscribe(self._on_event)

    async def __aenter__(self) -> Self:
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._tasks = [
            group.create_task(self._rules(), name="prepaid:rules"),
            group.create_task(self._fixed_charges(), name="prepaid:fixed"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)

    # ---------------------------------------------------------------- accounts

    def open(self, meter_ids: list[str]) -> None:
        """Postpaid accounts for these consumers' meters (one consumer a meter)."""
        now = self._clock.now()
        for meter_id in meter_ids:
            self.accounts.setdefault(meter_id, Account(f"C-{meter_id}", meter_id, now))

    def switch_to_prepaid(
        self, meter_ids: list[str], opening_balance: Decimal, grace_s: float
    ) -> int:
        now = self._clock.now()
        switched = 0
        for meter_id in meter_ids:
            account = self.accounts.get(meter_id)
            if account is None or account.mode is Mode.PREPAID:
                continue
            alerts = account.switch_to_prepaid(now, opening_balance, now + grace_s)
            self._alerted(alerts, meter_id)
            self._switched_at[meter_id] = now
            self._judge_at[meter_id] = now
            switched += 1
        self._wake.set()
        return switched

    def account(self, meter_id: str) -> Account:
        account = self.accounts.get(meter_id)
        if account is None:
            raise NotFoundError(f"no account for meter {meter_id}")
        return account

    async def recharge(self, meter_id: str, amount: Decimal, reference: str) -> RechargeResult:
        """Credit the account (once per reference); a consumer whose supply is off gets a
        reconnect at once, ahead of every other command."""
        account = self.account(meter_id)
        now = self._clock.now()
        first = not account.recharged(reference)
        self._alerted(account.recharge(now, amount, reference), meter_id)
        command_id = None
        if first:
            self.figures.recharges += 1
        if first and account.state is AccountState.RECONNECT_PENDING:
            command = await self._dispatcher.submit(
                meter_id,
                CommandType.RECONNECT,
                idempotency_key=f"prepaid-on:{meter_id}:{reference}",
                deadline_s=RECONNECT_DEADLINE_S,
                reason=f"prepaid: recharge {reference} of ₹{amount}",
            )
            command_id = command.command_id
            self._reconnecting[command_id] = (meter_id, now)
        self._judge_at[meter_id] = now
        self._wake.set()
        return RechargeResult(meter_id, account.balance, account.state, command_id)

    # ---------------------------------------------------------------- events

    def _on_event(self, event: Event) -> None:
        match event:
            case ReadStored(meter_id=meter_id, interval_end=end, wh_import=wh):
                self._charge_read(meter_id, end, wh)
            case CommandFinished(command_id=command_id, outcome="confirmed"):
                self._command_confirmed(command_id, event.duration)
            case CommandFinished(command_id=command_id):
                self._disconnecting.pop(command_id, None)
                if command_id in self._reconnecting:
                    meter_id, _at = self._reconnecting.pop(command_id)
                    log.warning("prepaid_reconnect_failed", meter_id=meter_id,
                                command_id=command_id, outcome=event.outcome)  # fmt: skip
            case _:
                pass

    def _charge_read(self, meter_id: str, interval_end: float, wh: int) -> None:
        account = self.accounts.get(meter_id)
        switched = self._switched_at.get(meter_id)
        if account is None or switched is None or interval_end <= switched:
            return  # postpaid, or consumed before the switch: billed the postpaid way
        month = BillingMonth.of_interval(interval_end, self._interval_s, self._tz)
        to_date = self._months.get(meter_id)
        if to_date is None or to_date.month != month:
            to_date = MonthToDate(month)
        try:
            charge = to_date.charge_interval(
                self._tariff, interval_end, wh, self._tz, self._interval_s
            )
        except (HesSimError, ValueError) as exc:  # an interval of an earlier month: skip it
            log.warning("prepaid_read_not_charged", meter_id=meter_id, error=str(exc))
            return
        self._months[meter_id] = charge.state
        if charge.amount:
            alerts = account.charge(self._clock.now(), charge.amount, "energy")
            self._alerted(alerts, meter_id)
            self._judge_at[meter_id] = self._clock.now()
            self._wake.set()

    def _command_confirmed(self, command_id: str, duration: float) -> None:
        now = self._clock.now()
        meter_id = self._disconnecting.pop(command_id, None)
        if meter_id is not None:
            self.accounts[meter_id].disconnected(now)
            self.figures.disconnections += 1
            self._bus.emit(PrepaidDisconnected(meter_id))
            return
        pending = self._reconnecting.pop(command_id, None)
        if pending is not None:
            meter_id, recharged_at = pending
            self.accounts[meter_id].reconnected(now)
            self.figures.recharge_to_light.append(now - recharged_at)
            self._bus.emit(LightBack(meter_id, now - recharged_at))
            log.info("prepaid_light_back", meter_id=meter_id, seconds=round(now - recharged_at, 1))

    def _alerted(self, alerts: list[Alert], meter_id: str) -> None:
        for alert in alerts:
            self.figures.alerts[str(alert.threshold)] += 1
            self._bus.emit(LowBalance(meter_id, str(alert.threshold)))

    # ---------------------------------------------------------------- tasks

    async def _rules(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            for meter_id, when in list(self._judge_at.items()):
                if when <= now:
                    del self._judge_at[meter_id]
                    await self._judge(meter_id, now)
            upcoming = min(self._judge_at.values(), default=now + IDLE_WAKE_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._clock.wall_seconds(max(0.0, upcoming - now))):
                    await self._wake.wait()

    async def _judge(self, meter_id: str, now: float) -> None:
        account = self.accounts[meter_id]
        if meter_id in self._disconnecting.values():
            return  # a disconnect is on its way
        decision = account.disconnection_due(now, self._policy, self._tz)
        if decision.until is not None:
            self._judge_at[meter_id] = decision.until
        if not decision.disconnect_now:
            return
        key = f"prepaid-off:{meter_id}:{len(account.history)}"
        try:
            command = await self._dispatcher.submit(
                meter_id,
                CommandType.DISCONNECT,
                idempotency_key=key,
                deadline_s=DISCONNECT_DEADLINE_S,
                reason=f"prepaid: {decision.reason.value}, balance ₹{account.balance}",
            )
        except HesSimError as exc:
            log.warning("prepaid_disconnect_not_submitted", meter_id=meter_id, error=str(exc))
            return
        self._disconnecting[command.command_id] = meter_id

    async def _fixed_charges(self) -> None:
        """At each local midnight, a day's fixed charge on every prepaid account."""
        while True:
            local = datetime.fromtimestamp(self._clock.now(), tz=self._tz)
            midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(),
                                        tzinfo=self._tz)  # fmt: skip
            await self._clock.sleep_until(midnight.timestamp())
            day = (midnight - timedelta(days=1)).date()
            days_in_month = BillingMonth(day.year, day.month).days
            for meter_id, account in self.accounts.items():
                if account.mode is not Mode.PREPAID:
                    continue
                amount = daily_fixed_charge(
                    self._tariff, self._sanctioned_kw(meter_id), day.day, days_in_month
                )
                alerts = account.charge(midnight.timestamp(), amount, f"fixed charge {day}")
                self._alerted(alerts, meter_id)
                self._judge_at[meter_id] = self._clock.now()
            self._wake.set()
