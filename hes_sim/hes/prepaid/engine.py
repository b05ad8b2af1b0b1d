"""Prepaid rules at work: reads charged as they are stored, fixed charges daily, low-balance
alerts, automatic disconnections inside the policy's windows, reconnections on recharge.

An async context manager owning a TaskGroup: ``prepaid:rules`` judges, at the instants
the accounts name, whether a consumer is to be disconnected; ``prepaid:fixed`` posts the
fixed charges at each local midnight; ``prepaid:journal`` writes every step of the
accounts to the store's journal. Every disconnection and reconnection is a command of the
head-end, with the rule that asked for it heading its audit trail. The headline figure,
recharge-to-light, runs from a recharge accepted to the relay confirmed closed.

A restarted head-end replays the journal, then catches up with what the journal may have
missed in a crash: reads stored but not charged, commands that ended unseen, midnights
passed. A recharge is answered only once it is in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import Self

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import HesSimError, StoreError
from hes_sim.events import (
    CommandFinished,
    Event,
    EventBus,
    LightBack,
    LowBalance,
    PrepaidDisconnected,
    ReadStored,
)
from hes_sim.hes.billing import BillingMonth, Tariff, daily_fixed_charge
from hes_sim.hes.commands import store as command_rows
from hes_sim.hes.commands.lifecycle import CommandState, CommandSubmitter, CommandType
from hes_sim.hes.operations import NotFoundError
from hes_sim.hes.prepaid import journal
from hes_sim.hes.prepaid.account import Account, AccountState
from hes_sim.hes.prepaid.alerts import Alert
from hes_sim.hes.prepaid.book import AccountBook
from hes_sim.hes.prepaid.policy import DisconnectionPolicy
from hes_sim.hes.store import SqlStore

log = structlog.get_logger(__name__)

RECONNECT_DEADLINE_S = 6 * 3600.0  # a recharged consumer's reconnect keeps trying this long
DISCONNECT_DEADLINE_S = 3600.0  # past it, the next allowed window is judged afresh
IDLE_WAKE_S = 3600.0  # simulated: the rules look again at least this often
JOURNAL_EVERY_WALL_S = 0.2  # steps of a busy moment go to the journal together


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
        store: SqlStore,
        *,
        tariff: Tariff,
        policy: DisconnectionPolicy,
        tz: timezone,
        sanctioned_kw: Callable[[str], Decimal],
        interval_s: int = 900,
        journal_every_wall_s: float = JOURNAL_EVERY_WALL_S,
    ) -> None:
        self._dispatcher = dispatcher
        self._clock = clock
        self._bus = bus
        self._store = store
        self._tariff = tariff
        self._tz = tz
        self._sanctioned_kw = sanctioned_kw
        self._journal_every = journal_every_wall_s
        self.book = AccountBook(tariff, policy, tz, interval_s)
        self._judge_at: dict[str, float] = {}  # meter -> when its account is judged next
        self.figures = PrepaidFigures()
        self._wake = asyncio.Event()
        self._unsaved = asyncio.Event()
        self._saving = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    @property
    def accounts(self) -> dict[str, Account]:
        return self.book.accounts

    async def __aenter__(self) -> Self:
        """Replays the journal and catches up before any rule runs."""
        entries = await self._store.run_sql(journal.load)
        self.book.replay(entries)
        self._bus.subscribe(self._on_event, self.EVENT_KINDS)
        await self._catch_up()
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._tasks = [
            group.create_task(self._rules(), name="prepaid:rules"),
            group.create_task(self._fixed_charges(), name="prepaid:fixed"),
            group.create_task(self._journal(), name="prepaid:journal"),
        ]
        if entries:
            log.info("prepaid_journal_replayed", entries=len(entries),
                     prepaid=len(self.book.prepaid_meters()))  # fmt: skip
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bus.unsubscribe(self._on_event)
        for task in self._tasks:
            task.cancel()
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            await self.save()  # what the tasks left: the store is still open

    # ---------------------------------------------------------------- accounts

    def open(self, meter_ids: list[str]) -> None:
        """Postpaid accounts for these consumers' meters (one consumer a meter); call it
        before entering, so the journal replays onto them."""
        self.book.open(meter_ids, self._clock.now())

    def switch_to_prepaid(
        self, meter_ids: list[str], opening_balance: Decimal, grace_s: float
    ) -> int:
        now = self._clock.now()
        switched = 0
        for meter_id in meter_ids:
            if self.book.switch(meter_id, now, opening_balance, now + grace_s):
                self._judge_at[meter_id] = now
                switched += 1
        self._stepped()
        return switched

    def account(self, meter_id: str) -> Account:
        account = self.book.accounts.get(meter_id)
        if account is None:
            raise NotFoundError(f"no account for meter {meter_id}")
        return account

    def alerts(self, meter_id: str) -> list[Alert]:
        """The account's low-balance alerts, oldest first (the newest few dozen)."""
        self.account(meter_id)
        return self.book.alerts(meter_id)

    async def recharge(self, meter_id: str, amount: Decimal, reference: str) -> RechargeResult:
        """Credit the account (once per reference); a consumer whose supply is off gets a
        reconnect at once, ahead of every other command. Answers once journalled."""
        account = self.account(meter_id)
        now = self._clock.now()
        first = self.book.recharge(meter_id, now, amount, reference)
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
            self.book.reconnect_sent(meter_id, now, command_id)
        self._judge_at[meter_id] = now
        self._stepped()
        await self.save()
        return RechargeResult(meter_id, account.balance, account.state, command_id)

    # ---------------------------------------------------------------- events

    EVENT_KINDS = (ReadStored, CommandFinished)  # what _on_event looks at

    def _on_event(self, event: Event) -> None:
        match event:
            case ReadStored(meter_id=meter_id, interval_end=end, wh_import=wh):
                self._charge_read(meter_id, int(end), wh)
            case CommandFinished(command_id=command_id, outcome="confirmed"):
                self._command_confirmed(command_id)
            case CommandFinished(command_id=command_id):
                self._command_failed(command_id, event.outcome)
            case _:
                pass

    def _charge_read(self, meter_id: str, interval_end: int, wh: int) -> None:
        if self.book.charge_read(meter_id, self._clock.now(), interval_end, wh):
            self._judge_at[meter_id] = self._clock.now()
            self._stepped()

    def _command_confirmed(self, command_id: str) -> None:
        done = self.book.confirmed(command_id, self._clock.now())
        if done is None:
            return
        self._stepped()
        if done.disconnected:
            self.figures.disconnections += 1
            self._bus.emit(PrepaidDisconnected(done.meter_id))
        elif done.recharge_to_light_s is not None:
            seconds = done.recharge_to_light_s
            self.figures.recharge_to_light.append(seconds)
            self._bus.emit(LightBack(done.meter_id, seconds))
            log.info("prepaid_light_back", meter_id=done.meter_id, seconds=round(seconds, 1))

    def _command_failed(self, command_id: str, outcome: str) -> None:
        meter_id = self.book.failed(command_id, self._clock.now())
        if meter_id is None:
            return
        self._judge_at[meter_id] = self._clock.now()  # still due: judged afresh
        self._stepped()
        log.warning("prepaid_command_failed", meter_id=meter_id, command_id=command_id,
                    outcome=outcome)  # fmt: skip

    def _stepped(self) -> None:
        """After live steps: raise their alerts, wake the rules and the journal."""
        for meter_id, alert in self.book.raised:
            self.figures.alerts[str(alert.threshold)] += 1
            self._bus.emit(LowBalance(meter_id, str(alert.threshold)))
        self.book.raised.clear()
        self._wake.set()
        if self.book.unsaved:
            self._unsaved.set()

    # ---------------------------------------------------------------- recovery

    async def _catch_up(self) -> None:
        """What a crash may have kept from the journal: commands of the book's that ended
        while nobody listened, and stored reads not yet charged (midnights are the fixed
        charges' task)."""
        for command_id in [*self.book.disconnecting, *self.book.reconnecting]:
            command = await self._store.run_sql(partial(command_rows.load, command_id=command_id))
            if command is None or not command.done:
                continue
            if command.state is CommandState.CONFIRMED:
                self._command_confirmed(command_id)
            else:
                self._command_failed(command_id, command.state.value)
        charged = 0
        for meter_id in self.book.prepaid_meters():
            after = self.book.switched_at(meter_id) or 0.0
            reads = await self._store.run_sql(
                partial(journal.reads_since, meter_id=meter_id, after=after)
            )
            for end, wh in reads:
                charged += self.book.charge_read(meter_id, self._clock.now(), end, wh)
            self._judge_at[meter_id] = self._clock.now()
        if charged:
            log.info("prepaid_reads_caught_up", reads=charged)
        self._stepped()

    # ---------------------------------------------------------------- tasks

    async def save(self) -> None:
        """Write the unsaved steps to the journal (kept for the next try on a store error)."""
        async with self._saving:
            entries = list(self.book.unsaved)
            if not entries:
                return
            try:
                await self._store.run_sql(partial(journal.append, entries=entries))
            except StoreError as exc:
                log.exception("prepaid_journal_not_written", entries=len(entries), error=str(exc))
                raise
            del self.book.unsaved[: len(entries)]

    async def _journal(self) -> None:
        while True:
            await self._unsaved.wait()
            self._unsaved.clear()
            try:
                await self.save()
            except StoreError:
                self._unsaved.set()  # logged; try again after the pause
            await asyncio.sleep(self._journal_every)  # batch the steps of a busy moment

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
        if meter_id in self.book.disconnecting.values():
            return  # a disconnect is on its way
        account = self.book.accounts[meter_id]
        decision = self.book.judge(meter_id, now)
        if decision.until is not None:
            self._judge_at[meter_id] = decision.until
        self._stepped()
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
        if not command.done:
            self.book.disconnect_sent(meter_id, now, command.command_id)
            self._stepped()

    async def _fixed_charges(self) -> None:
        """Each day's fixed charge on every prepaid account, posted at the local midnight
        that ends the day; days a stopped head-end missed are posted when it starts."""
        today = datetime.fromtimestamp(self._clock.now(), tz=self._tz).date()
        while True:
            for meter_id in self.book.prepaid_meters():
                self._post_fixed(meter_id, today)
            self._stepped()
            today += timedelta(days=1)
            # the date is the midnight slept to, not the clock read after it: a wake a
            # hair early must not post the day again or spin
            midnight = datetime.combine(today, datetime.min.time(), tzinfo=self._tz)
            await self._clock.sleep_until(midnight.timestamp())

    def _post_fixed(self, meter_id: str, today: date) -> None:
        """Every whole day from the switch (the switch's own day included) to yesterday
        not yet charged, each stamped at the midnight that ended it."""
        last = self.book.fixed_through(meter_id)
        switched = self.book.switched_at(meter_id)
        if last is None and switched is None:
            return
        day = last + timedelta(days=1) if last is not None else _local_day(switched, self._tz)
        while day < today:
            month_days = BillingMonth(day.year, day.month).days
            amount = daily_fixed_charge(
                self._tariff, self._sanctioned_kw(meter_id), day.day, month_days
            )
            ended = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=self._tz)
            self.book.fixed(meter_id, ended.timestamp(), day, amount)
            self._judge_at[meter_id] = self._clock.now()
            day += timedelta(days=1)


def _local_day(at: float | None, tz: timezone) -> date:
    return datetime.fromtimestamp(at or 0.0, tz=tz).date()
