import copy
import itertools
from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hes_sim.hes.commands.lifecycle import INDIA
from hes_sim.hes.prepaid.account import (
    ALLOWED,
    Account,
    AccountState,
    EntryKind,
    InvalidTransition,
    Mode,
    RechargeConflict,
)
from hes_sim.hes.prepaid.alerts import DEFAULT_THRESHOLDS
from hes_sim.hes.prepaid.decision import Action, Decision, Reason
from hes_sim.hes.prepaid.policy import DisconnectionPolicy, HourWindow
from tests.unit.test_prepaid_policy import policies

S = AccountState
D = Decimal
POLICY = DisconnectionPolicy()


def ist(y: int, m: int, d: int, h: int = 0, mi: int = 0, s: float = 0) -> float:
    return datetime(y, m, d, h, mi, tzinfo=INDIA).timestamp() + s


# 2026-03-02 is a Monday; 2026-03-08 a Sunday
MON_10 = ist(2026, 3, 2, 10)
MON_12 = ist(2026, 3, 2, 12)


def prepaid(opening: str = "500.00", at: float = MON_10, grace_until: float | None = None):
    account = Account("C1", "SP0000001", opened_at=at - 86_400)
    account.switch_to_prepaid(at, D(opening), at if grace_until is None else grace_until)
    return account


def states(account: Account) -> list[AccountState]:
    return [t.state for t in account.history]


def due(account: Account, at: float, policy: DisconnectionPolicy = POLICY) -> Decision:
    return account.disconnection_due(at, policy, INDIA)


def in_debt(at: float, debt: str = "60.00") -> Account:
    """A consumer whose debt is over the emergency credit at ``at``."""
    account = prepaid("0.00", at=at - 3600)
    account.charge(at, D(debt), "energy")
    return account


# --- postpaid and the switch ---------------------------------------------------------


def test_a_new_account_is_postpaid_and_refuses_prepaid_steps():
    account = Account("C1", "SP0000001", opened_at=100.0)
    assert account.mode is Mode.POSTPAID
    assert states(account) == [S.POSTPAID]
    assert due(account, MON_12) == Decision(Action.NONE, Reason.POSTPAID)
    with pytest.raises(InvalidTransition, match="needs a prepaid account"):
        account.charge(MON_12, D("1.00"), "energy")
    with pytest.raises(InvalidTransition, match="needs a prepaid account"):
        account.recharge(MON_12, D("100.00"), "R1")
    with pytest.raises(InvalidTransition):
        account.disconnected(MON_12)
    with pytest.raises(InvalidTransition):
        account.reconnected(MON_12)
    assert account.balance == 0
    assert account.ledger == []


def test_switch_to_prepaid_opens_the_ledger_and_audit_trail():
    account = Account("C1", "SP0000001", opened_at=100.0)
    alerts = account.switch_to_prepaid(MON_10, D("500.00"), POLICY.grace_until(MON_10))
    assert alerts == []
    assert account.mode is Mode.PREPAID
    assert account.supply_on
    assert account.grace_until == MON_10 + 7 * 86_400
    assert [(t.state, t.at) for t in account.history] == [
        (S.POSTPAID, 100.0),
        (S.IN_CREDIT, MON_10),
    ]
    assert "balance ₹500.00" in account.history[-1].reason
    assert [(e.kind, e.amount, e.balance) for e in account.ledger] == [
        (EntryKind.OPENING, D("500.00"), D("500.00"))
    ]
    # alert levels are shares of the opening balance, which stands for the first recharge
    assert account.alert_levels == [
        (D("0.30"), D("150.00")),
        (D("0.10"), D("50.00")),
        (D("0"), D("0.00")),
    ]
    with pytest.raises(InvalidTransition, match="already prepaid"):
        account.switch_to_prepaid(MON_12, D("1.00"), MON_12)


def test_a_zero_opening_balance_is_low_and_says_so():
    account = Account("C1", "SP0000001", opened_at=0.0)
    alerts = account.switch_to_prepaid(MON_10, D("0.00"), MON_10)
    assert account.state is S.LOW
    assert [(a.threshold, a.level, a.balance) for a in alerts] == [(D("0"), D("0.00"), D("0"))]
    assert account.alert_levels == [(D("0"), D("0.00"))]  # no recharge yet: no shares


