from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hes_sim.hes.commands.lifecycle import INDIA
from hes_sim.hes.prepaid.policy import DisconnectionPolicy, HourWindow, Verdict, Weekday

V = Verdict
DEFAULT = DisconnectionPolicy()
REPUBLIC_DAY = date(2026, 1, 26)  # a Monday


def ist(y: int, m: int, d: int, h: int = 0, mi: int = 0, s: float = 0) -> float:
    return datetime(y, m, d, h, mi, tzinfo=INDIA).timestamp() + s


# 2026-03-02 is a Monday, 2026-03-07 a Saturday, 2026-03-08 a Sunday
MONDAY = (2026, 3, 2)
TUESDAY = (2026, 3, 3)
SATURDAY = (2026, 3, 7)
SUNDAY = (2026, 3, 8)


def test_defaults_are_the_documented_ones():
    assert DEFAULT.allowed_hours == HourWindow(start=11, end=16)
    assert DEFAULT.forbidden_hours == ()
    assert DEFAULT.forbidden_weekdays == {Weekday.SUNDAY}
    assert DEFAULT.holidays == frozenset()
    assert DEFAULT.emergency_credit_period == 86_400
    assert DEFAULT.emergency_credit_amount == Decimal("50.00")
    assert DEFAULT.switch_grace_period == 7 * 86_400
    assert DEFAULT.grace_until(1000.0) == 1000.0 + 7 * 86_400


@pytest.mark.parametrize(
    ("at", "verdict"),
    [
        (ist(*MONDAY, 11), V.ALLOWED),  # the window's start is in it
        (ist(*MONDAY, 15, 59, 59.5), V.ALLOWED),
        (ist(*MONDAY, 10, 59, 59.75), V.OUTSIDE_HOURS),  # a fraction is never rounded up
        (ist(*MONDAY, 16), V.OUTSIDE_HOURS),  # half-open: 16:00 is outside
        (ist(*MONDAY, 2), V.OUTSIDE_HOURS),  # never at night
        (ist(*SATURDAY, 12), V.ALLOWED),
        (ist(*SUNDAY, 12), V.WEEKDAY),  # counters shut
        (ist(*SUNDAY, 20), V.WEEKDAY),  # a day-level reason wins over the hours
        (ist(2026, 1, 26, 12), V.HOLIDAY),
        (ist(2026, 1, 25, 12), V.HOLIDAY),  # a holiday on a Sunday says holiday
    ],
)
def test_may_disconnect_names_the_reason(at: float, verdict: Verdict):
    policy = DisconnectionPolicy(holidays=frozenset({REPUBLIC_DAY, date(2026, 1, 25)}))
    assert policy.may_disconnect(at, INDIA) is verdict
    assert verdict.allowed == (verdict is V.ALLOWED)


def test_forbidden_hours_carve_the_allowed_window():
    policy = DisconnectionPolicy(forbidden_hours=(HourWindow(start="13:00", end="14:30"),))
    assert policy.open_intervals() == ((11 * 3600, 13 * 3600), (14 * 3600 + 1800, 16 * 3600))
    assert policy.may_disconnect(ist(*MONDAY, 12, 59, 59), INDIA) is V.ALLOWED
    assert policy.may_disconnect(ist(*MONDAY, 13), INDIA) is V.FORBIDDEN_HOURS
    assert policy.may_disconnect(ist(*MONDAY, 14, 29, 59), INDIA) is V.FORBIDDEN_HOURS
    assert policy.may_disconnect(ist(*MONDAY, 14, 30), INDIA) is V.ALLOWED
    # a forbidden window outside the allowed hours changes nothing there
    assert policy.may_disconnect(ist(*MONDAY, 9), INDIA) is V.OUTSIDE_HOURS
    assert policy.next_allowed(ist(*MONDAY, 13, 10), INDIA) == ist(*MONDAY, 14, 30)


