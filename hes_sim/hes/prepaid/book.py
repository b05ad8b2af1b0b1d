"""The book of prepaid accounts, event-sourced. Pure: no I/O, no clock of its own.

Every step that moves an account is an :class:`Entry` (a switch, a charged read, a day's
fixed charge, a recharge, a judgement that changed the state, a command sent, confirmed
or failed). :meth:`AccountBook.apply` is the only code that moves accounts: live steps
build their entry, apply it and keep it in ``unsaved`` for the journal; a restarted
head-end replays the journal through the same method, with alerts kept but not raised
again. The accounts are deterministic, so a replay ends where the live book stood.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, tzinfo
from decimal import Decimal
from typing import Any

import structlog

from hes_sim.errors import HesSimError
from hes_sim.hes.billing import BillingMonth, MonthToDate, Tariff
from hes_sim.hes.prepaid.account import Account, Mode
from hes_sim.hes.prepaid.alerts import Alert
from hes_sim.hes.prepaid.decision import Decision
from hes_sim.hes.prepaid.policy import DisconnectionPolicy

log = structlog.get_logger(__name__)

ALERTS_KEPT = 50  # per account, newest last: what the operator API lists


@dataclass(frozen=True, slots=True)
class Entry:
    meter_id: str
    n: int  # the account's own sequence
    at: float  # simulated Unix seconds
    kind: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A command of the book's confirmed: which meter, and what it did."""

    meter_id: str
    disconnected: bool  # False: a recharged consumer's light is back
    recharge_to_light_s: float | None = None


@dataclass(slots=True)
class _Books:
    """What the book keeps beside each account."""

    month: MonthToDate | None = None
    charged: set[int] = field(default_factory=set)  # interval ends charged, this month
    switched_at: float | None = None
    fixed_through: date | None = None  # the last day whose fixed charge is posted
    alerts: list[Alert] = field(default_factory=list)
    next_n: int = 0


