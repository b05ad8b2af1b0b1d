"""A progress line on stderr: redrawn in place on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

TTY_REFRESH_S = 0.5
LOG_REFRESH_S = 10.0


class ProgressLine:
    def __init__(self, render: Callable[[], str], stream: TextIO | None = None) -> None:
        self._render = render
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()

    async def run(self) -> None:
        try:
            while True:
                self.show()
                await asyncio.sleep(TTY_REFRESH_S if self._tty else LOG_REFRESH_S)
        finally:
            self.show()
            if self._tty:
                self._stream.write("\n")
                self._stream.flush()

    def show(self) -> None:
        text = self._render()
        if self._tty:
            self._stream.write("\r\x1b[2K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()


def connecting_text(connected: int, total: int, start_spread_wall_s: float, waited_s: float) -> str:
    """The line while the fleet connects, before the run's clock starts. With a start
    spread it says how far into the spread the run is: a slow count is then the configured
    pace, not a stall."""
    text = f"connecting meters {connected}/{total}"
    if start_spread_wall_s > 0:
        text += f" | {waited_s:.1f} s into a {start_spread_wall_s:.1f} s start spread"
    return text