def test_the_local_time_zone_decides():
    at = datetime(2026, 3, 2, 5, 30, tzinfo=UTC).timestamp()  # 11:00 in India
    assert DEFAULT.may_disconnect(at, INDIA) is V.ALLOWED
    assert DEFAULT.may_disconnect(at, UTC) is V.OUTSIDE_HOURS
    assert DEFAULT.next_allowed(at, UTC) == at + 5.5 * 3600  # 11:00 UTC


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (ist(*MONDAY, 9), ist(*MONDAY, 11)),
        (ist(*MONDAY, 12, 34, 56.7), ist(*MONDAY, 12, 34, 56.7)),  # allowed: itself
        (ist(*MONDAY, 16), ist(*TUESDAY, 11)),
        (ist(*MONDAY, 23, 59, 59.9), ist(*TUESDAY, 11)),
        (ist(*SATURDAY, 17), ist(2026, 3, 9, 11)),  # over Sunday to Monday
        (ist(*SUNDAY, 12), ist(2026, 3, 9, 11)),
        (ist(2026, 1, 24, 16), ist(2026, 1, 27, 11)),  # Saturday, Sunday, Republic Day
    ],
)
def test_next_allowed(at: float, expected: float):
    policy = DisconnectionPolicy(holidays=frozenset({REPUBLIC_DAY}))
    assert policy.next_allowed(at, INDIA) == expected
    assert policy.may_disconnect(expected, INDIA) is V.ALLOWED


def test_a_long_run_of_holidays_is_waited_out():
    start = date(2026, 4, 1)
    holidays = frozenset(start + timedelta(days=n) for n in range(40))
    policy = DisconnectionPolicy(holidays=holidays, forbidden_weekdays=frozenset())
    assert policy.next_allowed(ist(2026, 4, 1, 12), INDIA) == ist(2026, 5, 11, 11)


def test_fields_parse_from_a_scenario_file():
    policy = DisconnectionPolicy.model_validate(
        {
            "allowed_hours": {"start": "10:30", "end": 17},
            "forbidden_hours": [{"start": "13:00", "end": "14:00"}],
            "forbidden_weekdays": ["saturday", "sunday"],
            "holidays": ["2026-01-26", "2026-08-15"],
            "emergency_credit_period": "12h",
            "emergency_credit_amount": "75.50",
            "switch_grace_period": "3d",
        }
    )
    assert policy.allowed_hours.start_s == 10 * 3600 + 1800
    assert policy.emergency_credit_period == 12 * 3600
    assert policy.emergency_credit_amount == Decimal("75.50")
    assert policy.switch_grace_period == 3 * 86_400
    assert REPUBLIC_DAY in policy.holidays
    assert DisconnectionPolicy.model_validate(policy.model_dump(mode="json")) == policy


def test_frozen_and_no_unknown_fields():
    with pytest.raises(ValidationError):
        DEFAULT.allowed_hours = HourWindow(start=0, end=24)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DisconnectionPolicy.model_validate({"allowed_hour": {"start": 11, "end": 16}})


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"allowed_hours": {"start": 16, "end": 11}}, "allowed_hours", "must be after start"),
        ({"allowed_hours": {"start": 11, "end": 11}}, "allowed_hours", "must be after start"),
        ({"allowed_hours": {"start": 22, "end": 25}}, "allowed_hours.end", "less than or equal"),
        ({"allowed_hours": {"start": -1, "end": 5}}, "allowed_hours.start", "greater than"),
        ({"allowed_hours": {"start": "noon", "end": 16}}, "allowed_hours.start", "not an hour"),
        (
            {"forbidden_hours": [{"start": 10, "end": 13}, {"start": 13, "end": 17}]},
            "forbidden_hours",
            "cover all of allowed_hours",
        ),
        ({"forbidden_hours": [{"start": 23, "end": 1}]}, "forbidden_hours.0", "two windows"),
        ({"forbidden_weekdays": list(Weekday)}, "forbidden_weekdays", "every day of the week"),
        ({"forbidden_weekdays": ["sun"]}, "forbidden_weekdays.0", "Input should be"),
        ({"holidays": ["26/01/2026"]}, "holidays.0", "date"),
        ({"emergency_credit_period": -1}, "emergency_credit_period", "greater than"),
        ({"emergency_credit_period": "a day"}, "emergency_credit_period", "not a duration"),
        ({"emergency_credit_amount": "-5"}, "emergency_credit_amount", "greater than"),
        ({"emergency_credit_amount": "1.234"}, "emergency_credit_amount", "decimal places"),
        ({"emergency_credit_amount": "NaN"}, "emergency_credit_amount", "finite"),
        ({"switch_grace_period": "7w"}, "switch_grace_period", "not a duration"),
    ],
)
def test_bad_policies_are_refused_naming_the_field(raw: dict, field: str, message: str):
    with pytest.raises(ValidationError) as caught:
        DisconnectionPolicy.model_validate(raw)
    errors = caught.value.errors()
    assert [".".join(str(p) for p in e["loc"]) for e in errors] == [field]
    assert message in errors[0]["msg"]


