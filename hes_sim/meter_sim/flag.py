"""A flag to wait on, like :class:`asyncio.Event`, for objects kept by the hundred
thousand: it holds no waiter queue until someone waits (an Event allocates a deque up
front, about 800 bytes; a meter keeps four)."""

from __future__ import annotations

import asyncio


class Tally:
    """How many of the flags that share it are set, kept as they change: a fleet process
    that counted its meters' flags for every status (four a second while anything
    happens) spent a tenth of its time on it during a cold start."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Flag:
    __slots__ = ("_set", "_tally", "_waiters")

    def __init__(self, value: bool = False, *, tally: Tally | None = None) -> None:
        self._set = value
        self._tally = tally
        self._waiters: list[asyncio.Future[None]] | None = None
        if value and tally is not None:
            tally.count += 1

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self._tally is not None:
            self._tally.count += 1
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        if self._set and self._tally is not None:
            self._tally.count -= 1
        self._set = False

    async def wait(self) -> None:
        """Until set (at once if set now); cancelling the wait leaves the flag as it is."""
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None
