"""Expected failures, however deeply task groups wrapped them, make one line; others none."""

from __future__ import annotations

import asyncio

import pytest

from hes_sim.cli_errors import start_failures
from hes_sim.errors import BrokerError, StoreError


def test_a_plain_expected_error_is_its_message():
    assert start_failures(BrokerError("no broker at mqtt://h:1")) == "no broker at mqtt://h:1"
    assert start_failures(OSError("address in use")) == "address in use"


def test_nested_groups_give_every_leaf_in_one_line():
    inner = ExceptionGroup("api", [BrokerError("no broker")])
    outer = ExceptionGroup("node", [ExceptionGroup("dispatcher", [inner]), StoreError("disk full")])
    assert start_failures(outer) == "no broker; disk full"


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("a bug"),
        ExceptionGroup("node", [BrokerError("no broker"), RuntimeError("a bug")]),
        BaseExceptionGroup("node", [BrokerError("no broker"), asyncio.CancelledError()]),
    ],
    ids=["plain", "mixed", "cancelled"],
)
def test_anything_else_keeps_its_traceback(exc: BaseException):
    assert start_failures(exc) is None
