"""What the head-end keeps of a block-load read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from hes_sim.protocols.block_load import BlockLoadEntry, ProfileLayout


class Registers(Mapping[str, int]):
    """A read's registers by quantity name, read off its layout and raw values. The
    head-end builds one for every read it stores, where a dict of them cost as much as the
    rest of the record, and the store writes them as JSON by the layout's template."""

    __slots__ = ("layout", "raw")

    def __init__(self, layout: ProfileLayout, raw: tuple[int, ...]) -> None:
        """``raw``: one int for each of ``layout``'s columns, in its order (as a
        ``BlockLoadEntry`` holds them)."""
        if len(raw) != len(layout.columns):
            raise ValueError(f"{layout.name} has {len(layout.columns)} registers")
        self.layout = layout
        self.raw = raw

    def __getitem__(self, name: str) -> int:
        position = self.layout.position_of_name.get(name)
        if position is None:
            raise KeyError(name)
        return self.raw[position]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.quantity_names)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return repr(dict(self))


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
    registers: Mapping[str, int]  # every captured register, raw, by quantity name
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
        if interval_end is None:
            interval_end = int(entry.clock.timestamp())
        return cls.from_values(meter_id, entry.layout, entry.values, interval_end, received_at)

    @classmethod
    def from_values(
        cls,
        meter_id: str,
        layout: ProfileLayout,
        values: tuple[int, ...],
        interval_end: int,
        received_at: float,
    ) -> ReadRecord:
        """The read of a block-load row given as its layout and register values."""
        energy = layout.energy
        if energy is None:
            raise KeyError(f"{layout.name} does not capture the four energies of a read")
        wh_import, wh_export, vah_import, vah_export = energy(values)
        # positional: this runs for every push the head-end stores
        return cls(
            meter_id,
            interval_end,
            layout.name,
            round(layout.voltage_of(values), 2),
            round(layout.current_of(values), 3),
            wh_import,
            wh_export,
            vah_import,
            vah_export,
            Registers(layout, values),
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
