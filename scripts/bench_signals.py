"""What the benches that run for minutes share: a SIGTERM stops them as Ctrl-C does."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Inside a task: SIGTERM cancels it, so its clean-up (brokers, fleet processes) runs."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
