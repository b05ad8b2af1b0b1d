"""Which answer from a meter belongs to which request: one outstanding request per meter,
and the answers still owed to requests given up on.

A meter answers in order, but an answer may come after its request timed out, while the
head-end already waits for the next one. Two rules tell them apart:

* **Kind.** Each request has the answers it can get (an AARQ an AARE, a glo-GET a
  glo-GET response; an exception-response answers anything). An answer of another kind
  is not the one waited for: it is the late answer to a request given up on, or, if none
  of that kind is owed, unsolicited.
* **Order, for answers of the same kind.** While an answer of the waited-for kind is
  still owed to a timed-out request (for ``LATE_ANSWER_WINDOW`` timeouts), the next one
  is taken as that late answer. A request that was lost outright owes nothing, so the
  answer dropped in its stead was this request's own: when this request then times out
  too, it owes nothing more (else every retry within the window would lose its answer
  to the one before).

Pure: an injected clock (monotonic seconds), futures and no I/O.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from hes_sim.protocols.acse import AARE, AARQ, RLRE, RLRQ
from hes_sim.protocols.security import CipheredTag
from hes_sim.protocols.xdlms import (
    ACTION_REQUEST,
    ACTION_RESPONSE,
    EXCEPTION_RESPONSE,
    GET_REQUEST,
    GET_RESPONSE,
    SET_REQUEST,
    SET_RESPONSE,
)

LATE_ANSWER_WINDOW = 4.0  # an answer later than four timeouts is taken as never coming
CONFIRMED_SERVICE_ERROR = 0x0E
_ANSWERS_ANYTHING = frozenset({EXCEPTION_RESPONSE, CONFIRMED_SERVICE_ERROR})
_ANSWER_TO: dict[int, frozenset[int]] = {
    request: frozenset({answer}) | _ANSWERS_ANYTHING
    for request, answer in (
        (AARQ, AARE),
        (RLRQ, RLRE),
        (GET_REQUEST, GET_RESPONSE),
        (SET_REQUEST, SET_RESPONSE),
        (ACTION_REQUEST, ACTION_RESPONSE),
        (CipheredTag.GLO_GET_REQUEST, CipheredTag.GLO_GET_RESPONSE),
        (CipheredTag.GLO_SET_REQUEST, CipheredTag.GLO_SET_RESPONSE),
        (CipheredTag.GLO_ACTION_REQUEST, CipheredTag.GLO_ACTION_RESPONSE),
    )
}


def answers_to(request: bytes) -> frozenset[int] | None:
    """The first octets an answer to ``request`` may have; None: any (a request this
    table does not know)."""
    return _ANSWER_TO.get(request[0]) if request else None


class Verdict(Enum):
    ANSWER = "answer"  # the answer to the request waited for: handed over
    LATE = "late"  # an answer owed to a request given up on: dropped
    UNSOLICITED = "unsolicited"  # nobody asked: dropped


@dataclass(slots=True)
class _Owed:
    until: float  # monotonic seconds
    kinds: frozenset[int] | None


@dataclass(slots=True)
class _Waiting:
    future: asyncio.Future[bytes]
    kinds: frozenset[int] | None
    took_a_late_one: bool = False  # an answer of its kind was dropped as owed meanwhile


@dataclass(slots=True)
class _Meter:
    waiting: _Waiting | None = None
    owed: deque[_Owed] = field(default_factory=deque)


class PendingAnswers:
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._meters: dict[str, _Meter] = {}

    def expect(self, meter_id: str, request: bytes) -> asyncio.Future[bytes]:
        """The future that gets the answer to ``request``, about to be sent."""
        meter = self._meters.setdefault(meter_id, _Meter())
        if meter.waiting is not None:
            raise RuntimeError(f"a request to {meter_id} is already outstanding")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        meter.waiting = _Waiting(future, answers_to(request))
        return future

    def give_up(self, meter_id: str, timeout_s: float) -> None:
        """The request timed out: its answer, if it still comes, is owed."""
        meter = self._meters.get(meter_id)
        if meter is None or meter.waiting is None:
            return
        if not meter.waiting.took_a_late_one:
            meter.owed.append(_Owed(self._now() + LATE_ANSWER_WINDOW * timeout_s,
                                    meter.waiting.kinds))  # fmt: skip

    def done(self, meter_id: str) -> None:
        """The exchange is over (answered, timed out or failed): nothing is waited for."""
        meter = self._meters.get(meter_id)
        if meter is None:
            return
        meter.waiting = None
        self._forget_lost(meter)
        if not meter.owed:
            del self._meters[meter_id]

    def take(self, meter_id: str, answer: bytes) -> Verdict:
        """Place an answer: hand it to the request waiting for it, or say why not."""
        meter = self._meters.get(meter_id)
        if meter is None:
            return Verdict.UNSOLICITED
        tag = answer[0] if answer else -1
        self._forget_lost(meter)
        waiting = meter.waiting
        if waiting is not None and waiting.future.done():
            waiting = None
        if waiting is not None and _fits(tag, waiting.kinds):
            if self._settle_owed(meter, tag, same_as=waiting.kinds):
                waiting.took_a_late_one = True
                return Verdict.LATE
            waiting.future.set_result(answer)
            return Verdict.ANSWER
        if self._settle_owed(meter, tag, same_as=None):
            return Verdict.LATE
        return Verdict.UNSOLICITED

    def fail(self, meter_id: str, error: Exception) -> bool:
        """An answer that cannot be read came: the request waiting, if any, fails with
        ``error`` (whether one did)."""
        meter = self._meters.get(meter_id)
        waiting = None if meter is None else meter.waiting
        if waiting is None or waiting.future.done():
            return False
        waiting.future.set_exception(error)
        return True

    def _forget_lost(self, meter: _Meter) -> None:
        """Drop the owed answers whose window has passed: they never came, the request
        was lost."""
        now = self._now()
        while meter.owed and meter.owed[0].until < now:
            meter.owed.popleft()

    def _settle_owed(self, meter: _Meter, tag: int, *, same_as: frozenset[int] | None) -> bool:
        """Drop the oldest owed answer ``tag`` can be (of the same kinds as ``same_as``
        when given); whether there was one."""
        for owed in meter.owed:
            if (owed.kinds == same_as) if same_as is not None else _fits(tag, owed.kinds):
                meter.owed.remove(owed)
                return True
        return False


def _fits(tag: int, kinds: frozenset[int] | None) -> bool:
    return kinds is None or tag in kinds
