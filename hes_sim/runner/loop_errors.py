"""Quiet one known race of the MQTT client library, loudly everything else.

aiomqtt asks the loop to watch a socket for writing from a callback scheduled after
paho wrote; when the link dies in between (a keep-alive expiring on a black-holed link,
as the 4G model makes them), the socket is closed before the callback runs and asyncio
reports ``add_writer`` on a bad file descriptor. Nothing is lost: the meter reconnects.
So it is counted and logged at debug level; any other error goes to the default handler.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class LoopErrors:
    def __init__(self) -> None:
        self.closed_socket_races = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self._handle)

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        handle = repr(context.get("handle", ""))
        if (
            isinstance(exc, OSError)
            and exc.errno == errno.EBADF
            and ("add_writer" in handle or "add_reader" in handle)
        ):
            self.closed_socket_races += 1
            log.debug("socket_closed_before_watch", handle=handle[:120])
            return
        loop.default_exception_handler(context)
