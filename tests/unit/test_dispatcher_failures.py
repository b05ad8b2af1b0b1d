"""The dispatcher's failure paths, with a fake meter: nothing hangs, nothing is lost."""

import asyncio
import contextlib
import time
from pathlib import Path

from hes_sim.clock import ManualClock, SimClock
from hes_sim.errors import CodecError
from hes_sim.events import CommandFinished, Event, EventBus
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.commands.lifecycle import CommandState, CommandType, FailureReason, RetryPolicy
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.store import SqliteStore
from hes_sim.protocols import axdr
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.topics import MeterState
from hes_sim.protocols.xdlms import ActionResponse, DataAccessResult


class FakeMeter:
    def __init__(self, fail_times: int, error: Exception) -> None:
        self.fail_times = fail_times
        self.error = error
        self.actions = 0
        self.closed = True  # the relay: opened by the first disconnect that gets through

    async def action(self, _ref, _params=None) -> ActionResponse:
        self.actions += 1
        if self.actions <= self.fail_times:
            raise self.error
        self.closed = False
        return ActionResponse(0xC1, DataAccessResult.SUCCESS)

    async def get(self, _ref, _selection=None) -> Data:
        return Data(Tag.BOOLEAN, self.closed)


class FakeSessions:
    def __init__(self, meter: FakeMeter) -> None:
        self.meter = meter

    @contextlib.asynccontextmanager
    async def associate(self, _meter_id: str):
        yield self.meter


async def run(
    tmp_path: Path, meter: object, attempts: int, kind: CommandType = CommandType.DISCONNECT
):
    bus = EventBus()
    finished: list[Event] = []
    bus.subscribe(lambda e: finished.append(e) if isinstance(e, CommandFinished) else None)
    clock = SimClock(time.time(), time_scale=10_000)
    clock.start()
    presence = MeterPresence(ManualClock())
    presence.update("SP1", MeterState.ONLINE)
    policy = RetryPolicy(max_attempts=attempts, base_s=1, cap_s=2)
    async with (
        SqliteStore(tmp_path / "hes.sqlite") as store,
        CommandDispatcher(store, FakeSessions(meter), presence, clock, bus, retry=policy) as d,  # type: ignore[arg-type]
    ):
        command = await d.submit("SP1", kind)
        async with asyncio.timeout(10):
            done = await d.wait(command.command_id)
    return done, finished


async def test_a_garbled_answer_is_retried_then_succeeds(tmp_path: Path):
    meter = FakeMeter(fail_times=1, error=CodecError("xdlms", "garbled"))
    done, finished = await run(tmp_path, meter, attempts=3)
    assert done.state is CommandState.CONFIRMED
    assert done.attempts == 2
    assert len(finished) == 1


async def test_answers_that_never_make_sense_end_failed_not_hanging(tmp_path: Path):
    meter = FakeMeter(fail_times=99, error=CodecError("xdlms", "garbled"))
    done, finished = await run(tmp_path, meter, attempts=2)
    assert done.state is CommandState.FAILED
    assert done.failure is FailureReason.BAD_ANSWER
    assert [e.outcome for e in finished] == ["failed"]  # type: ignore[attr-defined]


async def test_a_bug_fails_the_command_and_the_dispatcher_carries_on(tmp_path: Path):
    meter = FakeMeter(fail_times=99, error=ZeroDivisionError("a bug"))
    done, finished = await run(tmp_path, meter, attempts=2)
    assert done.state is CommandState.FAILED
    assert done.failure is FailureReason.INTERNAL  # not "rejected": it was not refused
    assert done.attempts == 1  # a bug recurs: not retried
    assert len(finished) == 1


class MalformedProfile:
    """A meter whose instantaneous profile's capture objects are structures of three."""

    def __init__(self) -> None:
        self.gets = 0

    async def get(self, _ref, _selection=None) -> Data:
        self.gets += 1
        return axdr.array(axdr.structure(Data(Tag.LONG_UNSIGNED, 3), axdr.octets(bytes(6)),
                                         Data(Tag.INTEGER, 2)))  # fmt: skip


async def test_a_malformed_answer_is_a_bad_answer_retried_not_a_bug(tmp_path: Path):
    meter = MalformedProfile()
    done, finished = await run(tmp_path, meter, attempts=2, kind=CommandType.READ_INSTANTANEOUS)
    assert done.state is CommandState.FAILED
    assert done.failure is FailureReason.BAD_ANSWER
    assert done.attempts == 2
    assert "a capture object of 3 values, expected 4" in done.history[-1].detail
    assert meter.gets == 2
    assert len(finished) == 1
