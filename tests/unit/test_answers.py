"""Which answer belongs to which request, after timeouts, late answers and lost requests."""

from __future__ import annotations

import pytest

from hes_sim.errors import CodecError
from hes_sim.hes.answers import LATE_ANSWER_WINDOW, PendingAnswers, Verdict, answers_to
from hes_sim.protocols.acse import AARE, AARQ
from hes_sim.protocols.security import CipheredTag
from hes_sim.protocols.xdlms import EXCEPTION_RESPONSE

M = "SP0000001"
TIMEOUT = 10.0
AARQ_APDU = bytes([AARQ, 0x01])
AARE_APDU = bytes([AARE, 0x02])
GET_APDU = bytes([CipheredTag.GLO_GET_REQUEST, 0x03])
GET_ANSWER = bytes([CipheredTag.GLO_GET_RESPONSE, 0x04])


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def timed_out(answers: PendingAnswers, request: bytes) -> None:
    answers.expect(M, request)
    answers.give_up(M, TIMEOUT)
    answers.done(M)


async def test_the_answer_waited_for_is_handed_over():
    answers = PendingAnswers(Clock())
    future = answers.expect(M, AARQ_APDU)
    assert answers.take(M, AARE_APDU) is Verdict.ANSWER
    assert future.result() == AARE_APDU


async def test_a_late_answer_of_the_same_kind_is_dropped_and_the_next_one_taken():
    answers = PendingAnswers(Clock())
    timed_out(answers, GET_APDU)  # its answer is on its way, late
    future = answers.expect(M, GET_APDU)  # the retry
    assert answers.take(M, GET_ANSWER) is Verdict.LATE
    assert not future.done()
    assert answers.take(M, GET_ANSWER) is Verdict.ANSWER
    assert future.done()


async def test_a_late_answer_of_another_kind_does_not_cost_the_waiting_request_its_own():
    answers = PendingAnswers(Clock())
    timed_out(answers, GET_APDU)
    future = answers.expect(M, AARQ_APDU)  # a new association after the timeout
    assert answers.take(M, AARE_APDU) is Verdict.ANSWER  # before the late one: still ours
    assert future.result() == AARE_APDU
    answers.done(M)
    assert answers.take(M, GET_ANSWER) is Verdict.LATE  # the late one, when it comes


async def test_after_a_lost_request_only_one_retry_loses_its_answer():
    answers = PendingAnswers(Clock())
    timed_out(answers, AARQ_APDU)  # lost outright: no answer will ever come
    retry = answers.expect(M, AARQ_APDU)
    assert answers.take(M, AARE_APDU) is Verdict.LATE  # taken for the lost one's
    answers.give_up(M, TIMEOUT)  # so this retry times out too...
    answers.done(M)
    assert not retry.done()
    again = answers.expect(M, AARQ_APDU)  # ...but owes nothing: the next one gets through
    assert answers.take(M, AARE_APDU) is Verdict.ANSWER
    assert again.result() == AARE_APDU


async def test_an_owed_answer_is_forgotten_after_its_window():
    clock = Clock()
    answers = PendingAnswers(clock)
    timed_out(answers, GET_APDU)
    clock.t += LATE_ANSWER_WINDOW * TIMEOUT + 1
    future = answers.expect(M, GET_APDU)
    assert answers.take(M, GET_ANSWER) is Verdict.ANSWER
    assert future.done()


async def test_an_answer_nobody_asked_for_is_unsolicited():
    answers = PendingAnswers(Clock())
    assert answers.take(M, AARE_APDU) is Verdict.UNSOLICITED
    answers.expect(M, AARQ_APDU)
    assert answers.take(M, GET_ANSWER) is Verdict.UNSOLICITED  # not its kind, none owed


async def test_an_exception_response_answers_any_request():
    answers = PendingAnswers(Clock())
    future = answers.expect(M, GET_APDU)
    assert answers.take(M, bytes([EXCEPTION_RESPONSE, 1, 2])) is Verdict.ANSWER
    assert future.done()


async def test_one_request_at_a_time_and_an_unreadable_answer_fails_it():
    answers = PendingAnswers(Clock())
    future = answers.expect(M, GET_APDU)
    with pytest.raises(RuntimeError, match="already outstanding"):
        answers.expect(M, GET_APDU)
    assert answers.fail(M, CodecError("wrapper", "garbled"))
    with pytest.raises(CodecError):
        future.result()
    answers.done(M)
    assert not answers.fail(M, CodecError("wrapper", "garbled"))  # nobody waits now


def test_a_request_of_an_unknown_kind_takes_any_answer():
    assert answers_to(b"\x01\x02") is None
    assert answers_to(b"") is None
    assert answers_to(GET_APDU) == {CipheredTag.GLO_GET_RESPONSE, EXCEPTION_RESPONSE, 0x0E}
