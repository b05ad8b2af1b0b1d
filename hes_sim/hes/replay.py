"""Invocation counters per meter: a ciphered APDU is accepted only with a counter higher
than the last one accepted from that meter. Pure; checked after the GCM tag verified,
so a forged APDU cannot move the counter."""

from __future__ import annotations


class InvocationCounters:
    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def is_fresh(self, meter_id: str, counter: int) -> bool:
        last = self._last.get(meter_id)
        return last is None or counter > last

    def accept(self, meter_id: str, counter: int) -> None:
        self._last[meter_id] = counter

    def last(self, meter_id: str) -> int | None:
        return self._last.get(meter_id)
