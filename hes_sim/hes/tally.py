"""Counts of what ingest did, kept from domain events for the run report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hes_sim.events import DecodeFailed, Event, ReadDuplicate, ReadStored


@dataclass(slots=True)
class IngestTally:
    reads_stored: int = 0
    reads_duplicate: int = 0
    decode_errors: Counter[str] = field(default_factory=Counter)

    def __call__(self, event: Event) -> None:
        match event:
            case ReadStored(recovered=False):
                self.reads_stored += 1
            case ReadDuplicate():
                self.reads_duplicate += 1
            case DecodeFailed(reason=reason):
                self.decode_errors[reason] += 1
            case _:
                pass