class AccountBook:
    def __init__(
        self, tariff: Tariff, policy: DisconnectionPolicy, tz: tzinfo, interval_s: int = 900
    ) -> None:
        self.tariff = tariff
        self.policy = policy
        self.tz = tz
        self.interval_s = interval_s
        self.accounts: dict[str, Account] = {}  # by meter id
        self._books: dict[str, _Books] = {}
        self.disconnecting: dict[str, str] = {}  # command id -> meter
        self.reconnecting: dict[str, tuple[str, float]] = {}  # command id -> meter, recharged at
        self.unsaved: list[Entry] = []  # applied live, not yet in the journal
        self.raised: list[tuple[str, Alert]] = []  # alerts of live steps, for the engine to emit

    # ---------------------------------------------------------------- reading

    def open(self, meter_ids: list[str], at: float) -> None:
        """Postpaid accounts for these consumers' meters (one consumer a meter)."""
        for meter_id in meter_ids:
            if meter_id not in self.accounts:
                self.accounts[meter_id] = Account(f"C-{meter_id}", meter_id, at)
                self._books[meter_id] = _Books()

    def switched_at(self, meter_id: str) -> float | None:
        books = self._books.get(meter_id)
        return None if books is None else books.switched_at

    def alerts(self, meter_id: str) -> list[Alert]:
        return list(self._books[meter_id].alerts)

    def fixed_through(self, meter_id: str) -> date | None:
        return self._books[meter_id].fixed_through

    def is_charged(self, meter_id: str, interval_end: int) -> bool:
        books = self._books.get(meter_id)
        return books is not None and interval_end in books.charged

    def prepaid_meters(self) -> list[str]:
        return [m for m, account in self.accounts.items() if account.mode is Mode.PREPAID]

    # ---------------------------------------------------------------- live steps

    def switch(self, meter_id: str, at: float, opening: Decimal, grace_until: float) -> bool:
        account = self.accounts.get(meter_id)
        if account is None or account.mode is Mode.PREPAID:
            return False
        self._live(meter_id, at, "switch", {"opening": str(opening), "grace_until": grace_until})
        return True

    def charge_read(self, meter_id: str, at: float, interval_end: int, wh: int) -> bool:
        """Charge a stored read, once; False where it is not charged (postpaid, before
        the switch, charged already, or of an earlier month)."""
        books = self._books.get(meter_id)
        if books is None or books.switched_at is None or interval_end <= books.switched_at:
            return False  # postpaid, or consumed before the switch: billed the postpaid way
        if interval_end in books.charged:
            return False
        month = BillingMonth.of_interval(interval_end, self.interval_s, self.tz)
        if books.month is not None and month < books.month.month:
            # a late backfill of a closed month: that month was billed as it stood
            log.warning("prepaid_read_not_charged", meter_id=meter_id,
                        interval_end=interval_end, reason="of an earlier month")  # fmt: skip
            return False
        return bool(self._live(meter_id, at, "read", {"interval_end": interval_end, "wh": wh}))

    def fixed(self, meter_id: str, at: float, day: date, amount: Decimal) -> None:
        self._live(meter_id, at, "fixed", {"day": day.isoformat(), "amount": str(amount)})

    def recharge(self, meter_id: str, at: float, amount: Decimal, reference: str) -> bool:
        """Credit once per reference; True where this reference is new."""
        if self.accounts[meter_id].recharged(reference):
            self.accounts[meter_id].recharge(at, amount, reference)  # raises on a conflict
            return False
        self._live(meter_id, at, "recharge", {"amount": str(amount), "reference": reference})
        return True

    def judge(self, meter_id: str, at: float) -> Decision:
        """Whether to disconnect; journalled only where judging moved the account."""
        account = self.accounts[meter_id]
        before = len(account.history)
        decision = account.disconnection_due(at, self.policy, self.tz)
        if len(account.history) != before:
            self._keep(meter_id, at, "judge", {})
        return decision

    def disconnect_sent(self, meter_id: str, at: float, command_id: str) -> None:
        self._live(meter_id, at, "disconnect_sent", {"command_id": command_id})

    def reconnect_sent(self, meter_id: str, at: float, command_id: str) -> None:
        self._live(meter_id, at, "reconnect_sent", {"command_id": command_id, "recharged_at": at})

    def confirmed(self, command_id: str, at: float) -> Confirmation | None:
        """A command confirmed; None where it is not one of the book's."""
        meter_id = self.command_meter(command_id)
        if meter_id is None:
            return None
        result = self._live(meter_id, at, "confirmed", {"command_id": command_id})
        return result if isinstance(result, Confirmation) else None

    def failed(self, command_id: str, at: float) -> str | None:
        """A command of the book's ended without confirmation: its meter."""
        meter_id = self.command_meter(command_id)
        if meter_id is not None:
            self._live(meter_id, at, "failed", {"command_id": command_id})
        return meter_id

    def command_meter(self, command_id: str) -> str | None:
        if command_id in self.disconnecting:
            return self.disconnecting[command_id]
        pending = self.reconnecting.get(command_id)
        return None if pending is None else pending[0]

    # ---------------------------------------------------------------- replay

    def replay(self, entries: list[Entry]) -> None:
        """Entries from the journal, each account's in its order (after ``open``)."""
        for entry in entries:
            if entry.meter_id not in self.accounts:
                log.warning("prepaid_journal_unknown_meter", meter_id=entry.meter_id)
                continue
            self.apply(entry)
            self._books[entry.meter_id].next_n = entry.n + 1
        self.raised.clear()  # raised when they happened, not again

    # ---------------------------------------------------------------- the one mover

    def apply(self, entry: Entry) -> object:
        """Move the account as the entry says; returns what the step yields."""
        account = self.accounts[entry.meter_id]
        books = self._books[entry.meter_id]
        at, body = entry.at, entry.body
        alerts: list[Alert] = []
        result: object = None
        match entry.kind:
            case "switch":
                opening, grace_until = Decimal(body["opening"]), body["grace_until"]
                alerts = account.switch_to_prepaid(at, opening, grace_until)
                books.switched_at = at
            case "read":
                alerts, result = self._charge(account, books, at, body["interval_end"], body["wh"])
            case "fixed":
                alerts = account.charge(at, Decimal(body["amount"]), f"fixed charge {body['day']}")
                books.fixed_through = date.fromisoformat(body["day"])
            case "recharge":
                alerts = account.recharge(at, Decimal(body["amount"]), body["reference"])
            case "judge":
                account.disconnection_due(at, self.policy, self.tz)
            case "disconnect_sent":
                self.disconnecting[body["command_id"]] = entry.meter_id
            case "reconnect_sent":
                self.reconnecting[body["command_id"]] = (entry.meter_id, body["recharged_at"])
            case "confirmed":
                result = self._confirm(account, body["command_id"], at)
            case "failed":
                self.disconnecting.pop(body["command_id"], None)
                self.reconnecting.pop(body["command_id"], None)
            case other:
                raise HesSimError(f"prepaid journal: unknown entry kind {other!r}")
        books.alerts.extend(alerts)
        del books.alerts[:-ALERTS_KEPT]
        self.raised.extend((entry.meter_id, alert) for alert in alerts)
        return result

    def _charge(
        self, account: Account, books: _Books, at: float, interval_end: int, wh: int
    ) -> tuple[list[Alert], bool]:
        month = BillingMonth.of_interval(interval_end, self.interval_s, self.tz)
        if books.month is None or books.month.month != month:
            books.month, books.charged = MonthToDate(month), set()
        charge = books.month.charge_interval(
            self.tariff, interval_end, wh, self.tz, self.interval_s
        )
        books.month = charge.state
        books.charged.add(interval_end)
        if not charge.amount:
            return [], True
        return account.charge(at, charge.amount, "energy"), True

    def _confirm(self, account: Account, command_id: str, at: float) -> Confirmation | None:
        if self.disconnecting.pop(command_id, None) is not None:
            account.disconnected(at)
            return Confirmation(account.meter_id, disconnected=True)
        pending = self.reconnecting.pop(command_id, None)
        if pending is None:
            return None
        account.reconnected(at)
        seconds = at - pending[1]
        return Confirmation(account.meter_id, disconnected=False, recharge_to_light_s=seconds)

    def _live(self, meter_id: str, at: float, kind: str, body: dict[str, Any]) -> object:
        entry = Entry(meter_id, self._books[meter_id].next_n, at, kind, body)
        result = self.apply(entry)
        self._keep(meter_id, at, kind, body, entry)
        return result

    def _keep(
        self, meter_id: str, at: float, kind: str, body: dict[str, Any], entry: Entry | None = None
    ) -> None:
        books = self._books[meter_id]
        self.unsaved.append(entry or Entry(meter_id, books.next_n, at, kind, body))
        books.next_n += 1
