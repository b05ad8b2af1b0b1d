"""Low-balance alerts of a prepaid account. Pure.

A threshold is a share of the last recharge (0.30 of a ₹500 recharge alerts at ₹150);
the threshold 0 is the balance reaching zero. A threshold alerts when the balance falls
to or below its level, once: only a recharge that leaves the balance above its level
re-arms it, so charges nibbling at a low balance (or a small credit among them) do not
repeat the SMS.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

# 30% and 10% of the last recharge give the consumer two warnings a few days apart at a
# steady use; zero says emergency credit has begun
DEFAULT_THRESHOLDS = (Decimal("0.30"), Decimal("0.10"), Decimal("0"))
PAISA = Decimal("0.01")
# its own context: the default one is global and anyone may change its precision
_EXACT = Context(prec=50)


@dataclass(frozen=True, slots=True)
class Alert:
    threshold: Decimal  # share of the last recharge; 0 is the balance reaching zero
    level: Decimal  # rupees: the threshold times the last recharge, to the paisa
    balance: Decimal  # after the posting that crossed it
    at: float  # simulated Unix seconds


def check_thresholds(thresholds: Iterable[Decimal]) -> tuple[Decimal, ...]:
    """Highest first; each a finite share in [0, 1], none twice."""
    shares = tuple(thresholds)
    for share in shares:
        if not isinstance(share, Decimal) or not share.is_finite() or not 0 <= share <= 1:
            raise ValueError(f"thresholds: {share!r} is not a share of the recharge in [0, 1]")
    if len(set(shares)) != len(shares):
        raise ValueError(f"thresholds: {[str(s) for s in shares]} name a threshold twice")
    return tuple(sorted(shares, reverse=True))


class LowBalanceAlarm:
    def __init__(self, thresholds: Iterable[Decimal] = DEFAULT_THRESHOLDS) -> None:
        self.thresholds = check_thresholds(thresholds)
        # the last recharge; until one, only the zero threshold has a level
        self.reference: Decimal | None = None
        self._armed: set[Decimal] = set()

    def start(self, reference: Decimal | None, balance: Decimal, at: float) -> list[Alert]:
        """Everything armed, then judged against the opening balance: an opening balance
        already low alerts at once."""
        self.reference = reference
        self._armed = set(self.thresholds)
        return self.update(balance, at, rearm=True)

    def recharged(self, amount: Decimal, balance: Decimal, at: float) -> list[Alert]:
        self.reference = amount
        return self.update(balance, at, rearm=True)

    def update(self, balance: Decimal, at: float, *, rearm: bool) -> list[Alert]:
        """Alert (once) the armed thresholds the balance is at or under; with ``rearm``
        (a recharge), arm again those it is above."""
        alerts = []
        for share, level in self.levels():
            if balance > level:
                if rearm:
                    self._armed.add(share)
            elif share in self._armed:
                self._armed.discard(share)
                alerts.append(Alert(share, level, balance, at))
        return alerts

    def levels(self) -> Iterator[tuple[Decimal, Decimal]]:
        """(share, rupees) of the thresholds that have a level now, highest first."""
        for share in self.thresholds:
            if share == 0:
                yield share, Decimal("0.00")
            elif self.reference is not None:
                level = _EXACT.multiply(share, self.reference)
                yield share, level.quantize(PAISA, rounding=ROUND_HALF_UP, context=_EXACT)

    @property
    def low_level(self) -> Decimal | None:
        """The highest level: a balance at or under it (and not negative) is low."""
        return next((level for _, level in self.levels()), None)
