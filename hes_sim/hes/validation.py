"""Checks a decoded read must pass before it is stored. Pure."""

from __future__ import annotations

from hes_sim.errors import CodecError
from hes_sim.protocols.block_load import BlockLoadEntry

BLOCK_ALIGNMENT_S = 900  # IS 15959 block-load intervals are 15 or 30 minutes, clock-aligned
FUTURE_TOLERANCE_S = 300.0  # a meter clock may run this far ahead of the head-end's


def validate_entry(entry: BlockLoadEntry, now: float) -> int:
    """The entry's interval end (Unix seconds), once it is aligned and not in the future."""
    interval_end = entry.clock.timestamp()
    if interval_end % BLOCK_ALIGNMENT_S:
        raise CodecError("unaligned_interval", f"interval end {entry.clock.isoformat()}")
    if interval_end > now + FUTURE_TOLERANCE_S:
        raise CodecError("future_timestamp", f"interval end {entry.clock.isoformat()}")
    return int(interval_end)