def test_arrears_carried_over_start_the_emergency_credit():
    account = Account("C1", "SP0000001", opened_at=0.0)
    account.switch_to_prepaid(MON_10, D("-20.00"), MON_10)
    assert account.state is S.EMERGENCY_CREDIT
    assert account.negative_since == MON_10
    # a day of emergency credit runs out at Tuesday 10:00, before the allowed hours
    tuesday_11 = ist(2026, 3, 3, 11)
    assert due(account, MON_10) == Decision(Action.WAIT, Reason.EMERGENCY_CREDIT, tuesday_11)


# --- charges and alerts --------------------------------------------------------------


def test_charges_walk_down_through_low_alerting_once_per_threshold():
    account = prepaid("500.00")
    steps = [("300.00", []), ("60.00", ["0.30"]), ("40.00", []), ("50.00", ["0.10"])]
    steps += [("50.00", ["0"]), ("10.00", []), ("5.00", [])]
    seen = []
    for n, (amount, expected) in enumerate(steps, start=1):
        alerts = account.charge(MON_10 + n, D(amount), f"energy {n}")
        assert [str(a.threshold) for a in alerts] == expected, n
        assert all(a.balance == account.balance and a.at == MON_10 + n for a in alerts)
        seen.append((account.balance, account.state))
    assert seen == [
        (D("200.00"), S.IN_CREDIT),
        (D("140.00"), S.LOW),  # at or under 30% of ₹500
        (D("100.00"), S.LOW),
        (D("50.00"), S.LOW),  # at the 10% level counts as crossing it
        (D("0.00"), S.LOW),  # zero is low, not yet below it
        (D("-10.00"), S.EMERGENCY_CREDIT),
        (D("-15.00"), S.EMERGENCY_CREDIT),
    ]
    assert states(account) == [S.POSTPAID, S.IN_CREDIT, S.LOW, S.EMERGENCY_CREDIT]
    assert account.history[2].reason == "energy 2: ₹60.00, balance ₹140.00"
    assert account.negative_since == MON_10 + 6  # the first charge below zero
    assert account.balance == sum(e.amount for e in account.ledger)


def test_one_charge_can_cross_every_threshold():
    account = prepaid("500.00")
    alerts = account.charge(MON_12, D("520.00"), "a big day")
    assert [(a.threshold, a.level) for a in alerts] == [
        (D("0.30"), D("150.00")),
        (D("0.10"), D("50.00")),
        (D("0"), D("0.00")),
    ]
    assert account.state is S.EMERGENCY_CREDIT


def test_a_credit_lifts_the_state_but_never_rearms_an_alert():
    account = prepaid("500.00")
    assert len(account.charge(MON_10 + 1, D("360.00"), "energy")) == 1  # 140: 30% alerted
    assert account.charge(MON_10 + 2, D("-20.00"), "TOD credit") == []  # 160
    assert account.state is S.IN_CREDIT
    assert account.charge(MON_10 + 3, D("20.00"), "energy") == []  # 140 again: no repeat
    assert account.state is S.LOW


def test_a_recharge_rearms_the_thresholds_it_lifts_the_balance_above():
    account = prepaid("500.00")
    assert len(account.charge(MON_10 + 1, D("540.00"), "energy")) == 3  # -40
    # ₹50 leaves ₹10: over the new 10% (₹5) and zero levels, under the new 30% (₹15)
    assert account.recharge(MON_10 + 2, D("50.00"), "R1") == []
    assert account.alert_levels == [
        (D("0.30"), D("15.00")),
        (D("0.10"), D("5.00")),
        (D("0"), D("0.00")),
    ]
    assert [str(a.threshold) for a in account.charge(MON_10 + 3, D("5.00"), "e")] == ["0.10"]
    assert [str(a.threshold) for a in account.charge(MON_10 + 4, D("5.00"), "e")] == ["0"]
    # a recharge well above every level arms them all again
    account.recharge(MON_10 + 5, D("100.00"), "R2")  # 100, levels 30 / 10 / 0
    assert [str(a.threshold) for a in account.charge(MON_10 + 6, D("70.00"), "e")] == ["0.30"]


