"""What the head-end keeps of a block-load read."""

from __future__ import annotations

from dataclasses import dataclass

from hes_sim.protocols.block_load import BlockLoadEntry


# not frozen: a frozen dataclass's __init__ costs ~3 us against ~0.6 us, and the
# head-end builds one of these for every push it takes
@dataclass(slots=True)
class ReadRecord:
    meter_id: str
    interval_end: int  # simulated Unix seconds
    layout: str
    voltage_v: float
    current_a: float
    wh_import: int
    wh_export: int
    vah_import: int
    vah_export: int
    registers: dict[str, int]  # every captured register, raw, by quantity name
    received_at: float  # simulated Unix seconds

    @classmethod
    def from_entry(
        cls,
        meter_id: str,
        entry: BlockLoadEntry,
        received_at: float,
        interval_end: int | None = None,
    ) -> ReadRecord:
        """``interval_end``: the entry's clock in Unix seconds, when the caller has it."""
        layout, values = entry.layout, entry.values
        if layout.energy is None:
            raise KeyError(f"{layout.name} does not capture the four energies of a read")
        wh_import, wh_export, vah_import, vah_export = layout.energy(values)
        # positional: this runs for every push the head-end stores
        return cls(
            meter_id,
            int(entry.clock.timestamp()) if interval_end is None else interval_end,
            layout.name,
            round(entry.average_voltage(), 2),
            round(entry.average_current(), 3),
            wh_import,
            wh_export,
            vah_import,
            vah_export,
            dict(zip(layout.quantity_names, values, strict=True)),
            received_at,
        )


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event a meter pushed as it happened."""

    meter_id: str
    at: int  # simulated Unix seconds, the meter's time stamp
    log: str  # the event log's OBIS code
    code: int
    received_at: float
    status_word: str = ""  # hex of the 128-bit event status word pushed with the event
