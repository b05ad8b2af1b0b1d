"""Commands and their audit trail in the store (each test on SQLite and PostgreSQL)."""

import random
from functools import partial

from hes_sim.hes.commands import store as commands
from hes_sim.hes.commands.lifecycle import (
    Command,
    CommandState,
    CommandType,
    FailureReason,
    RetryPolicy,
)
from hes_sim.hes.store_factory import open_store


def command(key: str, kind: CommandType = CommandType.RECONNECT, meter: str = "SP1") -> Command:
    return Command(f"cmd-{key}", meter, kind, key, created_at=10.0, deadline=5000.0,
                   parameters={"why": "recharge"})  # fmt: skip


async def test_commands_and_their_audit_trail_survive_a_reopen(store_location: str):
    async with open_store(store_location) as store:
        c = await store.run_sql(partial(commands.insert, command=command("a")))
        c.queue(11)
        c.send(12)
        c.fail(13, FailureReason.TIMEOUT, RetryPolicy(), random.Random(1), "no answer")
        await store.run_sql(partial(commands.save, command=c))
    async with open_store(store_location) as store:  # a restarted head-end
        again = await store.run_sql(partial(commands.load, command_id="cmd-a"))
    assert again is not None
    assert again.state is CommandState.QUEUED
    assert again.attempts == 1
    assert again.parameters == {"why": "recharge"}
    assert [t.state for t in again.history] == [
        CommandState.CREATED, CommandState.QUEUED, CommandState.SENT, CommandState.QUEUED,
    ]  # fmt: skip
    assert again.next_attempt_at == c.next_attempt_at


async def test_the_same_idempotency_key_gives_the_first_command(store_location: str):
    async with open_store(store_location) as store:
        first = await store.run_sql(partial(commands.insert, command=command("k")))
        second = Command("cmd-other", "SP1", CommandType.RECONNECT, "k", 20.0, 6000.0)
        returned = await store.run_sql(partial(commands.insert, command=second))
        assert returned.command_id == first.command_id
        assert await store.run_sql(partial(commands.load, command_id="cmd-other")) is None


async def test_open_commands_by_priority_and_terminal_ones_left_out(store_location: str):
    async with open_store(store_location) as store:
        read = command("r", CommandType.READ_PROFILE)
        reconnect = command("c", CommandType.RECONNECT)
        done = command("d", CommandType.DISCONNECT)
        for c in (read, reconnect, done):
            await store.run_sql(partial(commands.insert, command=c))
        done.queue(11)
        done.send(12)
        done.acknowledge(13)
        done.confirm(14)
        await store.run_sql(partial(commands.save, command=done))
        pending = await store.run_sql(commands.open_commands)
    assert [c.command_id for c in pending] == ["cmd-c", "cmd-r"]


async def test_a_result_is_saved_and_loaded_with_the_command(store_location: str):
    async with open_store(store_location) as store:
        c = await store.run_sql(
            partial(commands.insert, command=command("res", CommandType.READ_INSTANTANEOUS))
        )
        assert (await store.run_sql(partial(commands.load, command_id="cmd-res"))).result is None  # type: ignore[union-attr]
        c.queue(11)
        c.send(12)
        c.result = {"voltage_v": 231.4, "energy_import_wh": 12345, "meter_time": 1.5e9}
        c.acknowledge(13, "10 values read")
        c.confirm(13)
        await store.run_sql(partial(commands.save, command=c))
    async with open_store(store_location) as store:
        again = await store.run_sql(partial(commands.load, command_id="cmd-res"))
    assert again is not None
    assert again.result == {"voltage_v": 231.4, "energy_import_wh": 12345, "meter_time": 1.5e9}
    assert again.state is CommandState.CONFIRMED


async def test_open_commands_hold_every_open_state(store_location: str):
    async with open_store(store_location) as store:
        made = [command(key, meter=f"SP{key}") for key in "1234"]
        for c in made:
            await store.run_sql(partial(commands.insert, command=c))
        steps = [(), ("queue",), ("queue", "send"), ("queue", "send", "acknowledge")]
        for c, taken in zip(made, steps, strict=True):
            for step in taken:
                getattr(c, step)(11)
            await store.run_sql(partial(commands.save, command=c))
        pending = await store.run_sql(commands.open_commands)
    assert sorted(c.state for c in pending) == sorted(
        [CommandState.CREATED, CommandState.QUEUED, CommandState.SENT, CommandState.ACKNOWLEDGED]
    )
