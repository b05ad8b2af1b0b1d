"""Telling a command's expected failures from bugs, for the CLIs' one-line errors.

An error raised inside a ``TaskGroup`` (the head-end and the fleet are built of them)
arrives wrapped in an ``ExceptionGroup``, possibly nested; the operator still wants the
one line that says what went wrong, while anything unexpected keeps its traceback.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from hes_sim.errors import HesSimError

EXIT_STOPPED, EXIT_UNUSABLE = 0, 2
EXPECTED = (HesSimError, OSError)  # the project's own errors and the system's refusals


def start_failures(exc: BaseException) -> str | None:
    """The messages of the expected failures in ``exc``; None if it holds anything else."""
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(EXPECTED)
        if matched is None or rest is not None:
            return None
        leaves: list[BaseException] = []
        _flatten(matched, leaves)
        return "; ".join(str(leaf) for leaf in leaves)
    return str(exc) if isinstance(exc, EXPECTED) else None


def _flatten(exc: BaseException, into: list[BaseException]) -> None:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            _flatten(inner, into)
    else:
        into.append(exc)


def run_until_stopped(command: str, work: Callable[[], Awaitable[None]], stopped: str) -> int:
    """Run a long-lived command (``hes-sim headend``, ``hes-sim fleet``) until it ends or
    is stopped: SIGTERM stops it as Ctrl-C does (its task is cancelled and it closes in
    order). An expected failure prints one line and gives exit code 2."""
    try:
        asyncio.run(_until_sigterm(work))
    except (HesSimError, OSError, ExceptionGroup) as exc:
        # errors raised inside task groups arrive wrapped in an ExceptionGroup
        reasons = start_failures(exc)
        if reasons is None:
            raise
        print(f"hes-sim {command}: stopped: {reasons}", file=sys.stderr)
        return EXIT_UNUSABLE
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM
        print(stopped, file=sys.stderr)
    return EXIT_STOPPED


async def _until_sigterm(work: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - asyncio.run runs a task
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await work()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
