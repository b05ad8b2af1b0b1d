"""Pushes received and not yet stored: a bounded buffer and the loop that empties it.

The readers put pushes in as they come off the socket; when the buffer is full, ``pause``
is called (the owner stops reading, so the broker keeps the backlog) and ``resume`` once
it is half empty. The loop decodes a batch while the store writes the one before (on
the store's thread, unless the store runs on the loop's, as in an ingest worker); one
write at a time, so outcomes are reported in the order received.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from hes_sim.hes.ingest import InboundPush, Ingest


class IngestQueue:
    def __init__(
        self,
        ingest: Ingest,
        *,
        size: int,
        batch_size: int,
        pause: Callable[[], None],
        resume: Callable[[], None],
    ) -> None:
        self._ingest = ingest
        self._size = size
        self._batch_size = batch_size
        self._pause = pause
        self._resume = resume
        self._pending: deque[InboundPush] = deque()
        self._arrived = asyncio.Event()  # set while something is pending
        self._idle = asyncio.Event()  # set while nothing is pending or being stored
        self._idle.set()
        self.paused = False  # whether reading is paused for room

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, push: InboundPush) -> None:
        self._pending.append(push)
        self._idle.clear()
        self._arrived.set()
        if len(self._pending) >= self._size and not self.paused:
            self.paused = True
            self._pause()

    async def drained(self) -> None:
        """Until every push put so far has been decoded and stored."""
        await self._idle.wait()

    async def run(self) -> None:
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                if writing is not None and not self._pending:
                    await writing  # nothing to decode meanwhile
                    writing = None
                    if not self._pending:
                        self._idle.set()
                    continue
                await self._arrived.wait()
                decoded = self._ingest.decode_batch(self._take_batch())
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self._ingest.store(decoded), name="hes:store")
        finally:
            if writing is not None:
                writing.cancel()

    def _take_batch(self) -> list[InboundPush]:
        pending = self._pending
        batch = [pending.popleft() for _ in range(min(self._batch_size, len(pending)))]
        if not pending:
            self._arrived.clear()
        if self.paused and len(pending) <= self._size // 2:
            self.paused = False
            self._resume()
        return batch
