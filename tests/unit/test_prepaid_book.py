"""The account book replays its journal to exactly where the live book stood."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hes_sim.errors import HesSimError
from hes_sim.hes.billing import load_tariff
from hes_sim.hes.commands.lifecycle import INDIA
from hes_sim.hes.prepaid.account import AccountState
from hes_sim.hes.prepaid.book import AccountBook
from hes_sim.hes.prepaid.policy import DisconnectionPolicy

ROOT = Path(__file__).resolve().parents[2]
UP = load_tariff(ROOT / "config" / "tariffs" / "up-lmv1-domestic-urban.yaml")
START = datetime(2026, 3, 2, 9, tzinfo=INDIA).timestamp()  # a Monday
METERS = ["SP01", "SP02"]


def new_book() -> AccountBook:
    book = AccountBook(UP, DisconnectionPolicy(), INDIA)
    book.open(METERS, START - 86_400)
    return book


def snapshot(book: AccountBook) -> dict[str, object]:
    return {
        meter: (
            account.state,
            account.balance,
            account.history,
            account.ledger,
            book.alerts(meter),
            book.fixed_through(meter),
        )
        for meter, account in book.accounts.items()
    } | {"commands": (dict(book.disconnecting), dict(book.reconnecting))}


steps = st.lists(
    st.tuples(
        st.sampled_from(["read", "read", "read", "fixed", "recharge", "judge", "command"]),
        st.sampled_from(METERS),
        st.integers(0, 9_000),  # Wh, or the recharge in rupees
        st.booleans(),  # a command confirmed (else failed); a recharge reference repeated
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_a_replayed_journal_ends_where_the_live_book_stood(
    plan: list[tuple[str, str, int, bool]],
) -> None:
    live = new_book()
    for meter in METERS:
        live.switch(meter, START, Decimal("20.00"), START + 3_600)
    at, end, commands = START, int(START) // 900 * 900, 0
    for kind, meter, value, flag in plan:
        at += 3_600
        try:
            match kind:
                case "read":
                    end += 900
                    live.charge_read(meter, at, end, value)
                case "fixed":
                    day = (live.fixed_through(meter) or date(2026, 3, 1)).toordinal() + 1
                    live.fixed(meter, at, date.fromordinal(day), Decimal("7.33"))
                case "recharge":
                    reference = "R-same" if flag else f"R-{at}"
                    live.recharge(meter, at, Decimal(max(value, 1)), reference)
                case "judge":
                    live.judge(meter, at)
                case "command":
                    commands += 1
                    command_id = f"cmd-{commands}"
                    if live.accounts[meter].state is AccountState.RECONNECT_PENDING:
                        live.reconnect_sent(meter, at, command_id)
                    else:
                        live.disconnect_sent(meter, at, command_id)
                    if flag:
                        live.confirmed(command_id, at + 60)
                    else:
                        live.failed(command_id, at + 60)
        except HesSimError:
            pass  # a step the account refuses is not kept
    replayed = new_book()
    replayed.replay(list(live.unsaved))
    assert snapshot(replayed) == snapshot(live)
    assert replayed.raised == []  # raised when they happened, not again


def test_a_read_is_charged_once_and_never_before_the_switch() -> None:
    book = new_book()
    end = int(START) // 900 * 900
    assert not book.charge_read("SP01", START, end + 900, 500)  # still postpaid
    book.switch("SP01", START, Decimal("100.00"), START)
    assert not book.charge_read("SP01", START, end, 500)  # consumed before the switch
    assert book.charge_read("SP01", START + 900, end + 900, 500)
    balance = book.accounts["SP01"].balance
    assert balance < Decimal("100.00")
    assert not book.charge_read("SP01", START + 900, end + 900, 500)  # again: nothing
    assert book.accounts["SP01"].balance == balance


def test_a_read_of_a_month_already_closed_is_not_charged() -> None:
    book = new_book()
    book.switch("SP01", START, Decimal("100.00"), START)
    april = int(datetime(2026, 4, 1, 1, tzinfo=INDIA).timestamp())
    assert book.charge_read("SP01", april, april, 400)
    assert not book.charge_read("SP01", april, int(START) + 900, 400)
