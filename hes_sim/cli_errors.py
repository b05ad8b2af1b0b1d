"""Telling a command's expected failures from bugs, for the CLIs' one-line errors.

An error raised inside a ``TaskGroup`` (the head-end and the fleet are built of them)
arrives wrapped in an ``ExceptionGroup``, possibly nested; the operator still wants the
one line that says what went wrong, while anything unexpected keeps its traceback.
"""

from __future__ import annotations

from hes_sim.errors import HesSimError

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
