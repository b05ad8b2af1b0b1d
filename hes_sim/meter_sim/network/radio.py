"""The radio network: cells and the modems of the meters in them, as a ``LinkModel``. Pure.

The loopback proxy asks it, per connection, whether a meter can attach and how long that
takes, and per chunk how long the chunk takes or that the link is gone; the scenario's
timeline changes it (cells down and up, signal degradation, congestion spikes, power).
Seeded per meter: a meter's class, hole and draws depend only on (seed, meter id) and on
the calls made about that meter, never on other meters.

A place in a cell is held from an accepted ``admit`` to its ``released``, also through
outages: the proxy learns of a dead connection only by keep-alive expiry, and releases
it then. Losing registration (cell down, power off, falling out of coverage, release)
detaches the modem, so every later chunk of the old connection is lost and the meter's
next connection pays a full attach.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence

from hes_sim.meter_sim.network.cells import Cell, CellReport
from hes_sim.meter_sim.network.histogram import Histogram
from hes_sim.meter_sim.network.link_model import Admission, Direction, RejectReason
from hes_sim.meter_sim.network.modem import Modem, ModemState
from hes_sim.meter_sim.network.placement import (
    MODEM_SALT,
    HoleService,
    radio_seed,
    signal_class_of,
)
from hes_sim.meter_sim.network.specs import (
    DEFAULT_PROFILES,
    DEFAULT_SIGNAL_MIX,
    CellSpec,
    CoverageHoles,
    LinkProfile,
    RadioSettings,
    SignalClass,
    check_profiles,
)

# one import point for whoever builds the network (the specs live in their own modules)
__all__ = [
    "DEFAULT_PROFILES",
    "DEFAULT_SIGNAL_MIX",
    "CellReport",
    "CellSpec",
    "CoverageHoles",
    "LinkProfile",
    "ModemState",
    "RadioNetwork",
    "RadioSettings",
    "SignalClass",
]

NO_HOLES = CoverageHoles(share=0.0, mean_in_service_s=1.0, mean_out_of_service_s=1.0)


class RadioNetwork:
    """Implements ``LinkModel`` (admit, transit, released)."""

    def __init__(
        self,
        cells: Sequence[CellSpec],
        cell_of: Mapping[str, str],
        *,
        settings: RadioSettings | None = None,
        seed: int = 0,
        holes: CoverageHoles | None = None,
        profiles: Mapping[SignalClass, LinkProfile] = DEFAULT_PROFILES,
    ) -> None:
        self.settings = settings or RadioSettings()
        self.seed = seed
        check_profiles(profiles)
        self._profiles = dict(profiles)
        self._cells: dict[str, Cell] = {}
        for spec in cells:
            if spec.cell_id in self._cells:
                raise ValueError(f"cell {spec.cell_id} is listed twice")
            self._cells[spec.cell_id] = Cell(spec, self.settings.cell_burst_s)
        self._meters: dict[str, list[str]] = {cell_id: [] for cell_id in self._cells}
        for meter_id, cell_id in cell_of.items():
            if cell_id not in self._cells:
                raise ValueError(f"meter {meter_id} is placed in unknown cell {cell_id}")
            self._meters[cell_id].append(meter_id)
        self._cell_of = dict(cell_of)
        self._holes = HoleService(holes or NO_HOLES, seed)
        self._modems: dict[str, Modem] = {}  # created on first use: ~3 kB each
        self._signal: dict[str, SignalClass] = {}  # drawn on first use, then cached
        self._service_seen: dict[str, float] = {}  # meter -> when its coverage was last checked
        self._unpaired: dict[str, tuple[Direction, float]] = {}  # last chunk, awaiting a reply
        self.rtt = Histogram()  # a chunk plus the next one the other way, per meter
        self.one_way = {direction: Histogram() for direction in Direction}

    # -- the LinkModel contract ----------------------------------------------------------

    def admit(self, meter_id: str, now: float) -> Admission:
        cell, modem = self._cell(meter_id), self.modem(meter_id)
        modem.advance(now)
        reason, delay = self._refusal(meter_id, cell, modem, now)
        if reason is not None:
            cell.rejects[reason] += 1
            return Admission(accepted=False, delay_s=delay, reason=reason)
        self._check_service(meter_id, modem, now)
        # the attach's signalling queues in the cell too: a reconnect storm slows attaches
        delay = modem.attach(now) + cell.bucket.delay(now)
        cell.hold(meter_id)
        return Admission(accepted=True, delay_s=delay)

    def transit(self, meter_id: str, direction: Direction, size: int, now: float) -> float | None:
        cell, modem = self._cell(meter_id), self.modem(meter_id)
        modem.advance(now)
        if not cell.up:
            return None
        self._check_service(meter_id, modem, now)
        if not modem.registered:
            self._unpaired.pop(meter_id, None)
            return None
        setup = modem.setup_delay(direction, now)
        queued = cell.bucket.delay(now + setup)
        carried = modem.carry(cell.profile(self._profiles[self.signal_of(meter_id)]), size)
        if carried is None:
            cell.broken_links += 1
            self._unpaired.pop(meter_id, None)
            return None
        total = setup + queued + carried
        modem.touched(now + total)
        self._record(meter_id, direction, total)
        return total

    def released(self, meter_id: str, now: float) -> None:
        cell, modem = self._cell(meter_id), self.modem(meter_id)
        if cell.release(meter_id):
            modem.advance(now)
            modem.lose_link()
            self._unpaired.pop(meter_id, None)

    # -- the timeline ---------------------------------------------------------------------

    def cell_down(self, cell_id: str, now: float) -> None:
        cell = self._cell_by_id(cell_id)
        cell.go_down()
        for meter_id in self._meters[cell_id]:
            if meter_id in self._modems:
                self._modems[meter_id].lose_link()

    def cell_up(self, cell_id: str, now: float) -> None:
        self._cell_by_id(cell_id).up = True

    def degrade(self, cell_id: str, latency_factor: float, extra_loss: float, now: float) -> None:
        """Worse signal across the cell: latency (and jitter) times the factor, loss up."""
        if not (math.isfinite(latency_factor) and latency_factor > 0):
            raise ValueError(f"latency_factor must be finite and > 0, got {latency_factor}")
        if not 0 <= extra_loss <= 1:
            raise ValueError(f"extra_loss must be in [0, 1], got {extra_loss}")
        cell = self._cell_by_id(cell_id)
        cell.latency_factor, cell.extra_loss = latency_factor, extra_loss

    def restore_signal(self, cell_id: str, now: float) -> None:
        cell = self._cell_by_id(cell_id)
        cell.latency_factor, cell.extra_loss = 1.0, 0.0

    def congest(self, cell_id: str, capacity_factor: float, now: float) -> None:
        """Leave the cell ``capacity_factor`` of its places and message rate (0.2: a spike
        leaves a fifth); 1.0 restores it."""
        if not (math.isfinite(capacity_factor) and capacity_factor > 0):
            raise ValueError(f"capacity_factor must be finite and > 0, got {capacity_factor}")
        self._cell_by_id(cell_id).congest(capacity_factor, now)

    def power_off(self, meter_ids: Iterable[str], now: float) -> None:
        for meter_id in meter_ids:
            self.modem(meter_id).power_off()
            self._unpaired.pop(meter_id, None)

    def power_on(self, meter_ids: Iterable[str], now: float) -> None:
        for meter_id in meter_ids:
            self.modem(meter_id).power_on(now)

    # -- queries and figures --------------------------------------------------------------

    def modem(self, meter_id: str) -> Modem:
        modem = self._modems.get(meter_id)
        if modem is None:
            self._cell(meter_id)  # refuses meters the network does not know
            rng = random.Random(radio_seed(self.seed, meter_id, MODEM_SALT))
            modem = self._modems[meter_id] = Modem(rng, self.settings)
        return modem

    def modem_state(self, meter_id: str, now: float) -> ModemState:
        return self.modem(meter_id).advance(now)

    def cell_of(self, meter_id: str) -> str:
        return self._cell(meter_id).spec.cell_id

    def signal_of(self, meter_id: str) -> SignalClass:
        signal = self._signal.get(meter_id)
        if signal is None:
            mix = self._cell(meter_id).spec.signal_mix
            signal = self._signal[meter_id] = signal_class_of(meter_id, mix, self.seed)
        return signal

    def in_hole(self, meter_id: str) -> bool:
        return self._holes.in_hole(meter_id)

    def in_service(self, meter_id: str, now: float) -> bool:
        return self._holes.in_service(meter_id, now)

    def meters_in(self, cell_id: str) -> list[str]:
        self._cell_by_id(cell_id)
        return list(self._meters[cell_id])

    def meters_per_cell(self) -> dict[str, int]:
        return {cell_id: len(meters) for cell_id, meters in self._meters.items()}

    def meters_per_signal_class(self, cell_id: str | None = None) -> dict[SignalClass, int]:
        meters = self._cell_of if cell_id is None else self.meters_in(cell_id)
        counts = dict.fromkeys(SignalClass, 0)
        for meter_id in meters:
            counts[self.signal_of(meter_id)] += 1
        return counts

    def attached(self, cell_id: str) -> int:
        return self._cell_by_id(cell_id).attached

    def accepted(self, cell_id: str) -> int:
        return self._cell_by_id(cell_id).accepted

    def rejects(self, cell_id: str) -> dict[RejectReason, int]:
        return dict(self._cell_by_id(cell_id).rejects)

    def rejects_by_cell(self) -> dict[str, dict[RejectReason, int]]:
        return {cell_id: dict(cell.rejects) for cell_id, cell in self._cells.items()}

    def queue_s(self, cell_id: str, now: float) -> float:
        return self._cell_by_id(cell_id).bucket.backlog_s(now)

    def report(self, now: float) -> list[CellReport]:
        return [
            cell.report(len(self._meters[cell_id]), now) for cell_id, cell in self._cells.items()
        ]

    # -- internals ------------------------------------------------------------------------

    def _cell(self, meter_id: str) -> Cell:
        cell_id = self._cell_of.get(meter_id)
        if cell_id is None:
            raise KeyError(f"meter {meter_id} is in no cell")
        return self._cells[cell_id]

    def _cell_by_id(self, cell_id: str) -> Cell:
        cell = self._cells.get(cell_id)
        if cell is None:
            raise KeyError(f"no cell {cell_id}")
        return cell

    def _refusal(
        self, meter_id: str, cell: Cell, modem: Modem, now: float
    ) -> tuple[RejectReason | None, float]:
        """Why the meter cannot attach now, and how long it takes to find out."""
        if modem.state is ModemState.OFF:
            return RejectReason.NO_POWER, 0.0
        if not cell.up:
            return RejectReason.CELL_DOWN, self.settings.search_timeout_s
        if not self._holes.in_service(meter_id, now):
            return RejectReason.NO_COVERAGE, self.settings.search_timeout_s
        if not cell.has_room_for(meter_id):
            return RejectReason.CONGESTED, self.settings.reject_delay_s
        return None, 0.0

    def _check_service(self, meter_id: str, modem: Modem, now: float) -> None:
        """A meter that fell out of coverage since it was last looked at lost its
        registration, even if it is back in service now."""
        if not self._holes.in_hole(meter_id):
            return
        since = self._service_seen.get(meter_id, now)
        if since <= now:
            self._service_seen[meter_id] = now
            if self._holes.interrupted(meter_id, since, now):
                modem.lose_link()

    def _record(self, meter_id: str, direction: Direction, seconds: float) -> None:
        self.one_way[direction].add(seconds)
        previous = self._unpaired.pop(meter_id, None)
        if previous is not None and previous[0] is not direction:
            self.rtt.add(previous[1] + seconds)
        else:
            self._unpaired[meter_id] = (direction, seconds)
