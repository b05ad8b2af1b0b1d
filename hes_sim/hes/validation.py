"""Checks a decoded read must pass before it is stored. Pure."""

from __future__ import annotations

from datetime import datetime

from hes_sim.errors import CodecError
from hes_sim.protocols.block_load import BlockLoadEntry

BLOCK_ALIGNMENT_S = 900  # IS 15959 block-load intervals are 15 or 30 minutes, clock-aligned
FUTURE_TOLERANCE_S = 300.0  # a meter clock may run this far ahead of the head-end's


def validate_entry(entry: BlockLoadEntry, now: float) -> int:
    """The entry's interval end (Unix seconds), once it is aligned and not in the future."""
    return validate_interval_end(entry.clock, entry.clock.timestamp(), now)


def validate_interval_end(clock: datetime, unix_time: float, now: float) -> int:
    """``clock`` (whose Unix time is ``unix_time``) as an interval end, once it is aligned
    and not in the future."""
    if unix_time % BLOCK_ALIGNMENT_S:
        raise CodecError("unaligned_interval", f"interval end {clock.isoformat()}")
    if unix_time > now + FUTURE_TOLERANCE_S:
        raise CodecError("future_timestamp", f"interval end {clock.isoformat()}")
    return int(unix_time)
