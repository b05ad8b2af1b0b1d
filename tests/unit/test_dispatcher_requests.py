"""What the dispatcher takes and gives back: deadlines it can keep, an idempotency key that
names one request, and every waiter of a command told its end (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from hes_sim.clock import ManualClock, SimClock
from hes_sim.events import EventBus
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.commands.lifecycle import CommandState, CommandType
from hes_sim.hes.operations import IdempotencyConflictError, InvalidRequestError
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.store import SqlStore
from hes_sim.hes.store_factory import open_store
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.topics import MeterState
from hes_sim.protocols.xdlms import ActionResponse, DataAccessResult, Reference

NOW = time.time()
WINDOW = {"profile": "block_load", "start": NOW - 7200, "end": NOW - 3600}


class HeldRelay:
    """Switches once the test opens ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()
        self.closed = True

    @contextlib.asynccontextmanager
    async def associate(self, _meter_id: str) -> AsyncIterator[HeldRelay]:
        yield self

    async def action(self, ref: Reference, _params: Data | None = None) -> ActionResponse:
        self.asked.set()
        await self.gate.wait()
        self.closed = ref.index == 2
        return ActionResponse(0xC1, DataAccessResult.SUCCESS)

    async def get(self, _ref: Reference, _selection: object = None) -> Data:
        return Data(Tag.BOOLEAN, self.closed)


@contextlib.asynccontextmanager
async def dispatcher(
    location: str, relay: HeldRelay
) -> AsyncIterator[tuple[CommandDispatcher, SqlStore]]:
    clock = SimClock(NOW, time_scale=10_000)
    clock.start()
    presence = MeterPresence(ManualClock())
    presence.update("SP1", MeterState.ONLINE)
    async with (
        open_store(location) as store,
        CommandDispatcher(store, relay, presence, clock, EventBus()) as running,  # type: ignore[arg-type]
    ):
        yield running, store


async def count(store: SqlStore) -> int:
    (n,) = await store.run_sql(lambda db: db.execute("SELECT count(*) FROM commands").fetchone())
    return int(n)


@pytest.mark.parametrize("deadline_s", [0.0, -5.0, float("inf"), float("nan"), 1e300,
                                        30 * 86_400 + 1])  # fmt: skip
async def test_a_deadline_it_cannot_keep_is_refused_before_storing(store_location: str, deadline_s):
    async with dispatcher(store_location, HeldRelay()) as (d, store):
        with pytest.raises(InvalidRequestError, match="deadline_s"):
            await d.submit("SP9", CommandType.RECONNECT, deadline_s=deadline_s)
        assert await count(store) == 0
        month = await d.submit("SP9", CommandType.RECONNECT, deadline_s=30 * 86_400)
    assert month.deadline == month.created_at + 30 * 86_400


async def test_a_key_names_one_request(store_location: str):
    async with dispatcher(store_location, HeldRelay()) as (d, store):
        first = await d.submit(
            "SP9", CommandType.READ_PROFILE, idempotency_key="k", parameters=WINDOW
        )
        again = await d.submit(
            "SP9", CommandType.READ_PROFILE, idempotency_key="k", parameters=dict(WINDOW)
        )
        assert again is first  # the same request: the command it made
        others = [
            ("SP8", CommandType.READ_PROFILE, WINDOW),  # another meter
            ("SP9", CommandType.READ_INSTANTANEOUS, {}),  # another type
            ("SP9", CommandType.READ_PROFILE, {**WINDOW, "end": WINDOW["end"] + 900}),
        ]
        for meter_id, kind, parameters in others:
            with pytest.raises(IdempotencyConflictError, match=first.command_id) as refused:
                await d.submit(meter_id, kind, idempotency_key="k", parameters=parameters)
            assert refused.value.command_id == first.command_id
        assert await count(store) == 1


async def test_a_cancelled_waiter_leaves_the_others_waiting(store_location: str):
    relay = HeldRelay()
    async with dispatcher(store_location, relay) as (d, _store):
        command = await d.submit("SP1", CommandType.DISCONNECT)
        impatient = asyncio.create_task(d.wait(command.command_id))
        patient = asyncio.create_task(d.wait(command.command_id))
        async with asyncio.timeout(5):
            await relay.asked.wait()  # both waiters are waiting by now: they ran first
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        relay.gate.set()
        async with asyncio.timeout(5):
            done = await patient
        late = await d.wait(command.command_id)  # after the end: from the store
    assert done.state is CommandState.CONFIRMED
    assert late.state is CommandState.CONFIRMED