def test_configurable_thresholds():
    account = Account("C1", "SP0000001", opened_at=0.0, thresholds=(D("0.5"),))
    account.switch_to_prepaid(MON_10, D("200.00"), MON_10)
    assert [a.level for a in account.charge(MON_10 + 1, D("100.00"), "e")] == [D("100.00")]
    assert account.state is S.LOW
    assert account.charge(MON_10 + 2, D("150.00"), "e") == []  # no zero threshold
    silent = Account("C2", "SP0000002", opened_at=0.0, thresholds=())
    silent.switch_to_prepaid(MON_10, D("0.00"), MON_10)
    assert silent.state is S.IN_CREDIT  # no level: never low


@pytest.mark.parametrize(
    "thresholds",
    [(D("0.3"), D("0.30")), (D("1.5"),), (D("-0.1"),), (D("NaN"),), (0.3,)],
)
def test_bad_thresholds_are_refused(thresholds):
    with pytest.raises(ValueError, match="thresholds"):
        Account("C1", "SP0000001", opened_at=0.0, thresholds=thresholds)


@pytest.mark.parametrize(
    ("step", "amount"),
    [
        ("charge", 1.5),
        ("charge", D("1.234")),
        ("charge", D("NaN")),
        ("charge", D("Infinity")),
        ("recharge", D("0.00")),
        ("recharge", D("-5.00")),
        ("recharge", D("10.001")),
    ],
)
def test_money_must_be_whole_paise_of_decimal_rupees(step: str, amount):
    account = prepaid("100.00")
    post = account.charge if step == "charge" else account.recharge
    with pytest.raises(ValueError, match="amount"):
        post(MON_12, amount, "R1")
    assert account.balance == D("100.00")
    assert len(account.ledger) == 1


# --- recharges -----------------------------------------------------------------------


def test_a_recharge_is_credited_once_per_reference():
    account = prepaid("100.00")
    account.recharge(MON_12, D("200.00"), "UPI-42")
    history = list(account.history)
    assert account.recharge(MON_12 + 60, D("200.00"), "UPI-42") == []  # delivered twice
    assert account.balance == D("300.00")
    assert [e.kind for e in account.ledger] == [EntryKind.OPENING, EntryKind.RECHARGE]
    assert account.history == history
    assert account.recharged("UPI-42")
    assert not account.recharged("UPI-43")
    with pytest.raises(RechargeConflict, match=r"UPI-42 was ₹200\.00, now ₹250\.00"):
        account.recharge(MON_12 + 120, D("250.00"), "UPI-42")
    assert account.balance == D("300.00")
    with pytest.raises(ValueError, match="reference"):
        account.recharge(MON_12, D("10.00"), "")


def test_a_partial_recharge_in_emergency_credit_does_not_restart_its_period():
    account = prepaid("0.00", at=MON_10)
    account.charge(MON_12, D("30.00"), "energy")  # -30 from Monday 12:00
    account.recharge(MON_12 + 3600, D("20.00"), "R1")  # -10
    assert account.state is S.EMERGENCY_CREDIT
    assert account.negative_since == MON_12
    assert due(account, MON_12 + 3600).until == MON_12 + 86_400
    account.recharge(MON_12 + 7200, D("10.00"), "R2")  # zero: debt paid
    assert account.state is S.LOW
    assert account.negative_since is None
    assert due(account, MON_12 + 7200) == Decision(Action.NONE, Reason.IN_CREDIT)


def test_a_recharge_clears_a_due_disconnection():
    account = in_debt(MON_12)
    assert due(account, MON_12).disconnect_now
    account.recharge(MON_12 + 1, D("40.00"), "R1")  # -20: still below zero...
    assert account.state is S.DUE_DISCONNECTION
    # ...but back within the emergency credit, whose day still runs from Monday 12:00
    tuesday_noon = MON_12 + 86_400
    assert due(account, MON_12 + 1) == Decision(Action.WAIT, Reason.EMERGENCY_CREDIT, tuesday_noon)
    assert account.state is S.EMERGENCY_CREDIT
    assert account.history[-1].reason == "debt ₹20.00 within the emergency credit"
    assert due(account, tuesday_noon).disconnect_now
    account.recharge(tuesday_noon + 60, D("120.00"), "R2")  # 100, over 30% of 120
    assert account.state is S.IN_CREDIT
    assert due(account, tuesday_noon + 60) == Decision(Action.NONE, Reason.IN_CREDIT)


# --- emergency credit, the windows and the grace period ------------------------------


