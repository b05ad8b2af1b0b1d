"""What the network did to a run, from domain events and samples: reconnect times after
restorations, connect rates, attach times and rejects, meters online over time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from hes_sim.clock import SimClock
from hes_sim.events import (
    AttachRejected,
    Event,
    LinkAttached,
    MeterConnected,
    MeterEventReceived,
)
from hes_sim.meter_sim.event_logs import EventCode
from hes_sim.meter_sim.network.histogram import Histogram
from hes_sim.meter_sim.network.radio import RadioNetwork
from hes_sim.scenario.report import CellFigures, NetworkFigures, Percentiles

PEAK_WINDOW_S = 10.0  # simulated: connect rates are counted over windows this long
SAMPLES_PER_RUN = 120


class NetworkTally:
    def __init__(self, clock: SimClock, cell_of: dict[str, str]) -> None:
        self._clock = clock
        self._cell_of = cell_of
        self._restored_at: dict[str, float] = {}  # meters waited for, since when
        self.restored = 0
        self.reconnects: list[tuple[str, float]] = []  # meter, seconds to be back
        self.connect_windows: Counter[int] = Counter()
        self.attach_s: list[float] = []
        self.rejects: Counter[str] = Counter()
        self.last_gasps = 0
        self.timeline: list[str] = []
        self.sample_times: list[float] = []
        self.online: list[int] = []
        self.online_by_cell: dict[str, list[int]] = {cell: [] for cell in set(cell_of.values())}

    def __call__(self, event: Event) -> None:
        if not self._clock.running:
            return  # the fleet connecting before the start: simulated time stands still
        match event:
            case MeterConnected(meter_id=meter_id):
                now = self._clock.now()
                self.connect_windows[int(now // PEAK_WINDOW_S)] += 1
                since = self._restored_at.pop(meter_id, None)
                if since is not None:
                    self.reconnects.append((meter_id, now - since))
            case LinkAttached(attach_s=seconds):
                self.attach_s.append(seconds)
            case AttachRejected(reason=reason):
                self.rejects[reason] += 1
            case MeterEventReceived(code=EventCode.POWER_FAILURE, new=True):
                self.last_gasps += 1
            case _:
                pass

    def note(self, at_offset: float, text: str) -> None:
        hours, rest = divmod(int(at_offset), 3600)
        self.timeline.append(f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d} {text}")

    def lost(self, meter_ids: list[str]) -> None:
        """These meters lost their link or power: a restoration before now is moot."""
        for meter_id in meter_ids:
            self._restored_at.pop(meter_id, None)

    def restored_now(self, meter_ids: list[str]) -> None:
        now = self._clock.now()
        for meter_id in meter_ids:
            self._restored_at[meter_id] = now
        self.restored += len(meter_ids)

    async def sample(self, online: Callable[[str], bool], start: float, duration: float) -> None:
        """Meters online at the head-end, per cell, over the run (a task the run cancels)."""
        every = max(60.0, duration / SAMPLES_PER_RUN)
        at = start + every  # the clock stands still until the fleet is connected
        while True:
            await self._clock.sleep_until(at)
            by_cell = Counter(cell for meter, cell in self._cell_of.items() if online(meter))
            self.sample_times.append(round(at - start, 1))
            self.online.append(sum(by_cell.values()))
            for cell, series in self.online_by_cell.items():
                series.append(by_cell.get(cell, 0))
            at += every
            await asyncio.sleep(0)

    def figures(self, radio: RadioNetwork | None) -> NetworkFigures:
        peak = max(self.connect_windows.values(), default=0) / PEAK_WINDOW_S
        by_cell: dict[str, list[float]] = {}
        for meter_id, seconds in self.reconnects:
            by_cell.setdefault(self._cell_of.get(meter_id, "?"), []).append(seconds)
        cell_rejects = {} if radio is None else radio.rejects_by_cell()
        meters_in = Counter(self._cell_of.values())
        cells = [
            CellFigures(
                cell=cell,
                meters=meters_in[cell],
                attach_rejects={str(r): n for r, n in cell_rejects.get(cell, {}).items() if n},
                meter_reconnect_seconds=Percentiles.of(by_cell.get(cell, [])),
                online=series,
            )
            for cell, series in sorted(self.online_by_cell.items())
        ]
        return NetworkFigures(
            timeline=self.timeline,
            meter_reconnect_seconds=Percentiles.of([s for _m, s in self.reconnects]),
            meters_restored=self.restored,
            meters_not_back=len(self._restored_at),
            peak_connects_per_s=round(peak, 2),
            connects=sum(self.connect_windows.values()),
            attach_rejects=dict(self.rejects),
            attach_seconds=Percentiles.of(self.attach_s),
            link_rtt_seconds=_histogram_percentiles(None if radio is None else radio.rtt),
            power_failures_logged=self.last_gasps,
            sample_times=self.sample_times,
            online=self.online,
            cells=cells,
        )


def _histogram_percentiles(histogram: Histogram | None) -> Percentiles:
    if histogram is None or not histogram.count:
        return Percentiles.of([])
    p50, p95, p99 = (round(histogram.quantile(q), 4) for q in (0.5, 0.95, 0.99))
    return Percentiles(p50=p50, p95=p95, p99=p99, max=round(histogram.max, 4))
