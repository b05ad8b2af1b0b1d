"""Messages between this program's own processes, framed on a pipe.

Both ends are this program: a frame is a pickle (messages are frozen dataclasses) behind
a 4-byte length. A frame that does not decode, or holds a message of a kind the reader
does not expect, raises the reader's error, never crashes its loop.
"""

from __future__ import annotations

import asyncio
import pickle
import struct

_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


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