def test_emergency_credit_lasts_its_period_then_a_disconnection_is_due():
    account = prepaid("20.00", at=MON_10)
    account.charge(MON_12, D("30.00"), "energy")  # -10, within ₹50
    tuesday_noon = MON_12 + 86_400
    expected = Decision(Action.WAIT, Reason.EMERGENCY_CREDIT, tuesday_noon)
    assert due(account, MON_12) == expected
    assert due(account, tuesday_noon - 1) == expected
    assert account.state is S.EMERGENCY_CREDIT
    assert due(account, tuesday_noon) == Decision(Action.DISCONNECT, Reason.CREDIT_EXHAUSTED)
    assert account.state is S.DUE_DISCONNECTION
    assert account.history[-1].at == tuesday_noon
    assert "emergency credit period of 86400 s over" in account.history[-1].reason


def test_emergency_credit_ends_early_when_the_debt_passes_its_amount():
    account = prepaid("0.00", at=MON_10)
    account.charge(MON_12, D("50.00"), "energy")
    assert due(account, MON_12).reason is Reason.EMERGENCY_CREDIT  # ₹50 owed: still within
    account.charge(MON_12 + 300, D("0.01"), "energy")
    assert due(account, MON_12 + 300) == Decision(Action.DISCONNECT, Reason.CREDIT_EXHAUSTED)
    assert account.history[-1].reason == "debt ₹50.01 over the emergency credit of ₹50.00"


def test_a_due_disconnection_waits_for_the_allowed_hours():
    monday_20 = ist(2026, 3, 2, 20)
    wednesday_11 = ist(2026, 3, 4, 11)
    account = prepaid("0.00", at=MON_10)
    account.charge(monday_20, D("5.00"), "fixed charge")
    assert due(account, monday_20) == Decision(Action.WAIT, Reason.EMERGENCY_CREDIT, wednesday_11)
    tuesday_20 = monday_20 + 86_400
    assert due(account, tuesday_20) == Decision(Action.WAIT, Reason.OUTSIDE_HOURS, wednesday_11)
    assert account.state is S.DUE_DISCONNECTION
    assert due(account, wednesday_11).disconnect_now


@pytest.mark.parametrize(
    ("policy", "at", "reason", "until"),
    [
        (POLICY, ist(2026, 3, 8, 12), Reason.WEEKDAY, ist(2026, 3, 9, 11)),
        (
            DisconnectionPolicy(holidays=frozenset({date(2026, 3, 2)})),
            MON_12,
            Reason.HOLIDAY,
            ist(2026, 3, 3, 11),
        ),
        (
            DisconnectionPolicy(forbidden_hours=(HourWindow(start=13, end=14),)),
            ist(2026, 3, 2, 13, 30),
            Reason.FORBIDDEN_HOURS,
            ist(2026, 3, 2, 14),
        ),
        (POLICY, ist(2026, 3, 2, 7), Reason.OUTSIDE_HOURS, ist(2026, 3, 2, 11)),
    ],
)
def test_every_policy_reason_holds_a_due_disconnection(policy, at, reason, until):
    account = in_debt(at)
    assert due(account, at, policy) == Decision(Action.WAIT, reason, until)
    assert account.state is S.DUE_DISCONNECTION
    assert due(account, until, policy).disconnect_now


def test_no_disconnection_during_the_grace_period():
    switched = MON_12
    grace_until = POLICY.grace_until(switched)  # next Monday 12:00
    account = prepaid("10.00", at=switched, grace_until=grace_until)
    account.charge(switched + 600, D("20.00"), "energy")  # -10, emergency credit
    # both hold; the grace, the longer, is named
    assert due(account, switched + 600) == Decision(Action.WAIT, Reason.GRACE, grace_until)
    account.charge(switched + 3600, D("50.00"), "energy")  # -60: the emergency credit is over
    assert due(account, switched + 3600) == Decision(Action.WAIT, Reason.GRACE, grace_until)
    assert account.state is S.DUE_DISCONNECTION
    assert due(account, grace_until - 1).reason is Reason.GRACE
    assert due(account, grace_until).disconnect_now


def test_a_grace_period_ending_on_a_sunday_waits_for_monday():
    sunday_noon = ist(2026, 3, 1, 12)
    account = prepaid("0.00", at=sunday_noon, grace_until=POLICY.grace_until(sunday_noon))
    account.charge(sunday_noon + 1, D("60.00"), "energy")
    assert due(account, sunday_noon + 1) == Decision(Action.WAIT, Reason.GRACE, ist(2026, 3, 9, 11))


