"""Any :class:`MeterLink` as a :class:`ListeningLink`, for the meter runtime.

A lean link tells its meter of each frame itself, so an idle meter holds no task. A link
that can only be iterated (aiomqtt's, or a test's wrapper around one) gets one reader
task here while its meter listens; such a link's client holds tasks of its own anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

from hes_sim.errors import BrokerError
from hes_sim.meter_sim.transport import LinkListener, ListeningLink, MeterLink

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


# An isinstance check against a runtime-checkable protocol looks up each of its members,
# a cost every connect paid; the answer depends on the link's class (the members are
# methods), so it is worked out once per class.
_LISTENS: dict[type, bool] = {}


def listening(link: MeterLink, spawn: Spawn) -> ListeningLink:
    """``link`` itself if it can tell its listener of frames, else ``link`` read by a task
    made with ``spawn`` (so that whoever owns the meters' tasks owns that one too)."""
    kind = type(link)
    listens = _LISTENS.get(kind)
    if listens is None:
        listens = _LISTENS[kind] = isinstance(link, ListeningLink)
    return cast(ListeningLink, link) if listens else PumpedLink(link, spawn)


class PumpedLink:
    """A link read by a task (while someone listens) into a queue of frames."""

    def __init__(self, link: MeterLink, spawn: Spawn) -> None:
        self._link = link
        self._spawn = spawn
        self.connect_wall_s = link.connect_wall_s
        self._frames: deque[bytes] = deque()
        self._failure: Exception | None = None
        self._listener: LinkListener | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[None] | None = None  # made by a send, set by the reader

    async def send(self, frame: bytes) -> None:
        """Send, or fail as soon as the reader finds the link lost: a publish on a link
        gone silent would otherwise wait for its own timeout (the meter's old receive
        task ended it the same way, by cancelling the send)."""
        if self._failure is not None:
            raise self._failure
        if self._lost is None or self._lost.done():
            self._lost = asyncio.get_running_loop().create_future()
        sending = asyncio.ensure_future(self._link.send(frame))
        try:
            await asyncio.wait((sending, self._lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sending.done():
                sending.cancel()
        if sending.done() and not sending.cancelled():
            return sending.result()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sending  # cancelled: collected, so nothing is left unretrieved
        raise self._failure or BrokerError("the link was lost during a send")

    def receive(self) -> AsyncIterator[bytes]:
        return self._link.receive()

    def abandon(self) -> None:
        self._link.abandon()

    def listen(self, listener: LinkListener | None) -> None:
        self._listener = listener
        if listener is None:
            if self._reader is not None:
                self._reader.cancel()  # its owner awaits it; nothing more is read
                self._reader = None
        elif self._reader is None:
            self._reader = self._spawn(self._read(), "meter-link:reader")

    def take(self) -> bytes | None:
        if self._frames:
            return self._frames.popleft()
        if self._failure is not None:
            raise self._failure
        return None

    async def _read(self) -> None:
        try:
            async for frame in self._link.receive():
                self._frames.append(frame)
                self._tell()
        except Exception as exc:  # noqa: BLE001 - handed on, raised by the meter's take()
            # a lost link (BrokerError), or a bug: the meter meets it at its next take(),
            # or in the send it is waiting on
            self._failure = exc
            if self._lost is not None and not self._lost.done():
                self._lost.set_result(None)
            self._tell()

    def _tell(self) -> None:
        if self._listener is not None:
            self._listener.link_event()
