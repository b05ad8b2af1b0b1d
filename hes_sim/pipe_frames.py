"""Messages between this program's own processes, framed on a pipe.

Both ends are this program: a frame is a pickle (messages are frozen dataclasses) behind
a 4-byte length. A frame that does not decode, or holds a message of a kind the reader
does not expect, raises the reader's error, never crashes its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import structlog

from hes_sim.logging import configure_logging

_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
DRAIN_TIMEOUT_S = 10.0  # at exit, for the parent to take the last frames


def frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def read_frame(
    reader: asyncio.StreamReader,
    kinds: tuple[type, ...],
    error: type[Exception],
    peer: str,
) -> object | None:
    """The next message (one of ``kinds``), or None at the end of the stream; ``error``
    (naming the ``peer``) for anything else."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise error(f"a {peer} pipe ended inside a frame header") from exc
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME:
        raise error(f"a {peer} frame of {length} bytes is over the limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise error(f"a {peer} pipe ended inside a frame") from exc
    try:
        message = pickle.loads(body)  # noqa: S301 - both ends are this program, on a pipe
    except Exception as exc:  # a damaged pickle raises errors of many kinds
        raise error(f"a {peer} frame did not decode: {exc!r}") from exc
    if not isinstance(message, kinds):
        raise error(f"a {peer} frame held a {type(message).__name__}")
    return message


class _Output(asyncio.Protocol):
    """The write end of stdout; ``closed`` once what was written has left."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@contextlib.asynccontextmanager
async def stdio() -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.WriteTransport]]:
    """A child process's stdin as a stream and stdout as a transport; on exit the frames
    still buffered are written out before the pipe closes (the parent reads them all)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out, output = await loop.connect_write_pipe(
        _Output, os.fdopen(sys.stdout.fileno(), "wb", closefd=False)
    )
    try:
        yield reader, out
    finally:
        out.close()  # flushes the buffer first, then connection_lost
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await output.closed


Serve = Callable[[asyncio.StreamReader, asyncio.WriteTransport], Awaitable[None]]


def run_child(serve: Serve, error: type[Exception], failed_event: str) -> int:
    """A child process's whole life: logs at the level its parent sets (``HES_LOG_LEVEL``,
    on stderr), ``serve`` on stdin and stdout; exit 1 with one line on ``error``, 130 on
    Ctrl-C, 0 otherwise."""
    configure_logging(os.environ.get("HES_LOG_LEVEL", "WARNING"), "console")

    async def main() -> None:
        async with stdio() as (reader, out):
            await serve(reader, out)

    try:
        asyncio.run(main())
    except error as exc:
        structlog.get_logger(__name__).error(failed_event, error=str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def write_to(process: asyncio.subprocess.Process | None, data: bytes) -> None:
    """Write ``data`` to a child's stdin while it runs; nothing once it has ended."""
    if process is None or process.returncode is not None or process.stdin is None:
        return
    if not process.stdin.is_closing():
        process.stdin.write(data)


async def end_children(processes: Sequence[asyncio.subprocess.Process], grace_s: float) -> int:
    """Wait up to ``grace_s`` for children told to stop, then kill the rest; how many
    had to be killed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace_s):
            await asyncio.gather(*(process.wait() for process in processes))
    late = [process for process in processes if process.returncode is None]
    for process in late:
        process.kill()
    for process in late:
        await process.wait()
    return len(late)