# --- disconnected, reconnected -------------------------------------------------------


def test_disconnected_then_recharged_then_reconnected():
    account = in_debt(MON_12)  # -60
    assert due(account, MON_12).disconnect_now
    account.disconnected(MON_12 + 300)
    assert account.state is S.DISCONNECTED
    assert not account.supply_on
    account.disconnected(MON_12 + 301)  # relay read back and control event: both confirm
    assert due(account, MON_12 + 400) == Decision(Action.NONE, Reason.DISCONNECTED)
    account.charge(ist(2026, 3, 3), D("5.00"), "fixed charge")  # -65: fixed charges go on
    account.recharge(ist(2026, 3, 3, 9), D("40.00"), "R1")  # -25
    account.recharge(ist(2026, 3, 3, 9, 5), D("25.00"), "R2")  # 0: debt paid, no credit
    assert account.state is S.DISCONNECTED
    account.recharge(ist(2026, 3, 3, 9, 10), D("500.00"), "R3")
    assert account.state is S.RECONNECT_PENDING
    assert due(account, ist(2026, 3, 3, 9, 10)) == Decision(Action.NONE, Reason.RECONNECT_PENDING)
    account.reconnected(ist(2026, 3, 3, 9, 11))
    account.reconnected(ist(2026, 3, 3, 9, 12))  # confirmed twice
    assert account.state is S.IN_CREDIT
    assert account.supply_on
    assert [(t.state, t.at) for t in account.history[2:]] == [
        (S.EMERGENCY_CREDIT, MON_12),
        (S.DUE_DISCONNECTION, MON_12),
        (S.DISCONNECTED, MON_12 + 300),
        (S.RECONNECT_PENDING, ist(2026, 3, 3, 9, 10)),
        (S.IN_CREDIT, ist(2026, 3, 3, 9, 11)),
    ]
    assert account.history[-1].reason == "reconnect confirmed, balance ₹500.00"


def test_a_recharge_that_overtakes_the_disconnect_command_gets_a_reconnect():
    account = in_debt(MON_12)
    assert due(account, MON_12).disconnect_now  # the engine sends the disconnect...
    account.recharge(MON_12 + 60, D("200.00"), "R1")  # ...the consumer pays meanwhile...
    assert account.state is S.IN_CREDIT
    account.disconnected(MON_12 + 120)  # ...and the relay opens anyway
    assert account.state is S.RECONNECT_PENDING
    assert account.history[-1].reason == "disconnect confirmed after a recharge"
    account.reconnected(MON_12 + 200)
    assert account.state is S.IN_CREDIT


def test_a_reconnection_outside_the_engine_leaves_the_debt_due():
    account = in_debt(MON_12)
    due(account, MON_12)
    account.disconnected(MON_12 + 300)
    account.reconnected(MON_12 + 3600)  # closed on site, still ₹60 owed
    assert account.state is S.EMERGENCY_CREDIT
    assert "without a recharge" in account.history[-1].reason
    assert due(account, MON_12 + 3600).disconnect_now  # the debt is over the emergency credit


def test_the_table_never_leads_back_to_postpaid_and_every_state_is_left():
    assert set(ALLOWED) == set(AccountState)
    assert all(S.POSTPAID not in targets for targets in ALLOWED.values())
    reached = set().union(*ALLOWED.values())
    assert reached == set(AccountState) - {S.POSTPAID}


# --- properties ------------------------------------------------------------------------

YEAR_START = ist(2026, 1, 1)

operations = st.lists(
    st.tuples(
        st.integers(1, 2 * 86_400),  # seconds since the last step
        st.sampled_from(["charge", "charge", "credit", "recharge", "confirm", "confirm", "wake"]),
        st.integers(1, 8_000),  # paise
        st.integers(0, 4),  # recharge reference: a repeat is a duplicate delivery
    ),
    min_size=10,
    max_size=50,
)


