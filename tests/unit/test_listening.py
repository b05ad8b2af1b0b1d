"""A link read by a task, seen by the meter runtime as a listening link."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from hes_sim.errors import BrokerError
from hes_sim.meter_sim.listening import PumpedLink


class SilentLink:
    """A link whose publish never gets its acknowledgement, and whose reader learns the
    link is lost when the test says so (as a keep-alive would)."""

    connect_wall_s = 0.0

    def __init__(self) -> None:
        self.lost = asyncio.Event()
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.send_cancelled = False

    async def send(self, frame: bytes) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.send_cancelled = True
            raise

    async def receive(self) -> AsyncIterator[bytes]:
        while True:
            getting = asyncio.ensure_future(self.frames.get())
            losing = asyncio.ensure_future(self.lost.wait())
            try:
                await asyncio.wait((getting, losing), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (getting, losing):
                    if not waiter.done():
                        waiter.cancel()
            if losing.done() and not losing.cancelled():
                raise BrokerError("keep-alive: no answer from the broker")
            yield getting.result()

    def abandon(self) -> None:
        pass


class Listener:
    def __init__(self) -> None:
        self.events = 0

    def link_event(self) -> None:
        self.events += 1


def _spawn(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(work, name=name)


async def test_a_send_on_a_link_found_lost_fails_at_once() -> None:
    raw, listener = SilentLink(), Listener()
    link = PumpedLink(raw, _spawn)
    link.listen(listener)
    sending = asyncio.create_task(link.send(b"push"))
    await asyncio.sleep(0.01)
    assert not sending.done()  # waiting for its acknowledgement
    raw.lost.set()
    async with asyncio.timeout(1):
        with pytest.raises(BrokerError, match="keep-alive"):
            await sending
    assert raw.send_cancelled
    assert listener.events == 1
    with pytest.raises(BrokerError):
        link.take()
    with pytest.raises(BrokerError):
        await link.send(b"again")  # and any later send, without waiting


async def test_frames_are_queued_for_take_and_each_tells_the_listener() -> None:
    raw, listener = SilentLink(), Listener()
    link = PumpedLink(raw, _spawn)
    link.listen(listener)
    raw.frames.put_nowait(b"one")
    raw.frames.put_nowait(b"two")
    await asyncio.sleep(0.01)
    assert listener.events == 2
    assert (link.take(), link.take(), link.take()) == (b"one", b"two", None)
    link.listen(None)  # stops the reader
    for _ in range(3):
        await asyncio.sleep(0)
