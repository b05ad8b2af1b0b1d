"""Which due commands may start now. Pure: the dispatcher asks, then reports each end.

Three limits hold at once: ``concurrency`` commands in flight in all, one per meter (a
meter serves one association for the head-end), and ``per_cell_limit`` among the meters of
one cell, so a wave of commands does not storm one cell's radio while the others idle.
A meter with no cell (``cell_of`` gives None) counts against the first two only.

Reconnects go first, then by age. Going first is not enough when reads fill every slot
(a backfill wave): a reconnect would wait for a read to end. So routine commands (every
type but the relay switches) hold at most half of the slots, in all and in each cell, and
the other half is always left to relay commands: a reconnect finds a free slot soon. A
limit of 1 cannot be halved; it is shared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from hes_sim.hes.commands.lifecycle import Command, CommandType

RELAY_COMMANDS = frozenset({CommandType.DISCONNECT, CommandType.RECONNECT})


def routine_share(limit: int) -> int:
    """How many of ``limit`` slots routine commands may hold at once."""
    return max(1, limit // 2)


class Slots:
    def __init__(
        self,
        concurrency: int,
        per_cell_limit: int,
        cell_of: Callable[[str], str | None],
    ) -> None:
        if concurrency < 1 or per_cell_limit < 1:
            raise ValueError("concurrency and per_cell_limit must be at least 1")
        self._concurrency = concurrency
        self._per_cell_limit = per_cell_limit
        self._cell_of = cell_of
        self._busy_meters: set[str] = set()
        # command id -> (meter, cell, routine)
        self._running: dict[str, tuple[str, str | None, bool]] = {}
        self._per_cell: Counter[str] = Counter()
        self._routine = 0
        self._routine_per_cell: Counter[str] = Counter()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def routine_running(self) -> int:
        return self._routine

    def is_running(self, command_id: str) -> bool:
        return command_id in self._running

    def in_cell(self, cell: str) -> int:
        return self._per_cell[cell]

    def take(self, due: Iterable[Command]) -> list[Command]:
        """The commands of ``due`` that start now, their slots taken."""
        started: list[Command] = []
        for command in sorted(due, key=lambda c: (c.priority, c.created_at)):
            if len(self._running) >= self._concurrency:
                break
            if command.meter_id in self._busy_meters or command.command_id in self._running:
                continue
            routine = command.type not in RELAY_COMMANDS
            if routine and self._routine >= routine_share(self._concurrency):
                continue  # the rest is kept for relay commands
            # asked once per start and kept: a cell map that changes meanwhile cannot
            # make the count go wrong
            cell = self._cell_of(command.meter_id)
            if cell is not None and not self._cell_has_room(cell, routine=routine):
                continue  # a later command of another cell may still start
            self._busy_meters.add(command.meter_id)
            self._running[command.command_id] = (command.meter_id, cell, routine)
            self._routine += routine
            if cell is not None:
                self._per_cell[cell] += 1
                self._routine_per_cell[cell] += routine
            started.append(command)
        return started

    def _cell_has_room(self, cell: str, *, routine: bool) -> bool:
        if self._per_cell[cell] >= self._per_cell_limit:
            return False
        return not routine or self._routine_per_cell[cell] < routine_share(self._per_cell_limit)

    def release(self, command_id: str) -> None:
        taken = self._running.pop(command_id, None)
        if taken is None:
            return
        meter_id, cell, routine = taken
        self._busy_meters.discard(meter_id)
        self._routine -= routine
        if cell is not None:
            _decrement(self._per_cell, cell, 1)
            _decrement(self._routine_per_cell, cell, int(routine))


def _decrement(counter: Counter[str], key: str, by: int) -> None:
    counter[key] -= by
    if counter[key] <= 0:
        del counter[key]