def check_decision(account: Account, policy: DisconnectionPolicy, at: float, decision: Decision):
    if decision.action is Action.DISCONNECT:
        assert account.state is S.DUE_DISCONNECTION
        assert account.grace_until is not None
        assert at >= account.grace_until  # never during the grace period
        assert policy.may_disconnect(at, INDIA).allowed  # never when the policy forbids
        assert account.balance < 0
        assert account.negative_since is not None
        emergency_over = at >= account.negative_since + policy.emergency_credit_period
        assert emergency_over or -account.balance > policy.emergency_credit_amount
    elif decision.action is Action.WAIT:
        assert account.state in (S.EMERGENCY_CREDIT, S.DUE_DISCONNECTION)
        assert decision.until is not None
        assert decision.until >= at
        # with nothing posted meanwhile, it is due at `until` and not a moment before
        assert due(copy.deepcopy(account), decision.until, policy).disconnect_now
        probes = [at + (decision.until - at) * f for f in (0, 0.3, 0.7)]
        probes += [p for p in (decision.until - 0.5, account.grace_until) if p is not None]
        for probe in probes:
            if at <= probe < decision.until:
                assert not due(copy.deepcopy(account), probe, policy).disconnect_now, probe
    else:
        assert account.state not in (S.EMERGENCY_CREDIT, S.DUE_DISCONNECTION)


def check_standing(account: Account):
    assert account.balance == sum(e.amount for e in account.ledger)
    low = account.alert_levels[0][1] if account.alert_levels else None
    match account.state:
        case S.IN_CREDIT:
            assert account.balance >= 0
            assert low is None or account.balance > low
        case S.LOW:
            assert low is not None
            assert 0 <= account.balance <= low
        case S.EMERGENCY_CREDIT | S.DUE_DISCONNECTION:
            assert account.balance < 0
        case S.DISCONNECTED:
            assert account.balance <= 0
    for before, after in itertools.pairwise(account.history):
        assert after.state in ALLOWED[before.state]
        assert after.state is not before.state


@settings(max_examples=400, deadline=None)
@given(
    policies(),
    st.integers(int(YEAR_START), int(YEAR_START) + 330 * 86_400),
    st.integers(-10_000, 50_000),  # opening balance, paise
    st.integers(0, 4 * 86_400),  # grace
    operations,
)
def test_the_engine_never_disconnects_when_it_must_not(policy, start, opening, grace, ops):
    policy = policy.model_copy(
        update={"emergency_credit_period": 43_200.0, "emergency_credit_amount": D("40.00")}
    )
    account = Account("C1", "SP0000001", opened_at=start - 1)
    opened = account.switch_to_prepaid(start, D(opening) / 100, start + grace)
    amounts = {ref: D(1000 + 10_000 * ref) / 100 for ref in range(5)}  # ₹10 to ₹410
    expected_balance = D(opening) / 100
    rearmed = dict.fromkeys(DEFAULT_THRESHOLDS, True)  # all armed at the switch...
    for alert in opened:  # ...and a low opening balance alerts at once
        rearmed[alert.threshold] = False
    t = float(start)
    last = due(account, t, policy)
    for gap, op, paise, ref in ops:
        # the engine sleeps until the instant a wait names, else time just passes
        t = last.until if op == "wake" and last.until is not None else t + gap
        alerts = []
        match op:
            case "charge":
                alerts = account.charge(t, D(paise) / 100, "energy")
                expected_balance -= D(paise) / 100
            case "credit":
                alerts = account.charge(t, -D(paise % 500) / 100, "TOD credit")
                expected_balance += D(paise % 500) / 100
            case "recharge":
                first = not account.recharged(f"R{ref}")
                alerts = account.recharge(t, amounts[ref], f"R{ref}")
                if first:
                    expected_balance += amounts[ref]
                    for share, level in account.alert_levels:
                        rearmed[share] = rearmed[share] or account.balance > level
                else:
                    assert alerts == []
            case "confirm":
                if last.disconnect_now:
                    account.disconnected(t)
                elif account.state is S.RECONNECT_PENDING:
                    account.reconnected(t)
        for alert in alerts:  # each threshold once per crossing, re-armed by a recharge
            assert rearmed[alert.threshold]
            assert alert.balance == account.balance <= alert.level
            rearmed[alert.threshold] = False
        for share, level in account.alert_levels:
            if account.balance <= level:
                assert not rearmed[share]  # crossed while armed: it must have alerted
        assert account.balance == expected_balance  # a duplicate reference credits nothing
        woken = op == "wake" and last.until is not None
        last = due(account, t, policy)
        event(f"{last.action} {last.reason}")
        assert last.disconnect_now or not woken  # nothing happened while it slept
        check_decision(account, policy, t, last)
        check_standing(account)
