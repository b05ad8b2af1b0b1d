"""When a prepaid consumer with no credit may be disconnected: a rule over local time.

A consumer cut off for want of credit must be able to recharge and get supply back the
same day, so an automatic disconnection happens only in the working hours of the
recharge counters and the utility's helpdesk, never at night, on a day they are shut, or
while a consumer is still learning prepaid. Pure: the caller passes simulated Unix
seconds and the local time zone (India, +05:30, for the field case).

Windows are half-open in local time: ``[start, end)``, so 16:00 is already outside an
11:00-16:00 window. A window across midnight is written as two windows.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hes_sim.durations import Seconds

DAY_S = 86_400
_HH_MM = re.compile(r"^\s*(\d{1,2}):([0-5]\d)\s*$")


def _parse_hour(value: object) -> object:
    """``11``, ``10.5`` or ``"10:30"`` -> hours (pydantic range-checks the number)."""
    if not isinstance(value, str):
        return value
    match = _HH_MM.match(value)
    if match is not None:
        return int(match.group(1)) + int(match.group(2)) / 60
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an hour such as 11, 10.5 or '10:30'") from None


Hour = Annotated[float, BeforeValidator(_parse_hour), Field(ge=0, le=24)]


class Weekday(StrEnum):
    """In the order of ``date.weekday()``."""

    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @classmethod
    def of(cls, day: date) -> Weekday:
        return list(cls)[day.weekday()]


class Verdict(StrEnum):
    """Whether a disconnection may happen at an instant, and if not, why not. A day-level
    reason (holiday, weekday) wins over an hour-level one."""

    ALLOWED = "allowed"
    HOLIDAY = "holiday"
    WEEKDAY = "weekday"  # a forbidden weekday
    FORBIDDEN_HOURS = "forbidden_hours"
    OUTSIDE_HOURS = "outside_hours"  # outside the allowed hours

    @property
    def allowed(self) -> bool:
        return self is Verdict.ALLOWED


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HourWindow(_Strict):
    """``[start, end)`` in local hours; 24 is the end of the day."""

    start: Hour
    end: Hour

    @model_validator(mode="after")
    def _not_empty(self) -> HourWindow:
        if self.start_s >= self.end_s:
            raise ValueError(
                f"end ({self.end:g} h) must be after start ({self.start:g} h); "
                "a window across midnight is written as two windows"
            )
        return self

    @property
    def start_s(self) -> int:
        """Seconds into the local day (hours given as HH:MM are whole seconds exactly)."""
        return round(self.start * 3600)

    @property
    def end_s(self) -> int:
        return round(self.end * 3600)

    def holds(self, second: float) -> bool:
        return self.start_s <= second < self.end_s


class DisconnectionPolicy(_Strict):
    """The utility's rules for automatic (prepaid) disconnection. The defaults are a
    cautious reading of Indian utilities' prepaid terms; a utility sets its own."""

    # late enough that a recharge made overnight or early has posted, early enough that a
    # consumer cut off can still reach a counter and be reconnected before dark
    allowed_hours: HourWindow = HourWindow(start=11, end=16)
    # none by default: the allowed hours already keep nights free; a utility adds e.g. a
    # lunch hour when its helpdesk is unstaffed
    forbidden_hours: tuple[HourWindow, ...] = ()
    # the recharge counters and the utility's offices are shut on Sundays: a consumer cut
    # off then could not pay in cash, nor be heard, until Monday
    forbidden_weekdays: frozenset[Weekday] = frozenset({Weekday.SUNDAY})
    # the same for public holidays; they move from year to year (the state's gazette), so
    # there is no default list
    holidays: frozenset[date] = frozenset()
    # after the balance goes below zero: a day to recharge before supply is cut...
    emergency_credit_period: Seconds = 86_400.0
    # ...unless the debt passes this (about a day of a domestic consumer's energy), so
    # arrears stay small
    emergency_credit_amount: Decimal = Field(
        default=Decimal("50.00"), ge=0, decimal_places=2, allow_inf_nan=False
    )
    # a consumer switched from postpaid gets a week (a full weekly cycle) to learn the
    # recharge routine before any prepaid disconnection
    switch_grace_period: Seconds = 7 * 86_400.0

    @field_validator("forbidden_weekdays")
    @classmethod
    def _some_weekday_left(cls, days: frozenset[Weekday]) -> frozenset[Weekday]:
        if len(days) == len(Weekday):
            raise ValueError("every day of the week is forbidden: no disconnection could happen")
        return days

    @field_validator("forbidden_hours")
    @classmethod
    def _some_hour_left(
        cls, windows: tuple[HourWindow, ...], info: ValidationInfo
    ) -> tuple[HourWindow, ...]:
        allowed = info.data.get("allowed_hours")
        if isinstance(allowed, HourWindow) and not _subtract(allowed, windows):
            raise ValueError(
                f"they cover all of allowed_hours ({allowed.start:g}-{allowed.end:g} h): "
                "no disconnection could happen"
            )
        return windows

    def grace_until(self, switched_at: float) -> float:
        """The end of the grace period of a consumer switched to prepaid at ``switched_at``."""
        return switched_at + self.switch_grace_period

    def open_intervals(self) -> tuple[tuple[int, int], ...]:
        """``[start, end)`` seconds of a local day in which disconnection is allowed (on a
        day that allows it at all): the allowed hours less the forbidden ones."""
        return _subtract(self.allowed_hours, self.forbidden_hours)

    def may_disconnect(self, at: float, tz: tzinfo) -> Verdict:
        day, second = _local(at, tz)
        blocked = self._day_verdict(day)
        if blocked is not None:
            return blocked
        if any(window.holds(second) for window in self.forbidden_hours):
            return Verdict.FORBIDDEN_HOURS
        if not self.allowed_hours.holds(second):
            return Verdict.OUTSIDE_HOURS
        return Verdict.ALLOWED

    def next_allowed(self, at: float, tz: tzinfo) -> float:
        """The first instant at or after ``at`` at which a disconnection is allowed:
        ``at`` itself when it is allowed. The engine sleeps until then."""
        day, second = _local(at, tz)
        intervals = self.open_intervals()
        # H holidays spoil at most H weeks and every week has an allowed weekday, so an
        # allowed day comes within H + 1 weeks of today
        for _ in range(7 * (len(self.holidays) + 1) + 1):
            if self._day_verdict(day) is None:
                for start, end in intervals:
                    if second < end:
                        return at if second >= start else _instant(day, start, tz)
            day += timedelta(days=1)
            second = -math.inf  # on a later day, any interval is after `at`
        raise AssertionError("unreachable: the validators leave an allowed day every week")

    def _day_verdict(self, day: date) -> Verdict | None:
        if day in self.holidays:
            return Verdict.HOLIDAY
        if Weekday.of(day) in self.forbidden_weekdays:
            return Verdict.WEEKDAY
        return None


def _subtract(
    allowed: HourWindow, forbidden: tuple[HourWindow, ...]
) -> tuple[tuple[int, int], ...]:
    intervals = [(allowed.start_s, allowed.end_s)]
    for window in forbidden:
        remaining: list[tuple[int, int]] = []
        for start, end in intervals:
            if window.end_s <= start or window.start_s >= end:
                remaining.append((start, end))
                continue
            if start < window.start_s:
                remaining.append((start, window.start_s))
            if window.end_s < end:
                remaining.append((window.end_s, end))
        intervals = remaining
    return tuple(sorted(intervals))


def _local(at: float, tz: tzinfo) -> tuple[date, float]:
    """The local date and seconds into it. The whole second is converted and the fraction
    added back, so an instant is never rounded up across a window's edge."""
    whole = math.floor(at)
    local = datetime.fromtimestamp(whole, tz)
    return local.date(), local.hour * 3600 + local.minute * 60 + local.second + (at - whole)


def _instant(day: date, second: int, tz: tzinfo) -> float:
    return (datetime.combine(day, time(), tzinfo=tz) + timedelta(seconds=second)).timestamp()
