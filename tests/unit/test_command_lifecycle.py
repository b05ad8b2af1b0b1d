import itertools
import random

import pytest

from hes_sim.hes.commands.lifecycle import (
    Command,
    CommandState,
    CommandType,
    FailureReason,
    InvalidTransition,
    RetryPolicy,
)

S = CommandState
POLICY = RetryPolicy(max_attempts=3, base_s=30, cap_s=300)


def command(kind: CommandType = CommandType.RECONNECT, deadline: float = 10_000) -> Command:
    return Command("c1", "SP0000001", kind, "key-1", created_at=100.0, deadline=deadline)


def test_happy_path_keeps_an_audit_trail():
    c = command()
    c.queue(101)
    c.send(102)
    c.acknowledge(103, "action-result success")
    c.confirm(104, "output_state true")
    assert c.done
    assert [(t.state, t.at) for t in c.history] == [
        (S.CREATED, 100), (S.QUEUED, 101), (S.SENT, 102), (S.ACKNOWLEDGED, 103),
        (S.CONFIRMED, 104),
    ]  # fmt: skip
    assert c.attempts == 1


def test_timeouts_are_retried_with_growing_jittered_backoff_then_fail():
    c = command()
    rng = random.Random(1)
    c.queue(100)
    retries = []
    for attempt in range(3):
        c.send(c.next_attempt_at)
        c.fail(c.next_attempt_at + 5, FailureReason.TIMEOUT, POLICY, rng, "no answer")
        if c.state is S.QUEUED:
            retries.append(c.next_attempt_at)
        assert c.attempts == attempt + 1
    assert c.state is S.FAILED
    assert c.failure is FailureReason.TIMEOUT
    assert len(retries) == 2
    assert all(b > a for a, b in itertools.pairwise(retries))


def test_negative_response_is_not_retried():
    c = command(CommandType.DISCONNECT)
    c.queue(100)
    c.send(101)
    c.fail(102, FailureReason.NEGATIVE_RESPONSE, POLICY, random.Random(1), "read-write-denied")
    assert c.state is S.FAILED
    assert c.failure is FailureReason.NEGATIVE_RESPONSE


def test_no_retry_beyond_the_deadline_and_expiry():
    c = command(deadline=120)
    c.queue(100)
    c.send(101)
    c.fail(119, FailureReason.LINK_DOWN, POLICY, random.Random(3), "broker gone")
    assert c.state in (S.QUEUED, S.FAILED)
    fresh = command(deadline=200)
    fresh.queue(100)
    assert not fresh.expire_if_due(199)
    assert fresh.expire_if_due(200)
    assert fresh.state is S.EXPIRED
    assert not fresh.expire_if_due(300)  # terminal stays terminal


@pytest.mark.parametrize(
    "steps",
    [
        ("confirm",),  # created -> confirmed
        ("queue", "acknowledge"),  # queued -> acknowledged
        ("queue", "send", "acknowledge", "confirm", "queue"),  # out of a terminal state
    ],
)
def test_invalid_transitions_are_refused(steps: tuple[str, ...]):
    c = command()
    *allowed, refused = steps
    for step in allowed:
        getattr(c, step)(150)
    with pytest.raises(InvalidTransition):
        getattr(c, refused)(150)


def test_reconnect_goes_before_reads():
    reconnect = command(CommandType.RECONNECT)
    read = command(CommandType.READ_PROFILE)
    assert sorted([read, reconnect], key=lambda c: c.priority)[0] is reconnect


def test_an_attempt_can_say_what_it_does_first():
    c = command()
    c.queue(101)
    c.send(102)
    c.fail(103, FailureReason.TIMEOUT, POLICY, random.Random(1), "no answer")
    c.send(200, "reading the relay first")
    assert c.history[2].detail == "attempt 1"
    assert c.history[-1].detail == "attempt 2: reading the relay first"
    assert c.result is None  # until a command has an answer to keep


@pytest.mark.parametrize(
    ("steps", "mid_attempt", "detail"),
    [
        ((), False, "head-end restarted before queueing it"),
        (("queue",), False, ""),
        (("queue", "send"), True, "head-end restarted during attempt 1"),
        (("queue", "send", "acknowledge"), True, "head-end restarted during attempt 1"),
    ],
)
def test_every_open_state_resumes_queued_after_a_restart(
    steps: tuple[str, ...], mid_attempt: bool, detail: str
):
    c = command()
    for step in steps:
        getattr(c, step)(150)
    assert c.resume(200) is mid_attempt
    assert c.state is S.QUEUED
    assert c.history[-1].detail == detail
    c.send(201)  # each can be sent again
    assert c.attempts == len([s for s in steps if s == "send"]) + 1


def test_a_withdrawn_attempt_is_not_counted():
    c = command()
    c.queue(101)
    c.send(102)
    c.withdraw(103, 133, "the store failed")
    assert (c.state, c.attempts, c.next_attempt_at) == (S.QUEUED, 0, 133)
    assert c.history[-1].detail == "not sent: the store failed; retry at 133"
    with pytest.raises(InvalidTransition):
        c.withdraw(104, 134, "only a sent command")


def test_an_internal_error_is_not_retried():
    c = command()
    c.queue(101)
    c.send(102)
    c.fail(103, FailureReason.INTERNAL, POLICY, random.Random(1), "a bug")
    assert c.state is S.FAILED
    assert c.failure is FailureReason.INTERNAL
