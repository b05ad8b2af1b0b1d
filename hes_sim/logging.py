"""structlog set-up: key/value lines on a terminal, JSON lines in production."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def configure_logging(level: str, fmt: Literal["console", "json"]) -> None:
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # libraries that log through the standard library (paho, asyncio) at the same level
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    # aiomqtt warns whenever a client has more than ten publishes awaiting their
    # acknowledgement, which a meter answering and pushing at once does by design
    logging.getLogger("mqtt").setLevel(max(numeric, logging.ERROR))
