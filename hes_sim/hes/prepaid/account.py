"""A consumer's account, postpaid or prepaid, as a table-driven state machine with an
audit trail and a ledger. Pure: the caller passes the time of each step (simulated Unix
seconds) and, to judge a disconnection, the policy and the local time zone.

    from                 to                   on
    postpaid             in_credit | low      switch_to_prepaid
                         | emergency_credit   (below zero: arrears carried over)
    in_credit            low                  charge
    low                  in_credit            recharge (or a credit)
    in_credit | low      emergency_credit     charge below zero
    emergency_credit     due_disconnection    disconnection_due: the emergency period is
                                              over, or the debt is over its amount
    due_disconnection    emergency_credit     disconnection_due: a part-payment brought the
                                              debt back within the amount, inside the period
    emergency_credit     in_credit | low      recharge (or a credit) to zero or above
    | due_disconnection
    due_disconnection    disconnected         disconnected: the engine's command confirmed
    disconnected         reconnect_pending    recharge (or a credit) to above zero: reconnect
    reconnect_pending    in_credit | low      reconnected
    | disconnected       | emergency_credit   (from disconnected: closed on site)
    in_credit | low      reconnect_pending    disconnected: a recharge overtook the command
    | emergency_credit

Supply is on in every state but ``disconnected`` and ``reconnect_pending``. The engine
calls ``disconnection_due`` after each charge and again at the instant it names; that is
where the emergency credit is judged, since only the policy knows its limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from decimal import Context, Decimal
from enum import StrEnum

from hes_sim.errors import HesSimError
from hes_sim.hes.prepaid.alerts import DEFAULT_THRESHOLDS, PAISA, Alert, LowBalanceAlarm
from hes_sim.hes.prepaid.decision import Action, Decision, Reason
from hes_sim.hes.prepaid.policy import DisconnectionPolicy

_EXACT = Context(prec=50)


class Mode(StrEnum):
    POSTPAID = "postpaid"
    PREPAID = "prepaid"


class AccountState(StrEnum):
    POSTPAID = "postpaid"
    IN_CREDIT = "in_credit"
    LOW = "low"  # at or under the highest alert level, not below zero
    EMERGENCY_CREDIT = "emergency_credit"  # below zero, within the period and amount
    DUE_DISCONNECTION = "due_disconnection"  # credit exhausted, waiting for an allowed window
    DISCONNECTED = "disconnected"
    RECONNECT_PENDING = "reconnect_pending"  # recharged while off: reconnect at once


class EntryKind(StrEnum):
    OPENING = "opening"
    CHARGE = "charge"
    RECHARGE = "recharge"


S = AccountState
ALLOWED: dict[AccountState, frozenset[AccountState]] = {
    S.POSTPAID: frozenset({S.IN_CREDIT, S.LOW, S.EMERGENCY_CREDIT}),  # switch (arrears: < 0)
    S.IN_CREDIT: frozenset({S.LOW, S.EMERGENCY_CREDIT, S.RECONNECT_PENDING}),
    S.LOW: frozenset({S.IN_CREDIT, S.EMERGENCY_CREDIT, S.RECONNECT_PENDING}),
    S.EMERGENCY_CREDIT: frozenset({S.IN_CREDIT, S.LOW, S.DUE_DISCONNECTION, S.RECONNECT_PENDING}),
    S.DUE_DISCONNECTION: frozenset({S.IN_CREDIT, S.LOW, S.DISCONNECTED, S.EMERGENCY_CREDIT}),
    S.DISCONNECTED: frozenset({S.RECONNECT_PENDING, S.IN_CREDIT, S.LOW, S.EMERGENCY_CREDIT}),
    S.RECONNECT_PENDING: frozenset({S.IN_CREDIT, S.LOW, S.EMERGENCY_CREDIT}),
}
SUPPLY_OFF = frozenset({S.DISCONNECTED, S.RECONNECT_PENDING})


class InvalidTransition(HesSimError):  # noqa: N818 - a transition, not an error of the caller's data
    """A step the account does not allow (a bug in the caller)."""


class RechargeConflict(HesSimError):  # noqa: N818 - a conflict, named as the payment world does
    """A recharge reference seen before with another amount: never credited twice, never
    silently credited differently."""


@dataclass(frozen=True, slots=True)
class Transition:
    state: AccountState
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    at: float
    kind: EntryKind
    amount: Decimal  # signed: a charge is negative
    balance: Decimal  # after it
    note: str


class Account:
    def __init__(
        self,
        consumer_id: str,
        meter_id: str,
        opened_at: float,
        thresholds: tuple[Decimal, ...] = DEFAULT_THRESHOLDS,
    ) -> None:
        self.consumer_id = consumer_id
        self.meter_id = meter_id
        self.state = S.POSTPAID
        self.balance = Decimal("0.00")
        self.grace_until: float | None = None  # no prepaid disconnection before it
        self.negative_since: float | None = None  # start of the emergency credit period
        self.history = [Transition(S.POSTPAID, opened_at, "opened as postpaid")]
        self.ledger: list[LedgerEntry] = []
        self._alarm = LowBalanceAlarm(thresholds)
        self._recharges: dict[str, Decimal] = {}  # reference -> amount

    @property
    def mode(self) -> Mode:
        return Mode.POSTPAID if self.state is S.POSTPAID else Mode.PREPAID

    @property
    def supply_on(self) -> bool:
        return self.state not in SUPPLY_OFF

    def switch_to_prepaid(
        self, at: float, opening_balance: Decimal, grace_until: float
    ) -> list[Alert]:
        """From postpaid. ``opening_balance`` may be negative (arrears carried over); it
        counts as the first recharge for the alert levels when positive."""
        if self.state is not S.POSTPAID:
            raise InvalidTransition(f"{self.consumer_id}: already prepaid")
        _check_money("opening_balance", opening_balance, positive=False)
        self.grace_until = grace_until
        self._post(at, EntryKind.OPENING, opening_balance, "switched to prepaid")
        alerts = self._alarm.start(
            opening_balance if opening_balance > 0 else None, self.balance, at
        )
        note = f"switched to prepaid: balance ₹{self.balance}, grace until {grace_until:.0f}"
        self._move(self._standing(), at, note)
        return alerts

    def charge(self, at: float, amount: Decimal, reason: str) -> list[Alert]:
        """An energy charge (as reads arrive) or a fixed one (daily), in whole paise.
        Below zero it is a credit (a time-of-day factor under 1 can lower the month's
        energy charge to date), which never re-arms an alert: only a recharge does.
        Returns the alerts newly crossed."""
        self._require_prepaid("charge")
        _check_money("amount", amount, positive=False)
        self._post(at, EntryKind.CHARGE, -amount, reason)
        self._settle(at, f"{reason}: ₹{amount}, balance ₹{self.balance}")
        return self._alarm.update(self.balance, at, rearm=False)

    def recharge(self, at: float, amount: Decimal, reference: str) -> list[Alert]:
        """Credit ``amount`` once per ``reference`` (payment gateways deliver twice): a
        repeat changes nothing and returns no alerts. Returns the alerts newly crossed."""
        self._require_prepaid("recharge")
        _check_money("amount", amount, positive=True)
        if not reference:
            raise ValueError("reference must not be empty: it is what makes a recharge once")
        known = self._recharges.get(reference)
        if known is not None:
            if known != amount:
                raise RechargeConflict(f"recharge {reference} was ₹{known}, now ₹{amount}")
            return []
        self._recharges[reference] = amount
        self._post(at, EntryKind.RECHARGE, amount, f"recharge {reference}")
        note = f"recharge {reference}: ₹{amount}, balance ₹{self.balance}"
        alerts = self._alarm.recharged(amount, self.balance, at)  # first: it sets the levels
        self._settle(at, note)
        return alerts

    def disconnection_due(self, at: float, policy: DisconnectionPolicy, tz: tzinfo) -> Decision:
        """Whether to disconnect now, and if not, why and until when (absent further
        charges: the engine asks again after each). Judges the emergency credit, moving
        emergency_credit to due_disconnection (or back, after a part-payment), stamped
        ``at``."""
        match self.state:
            case S.POSTPAID:
                return Decision(Action.NONE, Reason.POSTPAID)
            case S.IN_CREDIT | S.LOW:
                return Decision(Action.NONE, Reason.IN_CREDIT)
            case S.DISCONNECTED:
                return Decision(Action.NONE, Reason.DISCONNECTED)
            case S.RECONNECT_PENDING:
                return Decision(Action.NONE, Reason.RECONNECT_PENDING)
            case S.EMERGENCY_CREDIT | S.DUE_DISCONNECTION:
                pass
        # judged afresh each time: a part-payment that brings the debt back within the
        # amount, inside the period, restores the emergency credit (the period still runs
        # from when the balance first went below zero)
        used = self._emergency_used(at, policy)
        if used:
            self._move(S.DUE_DISCONNECTION, at, used)
        else:
            self._move(S.EMERGENCY_CREDIT, at, f"debt ₹{-self.balance} within the emergency credit")
        earliest = at
        if self.state is S.EMERGENCY_CREDIT:
            earliest = max(at, self._emergency_end(policy))
        grace_until = self.grace_until if self.grace_until is not None else at
        earliest = max(earliest, grace_until)
        if at < grace_until:
            reason = Reason.GRACE
        elif self.state is S.EMERGENCY_CREDIT:
            reason = Reason.EMERGENCY_CREDIT
        else:
            verdict = policy.may_disconnect(at, tz)
            if verdict.allowed:
                return Decision(Action.DISCONNECT, Reason.CREDIT_EXHAUSTED)
            reason = Reason(verdict.value)
        return Decision(Action.WAIT, reason, policy.next_allowed(earliest, tz))

    def disconnected(self, at: float) -> None:
        """The engine's disconnect command is confirmed (relay read back open, or the
        control event). A repeat (both arrive) changes nothing."""
        match self.state:
            case S.DUE_DISCONNECTION:
                self._move(S.DISCONNECTED, at, f"disconnect confirmed, balance ₹{self.balance}")
            case S.IN_CREDIT | S.LOW | S.EMERGENCY_CREDIT:
                # a recharge overtook the command on its way: the consumer has paid
                self._move(S.RECONNECT_PENDING, at, "disconnect confirmed after a recharge")
            case S.DISCONNECTED | S.RECONNECT_PENDING:
                pass
            case S.POSTPAID:
                raise InvalidTransition(f"{self.consumer_id}: postpaid, not disconnected here")

    def reconnected(self, at: float) -> None:
        """The relay is closed again: the engine's reconnect, or one made outside it (on
        site), which leaves a consumer still in debt due for disconnection again."""
        match self.state:
            case S.RECONNECT_PENDING | S.DISCONNECTED:
                how = "reconnect confirmed"
                if self.state is S.DISCONNECTED:
                    how = "reconnected without a recharge"
                self._move(self._standing(), at, f"{how}, balance ₹{self.balance}")
            case S.IN_CREDIT | S.LOW | S.EMERGENCY_CREDIT | S.DUE_DISCONNECTION:
                pass  # supply on already: a repeated confirmation
            case S.POSTPAID:
                raise InvalidTransition(f"{self.consumer_id}: postpaid, not reconnected here")

    def recharged(self, reference: str) -> bool:
        return reference in self._recharges

    @property
    def alert_levels(self) -> list[tuple[Decimal, Decimal]]:
        """(share, rupees) of the thresholds with a level now, highest first."""
        return list(self._alarm.levels())

    def _emergency_end(self, policy: DisconnectionPolicy) -> float:
        if self.negative_since is None:  # pragma: no cover - set whenever balance < 0
            raise InvalidTransition(f"{self.consumer_id}: emergency credit without a debt")
        return self.negative_since + policy.emergency_credit_period

    def _emergency_used(self, at: float, policy: DisconnectionPolicy) -> str:
        """Why the emergency credit is over, or "" while it lasts."""
        limit = policy.emergency_credit_amount
        if -self.balance > limit:
            return f"debt ₹{-self.balance} over the emergency credit of ₹{limit}"
        if at >= self._emergency_end(policy):
            return f"emergency credit period of {policy.emergency_credit_period:g} s over"
        return ""

    def _settle(self, at: float, note: str) -> None:
        """The state after the balance moved."""
        match self.state:
            case S.DISCONNECTED:
                if self.balance > 0:  # credit, not just the debt paid: supply back at once
                    self._move(S.RECONNECT_PENDING, at, note)
            case S.EMERGENCY_CREDIT | S.DUE_DISCONNECTION:
                # still below zero: the emergency credit is judged by disconnection_due,
                # and its period runs on from when the balance first went below zero
                if self.balance >= 0:
                    self._move(self._standing(), at, note)
            case S.IN_CREDIT | S.LOW:
                self._move(self._standing(), at, note)
            case S.RECONNECT_PENDING | S.POSTPAID:
                pass  # the reconnect is on its way / no prepaid balance to judge

    def _standing(self) -> AccountState:
        """The state of a consumer with supply, from the balance alone."""
        if self.balance < 0:
            return S.EMERGENCY_CREDIT
        low = self._alarm.low_level
        return S.LOW if low is not None and self.balance <= low else S.IN_CREDIT

    def _post(self, at: float, kind: EntryKind, amount: Decimal, note: str) -> None:
        self.balance = _EXACT.add(self.balance, amount)
        self.ledger.append(LedgerEntry(at, kind, amount, self.balance, note))
        if self.balance >= 0:
            self.negative_since = None
        elif self.negative_since is None:
            self.negative_since = at  # the emergency credit period starts

    def _require_prepaid(self, what: str) -> None:
        if self.state is S.POSTPAID:
            raise InvalidTransition(f"{self.consumer_id}: a {what} needs a prepaid account")

    def _move(self, to: AccountState, at: float, reason: str) -> None:
        if to is self.state:
            return
        if to not in ALLOWED[self.state]:
            raise InvalidTransition(f"{self.consumer_id}: {self.state} -> {to} is not allowed")
        self.state = to
        self.history.append(Transition(to, at, reason))


def _check_money(name: str, amount: Decimal, *, positive: bool) -> None:
    """Rupees as a finite Decimal in whole paise (the tariff side rounds)."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"{name} must be a finite Decimal of rupees, not {amount!r}")
    if amount != amount.quantize(PAISA, context=_EXACT):
        raise ValueError(f"{name} ₹{amount} is not in whole paise: round it first")
    if positive and amount <= 0:
        raise ValueError(f"{name} must be more than zero, not ₹{amount}")