# --- properties over random clocks and policies --------------------------------------

YEAR_START = ist(2026, 1, 1)
YEAR_END = ist(2027, 1, 1)
ZONES = [INDIA, UTC, timezone(timedelta(hours=-3)), timezone(timedelta(hours=5, minutes=45))]


@st.composite
def windows(draw: st.DrawFn) -> HourWindow:
    start = draw(st.integers(0, 95))  # quarter hours
    end = draw(st.integers(start + 1, 96))
    return HourWindow(start=start / 4, end=end / 4)


@st.composite
def policies(draw: st.DrawFn) -> DisconnectionPolicy:
    try:
        return DisconnectionPolicy(
            allowed_hours=draw(windows()),
            forbidden_hours=tuple(draw(st.lists(windows(), max_size=3))),
            forbidden_weekdays=draw(st.frozensets(st.sampled_from(Weekday), max_size=6)),
            holidays=draw(
                st.frozensets(st.dates(date(2025, 12, 25), date(2027, 2, 15)), max_size=60)
            ),
        )
    except ValidationError:
        assume(False)
        raise


instants = st.builds(
    lambda s, frac: s + frac,
    st.integers(int(YEAR_START), int(YEAR_END)),
    st.sampled_from([0.0, 0.25, 0.5, 0.999]),
)


def facts(policy: DisconnectionPolicy, at: float, tz: timezone) -> dict[Verdict, bool]:
    """What holds at ``at``, worked out apart from the policy's own code."""
    local = datetime.fromtimestamp(at, tz)
    second = (local - local.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()

    def inside(window: HourWindow) -> bool:
        return window.start * 3600 <= second < window.end * 3600

    return {
        V.HOLIDAY: local.date() in policy.holidays,
        V.WEEKDAY: local.strftime("%A").lower() in policy.forbidden_weekdays,
        V.FORBIDDEN_HOURS: any(inside(window) for window in policy.forbidden_hours),
        V.OUTSIDE_HOURS: not inside(policy.allowed_hours),
    }


@settings(max_examples=400, deadline=None)
@given(policies(), instants, st.sampled_from(ZONES))
def test_a_verdict_is_allowed_exactly_when_nothing_forbids(policy, at, tz):
    holds = facts(policy, at, tz)
    verdict = policy.may_disconnect(at, tz)
    if verdict.allowed:
        assert not any(holds.values())
    else:
        assert holds[verdict]  # the reason given is true
    assert verdict.allowed == (not any(holds.values()))


def boundaries(policy: DisconnectionPolicy, start: float, end: float, tz: timezone) -> list[float]:
    """Every instant in (start, end) at which a verdict may change: local midnights and
    window edges. Between two of them the verdict is constant."""
    edges = {0, policy.allowed_hours.start_s, policy.allowed_hours.end_s}
    for window in policy.forbidden_hours:
        edges |= {window.start_s, window.end_s}
    day = datetime.fromtimestamp(start, tz).date()
    found = []
    while True:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        if midnight >= end:
            return found
        found += [midnight + edge for edge in edges if start < midnight + edge < end]
        day += timedelta(days=1)


@settings(max_examples=300, deadline=None)
@given(policies(), instants, st.sampled_from(ZONES))
def test_next_allowed_is_allowed_and_nothing_before_it_is(policy, at, tz):
    allowed_at = policy.next_allowed(at, tz)
    assert allowed_at >= at
    assert policy.may_disconnect(allowed_at, tz) is V.ALLOWED
    for instant in [at, *boundaries(policy, at, allowed_at, tz)]:
        assert not policy.may_disconnect(instant, tz).allowed or instant == allowed_at
    if policy.may_disconnect(at, tz).allowed:
        assert allowed_at == at
